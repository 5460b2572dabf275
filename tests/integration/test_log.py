"""The event log on each database: append-only, idempotent, positions in commit order."""

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from cdp import db
from cdp.db import make_engine
from cdp.log import ingest, queries, store
from cdp.privacy.keystore import MAIN
from cdp.projections import registry
from cdp.projections.runner import log_state
from cdp.settings import Settings
from tests.conftest import empty
from tests.factories import PAST, checked, samples, webhook


def append(engine: Engine, settings: Settings, *bodies: dict[str, object]) -> list[store.Receipt]:
    batch = [checked(json.dumps(body)) for body in bodies]
    return ingest.record(engine, batch, registry.projectors(settings), keystore=MAIN)


def test_positions_increase_in_append_order(engine: Engine, settings: Settings) -> None:
    receipts = ingest.record(
        engine, [checked(body) for body in samples()], registry.projectors(settings), keystore=MAIN
    )
    positions = [receipt.position for receipt in receipts]
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)
    assert not any(receipt.duplicate for receipt in receipts)


def test_a_body_delivered_twice_is_stored_once(engine: Engine, settings: Settings) -> None:
    body = webhook("message_created", message="hi")
    (first,) = append(engine, settings, body)
    (again,) = ingest.record(
        engine, [checked(json.dumps(body, indent=2))], registry.projectors(settings), keystore=MAIN
    )
    assert again == store.Receipt(position=first.position, duplicate=True)
    with engine.connect() as connection:
        assert len(store.read(connection)) == 1


def test_a_repeat_within_one_batch_is_a_duplicate_of_its_first_copy(
    engine: Engine, settings: Settings
) -> None:
    one, two = webhook("message_created", message="one"), webhook("message_created", message="two")
    receipts = append(engine, settings, one, two, one)
    assert [receipt.duplicate for receipt in receipts] == [False, False, True]
    assert receipts[2].position == receipts[0].position


@pytest.mark.parametrize(
    "statement", ["UPDATE events SET event_type = 'edited'", "DELETE FROM events"]
)
def test_the_database_refuses_to_change_the_log(
    engine: Engine, settings: Settings, statement: str
) -> None:
    append(engine, settings, webhook("message_created", message="kept"))
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(text(statement))
    with engine.connect() as connection:
        (row,) = store.read(connection)
    assert row.event_type == "message_created"


def test_postgresql_refuses_to_truncate_the_log(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
            connection.execute(text("TRUNCATE events CASCADE"))
    finally:
        engine.dispose()


def test_a_second_writer_waits_so_positions_follow_commit_order(
    engine: Engine, settings: Settings
) -> None:
    """A reader resuming after position N never misses an event that committed later."""
    projectors = registry.projectors(settings)
    appended = threading.Event()
    second: list[store.Receipt] = []

    def write_second() -> None:
        appended.wait()
        second.extend(
            ingest.record(
                engine,
                [checked(json.dumps(webhook("message_created", message="2")))],
                projectors,
                keystore=MAIN,
            )
        )

    writer = threading.Thread(target=write_second)
    writer.start()
    first = checked(json.dumps(webhook("message_created", message="1")))
    with db.writing(engine) as connection:
        store.lock(connection)
        subjects = [f"chat:{first.webhook.chat_uuid}"]
        ring = MAIN.ring(connection, subjects, MAIN.known(connection, subjects, ()))
        head, *_ = log_state(connection)
        receipts, _ = store.append(connection, [first], head=head, ring=ring)
        appended.set()
        writer.join(timeout=0.5)
        assert writer.is_alive(), "the second append did not wait for the first to commit"
    writer.join(timeout=30)
    assert second[0].position > receipts[0].position


def test_a_large_batch_is_stored_as_the_same_webhooks_one_at_a_time(
    settings: Settings, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Large batches take the bulk path (COPY on PostgreSQL): same rows, same positions."""
    bodies = [
        webhook("message_created", chat=f"chat-{n % 3}", at=PAST + n, message=f"Привет\t{n}\\")
        for n in range(120)
    ]
    stored = []
    for sizes in ([1] * len(bodies), [len(bodies)]):
        url = settings.database_url
        if url.startswith("sqlite"):
            shutil.copy(request.getfixturevalue("sqlite_template"), tmp_path / f"{len(sizes)}.db")
            url = f"sqlite:///{tmp_path / f'{len(sizes)}.db'}"
        else:
            empty(url)
        settings = settings.model_copy(update={"database_url": url})
        engine = make_engine(url)
        start = 0
        for size in sizes:
            append(engine, settings, *bodies[start : start + size])
            start += size
        with engine.connect() as connection:
            logged = [(r.position, r.chat_uuid, r.body) for r in store.read(connection)]
            rows = connection.execute(
                text("SELECT position, chat_uuid, message, session_number FROM timeline")
            ).all()
            sealers = MAIN.sealers(connection, {row.chat_uuid for row in rows})
        engine.dispose()
        messages = sorted(
            (p, _json(sealers[chat].open("message", m)), n)  # type: ignore[union-attr]
            for p, chat, m, n in rows
        )
        stored.append((logged, messages))
    assert stored[0] == stored[1]
    assert stored[1][1][7][1]["text"] == "Привет\t7\\"
    assert [position for position, _, _ in stored[1][0]] == list(range(1, 121))


def _json(value: str | None) -> Any:
    """A message as the timeline keeps it: JSON text, once opened."""
    return None if value is None else json.loads(value)


def test_a_reader_that_follows_the_log_reads_on_from_the_head_not_from_its_last_match(
    engine: Engine, settings: Settings
) -> None:
    append(
        engine,
        settings,
        *(webhook("message_created", chat=c, at=PAST + n) for n, c in enumerate("abbb")),
    )
    with engine.connect() as connection:
        first = queries.tail(connection, MAIN, after=0, limit=100, chat_uuid="a")
        full = queries.tail(connection, MAIN, after=0, limit=2)
        rest = queries.tail(connection, MAIN, after=full.read_to, limit=2)
        past = queries.tail(connection, MAIN, after=9, limit=2)

    assert ([e.position for e in first.items], first.read_to, first.more) == ([1], 4, False)
    assert ([e.position for e in full.items], full.read_to, full.more) == ([1, 2], 2, True)
    assert ([e.position for e in rest.items], rest.read_to, rest.more) == ([3, 4], 4, False)
    assert (past.items, past.read_to, past.more) == ([], 9, False)
