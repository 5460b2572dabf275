"""The cdp command: serve, migrate, import, rebuild, status, and sources and tokens."""

import contextlib
import ipaddress
import json
import logging
import os
import shutil
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import click
from pydantic import ValidationError
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from tqdm import tqdm

from cdp import db, upgrades
from cdp.access import credentials
from cdp.access.credentials import CredentialError
from cdp.bench import GROUPS
from cdp.log import chain, ingest, queries, tables
from cdp.log.webhook import (
    DEFAULT_SOURCE,
    Incoming,
    InvalidWebhook,
    MalformedBody,
    Refused,
    identifier_problem,
    latest_timestamp,
    parse,
)
from cdp.privacy import erasure
from cdp.privacy.keyfile import KeyFileError
from cdp.privacy.keystore import KeyFileMismatch, Keystore
from cdp.projections import builds, registry, runner
from cdp.projections.schemas import Projection
from cdp.runtime import server, serverlog
from cdp.settings import Settings
from cdp.times import iso, utc

if TYPE_CHECKING:
    from litestar import Litestar

T = TypeVar("T")


class SettingsError(click.ClickException):
    """A setting that cannot work: exit status 2, as for any other misuse."""

    exit_code = 2


class ImportStopped(click.ClickException):
    """An import that a failure not of one line's making stopped: exit status 3."""

    exit_code = 3


class _Group(click.Group):
    def invoke(self, context: click.Context) -> object:
        try:
            return super().invoke(context)
        except (DBAPIError, PoolTimeout) as error:
            raise click.ClickException(f"cannot use the database: {_reason(error)}") from None


