"""Webhooks that arrive together are committed together, and each still gets its own answer."""

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import httpx
from litestar.testing import AsyncTestClient
from sqlalchemy import Engine, func, select

from cdp.api import create_app
from cdp.api.service import Busy, Lane, Writer
from cdp.models import chats, events
from cdp.projectors import registry
from cdp.settings import Settings
from tests.factories import PAST, webhook

T = TypeVar("T")


def bodies(count: int) -> list[bytes]:
    return [
        json.dumps(
            webhook("message_created", chat=f"chat-{n % 7}", at=PAST + n, message=str(n))
        ).encode()
        for n in range(count)
    ]


async def post_all(settings: Settings, sent: list[bytes]) -> list[httpx.Response]:
    async with AsyncTestClient(app=create_app(settings)) as client:  # starts and stops the app
        posts = (client.post("/webhooks/fasttrack", content=body) for body in sent)
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


def test_webhooks_that_arrive_while_a_transaction_is_open_share_the_next_one(
    settings: Settings, engine: Engine
) -> None:
    sent = bodies(60)

    async def flood() -> tuple[list[Any], int]:
        lane = Lane("webhooks", 1, timedelta(seconds=30), engine)
        writer = Writer(lane, registry(settings), settings)
        receipts = await asyncio.gather(*(writer.record(body) for body in sent))
        return receipts, writer.groups

    receipts, groups = asyncio.run(flood())

    assert sorted(receipt.position for receipt in receipts) == list(range(1, 61))
    assert groups < len(sent)


def test_a_full_backlog_answers_busy_at_once_and_stores_nothing_of_what_it_refused(
    settings: Settings, engine: Engine
) -> None:
    async def flood() -> list[Any]:
        lane = Lane("webhooks", 1, timedelta(seconds=30), engine)
        writer = Writer(lane, registry(settings), settings, backlog=5)
        return await asyncio.gather(
            *(writer.record(body) for body in bodies(8)), return_exceptions=True
        )

    outcomes = asyncio.run(flood())

    assert [type(outcome) for outcome in outcomes[5:]] == [Busy] * 3
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(events)) == 5


def test_a_request_cancelled_while_its_group_commits_holds_up_no_other_and_is_stored(
    settings: Settings, engine: Engine
) -> None:
    async def flood() -> list[Any]:
        lane = Lane("webhooks", 1, timedelta(seconds=30), engine)
        writer = Writer(lane, registry(settings), settings)
        requests = [asyncio.create_task(writer.record(body)) for body in bodies(10)]
        await asyncio.sleep(0)  # every body is waiting for the group now
        requests[0].cancel()  # its client went away
        return await asyncio.gather(*requests, return_exceptions=True)

    outcomes = asyncio.run(flood())

    assert isinstance(outcomes[0], asyncio.CancelledError)
    assert sorted(outcome.position for outcome in outcomes[1:]) == list(range(2, 11))
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(events)) == 10


def test_a_webhook_that_waits_too_long_for_a_transaction_is_refused_and_not_stored(
    settings: Settings, engine: Engine
) -> None:
    class SlowLane(Lane):
        async def run(self, work: Callable[[], T]) -> T:
            await asyncio.sleep(0.5)  # a transaction that takes its time
            return await super().run(work)

    async def two() -> list[Any]:
        writer = Writer(SlowLane("webhooks", 1, timedelta(seconds=0.1), engine), [], settings)
        first = asyncio.create_task(writer.record(bodies(1)[0]))
        await asyncio.sleep(0.01)  # the first is in its transaction now
        second = asyncio.create_task(writer.record(bodies(2)[1]))
        return await asyncio.gather(first, second, return_exceptions=True)

    first, second = asyncio.run(two())

    assert first.position == 1
    assert isinstance(second, Busy)
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(events)) == 1
