"""Teams and operators over HTTP: who they are, their chats, handoffs and figures."""

from typing import Annotated, Final, Literal

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromQuery, PathParameter, QueryParameter

from cdp.access import auth
from cdp.conversations import queries as conversations_queries
from cdp.conversations.schemas import Chat
from cdp.http.openapi import not_found
from cdp.http.params import After, Limit, Moment, period
from cdp.http.schemas import Items, Page
from cdp.log.webhook import INT64_MAX
from cdp.paging import Listing
from cdp.runtime.service import Service
from cdp.teams import queries
from cdp.teams.queries import Period
from cdp.teams.schemas import KnownTeam, OperatorStats, TeamStats

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
            conversations_queries.team_chats,
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


class OperatorController(Controller):
    path = "/operators/{uuid:str}"
    guards = [auth.reader]
    tags = ["teams"]

    @get(
        "/stats",
        summary="An operator's figures",
        responses=not_found("no operator '8e1f5a3c-0d4b-4f6e-9a2c-7b3d1e5f9a10'"),
    )
    async def stats(
        self,
        uuid: Annotated[str, PathParameter(max_length=200)],
        service: NamedDependency[Service],
        since: Moment = None,
        until: Moment = None,
        source: FromQuery[str | None] = None,
    ) -> OperatorStats:
        """What the operator did at or after `since`, before `until` (each optional): the
        sessions they replied in, their replies, the handoffs of chats they had replied in
        last, and how long the customers whose wait their reply ended had waited. 404 for an
        operator with no logged reply."""
        start, end = period(since, until)
        found = await service.reads.query(queries.operator_stats, uuid, Period(start, end, source))
        if found is None:
            raise NotFoundException(f"no operator {uuid!r}")
        return found


ROUTES: Final = (TeamController, OperatorController)  # see cdp.capabilities
