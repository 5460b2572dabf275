"""Reports over HTTP: trends as JSON or CSV, and the working hours and reply targets an
admin sets."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Final, Literal

from litestar import Controller, Request, get, put
from litestar.di import NamedDependency
from litestar.exceptions import ValidationException
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.params import Body, FromQuery, PathParameter, QueryParameter
from litestar.response import Stream
from litestar.status_codes import HTTP_409_CONFLICT

from cdp.access import auth
from cdp.http.csv import BOM, csv_line
from cdp.http.params import After, Limit
from cdp.http.problems import problem
from cdp.http.schemas import Page
from cdp.log.webhook import INT64_MAX
from cdp.reports import hours, queries, schemas
from cdp.reports.calendar import Calendar, Group
from cdp.reports.hours import SettingRefused
from cdp.reports.queries import Question, ReportRefused, Scope
from cdp.runtime.service import Service
from cdp.times import milliseconds

TeamId = Annotated[int, PathParameter(ge=0, le=INT64_MAX)]
LocalMoment = Annotated[
    str | None,
    QueryParameter(
        description=(
            "A local day (`2026-11-01`: its first instant in CDP_TIMEZONE), a local time "
            "(`2026-11-01T09:00`), or a time with its offset (`2026-11-01T09:00:00+03:00`). "
            "Taken to the start of the hour, day, week or month it falls in."
        )
    ),
]
DEFAULT_DAYS: Final = 30


def _refuse(name: str, message: str) -> ValidationException:
    return ValidationException(message, extra=[{"key": name, "message": message}])


def local_moment(name: str, value: str, calendar: Calendar) -> int:
    text = value.strip()
    try:
        parsed = (
            datetime.combine(date.fromisoformat(text), datetime.min.time())
            if len(text) == 10
            else datetime.fromisoformat(text)
        )
    except ValueError:
        raise _refuse(
            name, f"must be a day (YYYY-MM-DD) or a time (ISO 8601), got {value!r}"
        ) from None
    if not EARLIEST <= parsed.date() <= LATEST:
        raise _refuse(name, f"must lie between {EARLIEST} and {LATEST}")
    if len(text) == 10:
        return calendar.midnight(parsed.date())
    if parsed.tzinfo is None:
        return calendar.instant(parsed.replace(tzinfo=calendar.zone))
    return milliseconds(parsed)


# The years a report's period may lie in.
EARLIEST: Final = date(1970, 1, 2)
LATEST: Final = date(2199, 12, 31)


def period_of(
    since: str | None, until: str | None, calendar: Calendar, now: int
) -> tuple[int, int]:
    """The period asked for; by default the 30 local days up to the end of today."""
    end = (
        local_moment("until", until, calendar)
        if until is not None
        else calendar.midnight(calendar.day(now) + timedelta(days=1))
    )
    start = (
        local_moment("since", since, calendar)
        if since is not None
        else calendar.midnight(calendar.day(end - 1) - timedelta(days=DEFAULT_DAYS - 1))
    )
    for name, at in (("since", start), ("until", end)):
        if not calendar.midnight(EARLIEST) <= at <= calendar.midnight(LATEST):
            raise _refuse(name, f"must lie between {EARLIEST} and {LATEST}")
    if start >= end:
        raise _refuse("since", f"since ({since}) must come before until ({until})")
    return start, end


CSV_COLUMNS: Final = ("period", "start", "count", "median_seconds", "p90_seconds", "unanswered")


def trend_csv(trend: schemas.Trend) -> list[str]:
    """The report's lines as CSV: each point of the period (and of the one before)."""
    lines = [BOM + csv_line(CSV_COLUMNS)]
    for name, series in (("current", trend.current), ("previous", trend.previous)):
        if series is None:
            continue
        for point in series.points:
            cells = [
                name,
                point.start.isoformat(),
                str(point.count),
                "" if point.median_seconds is None else str(point.median_seconds),
                "" if point.p90_seconds is None else str(point.p90_seconds),
                "" if point.unanswered is None else str(point.unanswered),
            ]
            lines.append(csv_line(cells))
    return lines


