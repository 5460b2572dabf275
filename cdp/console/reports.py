"""The console's reports (docs/reports.md): trends, the heat map, a team's leaderboard,
breaches, and who is waiting now, each asked of cdp.reports.queries as the API asks it, and
drawn as a page; the trends and breaches also as the API's CSV.

Periods are days in CDP_TIMEZONE, both ends included, as on the console's other pages;
with none chosen, the API's default (the last 30 days, today included).

Who is waiting now follows the log: its page opens GET /console/reports/waiting/live, which
says `changed` whenever events are logged (read by the feed the API's event streams share,
see cdp.log.feed) and is signed in with the console's cookie, as the API's stream cannot be
from a browser (it takes a bearer token, which the page never sees).
"""

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Annotated, Any, Final, Literal, NoReturn
from urllib.parse import urlencode

from litestar import Controller, Response, get
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import FromQuery, HeaderParameter, QueryParameter
from litestar.response import Redirect, ServerSentEventMessage, Stream
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_409_CONFLICT
from sqlalchemy.exc import SQLAlchemyError

from cdp.console import access, charts, views
from cdp.console.forms import AnyRequest, Day, Days, TeamChoice
from cdp.console.forms import team as team_choice
from cdp.console.render import HEADERS, duration, number, page, words_of
from cdp.http import params
from cdp.http.problems import outage
from cdp.log import store
from cdp.log.feed import comment
from cdp.log.stream import Slot, Streams
from cdp.log.webhook import INT64_MAX
from cdp.reports import routes as report_routes
from cdp.reports import schemas
from cdp.reports.calendar import Calendar, Group
from cdp.reports.queries import (
    BY_OPERATOR,
    TIMES,
    WAITS,
    Question,
    ReportRefused,
    Scope,
)
from cdp.runtime.service import Overloaded, Service

PATH: Final = f"{access.PATH}/reports"
Text = Annotated[str | None, QueryParameter(max_length=200)]
HeatmapMetric = Literal["customer_messages", "sessions_opened"]
# How often a live list asks whether its cookie's token still holds, in seconds.
CHECK_EVERY: Final = 1.0
_RETRY: Final = ServerSentEventMessage(data=None, retry=2000).encode()
_KEEP_ALIVE: Final = comment("keep-alive")
_LIVE_HEADERS: Final = HEADERS | {"X-Accel-Buffering": "no"}


@dataclass(frozen=True)
class Asked:
    """What a report's form asked, as its fields hold it, to be shown again and linked."""

    days: Days
    team: int | None = None
    metric: str = ""
    group: str = "day"
    operator: str = ""
    source: str = ""
    platform: str = ""
    compare: bool = False
    business_hours: bool = False

    def query(self, **changed: Any) -> str:
        """The form's fields as a query (of this page, its CSV, or another report's)."""
        form = replace(self, **changed)
        since, until = form.days.shown()
        pairs = {
            "metric": form.metric,
            "group": form.group if form.metric else "",
            "since": since,
            "until": until,
            "team": "" if form.team is None else str(form.team),
            "operator": form.operator,
            "source": form.source,
            "platform": form.platform,
            "compare": "true" if form.compare else "",
            "business_hours": "true" if form.business_hours else "",
        }
        return urlencode({name: value for name, value in pairs.items() if value})


def period(days: Days, calendar: Calendar, now: int) -> tuple[int, int, Days]:
    """The period of days chosen (the API's default when none is), as the API takes it,
    and the days it covers."""
    if days.until == date.max:
        _refuse_field("until", f"must be a day before {date.max}")
    until = None if days.until is None else (days.until + timedelta(days=1)).isoformat()
    since = None if days.since is None else days.since.isoformat()
    try:
        start, end = report_routes.period_of(since, until, calendar, now)
        return start, end, Days(calendar.day(start), calendar.day(end - 1))
    except ValidationException:
        raise
    except (OverflowError, ValueError):  # a day whose midnight no instant holds
        _refuse_field("since", f"must be a day of the years 2 to 9998, got {days.since}")


def _refuse_field(name: str, message: str) -> NoReturn:
    raise ValidationException(message, extra=[{"key": name, "message": message}])


def _text(value: str | None) -> str:
    return (value or "").strip()


