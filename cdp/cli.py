"""The cdp command: serve, migrate, import, rebuild, status."""

import sys
import time
from dataclasses import dataclass, field
from typing import BinaryIO

import click
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from cdp import db, ingest, projectors, queries, schema
from cdp.settings import Settings
from cdp.webhook import Incoming, InvalidWebhook, MalformedBody, latest_timestamp, parse


class _Group(click.Group):
    def invoke(self, context: click.Context) -> object:
        try:
            return super().invoke(context)
        except OperationalError as error:
            raise click.ClickException(f"cannot use the database: {error.orig}") from None


@click.group(cls=_Group)
@click.pass_context
def main(context: click.Context) -> None:
    """An event-sourced customer-data store for Fasttrack chat-center webhooks.

    The database is CDP_DATABASE_URL (default: the SQLite file ./cdp.db).
    """
    try:
        context.obj = Settings()
    except ValidationError as error:
        problems = "; ".join(
            f"CDP_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors()
        )
        raise click.ClickException(f"invalid settings: {problems}") from None


def _connect(settings: Settings) -> Engine:
    """An engine that is disposed of when the command ends."""
    engine = db.make_engine(settings.database_url)
    click.get_current_context().call_on_close(engine.dispose)
    return engine


def _engine(settings: Settings, *, migrate: bool = False) -> Engine:
    """An engine on a schema at the latest migration; SQLite is brought there by itself."""
    engine = _connect(settings)
    current, latest = schema.pending(engine)
    if current != latest:
        if migrate or db.dialect(engine) == "sqlite":
            schema.upgrade(engine)
        else:
            raise click.ClickException(
                f"the database schema is at revision {current or '(none)'}, this cdp needs "
                f"{latest}: run `cdp migrate` first (or `cdp serve --migrate`)"
            )
    return engine


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--migrate", is_flag=True, help="Upgrade the schema first (SQLite always is).")
@click.pass_obj
def serve(settings: Settings, host: str, port: int, migrate: bool) -> None:
    """Serve the HTTP API."""
    import uvicorn

    from cdp.api import create_app

    _engine(settings, migrate=migrate).dispose()  # the app opens its own
    uvicorn.run(create_app(settings), host=host, port=port)


@main.command()
@click.pass_obj
def migrate(settings: Settings) -> None:
    """Upgrade the database schema to the latest migration."""
    engine = _connect(settings)
    schema.upgrade(engine)
    click.echo(f"schema at revision {schema.pending(engine)[0]}")


@dataclass
class _Tally:
    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{self.lines} lines: {self.accepted} accepted, {self.duplicates} duplicates, "
            f"{len(self.rejected)} rejected"
        )


@main.command("import")
@click.argument("file", type=click.File("rb"))
@click.option(
    "--batch-size",
    default=500,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Webhooks per transaction.",
)
@click.pass_obj
def import_(settings: Settings, file: BinaryIO, batch_size: int) -> None:
    """Ingest webhook bodies from FILE (- for stdin), one JSON object per line.

    Each line passes the same checks and deduplication as POST /webhooks/fasttrack.
    Blank lines are skipped. Exits with status 1 if any line was rejected.
    """
    engine = _engine(settings)
    registry = projectors.registry(settings)
    tally = _Tally()
    progress = _Progress(sys.stderr.isatty())
    batch: list[Incoming] = []

    def flush() -> None:
        for receipt in ingest.record(engine, batch, registry):
            if receipt.duplicate:
                tally.duplicates += 1
            else:
                tally.accepted += 1
        batch.clear()
        progress.show(tally)

    for number, line in enumerate(file, start=1):
        tally.lines = number
        body = line.rstrip(b"\r\n")
        if not body.strip():
            continue
        try:
            batch.append(parse(body, latest=latest_timestamp(settings.max_clock_skew)))
        except (MalformedBody, InvalidWebhook) as error:
            tally.rejected.append((number, str(error)))
        if len(batch) >= batch_size:
            flush()
    flush()
    progress.done()
    rejected = len(tally.rejected)
    click.echo(f"accepted: {tally.accepted}, duplicates: {tally.duplicates}, rejected: {rejected}")
    for number, reason in tally.rejected:
        click.echo(f"line {number}: {reason}")
    if tally.rejected:
        sys.exit(1)


class _Progress:
    """A line on the terminal that says how far an import has got, at most ten times a second."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.shown_at = 0.0

    def show(self, tally: _Tally) -> None:
        if self.enabled and time.monotonic() - self.shown_at >= 0.1:
            click.echo(f"\r{tally}", nl=False, err=True)
            self.shown_at = time.monotonic()

    def done(self) -> None:
        if self.enabled:
            click.echo("\r\033[K", nl=False, err=True)


@main.command()
@click.pass_obj
def rebuild(settings: Settings) -> None:
    """Rebuild every projection from the log (ingest waits until it is done)."""
    engine = _engine(settings)
    started = time.perf_counter()
    with db.writing(engine) as connection:
        head = projectors.rebuild(connection, projectors.registry(settings))
    click.echo(
        f"rebuilt projections up to position {head} in {time.perf_counter() - started:.2f} s"
    )


@main.command()
@click.pass_obj
def status(settings: Settings) -> None:
    """Print the log head, each projection's position, and row counts."""
    engine = _engine(settings)
    names = [projector.name for projector in projectors.registry(settings)]
    with engine.connect() as connection:
        positions = queries.projections(connection, names)
        counts = queries.counts(connection)
    click.echo(f"database: {db.dialect(engine)}")
    click.echo(f"log head: {positions[0].head if positions else 0}")
    for projection in positions:
        click.echo(
            f"projection {projection.name}: position {projection.position}, lag {projection.lag}"
        )
    for name, count in counts.items():
        click.echo(f"{name}: {count}")
