"""The schema's version: bring a database to the latest migration, or tell how far behind it is."""

from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from cdp import capabilities
from cdp.privacy.keystore import MAIN, Keystore
from cdp.tables import Base

# Every capability's tables, each declared in its own tables module (see cdp.capabilities):
# what Alembic compares the database with, and what a test empties.
TABLES: Final = capabilities.modules("tables")
METADATA: Final = Base.metadata

# Migrations that change the order in which the projectors fold events: a database that
# had events before one of them needs its projections rebuilt once it ran (see upgrade).
REORDERING: Final = ("0009",)


class UpgradeRefused(Exception):
    """A migration that cannot run on this database as it is, and says why; nothing changed."""


def _directory() -> Path:
    packaged = Path(__file__).with_name("migrations")  # in an installed wheel
    return packaged if packaged.is_dir() else Path(__file__).parents[1] / "migrations"


def config(engine: Engine) -> Config:
    alembic = Config()
    alembic.set_main_option("script_location", str(_directory()))
    return alembic


def upgrade(engine: Engine, revision: str = "head", *, keystore: Keystore = MAIN) -> bool:
    """Bring the schema to `revision`; the migrations that rewrite sealed bodies find their
    keys in the main database and in `keystore`, and those that wrap keys find the key file
    of `keystore` (by default the one beside the main database). Whether the projections
    must be rebuilt (see REORDERING): the log held events, and a migration that reorders
    them ran."""
    alembic = config(engine)
    with engine.begin() as connection:
        before = MigrationContext.configure(connection).get_current_revision()
        alembic.attributes["connection"] = connection
        alembic.attributes["keystore"] = keystore
        alembic.attributes["key_file"] = keystore.key_file(engine).path
        command.upgrade(alembic, revision)
        after = MigrationContext.configure(connection).get_current_revision()
        if before is None or after is None or before == after:
            return False
        steps = ScriptDirectory.from_config(alembic).iterate_revisions(after, before)
        crossed = {step.revision for step in steps}
        logged = connection.execute(text("SELECT 1 FROM events LIMIT 1")).first() is not None
        return logged and bool(crossed & set(REORDERING))


def downgrade(engine: Engine, revision: str, *, keystore: Keystore = MAIN) -> None:
    alembic = config(engine)
    with engine.begin() as connection:
        alembic.attributes["connection"] = connection
        alembic.attributes["keystore"] = keystore
        alembic.attributes["key_file"] = keystore.key_file(engine).path
        command.downgrade(alembic, revision)


def pending(engine: Engine) -> tuple[str | None, str]:
    """(current revision, latest revision): equal when the schema is up to date."""
    latest = ScriptDirectory.from_config(config(engine)).get_current_head()
    assert latest is not None
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    return current, latest
