"""Reports: each metric as a series by local hour, day, week or month, for a scope, with
the period before it beside it. The definitions are in docs/reports.md, as computed here.

Counts are read from the hourly counts the reports projector keeps; times (waits for a
first reply, for each reply, sessions' lengths) from the rows each is measured on, by
when it began. What depends on the moment of asking (has a session ended?) or on the
settings (working hours) is worked out as the question is answered.
"""

from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, select

from cdp.conversations.tables import chats, sessions, timeline, waits
from cdp.reports import hours, schemas, scopes
from cdp.reports.calendar import Calendar, Group, WorkingTime
from cdp.reports.tables import report_counts, report_replies

TIMES: Final = frozenset({"first_response", "reply_time", "session_duration"})
WAITS: Final = frozenset({"first_response", "reply_time"})
# The most units a series may hold: a year by the hour, and then some.
MOST_POINTS: Final = 9000


class ReportRefused(ValueError):
    """A report that cannot be answered as asked, said in words; `conflict` when the
    question is good but the settings it needs are not set."""

    def __init__(self, message: str, *, conflict: bool = False) -> None:
        super().__init__(message)
        self.conflict = conflict


@dataclass(frozen=True, slots=True)
class Scope:
    """What a report counts: the store, or one team, operator, source or messenger."""

    kind: str | None = None  # None: the store
    value: str | int | None = None

    @classmethod
    def of(
        cls,
        *,
        team: int | None = None,
        operator: str | None = None,
        source: str | None = None,
        platform: str | None = None,
    ) -> "Scope":
        given = {
            k: v
            for k, v in (
                ("team", team),
                ("operator", operator),
                ("source", source),
                ("platform", platform),
            )
            if v is not None
        }
        if len(given) > 1:
            raise ReportRefused(
                f"a report has one scope: {' and '.join(given)} were given; choose one"
            )
        if not given:
            return cls()
        ((kind, value),) = given.items()
        return cls(kind, value)

    @property
    def key(self) -> str:
        return scopes.ALL if self.kind is None else f"{self.kind}:{self.value}"

    def described(self) -> dict[str, str | int]:
        return {} if self.kind is None or self.value is None else {self.kind: self.value}


# What an operator's scope can count: what their replies did.
_BY_OPERATOR: Final = frozenset({"operator_replies", "first_response", "reply_time"})


@dataclass(frozen=True, slots=True)
class Question:
    metric: str
    group: Group
    since: int
    until: int
    scope: Scope
    business_hours: bool = False
    compare: bool = False


def trend(
    connection: Connection,
    question: Question,
    calendar: Calendar,
    *,
    idle_ms: int,
    now: int,
) -> schemas.Trend:
    """The metric's series for the period (taken to whole units of the group) and, with
    `compare`, for the one before it (see Calendar.earlier)."""
    metric, scope = question.metric, question.scope
    if scope.kind == "operator" and metric not in _BY_OPERATOR:
        raise ReportRefused(
            f"{metric} is not counted by operator (webhooks name an operator only in "
            f"replies); by operator: {', '.join(sorted(_BY_OPERATOR))}"
        )
    if question.business_hours and metric not in WAITS:
        raise ReportRefused(
            f"business_hours counts waits (first_response, reply_time), not {metric}"
        )
    working = None
    if question.business_hours:
        schedule = hours.schedule(connection)
        if schedule.empty:
            raise ReportRefused(
                "business_hours needs working hours, and none are set: set them with "
                "PUT /reports/business-hours or `cdp reports hours set`",
                conflict=True,
            )
        working = WorkingTime(schedule, calendar)
    since = calendar.start(question.group, question.since)
    until = question.until
    if calendar.start(question.group, until) != until:
        until = calendar.after(question.group, calendar.start(question.group, until))
    units = calendar.units(question.group, since, until)
    if len(units) > MOST_POINTS:
        raise ReportRefused(
            f"{len(units)} {question.group}s: a series holds at most {MOST_POINTS} points; "
            "group by a longer unit or ask for a shorter period"
        )
    measure = _measure(connection, question, calendar, working, idle_ms=idle_ms, now=now)
    current = measure(since, until)
    previous = None
    if question.compare:
        before, _ = calendar.earlier(since, until)
        previous = measure(before, since)
    return schemas.Trend(
        metric=metric,
        group=question.group,
        timezone=calendar.zone.key,
        scope=scope.described(),
        business_hours=question.business_hours,
        current=current,
        previous=previous,
    )


