"""The migrations build exactly the models' schema, and can be undone and redone."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

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


def test_owners_are_filled_from_the_log_the_first_source_to_name_each_keeping_it(
    engine: Engine,
) -> None:
    schema.downgrade(engine, "0006")
    rows = [
        {"position": n, "chat_uuid": chat, "profile_uuid": "p", "source": source}
        for n, (chat, source) in enumerate([("c1", "a"), ("c1", "b"), ("c2", "b")], start=1)
    ]
    with engine.begin() as connection:
        for row in rows:
            connection.execute(
                text(
                    "INSERT INTO events (position, event_type, occurred_at, received_at, "
                    "chat_uuid, profile_uuid, dedupe_key, body, source, hash) VALUES "
                    "(:position, 'message_created', 1, 1, :chat_uuid, :profile_uuid, "
                    ":key, '{}', :source, :key)"
                ),
                {**row, "key": f"{row['position']:064x}"},
            )
    schema.upgrade(engine)
    with engine.connect() as connection:
        owned = dict(connection.execute(text("SELECT subject, source FROM owners")).all())
    assert owned == {"chat:c1": "a", "chat:c2": "b", "profile:p": "a"}
