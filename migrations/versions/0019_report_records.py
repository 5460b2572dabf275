"""Reports keep each wait and session as a record (when it began and ended, how, its
team and position) instead of its length alone, so that working time and reply targets
are worked out in bulk from a few rows; and each operator's sessions in a team.

`report_lengths` gives way to `report_times`; turns and waits for a reply keep when they
ended without a reply (`handed_off_at`, `closed_at`); `report_operator_sessions` is new.
The reports projector's version changed with them, so the server builds its tables anew
from the log, beside the live ones, as it starts (or `cdp catch-up` does); until that
build is done, reports of times answer from what the live tables hold.

Revision ID: 0019
Revises: 0018
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SCOPE = sa.String(400).with_variant(sa.String(400, collation="C"), "postgresql")
_REPLIES_ONLY = sa.text("kind = 'operator_reply'")
_UNANSWERED = sa.text("replied_at IS NULL")


def upgrade() -> None:
    op.drop_table("report_lengths")
    op.create_table(
        "report_times",
        sa.Column("scope", _SCOPE, nullable=False),
        sa.Column("metric", sa.String(32), nullable=False),
        sa.Column("hour", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("records", sa.LargeBinary(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "metric", "hour", name=op.f("pk_report_times")),
    )
    if op.get_bind().dialect.name == "postgresql":  # see cdp.reports.tables.ReportTimesRow
        op.execute("ALTER TABLE report_times ALTER COLUMN records SET STORAGE EXTERNAL")
    op.create_table(
        "report_operator_sessions",
        sa.Column("chat_uuid", sa.String(200), nullable=False),
        sa.Column("session_number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("team_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("operator_uuid", sa.String(200), nullable=False),
        sa.Column("first_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "chat_uuid",
            "session_number",
            "team_id",
            "operator_uuid",
            name=op.f("pk_report_operator_sessions"),
        ),
    )
    with op.batch_alter_table("report_turns") as batch:
        batch.add_column(sa.Column("handed_off_at", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("closed_at", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("report_replies") as batch:
        batch.add_column(sa.Column("closed_at", sa.BigInteger(), nullable=True))
    op.create_index(
        "ix_report_replies_unanswered",
        "report_replies",
        ["chat_uuid", "session_number"],
        sqlite_where=_UNANSWERED,
        postgresql_where=_UNANSWERED,
    )
    op.create_index(
        "ix_report_events_replies",
        "report_events",
        ["chat_uuid", "session_number", "team_id", "operator_uuid", "occurred_at"],
        sqlite_where=_REPLIES_ONLY,
        postgresql_where=_REPLIES_ONLY,
    )


def downgrade() -> None:
    op.drop_index("ix_report_events_replies", table_name="report_events")
    op.drop_index("ix_report_replies_unanswered", table_name="report_replies")
    with op.batch_alter_table("report_replies") as batch:
        batch.drop_column("closed_at")
    with op.batch_alter_table("report_turns") as batch:
        batch.drop_column("closed_at")
        batch.drop_column("handed_off_at")
    op.drop_table("report_operator_sessions")
    op.drop_table("report_times")
    op.create_table(
        "report_lengths",
        sa.Column("scope", _SCOPE, nullable=False),
        sa.Column("metric", sa.String(32), nullable=False),
        sa.Column("hour", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("lengths", sa.LargeBinary(), nullable=False),
        sa.Column("unanswered", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "metric", "hour", name=op.f("pk_report_lengths")),
    )
