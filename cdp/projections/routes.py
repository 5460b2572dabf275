"""GET /projections: how far each read model has got and what built it; POST
/projections/rebuild and /projections/{name}/rebuild: build anew beside the live ones."""

from typing import Annotated, Final

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import Parameter

from cdp.access import auth
from cdp.http.openapi import not_found, problem
from cdp.http.schemas import Items
from cdp.projections import builds
from cdp.projections.schemas import Projection
from cdp.runtime.service import Service

_BUSY = {
    409: problem(
        "A build of the projection runs already, in this process or another",
        {
            "detail": "projection chats is being built by host-1:4242 since "
            "2026-11-27T10:00:00+00:00 (120000 of 200000 events)"
        },
    )
}


class ProjectionController(Controller):
    path = "/projections"
    tags = ["projections"]

    @get(summary="Each projection: how far it has got, and what built it", guards=[auth.reader])
    async def states(self, service: NamedDependency[Service]) -> Items[Projection]:
        """Each projection's status, checkpoint, lag behind the log head (in events and in
        seconds), the version and settings that built it, and its latest build."""
        return await _states(service)

    @post(
        "/rebuild",
        status_code=202,
        summary="Build every projection anew beside the live ones",
        response_description="The build started: the projections' states",
        guards=[auth.admin],
        responses=_BUSY,
    )
    async def rebuild_all(self, service: NamedDependency[Service]) -> Items[Projection]:
        """Start building every projection anew from the log, beside the live ones, which
        keep answering until the new ones take their place at once; answers at once with
        the projections' states (see `build` for progress). Webhooks go on being taken."""
        await start_build(service, None)
        return await _states(service)

    @post(
        "/{name:str}/rebuild",
        status_code=202,
        summary="Build one projection anew beside the live one",
        response_description="The build started: the projections' states",
        guards=[auth.admin],
        responses={**_BUSY, **not_found("no projection named sessions")},
    )
    async def rebuild(
        self,
        name: Annotated[str, Parameter(max_length=100)],
        service: NamedDependency[Service],
    ) -> Items[Projection]:
        """As POST /projections/rebuild, for the projection `name` alone, with those whose
        tables it reads, and those that read its tables if they are new or stale."""
        await start_build(service, name)
        return await _states(service)


async def start_build(service: Service, name: str | None) -> None:
    """Start building every projection anew, or the one named (with those it goes along
    with, see builds.with_dependencies): 404 for no such projection, builds.BuildRunning if
    one runs."""
    chosen = service.projectors
    if name is not None:
        chosen = [projector for projector in service.projectors if projector.name == name]
        if not chosen:
            known = ", ".join(projector.name for projector in service.projectors)
            raise NotFoundException(f"no projection named {name[:100]!r}; there are {known}")
        chosen = await service.reads.query(builds.with_dependencies, service.projectors, chosen)
    await service.rebuilds.run(lambda: service.builder.start(chosen))


async def _states(service: Service) -> Items[Projection]:
    found = await service.reads.query(builds.states, service.projectors)
    return Items[Projection](items=found)


ROUTES: Final = (ProjectionController,)  # see cdp.capabilities
