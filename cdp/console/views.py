"""What each console page shows, read in one worker thread from the API's own queries.

Anything a sender wrote is shown as they wrote it, but never trusted: message bodies are
parsed here, off the event loop, and cut short when huge or nested beyond reason; only
http(s) links become links.
"""

import json
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, func, select

from cdp.access import queries, schemas
from cdp.conversations import queries as conversations_queries
from cdp.conversations import schemas as conversations_schemas
from cdp.http import schemas as http_schemas
from cdp.http.csv import csv_line
from cdp.log import queries as log_queries
from cdp.log import schemas as log_schemas
from cdp.log import store
from cdp.log.webhook import identifier_problem
from cdp.paging import Clock, Listing
from cdp.privacy.keystore import Keystore
from cdp.profiles import queries as profiles_queries
from cdp.profiles import schemas as profiles_schemas
from cdp.profiles.phones import normalize
from cdp.projections import schemas as projections_schemas
from cdp.projections.builds import states
from cdp.projections.runner import Projector
from cdp.reports import hours, scopes
from cdp.reports import queries as reports_queries
from cdp.reports import schemas as reports_schemas
from cdp.reports.calendar import Calendar
from cdp.reports.queries import Question, ReportRefused, Scope
from cdp.reports.tables import report_counts
from cdp.teams import queries as teams_queries
from cdp.teams import schemas as teams_schemas
from cdp.teams.queries import Period
from cdp.times import iso

# How much of a message or a logged body a page shows; the log keeps the whole.
SHOWN_TEXT: Final = 4000
PARSED_MESSAGE: Final = 256 * 1024  # a message longer than this is not shown, only linked
SHOWN_BODY: Final = 64 * 1024
PRETTY_BODY: Final = 16 * 1024  # bodies up to this long are shown indented
TIMELINE_PAGE: Final = 50
SEARCH_LIMIT: Final = 20
# Chats a search result lists of each profile, and a profile's page shows at a time: a
# sender may name thousands under one profile.
CARD_CHATS: Final = 5
PROFILE_CHATS: Final = 20
LATEST_SESSIONS: Final = 5


@dataclass(frozen=True, slots=True)
class Found:
    """What a search found: profiles, and chats named by their uuid or owned by none."""

    text: str
    profiles: list[profiles_schemas.Profile]
    chats: list[conversations_schemas.Chat]
    more: bool


def search(
    connection: Connection, keystore: Keystore, text: str, region: str, clock: Clock
) -> Found:
    """Profiles and chats matching `text`: as a uuid, as a phone number in any spelling,
    and as the start of a customer's name."""
    text = text.strip()
    if not text:
        return Found(text, [], [], False)
    profiles: dict[str, profiles_schemas.Profile] = {}
    chats: list[conversations_schemas.Chat] = []
    if identifier_problem(text) is None:
        profiles |= {
            found.uuid: found
            for found in profiles_queries.profiles(
                connection, [text], CARD_CHATS, keystore=keystore
            )
        }
        chats += conversations_queries.chats_of(connection, [text], clock, keystore=keystore)
    number = normalize(text, region)
    listing = Listing(limit=SEARCH_LIMIT)
    by_phone = http_schemas.Page[profiles_schemas.Profile](items=[], next=None)
    if number is not None:
        by_phone = profiles_queries.profiles_by_phone(
            connection, number, listing, most=CARD_CHATS, keystore=keystore
        )
    by_name = profiles_queries.profiles_by_name(
        connection, text, listing, most=CARD_CHATS, keystore=keystore
    )
    for page in (by_phone, by_name):
        profiles |= {found.uuid: found for found in page.items}
    # One more than is shown: whether there are more.
    unowned = profiles_queries.unowned_chats(
        connection, clock, SEARCH_LIMIT + 1, phone=number, name=text, keystore=keystore
    )
    named = {chat.uuid for chat in chats}
    chats += [chat for chat in unowned[:SEARCH_LIMIT] if chat.uuid not in named]
    more = by_phone.next is not None or by_name.next is not None or len(unowned) > SEARCH_LIMIT
    return Found(text, list(profiles.values()), chats, more)


