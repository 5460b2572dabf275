"""Working hours, holidays and each team's reply targets: set by an admin, kept in the
database, each change recorded with who made it (`report_setting_changes`). Reports read
them as they answer, so a change shows in the next answer, with no rebuild."""

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from typing import Any, Final

from sqlalchemy import Connection, Engine, Table, delete, insert, select, text

from cdp import db
from cdp.reports import schemas
from cdp.reports.calendar import WEEKDAYS, Interval, Schedule, clock, problems
from cdp.reports.tables import holidays, reply_targets, setting_changes, working_hours
from cdp.times import now_ms, utc

_SPAN: Final = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")
# The shortest and longest target there is: a second, and a year (of working time, with a
# schedule).
SHORTEST_TARGET_SECONDS: Final = 1
LONGEST_TARGET_SECONDS: Final = 366 * 86400
NAME_LENGTH: Final = 200
HOLIDAYS_MOST: Final = 1000
INTERVALS_MOST: Final = 48  # of a weekday


class SettingRefused(ValueError):
    """A working week, holiday or target that cannot be, said in words."""


@contextmanager
def changing(engine: Engine, *tables: Table) -> Iterator[Connection]:
    """One transaction that reads the settings in `tables`, then writes them, with no other
    writer of them in between: on SQLite the database's write lock, taken as it begins; on
    PostgreSQL the tables', which every other writer of them waits for."""
    with db.writing(engine) as connection:
        if db.dialect(connection) == "postgresql":
            names = ", ".join(table.name for table in tables)
            connection.execute(text(f"LOCK TABLE {names} IN SHARE ROW EXCLUSIVE MODE"))
        yield connection


HOURS_TABLES: Final = (working_hours, holidays)
TARGETS_TABLES: Final = (reply_targets,)


def interval(text: str) -> Interval:
    """`09:00-18:00` as an interval; 24:00 ends the day."""
    found = _SPAN.fullmatch(text.strip())
    if found is None:
        raise SettingRefused(f"{text!r} is not an interval: write it as 09:00-18:00")
    start_h, start_m, end_h, end_m = map(int, found.groups())
    if start_m > 59 or end_m > 59 or start_h > 23 or end_h > 24 or (end_h == 24 and end_m):
        raise SettingRefused(f"{text!r} is not an interval of a day: 00:00 to 24:00")
    return Interval(start_h * 60 + start_m, end_h * 60 + end_m)


def week_of(given: Mapping[str, Sequence[str]]) -> dict[int, tuple[Interval, ...]]:
    """A week as given (weekday name: intervals), read; SettingRefused naming each fault."""
    unknown = sorted(set(given) - set(WEEKDAYS))
    if unknown:
        raise SettingRefused(
            f"{', '.join(map(repr, unknown))}: not a weekday; write {', '.join(WEEKDAYS)}"
        )
    crowded = [name for name, texts in given.items() if len(texts) > INTERVALS_MOST]
    if crowded:
        raise SettingRefused(f"{', '.join(crowded)}: more than {INTERVALS_MOST} intervals in a day")
    week = {
        WEEKDAYS.index(name): tuple(sorted((interval(text) for text in texts), key=_start))
        for name, texts in given.items()
    }
    found = problems(week)
    if found:
        raise SettingRefused("; ".join(found))
    return {day: spans for day, spans in week.items() if spans}


def _start(interval: Interval) -> int:
    return interval.starts


def holiday_of(day: str, name: str | None) -> tuple[date, str | None]:
    try:
        parsed = date.fromisoformat(day)
    except ValueError:
        raise SettingRefused(f"{day!r} is not a day: write it as YYYY-MM-DD") from None
    if name is not None and len(name) > NAME_LENGTH:
        raise SettingRefused(f"the name of holiday {day} is longer than {NAME_LENGTH} characters")
    return parsed, name


def schedule(connection: Connection) -> Schedule:
    """The working week and the holidays as they are set (empty if none is)."""
    week: dict[int, list[Interval]] = {}
    for row in connection.execute(select(working_hours).order_by(working_hours.c.starts)):
        week.setdefault(row.weekday, []).append(Interval(row.starts, row.ends))
    days = frozenset(date.fromisoformat(day) for day in connection.scalars(select(holidays.c.day)))
    return Schedule({day: tuple(spans) for day, spans in week.items()}, days)


def hours(connection: Connection, timezone: str) -> schemas.WorkingHours:
    """The working hours as an admin reads and writes them."""
    week: dict[str, list[str]] = {name: [] for name in WEEKDAYS}
    for row in connection.execute(select(working_hours).order_by(working_hours.c.starts)):
        week[WEEKDAYS[row.weekday]].append(f"{clock(row.starts)}-{clock(row.ends)}")
    days = [
        schemas.Holiday(day=date.fromisoformat(row.day), name=row.name)
        for row in connection.execute(select(holidays).order_by(holidays.c.day))
    ]
    return schemas.WorkingHours(timezone=timezone, week=week, holidays=days)


