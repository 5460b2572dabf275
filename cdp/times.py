"""Time as cdp keeps it: integer milliseconds since the Unix epoch, shown as ISO 8601 UTC."""

import time
from datetime import UTC, datetime, timedelta
from typing import Final

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND: Final = timedelta(milliseconds=1)
# What a datetime can hold; a stored time outside it (only ever written around cdp) is shown
# at the nearer end rather than failing the read.
_FIRST_MS: Final = (datetime(1, 1, 1, tzinfo=UTC) - EPOCH) // _MILLISECOND
_LAST_MS: Final = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC) - EPOCH) // _MILLISECOND


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def utc(milliseconds: int) -> datetime:
    return EPOCH + min(max(milliseconds, _FIRST_MS), _LAST_MS) * _MILLISECOND


def milliseconds(moment: datetime) -> int:
    """A datetime as milliseconds since the epoch; without a zone it is UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // _MILLISECOND


def iso(moment: datetime) -> str:
    """One format for every time: ISO 8601 in UTC, always with milliseconds."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
