"""GET /teams: every team seen; GET /teams/{id}/chats, the chats a team has now, and
/teams/{id}/stats, its figures for a period."""

from typing import Annotated, Literal

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromQuery, PathParameter, QueryParameter

from cdp import queries
from cdp.api import auth
from cdp.api.docs import not_found
from cdp.api.params import After, Limit, Moment, period
from cdp.api.service import Service
from cdp.queries import Listing, Period
from cdp.schemas import Chat, Items, KnownTeam, Page, TeamStats
from cdp.webhook import INT64_MAX

TeamId = Annotated[int, PathParameter(ge=0, le=INT64_MAX)]


class TeamController(Controller):
    path = "/teams"
    guards = [auth.reader]
    tags = ["teams"]

    @get(summary="Every team seen")
    async def known(
        self, service: NamedDependency[Service], source: FromQuery[str | None] = None
    ) -> Items[KnownTeam]:
        """Every team the events named, by id, with the latest name they gave it (of one
        source, or of every one: ids are the sources' own)."""
        found = await service.reads.query(queries.known_teams, source)
        return Items[KnownTeam](items=found)

    @get("/{team_id:str}/chats", summary="A team's chats")
    async def chats(
        self,
        team_id: TeamId,
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
            keystore=service.keystore,
        )

    @get("/{team_id:str}/stats", summary="A team's figures", responses=not_found("no team 7"))
    async def stats(
        self,
        team_id: TeamId,
        service: NamedDependency[Service],
        since: Moment = None,
        until: Moment = None,
        source: FromQuery[str | None] = None,
    ) -> TeamStats:
        """What happened with the team at or after `since`, before `until` (each optional):
        sessions opened with it, handoffs in and out, customer messages and operator replies
        while a chat was its, and how long customers waited for a first reply (see
        "Team statistics" in docs/api.md). Zeros for a period with nothing; 404 for a team no
        event named."""
        start, end = period(since, until)
        found = await service.reads.query(queries.team_stats, team_id, Period(start, end, source))
        if found is None:
            raise NotFoundException(f"no team {team_id}")
        return found
