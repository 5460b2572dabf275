"""A team's turns indexed with what its figures count (how each began, when it was
answered), so that a team's figures over a long period read the index alone.

On SQLite a rebuilt projection's indexes may carry their name with `__next` (see
cdp.builds): the index replaced is dropped under either name.

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    _drop("ix_waits_team_id_started_at")
    op.create_index(
        "ix_waits_team_id_started_at",
        "waits",
        ["team_id", "started_at", "started_by", "replied_at"],
    )


def downgrade() -> None:
    _drop("ix_waits_team_id_started_at")
    op.create_index("ix_waits_team_id_started_at", "waits", ["team_id", "started_at"])


def _drop(name: str) -> None:
    for each in (name, f"{name}__next"):
        op.execute(f'DROP INDEX IF EXISTS "{each}"')
