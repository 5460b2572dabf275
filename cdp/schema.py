"""The schema's version: bring a database to the latest migration, or tell how far behind it is."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine


def _directory() -> Path:
    packaged = Path(__file__).with_name("migrations")  # in an installed wheel
    return packaged if packaged.is_dir() else Path(__file__).parents[1] / "migrations"


def config(engine: Engine) -> Config:
    alembic = Config()
    alembic.set_main_option("script_location", str(_directory()))
    return alembic


def upgrade(engine: Engine, revision: str = "head") -> None:
    alembic = config(engine)
    with engine.begin() as connection:
        alembic.attributes["connection"] = connection
        command.upgrade(alembic, revision)


def downgrade(engine: Engine, revision: str) -> None:
    alembic = config(engine)
    with engine.begin() as connection:
        alembic.attributes["connection"] = connection
        command.downgrade(alembic, revision)


def pending(engine: Engine) -> tuple[str | None, str]:
    """(current revision, latest revision): equal when the schema is up to date."""
    latest = ScriptDirectory.from_config(config(engine)).get_current_head()
    assert latest is not None
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    return current, latest
