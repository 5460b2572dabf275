"""The HTTP API: create_app() is the one place where every route and handler is wired."""

import logging
import os
from importlib.metadata import version

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide

from cdp import DISTRIBUTION, capabilities, console
from cdp.access import auth
from cdp.http import guards, health, metrics, openapi, params, problems, requestlog, serialization
from cdp.log import feed, stream
from cdp.projections import registry
from cdp.runtime import serverlog
from cdp.runtime.metrics import Metrics, multiprocess_directory, worker_stopped
from cdp.runtime.service import Service
from cdp.settings import Settings

DESCRIPTION = """\
An event-sourced customer-data store for Fasttrack chat-center webhooks.

Every webhook is appended, exactly as it arrived, to an immutable log; projections turn
the log into customer profiles, chats, sessions and handoffs. Errors are
`{"detail": ..., "errors": [{"path", "message"}]}`. Lists come in pages: ask again with
`after=<next>` until `next` is null. Times are ISO 8601 in UTC, with milliseconds.

Webhooks need their source's secret (`?token=` or `Authorization: Bearer`); every query
needs a read token, rebuilds an admin token (`Authorization: Bearer`). A store with no
source and no token, served on 127.0.0.1 only, is open: see docs/security.md.

Requests are answered only when addressed to a name the server answers for (`Host`: the
address it listens on, and CDP_ALLOWED_HOSTS), else 421. A request that changes something
and that a browser says comes from another site or origin (`Sec-Fetch-Site`, `Origin`) is
403 unless it carries `Authorization: Bearer`.
"""


def create_app(settings: Settings, *, exposed: bool = False) -> Litestar:
    """The API on `settings`' database. Unless `exposed`, a store with no sources takes
    webhooks without a secret and one with no tokens answers queries without one.

    Its metrics are counted in files of PROMETHEUS_MULTIPROC_DIR when that is set (see
    cdp.runtime.metrics), in the process otherwise."""
    counted = Metrics(multiprocess_directory())
    service = Service.of(settings, registry.projectors(settings), counted)
    gate = auth.Gate(auth.Keys(service.credentials), settings, exposed=exposed)
    streams = stream.Streams(
        settings.max_streams, settings.max_streams_per_token, feed.Feed.of(service), counted
    )
    app = Litestar(
        route_handlers=[
            *(route for module in capabilities.modules("routes") for route in module.ROUTES),
            health.health,
            metrics.metrics,
            *openapi.asset_routers(),
            *console.routes(),
        ],
        dependencies={
            "service": Provide(lambda: service, use_cache=True, sync_to_thread=False),
            "gate": Provide(lambda: gate, use_cache=True, sync_to_thread=False),
            "streams": Provide(lambda: streams, use_cache=True, sync_to_thread=False),
        },
        state=State({"gate": gate, "streams": streams}),
        exception_handlers=problems.HANDLERS,  # type: ignore[arg-type]
        before_request=params.check,
        on_startup=[service.start],
        on_shutdown=[streams.stop, service.stop],
        type_encoders=serialization.TYPE_ENCODERS,
        template_config=console.templates(settings.zone()),
        plugins=[serialization.RawJSONSchema(), openapi.DefaultResponses()],
        openapi_config=openapi.config("cdp", version(DISTRIBUTION), DESCRIPTION),
        logging_config=None,  # cdp serve sets logging up; every error is logged by problems
    )
    # Around the router, not middlewares of the routes: a request no route takes is guarded,
    # logged and counted too.
    app.asgi_handler = requestlog.RequestLog(guards.Guard(app.asgi_handler, settings), counted)
    if exposed and not settings.allowed_hosts:
        logging.getLogger("cdp").warning(
            "CDP_ALLOWED_HOSTS is not set: requests are answered only when addressed to this "
            "machine's IP address or localhost, the others get 421. Set it to the names "
            "clients use (behind a proxy, the Host it passes on)"
        )
    return app


# Set by `cdp serve --workers N` for its worker processes, which build the app themselves.
EXPOSED_ENV = "CDP_SERVE_EXPOSED"


def from_environment() -> Litestar:
    """The app of one worker process of `cdp serve --workers N`: its settings from the
    environment, as the command's own (CDP_...), and whether it listens beyond 127.0.0.1
    from EXPOSED_ENV, which the command set after its checks."""
    settings = Settings()
    serverlog.configure(settings.log_format)
    app = create_app(settings, exposed=os.environ.get(EXPOSED_ENV) == "1")
    app.on_shutdown.append(worker_stopped)
    return app
