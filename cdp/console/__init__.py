"""The web console at /console/: the API's answers as pages, for support leads and analysts.

Server-rendered from the API's own queries, with its own static files: it works with no
access to the internet. Errors are the API's (the same status, detail and log line),
shown as a page.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from litestar import Request, Response, Router, get
from litestar.response import File, Redirect
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

from cdp.console import access, pages, reports
from cdp.console.render import error_page, templates
from cdp.http import problems

STATIC: Final = Path(__file__).parent / "static"
# How long a browser may keep the icon it asks every site for at /favicon.ico.
ICON_KEPT: Final = 86_400  # seconds

__all__ = ["routes", "templates"]


def routes() -> list[ControllerRouterHandler]:
    """Every console route: its pages, and its static files under /console/static/."""
    return [
        Router(
            path="/",
            route_handlers=[pages.SignIn, pages.Pages, reports.Reports, pages.Operations],
            exception_handlers={
                access.SignInNeeded: _sign_in,
                **{kind: _shown(handler) for kind, handler in problems.HANDLERS.items()},
            },
        ),
        create_static_files_router(
            path=f"{access.PATH}/static",
            directories=[STATIC],
            include_in_schema=False,
            cache_control=None,
        ),
        favicon,
    ]


@get("/favicon.ico", include_in_schema=False, sync_to_thread=False)
def favicon() -> File:
    """The icon a browser asks every site for, whatever the page said: the console's (its
    pages name favicon.svg), rather than a 404 on every page. Open to anyone, as the
    console's static files are; the headers of every answer apply (cdp.http.guards)."""
    return File(
        STATIC / "favicon.ico",
        media_type="image/vnd.microsoft.icon",
        content_disposition_type="inline",
        headers={"Cache-Control": f"max-age={ICON_KEPT}"},
    )


def _sign_in(request: Request[Any, Any, Any], _: access.SignInNeeded) -> Response[Any]:
    target = f"{access.PATH}/sign-in"
    if request.headers.get("hx-request") == "true":  # a page's own request: move the page
        return Response(b"", status_code=401, headers={"HX-Redirect": target})
    return Redirect(target, status_code=303)


def _shown(handler: Callable[..., problems.Answer]) -> Callable[..., Any]:
    """The API's answer to an error, as a page: its status and detail, logged as it is."""

    def show(request: Request[Any, Any, Any], error: Exception) -> Any:
        answer = handler(request, error)
        detail = str(answer.content.get("detail", "")) if isinstance(answer.content, dict) else ""
        status = answer.status_code or 500
        shown = error_page(request, status, detail)
        shown.headers.update({k: v for k, v in answer.headers.items() if k == "Retry-After"})
        return shown

    return show