@click.group(cls=_Group)
@click.version_option(package_name="cdp", prog_name="cdp", message="%(prog)s %(version)s")
@click.pass_context
def main(context: click.Context) -> None:
    """An event-sourced customer-data store for Fasttrack chat-center webhooks.

    The database is CDP_DATABASE_URL (default: the SQLite file ./cdp.db).
    """
    try:
        context.obj = Settings()
    except ValidationError as error:
        problems = "; ".join(
            f"CDP_{'_'.join(map(str, e['loc'])).upper()}: {e['msg'].removeprefix('Value error, ')}"
            for e in error.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from None


def _connect(settings: Settings, *, existing: bool = False) -> Engine:
    """An engine that is disposed of when the command ends.

    With `existing`, a SQLite file that is not there is an error, not a new empty file.
    """
    url = make_url(settings.database_url)
    if existing and url.get_backend_name() == "sqlite" and url.database:
        path = Path(url.database)
        if not path.exists():
            raise click.ClickException(
                f"no database at {path.resolve()}: run cdp where it is, or point "
                "CDP_DATABASE_URL at it (cdp migrate or cdp import create a new one)"
            )
    engine = db.engine_of(settings, connections=2)
    click.get_current_context().call_on_close(engine.dispose)
    return engine


def _engine(settings: Settings, *, migrate: bool = False, existing: bool = False) -> Engine:
    """An engine on a schema at the latest migration; SQLite is brought there by itself."""
    engine = _connect(settings, existing=existing)
    current, latest = upgrades.pending(engine)
    if current != latest:
        if migrate or db.dialect(engine) == "sqlite":
            _upgrade(settings, engine)
        else:
            raise click.ClickException(
                f"the database schema is at revision {current or '(none)'}, this cdp needs "
                f"{latest}: run `cdp migrate` first (or `cdp serve --migrate`)"
            )
    return engine


def _reach_keystore(settings: Settings) -> str:
    """Where the keys are, once the keystore has answered as the database did: "the main
    database", or a database of its own, named without its password. An error naming it
    when it cannot be reached: a server without its keys would refuse every webhook."""
    url = settings.keystore()
    if url is None:
        return "the main database"
    named = _named(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        path = Path(parsed.database)
        if not path.parent.is_dir():
            raise click.ClickException(
                f"cannot use the keystore {named}: there is no directory {path.parent.resolve()} "
                "(CDP_KEYSTORE_URL)"
            )
        if not path.exists():
            return f"{named} (made with the first key)"
    engine = db.make_engine(
        url,
        connections=1,
        wait=settings.database_pool_timeout,
        connect_timeout=settings.database_connect_timeout,
        statement_timeout=settings.database_statement_timeout,
        synchronous=settings.sqlite_synchronous,
    )
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except (DBAPIError, PoolTimeout) as error:
        raise click.ClickException(
            f"cannot use the keystore {named} (CDP_KEYSTORE_URL): {_reason(error)}"
        ) from None
    finally:
        engine.dispose()
    return named


def _check_key_file(settings: Settings, engine: Engine) -> str:
    """The key file, once it has been found to open the keystore's keys: an error naming
    it when it does not (see Keystore.check), before a server starts on it."""
    path = settings.key_path()
    named = str(path) if path is not None else "(in memory)"
    url = settings.keystore()
    if url is not None and not _exists(url):
        return f"{named} (made with the first key)"
    keystore = Keystore.at(url, key_file=path, synchronous=settings.sqlite_synchronous)
    try:
        with engine.connect() as connection:
            keystore.check(connection)
    except (KeyFileMismatch, KeyFileError) as error:
        raise click.ClickException(str(error)) from None
    except DBAPIError as error:  # a schema older than the key file: see cdp migrate
        return f"{named} (not checked: {_reason(error)})"
    finally:
        keystore.dispose()
    return named


def _exists(url: str) -> bool:
    """Whether a keystore of its own is there yet: a SQLite file is made with the first key."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return True
    return parsed.database != ":memory:" and Path(parsed.database).exists()


def _named(url: str) -> str:
    """A database as a person knows it: its kind, user, host and database, or its file;
    never its password."""
    return make_url(url).render_as_string(hide_password=True)


def _keystore(settings: Settings, engine: Engine) -> Keystore:
    """The keystore, closed when the command ends, agreeing with the main database on
    every erasure (see erasure.reconcile) before the command reads or writes a key."""
    _reach_keystore(settings)
    keystore = Keystore.at(
        settings.keystore(), key_file=settings.key_path(), synchronous=settings.sqlite_synchronous
    )
    click.get_current_context().call_on_close(keystore.dispose)
    projectors = registry.projectors(settings)
    try:
        done = erasure.reconcile(engine, keystore, projectors, erasure.pause(engine))
    except (KeyFileMismatch, KeyFileError) as error:
        raise click.ClickException(str(error)) from None
    if done.moved:
        click.echo(f"moved {done.moved} keys and erasure records to {keystore.describe()}")
    for profile in (*done.applied, *done.reapplied, *done.finished):
        click.echo(f"finished the erasure of profile {profile}")
    return keystore


def _reason(error: Exception) -> str:
    """One line: the driver's own message, without its traceback or SQL."""
    cause = getattr(error, "orig", None) or error
    return " ".join(str(cause).split()) or type(cause).__name__


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
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
    engine = _engine(settings, migrate=migrate)
    keystore = _reach_keystore(settings)
    key_file = _check_key_file(settings, engine)
    with engine.connect() as connection:
        ring = credentials.load(connection)
    engine.dispose()  # the app opens its own
    serverlog.configure(settings.log_format)
    logging.getLogger("cdp").info(
        "database: %s; keys in %s, wrapped under the key file %s",
        _named(settings.database_url),
        keystore,
        key_file,
    )
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

    limits = server.Limits.of(settings)
    # Not uvicorn's access log: its lines would carry query strings, and those can hold phone
    # numbers and secrets. The API logs each request itself, without (cdp.api.requestlog).
    # Its HTTP protocol is bounded before any request reaches the API (cdp.server); the API
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
    cdp.metrics), a fresh one removed as the command ends, unless PROMETHEUS_MULTIPROC_DIR
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


# prometheus_client's own variable: read once, as it is imported (see cdp.metrics).
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


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@main.command()
@click.pass_obj
def migrate(settings: Settings) -> None:
    """Upgrade the database schema to the latest migration."""
    engine = _connect(settings)
    _reach_keystore(settings)
    _upgrade(settings, engine)
    click.echo(f"schema at revision {upgrades.pending(engine)[0]}")


def _upgrade(settings: Settings, engine: Engine) -> None:
    """Upgrade the schema, its migrations finding the keys in the keystore; and rebuild the
    projections when a migration changed the order they fold the log in."""
    keystore = Keystore.at(
        settings.keystore(), key_file=settings.key_path(), synchronous=settings.sqlite_synchronous
    )
    click.get_current_context().call_on_close(keystore.dispose)
    try:
        reorders = upgrades.upgrade(engine, keystore=keystore)
    except upgrades.Refused as refused:
        raise click.ClickException(f"the schema was not upgraded: {refused}") from None
    if reorders:
        click.echo("rebuilding the projections: events are ordered anew (migration 0009)")
        projectors = registry.projectors(settings)
        erasure.reconcile(engine, keystore, projectors)
        with db.writing(engine) as connection:
            head = runner.rebuild(connection, projectors, keystore)
        click.echo(f"rebuilt up to position {head}")


@dataclass
class _Tally:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"accepted: {self.accepted}, duplicates: {self.duplicates}, "
            f"rejected: {len(self.rejected)}"
        )


