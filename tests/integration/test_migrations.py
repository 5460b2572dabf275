"""The migrations build exactly the models' schema, and can be undone and redone."""

import json

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from cdp import chain, log, schema
from cdp.keystore import MAIN
from cdp.models import Base
from cdp.projectors import keys
from tests.factories import PAST, webhook


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


def test_events_logged_before_sealing_are_sealed_and_chained_once(engine: Engine) -> None:
    schema.downgrade(engine, "0005")
    bodies = [
        json.dumps(webhook("message_created", chat=chat, at=PAST + n, phone="+79991234567"))
        for n, chat in enumerate(["c1", "c2", "c1"])
    ]
    with engine.begin() as connection:
        for n, body in enumerate(bodies, start=1):
            connection.execute(
                text(
                    "INSERT INTO events (position, event_type, occurred_at, received_at, "
                    "chat_uuid, profile_uuid, dedupe_key, body) VALUES (:n, 'message_created', "
                    ":n, :n, :chat, 'p', :key, :body)"
                ),
                {
                    "n": n,
                    "chat": json.loads(body)["payload"]["chat"]["uuid"],
                    "key": f"{n:064x}",
                    "body": body,
                },
            )
    schema.upgrade(engine)
    with engine.connect() as connection:
        rows = log.read(connection)
        opened = log.bodies(rows, keys(connection, MAIN))
        assert chain.verify(connection).broken_at is None
        assert connection.scalar(text("SELECT count(*) FROM keys")) == 2  # one per chat
    assert [body for body, _ in opened] == bodies
    assert all("+7999" not in row.body and row.sealed for row in rows)
