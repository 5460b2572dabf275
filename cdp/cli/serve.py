"""`cdp serve`: the HTTP service, in one process or several."""

import contextlib
import errno
import ipaddress
import logging
import os
import shutil
import socket
import sys
import tempfile
from typing import TYPE_CHECKING, Any

import click
from sqlalchemy.engine import make_url

from cdp.access import credentials
from cdp.cli.app import (
    SettingsError,
    check_key_file,
    database_named,
    engine_for,
    made_new,
    main,
    new_database,
    reach_keystore,
)
from cdp.runtime import server, serverlog
from cdp.settings import Settings

if TYPE_CHECKING:
    from litestar import Litestar


@main.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="The address to listen on: 127.0.0.1 for this machine alone, 0.0.0.0 for every "
    "network (refused while the API is open: no source and no token).",
)
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="The TCP port to listen on.",
)
@click.option("--migrate", is_flag=True, help="Upgrade the schema first (SQLite always is).")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Server processes, all on one port (above 1: PostgreSQL only).",
)
@click.option(
    "--forwarded-allow-ips",
    default=None,
    help="Addresses of reverse proxies whose X-Forwarded-For is believed (comma-separated, "
    "or *): rate limits then see the client's address, not the proxy's.",
)
@click.pass_obj
def serve(
    settings: Settings,
    host: str,
    port: int,
    migrate: bool,
    workers: int,
    forwarded_allow_ips: str | None,
) -> None:
    """Serve the HTTP API.

    With no source and no token, the API is open: it listens on 127.0.0.1 only, and any
    other address is refused until both exist. With --workers N, N processes take requests
    on the same port; PostgreSQL keeps their appends in one order.
    """
    import uvicorn

    if workers > 1 and make_url(settings.database_url).get_backend_name() == "sqlite":
        raise click.ClickException(
            "--workers above 1 needs PostgreSQL: SQLite lets one process write at a time, so "
            "more processes would only wait for one another. Point CDP_DATABASE_URL at "
            "PostgreSQL (postgresql+psycopg://user@host/db), or serve with one worker"
        )
    _count_in_a_directory(workers)
    from cdp.http.app import EXPOSED_ENV, create_app
    from cdp.runtime.metrics import multiprocess_directory

    try:
        multiprocess_directory()
    except ValueError as error:
        raise SettingsError(str(error)) from None
    new = new_database(settings)
    engine = engine_for(settings, migrate=migrate, announce=False)  # said in the log, below
    keystore = reach_keystore(settings)
    key_file = check_key_file(settings, engine)
    with engine.connect() as connection:
        ring = credentials.load(connection)
    engine.dispose()  # the app opens its own
    serverlog.configure(settings.log_format)
    logging.getLogger("cdp").info(
        "database: %s; keys in %s, wrapped under the key file %s",
        database_named(settings.database_url),
        keystore,
        key_file,
    )
    if new is not None:
        logging.getLogger("cdp").warning("%s", made_new(new, loud=True))
    exposed = not _loopback(host)
    open_parts = [
        part
        for part, is_open in (
            ("webhooks need no secret (no source: cdp source add default)", ring.ingest_open),
            ("queries need no token (no token: cdp token create --role admin)", ring.reads_open),
        )
        if is_open
    ]
    if open_parts and exposed:
        raise click.ClickException(
            f"refusing to listen on {host}: the API is open, "
            + "; ".join(open_parts)
            + ". Create them first, or listen on 127.0.0.1"
        )
    for part in open_parts:
        logging.getLogger("cdp").warning("THE API IS OPEN on %s: %s", host, part)

    # Once every setting is known good: a port in use is said in one line, not as the
    # server's bind error after its start-up.
    _can_listen(host, port)
    limits = server.Limits.of(settings)
    # Not uvicorn's access log: its lines would carry query strings, and those can hold phone
    # numbers and secrets. The API logs each request itself, without (cdp.http.requestlog).
    # Its HTTP protocol is bounded before any request reaches the API (cdp.runtime.server); the API
    # has no WebSocket, so no upgrade is taken.
    served: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_config": None,
        "access_log": False,
        "proxy_headers": forwarded_allow_ips is not None,
        "forwarded_allow_ips": forwarded_allow_ips,
        "http": server.Protocol,
        "ws": "none",
        "timeout_keep_alive": limits.keep_alive_timeout,
    }
    if workers == 1:
        server.install(limits)
        _run(create_app(settings, exposed=exposed), **served)
        return
    os.environ[EXPOSED_ENV] = "1" if exposed else "0"  # for the workers: they make the app
    # Each worker runs uvicorn's own server: its event streams are cut once a stop has
    # waited STREAMS_END_WITHIN for the other answers, not ended first as _run ends them.
    uvicorn.run(
        "cdp.runtime.server:worker_app",
        factory=True,
        workers=workers,
        timeout_graceful_shutdown=STREAMS_END_WITHIN,
        # uvicorn kills a worker that does not answer its health check in time, with the
        # answers it was giving: on a busy machine, give a busy worker longer than 5 s.
        timeout_worker_healthcheck=WORKER_ANSWERS_WITHIN,
        **served,
    )


