"""GET /sources: who may post webhooks, for an admin; never their secrets."""

from typing import Final

from litestar import get
from litestar.di import NamedDependency

from cdp.access import auth, queries
from cdp.access.schemas import Source
from cdp.http.schemas import Items
from cdp.runtime.service import Service


@get("/sources", summary="The sources", guards=[auth.admin], tags=["ingest"])
async def sources(service: NamedDependency[Service]) -> Items[Source]:
    """Every source: its name, when it was added, whether it must sign its deliveries, and
    until when a rotated secret stays valid. Sources are added, rotated and removed with
    `cdp source`, by whoever may run it against the database."""
    return Items[Source](items=await service.reads.query(queries.sources))


ROUTES: Final = (sources,)  # see cdp.capabilities
