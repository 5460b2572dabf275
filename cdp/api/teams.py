"""GET /teams/{id}/chats: the chats a team has now."""

from typing import Annotated, Literal

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromQuery, PathParameter, QueryParameter

from cdp import queries
from cdp.api import auth
from cdp.api.params import After, Limit
from cdp.api.service import Service
from cdp.queries import Listing
from cdp.schemas import Chat, Page
from cdp.webhook import INT64_MAX


class TeamController(Controller):
    path = "/teams/{team_id:str}"
    guards = [auth.reader]
    tags = ["teams"]

    @get("/chats", summary="A team's chats")
    async def chats(
        self,
        team_id: Annotated[int, PathParameter(ge=0, le=INT64_MAX)],
        service: NamedDependency[Service],
        session_state: Annotated[
            Literal["open", "idle"] | None, QueryParameter(name="state")
        ] = None,
        after: After = None,
        limit: Limit = 100,
        source: FromQuery[str | None] = None,
    ) -> Page[Chat]:
        """Chats whose active team is this one, most recently active first; `state` keeps
        those whose latest session is open (or idle), `source` those of one source."""
        return await service.reads.query(
            queries.team_chats,
            team_id,
            session_state,
            service.clock(),
            Listing(after, limit),
            source,
        )
