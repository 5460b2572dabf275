"""What the console's forms send, read: days in the console's zone, and a team chosen."""

import re
from contextlib import suppress
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo

from litestar import Request
from litestar.exceptions import ValidationException
from litestar.params import QueryParameter

from cdp.log.webhook import INT64_MAX
from cdp.times import milliseconds

AnyRequest = Request[Any, Any, Any]
Day = Annotated[str | None, QueryParameter(description="A day, YYYY-MM-DD, in CDP_TIMEZONE")]
# A team chosen in a form, or none: the form sends "" for "all teams".
TeamChoice = Annotated[str | None, QueryParameter(description="A team id, or empty for all")]


def team(value: str | None, name: str = "team_id") -> int | None:
    """A team id chosen in a form's field `name`, None for "all teams"; a 400 naming the
    field if it is none."""
    if not value:
        return None
    if value.isascii() and value.isdigit() and len(value) <= 19 and int(value) <= INT64_MAX:
        return int(value)
    message = f"must be a team id, an integer from 0 to 2^63-1, got {value[:40]!r}"
    raise ValidationException(message, extra=[{"key": name, "message": message}])


@dataclass(frozen=True)
class Days:
    """A period chosen as days in the console's zone, both ends included; None: no end."""

    since: date | None
    until: date | None

    @classmethod
    def read(cls, since: str | None, until: str | None) -> "Days":
        """The days of a form; a 400 naming the field that is no day, or is after the other."""
        days = cls(_day("since", since), _day("until", until))
        if days.since is not None and days.until is not None and days.since > days.until:
            message = f"since ({days.since}) is after until ({days.until})"
            raise ValidationException(message, extra=[{"key": "since", "message": message}])
        return days

    def bounds(self, zone: ZoneInfo) -> tuple[int | None, int | None]:
        """From the start of `since` to the end of `until`, in ms."""

        def start_of(day: date | None) -> int | None:
            if day is None:
                return None
            return milliseconds(datetime.combine(day, time(), zone))

        end = None if self.until in (None, date.max) else self.until + timedelta(days=1)
        return start_of(self.since), start_of(end)

    def shown(self) -> tuple[str, str]:
        """The days as a form shows them (YYYY-MM-DD), "" for none."""
        since, until = (day.isoformat() if day else "" for day in (self.since, self.until))
        return since, until


def _day(name: str, value: str | None) -> date | None:
    if not value:
        return None
    if _DAY.fullmatch(value):
        with suppress(ValueError):
            return date.fromisoformat(value)
    message = f"must be a day, YYYY-MM-DD, got {value[:40]!r}"
    raise ValidationException(message, extra=[{"key": name, "message": message}])


_DAY: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
