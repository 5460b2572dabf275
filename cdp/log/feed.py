"""The one reader of the log that the live event streams of a process share.

A stream that has caught up with the log (see cdp.log.stream) follows this feed: the feed
reads each new event once, in the read lane (off the event loop), opens it once if any
stream wants it, encodes its message once, and hands the message to every stream whose
filters it matches. Each stream holds what it was handed until its client takes it, up to
CDP_STREAM_BUFFER events (and BUFFER_BYTES), and always what one read hands it: a stream
whose client reads slower than events come is cut then, and its place given back; the
client connects again with Last-Event-ID and catches up on its own reads.

The feed runs while a stream follows it and stops when none does. It reads after the
lowest position a stream has reached, a page at a time, when the writer logs events (or
every CDP_STREAM_POLL_INTERVAL, for those another process logs), at most once every GAP
seconds: under load, each read takes what a few groups of webhooks logged. Positions
follow commit order and the head is read first, as for a stream's own reads, so no event
can commit behind what the feed has read.
"""

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import Any, Final

import anyio
from litestar.response import ServerSentEventMessage
from sqlalchemy.exc import SQLAlchemyError

from cdp.http.problems import outage, refused
from cdp.http.serialization import to_json
from cdp.log import queries
from cdp.log.schemas import Event
from cdp.privacy.keystore import Keystore
from cdp.runtime.metrics import Metrics
from cdp.runtime.service import Bell, Lane, Overloaded, Service

logger = logging.getLogger("cdp.api")
NAME: Final = "GET /events/stream"  # how the streams' log lines begin

EVENT: Final = "logged"  # every message's event name, whatever the event's type
PAGE: Final = 100  # events a read takes at most (and no more than queries.PAGE_BYTES of bodies)
GAP: Final = 0.2  # seconds between the starts of two reads of the feed, at least
BUFFER_BYTES: Final = 4 * 1024 * 1024  # of messages a stream holds at most (one at least)
# How long a stream waits at most for another that reads while the feed is idle.
FINDING: Final = 5.0
# After a failed read the next waits 1 s, then twice as long each time, up to 5 s.
FIRST_WAIT: Final = 1.0
LONGEST_WAIT: Final = 5.0
# Reads in a row that the database refuses (not an outage: asking again may well fail
# again) before the streams that wait for them end. An outage is waited out.
REFUSALS: Final = 3
ENDED: Final = "the server could not read the log; connect again"

# A stream's filters: (column, value) pairs, each of which an event must match.
Filters = tuple[tuple[str, str], ...]


def filters_of(named: dict[str, str | None]) -> Filters:
    return tuple(sorted((name, value) for name, value in named.items() if value is not None))


def matches(filters: Filters, event: Any) -> bool:
    """Does `event` (an Event, or a log row) match every filter?"""
    return all(getattr(event, name) == value for name, value in filters)


def message(event: Event) -> bytes:
    """The event's message, as a stream sends it: one `data` line, unless the body came with
    line breaks (then one line each, as ServerSentEventMessage writes them)."""
    data = to_json(event)
    if b"\n" in data or b"\r" in data:
        return ServerSentEventMessage(data=data, event=EVENT, id=event.position).encode()
    return b"id: %d\r\nevent: %s\r\ndata: %s\r\n\r\n" % (event.position, _EVENT, data)


_EVENT: Final = EVENT.encode()


def comment(text: str) -> bytes:
    return ServerSentEventMessage(data=None, comment=text).encode()


class Follower:
    """A stream on the feed: what it asks for, where it is, and the messages it holds."""

    def __init__(
        self,
        filters: Filters,
        after: int,
        until: int | None,
        most: int,
        give_back: Callable[[], None],
        *,
        positions_only: bool = False,
    ) -> None:
        self.filters, self.until, self.most = filters, until, most
        # It wants to know that events were logged, not what they say: it is handed none,
        # and no event is opened for it; `moved` tells it the log moved past `after`.
        self.positions_only = positions_only
        self.moved = False
        # Every event up to here that matches was handed to it (or sent by its own reads).
        self.after = after
        self.give_back = give_back  # its place among the open streams
        self.held: list[bytes] = []  # chunks of messages, each as one read handed them
        self.count = 0  # messages held
        self.size = 0  # bytes held
        self.ready = asyncio.Event()  # set when there is something for the stream to do
        self.done = False  # `until` reached: once what it holds is sent, it ends
        self.cut: int | None = None  # messages it held when it was cut
        self.failed: str | None = None  # the feed failed, and why: it ends

    def hand(self, chunk: bytes, count: int) -> bool:
        """Hold the `count` messages of one read, as one chunk; False if it would then hold
        more than it may, unless it held nothing: it is to be cut."""
        if self.held and (self.count + count > self.most or self.size + len(chunk) > BUFFER_BYTES):
            return False
        self.held.append(chunk)
        self.count += count
        self.size += len(chunk)
        return True

    def take(self) -> bytes:
        """What it holds, at once, to be sent: most often one chunk that every follower of
        the same filters was handed, not copied."""
        held = self.held[0] if len(self.held) == 1 else b"".join(self.held)
        self.held.clear()
        self.count = self.size = 0
        return held


