"""Projections record what built them, and builds beside the live ones their progress.

A checkpoint gains the version of the projector and the settings that built its tables
(NULL for tables built before: the server builds them anew, beside them, as it starts);
`projection_builds` holds the latest build of each projection (see cdp.builds).

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("projection_checkpoints") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("shape", sa.Text(), nullable=True))
        batch.add_column(sa.Column("built_at", sa.BigInteger(), nullable=True))
    op.create_table(
        "projection_builds",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("heartbeat_at", sa.BigInteger(), nullable=False),
        sa.Column("done", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_projection_builds")),
    )


def downgrade() -> None:
    op.drop_table("projection_builds")
    with op.batch_alter_table("projection_checkpoints") as batch:
        batch.drop_column("built_at")
        batch.drop_column("shape")
        batch.drop_column("version")