@dataclass
class CsvToo(Operation):
    """An operation whose `format=csv` answers the same rows as a CSV file: its 200 says
    so beside the JSON."""

    def __post_init__(self) -> None:
        answered = (self.responses or {}).get("200")
        if isinstance(answered, OpenAPIResponse):
            answered.content = {
                **(answered.content or {}),
                "text/csv": OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.STRING,
                        description=(
                            "With format=csv: the same rows, one a line, after a header "
                            "line; UTF-8 with a byte-order mark"
                        ),
                    )
                ),
            }


class ReportController(Controller):
    path = "/reports"
    tags = ["reports"]

    @get("/trends", summary="A metric over time", guards=[auth.reader], operation_class=CsvToo)
    async def trends(
        self,
        request: Request,  # type: ignore[type-arg]
        service: NamedDependency[Service],
        metric: FromQuery[schemas.Metric],
        group: FromQuery[Group] = "day",
        since: LocalMoment = None,
        until: LocalMoment = None,
        team: Annotated[int | None, QueryParameter(ge=0, le=INT64_MAX)] = None,
        operator: Annotated[str | None, QueryParameter(max_length=200)] = None,
        source: Annotated[str | None, QueryParameter(max_length=64)] = None,
        platform: Annotated[str | None, QueryParameter(max_length=100)] = None,
        compare: FromQuery[Literal["previous"] | None] = None,
        business_hours: FromQuery[bool] = False,
        format: FromQuery[Literal["json", "csv"]] = "json",
    ) -> schemas.Trend:
        """`metric` as a series by `group` (hour, day, ISO week from Monday, month) in
        CDP_TIMEZONE, over the period at or after `since` and before `until` (by default
        the last 30 days, today included), taken to whole units; for one `team`,
        `operator`, `source` or `platform` (messenger), or the whole store. With
        `compare=previous`, the period just before it, as long, beside it. With
        `business_hours`, waits count only working time (see PUT
        /reports/business-hours). `format=csv`: the same points as CSV.

        The metrics, exactly as counted (see docs/reports.md): `sessions_opened`,
        `customer_messages`, `operator_replies`, `handoffs_in`, `handoffs_out` count what
        happened in each unit; `first_response` measures each turn's wait for its first
        reply (a turn begins at a session's opening or a handoff to the team),
        `reply_time` each wait from a customer message that opens the session's
        conversation or follows an operator reply to the next operator reply of the
        session, `session_duration` each ended session from its opening to its last
        event: each counted in the unit it began in, with the median and 90th percentile
        (interpolated) of those answered and how many are not (yet)."""
        calendar = Calendar(service.settings.zone())
        clock = service.clock()
        start, end = period_of(since, until, calendar, clock.now)
        try:
            scope = Scope.of(team=team, operator=operator, source=source, platform=platform)
            question = Question(
                metric, group, start, end, scope, business_hours, compare == "previous"
            )
            found = await service.reads.query(
                queries.trend,
                question,
                calendar,
                idle_ms=clock.idle_timeout_ms,
                now=clock.now,
            )
        except ReportRefused as error:
            if error.conflict:
                return problem(request, HTTP_409_CONFLICT, str(error))  # type: ignore[return-value]
            raise _refuse(_parameter(str(error)), str(error)) from None
        if format == "csv":
            return _csv(  # type: ignore[return-value]
                trend_csv(found), f"{metric}-{group}-{calendar.day(start)}-{calendar.day(end - 1)}"
            )
        return found

    @get("/sla", summary="Reply targets met and breached", guards=[auth.reader])
    async def sla(
        self,
        service: NamedDependency[Service],
        group: FromQuery[Group] = "day",
        since: LocalMoment = None,
        until: LocalMoment = None,
        team: Annotated[int | None, QueryParameter(ge=0, le=INT64_MAX)] = None,
    ) -> schemas.Sla:
        """The waits with a target (PUT /reports/targets/{team_id}) begun in each unit of
        the period, for `team` or every team with targets, by their state as of now:
        answered within the target, breached (answered late, or ended without a reply
        after it), still open within it, or still open past it. Measured in working time
        when working hours are set."""
        calendar = Calendar(service.settings.zone())
        clock = service.clock()
        start, end = period_of(since, until, calendar, clock.now)
        try:
            return await service.reads.query(
                queries.sla,
                group,
                start,
                end,
                team,
                calendar,
                idle_ms=clock.idle_timeout_ms,
                now=clock.now,
            )
        except ReportRefused as error:
            raise _refuse("group", str(error)) from None

    @get(
        "/breaches",
        summary="Waits that passed their target",
        guards=[auth.reader],
        operation_class=CsvToo,
    )
    async def breaches(
        self,
        service: NamedDependency[Service],
        since: LocalMoment = None,
        until: LocalMoment = None,
        team: Annotated[int | None, QueryParameter(ge=0, le=INT64_MAX)] = None,
        format: FromQuery[Literal["json", "csv"]] = "json",
        after: After = None,
        limit: Limit = 100,
    ) -> Page[schemas.Breach]:
        """The waits begun in the period (by default the last 30 days) that passed their
        team's target: the chat, team, kind of target, when it began, the reply (and
        whose) if one came, how long it was and the target, and whether it is still
        open. In the order they began, a page at a time (`after=<next>` for the next);
        `format=csv` as a CSV file of every one (`after` and `limit` do not apply)."""
        calendar = Calendar(service.settings.zone())
        clock = service.clock()
        start, end = period_of(since, until, calendar, clock.now)
        every = format == "csv"
        found = await service.reads.query(
            queries.breaches,
            start,
            end,
            team,
            calendar,
            idle_ms=clock.idle_timeout_ms,
            now=clock.now,
            limit=None if every else limit,
            after=None if every else after,
        )
        if every:
            name = f"breaches-{calendar.day(start)}-{calendar.day(end - 1)}"
            return _csv(breaches_csv(found.items), name)  # type: ignore[return-value]
        return Page[schemas.Breach](items=found.items, next=found.next)

    @get("/heatmap", summary="Traffic by weekday and hour", guards=[auth.reader])
    async def heatmap(
        self,
        service: NamedDependency[Service],
        metric: FromQuery[Literal["sessions_opened", "customer_messages"]] = "customer_messages",
        since: LocalMoment = None,
        until: LocalMoment = None,
        team: Annotated[int | None, QueryParameter(ge=0, le=INT64_MAX)] = None,
        source: Annotated[str | None, QueryParameter(max_length=64)] = None,
        platform: Annotated[str | None, QueryParameter(max_length=100)] = None,
    ) -> schemas.Heatmap:
        """How many sessions opened or customer messages came in each local hour of each
        weekday (Monday first) over the period, for a scope or the store."""
        calendar = Calendar(service.settings.zone())
        start, end = period_of(since, until, calendar, service.clock().now)
        try:
            scope = Scope.of(team=team, source=source, platform=platform)
        except ReportRefused as error:
            raise _refuse("team", str(error)) from None
        return await service.reads.query(queries.heatmap, metric, start, end, scope, calendar)

    @get("/leaderboard", summary="A team's operators side by side", guards=[auth.reader])
    async def leaderboard(
        self,
        service: NamedDependency[Service],
        team: Annotated[int, QueryParameter(ge=0, le=INT64_MAX)],
        since: LocalMoment = None,
        until: LocalMoment = None,
    ) -> schemas.Leaderboard:
        """Each operator who replied in the team's chats in the period: sessions they
        replied in, their replies, the median of the first responses and of the reply
        times their replies ended, and their late replies against the team's targets.
        Most replies first."""
        calendar = Calendar(service.settings.zone())
        clock = service.clock()
        start, end = period_of(since, until, calendar, clock.now)
        return await service.reads.query(
            queries.leaderboard,
            team,
            start,
            end,
            calendar,
            idle_ms=clock.idle_timeout_ms,
            now=clock.now,
        )

    @get("/waiting", summary="Who is waiting for a reply now", guards=[auth.reader])
    async def waiting(
        self,
        service: NamedDependency[Service],
        team: Annotated[int | None, QueryParameter(ge=0, le=INT64_MAX)] = None,
    ) -> schemas.Waiting:
        """Every open session whose latest customer message has no operator reply after
        it (of `team`, or every team), longest wait first, with the team's target state;
        the count per team; and when the answer will next change with time alone
        (`changes_at`): a session going idle, a wait passing 80% or all of its target."""
        calendar = Calendar(service.settings.zone())
        clock = service.clock()
        return await service.reads.query(
            queries.waiting, team, calendar, idle_ms=clock.idle_timeout_ms, now=clock.now
        )

    @get("/business-hours", summary="Working hours and holidays", guards=[auth.reader])
    async def business_hours(self, service: NamedDependency[Service]) -> schemas.WorkingHours:
        """The working week and holidays that `business_hours` counts, in CDP_TIMEZONE."""
        return await service.reads.query(hours.hours, service.settings.timezone)

    @put("/business-hours", summary="Set working hours and holidays", guards=[auth.admin])
    async def set_business_hours(
        self,
        request: Request,  # type: ignore[type-arg]
        service: NamedDependency[Service],
        data: Annotated[schemas.NewWorkingHours, Body()],
    ) -> schemas.WorkingHours:
        """Replace the working week and the holidays. Every report answers by them from
        the next request on: nothing is rebuilt. The change is recorded with the token's
        name (GET /reports/changes)."""
        try:
            week = hours.week_of(data.week)
        except SettingRefused as error:
            raise _refuse("week", str(error)) from None
        days = {holiday.day: holiday.name for holiday in data.holidays}
        actor = await _actor(request)

        def write() -> schemas.WorkingHours:
            with hours.changing(service.engine, *hours.HOURS_TABLES) as connection:
                return hours.set_hours(
                    connection, week, days, actor=actor, timezone=service.settings.timezone
                )

        try:
            return await service.rebuilds.run(write)
        except SettingRefused as error:
            raise _refuse("holidays", str(error)) from None

    @get("/targets", summary="Each team's reply targets", guards=[auth.reader])
    async def targets(self, service: NamedDependency[Service]) -> list[schemas.Targets]:
        """Every team's first-reply and next-reply targets, by team id."""
        found = await service.reads.query(hours.targets)
        return list(found.values())

    @put("/targets/{team_id:str}", summary="Set a team's reply targets", guards=[auth.admin])
    async def set_targets(
        self,
        request: Request,  # type: ignore[type-arg]
        team_id: TeamId,
        service: NamedDependency[Service],
        data: Annotated[schemas.NewTargets, Body()],
    ) -> schemas.Targets | None:
        """Set the team's targets, in seconds (both null: remove them); recorded with the
        token's name."""
        actor = await _actor(request)

        def write() -> schemas.Targets | None:
            with hours.changing(service.engine, *hours.TARGETS_TABLES) as connection:
                return hours.set_targets(
                    connection,
                    team_id,
                    data.first_reply_seconds,
                    data.next_reply_seconds,
                    actor=actor,
                )

        try:
            return await service.rebuilds.run(write)
        except SettingRefused as error:
            raise _refuse("body", str(error)) from None

    @get("/changes", summary="Who changed the report settings", guards=[auth.reader])
    async def changes(self, service: NamedDependency[Service]) -> list[schemas.SettingChange]:
        """The latest 100 changes of working hours, holidays and targets, newest first."""
        return await service.reads.query(hours.changes)


