"""The feed the live event streams of a process share (cdp.log.feed), on a log in memory.

A fake read lane answers the feed's reads from a list of events and records every event
each read took, so that what the feed reads, and what each follower is handed, can be told
apart. Nothing here is timed: each test waits for what it expects, for a while at most.
"""

import asyncio
import re
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import pytest
from litestar.response import ServerSentEventMessage
from sqlalchemy.exc import OperationalError

from cdp.http.schemas import RawJSON
from cdp.http.serialization import to_json
from cdp.log import feed
from cdp.log.feed import Feed, Follower, filters_of
from cdp.log.queries import Tail
from cdp.log.schemas import Event
from cdp.runtime.metrics import Metrics
from cdp.runtime.service import Bell

PATIENCE = 10  # seconds a test waits for what it expects


def event(position: int, chat: str = "a", event_type: str = "message_created") -> Event:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    return Event(
        position=position,
        event_type=event_type,
        occurred_at=moment,
        received_at=moment,
        chat_uuid=chat,
        profile_uuid=f"p-{chat}",
        source="default",
        body=RawJSON(f'{{"n": {position}}}'),
        erased=False,
        hash="h",
    )


class Lane:
    """Stands for the read lane: queries.feed over `log`, each read's events recorded."""

    def __init__(self, log: list[Event]) -> None:
        self.log = log
        self.reads: list[list[int]] = []  # the positions each read took
        self.opened: list[int] = []  # those some follower wanted opened
        self.failures: list[Exception] = []  # raised by the next reads, in turn

    async def query(
        self, _: object, __: object, *, after: int, limit: int, wanted: Callable[[Any], bool]
    ) -> tuple[Tail, int]:
        await asyncio.sleep(0)
        if self.failures:
            raise self.failures.pop(0)
        later = [item for item in self.log if item.position > after]
        rows, more = later[:limit], len(later) > limit
        self.reads.append([row.position for row in rows])
        head = self.log[-1].position if self.log else 0
        last = rows[-1].position if rows else after
        chosen = [row for row in rows if wanted(row)]
        self.opened += [row.position for row in chosen]
        tail = Tail(chosen, last if more else max(head, last), more)
        return tail, len(rows)

    def read(self) -> list[int]:
        return [position for taken in self.reads for position in taken]


def a_feed(log: list[Event], buffer: int = 1000) -> tuple[Feed, Lane, Bell, Metrics]:
    lane, bell, metrics = Lane(log), Bell(), Metrics()
    the_feed = Feed(lane, None, bell, metrics, poll=0.01, buffer=buffer)  # type: ignore[arg-type]
    return the_feed, lane, bell, metrics


@pytest.fixture(autouse=True)
def at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """No pause between two reads of the feed: these tests make no load to spread."""
    monkeypatch.setattr(feed, "GAP", 0.0)


def sent(*chunks: bytes) -> list[int]:
    """The ids of the messages in what a follower was handed."""
    return [int(found) for found in re.findall(rb"^id: (\d+)\r$", b"".join(chunks), re.M)]


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(PATIENCE * 100):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("still waiting")


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


FILTERS: list[dict[str, str | None]] = [
    {},
    {"chat_uuid": "a"},
    {"chat_uuid": "b"},
    {"event_type": "operator_replied"},
    {"chat_uuid": "a", "event_type": "operator_replied"},
    {"chat_uuid": "nobody"},
]


def test_each_event_is_read_once_and_handed_to_every_follower_that_matches_once() -> None:
    log = [
        event(n, chat="ab"[n % 2], event_type=("message_created", "operator_replied")[n % 3 == 0])
        for n in range(1, 251)
    ]

    async def test() -> None:
        the_feed, lane, _, metrics = a_feed(log)
        given: dict[int, list[bytes]] = {n: [] for n in range(60)}
        followers: list[Follower] = []
        for n in range(60):
            named = FILTERS[n % len(FILTERS)]
            followers.append(
                the_feed.join(filters_of(named), 0, 250, lambda: None)  # ends at 250
            )

        def taken() -> bool:
            for n, follower in enumerate(followers):
                given[n].append(follower.take())
            return all(follower.done for follower in followers)

        await until(taken)
        assert lane.read() == list(range(1, 251))  # every event read once, in pages
        assert all(len(taken) <= feed.PAGE for taken in lane.reads)
        for n, follower in enumerate(followers):
            named = filters_of(FILTERS[n % len(FILTERS)])
            expected = [e.position for e in log if feed.matches(named, e)]
            assert sent(*given[n]) == expected, FILTERS[n % len(FILTERS)]
            assert follower.cut is None
        assert metrics.stream_events.labels("shared")._value.get() == 250
        await until(lambda: not the_feed.running)  # none follows: the feed stops

    run(test)


