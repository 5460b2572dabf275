"""GET /chats/...: one chat's state, sessions, handoffs and timeline; GET /handoffs, the audit."""

from typing import Annotated, Final, TypeVar

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, QueryParameter

from cdp.access import auth
from cdp.conversations import queries
from cdp.conversations.schemas import Chat, Handoff, Session, TimelineItem
from cdp.http.openapi import not_found
from cdp.http.params import After, Limit, Moment, period
from cdp.http.schemas import Page
from cdp.log.webhook import INT64_MAX
from cdp.paging import Listing
from cdp.runtime.service import Service

T = TypeVar("T")


class ChatController(Controller):
    path = "/chats/{uuid:str}"
    guards = [auth.reader]
    tags = ["chats"]

    @get(summary="A chat", responses=not_found("no chat '0b6f7a52-3f8e-4d55-9a0e-6f1f3c2b9d10'"))
    async def one(self, uuid: FromPath[str], service: NamedDependency[Service]) -> Chat:
        """The chat's attributes, its profile, its team and operator now, and its latest session."""
        found = await service.reads.query(
            queries.chat, uuid, service.clock(), keystore=service.keystore
        )
        if found is None:
            raise NotFoundException(f"no chat {uuid!r}")
        return found

    @get(
        "/sessions",
        summary="A chat's sessions",
        responses=not_found("no chat '0b6f7a52-3f8e-4d55-9a0e-6f1f3c2b9d10'"),
    )
    async def sessions(
        self,
        uuid: FromPath[str],
        service: NamedDependency[Service],
        after: After = None,
        limit: Limit = 100,
    ) -> Page[Session]:
        """The chat's sessions in order, with their teams, handoffs and message counts."""
        found = await service.reads.query(
            queries.chat_sessions, uuid, service.clock(), Listing(after, limit)
        )
        return _found(found, uuid)

    @get(
        "/handoffs",
        summary="A chat's handoffs",
        responses=not_found("no chat '0b6f7a52-3f8e-4d55-9a0e-6f1f3c2b9d10'"),
    )
    async def handoffs(
        self,
        uuid: FromPath[str],
        service: NamedDependency[Service],
        after: After = None,
        limit: Limit = 100,
    ) -> Page[Handoff]:
        """The chat's handoffs from team to team, in time order."""
        found = await service.reads.query(queries.chat_handoffs, uuid, Listing(after, limit))
        return _found(found, uuid)

    @get(
        "/timeline",
        summary="A chat's timeline",
        responses=not_found("no chat '0b6f7a52-3f8e-4d55-9a0e-6f1f3c2b9d10'"),
    )
    async def timeline(
        self,
        uuid: FromPath[str],
        service: NamedDependency[Service],
        after: After = None,
        limit: Limit = 100,
    ) -> Page[TimelineItem]:
        """The chat's events in time order, each with its kind, session, team and message."""
        listing = Listing(after, limit)
        found = await service.reads.query(
            queries.chat_timeline, uuid, listing, keystore=service.keystore
        )
        return _found(found, uuid)


class HandoffController(Controller):
    path = "/handoffs"
    guards = [auth.reader]
    tags = ["chats"]

    @get(summary="The handoff audit")
    async def audit(
        self,
        service: NamedDependency[Service],
        team_id: Annotated[int | None, QueryParameter(ge=0, le=INT64_MAX)] = None,
        since: Moment = None,
        until: Moment = None,
        after: After = None,
        limit: Limit = 100,
        source: FromQuery[str | None] = None,
    ) -> Page[Handoff]:
        """Handoffs across chats from or to `team_id`, at or after `since`, before `until`,
        of one source or any."""
        start, end = period(since, until)
        return await service.reads.query(
            queries.team_handoffs, Listing(after, limit), team_id, start, end, source
        )


def _found(page: Page[T] | None, uuid: str) -> Page[T]:
    if page is None:
        raise NotFoundException(f"no chat {uuid!r}")
    return page


ROUTES: Final = (ChatController, HandoffController)  # see cdp.capabilities
