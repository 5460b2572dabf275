"""Indexes in the order the API lists things, so that a page is read rather than sorted.

The log filtered by chat (or profile) and type at once used the type's index alone and
read every event of the type; a team's chats and the handoff lists were sorted whole for
each page.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW = {
    "ix_events_chat_uuid_event_type": ("events", ["chat_uuid", "event_type", "position"]),
    "ix_events_profile_uuid_event_type": ("events", ["profile_uuid", "event_type", "position"]),
    "ix_handoffs_chat_uuid_order": ("handoffs", ["chat_uuid", "at", "dedupe_key"]),
    "ix_handoffs_from_team_id_order": ("handoffs", ["from_team_id", "at", "dedupe_key"]),
    "ix_handoffs_to_team_id_order": ("handoffs", ["to_team_id", "at", "dedupe_key"]),
    "ix_chats_team_id_order": ("chats", ["team_id", "last_seen_at", "uuid"]),
}
OLD = {
    "ix_handoffs_chat_uuid_at": ("handoffs", ["chat_uuid", "at"]),
    "ix_handoffs_from_team_id_at": ("handoffs", ["from_team_id", "at"]),
    "ix_handoffs_to_team_id_at": ("handoffs", ["to_team_id", "at"]),
    "ix_chats_team_id": ("chats", ["team_id"]),
}


def upgrade() -> None:
    for name, (table, columns) in NEW.items():
        op.create_index(name, table, columns)
    for name, (table, _) in OLD.items():
        op.drop_index(name, table_name=table)


def downgrade() -> None:
    for name, (table, columns) in OLD.items():
        op.create_index(name, table, columns)
    for name, (table, _) in NEW.items():
        op.drop_index(name, table_name=table)