class Reports(Controller):
    path = PATH
    guards = [access.reader]
    include_in_schema = False

    @get("/")
    async def reports(self) -> Redirect:
        return Redirect(f"{PATH}/trends", status_code=303)

    @get("/trends")
    async def trends(
        self,
        request: AnyRequest,
        service: NamedDependency[Service],
        metric: FromQuery[schemas.Metric] = "first_response",
        group: FromQuery[Group] = "day",
        since: Day = None,
        until: Day = None,
        team: TeamChoice = None,
        operator: Text = None,
        source: Text = None,
        platform: Text = None,
        compare: FromQuery[bool] = False,
        business_hours: FromQuery[bool] = False,
    ) -> Response[str]:
        """A metric over time, drawn, with its points in a table below (GET /reports/trends)."""
        form, question, refused = self._question(
            service, metric, group, since, until, team, operator, source, platform
        )
        form = replace(form, compare=compare, business_hours=business_hours)
        if question is not None:
            question = replace(question, business_hours=business_hours, compare=compare)
        calendar, clock = Calendar(service.settings.zone()), service.clock()
        found = await service.reads.query(
            views.trend_page, None if refused else question, calendar, clock
        )
        refused = refused or found.refused
        status, said = _refusal(form, refused)
        chart = None
        if found.trend is not None:
            words = words_of(request)
            chart = charts.trend_chart(
                found.trend, lambda n: str(number(int(n))), lambda s: duration(s, words)
            )
        return await page(
            request,
            "trends.html",
            status_code=status,
            form=form,
            view=found,
            chart=chart,
            refused=said,
            refused_detail=str(refused) if refused is not None and said is None else "",
            metrics=_METRICS,
            groups=_GROUPS,
            times=TIMES,
            waits=WAITS,
            span=charts.span,
            point_label=charts.point_label,
            default_days=report_routes.DEFAULT_DAYS,
            chosen=since or until,
        )

    @get("/trends.csv")
    async def trends_csv(
        self,
        service: NamedDependency[Service],
        metric: FromQuery[schemas.Metric] = "first_response",
        group: FromQuery[Group] = "day",
        since: Day = None,
        until: Day = None,
        team: TeamChoice = None,
        operator: Text = None,
        source: Text = None,
        platform: Text = None,
        compare: FromQuery[bool] = False,
        business_hours: FromQuery[bool] = False,
    ) -> Stream:
        """The trend's points as GET /reports/trends?format=csv gives them."""
        _, question, refused = self._question(
            service, metric, group, since, until, team, operator, source, platform
        )
        if question is not None:
            question = replace(question, business_hours=business_hours, compare=compare)
        if question is None or refused is not None:
            _refuse(refused)
        calendar, clock = Calendar(service.settings.zone()), service.clock()
        try:
            found = await service.reads.query(views.trend, question, calendar, clock)
        except ReportRefused as error:
            _refuse(error)
        name = f"{metric}-{group}-{calendar.day(question.since)}-{calendar.day(question.until - 1)}"
        return _csv(report_routes.trend_csv(found), name)

    def _question(
        self,
        service: Service,
        metric: str,
        group: Group,
        since: str | None,
        until: str | None,
        team: str | None,
        operator: str | None,
        source: str | None,
        platform: str | None,
    ) -> tuple[Asked, Question | None, ReportRefused | None]:
        """The form as asked, and the API's question of it (or why there is none)."""
        calendar = Calendar(service.settings.zone())
        start, end, days = period(Days.read(since, until), calendar, service.clock().now)
        form = Asked(
            days,
            team_choice(team, "team"),
            metric,
            group,
            _text(operator),
            _text(source),
            _text(platform),
        )
        try:
            scope = Scope.of(
                team=form.team,
                operator=form.operator or None,
                source=form.source or None,
                platform=form.platform or None,
            )
        except ReportRefused as error:
            return form, None, error
        return form, Question(metric, group, start, end, scope), None

    @get("/heatmap")
    async def heatmap(
        self,
        request: AnyRequest,
        service: NamedDependency[Service],
        metric: FromQuery[HeatmapMetric] = "customer_messages",
        since: Day = None,
        until: Day = None,
        team: TeamChoice = None,
        source: Text = None,
        platform: Text = None,
    ) -> Response[str]:
        """Sessions opened or customer messages by local weekday and hour (GET
        /reports/heatmap), as a table of shaded cells with their numbers."""
        calendar, clock = Calendar(service.settings.zone()), service.clock()
        start, end, days = period(Days.read(since, until), calendar, clock.now)
        source, platform = _text(source), _text(platform)
        form = Asked(days, team_choice(team, "team"), metric, "", "", source, platform)
        try:
            scope = Scope.of(
                team=form.team, source=form.source or None, platform=form.platform or None
            )
        except ReportRefused as error:
            return await page(
                request,
                "heatmap.html",
                status_code=HTTP_400_BAD_REQUEST,
                form=form,
                view=None,
                choices=await service.reads.query(views.choices),
                refused="refused_scope",
                refused_detail=str(error),
                metrics=("customer_messages", "sessions_opened"),
            )
        found = await service.reads.query(views.heatmap, metric, start, end, scope, calendar)
        most = max((n for row in found.heatmap.cells for n in row), default=0)
        return await page(
            request,
            "heatmap.html",
            form=form,
            view=found.heatmap,
            choices=found.choices,
            refused=None,
            refused_detail="",
            metrics=("customer_messages", "sessions_opened"),
            levels=[[charts.level(n, most) for n in row] for row in found.heatmap.cells],
        )

    @get("/leaderboard")
    async def leaderboard(
        self,
        request: AnyRequest,
        service: NamedDependency[Service],
        team: TeamChoice = None,
        since: Day = None,
        until: Day = None,
    ) -> Response[str]:
        """A team's operators side by side (GET /reports/leaderboard); with no team chosen,
        the choice."""
        calendar, clock = Calendar(service.settings.zone()), service.clock()
        start, end, days = period(Days.read(since, until), calendar, clock.now)
        form = Asked(days, team_choice(team, "team"), "")
        found = await service.reads.query(views.leaderboard, form.team, start, end, calendar, clock)
        return await page(request, "leaderboard.html", form=form, view=found)

    @get("/breaches")
    async def breaches(
        self,
        request: AnyRequest,
        service: NamedDependency[Service],
        team: TeamChoice = None,
        since: Day = None,
        until: Day = None,
        after: FromQuery[str | None] = None,
    ) -> Response[str]:
        """The waits of the period that passed their target, a page at a time (GET
        /reports/breaches)."""
        calendar, clock = Calendar(service.settings.zone()), service.clock()
        start, end, days = period(Days.read(since, until), calendar, clock.now)
        form = Asked(days, team_choice(team, "team"), "")
        found = await service.reads.query(
            views.breaches, service.keystore, start, end, form.team, calendar, clock, after
        )
        return await page(
            request, "breaches.html", form=form, view=found, shown=views.BREACHES_SHOWN
        )

    @get("/breaches.csv")
    async def breaches_csv(
        self,
        service: NamedDependency[Service],
        team: TeamChoice = None,
        since: Day = None,
        until: Day = None,
    ) -> Stream:
        """The breaches as GET /reports/breaches?format=csv gives them."""
        calendar, clock = Calendar(service.settings.zone()), service.clock()
        start, end, _ = period(Days.read(since, until), calendar, clock.now)
        found = await service.reads.query(
            views.breaches_of, start, end, team_choice(team, "team"), calendar, clock
        )
        name = f"breaches-{calendar.day(start)}-{calendar.day(end - 1)}"
        return _csv(report_routes.breaches_csv(found), name)

    @get("/waiting")
    async def waiting(
        self, request: AnyRequest, service: NamedDependency[Service], team: TeamChoice = None
    ) -> Response[str]:
        """Who is waiting now (GET /reports/waiting); asked by the page itself (HX-Request)
        as it follows the log, the list alone."""
        return await waiting_page(request, service, team_choice(team, "team"), start=False)

    @get("/waiting/live", media_type="text/event-stream")
    async def live(
        self,
        request: AnyRequest,
        service: NamedDependency[Service],
        streams: NamedDependency[Streams],
        after: Annotated[int, QueryParameter(ge=0, le=INT64_MAX)] = 0,
        last_event_id: Annotated[str | None, HeaderParameter(name="Last-Event-ID")] = None,
    ) -> Stream:
        """Server-Sent Events: `changed` (its id and data the log's head) as soon as events
        after `after` (or Last-Event-ID) are logged, each time they are; a comment every
        CDP_STREAM_HEARTBEAT while there are none. It holds one of the event streams' places
        (CDP_MAX_STREAMS, and per token), and ends once the cookie's token is revoked."""
        resumed = params.position("Last-Event-ID", last_event_id)
        caller = access.caller(request)
        slot = streams.admit(None if caller is None else caller.name)
        changes = _changes(request, service, slot, after if resumed is None else resumed)
        return Stream(
            changes,
            media_type="text/event-stream",
            headers=_LIVE_HEADERS,
            background=BackgroundTask(slot.release),
        )


