"""Personal data sealed under per-chat keys, erasure on request, and the log's hash chain.

Each event gets `key_id` and `sealed` (its whole body, AES-GCM under its chat's key, or its
profile's) and `hash` (chained over the row before; see cdp.chain), and `body` keeps only
the fields that are no personal data (see cdp.personal). Events logged before are sealed
and chained here, in position order, once: the only time the log's rows are rewritten,
with its guard triggers off inside this migration's transaction. Their keys go to the
main database's `keys` table; a keystore of its own (CDP_KEYSTORE_URL) takes them over
the first time cdp opens it.

Revision ID: 0006
Revises: 0005
"""

import json
import secrets
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from cdp.log import chain
from cdp.log.webhook import logged
from cdp.privacy import personal
from cdp.times import now_ms

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 0004's guard, with the new columns: SQLite stores any value in any column.
WRONG_TYPES = """
    CREATE TRIGGER events_refuse_wrong_types BEFORE INSERT ON events
    WHEN typeof(NEW.occurred_at) != 'integer' OR typeof(NEW.received_at) != 'integer'
        OR typeof(NEW.event_type) != 'text' OR typeof(NEW.dedupe_key) != 'text'
        OR typeof(NEW.body) != 'text'
        OR typeof(NEW.chat_uuid) NOT IN ('text', 'null')
        OR typeof(NEW.profile_uuid) NOT IN ('text', 'null')
        OR typeof(NEW.source) != 'text'{sealed}
    BEGIN
        SELECT RAISE(ABORT, 'the event log is append-only: a row of the wrong types is refused');
    END
"""
SEALED_TYPES = """
        OR typeof(NEW.key_id) NOT IN ('text', 'null')
        OR typeof(NEW.sealed) NOT IN ('blob', 'null')
        OR typeof(NEW.hash) != 'text'"""
SQLITE_UPDATE_GUARD = """
    CREATE TRIGGER events_refuse_update BEFORE UPDATE ON events
    BEGIN
        SELECT RAISE(ABORT, 'the event log is append-only: UPDATE on events is refused');
    END
"""
_CHUNK = 2000


