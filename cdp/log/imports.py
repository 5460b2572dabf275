"""Webhook bodies read from lines, one JSON object each, into the log: what `cdp import`
runs, a batch a transaction, with the checks and deduplication of POST /webhooks."""

from collections.abc import Iterable, Iterator, Sequence
from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from cdp.log import ingest
from cdp.log.store import Receipt
from cdp.log.webhook import (
    Incoming,
    InvalidWebhook,
    MalformedBody,
    Rejection,
    latest_timestamp,
    parse,
)
from cdp.privacy.keystore import Keystore
from cdp.projections.runner import Projector


class Interrupted(Exception):
    """The database (or the file) failed midway: every line before `line` is stored, and
    importing the same lines again stores the rest, what was stored counting as duplicates."""

    def __init__(self, line: int, error: Exception) -> None:
        super().__init__(f"stopped at line {line}: {error}")
        self.line, self.error = line, error


def into_log(
    engine: Engine,
    lines: Iterable[bytes],
    projectors: Sequence[Projector],
    keystore: Keystore,
    *,
    source: str,
    batch_size: int,
    max_clock_skew: timedelta,
) -> Iterator[tuple[int, Receipt | Rejection]]:
    """Each line's number (from 1) and what became of it: its receipt, or why it was
    rejected; blank lines are skipped. A line that does not parse is answered at once,
    the others once their batch is committed. Interrupted if the database fails."""
    batch: list[Incoming] = []
    numbers: list[int] = []  # the line of each webhook in `batch`
    number = 0
    try:
        for number, line in enumerate(lines, start=1):
            body = line.rstrip(b"\r\n")
            if not body.strip():
                continue
            try:
                incoming = parse(body, latest=latest_timestamp(max_clock_skew), source=source)
            except (MalformedBody, InvalidWebhook) as error:
                yield number, error
                continue
            batch.append(incoming)
            numbers.append(number)
            if len(batch) >= batch_size:
                yield from _stored(engine, batch, numbers, projectors, keystore)
        yield from _stored(engine, batch, numbers, projectors, keystore)
    except (DBAPIError, PoolTimeout, OSError) as error:
        raise Interrupted(numbers[0] if numbers else number, error) from error


def _stored(
    engine: Engine,
    batch: list[Incoming],
    numbers: list[int],
    projectors: Sequence[Projector],
    keystore: Keystore,
) -> Iterator[tuple[int, Receipt | Rejection]]:
    """Record `batch` in one transaction; each line's outcome, once committed. The batch
    is emptied only then."""
    receipts = ingest.record(engine, batch, projectors, keystore=keystore)
    outcomes = list(zip(numbers, receipts, strict=True))
    batch.clear()
    numbers.clear()
    yield from outcomes
