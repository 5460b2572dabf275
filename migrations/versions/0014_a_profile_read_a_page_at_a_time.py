"""A profile read a page at a time, whatever the number of its chats: its chats indexed in
the order it lists them, when it was first and last named read from one end of an index
each, and the profiles owning chats of a phone number indexed in order, with the number.

On SQLite a rebuilt projection's indexes may carry their name with `__next` (see
cdp.builds): an index replaced is dropped under either name.

Revision ID: 0014
Revises: 0013
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for name in ("ix_chats_profile_uuid", "ix_chats_phone_e164"):
        _drop(name)
    op.create_index("ix_chats_phone_e164", "chats", ["phone_e164", "profile_uuid"])
    op.create_index(
        "ix_chats_profile_uuid_order", "chats", ["profile_uuid", "first_seen_at", "uuid"]
    )
    op.create_index(
        "ix_profile_chats_first_seen_at", "profile_chats", ["profile_uuid", "first_seen_at"]
    )
    op.create_index(
        "ix_profile_chats_last_seen_at",
        "profile_chats",
        ["profile_uuid", "last_seen_at", "chat_uuid"],
    )


def downgrade() -> None:
    for name in (
        "ix_profile_chats_last_seen_at",
        "ix_profile_chats_first_seen_at",
        "ix_chats_profile_uuid_order",
        "ix_chats_phone_e164",
    ):
        _drop(name)
    op.create_index("ix_chats_phone_e164", "chats", ["phone_e164"])
    op.create_index("ix_chats_profile_uuid", "chats", ["profile_uuid"])


def _drop(name: str) -> None:
    """Drop an index of a projection by its name, or by the name a build may have given it
    on SQLite."""
    for each in (name, f"{name}__next"):
        op.execute(f'DROP INDEX IF EXISTS "{each}"')
