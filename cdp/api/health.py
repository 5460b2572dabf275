"""GET /health: the service answers and its database does too."""

from litestar import get
from litestar.di import NamedDependency

from cdp import log
from cdp.api.service import Service
from cdp.schemas import Health


@get("/health", tags=["service"], summary="Is the service up?")
async def health(service: NamedDependency[Service]) -> Health:
    """Answers 200 while the service and its database answer, 503 otherwise."""
    head = await service.health.query(log.head)
    return Health(status="ok", database=service.engine.dialect.name, head=head)
