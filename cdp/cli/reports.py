"""`cdp reports`: the working hours, holidays and reply targets the reports count by, set
and shown, and who changed them."""

import getpass
import re
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import date
from typing import Final, NoReturn

import click
from sqlalchemy import Connection, Table

from cdp.cli.app import engine_for, main
from cdp.log.webhook import INT64_MAX
from cdp.reports import hours, schemas
from cdp.reports.calendar import WEEKDAYS, Interval
from cdp.reports.hours import SettingRefused
from cdp.reports.tables import holidays as holiday_rows
from cdp.reports.tables import reply_targets, working_hours
from cdp.settings import Settings
from cdp.times import iso

# monday, mon, ... sunday, sun
DAY_NAMES: Final = {
    **{name: index for index, name in enumerate(WEEKDAYS)},
    **{name[:3]: index for index, name in enumerate(WEEKDAYS)},
}
CLOSED: Final = "closed"
_DURATION: Final = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?")
_SECONDS: Final = re.compile(r"\d+(?:\.\d+)?")
NO_TARGET: Final = "none"


def actor() -> str:
    """Who changes a setting from the command line: `cli:` and the account running it."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError, ImportError):  # no name in the environment nor passwd
        name = ""
    return f"cli:{name or 'unknown'}"


def _changing(settings: Settings, *tables: Table) -> AbstractContextManager[Connection]:
    """See hours.changing: the API's writers of these settings wait for this one."""
    return hours.changing(engine_for(settings, existing=True), *tables)


@main.group()
def reports() -> None:
    """The working hours, holidays and reply targets that reports count by.

    Each change is recorded with `cli:` and the account that made it (see `cdp reports
    changes`), as the API records a token's name.
    """


# -- working hours ---------------------------------------------------------------------


@reports.group("hours")
def hours_group() -> None:
    """The working week, in CDP_TIMEZONE: what waits count with business_hours=true."""


@hours_group.command("show")
@click.pass_obj
def hours_show(settings: Settings) -> None:
    """Print each weekday's working intervals (or `closed`), the holidays, and the zone."""
    with engine_for(settings, existing=True).connect() as connection:
        found = hours.hours(connection, settings.timezone)
    _show_hours(found)


@hours_group.command(
    "set",
    epilog="Example: cdp reports hours set mon-fri=09:00-13:00,14:00-18:00 sat=10:00-14:00 sun=",
)
@click.argument("days", metavar="WEEKDAY=INTERVALS...", nargs=-1, required=True)
@click.pass_obj
def hours_set(settings: Settings, days: tuple[str, ...]) -> None:
    """Set the whole working week; the holidays stay as they are.

    WEEKDAY is a name (monday) or its first three letters (mon), a range (mon-fri) or a
    list (sat,sun). INTERVALS are local HH:MM-HH:MM, comma-separated; 24:00 ends the day;
    empty (sun=) or `closed` for no working time. A weekday not given has none.
    """
    week = week_of(days)
    with _changing(settings, working_hours, holiday_rows) as connection:
        kept = _holidays(connection, settings.timezone)
        try:
            found = hours.set_hours(
                connection, week, kept, actor=actor(), timezone=settings.timezone
            )
        except SettingRefused as error:
            raise click.ClickException(str(error)) from None
    _show_hours(found)


def week_of(given: Sequence[str]) -> dict[int, tuple[Interval, ...]]:
    """`mon-fri=09:00-18:00 sat=10:00-14:00 sun=` as a week; a BadParameter naming what
    cannot be read, an interval out of the day, or intervals that overlap."""
    texts: dict[str, list[str]] = {}
    said: dict[int, str] = {}
    for argument in given:
        names, equals, spans = argument.partition("=")
        if not equals:
            _refuse(
                f"{argument!r}: write WEEKDAY=INTERVALS, such as mon-fri=09:00-18:00 "
                "(sun= for a closed day)"
            )
        parsed = _intervals(argument, spans)
        for day in _weekdays(argument, names):
            if day in said:
                _refuse(
                    f"{WEEKDAYS[day]} is given twice ({said[day]!r} and {argument!r}): "
                    "give each weekday once"
                )
            said[day] = argument
            texts[WEEKDAYS[day]] = parsed
    try:
        return hours.week_of(texts)
    except SettingRefused as error:
        _refuse(str(error))


