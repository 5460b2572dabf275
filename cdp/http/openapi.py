"""The OpenAPI schema and its pages: served by cdp itself, true to what the API sends.

The pages' JavaScript and CSS come from the openapi-ui-bundles package, so /schema works
with no internet access. The pages hold no script of their own: each loads the schema
with a script of cdp's (cdp/http/static), so that their Content-Security-Policy (see
cdp.http.guards) lets no inline script run. The webhook's request body is documented
from the pydantic envelope, with the samples in cdp/samples as examples.
"""

import copy
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import openapi_ui_bundles
from litestar import Request
from litestar.datastructures import CacheControlHeader
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import RedocRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import (
    Components,
    Example,
    OpenAPIMediaType,
    Operation,
    RequestBody,
    SecurityScheme,
)
from litestar.plugins import ReceiveRoutePlugin
from litestar.router import Router
from litestar.routes import BaseRoute, HTTPRoute
from litestar.static_files import create_static_files_router
from pydantic import TypeAdapter

from cdp.http.params import ours
from cdp.http.schemas import Problem
from cdp.log.webhook import (
    CHAT_PAYLOAD,
    EARLIEST_TIMESTAMP_MS,
    ENVELOPE,
    MAX_ID_LENGTH,
    SESSION_UPDATED_PAYLOAD,
)

ASSETS: Final = "/schema/assets"
SAMPLES: Final = Path(__file__).parents[1] / "samples"
STATIC: Final = Path(__file__).parent / "static"
_FAVICON: Final = f"<link rel='icon' type='image/png' href='{ASSETS}/swagger/favicon-32x32.png'>"


def config(title: str, version: str, description: str) -> OpenAPIConfig:
    return OpenAPIConfig(
        title=title,
        version=version,
        description=description,
        use_handler_docstrings=True,
        components=Components(
            security_schemes={
                "token": SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="A read or admin token (`cdp token create`); for webhooks, "
                    "the source's secret (or `?token=`)",
                )
            }
        ),
        render_plugins=[
            Swagger(
                path=["/", "/swagger"],
                js_url=f"{ASSETS}/swagger/swagger-ui-bundle.js",
                css_url=f"{ASSETS}/swagger/swagger-ui.css",
                standalone_preset_js_url=f"{ASSETS}/swagger/swagger-ui-standalone-preset.js",
                favicon=_FAVICON,
                style="",
            ),
            Redoc(
                js_url=f"{ASSETS}/redoc/redoc.standalone.js",
                google_fonts=False,
                favicon=_FAVICON,
                style="",
            ),
        ],
    )


def _page(title: str, favicon: str, head: str, body: str) -> bytes:
    return (
        "<!DOCTYPE html><html><head>"
        f"<title>{html.escape(title)}</title>{favicon}<meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<link rel='stylesheet' href='{ASSETS}/cdp/docs.css'>{head}</head>"
        f"<body>{body}</body></html>"
    ).encode()


class Swagger(SwaggerRenderPlugin):
    """Swagger UI, started by cdp's swagger.js."""

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return _page(
            openapi_schema["info"]["title"],
            self.favicon,
            f"<link rel='stylesheet' href='{self.css_url}'>",
            "<div id='swagger-container'></div>"
            f"<script src='{self.js_url}'></script>"
            f"<script src='{self.standalone_preset_js_url}'></script>"
            f"<script src='{ASSETS}/cdp/swagger.js'></script>",
        )

    def receive_router(self, router: Router) -> None:
        """No OAuth2 redirect page: cdp's tokens are bearer tokens, and that page's script
        is inline."""


class Redoc(RedocRenderPlugin):
    """Redoc, started by cdp's redoc.js."""

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return _page(
            openapi_schema["info"]["title"],
            self.favicon,
            "",
            "<div id='redoc-container'></div>"
            f"<script src='{self.js_url}'></script>"
            f"<script src='{ASSETS}/cdp/redoc.js'></script>",
        )


def asset_routers() -> list[Router]:
    cache = CacheControlHeader(max_age=86400)
    return [
        create_static_files_router(
            path=f"{ASSETS}/{name}",
            directories=[directory],
            name=f"{name}-assets",
            cache_control=cache,
            include_in_schema=False,
        )
        for name, directory in (
            ("swagger", openapi_ui_bundles.swagger_ui.static_path),
            ("redoc", openapi_ui_bundles.redoc.static_path),
            ("cdp", STATIC),
        )
    ]


def problem(description: str, example: dict[str, Any] | None = None) -> ResponseSpec:
    """An error answer as it is sent: {detail, errors}."""
    examples = [Example(summary=description, value=example)] if example else None
    return ResponseSpec(
        Problem, description=description, generate_examples=False, examples=examples
    )


