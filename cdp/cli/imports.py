"""`cdp import`: a file of webhooks, one JSON object per line, into the log."""

import os
import stat
import sys
from dataclasses import dataclass, field
from typing import BinaryIO

import click
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from tqdm import tqdm

from cdp import db
from cdp.access import credentials
from cdp.cli.app import checked, engine_for, keystore_for, main, reason_of
from cdp.cli.projections import build_needed
from cdp.log import ingest, tables
from cdp.log.webhook import (
    DEFAULT_SOURCE,
    Incoming,
    InvalidWebhook,
    MalformedBody,
    Rejection,
    latest_timestamp,
    parse,
)
from cdp.projections import registry
from cdp.settings import Settings


class ImportStopped(click.ClickException):
    """An import that a failure not of one line's making stopped: exit status 3."""

    exit_code = 3


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
    checked(lambda: credentials.check_name(source, "source"))
    engine = engine_for(settings)
    keystore = keystore_for(settings, engine)
    build_needed(settings, engine, keystore)
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
            if isinstance(receipt, Rejection):
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
            f"import stopped at line {first_unstored if batch else number}: {reason_of(error)}. "
            "Lines before it are stored; "
            "run the same import again to store the rest (what is stored counts as duplicates)"
        ) from None
    _report(tally)
    try:
        db.analyze(engine, [tables.events, *(table for p in projectors for table in p.tables)])
    except (DBAPIError, PoolTimeout) as error:
        click.echo(f"the tables' statistics are left to autovacuum: {reason_of(error)}")
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
