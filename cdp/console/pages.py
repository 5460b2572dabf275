"""The console's pages: each parses its request, reads one view (cdp.console.views) in a
worker thread, and renders it."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Final
from zoneinfo import ZoneInfo

from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import Body, FromPath, FromQuery, PathParameter, QueryParameter
from litestar.response import Redirect, Stream
from litestar.status_codes import HTTP_401_UNAUTHORIZED

from cdp.access import auth
from cdp.console import access, views
from cdp.console.forms import AnyRequest, Day, Days, TeamChoice
from cdp.console.forms import team as team_choice
from cdp.console.render import HEADERS, page
from cdp.console.reports import waiting_page
from cdp.http.csv import csv_line
from cdp.log.webhook import INT64_MAX
from cdp.paging import Listing
from cdp.projections import routes
from cdp.runtime.service import Service
from cdp.teams import queries
from cdp.teams.queries import Period
from cdp.teams.routes import TeamId

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]
# The team page's period when none is chosen: a week, up to the day of the team's latest
# activity (today, for a team at work).
DEFAULT_DAYS: Final = 7
AUDIT_PAGE: Final = 100
CSV_PAGE: Final = 1000
# The largest form the console takes: its forms hold a token, a search or a name.
FORM_BYTES: Final = 16 * 1024


class SignIn(Controller):
    path = access.PATH
    include_in_schema = False

    @get("/sign-in")
    async def form(self, request: AnyRequest) -> Response[str] | Redirect:
        """The form; the start page for a browser signed in already, and a word of
        explanation for one whose token was revoked."""
        expired = access.TOKEN_COOKIE in request.cookies
        plain = not access.keeps_cookies(request)
        if expired:
            try:
                await access.signed_in(request, "read")
            except access.SignInNeeded:
                answer = await page(request, "sign_in.html", expired=True, wrong=False, plain=plain)
                answer.cookies.append(access.signed_out())
                return answer
            return Redirect(f"{access.PATH}/", status_code=303)
        return await page(request, "sign_in.html", expired=False, wrong=False, plain=plain)

    @post("/sign-in", request_max_body_size=FORM_BYTES)
    async def sign_in(self, request: AnyRequest, data: Form) -> Response[str] | Redirect:
        """Check the token as the API would, and keep it in the console's cookie."""
        access.check_form(request, data)
        token = data.get("token", "").strip()
        try:
            await auth.gate(request).caller(request, "read", token or None, "wrong token")
        except HTTPException as error:
            if error.status_code != HTTP_401_UNAUTHORIZED:
                raise
            plain = not access.keeps_cookies(request)
            return await page(
                request, "sign_in.html", status_code=401, expired=False, wrong=True, plain=plain
            )
        return Redirect(f"{access.PATH}/", cookies=[access.token_cookie(token)], status_code=303)

    @post("/sign-out", request_max_body_size=FORM_BYTES)
    async def sign_out(self, request: AnyRequest, data: Form) -> Redirect:
        access.check_form(request, data)
        return Redirect(f"{access.PATH}/sign-in", cookies=[access.signed_out()], status_code=303)


