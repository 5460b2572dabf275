"""GET /events: the raw log, for audits and for readers that follow it."""

from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromQuery, PathParameter, QueryParameter

from cdp import queries
from cdp.api import auth
from cdp.api.docs import not_found
from cdp.api.params import Limit
from cdp.api.service import Service
from cdp.schemas import Event, EventPage
from cdp.webhook import INT64_MAX


class EventController(Controller):
    path = "/events"
    guards = [auth.reader]
    tags = ["log"]

    @get(summary="The log, page by page")
    async def page(
        self,
        service: NamedDependency[Service],
        after: Annotated[int, QueryParameter(ge=0, le=INT64_MAX)] = 0,
        limit: Limit = 100,
        event_type: FromQuery[str | None] = None,
        chat_uuid: FromQuery[str | None] = None,
        profile_uuid: FromQuery[str | None] = None,
        source: FromQuery[str | None] = None,
    ) -> EventPage:
        """Events after a position, oldest first; follow `next_after` until it is null."""
        return await service.reads.query(
            queries.events,
            service.keystore,
            after=after,
            limit=limit,
            event_type=event_type,
            chat_uuid=chat_uuid,
            profile_uuid=profile_uuid,
            source=source,
        )

    @get(
        "/{position:str}",
        summary="One logged event",
        responses=not_found("no event at position 42"),
    )
    async def one(
        self,
        position: Annotated[int, PathParameter(ge=1, le=INT64_MAX)],
        service: NamedDependency[Service],
    ) -> Event:
        """One logged event, its body exactly as it was received (only its fields that are no
        personal data once erased), and its hash in the log's chain (see `cdp verify`)."""
        found = await service.reads.query(queries.event, service.keystore, position)
        if found is None:
            raise NotFoundException(f"no event at position {position}")
        return found
