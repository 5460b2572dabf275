"""The read models seal what they hold of a customer: a timeline event's name, phone,
avatar, title, context and message, a session's title and context, and a chat's name,
phone (as given and in E.164) and avatar are kept sealed under the key of their chat
(see cdp.privacy.personal.Sealer, cdp.conversations.tables.SEALED), so that once an
erasure destroys that key, no copy of them opens: not the rows, nor the dead rows and
write-ahead log a database keeps of what it deleted. Searches look chats up by digests of
the phone and of the name's first letters instead (cdp.profiles.phones.digest,
cdp.profiles.names.digest): `chats.name_key` and the
indexes on it and on `phone_e164` go. A delivery refused as bad input is kept sealed
under a key of its own (`rejected.key_id`), which the erasure that forgets it destroys;
those kept before stay as they came until they expire.

The columns become binary, and empty: the chats projector's version changed with them,
so the server builds `chats` (and what reads it) anew from the log, beside the live
tables, as it starts (or `cdp catch-up` does); the bodies are sealed in the log, and only
a build, which opens them, can fill these. Until that build is done, chats answer no
titles and timelines no messages.

Revision ID: 0017
Revises: 0016
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TEXT = {
    "timeline": {
        "name": sa.Text(),
        "phone": sa.Text(),
        "avatar": sa.Text(),
        "title": sa.Text(),
        "context": sa.Text(),
        "message": sa.JSON(),
    },
    "sessions": {"title": sa.Text(), "context": sa.Text()},
    "chats": {
        "name": sa.Text(),
        "phone": sa.Text(),
        "phone_e164": sa.String(20),
        "avatar": sa.Text(),
    },
}
_KEY = sa.String(100).with_variant(sa.String(100, collation="C"), "postgresql")


def _change(to_sealed: bool) -> None:
    for table, columns in _TEXT.items():
        # Emptied first: SQLite would copy the values over as they are.
        op.execute(f"UPDATE {table} SET " + ", ".join(f"{name} = NULL" for name in columns))
        with op.batch_alter_table(table) as batch:
            for name, kind in columns.items():
                old, new = (kind, sa.LargeBinary()) if to_sealed else (sa.LargeBinary(), kind)
                batch.alter_column(
                    name,
                    existing_type=old,
                    type_=new,
                    existing_nullable=True,
                    postgresql_using=f"NULL::{'bytea' if to_sealed else _pg(kind)}",
                )


def _pg(kind: sa.types.TypeEngine[object]) -> str:
    if isinstance(kind, sa.JSON):
        return "json"
    return "varchar(20)" if isinstance(kind, sa.String) and kind.length else "text"


def _drop(name: str) -> None:
    """Drop an index of a projection by its name, or by the name a build may have given it
    on SQLite (see 0014)."""
    for each in (name, f"{name}__next"):
        op.execute(f'DROP INDEX IF EXISTS "{each}"')


def upgrade() -> None:
    _drop("ix_chats_phone_e164")
    _drop("ix_chats_name_key")
    with op.batch_alter_table("chats") as batch:
        batch.drop_column("name_key")
        batch.add_column(sa.Column("phone_digest", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("name_digest", sa.Integer(), nullable=True))
    _change(to_sealed=True)
    for name in ("phone_digest", "name_digest"):
        op.create_index(f"ix_chats_{name}", "chats", [name, "profile_uuid", "uuid"])
    with op.batch_alter_table("rejected") as batch:
        batch.add_column(sa.Column("key_id", sa.String(32), nullable=True))


def downgrade() -> None:
    # Sealed bodies the code before cannot open: forgotten (their keys stay, unused).
    op.execute("DELETE FROM rejected WHERE key_id IS NOT NULL")
    with op.batch_alter_table("rejected") as batch:
        batch.drop_column("key_id")
    _drop("ix_chats_phone_digest")
    _drop("ix_chats_name_digest")
    _change(to_sealed=False)
    with op.batch_alter_table("chats") as batch:
        batch.drop_column("phone_digest")
        batch.drop_column("name_digest")
        batch.add_column(sa.Column("name_key", _KEY, nullable=True))
    op.create_index("ix_chats_phone_e164", "chats", ["phone_e164", "profile_uuid"])
    op.create_index("ix_chats_name_key", "chats", ["name_key", "uuid"])
