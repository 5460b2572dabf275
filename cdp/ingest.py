"""Webhooks into the log and every projection, in one transaction."""

from collections.abc import Sequence

from sqlalchemy import Engine

from cdp import db, log
from cdp.log import Receipt
from cdp.projectors import Projector, project, standing
from cdp.webhook import Incoming


def record(
    engine: Engine, batch: Sequence[Incoming], projectors: Sequence[Projector]
) -> list[Receipt]:
    """Append checked webhooks and project them; once this returns, every query sees them."""
    # A few webhooks make a transaction of round trips; thousands, one of rows.
    with db.writing(engine, pipeline=len(batch) < db.BULK_FROM) as connection:
        log.lock(connection)
        head, marks = standing(connection)
        receipts, new = log.append(connection, batch, head=head)
        project(connection, projectors, new, head, marks)
    return receipts