def _count_in_a_directory(workers: int) -> None:
    """Before the server starts: give several workers one directory to count in (see
    cdp.runtime.metrics), a fresh one removed as the command ends, unless PROMETHEUS_MULTIPROC_DIR
    names one. A directory named must hold no `*.db` file but prometheus_client's own (it
    would read any as one of them): another is an error, left where it is. The files of
    prometheus_client that an earlier run left there are removed, and only those."""
    named = os.environ.get(MULTIPROCESS_DIRECTORY)
    if named is None:
        if workers > 1:
            fresh = tempfile.mkdtemp(prefix="cdp-metrics-")
            os.environ[MULTIPROCESS_DIRECTORY] = fresh
            click.get_current_context().call_on_close(lambda: shutil.rmtree(fresh, True))
        return
    if not os.path.isdir(named):
        return  # said by multiprocess_directory, next
    from cdp.runtime import metrics

    if foreign := metrics.foreign_files(named):
        shown = ", ".join(path.name for path in foreign[:5]) + (", ..." if foreign[5:] else "")
        raise SettingsError(
            f"{MULTIPROCESS_DIRECTORY}={named!r} holds {shown}, which prometheus_client did not "
            "make: /metrics would read every *.db file there as its own. Give the server a "
            "directory of its own (or unset the variable: cdp serve --workers N makes one)"
        )
    for left in metrics.counting_files(named):  # an earlier run's: not summed with ours
        left.unlink(missing_ok=True)


# prometheus_client's own variable: read once, as it is imported (see cdp.runtime.metrics).
MULTIPROCESS_DIRECTORY = "PROMETHEUS_MULTIPROC_DIR"


STREAMS_END_WITHIN = 5  # seconds


WORKER_ANSWERS_WITHIN = 30  # seconds a worker has to answer the supervisor's health check


def _run(app: "Litestar", **options: Any) -> None:
    """uvicorn.run(app, **options), but the app's event streams end as the server begins to
    stop: it waits for every answer to end, and a stream would not end by itself."""
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            app.state.streams.close()
            await super().shutdown(sockets)

    running = Server(uvicorn.Config(app, **options))
    with contextlib.suppress(KeyboardInterrupt):
        running.run()
    if not running.started:
        sys.exit(3)  # as uvicorn.run does


def _can_listen(host: str, port: int) -> None:
    """Bind each address `host` stands for on `port`, as the server will, and let go: an
    error saying what to do when one cannot be (a port in use, above all), rather than the
    server's bind error after its start-up."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise click.ClickException(
            f"cannot listen on {host}: {error.strerror} (--host takes an address of this "
            "machine, or a name for one)"
        ) from None
    for family, kind, protocol, _, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio does
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as error:
                raise click.ClickException(_bind_problem(host, port, error)) from None


def _bind_problem(host: str, port: int, error: OSError) -> str:
    if error.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is in use: pass --port N (or stop what holds it)"
    if error.errno == errno.EACCES:
        return (
            f"may not listen on port {port} on {host}: ports below 1024 need privileges; "
            "pass --port N (1024 or above)"
        )
    if error.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}: it is no address of this machine (--host)"
    return f"cannot listen on port {port} on {host}: {error.strerror or error}"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