ONE_OBJECT_PER_LINE = (
    "the importer reads one JSON object per line; a pretty-printed file can be turned into "
    "that with: jq -c . FILE > FILE.jsonl (or jq -c '.[]' for an array of webhooks)"
)


@main.command("import")
@click.argument("file", type=click.File("rb"))
@click.option(
    "--batch-size",
    default=5000,
    show_default=True,
    type=click.IntRange(1, 50_000),
    help="Webhooks per transaction.",
)
@click.option(
    "--source",
    default=DEFAULT_SOURCE,
    show_default=True,
    help="The source the webhooks are logged as coming from.",
)
@click.pass_obj
def import_(settings: Settings, file: BinaryIO, batch_size: int, source: str) -> None:
    """Ingest webhook bodies from FILE (- for stdin), one JSON object per line.

    Each line passes the same checks and deduplication as POST /webhooks/fasttrack.
    Blank lines are skipped. Exits with status 1 if any line was rejected, 3 if the import
    stopped early (the database went away, the disk filled up): what was stored by then is
    kept, and running the same import again stores the rest, each event once.
    """
    _checked(lambda: credentials.check_name(source, "source"))
    engine = _engine(settings)
    keystore = _keystore(settings, engine)
    _build_needed(settings, engine, keystore)
    projectors = registry.projectors(settings)
    tally = _Tally()
    batch: list[Incoming] = []
    numbers: list[int] = []  # the line of each webhook in `batch`
    number = first_unstored = 0
    progress = tqdm(
        total=_size(file),
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc="import",
        disable=not sys.stderr.isatty(),
        file=sys.stderr,
    )

    def flush() -> None:
        for receipt, number in zip(
            ingest.record(engine, batch, projectors, keystore=keystore), numbers, strict=True
        ):
            if isinstance(receipt, Refused):
                tally.rejected.append((number, str(receipt)))
            elif receipt.duplicate:
                tally.duplicates += 1
            else:
                tally.accepted += 1
        batch.clear()
        numbers.clear()
        progress.set_postfix_str(str(tally), refresh=False)

    try:
        with progress:
            for number, line in enumerate(file, start=1):
                progress.update(len(line))
                body = line.rstrip(b"\r\n")
                if not body.strip():
                    continue
                try:
                    latest = latest_timestamp(settings.max_clock_skew)
                    incoming = parse(body, latest=latest, source=source)
                except (MalformedBody, InvalidWebhook) as error:
                    tally.rejected.append((number, str(error)))
                else:
                    first_unstored = first_unstored if batch else number
                    batch.append(incoming)
                    numbers.append(number)
                if len(batch) >= batch_size:
                    flush()
            flush()
    except (DBAPIError, PoolTimeout, OSError) as error:
        _report(tally)
        raise ImportStopped(
            f"import stopped at line {first_unstored if batch else number}: {_reason(error)}. "
            "Lines before it are stored; "
            "run the same import again to store the rest (what is stored counts as duplicates)"
        ) from None
    _report(tally)
    try:
        db.settle(engine, [tables.events, *(table for p in projectors for table in p.tables)])
    except (DBAPIError, PoolTimeout) as error:
        click.echo(f"the tables' statistics are left to autovacuum: {_reason(error)}")
    if tally.rejected:
        sys.exit(1)


