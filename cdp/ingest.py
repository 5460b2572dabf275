"""Webhooks into the log and every projection, in one transaction; and deliveries once
refused, run through today's checks again."""

from collections.abc import Iterator, Sequence
from datetime import timedelta

from sqlalchemy import Engine, select

from cdp import db, log, rejected
from cdp.log import Receipt
from cdp.models import rejected as rejected_table
from cdp.projectors import Projector, project, standing
from cdp.webhook import Incoming, InvalidWebhook, MalformedBody, latest_timestamp, parse


def record(
    engine: Engine,
    batch: Sequence[Incoming],
    projectors: Sequence[Projector],
    *,
    refused: Sequence[rejected.Refusal] = (),
    forget: Sequence[int] = (),
) -> list[Receipt]:
    """Append checked webhooks and project them; once this returns, every query sees them.

    In the same transaction, keep the deliveries `refused` and forget the kept ones of ids
    `forget` (those that `batch` now logs)."""
    # A few webhooks make a transaction of round trips; thousands, one of rows.
    with db.writing(engine, pipeline=len(batch) < db.BULK_FROM) as connection:
        rejected.keep(connection, refused)
        rejected.forget(connection, forget)
        if not batch:
            return []
        log.lock(connection)
        head, marks = standing(connection)
        receipts, new = log.append(connection, batch, head=head)
        project(connection, projectors, new, head, marks)
    return receipts


def replay_rejected(
    engine: Engine,
    projectors: Sequence[Projector],
    max_clock_skew: timedelta,
    ids: Sequence[int] | None = None,
) -> Iterator[tuple[int, Exception | None]]:
    """Run kept deliveries (those of `ids`, or all) through today's checks, oldest first;
    log and project those that pass and forget them in the same transaction, so each moves
    exactly once however often this is run or stopped. Yields each id, with why it is
    still refused or None."""
    after = 0
    table = rejected_table
    while True:
        query = select(table.c.id, table.c.source, table.c.body, table.c.status)
        query = query.where(table.c.id > after)
        if ids is not None:
            query = query.where(table.c.id.in_(list(ids)))
        with engine.connect() as connection:
            rows = connection.execute(query.order_by(table.c.id).limit(500)).all()
        if not rows:
            return
        after = rows[-1].id
        latest = latest_timestamp(max_clock_skew)
        passed: list[Incoming] = []
        moved: list[int] = []
        outcomes: list[tuple[int, Exception | None]] = []
        for row in rows:
            if row.status == 413:  # only its first bytes were kept: it can never pass
                outcomes.append((row.id, MalformedBody("only the first part of it was kept")))
                continue
            try:
                passed.append(parse(row.body, latest=latest, source=row.source))
            except (MalformedBody, InvalidWebhook) as error:
                outcomes.append((row.id, error))
            else:
                moved.append(row.id)
                outcomes.append((row.id, None))
        if moved:
            record(engine, passed, projectors, forget=moved)
        yield from outcomes
