"""The migrations build exactly the models' schema, and can be undone and redone."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from cdp import schema
from cdp.models import Base


def drift(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_the_models_and_the_migrations_do_not_drift(engine: Engine) -> None:
    assert drift(engine) == []


def test_upgrade_downgrade_upgrade_leaves_the_same_schema(engine: Engine) -> None:
    schema.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    schema.upgrade(engine)
    assert drift(engine) == []
    assert schema.pending(engine)[0] == schema.pending(engine)[1]
    assert {"events", "timeline", "sessions", "handoffs", "chats", "profile_chats"} <= set(
        inspect(engine).get_table_names()
    )
