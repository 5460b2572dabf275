"""GET /events/stream: the log as Server-Sent Events, followed live from a position.

Each event goes out once, in position order, with its position as the message's id: a
reader that comes back with Last-Event-ID (or `after`) takes up exactly where it left.
Positions follow commit order, so reading "after the last one sent" never skips an event
that committed late.

A stream first catches up on its own reads, a page at a time; once a read reaches the
head, it follows the feed that every live stream of the process shares (cdp.log.feed),
which reads and opens each new event once. While the database is away a stream waits and
says so in comments. It ends when the reader leaves, its token is revoked, `until` is
reached, or the server stops; and it is cut when its client does not read what the feed
hands it (CDP_STREAM_BUFFER).
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Annotated, Any, Final

from litestar import Controller, Request, get
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency
from litestar.exceptions import ServiceUnavailableException
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    Schema,
)
from litestar.params import FromQuery, HeaderParameter, QueryParameter
from litestar.response import ServerSentEventMessage, Stream
from sqlalchemy.exc import SQLAlchemyError

from cdp.access import auth
from cdp.access.auth import Gate
from cdp.http import params
from cdp.http.openapi import problem
from cdp.http.problems import outage, refused
from cdp.log import queries
from cdp.log.feed import (
    EVENT,
    FIRST_WAIT,
    LONGEST_WAIT,
    NAME,
    PAGE,
    REFUSALS,
    Feed,
    Follower,
    comment,
    filters_of,
    message,
)
from cdp.log.webhook import INT64_MAX
from cdp.runtime.metrics import Metrics
from cdp.runtime.service import Overloaded, Service

logger = logging.getLogger("cdp.api")

RETRY_MS: Final = 2000  # how long a reader waits before it connects again
_RETRY_AFTER: Final = "5"  # seconds, when every stream is taken
_CHECK_EVERY: Final = 1.0  # seconds: how often a live stream asks whether its token still holds
# As Litestar's ServerSentEvent answers: no cache, and no buffering by a proxy.
_HEADERS: Final = {
    "Cache-Control": "no-cache",
    "Connection": "keep-alive",
    "X-Accel-Buffering": "no",
}


class Streams:
    """The streams open in this process: `most` at once, `per_token` of them for one read
    token, each ended when the server stops; and the feed the live ones follow."""

    def __init__(self, most: int, per_token: int, feed: Feed, metrics: Metrics) -> None:
        self.most, self.per_token, self.feed, self.metrics = most, per_token, feed, metrics
        self.open = 0
        self.by_token: dict[str, int] = {}
        self.closing = False
        self.stopping = asyncio.Event()  # set as the server stops

    def admit(self, token: str | None) -> "Slot":
        """A place for one more stream of `token` (None: the store is open, and only the
        total counts); 503 if every one is taken, or every one the token may hold, or the
        server is stopping."""
        if self.closing:
            raise ServiceUnavailableException(
                "the server is stopping: connect again", headers={"Retry-After": _RETRY_AFTER}
            )
        if token is not None and self.by_token.get(token, 0) >= self.per_token:
            raise ServiceUnavailableException(
                f"too many event streams for token {token!r}: it may keep at most "
                f"{self.per_token} open at once on this server (CDP_MAX_STREAMS_PER_TOKEN); "
                "close one, or retry later",
                headers={"Retry-After": _RETRY_AFTER},
            )
        if self.open >= self.most:
            raise ServiceUnavailableException(
                f"too many event streams: this server keeps at most {self.most} open at once "
                "(CDP_MAX_STREAMS); retry later",
                headers={"Retry-After": _RETRY_AFTER},
            )
        self.open += 1
        if token is not None:
            self.by_token[token] = self.by_token.get(token, 0) + 1
        self.metrics.streams_open.inc()
        return Slot(self, token)

    def close(self) -> None:
        """On the event loop, as the server stops: end every stream after its current message,
        since the server waits for every answer to end before it stops."""
        self.closing = True
        self.stopping.set()
        self.feed.wake()

    async def stop(self) -> None:
        """As the app shuts down: every stream has ended; so does the feed."""
        self.close()
        await self.feed.stop()


class Slot:
    """One stream's place among the open ones, given back once however the stream ends."""

    def __init__(self, streams: Streams, token: str | None) -> None:
        self.streams, self.token, self.held = streams, token, True

    def give_back(self) -> None:
        if not self.held:
            return
        self.held = False
        streams = self.streams
        streams.open -= 1
        if self.token is not None:
            left = streams.by_token[self.token] - 1
            if left:
                streams.by_token[self.token] = left
            else:
                del streams.by_token[self.token]
        streams.metrics.streams_open.dec()

    async def release(self) -> None:
        """give_back() as a response's background task: async though it never waits, since
        those that are plain functions go to a worker thread."""
        self.give_back()


