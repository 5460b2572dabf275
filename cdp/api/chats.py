"""GET /chats/...: one chat's state, sessions, handoffs and timeline; GET /handoffs, the audit."""

from datetime import datetime
from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, QueryParameter
from sqlalchemy import Connection

from cdp import queries
from cdp.api.service import Service
from cdp.schemas import Chat, Handoff, Items, Session, TimelineItem
from cdp.webhook import INT64_MAX


class ChatController(Controller):
    path = "/chats/{uuid:str}"
    tags = ["chats"]

    @get(sync_to_thread=True)
    def one(
        self,
        uuid: FromPath[str],
        connection: NamedDependency[Connection],
        service: NamedDependency[Service],
    ) -> Chat:
        found = queries.chat(connection, uuid, service.clock)
        if found is None:
            raise NotFoundException(f"no chat {uuid!r}")
        return found

    @get("/sessions", sync_to_thread=True)
    def sessions(
        self,
        uuid: FromPath[str],
        connection: NamedDependency[Connection],
        service: NamedDependency[Service],
    ) -> Items[Session]:
        _require(connection, uuid)
        return Items[Session](items=queries.chat_sessions(connection, uuid, service.clock))

    @get("/handoffs", sync_to_thread=True)
    def handoffs(
        self, uuid: FromPath[str], connection: NamedDependency[Connection]
    ) -> Items[Handoff]:
        _require(connection, uuid)
        return Items[Handoff](items=queries.chat_handoffs(connection, uuid))

    @get("/timeline", sync_to_thread=True)
    def timeline(
        self, uuid: FromPath[str], connection: NamedDependency[Connection]
    ) -> Items[TimelineItem]:
        _require(connection, uuid)
        return Items[TimelineItem](items=queries.chat_timeline(connection, uuid))


class HandoffController(Controller):
    path = "/handoffs"
    tags = ["chats"]

    @get(sync_to_thread=True)
    def audit(
        self,
        connection: NamedDependency[Connection],
        team_id: Annotated[int | None, QueryParameter(ge=0, le=INT64_MAX)] = None,
        since: FromQuery[datetime | None] = None,
        until: FromQuery[datetime | None] = None,
    ) -> Items[Handoff]:
        """Handoffs across chats from or to `team_id`, at or after `since`, before `until`."""
        return Items[Handoff](items=queries.team_handoffs(connection, team_id, since, until))


def _require(connection: NamedDependency[Connection], uuid: str) -> None:
    if not queries.chat_known(connection, uuid):
        raise NotFoundException(f"no chat {uuid!r}")
