"""The read models seal what they hold of a customer: a timeline event's name, phone,
avatar, title, context and message, and a session's title and context, are kept sealed
under the key of their chat (see cdp.personal.Sealer, cdp.models.SEALED), so that once an
erasure destroys that key, no copy of them opens: not the rows, nor the dead rows and
write-ahead log a database keeps of what it deleted.

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
}


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
    return "json" if isinstance(kind, sa.JSON) else "text"


def upgrade() -> None:
    _change(to_sealed=True)


def downgrade() -> None:
    _change(to_sealed=False)