# Every endpoint can answer these; a handler's own description of one wins.
COMMON_ERRORS: Final = {
    400: problem(
        "Invalid request: `errors` names each bad, repeated or unknown parameter",
        {
            "detail": "invalid request: chat_uid: unknown query parameter 'chat_uid' (this "
            "endpoint takes: none)",
            "errors": [
                {
                    "path": "chat_uid",
                    "message": "unknown query parameter 'chat_uid' (this endpoint takes: none)",
                }
            ],
        },
    ),
    503: problem(
        "The database cannot be reached or kept the request waiting too long, or the server "
        "is busy; nothing stored. Retry-After says when to try again",
        {"detail": "database unavailable: it cannot be reached"},
    ),
}


# What an endpoint behind credentials can answer besides.
GUARDED_ERRORS: Final = {
    401: problem(
        "The secret or token is missing or wrong (the same whether or not it exists)",
        {"detail": "a valid token is needed: Authorization: Bearer <token>"},
    ),
    429: problem(
        "Over the rate limit of the source or token, or of wrong credentials from this "
        "address: retry after Retry-After seconds",
        {"detail": "too many requests with this token: at most 100 a second; retry later"},
    ),
}
ADMIN_ERRORS: Final = {
    403: problem(
        "A read token, where an admin token is needed",
        {"detail": "this needs an admin token; token 'analyst' may only read"},
    )
}


def not_found(example: str) -> dict[int, ResponseSpec]:
    """A 404 for an endpoint that looks one thing up, with the answer it gives."""
    return {404: problem("Nothing by that identifier", {"detail": example})}


class DefaultResponses(ReceiveRoutePlugin):
    """Gives every cdp endpoint the error answers every endpoint can give, and those behind
    credentials their scheme and answers."""

    def receive_route(self, route: BaseRoute) -> None:
        if isinstance(route, HTTPRoute):
            for handler in route.route_handlers:
                if not ours(handler):
                    continue
                common = dict(COMMON_ERRORS)
                guards = {guard.__name__ for guard in handler.resolve_guards()}
                if guards or "ingest" in handler.resolve_tags():
                    common |= GUARDED_ERRORS
                    handler.security = [{"token": []}]
                if "admin" in guards:
                    common |= ADMIN_ERRORS
                handler.responses = {**common, **(handler.responses or {})}


@dataclass
class WebhookOperation(Operation):
    """POST /webhooks/fasttrack reads its body itself; this says what that body is."""

    def __post_init__(self) -> None:
        examples = {
            path.stem: Example(
                summary=path.stem.replace("_", " "), value=json.loads(path.read_text())
            )
            for path in sorted(SAMPLES.glob("*.json"))
        }
        self.request_body = RequestBody(
            required=True,
            description=(
                "One webhook exactly as Fasttrack sends it. The four known event types are "
                "checked as described; any other event type needs only a valid envelope."
            ),
            content={
                "application/json": OpenAPIMediaType(
                    schema=envelope_schema(),  # type: ignore[arg-type]
                    examples=examples,  # type: ignore[arg-type]
                )
            },
        )


def envelope_schema() -> dict[str, Any]:
    """The envelope, with the payloads of the known event types spelled out."""
    schema = inline_schema(ENVELOPE)
    schema["properties"]["payload"] = {
        "description": (
            "For session_updated: a session with its team is required. For message_created, "
            "operator_replied and message_updated: the chat is required. Other fields are kept."
        ),
        "anyOf": [
            inline_schema(SESSION_UPDATED_PAYLOAD),
            inline_schema(CHAT_PAYLOAD),
            {"type": "object", "description": "the payload of another event type"},
        ],
    }
    # The validators check these bounds in code, where pydantic cannot see them.
    schema["properties"]["event_type"] |= {"minLength": 1, "maxLength": MAX_ID_LENGTH}
    schema["properties"]["timestamp"] |= {
        "minimum": EARLIEST_TIMESTAMP_MS,
        "description": "When the event happened, in milliseconds since the epoch: from 2000 "
        "to CDP_MAX_CLOCK_SKEW ahead of the server's clock.",
    }
    return schema


def inline_schema(adapter: TypeAdapter[Any]) -> dict[str, Any]:
    """The type's JSON schema with its $defs inlined: Litestar keeps its own components."""
    schema = adapter.json_schema(mode="validation")
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            reference = node.get("$ref")
            if isinstance(reference, str) and reference.startswith("#/$defs/"):
                rest = {key: value for key, value in node.items() if key != "$ref"}
                target = copy.deepcopy(definitions[reference.removeprefix("#/$defs/")])
                return {**inline(target), **inline(rest)}
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return dict(inline(schema))
