"""GET /events/stream: the log as Server-Sent Events, followed live from a position.

Each event goes out once, in position order, with its position as the message's id: a
reader that comes back with Last-Event-ID (or `after`) takes up exactly where it left.
Positions follow commit order, so reading "after the last one sent" never skips an event
that committed late. While the database is away a stream waits and says so in comments;
it ends only when the reader leaves, its token is revoked, `until` is reached, or the
server stops.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Final

import anyio
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
from litestar.response import ServerSentEvent, ServerSentEventMessage
from sqlalchemy.exc import SQLAlchemyError

from cdp import queries
from cdp.api import auth, params
from cdp.api.auth import Gate
from cdp.api.docs import problem
from cdp.api.problems import outage
from cdp.api.serialization import to_json
from cdp.api.service import Bell, Busy, Service
from cdp.schemas import Event
from cdp.webhook import INT64_MAX

logger = logging.getLogger("cdp.api")
_NAME: Final = "GET /events/stream"  # how its log lines begin

EVENT: Final = "logged"  # every message's event name, whatever the event's type
PAGE: Final = 100  # events a read takes at most (and no more than queries.PAGE_BYTES of bodies)
RETRY_MS: Final = 2000  # how long a reader waits before it connects again
# After a failed read the next waits 1 s, then twice as long each time, up to 5 s.
_FIRST_WAIT: Final = 1.0
_LONGEST_WAIT: Final = 5.0
_RETRY_AFTER: Final = "5"  # seconds, when every stream is taken


class Streams:
    """The streams open in this process: `most` at once, each ended when the server stops."""

    def __init__(self, most: int, bell: Bell) -> None:
        self.most, self.bell = most, bell
        self.open = 0
        self.closing = False

    def admit(self) -> "Slot":
        """A place for one more stream; 503 if every one is taken or the server is stopping."""
        if self.closing:
            raise ServiceUnavailableException(
                "the server is stopping: connect again", headers={"Retry-After": _RETRY_AFTER}
            )
        if self.open >= self.most:
            raise ServiceUnavailableException(
                f"too many event streams: this server keeps at most {self.most} open at once "
                "(CDP_MAX_STREAMS); retry later",
                headers={"Retry-After": _RETRY_AFTER},
            )
        self.open += 1
        return Slot(self)

    def close(self) -> None:
        """On the event loop, as the server stops: end every stream after its current message,
        since the server waits for every answer to end before it stops."""
        self.closing = True
        self.bell.ring()


class Slot:
    """One stream's place among the open ones, given back once however the stream ends."""

    def __init__(self, streams: Streams) -> None:
        self.streams, self.held = streams, True

    async def release(self) -> None:
        """Async though it never waits: it is a response's background task too, and those
        that are plain functions go to a worker thread."""
        if self.held:
            self.held = False
            self.streams.open -= 1


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
        "Too many streams are open (CDP_MAX_STREAMS), or the database cannot be reached: "
        "retry after Retry-After seconds",
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
    ) -> ServerSentEvent:
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
        slot = streams.admit()  # last: from here on, only the stream gives it back
        messages = follow(request, service, gate, slot, after=start, until=until, filters=filters)
        return ServerSentEvent(messages, background=BackgroundTask(slot.release))


async def follow(
    request: Request[Any, Any, Any],
    service: Service,
    gate: Gate,
    slot: Slot,
    *,
    after: int,
    until: int | None,
    filters: dict[str, str | None],
) -> AsyncIterator[ServerSentEventMessage]:
    """The stream's messages: the events after `after` (up to `until`), a page at a time,
    read in the read lane, then waiting for more (for the writer's bell, or at most the
    poll interval) with a comment whenever the stream was quiet for the heartbeat."""
    settings = service.settings
    poll = settings.stream_poll_interval.total_seconds()
    heartbeat = settings.stream_heartbeat.total_seconds()
    streams = slot.streams
    try:
        yield ServerSentEventMessage(data=None, retry=RETRY_MS)
        spoke = time.monotonic()  # when the last message went out
        wait = poll
        failing: str | None = None  # why reads fail, while they do
        while not streams.closing and (until is None or after < until):
            ring = service.webhooks.appended.next()
            try:
                if not await gate.admits(request, "read"):
                    logger.info("%s: ended: its token is no longer valid", _NAME)
                    return
                tail = await service.reads.query(
                    queries.tail, service.keystore, after=after, limit=PAGE, **filters
                )
            except (Busy, SQLAlchemyError) as error:
                reason = outage(error)
                if failing is None:
                    logger.warning("%s: %s (%s); trying again", _NAME, reason, type(error).__name__)
                    yield ServerSentEventMessage(data=None, comment=f"{reason}; trying again")
                    spoke = time.monotonic()
                wait = _FIRST_WAIT if failing is None else min(wait * 2, _LONGEST_WAIT)
                failing = reason
            else:
                if failing is not None:
                    logger.info("%s: the database answers again", _NAME)
                    failing, wait = None, poll
                for event in tail.items:
                    if until is not None and event.position > until:
                        break
                    yield _message(event)
                    spoke = time.monotonic()
                after = tail.read_to
                if tail.more:
                    continue
            if time.monotonic() - spoke >= heartbeat:
                yield ServerSentEventMessage(data=None, comment="keep-alive")
                spoke = time.monotonic()
            await _nap(ring, min(wait, spoke + heartbeat - time.monotonic()))
    finally:
        await slot.release()


def _message(event: Event) -> ServerSentEventMessage:
    return ServerSentEventMessage(data=to_json(event), event=EVENT, id=event.position)


async def _nap(ring: asyncio.Event, seconds: float) -> None:
    """Until the bell rings (an event was logged, or the server is stopping) or `seconds` pass."""
    with anyio.move_on_after(max(seconds, 0.0)):
        await ring.wait()
