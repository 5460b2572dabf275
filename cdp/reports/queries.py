"""Reports: each metric as a series by local hour, day, week or month, for a scope, with
the period before it beside it. The definitions are in docs/reports.md, as computed here.

Counts are read from the hourly counts the reports projector keeps; times (waits for a
first reply, for each reply, sessions' lengths) from the rows each is measured on, by
when it began. What depends on the moment of asking (has a session ended?) or on the
settings (working hours) is worked out as the question is answered.
"""

from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, func, select

from cdp.conversations.tables import timeline, waits
from cdp.reports import hours, schemas, scopes
from cdp.reports import sla as sla_module
from cdp.reports.calendar import WEEKDAYS, Calendar, Group, WorkingTime
from cdp.reports.lengths import unpacked
from cdp.reports.tables import (
    report_counts,
    report_lengths,
    report_replies,
    report_sessions,
    report_waiting,
)
from cdp.teams.queries import percentile, team_names
from cdp.times import utc

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
BY_OPERATOR: Final = frozenset({"operator_replies", "first_response", "reply_time"})


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
    if scope.kind == "operator" and metric not in BY_OPERATOR:
        raise ReportRefused(
            f"{metric} is not counted by operator (webhooks name an operator only in "
            f"replies); by operator: {', '.join(sorted(BY_OPERATOR))}"
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
    since, until = whole(calendar, question.group, question.since, question.until)
    if (found := len(calendar.units(question.group, since, until))) > MOST_POINTS:
        raise _too_many(question.group, found)
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
        lengths: list[list[int]] = [[] for _ in units]
        missing = [0] * len(units)
        if working is None:  # the lengths kept by the hour
            for hour, packed, unanswered in _kept(connection, question, since, until):
                index = bisect_right(units, hour) - 1
                lengths[index] += unpacked(packed)
                missing[index] += unanswered
            if question.metric == "session_duration":  # not ended yet: not counted
                for began, length in _open_sessions(
                    connection, question.scope, since, until, idle_ms=idle_ms, now=now
                ):
                    found = lengths[bisect_right(units, began) - 1]
                    if length in found:  # kept with its session, always: never a failed read
                        found.remove(length)
        else:
            measured = _times(connection, question, since, until, idle_ms=idle_ms, now=now)
            for began, ended in measured:
                index = bisect_right(units, began) - 1
                if ended is None:
                    missing[index] += 1
                else:
                    lengths[index].append(working.between(began, ended))
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


def _kept(
    connection: Connection, question: Question, since: int, until: int
) -> list[tuple[int, bytes, int]]:
    """The kept lengths of the metric under the scope, by the hour they began in."""
    query = select(
        report_lengths.c.hour, report_lengths.c.lengths, report_lengths.c.unanswered
    ).where(
        report_lengths.c.scope == question.scope.key,
        report_lengths.c.metric == question.metric,
        report_lengths.c.hour >= since,
        report_lengths.c.hour < until,
    )
    return [(row.hour, row.lengths, row.unanswered) for row in connection.execute(query)]


def _open_sessions(
    connection: Connection, scope: Scope, since: int, until: int, *, idle_ms: int, now: int
) -> list[tuple[int, int]]:
    """(opened_at, length) of the sessions of the scope begun in [since, until) that have
    not ended at `now`: their lengths are kept, but not counted yet."""
    where = [
        report_sessions.c.last_activity_at > now - idle_ms,
        report_sessions.c.opened_at >= since,
        report_sessions.c.opened_at < until,
    ]
    column = {
        "team": report_sessions.c.team_id,
        "source": report_sessions.c.source,
        "platform": report_sessions.c.platform,
    }.get(scope.kind or "")
    if column is not None:
        where.append(column == scope.value)
    query = select(report_sessions.c.opened_at, report_sessions.c.last_activity_at).where(*where)
    return [
        (row.opened_at, row.last_activity_at - row.opened_at) for row in connection.execute(query)
    ]


def _times(
    connection: Connection,
    question: Question,
    since: int,
    until: int,
    *,
    idle_ms: int,
    now: int,
) -> list[tuple[int, int | None]]:
    """(began, ended) of each wait of the metric that began in [since, until): ended None
    for one with no reply (yet). What business hours are worked out from."""
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
    raise AssertionError(f"{question.metric} is not a wait")


# -- reply targets -----------------------------------------------------------------------


def sla(
    connection: Connection,
    group: Group,
    since: int,
    until: int,
    team: int | None,
    calendar: Calendar,
    *,
    idle_ms: int,
    now: int,
) -> schemas.Sla:
    """The targets' outcomes by unit (see sla.judge), for a team or every team."""
    since, until = whole(calendar, group, since, until)
    units = calendar.units(group, since, until)  # as many as whole() let through
    if len(units) > MOST_POINTS:
        raise _too_many(group, len(units))
    length, working = sla_module.measure(connection, calendar)
    targets = _targets_of(connection, team)
    found = sla_module.waits_with_targets(
        connection, targets, since, until, idle_ms=idle_ms, now=now
    )
    tallies: dict[str, list[Counter[str]]] = {
        "first_reply": [Counter() for _ in units],
        "next_reply": [Counter() for _ in units],
    }
    for wait, target in found:
        judged = sla_module.judge(wait, target, length, now)
        if judged.state is None:
            continue
        state = "open" if judged.state == "at_risk" else judged.state
        tallies[wait.kind][bisect_right(units, wait.started_at) - 1][state] += 1

    def series(kind: str) -> schemas.SlaSeries:
        points = [
            _sla_point(calendar.local(unit), tally)
            for unit, tally in zip(units, tallies[kind], strict=True)
        ]
        total: Counter[str] = Counter()
        for tally in tallies[kind]:
            total.update(tally)
        return schemas.SlaSeries(points=points, total=_sla_point(calendar.local(since), total))

    return schemas.Sla(
        group=group,
        timezone=calendar.zone.key,
        team=team,
        working_time=working,
        since=calendar.local(since),
        until=calendar.local(until),
        first_reply=series("first_reply"),
        next_reply=series("next_reply"),
    )


def _sla_point(start: datetime, tally: Counter[str]) -> schemas.SlaPoint:
    return schemas.SlaPoint(
        start=start,
        within=tally["within"],
        breached=tally["breached"],
        open=tally["open"],
        open_breached=tally["open_breached"],
    )


def _targets_of(connection: Connection, team: int | None) -> dict[int, schemas.Targets]:
    every = hours.targets(connection)
    if team is None:
        return every
    return {team: every[team]} if team in every else {}


def breaches(
    connection: Connection,
    since: int,
    until: int,
    team: int | None,
    calendar: Calendar,
    *,
    idle_ms: int,
    now: int,
) -> list[schemas.Breach]:
    """Every wait of the period that passed its target, in the order they began."""
    length, _ = sla_module.measure(connection, calendar)
    targets = _targets_of(connection, team)
    found = sla_module.waits_with_targets(
        connection, targets, since, until, idle_ms=idle_ms, now=now
    )
    judged = [sla_module.judge(wait, target, length, now) for wait, target in found]
    late = [j for j in judged if j.state in ("breached", "open_breached")]
    names = team_names(connection, sorted({j.wait.team_id for j in late}))
    return [
        schemas.Breach(
            kind=j.wait.kind,
            chat_uuid=j.wait.chat_uuid,
            session_number=j.wait.session_number,
            team_id=j.wait.team_id,
            team_name=names.get(j.wait.team_id),
            started_at=utc(j.wait.started_at),
            replied_at=None if j.wait.replied_at is None else utc(j.wait.replied_at),
            operator_uuid=j.wait.replied_by,
            wait_seconds=round(j.length_ms / 1000, 3),
            target_seconds=round(j.target_ms / 1000, 3),
            open=j.state == "open_breached",
        )
        for j in late
    ]


# How long each unit is but for the clocks' changes: what bounds how many units a period
# holds before they are counted out (then counted exactly).
_NOMINAL_MS: Final = {
    "hour": 3_600_000,
    "day": 86_400_000,
    "week": 7 * 86_400_000,
    "month": 28 * 86_400_000,
}


def _too_many(group: str, found: int) -> ReportRefused:
    return ReportRefused(
        f"{found} {group}s: a series holds at most {MOST_POINTS} points; group by a "
        "longer unit or ask for a shorter period"
    )


def whole(
    calendar: Calendar, group: Group, since: int, until: int, *, counted: bool = True
) -> tuple[int, int]:
    """The period taken to whole units of the group; ReportRefused if it would hold more
    than MOST_POINTS of them and they are `counted` out one by one."""
    if counted and (about := (until - since) // _NOMINAL_MS[group]) > MOST_POINTS * 1.1:
        raise _too_many(group, about)
    start = calendar.start(group, since)
    end = until
    if calendar.start(group, end) != end:
        end = calendar.after(group, calendar.start(group, end))
    return start, end


# -- traffic by weekday and hour ---------------------------------------------------------


def heatmap(
    connection: Connection,
    metric: str,
    since: int,
    until: int,
    scope: Scope,
    calendar: Calendar,
) -> schemas.Heatmap:
    """Sessions opened or customer messages by local weekday and hour of the day."""
    if scope.kind == "operator":
        raise ReportRefused(f"{metric} is not counted by operator; choose a team or the store")
    since, until = whole(calendar, "hour", since, until, counted=False)
    cells = [[0] * 24 for _ in range(7)]
    for hour, n in _counts(connection, scope.key, metric, since, until):
        local = calendar.local(hour)
        cells[local.weekday()][local.hour] += n
    return schemas.Heatmap(
        metric=metric,
        timezone=calendar.zone.key,
        scope=scope.described(),
        since=calendar.local(since),
        until=calendar.local(until),
        weekdays=list(WEEKDAYS),
        cells=cells,
    )


# -- a team's operators ------------------------------------------------------------------


def leaderboard(
    connection: Connection,
    team: int,
    since: int,
    until: int,
    calendar: Calendar,
    *,
    idle_ms: int,
    now: int,
) -> schemas.Leaderboard:
    """Each operator who replied in the team's chats in the period (see docs/reports.md),
    most replies first."""
    since, until = whole(calendar, "hour", since, until, counted=False)
    prefix = scopes.of_operator_in_team(team, "")
    replies: Counter[str] = Counter()
    query = select(report_counts.c.scope, report_counts.c.n).where(
        report_counts.c.scope >= prefix,
        report_counts.c.scope < prefix[:-1] + chr(ord(prefix[-1]) + 1),
        report_counts.c.metric == "operator_replies",
        report_counts.c.hour >= since,
        report_counts.c.hour < until,
    )
    for row in connection.execute(query):
        replies[row.scope[len(prefix) :]] += row.n
    in_team = [
        timeline.c.team_id == team,
        timeline.c.kind == "operator_reply",
        timeline.c.occurred_at >= since,
        timeline.c.occurred_at < until,
        timeline.c.operator_uuid.is_not(None),
    ]
    replied = (
        select(timeline.c.operator_uuid, timeline.c.chat_uuid, timeline.c.session_number)
        .where(*in_team)
        .distinct()
        .subquery()
    )
    sessions_of = {
        row.operator_uuid: row.n
        for row in connection.execute(
            select(replied.c.operator_uuid, func.count().label("n")).group_by(
                replied.c.operator_uuid
            )
        )
    }
    first: dict[str, list[int]] = defaultdict(list)
    answered: dict[str, list[int]] = defaultdict(list)
    kept = {"first_response": first, "reply_time": answered}
    query = select(report_lengths.c.scope, report_lengths.c.metric, report_lengths.c.lengths).where(
        report_lengths.c.scope >= prefix,
        report_lengths.c.scope < prefix[:-1] + chr(ord(prefix[-1]) + 1),
        report_lengths.c.metric.in_(sorted(kept)),
        report_lengths.c.hour >= since,
        report_lengths.c.hour < until,
    )
    for lengths_row in connection.execute(query):
        name = lengths_row.scope[len(prefix) :]
        kept[lengths_row.metric][name] += unpacked(lengths_row.lengths)
    late: Counter[str] = Counter()
    targets = _targets_of(connection, team)
    if targets:
        length, _ = sla_module.measure(connection, calendar)
        found = sla_module.waits_with_targets(
            connection, targets, since, until, idle_ms=idle_ms, now=now
        )
        for wait, target in found:
            judged = sla_module.judge(wait, target, length, now)
            if wait.replied_by is not None and judged.state == "breached":
                late[wait.replied_by] += 1
    operators = sorted(set(replies) | set(sessions_of) | set(first) | set(answered))
    names = operator_names(connection, operators)
    leaders = [
        schemas.Leader(
            operator_uuid=uuid,
            operator_name=names.get(uuid),
            sessions=sessions_of.get(uuid, 0),
            replies=replies[uuid],
            first_response_median_seconds=_seconds(percentile(sorted(first[uuid]), 0.5)),
            reply_time_median_seconds=_seconds(percentile(sorted(answered[uuid]), 0.5)),
            breaches=late[uuid],
        )
        for uuid in operators
    ]
    leaders.sort(key=lambda leader: (-leader.replies, leader.operator_uuid))
    return schemas.Leaderboard(
        team_id=team,
        team_name=team_names(connection, [team]).get(team),
        timezone=calendar.zone.key,
        since=calendar.local(since),
        until=calendar.local(until),
        operators=leaders,
    )


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else round(ms / 1000, 3)


def operator_names(connection: Connection, uuids: Sequence[str]) -> dict[str, str | None]:
    """Each operator's latest name, as their latest reply gave it."""
    names: dict[str, str | None] = {}
    for uuid in uuids:
        query = (
            select(timeline.c.operator_name)
            .where(timeline.c.operator_uuid == uuid, timeline.c.kind == "operator_reply")
            .order_by(timeline.c.occurred_at.desc(), timeline.c.position.desc())
            .limit(1)
        )
        names[uuid] = connection.scalar(query)
    return names


# -- who is waiting now ------------------------------------------------------------------


def waiting(
    connection: Connection,
    team: int | None,
    calendar: Calendar,
    *,
    idle_ms: int,
    now: int,
) -> schemas.Waiting:
    """Every chat whose customer waits for a reply now, longest wait first (see
    docs/reports.md), with when the list next changes with time alone."""
    query = select(report_waiting).where(report_waiting.c.last_activity_at > now - idle_ms)
    if team is not None:
        query = query.where(report_waiting.c.team_id == team)
    rows = sorted(connection.execute(query), key=lambda row: (row.since, row.chat_uuid))
    targets = hours.targets(connection)
    length, working = sla_module.measure(connection, calendar)
    reach = WorkingTime(hours.schedule(connection), calendar).reach if working else None
    names = team_names(connection, sorted({row.team_id for row in rows if row.team_id is not None}))
    chats_now: list[schemas.WaitingChat] = []
    changes = [row.last_activity_at + idle_ms for row in rows]
    per_team: dict[int | None, Counter[str]] = defaultdict(Counter)
    for row in rows:
        set_for = targets.get(row.team_id) if row.team_id is not None else None
        kind: sla_module.Kind | None = None
        seconds: float | None = None
        start = row.since
        if set_for is not None:
            if not row.turn_answered and set_for.first_reply_seconds:
                kind, seconds = "first_reply", set_for.first_reply_seconds
                start = row.turn_started_at if row.turn_started_at is not None else row.since
            elif row.turn_answered and set_for.next_reply_seconds:
                kind, seconds = "next_reply", set_for.next_reply_seconds
        state = None
        if kind is not None and seconds is not None:
            target_ms = round(seconds * 1000)
            wait = sla_module.Wait(
                kind,
                row.position,
                row.chat_uuid,
                row.session_number,
                row.team_id,
                start,
                None,
                None,
                None,
            )
            state = sla_module.judge(wait, target_ms, length, now).state
            for share in (sla_module.AT_RISK, 1.0):
                due = round(target_ms * share)
                at = (start + due) if reach is None else reach(start, due)
                if at is not None and at > now:
                    changes.append(at)
        tally = per_team[row.team_id]
        tally["waiting"] += 1
        if state == "at_risk":
            tally["at_risk"] += 1
        elif state == "open_breached":
            tally["breached"] += 1
        chats_now.append(
            schemas.WaitingChat(
                chat_uuid=row.chat_uuid,
                session_number=row.session_number,
                platform=row.platform,
                team_id=row.team_id,
                team_name=names.get(row.team_id) if row.team_id is not None else None,
                since=utc(row.since),
                waiting_seconds=round(max(0, now - row.since) / 1000, 3),
                target=kind,
                target_seconds=seconds,
                state=state,
                last_activity_at=utc(row.last_activity_at),
            )
        )
    teams = [
        schemas.TeamWaiting(
            team_id=team_id,
            team_name=names.get(team_id) if team_id is not None else None,
            waiting=tally["waiting"],
            at_risk=tally["at_risk"],
            breached=tally["breached"],
        )
        for team_id, tally in sorted(
            per_team.items(), key=lambda item: (-item[1]["waiting"], item[0] or 0)
        )
    ]
    future = [at for at in changes if at > now]
    return schemas.Waiting(
        at=utc(now),
        changes_at=utc(min(future)) if future else None,
        teams=teams,
        chats=chats_now,
    )