def _size(file: BinaryIO) -> int | None:
    """The size of a regular file, for the progress bar; None for a pipe or a terminal."""
    try:
        info = os.fstat(file.fileno())
    except (OSError, ValueError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _report(tally: _Tally) -> None:
    click.echo(str(tally))
    malformed = ("not valid JSON", "must be a JSON object")
    if any(word in reason for _, reason in tally.rejected for word in malformed):
        click.echo(f"hint: {ONE_OBJECT_PER_LINE}")
    for number, reason in tally.rejected:
        click.echo(f"line {number}: {reason}")


@main.command()
@click.option(
    "--projection",
    "names",
    multiple=True,
    metavar="NAME",
    help="Build this projection alone (again for more); default: every one.",
)
@click.pass_obj
def rebuild(settings: Settings, names: tuple[str, ...]) -> None:
    """Build projections anew from the log, beside the live ones, which keep answering (and
    webhooks keep being taken) until the new ones take their place at once.

    Exits with status 1 if a build of one of them runs already, here or on another host.
    """
    engine = _engine(settings, existing=True)
    keystore = _keystore(settings, engine)
    projectors = registry.projectors(settings)
    known = {projector.name: projector for projector in projectors}
    if unknown := [name for name in names if name not in known]:
        raise click.BadParameter(
            f"no projection named {unknown[0]!r}; there are {', '.join(known)}",
            param_hint="--projection",
        )
    if names:
        with engine.connect() as connection:
            chosen = builds.along(connection, projectors, [known[name] for name in names])
    _build(engine, keystore, chosen if names else projectors)


@main.command("catch-up")
@click.pass_obj
def catch_up(settings: Settings) -> None:
    """Build the projections never built, or built by another version of cdp or under other
    settings (what `cdp status` calls new or stale), beside the live ones."""
    engine = _engine(settings, existing=True)
    keystore = _keystore(settings, engine)
    if not _build_needed(settings, engine, keystore):
        click.echo("every projection is live: nothing to build")


def _build_needed(settings: Settings, engine: Engine, keystore: Keystore) -> bool:
    """Build what builds.needed names; whether there was any."""
    projectors = registry.projectors(settings)
    with engine.connect() as connection:
        needed = builds.along(connection, projectors, builds.needed(connection, projectors))
    if needed:
        _build(engine, keystore, needed)
    return bool(needed)


def _build(engine: Engine, keystore: Keystore, chosen: Sequence[runner.Projector]) -> None:
    """Build `chosen` beside the live projections: a progress bar on a terminal, a line at
    every tenth of the way otherwise."""
    names = ", ".join(projector.name for projector in chosen)
    started = time.perf_counter()
    bar = tqdm(desc=f"build {names}", unit=" events", disable=not sys.stderr.isatty())
    told = [-1]

    def report(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)
        tenth = 10 * done // total if total else 10
        if bar.disable and tenth > told[0]:
            told[0] = tenth
            click.echo(f"building {names}: {done} of {total} events", err=True)

    try:
        head = builds.run(engine, chosen, keystore, report=report)
    except builds.Busy as busy:
        raise click.ClickException(str(busy)) from None
    finally:
        bar.close()
    click.echo(f"built {names} up to position {head} in {time.perf_counter() - started:.2f} s")


@main.command()
@click.pass_obj
def status(settings: Settings) -> None:
    """Print the database, the log head, each projection's position, and row counts."""
    engine = _engine(settings, existing=True)
    keystore = _reach_keystore(settings)
    key_file = _check_key_file(settings, engine)
    with engine.connect() as connection:
        states = builds.states(connection, registry.projectors(settings))
        counts = queries.counts(connection)
    click.echo(f"database: {_named(settings.database_url)}")
    click.echo(f"keys in: {keystore}")
    click.echo(f"key file: {key_file}")
    click.echo(f"log head: {states[0].head if states else 0}")
    for state in states:
        click.echo(
            f"projection {state.name}: position {state.position}, lag {state.lag}, "
            f"{_described(state)}"
        )
    for name, count in counts.items():
        click.echo(f"{name}: {count}")


def _described(state: Projection) -> str:
    """A projection's status, and what differs from what built it."""
    said: str = state.status
    if state.status == "stale":
        said += (
            f" (built by version {state.built_version} with {state.built_shape or 'no settings'};"
            f" this is version {state.version} with {state.shape or 'no settings'})"
        )
    if state.build is not None and state.build.state in ("running", "interrupted", "failed"):
        build = state.build
        said += f"; build {build.state}: {build.done} of {build.total} events, by {build.owner}"
    return said


@main.command()
@click.option(
    "--database",
    "url",
    help="Where to measure: a PostgreSQL server (databases are made and dropped on it), "
    "or sqlite:/// (files in a temporary folder). Default: CDP_DATABASE_URL's kind.",
)
@click.option("--events", default=10_000, show_default=True, type=click.IntRange(100, 10**8))
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True))
@click.option(
    "--only",
    multiple=True,
    type=click.Choice(GROUPS),
    help="Measure these figures alone (repeat for several): the import and rebuild, the "
    "queries, the console's pages, one webhook, HTTP ingest, HTTP ingest with several "
    "workers (PostgreSQL), webhooks during a rebuild, a page of a large profile, the "
    "erasure of one and webhooks meanwhile, or HTTP ingest and a query with live event "
    "streams open.",
)
@click.option(
    "--soak",
    "soak_seconds",
    type=click.IntRange(1, 7 * 86_400),
    metavar="SECONDS",
    help="Measure nothing: for SECONDS, 16 clients post new webhooks, post sent ones again "
    "and query one server; then check that nothing was lost or stored twice and that every "
    "projection equals a rebuild (exit status 1 if not).",
)
@click.pass_obj
def bench(
    settings: Settings,
    url: str | None,
    events: int,
    seed: int,
    json_path: str | None,
    only: tuple[str, ...],
    soak_seconds: int | None,
) -> None:
    """Measure this installation: each figure beside a baseline measured in the same run.

    Generates its own seeded traffic; touches no existing database.
    """
    database = url or settings.database_url
    if soak_seconds is not None:
        _soak(settings, database, soak_seconds, seed)
        return
    from cdp.bench.run import Figure, Plan, measure

    click.echo(
        f"cdp bench: {events:,} events, seed {seed}, on {make_url(database).get_backend_name()}"
    )
    click.echo(f"{'figure':<86} {'value':>12}  {'baseline':>12}  {'ratio':>8}  unit, baseline")

    def show(figure: Figure) -> None:
        baseline = f"{figure.baseline:>12,.1f}" if figure.baseline else " " * 12
        ratio = f"{figure.ratio:8.2f}" if figure.ratio is not None else " " * 8
        click.echo(
            f"{figure.name:<86} {figure.value:>12,.1f}  {baseline}  {ratio}  "
            f"{figure.unit}{', vs ' + figure.baseline_name if figure.baseline_name else ''}"
        )

    plan = replace(Plan.of(database, events, seed, settings), only=frozenset(only))
    figures = measure(plan, show)
    if json_path:
        rows = [{**asdict(figure), "ratio": figure.ratio} for figure in figures]
        Path(json_path).write_text(
            json.dumps({"events": events, "seed": seed, "figures": rows}, indent=2)
        )


