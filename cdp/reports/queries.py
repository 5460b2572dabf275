"""Reports: each metric as a series by local hour, day, week or month, for a scope, with
the period before it beside it. The definitions are in docs/reports.md, as computed here.

Counts are read from the hourly counts the reports projector keeps; times (waits for a
first reply, for each reply, sessions' lengths) from the rows each is measured on, by
when it began. What depends on the moment of asking (has a session ended?) or on the
settings (working hours) is worked out as the question is answered.
"""

from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import numpy as np
from sqlalchemy import BigInteger, Connection, Integer, String, column, func, select

from cdp import db, paging
from cdp.conversations.tables import timeline
from cdp.reports import hours, outcomes, schemas, scopes
from cdp.reports import sla as sla_module
from cdp.reports.calendar import WEEKDAYS, Calendar, Group, WorkingTime
from cdp.reports.kept import Kept, of_scope, under_prefix
from cdp.reports.records import REPLIED, WITH_SESSION
from cdp.reports.tables import (
    report_counts,
    report_replies,
    report_turns,
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
        kept = of_scope(connection, question.scope.key, [question.metric], since, until)
        found = kept[question.metric]
        unit = np.searchsorted(np.asarray(units, dtype=np.int64), found.began, side="right") - 1
        if question.metric == "session_duration":  # counted once over
            counted = found.ended <= now - idle_ms
            missing = None
        else:
            counted = found.how == REPLIED
            missing = np.bincount(unit[~counted], minlength=len(units))
        began, ended, unit = found.began[counted], found.ended[counted], unit[counted]
        lengths = ended - began if working is None else working.spent(began, ended)
        if np.any(unit[1:] < unit[:-1]):  # read in the order they began, so never but here
            order = np.argsort(unit, kind="stable")
            lengths, unit = lengths[order], unit[order]
        bounds = np.searchsorted(unit, np.arange(len(units) + 1))
        points = [
            _point(
                at,
                np.sort(lengths[bounds[n] : bounds[n + 1]]),
                None if missing is None else int(missing[n]),
            )
            for n, at in enumerate(local)
        ]
        total = _point(
            calendar.local(since),
            np.sort(lengths),
            None if missing is None else int(missing.sum()),
        )
        return schemas.Series(
            since=calendar.local(since), until=calendar.local(until), points=points, total=total
        )

    return series


def _point(start: datetime, lengths: Any, unanswered: int | None) -> schemas.Point:
    """A unit's point from its lengths (ms, in order)."""
    median, p90 = percentile(lengths, 0.5), percentile(lengths, 0.9)
    return schemas.Point(
        start=start,
        count=len(lengths),
        median_seconds=_seconds(median),
        p90_seconds=_seconds(p90),
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
    tallies = {
        kind: np.zeros((len(units), len(sla_module.STATES)), dtype=np.int64)
        for kind in ("first_reply", "next_reply")
    }
    bounds = np.asarray(units, dtype=np.int64)
    schedule = hours.schedule(connection)
    length, working = sla_module.spent_under(schedule, calendar)
    scope = scopes.ALL if team is None else scopes.of("team", team)
    for kind, metric, targets in _kinds(connection, team):
        setting = outcomes.setting_of(
            targets, sorted(schedule.week.items()), sorted(schedule.holidays), calendar.zone.key
        )
        found, counts = outcomes.by_hour(
            connection,
            scope,
            metric,
            targets,
            follows_reply=kind == "next_reply",
            length=length,
            setting=setting,
            since=since,
            until=until,
            now=now,
            idle_ms=idle_ms,
        )
        unit = np.searchsorted(bounds, found, side="right") - 1
        np.add.at(tallies[kind], unit, counts)

    def series(kind: str) -> schemas.SlaSeries:
        points = [
            _sla_point(calendar.local(unit), tally)
            for unit, tally in zip(units, tallies[kind], strict=True)
        ]
        total = tallies[kind].sum(axis=0)
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


def _sla_point(start: datetime, tally: Any) -> schemas.SlaPoint:
    """A unit's outcomes from its count of each state (see sla.STATES): those at risk are
    open."""
    return schemas.SlaPoint(
        start=start,
        within=int(tally[sla_module.WITHIN]),
        breached=int(tally[sla_module.BREACHED]),
        open=int(tally[sla_module.OPEN] + tally[sla_module.AT_RISK_CODE]),
        open_breached=int(tally[sla_module.OPEN_BREACHED]),
    )


@dataclass(frozen=True, slots=True)
class _Outcomes:
    """Waits judged (see sla.judge_all): those `targeted` have a target of their kind."""

    kept: Kept
    targeted: Any
    states: Any
    took: Any  # ms
    target: Any  # ms


def _kinds(
    connection: Connection, team: int | None
) -> list[tuple[sla_module.Kind, str, dict[int, int]]]:
    """Each kind of target some team has (of `team`, or of every team), with the metric
    whose waits it applies to and each team's target in ms."""
    first, after = sla_module.targets_ms(_targets_of(connection, team))
    found: list[tuple[sla_module.Kind, str, dict[int, int]]] = [
        ("first_reply", "first_response", first),
        ("next_reply", "reply_time", after),
    ]
    return [(kind, metric, targets) for kind, metric, targets in found if targets]


def _judged(
    connection: Connection,
    team: int | None,
    since: int,
    until: int,
    calendar: Calendar,
    *,
    idle_ms: int,
    now: int,
) -> list[tuple[sla_module.Kind, _Outcomes]]:
    """The waits begun in [since, until) of the team (or of every team) that has a target
    of their kind, judged as of `now`."""
    kinds = _kinds(connection, team)
    if not kinds:
        return []
    length, _ = sla_module.spent(connection, calendar)
    scope = scopes.ALL if team is None else scopes.of("team", team)
    kept = of_scope(connection, scope, ["first_response", "reply_time"], since, until)
    found: list[tuple[sla_module.Kind, _Outcomes]] = []
    for kind, metric, targets in kinds:
        # Every record is judged, those with no target too: cheaper than leaving them out.
        target = sla_module.targets_for(kept[metric], targets, follows_reply=kind == "next_reply")
        states, took = sla_module.judge_all(
            kept[metric], target, length, now=now, idle_before=now - idle_ms
        )
        found.append((kind, _Outcomes(kept[metric], target > 0, states, took, target)))
    return found


def _targets_of(connection: Connection, team: int | None) -> dict[int, schemas.Targets]:
    every = hours.targets(connection)
    if team is None:
        return every
    return {team: every[team]} if team in every else {}


@dataclass(frozen=True, slots=True)
class Breaches:
    """A page of breaches, the cursor of the next (None: the last page), and how many
    there are in all."""

    items: list[schemas.Breach]
    next: str | None
    total: int


# A breach's place in the list: when it began, then its chat, session, kind, team and
# position (an order no delivery order changes but for the position, which breaks ties
# alone).
_BreachKey = tuple[int, str, int, str, int, int]


def breaches(
    connection: Connection,
    since: int,
    until: int,
    team: int | None,
    calendar: Calendar,
    *,
    idle_ms: int,
    now: int,
    limit: int | None = None,
    after: str | None = None,
) -> Breaches:
    """The waits of the period that passed their target, in the order they began: every
    one, or `limit` of them after the cursor `after` (a `next` it gave). Each is judged
    from the kept records at once; only those of the page are looked up."""
    late: list[tuple[int, sla_module.Kind, int, int, int, int, int, int]] = []
    for kind, judged in _judged(connection, team, since, until, calendar, idle_ms=idle_ms, now=now):
        late_ones = (judged.states == sla_module.BREACHED) | (
            judged.states == sla_module.OPEN_BREACHED
        )
        chosen = np.flatnonzero(late_ones & judged.targeted)
        kept = judged.kept.where(chosen)
        late += zip(
            kept.began.tolist(),
            [kind] * len(kept),
            kept.position.tolist(),
            kept.ended.tolist(),
            kept.how.tolist(),
            kept.team.tolist(),
            judged.took[chosen].tolist(),
            judged.target[chosen].tolist(),
            strict=True,
        )
    late.sort()
    total = len(late)
    cursor = None if after is None else _breach_cursor(after)
    skipped = 0  # of the cursor's moment: those up to it are known once looked up
    if cursor is not None:
        late = late[bisect_left(late, (cursor[0],)) :]
        skipped = bisect_right(late, (cursor[0], "~"))
    page = late
    if limit is not None and len(late) > skipped + limit:  # and every wait of its last moment
        last = late[skipped + limit][0]
        page = late[: bisect_right(late, (last, "~"))]
    whose = _whose(connection, page)
    names = team_names(connection, sorted({wait[5] for wait in page}))
    keyed: list[tuple[_BreachKey, schemas.Breach]] = []
    for began, kind, position, ended, how, team_id, took, target in page:
        if (kind, position) not in whose:
            continue
        chat_uuid, number, operator = whose[(kind, position)]
        key = (began, chat_uuid, number, kind, team_id, position)
        if cursor is not None and key <= cursor:
            continue
        breach = schemas.Breach(
            kind=kind,
            chat_uuid=chat_uuid,
            session_number=number,
            team_id=team_id,
            team_name=names.get(team_id),
            started_at=utc(began),
            replied_at=utc(ended) if how == REPLIED else None,
            operator_uuid=operator,
            wait_seconds=round(took / 1000, 3),
            target_seconds=round(target / 1000, 3),
            open=how == WITH_SESSION and ended > now - idle_ms,
        )
        keyed.append((key, breach))
    keyed.sort(key=lambda pair: pair[0])
    following = None
    if limit is not None and len(keyed) > limit:
        keyed = keyed[:limit]
        following = paging.encode_cursor(list(keyed[-1][0]))
    return Breaches([breach for _, breach in keyed], following, total)


def _breach_cursor(after: str) -> _BreachKey:
    """A cursor of the breaches' list, checked (paging.BadCursor if it is not one)."""
    began, chat_uuid, number, kind, team_id, position = paging.decode_cursor(after, _BREACH_ORDER)
    return (began, chat_uuid, number, kind, team_id, position)


_BREACH_ORDER: Final = (
    column("started_at", BigInteger()),
    column("chat_uuid", String()),
    column("session_number", Integer()),
    column("kind", String()),
    column("team_id", BigInteger()),
    column("position", BigInteger()),
)


def _whose(
    connection: Connection, late: Sequence[tuple[Any, ...]]
) -> dict[tuple[str, int], tuple[str, int, str | None]]:
    """(chat, session, who replied) of each wait of `late` (began, kind, position, ...), by
    (kind, position)."""
    found: dict[tuple[str, int], tuple[str, int, str | None]] = {}
    for kind, table in (("first_reply", report_turns), ("next_reply", report_replies)):
        positions = sorted({wait[2] for wait in late if wait[1] == kind})
        if not positions:
            continue
        query = select(
            table.c.position, table.c.chat_uuid, table.c.session_number, table.c.replied_by
        ).where(db.any_of(table.c.position, "positions"))
        for row in connection.execute(query, {"positions": positions}):
            found[(kind, row.position)] = (row.chat_uuid, row.session_number, row.replied_by)
    return found


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
    since, until = whole(calendar, "day", since, until, counted=False)  # kept by the day
    prefix = scopes.of_operator_in_team(team, "")
    replies: Counter[str] = Counter()
    sessions_of: Counter[str] = Counter()
    counted = {"operator_replies": replies, scopes.OPERATOR_SESSIONS: sessions_of}
    query = (
        select(report_counts.c.scope, report_counts.c.metric, func.sum(report_counts.c.n))
        .where(
            report_counts.c.scope >= prefix,
            report_counts.c.scope < prefix[:-1] + chr(ord(prefix[-1]) + 1),
            report_counts.c.metric.in_(sorted(counted)),
            report_counts.c.hour >= since,
            report_counts.c.hour < until,
        )
        .group_by(report_counts.c.scope, report_counts.c.metric)
    )
    for scope, metric, n in connection.execute(query):
        counted[metric][scope[len(prefix) :]] += int(n)
    kept = under_prefix(connection, prefix, ["first_response", "reply_time"], since, until)
    first_targets, next_targets = sla_module.targets_ms(_targets_of(connection, team))
    length = sla_module.spent(connection, calendar)[0] if first_targets or next_targets else None
    first: dict[str, Any] = {}
    answered: dict[str, Any] = {}
    late: Counter[str] = Counter()
    for (uuid, metric), found in kept.items():
        lengths = np.sort(found.ended - found.began)  # of waits they answered
        (first if metric == "first_response" else answered)[uuid] = lengths
        targets = first_targets if metric == "first_response" else next_targets
        if length is None or not targets:
            continue
        target = sla_module.targets_for(found, targets, follows_reply=metric == "reply_time")
        states, _ = sla_module.judge_all(found, target, length, now=now, idle_before=now - idle_ms)
        late[uuid] += int(np.count_nonzero((states == sla_module.BREACHED) & (target > 0)))
    operators = sorted(set(replies) | set(sessions_of) | set(first) | set(answered))
    names = operator_names(connection, operators)
    leaders = [
        schemas.Leader(
            operator_uuid=uuid,
            operator_name=names.get(uuid),
            sessions=sessions_of.get(uuid, 0),
            replies=replies[uuid],
            first_response_median_seconds=_seconds(percentile(first.get(uuid, _NONE), 0.5)),
            reply_time_median_seconds=_seconds(percentile(answered.get(uuid, _NONE), 0.5)),
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


_NONE: Final = np.zeros(0, dtype=np.int64)


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else round(float(ms) / 1000, 3)


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
