"""`cdp import`: a file of webhooks, one JSON object per line, into the log."""

import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Never

import click
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from tqdm import tqdm

from cdp import db
from cdp.access import credentials
from cdp.cli.app import checked, engine_for, keystore_for, main, reason_of
from cdp.cli.projections import build_needed
from cdp.log import imports, tables
from cdp.log.store import Receipt
from cdp.log.webhook import (
    DEFAULT_SOURCE,
    Rejection,
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

    def add(self, number: int, outcome: Receipt | Rejection) -> None:
        if isinstance(outcome, Rejection):
            self.rejected.append((number, str(outcome)))
        elif outcome.duplicate:
            self.duplicates += 1
        else:
            self.accepted += 1

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
    progress = tqdm(
        total=_size(file),
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc="import",
        disable=not sys.stderr.isatty(),
        file=sys.stderr,
    )
    lines = _counted(file, progress)
    outcomes = imports.into_log(
        engine,
        lines,
        projectors,
        keystore,
        source=source,
        batch_size=batch_size,
        max_clock_skew=settings.max_clock_skew,
    )
    try:
        with progress:
            for number, outcome in outcomes:
                tally.add(number, outcome)
                progress.set_postfix_str(str(tally), refresh=False)
    except imports.Interrupted as stopped:
        _report(tally)
        raise ImportStopped(
            f"import stopped at line {stopped.line}: {reason_of(stopped.error)}. "
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


def _counted(file: BinaryIO, progress: "tqdm[Never]") -> Iterator[bytes]:
    """The file's lines, each counted on the progress bar as it is read."""
    for line in file:
        progress.update(len(line))
        yield line


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
