"""Reply targets (SLAs): each wait with a target, judged as of the moment of asking.

The first-reply target applies to a team's turns, the next-reply target to the waits for
a reply that follow an operator reply, begun while the team was in charge (see
docs/reports.md). A wait is measured in working time when working hours are set, in
clock time otherwise.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
from sqlalchemy import Connection

from cdp.reports import hours, schemas
from cdp.reports.calendar import Calendar, Schedule, WorkingTime
from cdp.reports.kept import Kept
from cdp.reports.records import FOLLOWS_REPLY, REPLIED, WITH_SESSION

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


# The states as codes, for many waits at once (see judge_all).
STATES: Final[tuple[State | None, ...]] = (
    None,
    "within",
    "breached",
    "open",
    "at_risk",
    "open_breached",
)
NONE, WITHIN, BREACHED, OPEN, AT_RISK_CODE, OPEN_BREACHED = range(len(STATES))
Spent = Callable[[Any, Any], Any]


def spent(connection: Connection, calendar: Calendar) -> tuple[Spent, bool]:
    """`measure` for many waits at once (int64 arrays)."""
    return spent_under(hours.schedule(connection), calendar)


def spent_under(schedule: Schedule, calendar: Calendar) -> tuple[Spent, bool]:
    """`spent` under a schedule already read."""
    if schedule.empty:
        return (lambda since, until: np.maximum(0, until - since)), False
    return WorkingTime(schedule, calendar).spent, True


def judge_all(
    kept: Kept, target_ms: Any, length: Spent, *, now: int, idle_before: int
) -> tuple[Any, Any]:
    """`judge` of each of the records against its target: (state codes, lengths in ms).
    One with no reply that ends with its session is still open while that session is."""
    how = kept.how
    still = (how == WITH_SESSION) & (kept.ended > idle_before)
    took = length(kept.began, np.where(still, now, kept.ended))
    late = took > target_ms
    states = np.select(
        [
            how == REPLIED,
            still & late,
            still & (took > AT_RISK * target_ms),
            still,
            late,
        ],
        [
            np.where(late, BREACHED, WITHIN),
            OPEN_BREACHED,
            AT_RISK_CODE,
            OPEN,
            BREACHED,
        ],
        NONE,
    )
    return states, took


def targets_for(kept: Kept, targets: Mapping[int, int], *, follows_reply: bool) -> Any:
    """The target (ms) of each record: its team's, 0 for one of a team without a target
    (or, for a next reply, for a wait that does not follow an operator reply)."""
    found = np.zeros(len(kept), dtype=np.int64)
    if len(targets) <= 16:  # as most stores have: a comparison a team
        for team, target in targets.items():
            found[kept.team == team] = target
    else:
        teams = np.array(sorted(targets), dtype=np.int64)
        values = np.array([targets[team] for team in sorted(targets)], dtype=np.int64)
        index = np.minimum(np.searchsorted(teams, kept.team), len(teams) - 1)
        found = np.where(teams[index] == kept.team, values[index], 0)
    if follows_reply:
        found[(kept.flags & FOLLOWS_REPLY) == 0] = 0
    return found


def targets_ms(targets: Mapping[int, schemas.Targets]) -> tuple[dict[int, int], dict[int, int]]:
    """Each team's first-reply and next-reply targets in ms, of the teams that set one."""
    first = {
        t: round(v.first_reply_seconds * 1000) for t, v in targets.items() if v.first_reply_seconds
    }
    after = {
        t: round(v.next_reply_seconds * 1000) for t, v in targets.items() if v.next_reply_seconds
    }
    return first, after
