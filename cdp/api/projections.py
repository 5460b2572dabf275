"""GET /projections: how far each read model has got; POST /projections/rebuild."""

from litestar import Controller, get, post
from litestar.di import NamedDependency

from cdp import db, projectors, queries
from cdp.api import auth
from cdp.api.service import Service
from cdp.schemas import Items, Projection


class ProjectionController(Controller):
    path = "/projections"
    tags = ["projections"]

    @get(summary="How far each projection has got", guards=[auth.reader])
    async def positions(self, service: NamedDependency[Service]) -> Items[Projection]:
        """Each projection's checkpoint, the log head and the lag between them."""
        return await _positions(service)

    @post("/rebuild", status_code=200, summary="Rebuild every projection", guards=[auth.admin])
    async def rebuild(self, service: NamedDependency[Service]) -> Items[Projection]:
        """Rebuild every projection from the log; answers when done. Ingest waits meanwhile."""

        def rebuild() -> None:
            with db.writing(service.engine) as connection:
                projectors.rebuild(
                    connection,
                    service.projectors,
                    service.keystore,
                    progress=service.metrics.rebuild_progress,
                )

        await service.rebuilds.run(rebuild)
        return await _positions(service)


async def _positions(service: Service) -> Items[Projection]:
    names = [projector.name for projector in service.projectors]
    return Items[Projection](items=await service.reads.query(queries.projections, names))