class Pages(Controller):
    path = access.PATH
    guards = [access.reader]
    include_in_schema = False

    @get("/")
    async def start(
        self, request: AnyRequest, service: NamedDependency[Service], team: TeamChoice = None
    ) -> Response[str]:
        """Who is waiting for a reply now, following the log; the search beside it."""
        return await waiting_page(request, service, team_choice(team, "team"), start=True)

    @get("/search")
    async def search_form(self, request: AnyRequest) -> Response[str]:
        return await page(request, "search.html", found=None)

    @post("/search", status_code=200, request_max_body_size=FORM_BYTES)
    async def search(
        self, request: AnyRequest, data: Form, service: NamedDependency[Service]
    ) -> Response[str]:
        """Posted, not asked in the URL: a phone number or a name is personal data, and
        URLs end up in logs and histories."""
        return await _search(request, data, service)

    @post("/", status_code=200, request_max_body_size=FORM_BYTES)
    async def search_here(
        self, request: AnyRequest, data: Form, service: NamedDependency[Service]
    ) -> Response[str]:
        """A search posted where the start page held it before it listed who is waiting."""
        return await _search(request, data, service)

    @get("/profiles/{uuid:str}")
    async def profile(
        self,
        request: AnyRequest,
        uuid: FromPath[str],
        service: NamedDependency[Service],
        after: FromQuery[str | None] = None,
    ) -> Response[str]:
        """The profile and the first page of its chats; asked by the page itself for the
        next one (HX-Request), that page alone."""
        found = await service.reads.query(
            views.profile, service.keystore, uuid, service.clock(), after
        )
        if found is None:
            raise NotFoundException(f"no profile {uuid!r}")
        fragment = request.headers.get("hx-request") == "true"
        return await page(request, "profile_chats.html" if fragment else "profile.html", view=found)

    @get("/chats/{uuid:str}")
    async def chat(
        self,
        request: AnyRequest,
        uuid: FromPath[str],
        service: NamedDependency[Service],
        after: FromQuery[str | None] = None,
    ) -> Response[str]:
        """The chat and the first page of its timeline; asked by the page itself for the
        next one (HX-Request), that page alone."""
        found = await service.reads.query(
            views.chat, service.keystore, uuid, service.clock(), after
        )
        if found is None:
            raise NotFoundException(f"no chat {uuid!r}")
        fragment = request.headers.get("hx-request") == "true"
        return await page(request, "timeline.html" if fragment else "chat.html", view=found)

    @get("/teams")
    async def teams(self, request: AnyRequest, service: NamedDependency[Service]) -> Response[str]:
        found = await service.reads.query(queries.known_teams)
        return await page(request, "teams.html", teams=found)

    @get("/teams/{team_id:str}")
    async def team(
        self,
        request: AnyRequest,
        team_id: TeamId,
        service: NamedDependency[Service],
        since: Day = None,
        until: Day = None,
        source: FromQuery[str | None] = None,
        after: FromQuery[str | None] = None,
    ) -> Response[str]:
        """A team's figures for the days chosen; with none, for the week up to its latest
        activity: a store whose webhooks stopped (or were imported) shows them, not zeros."""
        zone = service.settings.zone()
        days = Days.read(since, until)
        chosen = None
        if days == Days(None, None):
            latest = await service.reads.query(queries.last_seen, team_id, source)
            if latest is None:
                raise NotFoundException(f"no team {team_id}")
            today = datetime.now(zone).date()
            chosen = DefaultDays.of(latest, today, zone)
            days = chosen.days
        period = Period(*days.bounds(zone), source)
        found = await service.reads.query(
            views.team, service.keystore, team_id, period, service.clock(), after
        )
        if found is None:
            raise NotFoundException(f"no team {team_id}")
        return await page(
            request,
            "team.html",
            view=found,
            days=days,
            chosen=chosen,
            week=DEFAULT_DAYS,
            source=source,
        )

    @get("/handoffs")
    async def handoffs(
        self,
        request: AnyRequest,
        service: NamedDependency[Service],
        team_id: TeamChoice = None,
        since: Day = None,
        until: Day = None,
        after: FromQuery[str | None] = None,
    ) -> Response[str]:
        team, days = team_choice(team_id), Days.read(since, until)
        start, end = days.bounds(service.settings.zone())
        found = await service.reads.query(
            views.audit, service.keystore, Listing(after, AUDIT_PAGE), team, start, end
        )
        return await page(
            request,
            "handoffs.html",
            handoffs=found.handoffs,
            chat_names=found.chat_names,
            teams=found.teams,
            team_id=team,
            days=days,
        )

    @get("/handoffs.csv")
    async def handoffs_csv(
        self,
        request: AnyRequest,
        service: NamedDependency[Service],
        team_id: TeamChoice = None,
        since: Day = None,
        until: Day = None,
    ) -> Stream:
        """Every handoff the filter selects, in the page's columns, read page by page."""
        team, days, zone = team_choice(team_id), Days.read(since, until), service.settings.zone()
        start, end = days.bounds(zone)

        async def rows() -> AsyncIterator[str]:
            # The byte-order mark: how spreadsheets know the file is UTF-8.
            yield "\ufeff" + csv_line(views.CSV_COLUMNS)
            after = None
            while True:
                lines, after = await service.reads.query(
                    views.handoffs_csv, Listing(after, CSV_PAGE), team, start, end, zone
                )
                yield lines
                if after is None:
                    return

        team_part = [] if team is None else [f"team-{team}"]
        name = "-".join(["handoffs", *team_part, *filter(None, days.shown())])
        headers = HEADERS | {"Content-Disposition": f'attachment; filename="{name}.csv"'}
        return Stream(rows(), media_type="text/csv", headers=headers)

    @get("/log")
    async def log(
        self,
        request: AnyRequest,
        service: NamedDependency[Service],
        after: Annotated[int, QueryParameter(ge=0, le=INT64_MAX)] = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        event_type: FromQuery[str | None] = None,
        chat_uuid: FromQuery[str | None] = None,
        profile_uuid: FromQuery[str | None] = None,
        source: FromQuery[str | None] = None,
    ) -> Response[str]:
        filters = {
            "event_type": event_type or None,
            "chat_uuid": chat_uuid or None,
            "profile_uuid": profile_uuid or None,
            "source": source or None,
        }
        shown, next_after = await service.reads.query(
            views.log_page, service.keystore, after, limit, filters
        )
        return await page(
            request,
            "log.html",
            events=shown,
            next_after=next_after,
            after=after,
            limit=limit,
            filters={name: value or "" for name, value in filters.items()},
        )

    @get("/log/{position:str}")
    async def event(
        self,
        request: AnyRequest,
        position: Annotated[int, PathParameter(ge=1, le=INT64_MAX)],
        service: NamedDependency[Service],
    ) -> Response[str]:
        found = await service.reads.query(views.log_event, service.keystore, position)
        if found is None:
            raise NotFoundException(f"no event at position {position}")
        return await page(request, "event.html", shown=found)

    @get("/{rest:path}")
    async def unknown(self, rest: FromPath[str]) -> None:
        """Any other path under /console/: a page that says there is no such page."""
        raise NotFoundException(f"no console page {'/console' + rest[:200]!r}")


