"""SQLite refuses an INSERT that would replace a logged event.

REPLACE INTO, INSERT OR REPLACE, and an INSERT OR REPLACE that hits the unique dedupe_key
all delete the conflicting row without firing its DELETE trigger: on SQLite they overwrote
an event in place. A BEFORE INSERT trigger now refuses any insert that meets a logged row,
by position or by dedupe_key, before its conflict clause is consulted. An ordinary append
names no position and a fresh dedupe_key: two index lookups that find nothing.

SQLite hands a BEFORE INSERT trigger NEW.position = -1 when the position is left to
AUTOINCREMENT, so no logged row may sit below position 1, or every append would meet it.

SQLite also stores any value in any column; a row whose time is text would break every read
of it. A third trigger refuses a row whose columns do not hold the types the model says.

PostgreSQL needs nothing: INSERT ... ON CONFLICT DO UPDATE and MERGE fire the row-level
UPDATE and DELETE trigger of 0001, and it has no REPLACE.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_GUARDS = {
    "events_refuse_overwrite": """
    CREATE TRIGGER events_refuse_overwrite BEFORE INSERT ON events
    WHEN EXISTS (SELECT 1 FROM events WHERE position = NEW.position)
        OR EXISTS (SELECT 1 FROM events WHERE dedupe_key = NEW.dedupe_key)
    BEGIN
        SELECT RAISE(ABORT, 'the event log is append-only: INSERT over a logged event is refused');
    END
    """,
    "events_refuse_wrong_types": """
    CREATE TRIGGER events_refuse_wrong_types BEFORE INSERT ON events
    WHEN typeof(NEW.occurred_at) != 'integer' OR typeof(NEW.received_at) != 'integer'
        OR typeof(NEW.event_type) != 'text' OR typeof(NEW.dedupe_key) != 'text'
        OR typeof(NEW.body) != 'text'
        OR typeof(NEW.chat_uuid) NOT IN ('text', 'null')
        OR typeof(NEW.profile_uuid) NOT IN ('text', 'null')
    BEGIN
        SELECT RAISE(ABORT, 'the event log is append-only: a row of the wrong types is refused');
    END
    """,
    "events_refuse_position_below_1": """
    CREATE TRIGGER events_refuse_position_below_1 AFTER INSERT ON events
    WHEN NEW.position < 1
    BEGIN
        SELECT RAISE(ABORT, 'the event log is append-only: INSERT below position 1 is refused');
    END
    """,
}


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_GUARDS.values():
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in reversed(SQLITE_GUARDS):
            op.execute(f"DROP TRIGGER {name}")
