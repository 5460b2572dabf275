"""GET /rejected: the deliveries refused as bad input, for an admin to look into."""

from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromQuery, QueryParameter

from cdp import queries
from cdp.api import auth
from cdp.api.params import Limit
from cdp.api.service import Service
from cdp.schemas import RejectedPage
from cdp.webhook import INT64_MAX


class RejectedController(Controller):
    path = "/rejected"
    tags = ["ingest"]
    guards = [auth.admin]

    @get(summary="Deliveries refused as bad input")
    async def page(
        self,
        service: NamedDependency[Service],
        after: Annotated[int, QueryParameter(ge=0, le=INT64_MAX)] = 0,
        limit: Limit = 100,
        source: FromQuery[str | None] = None,
    ) -> RejectedPage:
        """Refused deliveries (400, 409, 410, 413, 415, 422) after an id, oldest first, with their
        bytes, headers and reason; follow `next_after` until it is null. A page holds at
        most 4 MiB of bodies. `cdp rejected replay` moves into the log those that pass
        today's checks."""
        return await service.reads.query(
            queries.refused, service.keystore, after=after, limit=limit, source=source
        )
