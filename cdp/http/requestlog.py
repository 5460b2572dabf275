"""One log line per request, and the count of requests by route and status.

It wraps the router itself, so that a request that no route takes is logged and counted
too. The line holds the path without its query string: query strings carry secrets
(`?token=`) and phone numbers (`/profiles?phone=`), and digit runs in the path are masked.
"""

import logging
import time
from typing import Any, Final

from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send

from cdp.http.problems import shown_path
from cdp.runtime.metrics import Metrics

logger = logging.getLogger("cdp.requests")
_NOTES: Final = "cdp.requestlog"


def note(scope: Scope, **fields: str) -> None:
    """Add `fields` to the request's log line (a webhook's source)."""
    scope["state"].setdefault(_NOTES, {}).update(fields)


class RequestLog:
    """An ASGI app around `app` that logs and counts each of its requests."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope["path"]  # as it came: routing may rewrite it
        status: int | None = None

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self._done(scope, path, status, time.perf_counter() - started)

    def _done(self, scope: HTTPScope, path: str, status: int | None, seconds: float) -> None:
        method = scope["method"]
        if status is not None:
            self.metrics.request(method, scope.get("path_template") or "unmatched", status)
        client = scope.get("client")
        notes: dict[str, str] = scope.get("state", {}).get(_NOTES, {})
        fields: dict[str, Any] = {
            "method": method,
            "path": shown_path(path),
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
            "client": client[0] if client else None,
            **notes,
        }
        logger.info(
            '%s "%s %s" %s %.1f ms%s',
            fields["client"] or "-",
            method,
            fields["path"],
            status or "-",
            fields["duration_ms"],
            "".join(f" {name}={value}" for name, value in notes.items()),
            extra={"fields": fields},
        )
