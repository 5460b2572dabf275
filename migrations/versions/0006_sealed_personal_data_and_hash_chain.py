"""Personal data sealed under per-chat keys, erasure on request, and the log's hash chain.

Each event gets `key_id` and `sealed` (its whole body, AES-GCM under its chat's key, or its
profile's) and `hash` (chained over the row before; see cdp.chain), and `body` keeps only
the fields that are no personal data (see cdp.personal). Events logged before are sealed
and chained here, in position order, once: the only time the log's rows are rewritten,
with its guard triggers off inside this migration's transaction. Their keys go to the
main database's `keys` table; a keystore of its own (CDP_KEYSTORE_URL) takes them over
the first time cdp opens it.

What this needs of cdp (the hash chain, sealing, the redacted body, reading a logged body)
is copied here, as cdp had it when the migrations were made self-contained (at 0017): a
later cdp may change its own, and this must go on writing what cdp verifies and opens.

Revision ID: 0006
Revises: 0005
"""

import hashlib
import json
import math
import os
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import sqlalchemy as sa
from alembic import op
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

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

# cdp.chain's, frozen (see _link): what a row's hash covers, in this order.
_GENESIS = "0" * 64
_COLUMNS = (
    "position",
    "event_type",
    "occurred_at",
    "received_at",
    "chat_uuid",
    "profile_uuid",
    "dedupe_key",
    "body",
    "source",
    "key_id",
    "sealed",
)


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
    _rewrite(_unseal_all, sqlite)
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
    *(sa.column(name) for name in _COLUMNS if name not in ("key_id", "sealed")),
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
    previous, after = _GENESIS, 0
    while rows := _chunk(connection, after):
        changes, new_keys = [], []
        for row in rows:
            stored = dict(row._mapping)
            subject = _subject(row)
            if subject is not None:
                if subject not in keys:
                    keys[subject] = (secrets.token_hex(16), _new_key())
                    new_keys.append(
                        {
                            "id": keys[subject][0],
                            "subject": subject,
                            "material": keys[subject][1],
                            "created_at": _now_ms(),
                        }
                    )
                key_id, material = keys[subject]
                stored["key_id"] = key_id
                stored["sealed"] = _seal(material, row.body, row.dedupe_key)
                stored["body"] = _redacted(_logged(row.body))
            previous = _link(previous, stored)
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
        return _of_chat(row.chat_uuid)
    if row.profile_uuid is not None:
        return _of_profile(row.profile_uuid)
    return None


def _unseal_all(connection: sa.Connection) -> None:
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
                body = _unseal(materials[row.key_id], row.sealed, row.dedupe_key) or body
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


# What this migration needs of cdp, frozen: copied from cdp.chain, cdp.personal, cdp.times
# and cdp.webhook as they were at 0017, stripped to what is used here, writing byte for byte
# what they wrote (tests/unit/test_frozen_copies.py holds them to cdp's code).

_ENCODER = msgspec.json.Encoder()


def _link(previous: str, row: Mapping[str, Any]) -> str:
    """Frozen copy of cdp.chain.link for 0006: the hash of `row`, chained after `previous`."""
    sealed: bytes | None = row["sealed"]
    fields = [row[name] for name in _COLUMNS]
    fields[_COLUMNS.index("sealed")] = None if sealed is None else len(sealed)
    digest = hashlib.sha256(bytes.fromhex(previous))
    digest.update(_ENCODER.encode(fields))
    if sealed is not None:
        digest.update(sealed)
    return digest.hexdigest()


def _of_chat(uuid: str) -> str:
    """Frozen copy of cdp.personal.of_chat for 0006: a chat as the subject of a key."""
    return f"chat:{uuid}"


def _of_profile(uuid: str) -> str:
    """Frozen copy of cdp.personal.of_profile for 0006: a profile as the subject of a key."""
    return f"profile:{uuid}"


def _new_key() -> bytes:
    """Frozen copy of cdp.personal.new_key for 0006: a subject's new key, 32 random bytes."""
    return os.urandom(32)


def _seal(key: bytes, body: str, dedupe_key: str) -> bytes:
    """Frozen copy of cdp.personal.seal for 0006: nonce, then AES-GCM bound to the dedupe key."""
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, body.encode("utf-8"), dedupe_key.encode())


def _unseal(key: bytes, sealed: bytes, dedupe_key: str) -> str | None:
    """Frozen copy of cdp.personal.unseal for 0006: what _seal sealed, or None."""
    nonce, ciphertext = sealed[:12], sealed[12:]
    try:
        plain = AESGCM(key).decrypt(nonce, ciphertext, dedupe_key.encode())
    except (InvalidTag, ValueError):
        return None
    return plain.decode("utf-8", errors="replace")


# cdp.personal.KEPT, frozen: the fields that are no personal data.
_KEPT: dict[str, Any] = {
    "event_type": True,
    "timestamp": True,
    "payload": {
        "chat": {"uuid": True, "platform": True},
        "profile": {"uuid": True},
        "session": {
            "team": {"id": True, "name": True},
            "operator": {"uuid": True, "name": True, "avatar": True},
        },
        "message": {"uuid": True, "type": True, "status": True},
    },
}


def _redacted(document: dict[str, Any] | None) -> str:
    """Frozen copy of cdp.personal.redacted for 0006: the document as JSON, _KEPT's fields only."""
    return _ENCODER.encode(_kept(document or {}, _KEPT)).decode()


def _kept(value: dict[str, Any], kept: dict[str, Any]) -> dict[str, Any]:
    """Frozen copy of cdp.personal._kept for 0006: the fields of `value` that `kept` lists."""
    out = {}
    for name, inner in kept.items():
        if name not in value:
            continue
        field = value[name]
        if inner is True:
            if not isinstance(field, dict | list):  # a value, never a subtree of unknown fields
                out[name] = field
        elif isinstance(field, dict):
            out[name] = _kept(field, inner)
    return out


def _now_ms() -> int:
    """Frozen copy of cdp.times.now_ms for 0006: milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


_MAX_LOGGED_DEPTH = 512
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _logged(body: str) -> dict[str, Any] | None:
    """Frozen copy of cdp.webhook.logged for 0006: a logged body as a JSON object, or None."""
    if _nesting(body, _MAX_LOGGED_DEPTH) > _MAX_LOGGED_DEPTH:
        return None
    try:
        document = _DECODER.decode(body)
    except (msgspec.DecodeError, RecursionError):  # 512 levels, deep in a call stack
        document = None
    try:
        if document is None:
            document = json.loads(body, parse_float=_finite, parse_constant=lambda _: None)
        if _SURROGATE_ESCAPE.search(body):
            document = _representable(document)
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def _nesting(text: str, limit: int) -> int:
    """Frozen copy of cdp.webhook.nesting for 0006: how deep JSON `text` nests, up to limit + 1."""
    opened = text.count("{") + text.count("[")
    if opened <= limit:  # nothing can nest deeper than the brackets it opens: skip the scan
        return opened
    depth = deepest = 0
    for bracket in _BRACKET.finditer(_STRING.sub("", text)):
        if bracket.group() in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        else:
            depth -= 1
    return deepest


def _finite(text: str) -> float | None:
    """Frozen copy of cdp.webhook._finite for 0006: a JSON number, None if it is not finite."""
    number = float(text)
    return number if math.isfinite(number) else None


_DECODER = msgspec.json.Decoder(float_hook=_finite)


def _representable(value: Any) -> Any:
    """Frozen copy of cdp.webhook._representable for 0006: lone surrogates as U+FFFD."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_representable(key): _representable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_representable(item) for item in value]
    return value
