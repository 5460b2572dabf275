"""GET /teams/{id}/chats: the chats a team has now."""

from typing import Annotated

from litestar import Controller, get
from litestar.exceptions import ValidationException
from litestar.params import Parameter
from sqlalchemy import Connection

from cdp import queries
from cdp.api.service import Service
from cdp.schemas import Chat, Items


class TeamController(Controller):
    path = "/teams/{team_id:int}"
    tags = ["teams"]

    @get("/chats", sync_to_thread=True)
    def chats(
        self,
        team_id: int,
        connection: Connection,
        service: Service,
        session_state: Annotated[str | None, Parameter(query="state")] = None,
    ) -> Items[Chat]:
        """Chats whose active team is this one; `state` keeps those whose session is open or idle."""
        if session_state not in (None, "open", "idle"):
            raise ValidationException(
                "state must be open or idle",
                extra=[{"key": "state", "message": f"must be open or idle, got {session_state!r}"}],
            )
        found = queries.team_chats(connection, team_id, session_state, service.clock)
        return Items[Chat](items=found)