def test_a_follower_of_positions_alone_is_told_the_log_moved_and_opens_no_event() -> None:
    log = [event(n, chat="ab"[n % 2]) for n in range(1, 11)]

    async def test() -> None:
        the_feed, lane, bell, _ = a_feed(log)
        watcher = the_feed.join((), 3, None, lambda: None, positions_only=True)
        await until(lambda: watcher.moved)
        assert watcher.after == 10
        assert lane.opened == []  # read, but opened for nobody
        assert watcher.take() == b""  # it is handed no message
        watcher.moved = False
        reader = the_feed.join(filters_of({"chat_uuid": "a"}), 10, None, lambda: None)
        log.extend(event(n, chat="ab"[n % 2]) for n in range(11, 15))
        bell.ring()
        await until(lambda: watcher.moved and reader.after == 14)
        assert watcher.after == 14
        assert lane.opened == [12, 14]  # only what the other follower wants
        assert sent(reader.take()) == [12, 14]
        the_feed.leave(watcher)
        the_feed.leave(reader)
        await until(lambda: not the_feed.running)

    run(test)


def test_a_follower_that_joins_behind_the_feed_gets_what_it_missed_and_nothing_twice() -> None:
    log = [event(n) for n in range(1, 11)]

    async def test() -> None:
        the_feed, lane, bell, _ = a_feed(log)
        first = the_feed.join((), 0, None, lambda: None)
        await until(lambda: the_feed.reached == 10)
        behind = the_feed.join((), 4, None, lambda: None)  # within a page of it
        assert the_feed.near(4)
        log.extend(event(n) for n in range(11, 16))
        bell.ring()
        await until(lambda: behind.after == 15 and first.after == 15)
        assert sent(first.take()) == list(range(1, 16))
        assert sent(behind.take()) == list(range(5, 16))
        # Read again for it alone: 5 to 10 are read twice, but opened only for it.
        assert sorted(lane.read()) == sorted([*range(1, 16), *range(5, 11)])
        the_feed.leave(first)
        the_feed.leave(behind)
        await until(lambda: not the_feed.running)

    run(test)


def test_a_stream_far_behind_the_feed_reads_on_its_own() -> None:
    log = [event(n) for n in range(1, 400)]

    async def test() -> None:
        the_feed, _, _, _ = a_feed(log)
        assert the_feed.near(0)  # idle: whoever comes first starts it where it is
        first = the_feed.join((), 300, None, lambda: None)
        await until(lambda: the_feed.reached == 399)
        assert the_feed.near(399 - feed.PAGE)
        assert not the_feed.near(398 - feed.PAGE)
        the_feed.leave(first)

    run(test)


def test_a_follower_whose_client_does_not_take_is_cut_and_gives_its_place_back() -> None:
    log = [event(n) for n in range(1, 6)]

    async def test() -> None:
        the_feed, _, bell, metrics = a_feed(log, buffer=7)
        given_back: list[str] = []
        slow = the_feed.join((), 0, None, lambda: given_back.append("slow"))
        quick = the_feed.join((), 0, None, lambda: given_back.append("quick"))
        received: list[bytes] = []
        for last in range(10, 30, 5):  # it takes nothing: 5, then 10 are more than 7
            await until(lambda last=last: quick.after >= last - 5)  # type: ignore[misc]
            log.extend(event(n) for n in range(last - 4, last + 1))
            received.append(quick.take())
            bell.ring()
        await until(lambda: quick.after == 25)
        received.append(quick.take())
        assert slow.cut == 5  # what it held when the next read would have made it 10
        assert not slow.held
        assert slow.ready.is_set()  # its stream wakes, to say so and end
        assert given_back == ["slow"]  # once
        assert slow not in the_feed.followers
        assert sent(*received) == list(range(1, 26))  # the other goes on, short of nothing
        assert metrics.streams_cut._value.get() == 1
        the_feed.leave(quick)

    run(test)