def upgrade() -> None:
    with op.batch_alter_table("events", recreate="never") as batch:
        batch.add_column(sa.Column("key_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("sealed", sa.LargeBinary(), nullable=True))
        # Every append writes it (and SQLite's guard refuses a row without it); nullable
        # only because SQLite adds no NOT NULL column to a table without a default.
        batch.add_column(sa.Column("hash", sa.String(64), nullable=True))
    op.create_table(
        "keys",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(210), nullable=False),
        sa.Column("material", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_keys")),
        sa.UniqueConstraint("subject", name=op.f("uq_keys_subject")),
    )
    op.create_table(
        "erased_subjects",
        sa.Column("subject", sa.String(210), nullable=False),
        sa.Column("profile_uuid", sa.String(200), nullable=False),
        sa.Column("erased_at", sa.BigInteger(), nullable=False),
        sa.Column("suppressed", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("subject", name=op.f("pk_erased_subjects")),
    )
    op.create_table(
        "erasures",
        sa.Column("profile_uuid", sa.String(200), nullable=False),
        sa.Column("erased_at", sa.BigInteger(), nullable=False),
        sa.Column("suppressed", sa.Boolean(), nullable=False),
        sa.Column("chats", sa.JSON(), nullable=False),
        sa.Column("refused", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("profile_uuid", name=op.f("pk_erasures")),
    )
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("DROP TRIGGER events_refuse_wrong_types")
        op.execute(WRONG_TYPES.format(sealed=SEALED_TYPES))
    _rewrite(_seal_and_chain, sqlite)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    _rewrite(_unseal, sqlite)
    if sqlite:
        op.execute("DROP TRIGGER events_refuse_wrong_types")
        op.execute(WRONG_TYPES.format(sealed=""))
    op.drop_table("erasures")
    op.drop_table("erased_subjects")
    op.drop_table("keys")
    with op.batch_alter_table("events", recreate="never") as batch:
        batch.drop_column("hash")
        batch.drop_column("sealed")
        batch.drop_column("key_id")


def _rewrite(change: Any, sqlite: bool) -> None:
    """Run `change` over the logged rows with the guard against updates off."""
    connection = op.get_bind()
    if sqlite:
        op.execute("DROP TRIGGER events_refuse_update")
    else:
        op.execute("ALTER TABLE events DISABLE TRIGGER events_refuse_change")
    change(connection)
    if sqlite:
        op.execute(SQLITE_UPDATE_GUARD)
    else:
        op.execute("ALTER TABLE events ENABLE TRIGGER events_refuse_change")


_EVENTS = sa.table(
    "events",
    *(sa.column(name) for name in chain.COLUMNS if name not in ("key_id", "sealed")),
    sa.column("key_id", sa.String()),
    sa.column("sealed", sa.LargeBinary()),
    sa.column("hash", sa.String()),
)
_KEYS = sa.table(
    "keys",
    sa.column("id"),
    sa.column("subject"),
    sa.column("material", sa.LargeBinary()),
    sa.column("created_at"),
)
_UPDATE = (
    _EVENTS.update()
    .where(_EVENTS.c.position == sa.bindparam("at"))
    .values(
        body=sa.bindparam("new_body"),
        key_id=sa.bindparam("new_key_id"),
        sealed=sa.bindparam("new_sealed", type_=sa.LargeBinary()),
        hash=sa.bindparam("new_hash"),
    )
)


def _seal_and_chain(connection: sa.Connection) -> None:
    keys: dict[str, tuple[str, bytes]] = {}
    previous, after = chain.GENESIS, 0
    while rows := _chunk(connection, after):
        changes, new_keys = [], []
        for row in rows:
            stored = dict(row._mapping)
            subject = _subject(row)
            if subject is not None:
                if subject not in keys:
                    keys[subject] = (secrets.token_hex(16), personal.new_key())
                    new_keys.append(
                        {
                            "id": keys[subject][0],
                            "subject": subject,
                            "material": keys[subject][1],
                            "created_at": now_ms(),
                        }
                    )
                key_id, material = keys[subject]
                stored["key_id"] = key_id
                stored["sealed"] = personal.seal(material, row.body, row.dedupe_key)
                stored["body"] = personal.redacted(logged(row.body))
            previous = chain.link(previous, stored)
            changes.append(
                {
                    "at": row.position,
                    "new_body": stored["body"],
                    "new_key_id": stored["key_id"],
                    "new_sealed": stored["sealed"],
                    "new_hash": previous,
                }
            )
        if new_keys:
            connection.execute(_KEYS.insert(), new_keys)
        connection.execute(_UPDATE, changes)
        after = rows[-1].position


def _subject(row: sa.Row[Any]) -> str | None:
    """Whose key sealed an event at this revision: its chat's, else its profile's; an event
    naming neither stayed in the clear (until 0009)."""
    if row.chat_uuid is not None:
        return personal.of_chat(row.chat_uuid)
    if row.profile_uuid is not None:
        return personal.of_profile(row.profile_uuid)
    return None


def _unseal(connection: sa.Connection) -> None:
    materials = {row.id: row.material for row in connection.execute(sa.select(_KEYS))}
    # A key this database lacks was either destroyed by an erasure (what it sealed stays
    # erased) or is held by a keystore of its own: then downgrading would lose the bodies.
    erased = {
        chat
        for (chats,) in connection.execute(sa.text("SELECT chats FROM erasures"))
        for chat in (json.loads(chats) if isinstance(chats, str) else chats)
    }
    sealed = sa.select(_EVENTS.c.key_id, _EVENTS.c.chat_uuid).where(_EVENTS.c.sealed.is_not(None))
    lost = {
        row.key_id
        for row in connection.execute(sealed.distinct())
        if row.key_id not in materials and row.chat_uuid not in erased
    }
    if lost:
        raise RuntimeError(
            f"the keys of {len(lost)} chats are not in this database but in a keystore of "
            "its own (CDP_KEYSTORE_URL): downgrading would lose the bodies they seal"
        )
    after = 0
    while rows := _chunk(connection, after):
        changes = []
        for row in rows:
            body = row.body
            if row.sealed is not None and row.key_id in materials:
                body = personal.unseal(materials[row.key_id], row.sealed, row.dedupe_key) or body
            changes.append(
                {"at": row.position, "new_body": body, "new_key_id": None, "new_sealed": None}
            )
        connection.execute(
            _EVENTS.update()
            .where(_EVENTS.c.position == sa.bindparam("at"))
            .values(
                body=sa.bindparam("new_body"),
                key_id=sa.bindparam("new_key_id"),
                sealed=sa.bindparam("new_sealed", type_=sa.LargeBinary()),
            ),
            changes,
        )
        after = rows[-1].position


def _chunk(connection: sa.Connection, after: int) -> list[sa.Row[Any]]:
    query = sa.select(_EVENTS).where(_EVENTS.c.position > after).order_by(_EVENTS.c.position)
    return list(connection.execute(query.limit(_CHUNK)))