@dataclass(frozen=True, slots=True)
class ProfileChat:
    chat: conversations_schemas.Chat
    sessions: list[conversations_schemas.Session]
    operators: dict[int, list[conversations_schemas.Operator]]


@dataclass(frozen=True, slots=True)
class ProfilePage:
    profile: profiles_schemas.Profile
    chats: list[ProfileChat]
    team_names: dict[int, str | None]
    next: str | None  # where the next page of its chats starts, if there is one


def profile(
    connection: Connection,
    keystore: Keystore,
    uuid: str,
    clock: Clock,
    after: str | None = None,
) -> ProfilePage | None:
    """A customer, and a page of their chats (the first, or the one from `after`), in the
    API's order: each as it is now, with its latest sessions, the teams and the operators
    that handled them."""
    found = profiles_queries.profile(connection, uuid, PROFILE_CHATS, keystore=keystore)
    if found is None:
        return None
    shown, cursor = found.chats, found.chats_next
    if after is not None:
        listing = Listing(after, PROFILE_CHATS)
        page = profiles_queries.owned_chats(connection, uuid, listing, keystore=keystore)
        if page is None:
            return None
        shown, cursor = page.items, page.next
    uuids = [chat.uuid for chat in shown]
    latest = conversations_queries.latest_sessions(connection, uuids, clock, LATEST_SESSIONS)
    chats = [
        ProfileChat(
            chat,
            latest[chat.uuid],
            conversations_queries.session_operators(
                connection, chat.uuid, [session.number for session in latest[chat.uuid]]
            ),
        )
        for chat in conversations_queries.chats_of(connection, uuids, clock, keystore=keystore)
    ]
    ids = sorted({team for chat in chats for session in chat.sessions for team in session.teams})
    return ProfilePage(found, chats, teams_queries.team_names(connection, ids), cursor)


@dataclass(slots=True)
class Item:
    """One timeline item as the conversation shows it."""

    position: int
    at: datetime
    kind: str
    event_type: str
    team: conversations_schemas.Team | None
    operator: conversations_schemas.Operator | None
    message_uuid: str | None = None
    message_type: str | None = None
    text: str | None = None
    cut: bool = False
    link: str | None = None
    link_name: str | None = None
    failure: str | None = None  # a message_updated that says the delivery failed: why
    failed: str | None = None  # this message's delivery failed (seen on this page): why
    handoff: conversations_schemas.Handoff | None = None
    turn: conversations_schemas.Turn | None = (
        None  # the wait this item began (an opening, a handoff)
    )


@dataclass(slots=True)
class SessionGroup:
    number: int | None
    continued: bool
    items: list[Item] = field(default_factory=list)
    first_turn: conversations_schemas.Turn | None = None


@dataclass(frozen=True, slots=True)
class ChatPage:
    chat: conversations_schemas.Chat
    groups: list[SessionGroup]
    next: str | None
    after: str | None
    profile_names: list[str]  # the names its profile goes by: none if it has no profile


def chat(
    connection: Connection, keystore: Keystore, uuid: str, clock: Clock, after: str | None
) -> ChatPage | None:
    """A chat now, and a page of its timeline as a conversation: grouped by session, each
    turn's wait for a first reply, each handoff from team to team, failed deliveries."""
    found = conversations_queries.chat(connection, uuid, clock, keystore=keystore)
    listing = Listing(after, TIMELINE_PAGE)
    timeline = conversations_queries.chat_timeline(connection, uuid, listing, keystore=keystore)
    if found is None or timeline is None:
        return None
    items = [_item(entry) for entry in timeline.items]
    numbers = sorted({item.session_number for item in timeline.items if item.session_number})
    turns = conversations_queries.chat_turns(connection, uuid, numbers)
    by_position = {turn.position: turn for turn in turns}
    first_turns = {turn.session_number: turn for turn in turns if turn.ordinal == 1}
    handed = conversations_queries.handoffs_at(
        connection, [item.position for item in items if item.kind == "handoff"]
    )
    failures = {item.message_uuid: item.failure for item in items if item.failure}
    owner = []  # the profile's names, as its page shows them
    if found.profile_uuid is not None:
        owner = profiles_queries.profiles(connection, [found.profile_uuid], 1, keystore=keystore)
    groups: list[SessionGroup] = []
    for entry, item in zip(timeline.items, items, strict=True):
        item.turn = by_position.get(item.position)
        item.handoff = handed.get(item.position)
        if item.kind in ("message_in", "operator_reply") and item.message_uuid in failures:
            item.failed = failures[item.message_uuid]
        number = entry.session_number
        if not groups or groups[-1].number != number:
            continued = number is not None and not (
                item.kind == "session_opened" or (not groups and after is None)
            )
            groups.append(SessionGroup(number, continued, first_turn=first_turns.get(number or 0)))
        groups[-1].items.append(item)
    return ChatPage(found, groups, timeline.next, after, owner[0].names if owner else [])