def _weekdays(argument: str, names: str) -> list[int]:
    """The weekdays, Monday 0, of `mon`, `monday`, `mon-fri` or `sat,sun`."""
    found: list[int] = []
    for part in names.split(","):
        first, dash, last = part.strip().lower().partition("-")
        start = _weekday(argument, first)
        end = _weekday(argument, last) if dash else start
        if end < start:
            wrapped = f"{WEEKDAYS[start][:3]}-sun,mon" + (f"-{WEEKDAYS[end][:3]}" if end else "")
            _refuse(
                f"{argument!r}: {part.strip()!r} runs backwards: a range runs from Monday to "
                f"Sunday; write {wrapped}"
            )
        found.extend(range(start, end + 1))
    return found


def _weekday(argument: str, name: str) -> int:
    day = DAY_NAMES.get(name.strip())
    if day is None:
        _refuse(
            f"{argument!r}: {name.strip()!r} is not a weekday; write monday ... sunday, "
            "mon ... sun, or a range such as mon-fri"
        )
    return day


def _intervals(argument: str, value: str) -> list[str]:
    """The intervals of `09:00-13:00,14:00-18:00`, each checked; none for `` or `closed`."""
    if value.strip().lower() in ("", CLOSED):
        return []
    spans = [span.strip() for span in value.split(",")]
    for span in spans:
        try:
            hours.interval(span)
        except SettingRefused as error:
            _refuse(f"{argument!r}: {error}")
    return spans


def _refuse(message: str) -> NoReturn:
    raise click.BadParameter(message, param_hint="WEEKDAY=INTERVALS")


def _holidays(connection: Connection, timezone: str) -> dict[date, str | None]:
    return {holiday.day: holiday.name for holiday in hours.hours(connection, timezone).holidays}


def _show_hours(found: schemas.WorkingHours) -> None:
    click.echo(f"working hours in {found.timezone} (CDP_TIMEZONE)")
    for name, spans in found.week.items():
        click.echo(f"{name:<10} {','.join(spans) or CLOSED}")
    if not any(found.week.values()):
        click.echo(
            "no working hours are set: reports refuse business_hours=true until they are "
            "(cdp reports hours set mon-fri=09:00-18:00)"
        )
    for holiday in found.holidays:
        click.echo(f"{'holiday':<10} {_holiday(holiday)}")
    if not found.holidays:
        click.echo("no holidays")


def _holiday(holiday: schemas.Holiday) -> str:
    return f"{holiday.day.isoformat()} {holiday.name}" if holiday.name else holiday.day.isoformat()


# -- holidays --------------------------------------------------------------------------


@reports.group("holidays")
def holidays_group() -> None:
    """Local days with no working time, whatever the week says."""


@holidays_group.command("list")
@click.pass_obj
def holidays_list(settings: Settings) -> None:
    """Print the holidays, one a line, in order."""
    with engine_for(settings, existing=True).connect() as connection:
        found = hours.hours(connection, settings.timezone).holidays
    for holiday in found:
        click.echo(_holiday(holiday))
    if not found:
        click.echo("no holidays: add one with cdp reports holidays add YYYY-MM-DD [NAME]")


@holidays_group.command("add")
@click.argument("day")
@click.argument("name", required=False)
@click.pass_obj
def holidays_add(settings: Settings, day: str, name: str | None) -> None:
    """Make DAY (YYYY-MM-DD) a holiday, named NAME; the working week stays as it is. A day
    that is a holiday already takes NAME, if one is given."""
    try:
        parsed, name = hours.holiday_of(day, name)
    except SettingRefused as error:
        raise click.BadParameter(str(error), param_hint="DAY or NAME") from None
    with _changing(settings, working_hours, holiday_rows) as connection:
        kept = _holidays(connection, settings.timezone)
        if parsed in kept and name in (None, kept[parsed]):
            click.echo(f"{parsed} is a holiday already: nothing changed")
            return
        done = "renamed" if parsed in kept else "added"
        _set_holidays(connection, settings, {**kept, parsed: name})
    click.echo(f"holiday {_holiday(schemas.Holiday(day=parsed, name=name))} {done}")


@holidays_group.command("remove")
@click.argument("day")
@click.pass_obj
def holidays_remove(settings: Settings, day: str) -> None:
    """Make DAY (YYYY-MM-DD) a working day again, as the week has it."""
    try:
        parsed, _ = hours.holiday_of(day, None)
    except SettingRefused as error:
        raise click.BadParameter(str(error), param_hint="DAY") from None
    with _changing(settings, working_hours, holiday_rows) as connection:
        kept = _holidays(connection, settings.timezone)
        if parsed not in kept:
            raise click.ClickException(
                f"{parsed} is not a holiday: cdp reports holidays list shows those there are"
            )
        del kept[parsed]
        _set_holidays(connection, settings, kept)
    click.echo(f"holiday {parsed} removed")


