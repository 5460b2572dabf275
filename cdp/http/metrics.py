"""GET /metrics: what the service has done and how far behind it is, for Prometheus."""

import logging
from collections.abc import Sequence

import anyio
from litestar import get
from litestar.di import NamedDependency
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from cdp.access import auth
from cdp.projections import builds
from cdp.projections.runner import Projector
from cdp.runtime.metrics import CONTENT_TYPE, Reading
from cdp.runtime.service import Overloaded, Service

logger = logging.getLogger("cdp.api")


@get(
    "/metrics",
    tags=["service"],
    summary="Metrics for Prometheus",
    media_type=CONTENT_TYPE,
    guards=[auth.reader],
)
async def metrics(service: NamedDependency[Service]) -> bytes:
    """Webhooks and requests counted, the ingest latency, rebuild progress, and, read as it
    is scraped, the log head, each projection's position and lag, and the pools' use; in
    Prometheus' text format. A database that cannot be read makes `cdp_database_up` 0, and
    leaves out what it would have said; the rest is answered all the same."""
    try:
        reading: Reading | None = await service.reads.query(_reading, service.projectors)
    except (Overloaded, SQLAlchemyError) as error:  # its text may name hosts: not logged
        logger.warning("/metrics could not read the database: %s", type(error).__name__)
        reading = None
    engines: dict[str, Engine] = {"main": service.engine}
    if service.keystore.engine is not None:
        engines["keystore"] = service.keystore.engine
    # In a worker thread: with several processes, this reads each one's file.
    return await anyio.to_thread.run_sync(service.metrics.exposition, reading, engines)


def _reading(connection: Connection, projectors: Sequence[Projector]) -> Reading:
    return Reading(builds.states(connection, projectors))
