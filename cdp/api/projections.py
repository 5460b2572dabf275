"""GET /projections: how far each read model has got; POST /projections/rebuild."""

from litestar import Controller, get, post
from litestar.di import NamedDependency
from sqlalchemy import Connection

from cdp import db, projectors, queries
from cdp.api.service import Service
from cdp.schemas import Items, Projection


class ProjectionController(Controller):
    path = "/projections"
    tags = ["projections"]

    @get(sync_to_thread=True)
    def positions(
        self, connection: NamedDependency[Connection], service: NamedDependency[Service]
    ) -> Items[Projection]:
        names = [projector.name for projector in service.projectors]
        return Items[Projection](items=queries.projections(connection, names))

    @post("/rebuild", sync_to_thread=True, status_code=200)
    def rebuild(self, service: NamedDependency[Service]) -> Items[Projection]:
        """Rebuild every projection from the log; answers when done. Ingest waits meanwhile."""
        with db.writing(service.engine) as connection:
            projectors.rebuild(connection, service.projectors)
        with service.engine.connect() as connection:
            names = [projector.name for projector in service.projectors]
            return Items[Projection](items=queries.projections(connection, names))