@dataclass
class StreamOperation(Operation):
    """GET /events/stream answers Server-Sent Events: this says what each message holds, as
    OpenAPI 3.1 describes an event stream, one message at a time."""

    def __post_init__(self) -> None:
        message = Schema(
            type=OpenAPIType.OBJECT,
            required=["id", "event", "data"],
            properties={
                "id": Schema(type=OpenAPIType.STRING, description="The event's position"),
                "event": Schema(type=OpenAPIType.STRING, const=EVENT),
                "data": Schema(
                    type=OpenAPIType.STRING,
                    description="The event, as GET /events/{position} answers it",
                    content_media_type="application/json",
                    content_schema=Reference(ref="#/components/schemas/Event"),
                ),
            },
        )
        self.responses = {
            **(self.responses or {}),
            "200": OpenAPIResponse(
                description=(
                    f"Server-Sent Events: `retry: {RETRY_MS}` first, then a message for each "
                    f"event: `id: <position>`, `event: {EVENT}`, `data: <the event, as GET "
                    "/events/{position} answers it>`; a comment (`: keep-alive`) whenever "
                    "there was nothing to send for a while"
                ),
                content={"text/event-stream": OpenAPIMediaType(schema=message)},
            ),
        }


_BUSY: Final = {
    503: problem(
        "Too many streams are open, on this server (CDP_MAX_STREAMS) or for this token "
        "(CDP_MAX_STREAMS_PER_TOKEN), or the database cannot be reached: retry after "
        "Retry-After seconds",
        {
            "detail": "too many event streams: this server keeps at most 100 open at once "
            "(CDP_MAX_STREAMS); retry later"
        },
    ),
}
# Litestar leaves a bound of 0 out of an optional parameter's schema.
_AT_LEAST_0: Final = {"minimum": 0}


class StreamController(Controller):
    path = "/events/stream"
    guards = [auth.reader]
    tags = ["log"]

    @get(
        summary="The log as it grows, as Server-Sent Events",
        media_type="text/event-stream",
        responses=_BUSY,
        operation_class=StreamOperation,
    )
    async def stream(
        self,
        request: Request[Any, Any, Any],
        service: NamedDependency[Service],
        gate: NamedDependency[Gate],
        streams: NamedDependency[Streams],
        after: Annotated[
            int,
            QueryParameter(ge=0, le=INT64_MAX, description="Send the events after this position."),
        ] = 0,
        last_event_id: Annotated[
            str | None,
            HeaderParameter(
                name="Last-Event-ID",
                schema_extra={"pattern": "^[0-9]{1,19}$"},
                description="The id of the last message received, as a reader that connects "
                "again sends it: the stream starts after it, whatever `after` says.",
            ),
        ] = None,
        until: Annotated[
            int | None,
            QueryParameter(
                ge=0,
                le=INT64_MAX,
                schema_extra=_AT_LEAST_0,
                description="End the stream once every event up to this position is sent "
                "(the log's head may have to reach it first). Without it, the stream goes on.",
            ),
        ] = None,
        event_type: FromQuery[str | None] = None,
        chat_uuid: FromQuery[str | None] = None,
        profile_uuid: FromQuery[str | None] = None,
        source: FromQuery[str | None] = None,
    ) -> Stream:
        """Every event after a position, in position order, then each one as it is logged,
        with the filters of `GET /events`. Each message's id is the event's position: connect
        again with `Last-Event-ID` and nothing is missed or sent twice. While the database
        cannot be reached the stream waits and resumes."""
        resumed = params.position("Last-Event-ID", last_event_id)
        filters = {
            "event_type": event_type,
            "chat_uuid": chat_uuid,
            "profile_uuid": profile_uuid,
            "source": source,
        }
        start = after if resumed is None else resumed
        token = await gate.token_name(request)
        slot = streams.admit(token)  # last: from here on, only the stream gives it back
        messages = follow(request, service, gate, slot, after=start, until=until, filters=filters)
        return Stream(
            messages,
            media_type="text/event-stream",
            headers=_HEADERS,
            background=BackgroundTask(slot.release),
        )


_RETRY: Final = ServerSentEventMessage(data=None, retry=RETRY_MS).encode()
_KEEP_ALIVE: Final = comment("keep-alive")


