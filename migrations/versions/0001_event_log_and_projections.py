"""The event log, which refuses changes, and the first projections.

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Position = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

SQLITE_GUARDS = [
    f"""
    CREATE TRIGGER events_refuse_{verb.lower()} BEFORE {verb} ON events
    BEGIN
        SELECT RAISE(ABORT, 'the event log is append-only: {verb} on events is refused');
    END
    """
    for verb in ("UPDATE", "DELETE")
]

POSTGRESQL_GUARDS = [
    """
    CREATE FUNCTION events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the event log is append-only: % on events is refused', TG_OP
            USING ERRCODE = 'restrict_violation';
    END
    $$
    """,
    """
    CREATE TRIGGER events_refuse_change BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_refuse_change()
    """,
    """
    CREATE TRIGGER events_refuse_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change()
    """,
]


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("position", Position, autoincrement=True, nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("occurred_at", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.Column("chat_uuid", sa.String(200), nullable=True),
        sa.Column("profile_uuid", sa.String(200), nullable=True),
        sa.Column("dedupe_key", sa.String(64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_events")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_events_dedupe_key")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_chat_uuid_position", "events", ["chat_uuid", "position"])
    op.create_index("ix_events_event_type_position", "events", ["event_type", "position"])
    op.create_index("ix_events_profile_uuid_position", "events", ["profile_uuid", "position"])
    guards = POSTGRESQL_GUARDS if op.get_bind().dialect.name == "postgresql" else SQLITE_GUARDS
    for statement in guards:
        op.execute(statement)

    op.create_table(
        "projection_checkpoints",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_projection_checkpoints")),
    )

    op.create_table(
        "timeline",
        sa.Column("position", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("chat_uuid", sa.String(200), nullable=False),
        sa.Column("occurred_at", sa.BigInteger(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("dedupe_key", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("profile_uuid", sa.String(200), nullable=True),
        sa.Column("platform", sa.Text(), nullable=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.Column("avatar", sa.Text(), nullable=True),
        sa.Column("event_team_id", sa.BigInteger(), nullable=True),
        sa.Column("event_team_name", sa.Text(), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("context", sa.Text(), nullable=True),
        sa.Column("operator_uuid", sa.String(200), nullable=True),
        sa.Column("operator_name", sa.Text(), nullable=True),
        sa.Column("operator_avatar", sa.Text(), nullable=True),
        sa.Column("message", sa.JSON(), nullable=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("session_number", sa.Integer(), nullable=True),
        sa.Column("team_id", sa.BigInteger(), nullable=True),
        sa.Column("team_name", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_timeline")),
    )
    op.create_index(
        "ix_timeline_chat_uuid_order",
        "timeline",
        ["chat_uuid", "occurred_at", "rank", "dedupe_key"],
    )

    op.create_table(
        "sessions",
        sa.Column("chat_uuid", sa.String(200), nullable=False),
        sa.Column("number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("opened_at", sa.BigInteger(), nullable=False),
        sa.Column("last_activity_at", sa.BigInteger(), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("context", sa.Text(), nullable=True),
        sa.Column("teams", sa.JSON(), nullable=False),
        sa.Column("handoffs", sa.Integer(), nullable=False),
        sa.Column("messages_in", sa.Integer(), nullable=False),
        sa.Column("messages_out", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("chat_uuid", "number", name=op.f("pk_sessions")),
    )

    op.create_table(
        "handoffs",
        sa.Column("position", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("chat_uuid", sa.String(200), nullable=False),
        sa.Column("session_number", sa.Integer(), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("from_team_id", sa.BigInteger(), nullable=False),
        sa.Column("from_team_name", sa.Text(), nullable=True),
        sa.Column("to_team_id", sa.BigInteger(), nullable=False),
        sa.Column("to_team_name", sa.Text(), nullable=True),
        sa.Column("dedupe_key", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_handoffs")),
    )
    op.create_index("ix_handoffs_at", "handoffs", ["at", "dedupe_key"])
    op.create_index("ix_handoffs_chat_uuid_at", "handoffs", ["chat_uuid", "at"])
    op.create_index("ix_handoffs_from_team_id_at", "handoffs", ["from_team_id", "at"])
    op.create_index("ix_handoffs_to_team_id_at", "handoffs", ["to_team_id", "at"])

    op.create_table(
        "chats",
        sa.Column("uuid", sa.String(200), nullable=False),
        sa.Column("profile_uuid", sa.String(200), nullable=True),
        sa.Column("platform", sa.Text(), nullable=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.Column("phone_e164", sa.String(20), nullable=True),
        sa.Column("avatar", sa.Text(), nullable=True),
        sa.Column("first_seen_at", sa.BigInteger(), nullable=False),
        sa.Column("last_seen_at", sa.BigInteger(), nullable=False),
        sa.Column("team_id", sa.BigInteger(), nullable=True),
        sa.Column("team_name", sa.Text(), nullable=True),
        sa.Column("operator_uuid", sa.String(200), nullable=True),
        sa.Column("operator_name", sa.Text(), nullable=True),
        sa.Column("operator_avatar", sa.Text(), nullable=True),
        sa.Column("session_number", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("uuid", name=op.f("pk_chats")),
    )
    op.create_index("ix_chats_phone_e164", "chats", ["phone_e164"])
    op.create_index("ix_chats_profile_uuid", "chats", ["profile_uuid"])
    op.create_index("ix_chats_team_id", "chats", ["team_id"])

    op.create_table(
        "profile_chats",
        sa.Column("profile_uuid", sa.String(200), nullable=False),
        sa.Column("chat_uuid", sa.String(200), nullable=False),
        sa.Column("first_seen_at", sa.BigInteger(), nullable=False),
        sa.Column("last_seen_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("profile_uuid", "chat_uuid", name=op.f("pk_profile_chats")),
    )


def downgrade() -> None:
    for table in ("profile_chats", "chats", "handoffs", "sessions", "timeline"):
        op.drop_table(table)
    op.drop_table("projection_checkpoints")
    op.drop_table("events")  # its triggers go with it
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION events_refuse_change()")