class Feed:
    """The reader every live stream of this process follows (see the module)."""

    def __init__(
        self,
        lane: Lane,
        keystore: Keystore,
        bell: Bell,
        metrics: Metrics,
        poll: float,
        buffer: int,
    ) -> None:
        self.lane, self.keystore, self.bell, self.metrics = lane, keystore, bell, metrics
        self.poll, self.buffer = poll, buffer
        self.followers: dict[Follower, None] = {}  # in the order they joined
        self.failing: str | None = None  # why reads fail, while they do
        self.reached = 0  # where the last read ended, while the feed runs
        self._task: asyncio.Task[None] | None = None
        self._finding: asyncio.Event | None = None  # a stream reads while the feed is idle

    @classmethod
    def of(cls, service: Service) -> "Feed":
        settings = service.settings
        return cls(
            service.reads,
            service.keystore,
            service.webhooks.appended,
            service.metrics,
            settings.stream_poll_interval.total_seconds(),
            settings.stream_buffer,
        )

    @property
    def running(self) -> bool:
        return self._task is not None

    def near(self, after: int) -> bool:
        """Is a stream that has read up to `after` near enough to follow the feed: is the feed
        idle, or no more than a page ahead of it?"""
        return self._task is None or self.reached - after <= PAGE

    def join(
        self,
        filters: Filters,
        after: int,
        until: int | None,
        give_back: Callable[[], None],
        *,
        positions_only: bool = False,
    ) -> Follower:
        """Follow the feed from `after` (starting it, if no stream did): the events after it
        that match are handed to the follower as they are read; or, `positions_only`, only
        word that there are some (see Follower)."""
        follower = Follower(
            filters, after, until, self.buffer, give_back, positions_only=positions_only
        )
        self.followers[follower] = None
        if self._task is None:
            self.reached = after
            self._task = asyncio.get_running_loop().create_task(self._run(), name="cdp-feed")
        return follower

    async def idle_turn(self) -> asyncio.Event | None:
        """For a stream about to read while the feed is idle: wait while another one reads
        (FINDING at most), since its read may find the head and start the feed; then take
        the turn, unless the feed runs by then (None). Given back with found(), once the
        stream has joined, if it could: so many streams that come at once read the log
        once, not each."""
        while self._task is None and self._finding is not None:
            finding = self._finding
            with anyio.move_on_after(FINDING) as waited:
                await finding.wait()
            if waited.cancelled_caught:
                break
        if self._task is not None:
            return None
        self._finding = turn = asyncio.Event()
        return turn

    def found(self, turn: asyncio.Event | None) -> None:
        """Give back a turn that idle_turn() gave."""
        if turn is not None:
            if self._finding is turn:
                self._finding = None
            turn.set()

    def leave(self, follower: Follower) -> None:
        self.followers.pop(follower, None)

    def wake(self) -> None:
        """Wake every follower: the server is stopping, or the feed's state changed."""
        for follower in self.followers:
            follower.ready.set()

    async def stop(self) -> None:
        """As the server stops, once its streams have ended: end the reader now rather than
        after its wait."""
        task = self._task
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        """Read, hand over, wait for the bell; until no stream follows."""
        started = -math.inf  # when the last read began
        wait = FIRST_WAIT
        rejections = 0  # reads the database refused in a row
        try:
            while self.followers:  # checked with no wait before the end: a join starts anew
                ring = self.bell.next()
                chosen = list(self.followers)
                after = min(follower.after for follower in chosen)
                wanted = _wanted(chosen)
                started = time.monotonic()
                try:
                    tail, read = await self.lane.query(
                        queries.feed, self.keystore, after=after, limit=PAGE, wanted=wanted
                    )
                except (Overloaded, SQLAlchemyError) as error:
                    if refused(error):
                        rejections += 1
                        logger.error(
                            "%s: the database refused the streams' read (%d in a row)",
                            NAME,
                            rejections,
                            exc_info=error,
                        )
                        if rejections >= REFUSALS:
                            self._end(f"{outage(error)}; connect again")
                            return
                    if self.failing is None:
                        wait = FIRST_WAIT
                        self.failing = outage(error)
                        logger.warning(
                            "%s: %s (%s); trying again", NAME, self.failing, type(error).__name__
                        )
                        self.wake()
                    else:
                        wait = min(wait * 2, LONGEST_WAIT)
                    await anyio.sleep(wait)
                    continue
                rejections = 0
                if self.failing is not None:
                    logger.info("%s: the database answers again", NAME)
                    self.failing = None
                    self.wake()
                self.metrics.stream_events.labels("shared").inc(read)
                self._hand(chosen, tail)
                if tail.more:
                    continue
                with anyio.move_on_after(self.poll):
                    await ring.wait()
                soon = started + GAP - time.monotonic()
                if soon > 0:
                    await anyio.sleep(soon)
        except Exception:
            logger.exception("%s: the reader the streams share failed; they end", NAME)
            self._end(ENDED)
        finally:
            self._task = None

    def _end(self, why: str) -> None:
        """End every follower, which says `why`."""
        for follower in self.followers:
            follower.failed = why
            follower.ready.set()
        self.followers.clear()

    def _hand(self, chosen: list[Follower], tail: queries.Tail) -> None:
        """Hand each event read to every follower (of those the read was for) that wants it:
        the events that match a set of filters are found, and encoded, once."""
        alike: dict[Filters, list[Follower]] = {}
        for follower in chosen:
            if follower not in self.followers:  # gone while the page was read
                continue
            if follower.positions_only:
                if tail.read_to > follower.after:
                    follower.after, follower.moved = tail.read_to, True
                    follower.ready.set()
                continue
            alike.setdefault(follower.filters, []).append(follower)
        encoded: dict[int, bytes] = {}  # by position
        for filters, followers in alike.items():
            found = [event for event in tail.items if matches(filters, event)]
            if not found:
                continue
            for event in found:
                if event.position not in encoded:
                    encoded[event.position] = message(event)
            messages = [encoded[event.position] for event in found]
            chunk = b"".join(messages)  # for every follower that wants all of them
            first, last = found[0].position, found[-1].position
            for follower in followers:
                after, until = follower.after, follower.until
                if after < first and (until is None or last <= until):  # as most do
                    handed = follower.hand(chunk, len(messages))
                else:
                    mine = [
                        each
                        for event, each in zip(found, messages, strict=True)
                        if after < event.position and (until is None or event.position <= until)
                    ]
                    handed = not mine or follower.hand(b"".join(mine), len(mine))
                if not handed:
                    self._cut(follower)
        self.reached = tail.read_to
        for followers in alike.values():
            for follower in followers:
                if follower.cut is not None:
                    continue
                follower.after = max(follower.after, tail.read_to)
                if follower.until is not None and follower.after >= follower.until:
                    follower.done = True  # it wants no more
                    self.leave(follower)
                if follower.held or follower.done:
                    follower.ready.set()

    def _cut(self, follower: Follower) -> None:
        """A follower whose client does not read what it holds: let it go, and its place."""
        follower.cut = follower.count
        follower.take()
        self.leave(follower)
        follower.give_back()
        follower.ready.set()
        self.metrics.streams_cut.inc()
        logger.info(
            "%s: cut: its client did not read the %d events it held (CDP_STREAM_BUFFER)",
            NAME,
            follower.cut,
        )


def _wanted(followers: Iterable[Follower]) -> Callable[[Any], bool]:
    """Does any of `followers` want the event of a log row? Asked in a worker thread, of the
    followers as they were when the read began."""
    lowest: dict[Filters, int] = {}
    for follower in followers:
        if follower.positions_only:  # it opens nothing
            continue
        lowest[follower.filters] = min(lowest.get(follower.filters, follower.after), follower.after)
    wants = list(lowest.items())

    def wanted(row: Any) -> bool:
        return any(row.position > after and matches(filters, row) for filters, after in wants)

    return wanted
