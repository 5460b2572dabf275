"""Webhooks that arrive together are committed together, and each still gets its own answer."""

import asyncio
import json
import threading
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import Connection, Engine, Table, func, select
from sqlalchemy.exc import OperationalError

from cdp import db
from cdp.conversations.tables import chats
from cdp.http.app import create_app
from cdp.log import ingest, rejected
from cdp.log.store import Receipt, Recorded
from cdp.log.tables import events
from cdp.privacy.keystore import MAIN
from cdp.projections import registry
from cdp.runtime.metrics import Metrics
from cdp.runtime.service import Overloaded, Writer
from cdp.settings import Settings
from tests.factories import JSON_TYPE, PAST, webhook


def bodies(count: int) -> list[bytes]:
    return [
        json.dumps(
            webhook("message_created", chat=f"chat-{n % 7}", at=PAST + n, message=str(n))
        ).encode()
        for n in range(count)
    ]


async def post_all(settings: Settings, sent: list[bytes]) -> list[httpx.Response]:
    async with AsyncTestClient(app=create_app(settings)) as client:  # starts and stops the app
        posts = (
            client.post("/webhooks/fasttrack", content=body, headers=JSON_TYPE) for body in sent
        )
        return list(await asyncio.gather(*posts))


def test_a_flood_of_webhooks_gets_one_answer_each_duplicates_and_errors_included(
    settings: Settings, engine: Engine
) -> None:
    fresh = bodies(40)
    not_json = b'{"event_type": '
    no_chat: dict[str, Any] = {"event_type": "message_created", "timestamp": "soon"}
    sent = [*fresh, fresh[3], not_json, json.dumps(no_chat).encode(), fresh[17]]

    answers = asyncio.run(post_all(settings, sent))

    statuses = [answer.status_code for answer in answers]
    assert statuses == [202] * 40 + [200, 400, 422, 200]
    positions = [answer.json()["position"] for answer in answers[:40]]
    assert sorted(positions) == list(range(1, 41))
    assert answers[40].json() == {"position": positions[3], "duplicate": True}
    assert answers[43].json() == {"position": positions[17], "duplicate": True}
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(events)) == 40
        assert connection.scalar(select(func.count()).select_from(chats)) == 7


class Held:
    """A projector whose transactions wait until the test lets them go on."""

    name = "held"
    version = 1
    shape = ""
    tables: tuple[Table, ...] = ()

    def __init__(self) -> None:
        self.entered, self.go_on = threading.Event(), threading.Event()

    def apply(
        self, connection: Connection, batch: Sequence[Recorded], *, fresh: bool, tables: db.Tables
    ) -> None:
        self.entered.set()
        assert self.go_on.wait(timeout=30)

    def forget(self, connection: Connection, chats: Sequence[str], tables: db.Tables) -> None:
        pass


def writer(settings: Settings, engine: Engine, *extra: Held, **options: Any) -> Writer:
    wait = options.pop("wait", timedelta(seconds=30))
    return Writer(
        engine, [*registry.projectors(settings), *extra], settings, wait, MAIN, Metrics(), **options
    )


async def in_a_transaction(held: Held) -> None:
    """Until the writer's thread is inside the transaction the Held projector holds."""
    while not held.entered.is_set():
        await asyncio.sleep(0.005)


def test_webhooks_that_arrive_while_a_transaction_is_open_share_the_next_one(
    settings: Settings, engine: Engine
) -> None:
    held = Held()
    sent = bodies(60)

    async def flood() -> tuple[list[Any], int]:
        writing = writer(settings, engine, held)
        first = asyncio.create_task(writing.record(sent[0]))
        await in_a_transaction(held)
        rest = [asyncio.create_task(writing.record(body)) for body in sent[1:]]
        await asyncio.sleep(0.05)  # every one of them is waiting now
        held.go_on.set()
        return await asyncio.gather(first, *rest), writing.groups

    receipts, groups = asyncio.run(flood())

    assert sorted(receipt.position for receipt in receipts) == list(range(1, 61))
    assert groups == 2


def test_a_full_backlog_answers_busy_at_once_and_stores_nothing_of_what_it_refused(
    settings: Settings, engine: Engine
) -> None:
    held = Held()

    async def flood() -> list[Any]:
        writing = writer(settings, engine, held, backlog=5)
        first = asyncio.create_task(writing.record(bodies(1)[0]))
        await in_a_transaction(held)
        rest = [asyncio.create_task(writing.record(body)) for body in bodies(9)[1:]]
        await asyncio.sleep(0.05)
        held.go_on.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    outcomes = asyncio.run(flood())

    assert [type(outcome) for outcome in outcomes[6:]] == [Overloaded] * 3
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(events)) == 6


