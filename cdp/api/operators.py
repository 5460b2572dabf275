"""GET /operators/{uuid}/stats: an operator's figures for a period."""

from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromQuery, PathParameter

from cdp import queries
from cdp.api import auth
from cdp.api.docs import not_found
from cdp.api.params import Moment, period
from cdp.api.service import Service
from cdp.queries import Period
from cdp.schemas import OperatorStats


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