def set_hours(
    connection: Connection,
    week: Mapping[int, Sequence[Interval]],
    days: Mapping[date, str | None],
    *,
    actor: str,
    timezone: str,
) -> schemas.WorkingHours:
    """Replace the working week and the holidays (in a transaction of `changing`), and
    record what changed: the week, the holidays, or both."""
    if len(days) > HOLIDAYS_MOST:
        raise SettingRefused(f"{len(days)} holidays: at most {HOLIDAYS_MOST} are kept")
    found = problems(week)
    if found:
        raise SettingRefused("; ".join(found))
    for day, name in days.items():
        holiday_of(day.isoformat(), name)
    before = hours(connection, timezone)
    connection.execute(delete(working_hours))
    connection.execute(delete(holidays))
    rows = [
        {"weekday": day, "starts": span.starts, "ends": span.ends}
        for day, spans in sorted(week.items())
        for span in spans
    ]
    if rows:
        connection.execute(insert(working_hours), rows)
    if days:
        connection.execute(
            insert(holidays), [{"day": d.isoformat(), "name": n} for d, n in sorted(days.items())]
        )
    after = hours(connection, timezone)
    if before.week != after.week:
        _record(connection, actor, "working_hours", before.week, after.week)
    if before.holidays != after.holidays:
        was, now = (
            [holiday.model_dump(mode="json") for holiday in found.holidays]
            for found in (before, after)
        )
        _record(connection, actor, "holidays", was, now)
    return after


# -- reply targets ---------------------------------------------------------------------


def targets(connection: Connection) -> dict[int, schemas.Targets]:
    """Each team's reply targets, by team id."""
    return {
        row.team_id: _targets(row)
        for row in connection.execute(select(reply_targets).order_by(reply_targets.c.team_id))
    }


def _targets(row: Any) -> schemas.Targets:
    return schemas.Targets(
        team_id=row.team_id,
        first_reply_seconds=None if row.first_reply_ms is None else row.first_reply_ms / 1000,
        next_reply_seconds=None if row.next_reply_ms is None else row.next_reply_ms / 1000,
    )


def set_targets(
    connection: Connection,
    team_id: int,
    first_reply_seconds: float | None,
    next_reply_seconds: float | None,
    *,
    actor: str,
) -> schemas.Targets | None:
    """Set a team's targets (both None: remove them; in a transaction of `changing`), and
    record the change, if there is one."""
    for name, value in (("first_reply", first_reply_seconds), ("next_reply", next_reply_seconds)):
        if value is not None and not SHORTEST_TARGET_SECONDS <= value <= LONGEST_TARGET_SECONDS:
            raise SettingRefused(
                f"{name} target {value} s: a target is at least {SHORTEST_TARGET_SECONDS} s "
                f"and at most a year ({LONGEST_TARGET_SECONDS} s)"
            )
    before = targets(connection).get(team_id)
    connection.execute(delete(reply_targets).where(reply_targets.c.team_id == team_id))
    after = None
    if first_reply_seconds is not None or next_reply_seconds is not None:
        row = {
            "team_id": team_id,
            "first_reply_ms": None
            if first_reply_seconds is None
            else round(first_reply_seconds * 1000),
            "next_reply_ms": None
            if next_reply_seconds is None
            else round(next_reply_seconds * 1000),
        }
        connection.execute(insert(reply_targets), [row])
        after = targets(connection)[team_id]
    if before != after:
        none = {"team_id": team_id, "first_reply_seconds": None, "next_reply_seconds": None}
        was, now = (none if t is None else t.model_dump(mode="json") for t in (before, after))
        _record(connection, actor, "targets", was, now)
    return after


# -- who changed what ------------------------------------------------------------------


def _record(
    connection: Connection, actor: str, setting: str, before: object, after: object
) -> None:
    connection.execute(
        insert(setting_changes),
        [
            {
                "at": now_ms(),
                "actor": actor[:200],
                "setting": setting,
                "before": before,
                "after": after,
            }
        ],
    )


def changes(connection: Connection, limit: int = 100) -> list[schemas.SettingChange]:
    """The latest changes, newest first."""
    query = select(setting_changes).order_by(setting_changes.c.id.desc()).limit(limit)
    return [
        schemas.SettingChange(
            at=utc(row.at), actor=row.actor, setting=row.setting, before=row.before, after=row.after
        )
        for row in connection.execute(query)
    ]