def _item(entry: conversations_schemas.TimelineItem) -> Item:
    item = Item(
        position=entry.position,
        at=entry.occurred_at,
        kind=entry.kind,
        event_type=entry.event_type,
        team=entry.team,
        operator=entry.operator,
    )
    if entry.message is None:
        return item
    message = _parsed(entry.message.text)
    if not isinstance(message, dict):
        item.cut = message is None  # too large or too deep to show: the log has it
        return item
    item.message_uuid = _text(message.get("uuid"))
    item.message_type = _text(message.get("type"))
    text = _text(message.get("text") or message.get("caption"))
    if text is not None:
        item.text, item.cut = text[:SHOWN_TEXT], len(text) > SHOWN_TEXT
    url = _text(message.get("url") or message.get("file") or message.get("link"))
    if url is not None and url.lower().startswith(("https://", "http://")):
        item.link = url[:SHOWN_TEXT]
    item.link_name = _text(message.get("name") or message.get("file_name"))
    status = _text(message.get("status"))
    error = _text(message.get("error"))
    if entry.kind == "message_updated" and (
        error is not None or (status or "").lower() in ("error", "failed", "undelivered")
    ):
        item.failure = (error or status or "")[:SHOWN_TEXT]
    return item


def _parsed(text: str) -> Any:
    """A stored message, or None if it is too large or too deep to show (a page parses
    fifty)."""
    if len(text) > PARSED_MESSAGE:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True, slots=True)
class TeamPage:
    stats: teams_schemas.TeamStats
    chats: http_schemas.Page[conversations_schemas.Chat]


def team(
    connection: Connection,
    keystore: Keystore,
    team_id: int,
    period: Period,
    clock: Clock,
    after: str | None,
) -> TeamPage | None:
    """A team: its figures for `period`, and its chats now, most recently active first."""
    stats = teams_queries.team_stats(connection, team_id, period)
    if stats is None:
        return None
    listing = Listing(after, TIMELINE_PAGE)
    chats = conversations_queries.team_chats(
        connection, team_id, None, clock, listing, period.source, keystore=keystore
    )
    return TeamPage(stats, chats)


@dataclass(frozen=True, slots=True)
class Shown:
    """A logged event with its body pretty-printed, and cut short if huge."""

    event: log_schemas.Event
    body: str
    cut: int  # characters left out


def log_page(
    connection: Connection,
    keystore: Keystore,
    after: int,
    limit: int,
    filters: dict[str, str | None],
) -> tuple[list[Shown], int | None]:
    page = log_queries.events(connection, keystore, after=after, limit=limit, **filters)
    return [_shown(event) for event in page.items], page.next_after


def log_event(connection: Connection, keystore: Keystore, position: int) -> Shown | None:
    found = log_queries.event(connection, keystore, position)
    return None if found is None else _shown(found, SHOWN_BODY * 16)


def _shown(event: log_schemas.Event, limit: int = SHOWN_BODY) -> Shown:
    """The body indented if it is small (indenting a deep one can make it fifty times
    larger), else as it was received; cut to `limit` characters."""
    text = event.body.text
    if len(text) <= PRETTY_BODY:
        with suppress(ValueError, RecursionError):
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    return Shown(event, text[:limit], max(0, len(text) - limit))


@dataclass(frozen=True, slots=True)
class Operations:
    projections: list[projections_schemas.Projection]
    rejected: list[log_schemas.Refusal]
    sources: list[schemas.Source]


