"""Teams and their turns with chats, for team statistics; the timeline indexed by team and
by operator, for the messages and replies of a period.

The tables start empty and without a checkpoint: the server builds the new projection
from the whole log, beside the others, as it starts (or `cdp catch-up` does).

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("named_at", sa.BigInteger(), nullable=False),
        sa.Column("named_rank", sa.Integer(), nullable=False),
        sa.Column("named_key", sa.String(64), nullable=False),
        sa.Column("first_seen_at", sa.BigInteger(), nullable=False),
        sa.Column("last_seen_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("source", "id", name=op.f("pk_teams")),
    )
    op.create_table(
        "waits",
        sa.Column("position", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("chat_uuid", sa.String(200), nullable=False),
        sa.Column("session_number", sa.Integer(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("team_id", sa.BigInteger(), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("started_by", sa.String(20), nullable=False),
        sa.Column("replied_at", sa.BigInteger(), nullable=True),
        sa.Column("replied_by", sa.String(200), nullable=True),
        sa.Column("last_operator_uuid", sa.String(200), nullable=True),
        sa.Column("handed_off_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_waits")),
    )
    op.create_index("ix_waits_chat_uuid_order", "waits", ["chat_uuid", "session_number", "ordinal"])
    op.create_index("ix_waits_team_id_started_at", "waits", ["team_id", "started_at"])
    op.create_index("ix_waits_replied_by_started_at", "waits", ["replied_by", "started_at"])
    op.create_index("ix_waits_last_operator_uuid", "waits", ["last_operator_uuid", "handed_off_at"])
    op.create_index("ix_timeline_team_id_kind", "timeline", ["team_id", "kind", "occurred_at"])
    op.create_index("ix_timeline_operator_uuid", "timeline", ["operator_uuid", "occurred_at"])


def downgrade() -> None:
    op.drop_index("ix_timeline_operator_uuid", "timeline")
    op.drop_index("ix_timeline_team_id_kind", "timeline")
    op.drop_table("waits")
    op.drop_table("teams")
