"""Reads of the sources."""

from sqlalchemy import (
    Connection,
)

from cdp.access import credentials, schemas
from cdp.paging import instant
from cdp.times import utc


def sources(connection: Connection) -> list[schemas.Source]:
    """Every source of webhooks; never its secret."""
    return [
        schemas.Source(
            name=info.name,
            created_at=utc(info.created_at),
            signed=info.signed,
            previous_valid_until=instant(info.previous_until),
        )
        for info in credentials.list_sources(connection)
    ]
