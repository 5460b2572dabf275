"""PostgreSQL, as SQLite's guard already does, refuses a log row without a hash.

A CHECK, not NOT NULL: the column stays as the model and SQLite have it (nullable only
because SQLite adds no NOT NULL column to a table with rows); every row has one since 0006.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE events ADD CONSTRAINT ck_events_hash CHECK (hash IS NOT NULL)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE events DROP CONSTRAINT ck_events_hash")
