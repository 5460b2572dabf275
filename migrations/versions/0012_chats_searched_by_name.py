"""Chats searched by a prefix of their name: `chats.name_key`, the name folded (see
cdp.names), indexed with the chat's uuid.

The keys start empty: the chats projector's version changed with them, so the server
builds `chats` (and `teams`, which reads it) anew from the log, beside the live tables,
as it starts (or `cdp catch-up` does). The names are sealed in the log: only a build,
which opens them, can fold them.

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = sa.String(100).with_variant(sa.String(100, collation="C"), "postgresql")


def upgrade() -> None:
    op.add_column("chats", sa.Column("name_key", KEY, nullable=True))
    op.create_index("ix_chats_name_key", "chats", ["name_key", "uuid"])


def downgrade() -> None:
    op.drop_index("ix_chats_name_key", "chats")
    with op.batch_alter_table("chats") as batch:
        batch.drop_column("name_key")
