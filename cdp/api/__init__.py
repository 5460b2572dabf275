"""The HTTP API: create_app() is the one place where every route and handler is wired."""

from importlib.metadata import version
from typing import Any

from litestar import Litestar, Request, Response
from litestar.di import Provide
from litestar.status_codes import HTTP_400_BAD_REQUEST

from cdp.api import (
    chats,
    docs,
    events,
    health,
    params,
    problems,
    profiles,
    projections,
    serialization,
    teams,
    webhooks,
)
from cdp.api.service import Service
from cdp.projectors import registry
from cdp.settings import Settings

DESCRIPTION = """\
An event-sourced customer-data store for Fasttrack chat-center webhooks.

Every webhook is appended, exactly as it arrived, to an immutable log; projections turn
the log into customer profiles, chats, sessions and handoffs. Errors are
`{"detail": ..., "errors": [{"path", "message"}]}`. Lists come in pages: ask again with
`after=<next>` until `next` is null. Times are ISO 8601 in UTC, with milliseconds.

The API has no authentication yet: expose it only to a trusted network.
"""


def create_app(settings: Settings) -> Litestar:
    service = Service.of(settings, registry(settings))
    return Litestar(
        route_handlers=[
            webhooks.WebhookController,
            profiles.ProfileController,
            chats.ChatController,
            teams.TeamController,
            chats.HandoffController,
            events.EventController,
            projections.ProjectionController,
            health.health,
            *docs.asset_routers(),
        ],
        dependencies={"service": Provide(lambda: service, use_cache=True, sync_to_thread=False)},
        exception_handlers=problems.HANDLERS,  # type: ignore[arg-type]
        before_request=_check_parameters,
        on_shutdown=[service.engine.dispose],
        type_encoders=serialization.TYPE_ENCODERS,
        plugins=[serialization.RawJSONSchema(), docs.DefaultResponses()],
        openapi_config=docs.config("cdp", version("cdp"), DESCRIPTION),
        logging_config=None,  # cdp serve sets logging up; every error is logged by problems
    )


def _check_parameters(request: Request[Any, Any, Any]) -> Response[dict[str, object]] | None:
    """Refuse NUL characters, and query parameters the endpoint does not take.

    No identifier cdp stores holds a NUL, and PostgreSQL cannot even compare one. An unknown
    parameter is most often a typo, and ignoring it would answer a question nobody asked.
    """
    values = [request.url.path, *(value for _, value in request.query_params.multi_items())]
    if any("\x00" in value for value in values):
        return problems.problem(
            request, HTTP_400_BAD_REQUEST, "invalid request: it contains a NUL character", []
        )
    handler = request.route_handler
    if not handler.fn.__module__.startswith("cdp."):
        return None  # the OpenAPI pages
    known = set(params.query_names(handler).values())
    unknown = sorted(set(request.query_params) - known)
    if not unknown:
        return None
    takes = ", ".join(sorted(known)) or "none"
    message = f"unknown query parameter; this endpoint takes: {takes}"
    return problems.problem(
        request,
        HTTP_400_BAD_REQUEST,
        f"invalid request: unknown query parameter {', '.join(map(repr, unknown))} "
        f"(this endpoint takes: {takes})",
        [{"path": name, "message": message} for name in unknown],
    )
