"""Alembic environment: the database is the connection handed in, or CDP_DATABASE_URL.

The one place where the migrations meet cdp's own code: they import none of it (see
tests/unit/test_frozen_migrations.py). A migration that refuses to run raises an exception
of its own marked `migration_refused`; it leaves here as cdp.upgrades.UpgradeRefused, which `cdp
migrate` reports as the schema not upgraded, and why.
"""

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from cdp.db import make_engine
from cdp.settings import Settings
from cdp.upgrades import METADATA, UpgradeRefused

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=METADATA,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    try:
        with context.begin_transaction():
            context.run_migrations()
    except Exception as error:
        if getattr(error, "migration_refused", False) is not True:
            raise
        raise UpgradeRefused(str(error)) from error


if context.is_offline_mode():
    raise SystemExit("cdp migrations run online only: point CDP_DATABASE_URL at the database")

connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    engine = make_engine(config.get_main_option("sqlalchemy.url") or Settings().database_url)
    with engine.connect() as connection:
        run(connection)
    engine.dispose()