def _soak(settings: Settings, database: str, seconds: int, seed: int) -> None:
    from cdp.bench.soak import CLIENTS, soak

    kind = make_url(database).get_backend_name()
    click.echo(
        f"cdp bench --soak {seconds}: {CLIENTS} clients against one server, on {kind}, seed {seed}"
    )
    soaked = soak(database, seconds, settings, seed=seed)
    for line in soaked.report():
        click.echo(line)
    if not soaked.passed:
        sys.exit(1)


def _checked(work: Callable[[], T]) -> T:
    """`work()`, with a CredentialError as one line and exit status 1."""
    try:
        return work()
    except CredentialError as error:
        raise click.ClickException(str(error)) from None


@main.group()
def source() -> None:
    """Who may post webhooks: each source has a name and a secret.

    Fasttrack posts to /webhooks/fasttrack/NAME?token=SECRET. A secret is shown once, when
    it is made; the database keeps only its digest.
    """


@source.command("add")
@click.argument("name")
@click.option("--signed", is_flag=True, help="Also require a Standard Webhooks signature.")
@click.pass_obj
def source_add(settings: Settings, name: str, signed: bool) -> None:
    """Add a source and print its secret (and signing key)."""
    with _engine(settings).begin() as connection:
        issued = _checked(lambda: credentials.add_source(connection, name, signed=signed))
    _show_issued(name, issued)


@source.command("rotate")
@click.argument("name")
@click.option(
    "--grace",
    default=86400,
    show_default=True,
    type=click.IntRange(0, 366 * 86400),
    help="Seconds the old secret (and signing key) stay valid; 0 after a leak.",
)
@click.option("--signed/--unsigned", default=None, help="Start or stop requiring signatures.")
@click.pass_obj
def source_rotate(settings: Settings, name: str, grace: int, signed: bool | None) -> None:
    """Give a source a new secret (and signing key) and print it."""
    with _engine(settings, existing=True).begin() as connection:
        issued = _checked(
            lambda: credentials.rotate_source(
                connection, name, grace=timedelta(seconds=grace), signed=signed
            )
        )
    _show_issued(name, issued)
    if grace:
        click.echo(f"the old secret stays valid for {grace} s")