def test_a_read_that_fails_is_told_and_tried_again_until_the_database_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(feed, "FIRST_WAIT", 0.01)
    log = [event(1)]

    async def test() -> None:
        the_feed, lane, _, _ = a_feed(log)
        lane.failures = [
            OperationalError("SELECT", {}, Exception("gone"), connection_invalidated=True)
        ] * 3
        follower = the_feed.join((), 0, None, lambda: None)
        await until(lambda: the_feed.failing is not None)
        assert follower.ready.is_set()  # woken to say so
        assert the_feed.failing.startswith("database unavailable")
        await until(lambda: follower.after == 1)
        assert the_feed.failing is None
        assert sent(follower.take()) == [1]
        assert not follower.failed
        the_feed.leave(follower)

    run(test)


def test_a_feed_that_breaks_ends_every_follower_and_starts_anew_for_the_next(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = [event(1)]

    async def test() -> None:
        the_feed, lane, _, _ = a_feed(log)
        lane.failures = [RuntimeError("a bug")]
        followers = [the_feed.join((), 0, None, lambda: None) for _ in range(3)]
        await until(lambda: not the_feed.running)
        assert all(follower.failed and follower.ready.is_set() for follower in followers)
        assert not the_feed.followers
        again = the_feed.join((), 0, None, lambda: None)
        await until(lambda: again.after == 1)
        assert sent(again.take()) == [1]
        the_feed.leave(again)

    run(test)
    assert "the reader the streams share failed" in caplog.text


def test_the_feed_stops_with_the_server_though_it_waits_for_the_next_event() -> None:
    async def test() -> None:
        the_feed, _, _, _ = a_feed([event(1)])
        the_feed.poll = 60.0  # a wait no test would sit through
        follower = the_feed.join((), 0, None, lambda: None)
        await until(lambda: follower.after == 1)
        await the_feed.stop()
        assert not the_feed.running

    run(test)


def test_streams_that_come_while_the_feed_is_idle_wait_for_the_one_that_reads() -> None:
    async def test() -> None:
        the_feed, _, _, _ = a_feed([event(1)])
        first = await the_feed.idle_turn()
        assert first is not None
        waiting = asyncio.create_task(the_feed.idle_turn())
        await asyncio.sleep(0.01)
        assert not waiting.done()  # while the first reads
        follower = the_feed.join((), 1, None, lambda: None)  # its read reached the head
        the_feed.found(first)
        assert await waiting is None  # the feed runs: it joins, with no read of its own

        the_feed.leave(follower)
        await until(lambda: not the_feed.running)
        second = await the_feed.idle_turn()
        waiting = asyncio.create_task(the_feed.idle_turn())
        await asyncio.sleep(0.01)
        the_feed.found(second)  # far behind: the feed is still idle
        third = await waiting
        assert third is not None  # the next one's turn
        assert third is not second
        the_feed.found(third)

    run(test)


def test_a_message_is_written_as_litestar_writes_a_server_sent_event() -> None:
    one_line = event(7)
    broken = event(8).model_copy(update={"body": RawJSON('{\r\n "n": 8,\n "m": "a"\r}')})
    for each in (one_line, broken):
        written = ServerSentEventMessage(
            data=to_json(each), event="logged", id=each.position
        ).encode()
        assert feed.message(each) == written
    assert feed.message(broken).count(b"\r\ndata: ") == 4


def test_reads_the_database_refuses_are_tried_a_few_times_then_the_followers_end(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(feed, "FIRST_WAIT", 0.01)
    refused = OperationalError("SELECT", {}, Exception("no such column"))  # no outage

    async def test() -> None:
        the_feed, lane, _, _ = a_feed([event(1)])
        lane.failures = [refused] * feed.REFUSALS
        followers = [the_feed.join((), 0, None, lambda: None) for _ in range(2)]
        await until(lambda: not the_feed.running)
        for follower in followers:
            assert follower.failed == (
                "the database refused a statement (Exception); the server's log says why; "
                "connect again"
            )
            assert follower.ready.is_set()
        assert not lane.reads  # no read went through

        lane.failures = [refused] * (feed.REFUSALS - 1)  # fewer: the read goes through
        again = the_feed.join((), 0, None, lambda: None)
        await until(lambda: again.after == 1)
        assert again.failed is None
        assert sent(again.take()) == [1]
        the_feed.leave(again)

    run(test)
    told = [r for r in caplog.records if "refused the streams' read" in r.getMessage()]
    assert len(told) == 2 * feed.REFUSALS - 1
    assert all(record.exc_info for record in told)  # the server's log says why
