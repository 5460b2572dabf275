"""Time as a support lead counts it: in the store's zone (CDP_TIMEZONE), by hour, day, ISO
week (Monday first) or month, and in working time.

Every instant is milliseconds since the epoch. A local hour, day, week or month is the
span from its first instant to the next one's: a day is 23 or 25 hours long when the
clocks change, and the hour the clocks go back over comes twice, as two hours.
"""

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from itertools import accumulate, pairwise
from typing import Any, Final, Literal, get_args
from zoneinfo import ZoneInfo

import numpy as np

Group = Literal["hour", "day", "week", "month"]
GROUPS: Final[tuple[Group, ...]] = get_args(Group)
HOUR_MS: Final = 3_600_000
DAY_MS: Final = 86_400_000
WEEKDAYS: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DAY_MINUTES: Final = 24 * 60
# The instants a local date can hold in any zone: 0001-01-02 and 9999-12-30, UTC.
_EARLIEST: Final = -62_135_510_400_000
_LATEST: Final = 253_402_128_000_000


@dataclass(frozen=True, slots=True)
class Calendar:
    """The local calendar of one zone."""

    zone: ZoneInfo

    @classmethod
    def of(cls, name: str) -> "Calendar":
        return cls(ZoneInfo(name))

    def local(self, at: int) -> datetime:
        """The local time of an instant; one beyond what a date can hold (only ever
        written into the log around cdp) is read at the first or last day there is."""
        return datetime.fromtimestamp(min(max(at, _EARLIEST), _LATEST) / 1000, self.zone)

    def instant(self, moment: datetime) -> int:
        """The ms of a local time; one the clocks skipped is read in the offset before the
        change (so a day's midnight that never was is its first instant)."""
        return round(moment.timestamp() * 1000)

    def midnight(self, day: date) -> int:
        """The first instant of a local day."""
        return self.instant(datetime.combine(day, time(), self.zone))

    def hour(self, at: int) -> int:
        """The first instant of the local hour `at` falls in: the report's smallest bucket.
        Every zone's offset is a whole number of quarter hours (since 1970), so the clocks
        change, and local hours begin, only on a quarter hour of UTC: each quarter hour is
        worked out once."""
        return _hour_of_quarter(self, at // _QUARTER_MS)

    def _hour(self, at: int) -> int:
        local = self.local(at)
        return self.instant(local.replace(minute=0, second=0, microsecond=0))

    def day(self, at: int) -> date:
        return self.local(at).date()

    def midnight_of(self, at: int) -> int:
        """The first instant of the local day `at` falls in (worked out once an hour)."""
        return _midnight_of_hour(self, self.hour(at))

    def start(self, group: Group, at: int) -> int:
        """The first instant of the hour, day, week or month `at` falls in."""
        if group == "hour":
            return self.hour(at)
        return self.midnight(first_day(group, self.day(at)))

    def after(self, group: Group, start: int) -> int:
        """The first instant of the unit after the one beginning at `start`."""
        if group == "hour":
            return self.hour(start + HOUR_MS)
        day = self.day(start)
        if group == "day":
            return self.midnight(day + timedelta(days=1))
        if group == "week":
            return self.midnight(day + timedelta(days=7))
        return self.midnight(_next_month(day))

    def units(self, group: Group, since: int, until: int) -> list[int]:
        """The first instants of the units that [since, until) touches, in order."""
        found: list[int] = []
        at = self.start(group, since)
        while at < until:
            found.append(at)
            at = self.after(group, at)
        return found

    def earlier(self, since: int, until: int) -> tuple[int, int]:
        """The period just before [since, until), as long in the terms it is given in: as
        many months when both ends begin a month, days when both begin a day, otherwise as
        many milliseconds."""
        start, end = self.local(since), self.local(until)
        if _begins_month(start) and _begins_month(end):
            months = (end.year - start.year) * 12 + end.month - start.month
            return self.midnight(_add_months(start.date(), -months)), since
        if _begins_day(start) and _begins_day(end):
            return self.midnight(start.date() - (end.date() - start.date())), since
        return since - (until - since), since


_QUARTER_MS: Final = 900_000


@lru_cache(maxsize=1 << 17)
def _hour_of_quarter(calendar: Calendar, quarter: int) -> int:
    return calendar._hour(quarter * _QUARTER_MS)


@lru_cache(maxsize=1 << 16)
def _midnight_of_hour(calendar: Calendar, hour: int) -> int:
    return calendar.midnight(calendar.day(hour))


def first_day(group: Group, day: date) -> date:
    """The first day of the day's week (Monday) or month; the day itself for a day."""
    if group == "week":
        return day - timedelta(days=day.weekday())
    if group == "month":
        return day.replace(day=1)
    return day


def _next_month(day: date) -> date:
    return _add_months(day.replace(day=1), 1)


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _begins_day(moment: datetime) -> bool:
    return moment.time() == time()


def _begins_month(moment: datetime) -> bool:
    return _begins_day(moment) and moment.day == 1


# -- working time ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Interval:
    """Working time on a weekday: from `starts` to `ends`, minutes after local midnight."""

    starts: int
    ends: int


@dataclass(frozen=True, slots=True)
class Schedule:
    """A week of working intervals (Monday is 0), and the days off (holidays)."""

    week: Mapping[int, tuple[Interval, ...]] = field(default_factory=dict)
    holidays: frozenset[date] = frozenset()

    @property
    def empty(self) -> bool:
        return not any(self.week.values())

    def intervals(self, day: date) -> tuple[Interval, ...]:
        if day in self.holidays:
            return ()
        return self.week.get(day.weekday(), ())


def problems(week: Mapping[int, Sequence[Interval]]) -> list[str]:
    """What is wrong with a week of intervals, each said in words; none if it is good."""
    found = []
    for weekday, intervals in sorted(week.items()):
        name = WEEKDAYS[weekday]
        ordered = sorted(intervals, key=lambda i: i.starts)
        for interval in ordered:
            if not 0 <= interval.starts < interval.ends <= DAY_MINUTES:
                found.append(
                    f"{name} {clock(interval.starts)}-{clock(interval.ends)}: an interval must "
                    "begin before it ends, within the day (00:00 to 24:00)"
                )
        for before, after in pairwise(ordered):
            if after.starts < before.ends:
                found.append(
                    f"{name}: {clock(before.starts)}-{clock(before.ends)} and "
                    f"{clock(after.starts)}-{clock(after.ends)} overlap"
                )
    return found


def clock(minutes: int) -> str:
    """Minutes after midnight as HH:MM (24:00 for the day's end)."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


class WorkingTime:
    """How much working time lies between two instants, under a schedule in a zone.

    The working spans of the days asked about are laid out once, with the working time
    before each, so that each question costs a binary search."""

    def __init__(self, schedule: Schedule, calendar: Calendar) -> None:
        self.schedule, self.calendar = schedule, calendar
        self._first: date | None = None
        self._last: date | None = None
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._before: list[int] = []  # the working time before each span
        self._after: list[int] = []  # and up to its end

    def between(self, since: int, until: int) -> int:
        """The working milliseconds in [since, until); 0 if until is not after since."""
        if until <= since:
            return 0
        self._cover(since, until)
        return self._worked(until) - self._worked(since)

    def spent(self, since: "np.ndarray[Any, Any]", until: "np.ndarray[Any, Any]") -> Any:
        """`between` of each pair of `since` and `until` (int64 arrays), at once."""
        if not len(since):
            return np.zeros(0, dtype=np.int64)
        first = int(min(since.min(), until.min()))
        self._cover(first, int(max(until.max(), since.max())))
        # A span of nothing first, before every instant asked about: each instant then has
        # a span at or before it, and the working time up to it is that span's offset
        # (the working time before it, less its start) plus the end of it reached.
        floor = min([first, *self._starts[:1]])
        starts = np.asarray([floor, *self._starts], dtype=np.int64)
        ends = np.asarray([floor, *self._ends], dtype=np.int64)
        offsets = np.asarray([0, *self._before], dtype=np.int64) - starts

        def worked(at: "np.ndarray[Any, Any]") -> Any:
            index = np.searchsorted(starts, at, side="right") - 1
            return offsets[index] + np.minimum(at, ends[index])

        return np.maximum(worked(until) - worked(since), 0)

    def reach(self, since: int, amount: int, *, within: int = 400 * DAY_MS) -> int | None:
        """The instant at which `amount` ms of working time will have passed since
        `since`; None if not within `within` ms of it."""
        if amount <= 0:
            return since
        end = since
        while end - since < within:
            end = min(end + 14 * DAY_MS, since + within)
            self._cover(since, end)
            wanted = self._worked(since) + amount
            index = bisect_left(self._after, wanted)
            if index < len(self._starts):
                return self._starts[index] + wanted - self._before[index]
        return None

    def _worked(self, at: int) -> int:
        """The working time from the first span laid out up to `at`."""
        index = bisect_right(self._starts, at) - 1
        if index < 0:
            return 0
        return self._before[index] + min(at, self._ends[index]) - self._starts[index]

    def _cover(self, since: int, until: int) -> None:
        """Lay out the spans of every local day from the one before `since` to the one
        after `until` (an interval may end past midnight's instant on a day the clocks
        change)."""
        first = self.calendar.day(since) - timedelta(days=1)
        last = self.calendar.day(until) + timedelta(days=1)
        if self._first is not None and self._last is not None:
            if self._first <= first and last <= self._last:
                return
            first, last = min(first, self._first), max(last, self._last)
        spans = list(_spans(self.schedule, self.calendar, first, last))
        self._first, self._last = first, last
        self._starts = [start for start, _ in spans]
        self._ends = [end for _, end in spans]
        lengths = [end - start for start, end in spans]
        self._after = list(accumulate(lengths))
        self._before = [0, *self._after][: len(spans)]


def _spans(
    schedule: Schedule, calendar: Calendar, first: date, last: date
) -> Iterable[tuple[int, int]]:
    """The working spans of the days from `first` to `last`, in order, each as instants."""
    day = first
    previous_end = None
    while day <= last:
        for interval in schedule.intervals(day):
            start = _at(calendar, day, interval.starts)
            end = _at(calendar, day, interval.ends)
            if previous_end is not None:
                start = max(start, previous_end)  # never twice the same instant
            if end > start:
                yield start, end
                previous_end = end
        day += timedelta(days=1)


@lru_cache(maxsize=4096)
def _at(calendar: Calendar, day: date, minutes: int) -> int:
    """The instant of a local time of day, in minutes (1440: the next midnight)."""
    if minutes >= DAY_MINUTES:
        return calendar.midnight(day + timedelta(days=1))
    return calendar.instant(datetime.combine(day, time(minutes // 60, minutes % 60), calendar.zone))
