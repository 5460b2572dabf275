"""Each chat and profile belongs to one source; chats and handoffs say which.

`owners` records the source of every chat and profile the log names, from the log: where
an older log has one named by two sources, the first to deliver it keeps it.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FIRST_SOURCE = """
    INSERT INTO owners (subject, source)
    SELECT '{kind}:' || e.{column}, e.source FROM events e
    WHERE e.position IN (
        SELECT min(position) FROM events WHERE {column} IS NOT NULL GROUP BY {column}
    )
"""


def upgrade() -> None:
    op.create_table(
        "owners",
        sa.Column("subject", sa.String(210), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("subject", name=op.f("pk_owners")),
    )
    for table in ("chats", "handoffs"):
        with op.batch_alter_table(table, recreate="never") as batch:
            batch.add_column(
                sa.Column(
                    "source", sa.String(64), server_default=sa.text("'default'"), nullable=False
                )
            )
    op.execute(FIRST_SOURCE.format(kind="chat", column="chat_uuid"))
    op.execute(FIRST_SOURCE.format(kind="profile", column="profile_uuid"))
    for table, chat in (("chats", "uuid"), ("handoffs", "chat_uuid")):
        op.execute(
            f"UPDATE {table} SET source = (SELECT source FROM owners "
            f"WHERE owners.subject = 'chat:' || {table}.{chat}) "
            f"WHERE EXISTS (SELECT 1 FROM owners WHERE owners.subject = 'chat:' || {table}.{chat})"
        )


def downgrade() -> None:
    for table in ("handoffs", "chats"):
        with op.batch_alter_table(table, recreate="never") as batch:
            batch.drop_column("source")
    op.drop_table("owners")
