"""Reply targets (SLAs): each wait with a target, judged as of the moment of asking.

The first-reply target applies to a team's turns, the next-reply target to the waits for
a reply that follow an operator reply, begun while the team was in charge (see
docs/reports.md). A wait is measured in working time when working hours are set, in
clock time otherwise.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from sqlalchemy import Connection, and_, select

from cdp.conversations.tables import sessions, waits
from cdp.reports import hours, schemas
from cdp.reports.calendar import Calendar, WorkingTime
from cdp.reports.tables import report_replies

Kind = Literal["first_reply", "next_reply"]
State = Literal["within", "breached", "open", "at_risk", "open_breached"]
AT_RISK: Final = 0.8  # of its target, a wait still open is at risk


@dataclass(frozen=True, slots=True)
class Wait:
    """A wait that has a target: its start, its reply if one came, and when it ended
    without one (handed on, its session over); `closed_at` None while still open."""

    kind: Kind
    position: int
    chat_uuid: str
    session_number: int
    team_id: int
    started_at: int
    replied_at: int | None
    replied_by: str | None
    closed_at: int | None


@dataclass(frozen=True, slots=True)
class Judged:
    wait: Wait
    state: State | None  # None: ended unanswered before its target passed
    length_ms: int  # so far, for one still open
    target_ms: int


Measure = Callable[[int, int], int]


def measure(connection: Connection, calendar: Calendar) -> tuple[Measure, bool]:
    """How waits are measured against targets: in working time when working hours are
    set (True), else in clock time."""
    schedule = hours.schedule(connection)
    if schedule.empty:
        return (lambda since, until: max(0, until - since)), False
    return WorkingTime(schedule, calendar).between, True


def judge(wait: Wait, target_ms: int, length: Measure, now: int) -> Judged:
    if wait.replied_at is not None:
        took = length(wait.started_at, wait.replied_at)
        return Judged(wait, "within" if took <= target_ms else "breached", took, target_ms)
    if wait.closed_at is not None:
        took = length(wait.started_at, wait.closed_at)
        return Judged(wait, "breached" if took > target_ms else None, took, target_ms)
    took = length(wait.started_at, now)
    if took > target_ms:
        return Judged(wait, "open_breached", took, target_ms)
    return Judged(wait, "at_risk" if took > AT_RISK * target_ms else "open", took, target_ms)


def waits_with_targets(
    connection: Connection,
    targets: Mapping[int, schemas.Targets],
    since: int,
    until: int,
    *,
    idle_ms: int,
    now: int,
) -> list[tuple[Wait, int]]:
    """Every wait begun in [since, until) of a team with a target of its kind, with that
    target (ms), in the order they began (then by chat)."""
    first = {
        t: round(v.first_reply_seconds * 1000) for t, v in targets.items() if v.first_reply_seconds
    }
    after = {
        t: round(v.next_reply_seconds * 1000) for t, v in targets.items() if v.next_reply_seconds
    }
    found: list[tuple[Wait, int]] = []
    idle_before = now - idle_ms
    of_session = and_(
        sessions.c.chat_uuid == waits.c.chat_uuid, sessions.c.number == waits.c.session_number
    )
    if first:
        query = (
            select(
                waits.c.position,
                waits.c.chat_uuid,
                waits.c.session_number,
                waits.c.team_id,
                waits.c.started_at,
                waits.c.replied_at,
                waits.c.replied_by,
                waits.c.handed_off_at,
                sessions.c.last_activity_at,
            )
            .select_from(waits.join(sessions, of_session))
            .where(
                waits.c.team_id.in_(sorted(first)),
                waits.c.started_at >= since,
                waits.c.started_at < until,
            )
        )
        for row in connection.execute(query):
            closed = row.handed_off_at
            if closed is None and row.last_activity_at <= idle_before:
                closed = row.last_activity_at
            wait = Wait(
                "first_reply",
                row.position,
                row.chat_uuid,
                row.session_number,
                row.team_id,
                row.started_at,
                row.replied_at,
                row.replied_by,
                closed,
            )
            found.append((wait, first[row.team_id]))
    if after:
        replies = report_replies
        of_reply_session = and_(
            sessions.c.chat_uuid == replies.c.chat_uuid,
            sessions.c.number == replies.c.session_number,
        )
        query = (
            select(
                replies.c.position,
                replies.c.chat_uuid,
                replies.c.session_number,
                replies.c.team_id,
                replies.c.occurred_at,
                replies.c.replied_at,
                replies.c.replied_by,
                sessions.c.last_activity_at,
            )
            .select_from(replies.join(sessions, of_reply_session))
            .where(
                replies.c.follows_reply.is_(True),
                replies.c.team_id.in_(sorted(after)),
                replies.c.occurred_at >= since,
                replies.c.occurred_at < until,
            )
        )
        for reply in connection.execute(query):
            ended = reply.last_activity_at
            wait = Wait(
                "next_reply",
                reply.position,
                reply.chat_uuid,
                reply.session_number,
                reply.team_id,
                reply.occurred_at,
                reply.replied_at,
                reply.replied_by,
                ended if ended <= idle_before else None,
            )
            found.append((wait, after[reply.team_id]))
    # In an order no delivery order changes (positions do): when, then whose.
    found.sort(
        key=lambda pair: (
            pair[0].started_at,
            pair[0].chat_uuid,
            pair[0].session_number,
            pair[0].kind,
            pair[0].team_id,
            pair[0].position,
        )
    )
    return found