async def waiting_page(
    request: AnyRequest, service: Service, team: int | None, *, start: bool
) -> Response[str]:
    """Who is waiting now: the console's start page (`start`, with the search beside it), or
    the report's; the list alone when the page asks for it."""
    calendar, clock = Calendar(service.settings.zone()), service.clock()
    found = await service.reads.query(views.waiting, service.keystore, team, calendar, clock)
    fragment = request.headers.get("hx-request") == "true"
    return await page(
        request,
        "waiting_list.html" if fragment else "waiting.html",
        view=found,
        team_id=team,
        start=start,
        now=clock.now,
        changes_at=_ms(found.waiting.changes_at),
    )


def _ms(at: Any) -> int | None:
    return None if at is None else round(at.timestamp() * 1000)


async def _changes(
    request: AnyRequest, service: Service, slot: Slot, after: int
) -> AsyncIterator[bytes]:
    """`changed` once if the log is past `after` already, then each time the feed reads
    events; until the client leaves, its token is revoked or the server stops."""
    streams = slot.streams
    feed = streams.feed
    heartbeat = service.settings.stream_heartbeat.total_seconds()
    follower = None
    try:
        yield _RETRY
        try:
            head = await service.reads.query(store.head)
        except (Overloaded, SQLAlchemyError) as error:
            yield comment(f"{outage(error)}; connect again")
            return
        if head > after:
            yield _changed(head)
        # Word of every event after the head, as the feed reads it: the list cares that
        # there are some, not what they say, so none is opened for it.
        follower = feed.join((), head, None, slot.give_back, positions_only=True)
        spoke = checked = time.monotonic()
        while True:
            if follower.cut is not None:  # a client that does not read: it connects again
                yield _changed(follower.after)
                return
            if follower.failed is not None:
                yield comment(follower.failed)
                return
            if streams.closing:
                return
            if time.monotonic() - checked >= CHECK_EVERY:
                if not await access.still_signed_in(request):
                    return
                checked = time.monotonic()
            if follower.moved:
                follower.moved = False
                yield _changed(follower.after)
                spoke = time.monotonic()
                continue
            if time.monotonic() - spoke >= heartbeat:
                yield _KEEP_ALIVE
                spoke = time.monotonic()
            follower.ready.clear()
            due = min(spoke + heartbeat, checked + CHECK_EVERY) - time.monotonic()
            await _nap(follower.ready, due)
    finally:
        if follower is not None:
            feed.leave(follower)
        slot.give_back()


