"""GET /health: the service answers and its database does too."""

from litestar import get
from litestar.di import NamedDependency
from sqlalchemy import Connection

from cdp import log
from cdp.schemas import Health


@get("/health", sync_to_thread=True, tags=["service"])
def health(connection: NamedDependency[Connection]) -> Health:
    return Health(status="ok", database=connection.dialect.name, head=log.head(connection))
