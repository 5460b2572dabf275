"""Sources and tokens: who may post webhooks and who may read; each event names its source.

Events logged before sources existed came to the one address there was: source "default".

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 0002's guard, with the new column: SQLite stores any value in any column.
WRONG_TYPES = """
    CREATE TRIGGER events_refuse_wrong_types BEFORE INSERT ON events
    WHEN typeof(NEW.occurred_at) != 'integer' OR typeof(NEW.received_at) != 'integer'
        OR typeof(NEW.event_type) != 'text' OR typeof(NEW.dedupe_key) != 'text'
        OR typeof(NEW.body) != 'text'
        OR typeof(NEW.chat_uuid) NOT IN ('text', 'null')
        OR typeof(NEW.profile_uuid) NOT IN ('text', 'null'){source}
    BEGIN
        SELECT RAISE(ABORT, 'the event log is append-only: a row of the wrong types is refused');
    END
"""


def upgrade() -> None:
    # A plain ADD COLUMN, never a table copy: the log's rows and triggers stay as they are.
    op.add_column(
        "events",
        sa.Column("source", sa.String(64), server_default=sa.text("'default'"), nullable=False),
    )
    op.create_index("ix_events_source_position", "events", ["source", "position"])
    op.create_table(
        "sources",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("secret_digest", sa.String(64), nullable=False),
        sa.Column("previous_digest", sa.String(64), nullable=True),
        sa.Column("previous_until", sa.BigInteger(), nullable=True),
        sa.Column("signing_key", sa.Text(), nullable=True),
        sa.Column("previous_signing_key", sa.Text(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_sources")),
    )
    op.create_table(
        "tokens",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(10), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_tokens")),
        sa.UniqueConstraint("digest", name=op.f("uq_tokens_digest")),
    )
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER events_refuse_wrong_types")
        op.execute(WRONG_TYPES.format(source="\n        OR typeof(NEW.source) != 'text'"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER events_refuse_wrong_types")
        op.execute(WRONG_TYPES.format(source=""))
    op.drop_table("tokens")
    op.drop_table("sources")
    op.drop_index("ix_events_source_position", table_name="events")
    with op.batch_alter_table("events", recreate="never") as batch:
        batch.drop_column("source")