def test_a_request_cancelled_while_its_group_commits_holds_up_no_other_and_is_stored(
    settings: Settings, engine: Engine
) -> None:
    held = Held()

    async def flood() -> list[Any]:
        writing = writer(settings, engine, held)
        requests = [asyncio.create_task(writing.record(body)) for body in bodies(10)]
        await in_a_transaction(held)
        requests[0].cancel()  # its client went away
        await asyncio.sleep(0.05)
        held.go_on.set()
        return await asyncio.gather(*requests, return_exceptions=True)

    outcomes = asyncio.run(flood())

    assert isinstance(outcomes[0], asyncio.CancelledError)
    assert sorted(outcome.position for outcome in outcomes[1:]) == list(range(2, 11))
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(events)) == 10


def test_a_webhook_that_waits_too_long_for_a_transaction_is_refused_and_not_stored(
    settings: Settings, engine: Engine
) -> None:
    held = Held()

    async def two() -> list[Any]:
        writing = writer(settings, engine, held, wait=timedelta(seconds=0.1))
        first = asyncio.create_task(writing.record(bodies(1)[0]))
        await in_a_transaction(held)
        second = asyncio.create_task(writing.record(bodies(2)[1]))
        await asyncio.sleep(0.5)  # a transaction that takes its time
        held.go_on.set()
        return list(await asyncio.gather(first, second, return_exceptions=True))

    first, second = asyncio.run(two())

    assert first.position == 1
    assert isinstance(second, Overloaded)
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(events)) == 1


def test_a_stopped_writer_commits_what_waits_and_refuses_what_comes_after(
    settings: Settings, engine: Engine
) -> None:
    held = Held()

    async def around_a_stop() -> list[Any]:
        writing = writer(settings, engine, held)
        requests = [asyncio.create_task(writing.record(body)) for body in bodies(3)]
        await in_a_transaction(held)
        stopping = asyncio.create_task(asyncio.to_thread(writing.stop))
        await asyncio.sleep(0.05)
        late = asyncio.create_task(writing.record(bodies(4)[3]))
        held.go_on.set()
        await stopping
        return await asyncio.gather(*requests, late, return_exceptions=True)

    outcomes = asyncio.run(around_a_stop())

    assert sorted(outcome.position for outcome in outcomes[:3]) == [1, 2, 3]
    assert isinstance(outcomes[3], Overloaded)


def test_a_writer_started_again_after_a_stop_takes_webhooks_again(
    settings: Settings, engine: Engine
) -> None:
    writing = writer(settings, engine)

    async def one(body: bytes) -> Any:
        return await writing.record(body)

    first = asyncio.run(one(bodies(1)[0]))
    writing.stop()
    with pytest.raises(Overloaded):
        asyncio.run(one(bodies(2)[1]))
    writing.start()
    second = asyncio.run(one(bodies(3)[2]))

    assert (first.position, second.position) == (1, 2)


def test_a_group_the_database_fails_is_answered_with_its_error_and_the_writer_goes_on(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    record, calls = ingest.record_in, []

    def lost_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("COMMIT", {}, Exception("server closed the connection"))
        return record(*args, **kwargs)

    monkeypatch.setattr(ingest, "record_in", lost_once)
    writing = writer(settings, engine)
    sent = bodies(1)[0]

    async def one() -> Any:
        return await writing.record(sent)

    with pytest.raises(OperationalError):
        asyncio.run(one())
    assert asyncio.run(one()) == Receipt(position=1, duplicate=False)
    assert writing.groups == 2


def test_stored_webhooks_are_answered_so_though_forgetting_old_rejected_ones_fails(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(*_: Any) -> None:
        raise OperationalError("DELETE", {}, Exception("disk I/O error"))

    monkeypatch.setattr(rejected, "expire", failing)

    async def one() -> Any:
        return await writer(settings, engine).record(bodies(1)[0])

    assert asyncio.run(one()) == Receipt(position=1, duplicate=False)
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(events)) == 1


def test_a_group_that_logged_an_event_rings_the_bell_that_streams_wait_for(
    settings: Settings, engine: Engine
) -> None:
    async def rung() -> bool:
        writing = writer(settings, engine)
        bell = writing.appended.next()  # taken before: a ring cannot be missed
        await writing.record(bodies(1)[0])
        await asyncio.wait_for(bell.wait(), timeout=30)
        await asyncio.to_thread(writing.stop)
        return bell.is_set() and writing.appended.next() is not bell

    assert asyncio.run(rung())


def test_a_build_giving_way_waits_for_the_webhooks_waiting_then_and_not_when_none_wait(
    settings: Settings, engine: Engine
) -> None:
    held = Held()

    async def scenario() -> None:
        writing = writer(settings, engine, held)
        # Nothing waits: it returns at once, not after its minute.
        await asyncio.wait_for(asyncio.to_thread(writing.yield_to_webhooks, 60), 10)
        first = asyncio.create_task(writing.record(bodies(1)[0]))
        await in_a_transaction(held)
        gave = asyncio.create_task(asyncio.to_thread(writing.yield_to_webhooks, 60))
        await asyncio.sleep(0.1)
        assert not gave.done()  # the group being committed is not yet
        held.go_on.set()
        await first
        await asyncio.wait_for(gave, 10)  # once it is, not after its minute

    asyncio.run(scenario())