def _measure(
    connection: Connection,
    question: Question,
    calendar: Calendar,
    working: WorkingTime | None,
    *,
    idle_ms: int,
    now: int,
) -> Callable[[int, int], schemas.Series]:
    group = question.group

    def series(since: int, until: int) -> schemas.Series:
        units = calendar.units(group, since, until)
        local = [calendar.local(unit) for unit in units]
        if question.metric not in TIMES:
            counted = _counts(connection, question.scope.key, question.metric, since, until)
            per = [0] * len(units)
            for hour, n in counted:
                per[bisect_right(units, hour) - 1] += n
            points = [schemas.Point(start=at, count=n) for at, n in zip(local, per, strict=True)]
            total = schemas.Point(start=calendar.local(since), count=sum(per))
            return schemas.Series(
                since=calendar.local(since), until=calendar.local(until), points=points, total=total
            )
        measured = _times(connection, question, since, until, idle_ms=idle_ms, now=now)
        lengths: list[list[int]] = [[] for _ in units]
        missing = [0] * len(units)
        for began, ended in measured:
            index = bisect_right(units, began) - 1
            if ended is None:
                missing[index] += 1
            else:
                length = ended - began if working is None else working.between(began, ended)
                lengths[index].append(length)
        waits = question.metric in WAITS
        points = [
            _point(at, found, missing[n] if waits else None)
            for n, (at, found) in enumerate(zip(local, lengths, strict=True))
        ]
        every = [length for found in lengths for length in found]
        total = _point(calendar.local(since), every, sum(missing) if waits else None)
        return schemas.Series(
            since=calendar.local(since), until=calendar.local(until), points=points, total=total
        )

    return series


def _point(start: datetime, lengths: list[int], unanswered: int | None) -> schemas.Point:
    lengths.sort()
    median, p90 = percentile(lengths, 0.5), percentile(lengths, 0.9)
    return schemas.Point(
        start=start,
        count=len(lengths),
        median_seconds=None if median is None else round(median / 1000, 3),
        p90_seconds=None if p90 is None else round(p90 / 1000, 3),
        unanswered=unanswered,
    )


def percentile(ordered: Sequence[int], fraction: float) -> float | None:
    """As PostgreSQL's percentile_cont: interpolated between the two nearest of `ordered`."""
    if not ordered:
        return None
    at = fraction * (len(ordered) - 1)
    below = int(at)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (at - below)


def _counts(
    connection: Connection, scope: str, metric: str, since: int, until: int
) -> Iterable[tuple[int, int]]:
    query = select(report_counts.c.hour, report_counts.c.n).where(
        report_counts.c.scope == scope,
        report_counts.c.metric == metric,
        report_counts.c.hour >= since,
        report_counts.c.hour < until,
    )
    return [(row.hour, row.n) for row in connection.execute(query)]


def _times(
    connection: Connection,
    question: Question,
    since: int,
    until: int,
    *,
    idle_ms: int,
    now: int,
) -> list[tuple[int, int | None]]:
    """(began, ended) of each time the metric measures that began in [since, until):
    ended None for a wait with no reply (yet). Sessions count once they have ended."""
    scope = question.scope
    if question.metric == "first_response":
        where = [waits.c.started_at >= since, waits.c.started_at < until]
        table: Any = waits
        if scope.kind == "team":
            where.append(waits.c.team_id == scope.value)
        elif scope.kind == "operator":
            where.append(waits.c.replied_by == scope.value)
        elif scope.kind == "source":
            where.append(waits.c.source == scope.value)
        elif scope.kind == "platform":
            table = waits.join(timeline, timeline.c.position == waits.c.position)
            where.append(timeline.c.platform == scope.value)
        query = select(waits.c.started_at, waits.c.replied_at).select_from(table).where(*where)
        return [(row.started_at, row.replied_at) for row in connection.execute(query)]
    if question.metric == "reply_time":
        replies = report_replies
        where = [replies.c.occurred_at >= since, replies.c.occurred_at < until]
        column = {
            "team": replies.c.team_id,
            "operator": replies.c.replied_by,
            "source": replies.c.source,
            "platform": replies.c.platform,
        }.get(scope.kind or "")
        if column is not None:
            where.append(column == scope.value)
        query = select(replies.c.occurred_at, replies.c.replied_at).where(*where)
        return [(row.occurred_at, row.replied_at) for row in connection.execute(query)]
    # session_duration: sessions that began in the period and have ended (gone idle).
    where = [
        sessions.c.opened_at >= since,
        sessions.c.opened_at < until,
        sessions.c.last_activity_at <= now - idle_ms,
    ]
    if scope.kind == "source":
        where.append(chats.c.source == scope.value)
    elif scope.kind == "platform":
        where.append(chats.c.platform == scope.value)
    query = (
        select(sessions.c.opened_at, sessions.c.last_activity_at, sessions.c.teams)
        .select_from(sessions.join(chats, chats.c.uuid == sessions.c.chat_uuid))
        .where(*where)
    )
    found = []
    for row in connection.execute(query):
        if scope.kind == "team" and (not row.teams or row.teams[0] != scope.value):
            continue
        found.append((row.opened_at, row.last_activity_at))
    return found