@source.command("remove")
@click.argument("name")
@click.pass_obj
def source_remove(settings: Settings, name: str) -> None:
    """Refuse a source's webhooks from now on; what it delivered stays in the log."""
    with _engine(settings, existing=True).begin() as connection:
        _checked(lambda: credentials.remove_source(connection, name))
    click.echo(f"source {name} removed")


@source.command("list")
@click.pass_obj
def source_list(settings: Settings) -> None:
    """List the sources (never their secrets)."""
    with _engine(settings, existing=True).connect() as connection:
        found = credentials.list_sources(connection)
    for item in found:
        notes = ["signed" if item.signed else "unsigned"]
        if item.previous_until:
            notes.append(f"old secret valid until {iso(utc(item.previous_until))}")
        click.echo(f"{item.name}\tcreated {iso(utc(item.created_at))}\t{', '.join(notes)}")
    if not found:
        click.echo("no sources: webhooks need no secret (cdp serve listens on 127.0.0.1 only)")


def _show_issued(name: str, issued: credentials.Issued) -> None:
    click.echo(f"source: {name}")
    click.echo(f"secret: {issued.secret}")
    if issued.signing_key:
        click.echo(f"signing key: {issued.signing_key}")
    path = "/webhooks/fasttrack" + ("" if name == DEFAULT_SOURCE else f"/{name}")
    click.echo(f"webhook address: https://<your host>{path}?token={issued.secret}")
    click.echo("the secret is shown this once: keep it now")


@main.group()
def token() -> None:
    """Who may query: read tokens, and admin tokens that may also rebuild and manage."""


@token.command("create")
@click.option("--role", type=click.Choice(credentials.ROLES), required=True)
@click.option("--name", help="How the token is listed and revoked (default: ROLE-N).")
@click.pass_obj
def token_create(settings: Settings, role: credentials.Role, name: str | None) -> None:
    """Create a token and print it: it is shown this once."""
    with _engine(settings).begin() as connection:
        if name is None:
            taken = {item.name for item in credentials.list_tokens(connection)}
            name = next(
                f"{role}-{n}" for n in range(1, len(taken) + 2) if f"{role}-{n}" not in taken
            )
        secret = _checked(lambda: credentials.create_token(connection, name, role))
    click.echo(f"token {name} ({role}): {secret}")
    click.echo("send it as Authorization: Bearer <token>; it is shown this once: keep it now")


@token.command("revoke")
@click.argument("name")
@click.pass_obj
def token_revoke(settings: Settings, name: str) -> None:
    """Revoke a token: refused within a second, by every running server."""
    with _engine(settings, existing=True).begin() as connection:
        _checked(lambda: credentials.revoke_token(connection, name))
    click.echo(f"token {name} revoked")


@token.command("list")
@click.pass_obj
def token_list(settings: Settings) -> None:
    """List the tokens by name and role (never the tokens themselves)."""
    with _engine(settings, existing=True).connect() as connection:
        found = credentials.list_tokens(connection)
    for item in found:
        click.echo(f"{item.name}\t{item.role}\tcreated {iso(utc(item.created_at))}")
    if not found:
        click.echo("no tokens: queries need none (cdp serve listens on 127.0.0.1 only)")


@main.group("rejected")
def rejected_() -> None:
    """Deliveries refused as bad input, kept apart from the log (GET /rejected lists them)."""


@rejected_.command("replay")
@click.option("--id", "ids", multiple=True, type=int, help="A rejected delivery's id (repeatable).")
@click.option("--all", "every", is_flag=True, help="Every rejected delivery.")
@click.pass_obj
def rejected_replay(settings: Settings, ids: tuple[int, ...], every: bool) -> None:
    """Run rejected deliveries through today's checks; move those that pass into the log.

    Each moves exactly once: it is logged and forgotten in one transaction. Those still
    refused are kept, and listed with their reason.
    """
    if bool(ids) == every:
        raise click.UsageError("give --id N (one or more) or --all")
    engine = _engine(settings, existing=True)
    keystore = _keystore(settings, engine)
    moved = kept = 0
    found = ingest.replay_rejected(
        engine,
        registry.projectors(settings),
        settings.max_clock_skew,
        list(ids) if ids else None,
        keystore=keystore,
    )
    for id_, error in found:
        if error is None:
            moved += 1
        else:
            kept += 1
            click.echo(f"{id_}: still refused: {error}")
    click.echo(f"moved into the log: {moved}, still refused: {kept}")


