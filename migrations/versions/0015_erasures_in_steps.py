"""Erasures in steps: `pending_erasures` holds the chats an erasure begun has still to
reach, so that a large profile is erased a few chats a transaction (webhooks go on in
between), and an erasure stopped midway is finished by the next start or attempt; and
`profile_chats` is indexed by chat, which each step deletes the pairs of.

Revision ID: 0015
Revises: 0014
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pending_erasures",
        sa.Column("profile_uuid", sa.String(200), nullable=False),
        sa.Column("chat_uuid", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("profile_uuid", "chat_uuid", name="pk_pending_erasures"),
    )
    op.create_index("ix_profile_chats_chat_uuid", "profile_chats", ["chat_uuid"])


def downgrade() -> None:
    op.drop_index("ix_profile_chats_chat_uuid", "profile_chats")
    op.drop_table("pending_erasures")