def operations(connection: Connection, projectors: Sequence[Projector]) -> Operations:
    """Each projection's state and build, the latest rejected deliveries, the sources."""
    return Operations(
        projections=states(connection, list(projectors)),
        rejected=log_queries.latest_rejected(connection, 20),
        sources=queries.sources(connection),
    )


@dataclass(frozen=True, slots=True)
class Audit:
    handoffs: http_schemas.Page[conversations_schemas.Handoff]
    chat_names: dict[str, str]  # the customer's name in each chat the page names, if known
    teams: list[teams_schemas.KnownTeam]  # every team, to choose among


def audit(
    connection: Connection,
    keystore: Keystore,
    listing: Listing,
    team_id: int | None,
    since: int | None,
    until: int | None,
) -> Audit:
    """A page of the handoff audit, with its chats' names (read at once), and every team."""
    page = conversations_queries.team_handoffs(connection, listing, team_id, since, until)
    names = conversations_queries.chat_names(
        connection, [handoff.chat_uuid for handoff in page.items], keystore=keystore
    )
    return Audit(page, names, teams_queries.known_teams(connection))


CSV_COLUMNS: Final = (
    "at",
    "at_utc",
    "chat_uuid",
    "session",
    "from_team_id",
    "from_team",
    "to_team_id",
    "to_team",
    "source",
    "position",
)


def handoffs_csv(
    connection: Connection,
    listing: Listing,
    team_id: int | None,
    since: int | None,
    until: int | None,
    zone: ZoneInfo,
) -> tuple[str, str | None]:
    """A page of the handoff audit as lines of CSV, and where the next page starts."""
    page = conversations_queries.team_handoffs(connection, listing, team_id, since, until)
    return "".join(csv_line(_csv_cells(handoff, zone)) for handoff in page.items), page.next


def _csv_cells(handoff: conversations_schemas.Handoff, zone: ZoneInfo) -> list[str]:
    return [
        handoff.at.astimezone(zone).isoformat(timespec="milliseconds"),
        iso(handoff.at),
        handoff.chat_uuid,
        str(handoff.session_number),
        str(handoff.from_team.id),
        handoff.from_team.name or "",
        str(handoff.to_team.id),
        handoff.to_team.name or "",
        handoff.source,
        str(handoff.position),
    ]


# -- reports (docs/reports.md), read from cdp.reports.queries as the API reads them ----------

# Messengers and sources a report's form offers, at most.
MOST_CHOICES: Final = 100
# Breaches a page lists; the CSV holds them all.
BREACHES_SHOWN: Final = 100  # a page, as the API's


@dataclass(frozen=True, slots=True)
class Choices:
    """What a report's form chooses among: every team, and the sources and messengers the
    reports have counted something under."""

    teams: list[teams_schemas.KnownTeam]
    sources: list[str]
    platforms: list[str]


def choices(connection: Connection) -> Choices:
    return Choices(
        teams_queries.known_teams(connection),
        _counted_under(connection, "source"),
        _counted_under(connection, "platform"),
    )


def _counted_under(connection: Connection, kind: scopes.Kind) -> list[str]:
    """The values of the scopes of `kind` the reports keep counts under, in order: each
    found by one seek of report_counts' key (`scope > the one before`), not a scan of it.
    The reports' queries offer no list of them."""
    prefix = scopes.of(kind, "")
    found: list[str] = []
    last = prefix
    while len(found) < MOST_CHOICES:
        scope = connection.scalar(
            select(func.min(report_counts.c.scope)).where(report_counts.c.scope > last)
        )
        if scope is None or not scope.startswith(prefix):
            break
        found.append(scope[len(prefix) :])
        last = scope
    return found


def trend(
    connection: Connection, question: Question, calendar: Calendar, clock: Clock
) -> reports_schemas.Trend:
    """The trend, as GET /reports/trends answers it (ReportRefused as it refuses it)."""
    return reports_queries.trend(
        connection, question, calendar, idle_ms=clock.idle_timeout_ms, now=clock.now
    )


@dataclass(frozen=True, slots=True)
class TrendPage:
    trend: reports_schemas.Trend | None  # None: refused
    refused: ReportRefused | None
    choices: Choices