def _changed(head: int) -> bytes:
    return b"id: %d\r\nevent: changed\r\ndata: %d\r\n\r\n" % (head, head)


async def _nap(ring: asyncio.Event, seconds: float) -> None:
    if ring.is_set():
        return
    try:
        async with asyncio.timeout(max(seconds, 0.0)):
            await ring.wait()
    except TimeoutError:
        pass


# Each refusal said in the console's words, and its status as the API gives it.
def _refusal(form: Asked, refused: ReportRefused | None) -> tuple[int, str | None]:
    if refused is None:
        return 200, None
    if refused.conflict:
        return HTTP_409_CONFLICT, "refused_hours_not_set"
    scoped = [form.team is not None, bool(form.operator), bool(form.source), bool(form.platform)]
    if sum(scoped) > 1:
        return HTTP_400_BAD_REQUEST, "refused_scope"
    if form.business_hours and form.metric not in WAITS:
        return HTTP_400_BAD_REQUEST, "refused_hours_counts"
    if form.operator and form.metric not in BY_OPERATOR:
        return HTTP_400_BAD_REQUEST, "refused_operator"
    if "points" in str(refused):
        return HTTP_400_BAD_REQUEST, "refused_points"
    return HTTP_400_BAD_REQUEST, None


def _refuse(refused: ReportRefused | None) -> NoReturn:
    """A CSV of a refused trend: the error page, as the API refuses it."""
    message = str(refused)
    if refused is not None and refused.conflict:
        raise HTTPException(message, status_code=HTTP_409_CONFLICT)
    raise ValidationException(message)


def _csv(lines: list[str], name: str) -> Stream:
    async def each() -> AsyncIterator[str]:
        for line in lines:
            yield line

    headers = HEADERS | {"Content-Disposition": f'attachment; filename="{name}.csv"'}
    return Stream(each(), media_type="text/csv", headers=headers)


_METRICS: Final = (
    "first_response",
    "reply_time",
    "session_duration",
    "sessions_opened",
    "customer_messages",
    "operator_replies",
    "handoffs_in",
    "handoffs_out",
)
_GROUPS: Final = ("hour", "day", "week", "month")