async def follow(
    request: Request[Any, Any, Any],
    service: Service,
    gate: Gate,
    slot: Slot,
    *,
    after: int,
    until: int | None,
    filters: dict[str, str | None],
) -> AsyncIterator[bytes]:
    """The stream's messages: the events after `after` (up to `until`) that match, a page at
    a time, read in the read lane until a read reaches the head; then those the feed hands
    it, with a comment whenever the stream was quiet for the heartbeat."""
    heartbeat = service.settings.stream_heartbeat.total_seconds()
    streams = slot.streams
    feed = streams.feed
    follower: Follower | None = None
    own = service.metrics.stream_events.labels("own")
    try:
        yield _RETRY
        spoke = time.monotonic()  # when the last message went out
        # Its own reads, a page at a time, until one reaches the head, where the feed takes
        # it: none if the feed is near already (a stream from the head, or one that connects
        # again). While the feed is idle, one stream at a time reads to find the head (and
        # starts the feed); those that come meanwhile wait for it, then mostly join.
        wait = FIRST_WAIT
        failing: str | None = None  # why reads fail, while they do
        behind = False  # its last read did not reach the head
        rejections = 0  # reads the database refused in a row
        while follower is None:
            if streams.closing or (until is not None and after >= until):
                return
            turn = None if feed.running or behind else await feed.idle_turn()
            error: Overloaded | SQLAlchemyError | None = None
            try:
                if feed.running and feed.near(after):
                    follower = feed.join(filters_of(filters), after, until, slot.give_back)
                    break
                if not await gate.admits(request, "read"):
                    logger.info("%s: ended: its token is no longer valid", NAME)
                    return
                tail = await service.reads.query(
                    queries.tail, service.keystore, after=after, limit=PAGE, **filters
                )
            except (Overloaded, SQLAlchemyError) as failed:
                error = failed
            else:
                behind = tail.more
                # At the head: the feed takes it from here (the page is sent first), unless
                # it is a page ahead already.
                reached = tail.read_to
                if not behind and feed.near(reached) and (until is None or reached < until):
                    follower = feed.join(filters_of(filters), reached, until, slot.give_back)
            finally:
                feed.found(turn)
            if error is not None:
                reason = outage(error)
                if refused(error):
                    rejections += 1
                    logger.error(
                        "%s: the database refused a stream's read (%d in a row)",
                        NAME,
                        rejections,
                        exc_info=error,
                    )
                    if rejections >= REFUSALS:
                        yield comment(f"{reason}; connect again")
                        return
                if failing is None:
                    logger.warning("%s: %s (%s); trying again", NAME, reason, type(error).__name__)
                    yield comment(f"{reason}; trying again")
                    spoke = time.monotonic()
                wait = FIRST_WAIT if failing is None else min(wait * 2, LONGEST_WAIT)
                failing = reason
                if time.monotonic() - spoke >= heartbeat:
                    yield _KEEP_ALIVE
                    spoke = time.monotonic()
                await _nap(streams.stopping, min(wait, spoke + heartbeat - time.monotonic()))
                continue
            rejections = 0
            if failing is not None:
                logger.info("%s: the database answers again", NAME)
                failing = None
            own.inc(len(tail.items))
            page = b"".join(
                message(event) for event in tail.items if until is None or event.position <= until
            )
            if page:
                yield page
                spoke = time.monotonic()
            after = tail.read_to
        checked = time.monotonic()  # when its token was last found valid
        told: str | None = None  # the feed's failure last told
        while True:
            if follower.cut is not None:
                yield comment(
                    f"cut: the {follower.cut} events this stream held for its client were "
                    "not read in time (CDP_STREAM_BUFFER); connect again with Last-Event-ID"
                )
                return
            if follower.failed is not None:
                yield comment(follower.failed)
                return
            if streams.closing:
                return
            if time.monotonic() - checked >= _CHECK_EVERY:
                try:
                    if not await gate.admits(request, "read"):
                        logger.info("%s: ended: its token is no longer valid", NAME)
                        return
                    checked = time.monotonic()
                except (Overloaded, SQLAlchemyError):  # the feed's reads fail too, and say so
                    checked = time.monotonic()  # asked again a while later
            held = follower.take()
            if held:
                yield held
                spoke = time.monotonic()
                continue
            if follower.done:
                return
            if feed.failing != told:
                told = feed.failing
                if told is not None:
                    yield comment(f"{told}; trying again")
                    spoke = time.monotonic()
            if time.monotonic() - spoke >= heartbeat:
                yield _KEEP_ALIVE
                spoke = time.monotonic()
            follower.ready.clear()
            due = min(spoke + heartbeat, checked + _CHECK_EVERY)
            await _nap(follower.ready, due - time.monotonic())
    finally:
        if follower is not None:
            feed.leave(follower)
        slot.give_back()


async def _nap(ring: asyncio.Event, seconds: float) -> None:
    """Until `ring` is set or `seconds` pass. With asyncio's timeout: anyio's cancel scope
    costs more than the rest of a live stream's turn."""
    if ring.is_set():
        return
    with suppress(TimeoutError):
        async with asyncio.timeout(max(seconds, 0.0)):
            await ring.wait()