def _parameter(message: str) -> str:
    """The parameter a refusal is about, as its words name it."""
    if "points" in message:
        return "group"
    if "one scope" in message:
        return "scope"
    for name in ("business_hours", "operator", "team", "metric"):
        if name in message:
            return name
    return "metric"


def _csv(lines: list[str], name: str) -> Stream:
    """A CSV answer from a handler documented as answering JSON (its schema is the JSON
    one's; `format=csv` gives the same rows as CSV): Litestar sends a Response returned
    as it is."""

    async def each() -> AsyncIterator[str]:
        for line in lines:
            yield line

    # The type in a header too: a handler that may also answer JSON would set that.
    headers = {
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{name}.csv"',
    }
    return Stream(each(), media_type="text/csv", headers=headers)


BREACH_COLUMNS: Final = (
    "kind",
    "chat_uuid",
    "session_number",
    "team_id",
    "team_name",
    "started_at",
    "replied_at",
    "operator_uuid",
    "wait_seconds",
    "target_seconds",
    "open",
)


def breaches_csv(found: list[schemas.Breach]) -> list[str]:
    lines = [BOM + csv_line(BREACH_COLUMNS)]
    for breach in found:
        row = breach.model_dump(mode="json")
        lines.append(csv_line(["" if row[c] is None else str(row[c]) for c in BREACH_COLUMNS]))
    return lines


async def _actor(request: Request) -> str:  # type: ignore[type-arg]
    """Who is changing a setting: the token's name ("open" in a store without tokens)."""
    name = await auth.gate(request).token_name(request)
    return name or "open"


ROUTES: Final = (ReportController,)  # see cdp.capabilities
