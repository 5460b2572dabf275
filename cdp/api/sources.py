"""GET /sources: who may post webhooks, for an admin; never their secrets."""

from litestar import get
from litestar.di import NamedDependency

from cdp import credentials
from cdp.api import auth
from cdp.api.service import Service
from cdp.schemas import Items, Source
from cdp.times import utc


@get("/sources", summary="The sources", guards=[auth.admin], tags=["ingest"])
async def sources(service: NamedDependency[Service]) -> Items[Source]:
    """Every source: its name, when it was added, whether it must sign its deliveries, and
    until when a rotated secret stays valid. Sources are added, rotated and removed with
    `cdp source`, by whoever may run it against the database."""
    found = await service.reads.query(credentials.list_sources)
    return Items[Source](
        items=[
            Source(
                name=info.name,
                created_at=utc(info.created_at),
                signed=info.signed,
                previous_valid_until=None
                if info.previous_until is None
                else utc(info.previous_until),
            )
            for info in found
        ]
    )