def _set_holidays(
    connection: Connection, settings: Settings, days: Mapping[date, str | None]
) -> None:
    """Write `days` as the holidays, the week as it is."""
    week = hours.schedule(connection).week
    try:
        hours.set_hours(connection, week, days, actor=actor(), timezone=settings.timezone)
    except SettingRefused as error:
        raise click.ClickException(str(error)) from None


# -- reply targets ---------------------------------------------------------------------


def _duration(
    _context: click.Context, parameter: click.Parameter, value: str | None
) -> float | str | None:
    """An option's duration (`90s`, `5m`, `1h30m`, `2h`, `300`) as seconds; `none` as is."""
    if value is None:
        return None
    given = value.strip().lower()
    if given == NO_TARGET:
        return NO_TARGET
    seconds = duration_seconds(given)
    if seconds is None:
        raise click.BadParameter(
            f"{value!r} is not a duration: write 90s, 5m, 1h30m, 2h or seconds (300), "
            f"or {NO_TARGET} for no target",
            param=parameter,
        )
    if round(seconds * 1000) < 1:  # kept in whole milliseconds
        raise click.BadParameter(
            f"{value!r}: a target is 1 ms at least ({NO_TARGET} for no target)", param=parameter
        )
    return seconds


def duration_seconds(given: str) -> float | None:
    """The seconds of `90s`, `5m`, `1h30m`, `2h`, `300` or `1.5`; None if it is none of them."""
    given = given.strip().lower()
    if _SECONDS.fullmatch(given):
        return float(given)
    found = _DURATION.fullmatch(given)
    if not given or found is None:
        return None
    h, m, s = found.groups()
    return int(h or 0) * 3600 + int(m or 0) * 60 + float(s or 0)


