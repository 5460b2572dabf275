"""GET /teams/{id}/chats: the chats a team has now."""

from typing import Annotated, cast

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.exceptions import ValidationException
from litestar.params import PathParameter, QueryParameter
from sqlalchemy import Connection

from cdp import queries
from cdp.api.service import Service
from cdp.schemas import Chat, Items, SessionState
from cdp.webhook import INT64_MAX


class TeamController(Controller):
    path = "/teams/{team_id:int}"
    tags = ["teams"]

    @get("/chats", sync_to_thread=True)
    def chats(
        self,
        team_id: Annotated[int, PathParameter(ge=0, le=INT64_MAX)],
        connection: NamedDependency[Connection],
        service: NamedDependency[Service],
        session_state: Annotated[str | None, QueryParameter(name="state")] = None,
    ) -> Items[Chat]:
        """Chats whose active team is this one; `state` keeps those with an open or idle session."""
        if session_state not in (None, "open", "idle"):
            message = f"must be open or idle, got {session_state!r}"
            raise ValidationException(message, extra=[{"key": "state", "message": message}])
        state = cast("SessionState | None", session_state)
        found = queries.team_chats(connection, team_id, state, service.clock)
        return Items[Chat](items=found)