@main.command()
@click.option("--profile", "profile_uuid", help="The uuid of the profile to erase.")
@click.option(
    "--suppress",
    is_flag=True,
    help="Also refuse the profile's later webhooks (kept as rejected deliveries without "
    "personal data, and counted).",
)
@click.option(
    "--reconcile",
    is_flag=True,
    help="Only finish erasures the database and the keystore disagree on (after restoring "
    "either from a backup).",
)
@click.pass_obj
def erase(settings: Settings, profile_uuid: str | None, suppress: bool, reconcile: bool) -> None:
    """Erase a customer's personal data everywhere, the log included, by destroying the
    keys it is sealed with; what happened, when, and which team handled it stays."""
    if bool(profile_uuid) == reconcile:
        raise click.UsageError("give --profile UUID, or --reconcile")
    engine = _engine(settings, existing=True)
    keystore = _keystore(settings, engine)
    if profile_uuid is None:
        click.echo("the database and the keystore agree on every erasure")
        return
    _checked(lambda: _identifier(profile_uuid))
    done = erasure.erase(
        engine,
        keystore,
        registry.projectors(settings),
        profile_uuid,
        suppress=suppress,
        between=erasure.pause(engine),
    )
    click.echo(
        f"erased profile {done.profile_uuid}: {len(done.chats)} chats, "
        f"{done.keys_destroyed} keys destroyed"
        + ("; its later webhooks are refused" if done.suppressed else "")
    )


def _identifier(value: str) -> None:
    problem = identifier_problem(value)
    if problem is not None:
        raise CredentialError(f"--profile {value[:64]!r}: {problem}")


@main.command()
@click.option(
    "--expect",
    metavar="POSITION:HASH",
    help="A head an auditor kept: the row at POSITION must still have HASH.",
)
@click.pass_obj
def verify(settings: Settings, expect: str | None) -> None:
    """Walk the log's hash chain; print the head hash to keep, or where the chain breaks.
    Then open every sealed body with its key, and count those that cannot be opened though
    not erased.

    Exits with status 1 when the chain breaks, when --expect does not hold, or when a body
    cannot be opened.
    """
    anchor = _anchor(expect) if expect else None
    engine = _engine(settings, existing=True)
    keystore = _keystore(settings, engine)
    with engine.connect() as connection:
        verdict = chain.verify(connection, anchor=anchor)
        opened = queries.openings(connection, keystore) if verdict.broken_at is None else None
    if verdict.broken_at is not None:
        click.echo(
            f"the chain breaks at position {verdict.broken_at}: that row, or one before it, "
            f"was edited, deleted or inserted out of order ({verdict.rows} rows hold up to "
            f"position {verdict.position})"
        )
        sys.exit(1)
    if anchor is not None and not verdict.anchored:
        click.echo(f"position {anchor[0]} no longer has hash {anchor[1]}: the log was rewritten")
        sys.exit(1)
    click.echo(f"{verdict.rows} rows, the chain holds; head: {verdict.position}:{verdict.hash}")
    assert opened is not None
    click.echo(f"bodies: {opened.whole} open, {opened.erased} erased")
    if opened.missing_key:
        click.echo(
            f"{opened.missing_key} bodies cannot be opened: their keys are not in the keystore "
            f"({keystore.describe()}) and no erasure destroyed them; is CDP_KEYSTORE_URL the "
            "keystore the server uses, or was it restored from a backup older than them?"
        )
    if opened.broken:
        click.echo(
            f"{opened.broken} bodies cannot be opened: their key does not open them, so their "
            "sealed copy was changed (or the keystore holds another key under the same id)"
        )
    if not opened.sound:
        sys.exit(1)


def _anchor(value: str) -> tuple[int, str]:
    position, _, hash_ = value.partition(":")
    if not position.isdigit() or len(hash_) != 64 or hash_.strip("0123456789abcdef"):
        raise click.BadParameter(
            f"{value[:100]!r}: write POSITION:HASH, as cdp verify prints the head",
            param_hint="--expect",
        )
    return int(position), hash_