def trend_page(
    connection: Connection, question: Question | None, calendar: Calendar, clock: Clock
) -> TrendPage:
    """The trend asked (none if the question was refused already), or why it is refused;
    and what the form chooses among."""
    found, refused = None, None
    if question is not None:
        try:
            found = trend(connection, question, calendar, clock)
        except ReportRefused as error:
            refused = error
    return TrendPage(found, refused, choices(connection))


@dataclass(frozen=True, slots=True)
class HeatmapPage:
    heatmap: reports_schemas.Heatmap
    choices: Choices


def heatmap(
    connection: Connection,
    metric: str,
    since: int,
    until: int,
    scope: Scope,
    calendar: Calendar,
) -> HeatmapPage:
    found = reports_queries.heatmap(connection, metric, since, until, scope, calendar)
    return HeatmapPage(found, choices(connection))


@dataclass(frozen=True, slots=True)
class WaitingPage:
    waiting: reports_schemas.Waiting
    chat_names: dict[str, str]  # the customer's name in each chat, if known
    teams: list[teams_schemas.KnownTeam]  # every team, to choose among
    head: int  # the log's latest position when it was read: the page is as of it


def waiting(
    connection: Connection,
    keystore: Keystore,
    team: int | None,
    calendar: Calendar,
    clock: Clock,
) -> WaitingPage:
    """Who waits for a reply now, as GET /reports/waiting answers it, with the chats' names.
    The log's head is read first: every event up to it is in the list (positions follow
    commit order), so a page that follows the log from there misses nothing."""
    head = store.head(connection)
    found = reports_queries.waiting(
        connection, team, calendar, idle_ms=clock.idle_timeout_ms, now=clock.now
    )
    names = conversations_queries.chat_names(
        connection, [chat.chat_uuid for chat in found.chats], keystore=keystore
    )
    return WaitingPage(found, names, teams_queries.known_teams(connection), head)


@dataclass(frozen=True, slots=True)
class BreachesPage:
    breaches: list[reports_schemas.Breach]  # a page of BREACHES_SHOWN, in the order they began
    total: int  # how many there are
    next: str | None  # the next page's cursor
    chat_names: dict[str, str]  # of those shown
    operator_names: dict[str, str | None]  # of those shown
    teams: list[teams_schemas.KnownTeam]
    targets: bool  # does any team have a target?


def breaches(
    connection: Connection,
    keystore: Keystore,
    since: int,
    until: int,
    team: int | None,
    calendar: Calendar,
    clock: Clock,
    after: str | None = None,
) -> BreachesPage:
    found = reports_queries.breaches(
        connection,
        since,
        until,
        team,
        calendar,
        idle_ms=clock.idle_timeout_ms,
        now=clock.now,
        limit=BREACHES_SHOWN,
        after=after,
    )
    shown = found.items
    names = conversations_queries.chat_names(
        connection, sorted({breach.chat_uuid for breach in shown}), keystore=keystore
    )
    operators = sorted({b.operator_uuid for b in shown if b.operator_uuid is not None})
    return BreachesPage(
        shown,
        found.total,
        found.next,
        names,
        reports_queries.operator_names(connection, operators),
        teams_queries.known_teams(connection),
        bool(hours.targets(connection)),
    )


def breaches_of(
    connection: Connection,
    since: int,
    until: int,
    team: int | None,
    calendar: Calendar,
    clock: Clock,
) -> list[reports_schemas.Breach]:
    """Every breach, as GET /reports/breaches?format=csv gives them."""
    return reports_queries.breaches(
        connection, since, until, team, calendar, idle_ms=clock.idle_timeout_ms, now=clock.now
    ).items


@dataclass(frozen=True, slots=True)
class LeaderboardPage:
    board: reports_schemas.Leaderboard | None  # None: no team chosen
    teams: list[teams_schemas.KnownTeam]


def leaderboard(
    connection: Connection,
    team: int | None,
    since: int,
    until: int,
    calendar: Calendar,
    clock: Clock,
) -> LeaderboardPage:
    board = None
    if team is not None:
        board = reports_queries.leaderboard(
            connection,
            team,
            since,
            until,
            calendar,
            idle_ms=clock.idle_timeout_ms,
            now=clock.now,
        )
    return LeaderboardPage(board, teams_queries.known_teams(connection))