class Operations(Controller):
    path = f"{access.PATH}/operations"
    guards = [access.admin]
    include_in_schema = False

    @get("/")
    async def operations(
        self, request: AnyRequest, service: NamedDependency[Service]
    ) -> Response[str]:
        found = await service.reads.query(views.operations, service.projectors)
        fragment = request.headers.get("hx-request") == "true"
        name = "projections.html" if fragment else "operations.html"
        return await page(request, name, view=found, projectors=service.projectors)

    @post("/rebuild", request_max_body_size=FORM_BYTES)
    async def rebuild(
        self, request: AnyRequest, data: Form, service: NamedDependency[Service]
    ) -> Redirect:
        """As POST /projections/rebuild, or /projections/{name}/rebuild; a build already
        running is a 409 that names it."""
        access.check_form(request, data)
        await routes.start_build(service, data.get("projection") or None)
        return Redirect(f"{access.PATH}/operations/", status_code=303)


async def _search(request: AnyRequest, data: dict[str, str], service: Service) -> Response[str]:
    access.check_form(request, data)
    text = data.get("q", "")[:1000]
    found = await service.reads.query(
        views.search, service.keystore, text, service.settings.phone_region, service.clock()
    )
    return await page(request, "search.html", found=found)


@dataclass(frozen=True)
class DefaultDays:
    """The team page's days when none are chosen: DEFAULT_DAYS up to the day of the team's
    latest activity; and, when that is not today, the same many days up to today."""

    days: Days
    latest: datetime  # the team's latest activity
    recent: Days | None  # the last DEFAULT_DAYS, if they are other days

    @classmethod
    def of(cls, latest: datetime, today: date, zone: ZoneInfo) -> "DefaultDays":
        last = latest.astimezone(zone).date()
        week = timedelta(days=DEFAULT_DAYS - 1)
        recent = None if last == today else Days(today - week, today)
        return cls(Days(last - week, last), latest, recent)