def duration_text(seconds: float | None) -> str:
    """Seconds as the shortest of `1h30m`, `5m`, `90s` → `1m30s`; `none` for None."""
    if seconds is None:
        return NO_TARGET
    ms = round(seconds * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    parts = [f"{h}h"] * bool(h) + [f"{m}m"] * bool(m)
    if rest or not parts:
        parts.append(f"{rest / 1000:g}s")
    return "".join(parts)


@reports.group("targets")
def targets_group() -> None:
    """Each team's reply targets: its first reply of each turn, and each next reply."""


@targets_group.command("show")
@click.pass_obj
def targets_show(settings: Settings) -> None:
    """Print every team's targets, one team a line."""
    with engine_for(settings, existing=True).connect() as connection:
        found = hours.targets(connection)
    for item in found.values():
        click.echo(_targets(item))
    if not found:
        click.echo("no reply targets: set a team's with cdp reports targets set TEAM_ID --first 5m")


@targets_group.command("set", epilog="Example: cdp reports targets set 12 --first 5m --next 15m")
@click.argument("team_id", type=click.IntRange(0, INT64_MAX))
@click.option(
    "--first",
    metavar="DURATION",
    callback=_duration,
    help="The first-reply target of each of the team's turns.",
)
@click.option(
    "--next", "next_", metavar="DURATION", callback=_duration, help="The target of each next reply."
)
@click.pass_obj
def targets_set(
    settings: Settings, team_id: int, first: float | str | None, next_: float | str | None
) -> None:
    """Set a team's reply targets: a duration (90s, 5m, 1h30m, 2h, or seconds), of working
    time when working hours are set. One not given stays as it is; `none` removes it."""
    if first is None and next_ is None:
        raise click.UsageError(
            "give --first, --next or both (cdp reports targets remove TEAM_ID removes them)"
        )
    with _changing(settings, reply_targets) as connection:
        before = hours.targets(connection).get(team_id)
        wanted = (
            _target(first, None if before is None else before.first_reply_seconds),
            _target(next_, None if before is None else before.next_reply_seconds),
        )
        if before is None and wanted == (None, None):
            click.echo(f"team {team_id}: no targets (nothing changed)")
            return
        try:
            after = hours.set_targets(connection, team_id, *wanted, actor=actor())
        except SettingRefused as error:
            raise click.BadParameter(str(error), param_hint="--first or --next") from None
    click.echo(_targets(after) if after else f"team {team_id}: no targets")


def _target(given: float | str | None, before: float | None) -> float | None:
    if given is None:
        return before
    return None if given == NO_TARGET else float(given)


@targets_group.command("remove")
@click.argument("team_id", type=click.IntRange(0, INT64_MAX))
@click.pass_obj
def targets_remove(settings: Settings, team_id: int) -> None:
    """Remove a team's reply targets: its waits are measured against none."""
    with _changing(settings, reply_targets) as connection:
        if team_id not in hours.targets(connection):
            raise click.ClickException(
                f"team {team_id} has no reply targets: cdp reports targets show lists those set"
            )
        hours.set_targets(connection, team_id, None, None, actor=actor())
    click.echo(f"team {team_id}: targets removed")


def _targets(item: schemas.Targets) -> str:
    return (
        f"team {item.team_id}: first {duration_text(item.first_reply_seconds)}, "
        f"next {duration_text(item.next_reply_seconds)}"
    )


# -- who changed what ------------------------------------------------------------------


@reports.command("changes")
@click.option(
    "--limit",
    default=20,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="How many of the latest changes.",
)
@click.pass_obj
def changes(settings: Settings, limit: int) -> None:
    """Print the latest changes of working hours, holidays and targets, newest first: when
    (UTC), who, and what changed."""
    with engine_for(settings, existing=True).connect() as connection:
        found = hours.changes(connection, limit)
    for change in found:
        click.echo(f"{iso(change.at)}  {change.actor}  {what_changed(change)}")
    if not found:
        click.echo("no changes: working hours, holidays and targets were never set")


def what_changed(change: schemas.SettingChange) -> str:
    """A change in words: each weekday, holiday or target that differs."""
    if change.setting == "working_hours":
        return "working hours: " + _week_changed(change.before, change.after)
    if change.setting == "holidays":
        return "holidays: " + _days_changed(change.before, change.after)
    if change.setting == "targets":
        return "targets: " + _targets_changed(change.before, change.after)
    return change.setting


def _week_changed(before: object, after: object) -> str:
    old_week, new_week = _week(before), _week(after)
    said = []
    for name in WEEKDAYS:
        old = ",".join(old_week.get(name, ())) or CLOSED
        new = ",".join(new_week.get(name, ())) or CLOSED
        if old != new:
            said.append(f"{name} {old} -> {new}")
    return "; ".join(said) or "set again, unchanged"


def _days_changed(before: object, after: object) -> str:
    old_days, new_days = _days(before), _days(after)
    said = []
    for day in sorted(old_days.keys() | new_days.keys()):
        if day not in new_days:
            said.append(f"{day} removed")
        elif day not in old_days:
            said.append(f"{' '.join(filter(None, (day, new_days[day])))} added")
        elif old_days[day] != new_days[day]:
            said.append(f"{day} renamed {_name(old_days[day])} -> {_name(new_days[day])}")
    return "; ".join(said) or "set again, unchanged"


def _name(name: str | None) -> str:
    return "(no name)" if name is None else repr(name)


def _week(setting: object) -> dict[str, list[str]]:
    if not isinstance(setting, dict):
        return {}
    return {str(name): [str(span) for span in spans or ()] for name, spans in setting.items()}


def _days(setting: object) -> dict[str, str | None]:
    if not isinstance(setting, list):
        return {}
    return {str(day.get("day")): day.get("name") for day in setting if isinstance(day, dict)}


def _targets_changed(before: object, after: object) -> str:
    old, new = _target_of(before), _target_of(after)
    team = (new or old or {}).get("team_id", "?")
    if _none(old) and _none(new):
        return f"team {team}: none before, none after"
    if _none(old):
        return f"team {team} set: first {_seconds(new, 'first')}, next {_seconds(new, 'next')}"
    if _none(new):
        return (
            f"team {team} removed (were first {_seconds(old, 'first')}, "
            f"next {_seconds(old, 'next')})"
        )
    said = [
        f"{kind} {_seconds(old, kind)} -> {_seconds(new, kind)}"
        for kind in ("first", "next")
        if _seconds(old, kind) != _seconds(new, kind)
    ]
    return f"team {team} " + (", ".join(said) or "set again, unchanged")


def _none(setting: Mapping[str, object] | None) -> bool:
    """No target of either kind."""
    return setting is None or all(
        setting.get(f"{kind}_reply_seconds") is None for kind in ("first", "next")
    )


def _target_of(setting: object) -> dict[str, object] | None:
    return (
        {str(key): value for key, value in setting.items()} if isinstance(setting, dict) else None
    )


def _seconds(setting: Mapping[str, object] | None, kind: str) -> str:
    value = None if setting is None else setting.get(f"{kind}_reply_seconds")
    return duration_text(float(value)) if isinstance(value, int | float) else NO_TARGET
