"""Reports: what the reports projector keeps (each event's place as it counted it, counts
by the local hour, customers' waits for a reply), and the settings an admin gives them
(working hours, holidays, each team's reply targets, and who changed which when).

The projector's tables start empty and without a checkpoint: the server builds them from
the whole log, beside the others, as it starts (or `cdp catch-up` does).

Revision ID: 0018
Revises: 0017
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ORDER = ["occurred_at", "rank", "dedupe_key"]
# Compared byte for byte: a team's operators are a range of keys (see cdp.reports.tables).
_SCOPE = sa.String(400).with_variant(sa.String(400, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "report_events",
        sa.Column("position", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("chat_uuid", sa.String(200), nullable=False),
        sa.Column("occurred_at", sa.BigInteger(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("dedupe_key", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("session_number", sa.Integer(), nullable=True),
        sa.Column("team_id", sa.BigInteger(), nullable=True),
        sa.Column("before_team_id", sa.BigInteger(), nullable=True),
        sa.Column("operator_uuid", sa.String(200), nullable=True),
        sa.Column("platform", sa.String(100), nullable=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_report_events")),
    )
    op.create_index("ix_report_events_chat_order", "report_events", ["chat_uuid", *_ORDER])
    op.create_index(
        "ix_report_events_chat_kind_order", "report_events", ["chat_uuid", "kind", *_ORDER]
    )
    op.create_table(
        "report_counts",
        sa.Column("scope", _SCOPE, nullable=False),
        sa.Column("metric", sa.String(32), nullable=False),
        sa.Column("hour", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "metric", "hour", name=op.f("pk_report_counts")),
    )
    op.create_table(
        "report_replies",
        sa.Column("position", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("chat_uuid", sa.String(200), nullable=False),
        sa.Column("occurred_at", sa.BigInteger(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("dedupe_key", sa.String(64), nullable=False),
        sa.Column("session_number", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.BigInteger(), nullable=True),
        sa.Column("platform", sa.String(100), nullable=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("follows_reply", sa.Boolean(), nullable=False),
        sa.Column("replied_at", sa.BigInteger(), nullable=True),
        sa.Column("replied_by", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_report_replies")),
    )
    op.create_index("ix_report_replies_chat_order", "report_replies", ["chat_uuid", *_ORDER])
    op.create_index("ix_report_replies_started_at", "report_replies", ["occurred_at"])
    op.create_index("ix_report_replies_team_id", "report_replies", ["team_id", "occurred_at"])
    op.create_index("ix_report_replies_replied_by", "report_replies", ["replied_by", "occurred_at"])
    op.create_table(
        "report_turns",
        sa.Column("position", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("chat_uuid", sa.String(200), nullable=False),
        sa.Column("session_number", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.BigInteger(), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("replied_at", sa.BigInteger(), nullable=True),
        sa.Column("replied_by", sa.String(200), nullable=True),
        sa.Column("platform", sa.String(100), nullable=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_report_turns")),
    )
    op.create_index("ix_report_turns_chat_session", "report_turns", ["chat_uuid", "session_number"])
    op.create_table(
        "report_sessions",
        sa.Column("chat_uuid", sa.String(200), nullable=False),
        sa.Column("number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("opened_at", sa.BigInteger(), nullable=False),
        sa.Column("last_activity_at", sa.BigInteger(), nullable=False),
        sa.Column("team_id", sa.BigInteger(), nullable=True),
        sa.Column("platform", sa.String(100), nullable=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("chat_uuid", "number", name=op.f("pk_report_sessions")),
    )
    op.create_index("ix_report_sessions_last_activity_at", "report_sessions", ["last_activity_at"])
    op.create_table(
        "report_lengths",
        sa.Column("scope", _SCOPE, nullable=False),
        sa.Column("metric", sa.String(32), nullable=False),
        sa.Column("hour", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("lengths", sa.LargeBinary(), nullable=False),
        sa.Column("unanswered", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "metric", "hour", name=op.f("pk_report_lengths")),
    )
    op.create_table(
        "report_waiting",
        sa.Column("chat_uuid", sa.String(200), nullable=False),
        sa.Column("session_number", sa.Integer(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("since", sa.BigInteger(), nullable=False),
        sa.Column("follows_reply", sa.Boolean(), nullable=False),
        sa.Column("last_activity_at", sa.BigInteger(), nullable=False),
        sa.Column("team_id", sa.BigInteger(), nullable=True),
        sa.Column("turn_started_at", sa.BigInteger(), nullable=True),
        sa.Column("turn_answered", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("platform", sa.String(100), nullable=True),
        sa.PrimaryKeyConstraint("chat_uuid", name=op.f("pk_report_waiting")),
    )
    op.create_index("ix_report_waiting_last_activity_at", "report_waiting", ["last_activity_at"])
    op.create_table(
        "working_hours",
        sa.Column("weekday", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("starts", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("ends", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("weekday", "starts", name=op.f("pk_working_hours")),
    )
    op.create_table(
        "holidays",
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_holidays")),
    )
    op.create_table(
        "reply_targets",
        sa.Column("team_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("first_reply_ms", sa.BigInteger(), nullable=True),
        sa.Column("next_reply_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("team_id", name=op.f("pk_reply_targets")),
    )
    op.create_table(
        "report_setting_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("setting", sa.String(64), nullable=False),
        sa.Column("before", sa.JSON(), nullable=False),
        sa.Column("after", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_setting_changes")),
    )
    op.create_index("ix_report_setting_changes_at", "report_setting_changes", ["at"])


def downgrade() -> None:
    op.drop_table("report_setting_changes")
    op.drop_table("reply_targets")
    op.drop_table("holidays")
    op.drop_table("working_hours")
    op.drop_table("report_waiting")
    op.drop_table("report_lengths")
    op.drop_table("report_sessions")
    op.drop_table("report_turns")
    op.drop_table("report_replies")
    op.drop_table("report_counts")
    op.drop_table("report_events")
