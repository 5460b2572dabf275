"""The HTTP API: create_app() is the one place where every route and handler is wired."""

from collections.abc import Iterator
from datetime import timedelta
from importlib.metadata import version
from typing import Any

from litestar import Litestar, Request, Response
from litestar.di import Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError

from cdp import __doc__ as summary
from cdp.api import (
    chats,
    events,
    health,
    profiles,
    projections,
    serialization,
    teams,
    webhooks,
)
from cdp.api.service import Service
from cdp.db import make_engine
from cdp.projectors import registry
from cdp.queries import Clock
from cdp.settings import Settings
from cdp.webhook import InvalidWebhook, MalformedBody


def create_app(settings: Settings) -> Litestar:
    engine = make_engine(settings.database_url)
    service = Service(
        settings=settings,
        engine=engine,
        projectors=registry(settings),
        clock=Clock(settings.session_idle_timeout // timedelta(milliseconds=1)),
    )

    def provide_connection() -> Iterator[Connection]:
        with engine.connect() as connection:
            yield connection

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
        ],
        dependencies={
            "service": Provide(lambda: service, use_cache=True, sync_to_thread=False),
            "connection": Provide(provide_connection),
        },
        exception_handlers={
            MalformedBody: _malformed,
            InvalidWebhook: _invalid,
            ValidationException: _bad_parameters,
            HTTPException: _http_error,
            OperationalError: _database_down,
        },
        before_request=_refuse_nul,
        on_shutdown=[engine.dispose],
        type_encoders=serialization.TYPE_ENCODERS,
        plugins=[serialization.RawJSONSchema()],
        openapi_config=OpenAPIConfig(title="cdp", version=version("cdp"), description=summary),
    )


def _problem(
    status: int, detail: str, errors: list[dict[str, str]] | None = None
) -> Response[dict[str, object]]:
    content: dict[str, object] = {"detail": detail}
    if errors is not None:
        content["errors"] = errors
    return Response(content, status_code=status)


def _refuse_nul(request: Request[Any, Any, Any]) -> Response[dict[str, object]] | None:
    """No identifier cdp stores holds a NUL, and PostgreSQL cannot even compare one."""
    values = [request.url.path, *(value for _, value in request.query_params.multi_items())]
    if any("\x00" in value for value in values):
        return _problem(HTTP_400_BAD_REQUEST, "invalid request: it contains a NUL character", [])
    return None


def _malformed(_: Request[Any, Any, Any], error: MalformedBody) -> Response[dict[str, object]]:
    return _problem(HTTP_400_BAD_REQUEST, str(error))


def _invalid(_: Request[Any, Any, Any], error: InvalidWebhook) -> Response[dict[str, object]]:
    errors = [{"path": e.path, "message": e.message} for e in error.errors]
    return _problem(HTTP_422_UNPROCESSABLE_ENTITY, str(error), errors)


def _bad_parameters(
    _: Request[Any, Any, Any], error: ValidationException
) -> Response[dict[str, object]]:
    extra = error.extra if isinstance(error.extra, list) else []
    errors = [
        {"path": str(item.get("key", "")), "message": str(item.get("message", ""))}
        for item in extra
        if isinstance(item, dict)
    ]
    detail = "; ".join(f"{e['path']}: {e['message']}" for e in errors) or error.detail
    return _problem(HTTP_400_BAD_REQUEST, f"invalid request: {detail}", errors)


def _http_error(_: Request[Any, Any, Any], error: HTTPException) -> Response[dict[str, object]]:
    return Response({"detail": error.detail}, status_code=error.status_code, headers=error.headers)


def _database_down(
    _: Request[Any, Any, Any], error: OperationalError
) -> Response[dict[str, object]]:
    return _problem(HTTP_503_SERVICE_UNAVAILABLE, f"database unavailable: {error.orig}")
