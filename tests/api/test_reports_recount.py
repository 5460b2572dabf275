"""GET /reports/trends recounted from the webhooks by the definitions of docs/reports.md,
on both databases.

A few seeded days of chat-center traffic around the end of summer time in Europe/Berlin
(the clocks go back from 03:00 to 02:00 on Sunday 2026-10-25) and the end of October go to
POST /webhooks/fasttrack shuffled, some of them twice. Each event's placement (its kind,
its session and the team in charge) is read from its chat's timeline, since the session
rules are pinned elsewhere (test_session_rules.py); everything else is worked out here from
the webhooks' bodies alone: which waits there are, when they begin and end, the local
hour, day, week or month each figure falls in, the medians and 90th percentiles, the
scopes, the whole-unit periods and the period before, and the working time of a wait.
"""

import csv
import io
import json
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from cdp.access import credentials
from cdp.db import make_engine
from cdp.http.app import create_app
from cdp.settings import Settings
from tests.api.conftest import rebuilt
from tests.factories import JSON_TYPE, webhook

Client = TestClient[Litestar]
Body = dict[str, Any]
Scope = tuple[str, str | int] | None  # ("team", 1), ("platform", "VK"), ...; None: the store
Length = Callable[[int, int], int]  # a wait's length in milliseconds, from its start and end

TIMEZONE = "Europe/Berlin"
ZONE = ZoneInfo(TIMEZONE)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SECOND, MINUTE, HOUR, DAY = 1000, 60_000, 3_600_000, 86_400_000
IDLE = DAY  # the settings' session_idle_timeout
OPEN_WINDOW = 5 * SECOND  # the settings' session_open_window

DEFAULT, SHOP = "default", "shop"
TEAMS = {1: "Sales", 2: "Support", 3: "Billing"}
OPERATORS = ("op-anna", "op-boris", "op-vera")
PLATFORMS = ("Telegram", "WhatsApp", "VK")
COUNTS = ("sessions_opened", "customer_messages", "operator_replies", "handoffs_in", "handoffs_out")
WAITS = ("first_response", "reply_time")
METRICS = (*COUNTS, *WAITS, "session_duration")
BY_OPERATOR = ("operator_replies", *WAITS)
GROUPS = ("hour", "day", "week", "month")
KINDS = (
    "session_opened",
    "handoff",
    "session_updated",
    "message_in",
    "operator_reply",
    "message_updated",
    "other",
)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
SEEDS = (1, 2)  # of the traffic that every figure is recounted from; others below


def ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


def local(at: int) -> datetime:
    return (EPOCH + timedelta(milliseconds=at)).astimezone(ZONE)


def iso(at: int) -> str:
    return local(at).isoformat()


def midnight(day: date) -> int:
    return ms(datetime(day.year, day.month, day.day, tzinfo=ZONE))


# Every figure falls in [FIRST, LAST]: Friday 23 October to Monday 2 November, local.
FIRST = ms(datetime(2026, 10, 23, 6, tzinfo=ZONE))
NIGHT = ms(datetime(2026, 10, 25, 1, 20, tzinfo=ZONE))  # 40 minutes before the clocks go back
MONTH_END = ms(datetime(2026, 10, 31, 23, 40, tzinfo=ZONE))
LAST = ms(datetime(2026, 11, 2, 11, tzinfo=ZONE))
# The period every figure is in, given as a local time and as a time with its offset.
SINCE, UNTIL = "2026-10-22T13:20", "2026-11-03T09:15:00+01:00"


def months_on(day: date, months: int) -> date:
    """The first of the month `months` after (or before) the month of `day`."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


# The traffic.


@dataclass(frozen=True)
class Delivery:
    source: str
    body: Body


def platform_of(body: Body) -> str | None:
    chat = body["payload"].get("chat") or {}
    platform = chat.get("platform")
    return platform if isinstance(platform, str) else None


def operator_of(body: Body) -> str | None:
    session = body["payload"].get("session") or {}
    return (session.get("operator") or {}).get("uuid")


GAPS = ((1, 0), (1, 999), (SECOND, 59), (MINUTE, 59), (HOUR, 5))  # (unit, at most)


def gap(rng: random.Random) -> int:
    """The time to a chat's next event: none (the same millisecond), under a second,
    seconds, minutes or hours."""
    unit, most = rng.choices(GAPS, weights=[3, 22, 35, 30, 10])[0]
    return rng.randint(min(1, most), most) * unit + (rng.randint(0, 999) if unit > 1 else 0)


def chat_traffic(rng: random.Random, chat: str, source: str, start: int) -> list[Delivery]:
    """A chat's webhooks: a few sessions, each opened by the documented pair (or by a
    session_updated after a day of silence), with customer messages, operators' replies,
    handoffs, renames, edits and events of types cdp does not know."""
    bodies: list[Body] = []
    profile = f"profile-{chat}"
    platform = rng.choice(PLATFORMS)
    team = rng.choice(list(TEAMS))
    said = 0

    def send(kind: str, at: int, **fields: Any) -> None:
        nonlocal said
        said += 1
        fields.setdefault("platform", platform)
        if kind in ("message_created", "message_updated", "operator_replied"):
            fields.setdefault("message", f"{chat} says {said}")
        bodies.append(webhook(kind, chat=chat, at=at, profile=profile, **fields))

    def named(team_id: int) -> dict[str, Any]:
        return {"team": team_id, "team_name": TEAMS[team_id]}

    t = start
    if rng.random() < 0.3:  # a message before the chat's first session: in none
        send("message_created", t - rng.randint(2, 90) * MINUTE)
        if rng.random() < 0.3:  # and an operator's answer to it
            send("operator_replied", t - MINUTE, operator=rng.choice(OPERATORS), **named(team))
    for number in range(rng.randint(2, 4)):
        if t > LAST:
            break
        team = rng.choice(list(TEAMS)) if number else team
        send("session_updated", t, platform=rng.choice([platform, platform, None]), **named(team))
        if number == 0 or rng.random() < 0.8:  # the opening pair: its message in the window
            t += rng.choice([0, rng.randint(1, OPEN_WINDOW - 1), OPEN_WINDOW])
            send("message_created", t)
        for _ in range(rng.randint(3, 12)):
            t += gap(rng)
            if t > LAST:
                break
            action = rng.choices(
                ["message", "burst", "reply", "handoff", "rename", "edit", "unknown", "quiet"],
                weights=[30, 8, 32, 10, 4, 5, 5, 1],
            )[0]
            if action == "message":
                if rng.random() < 0.05:  # the customer writes from another messenger
                    platform = rng.choice(PLATFORMS)
                send("message_created", t, platform=rng.choice([platform] * 9 + [None]))
            elif action == "burst":
                for _ in range(rng.randint(2, 3)):
                    send("message_created", t)
                    t += rng.randint(1, 20 * SECOND)
            elif action == "reply":  # now and then naming no operator
                operator = rng.choice(OPERATORS) if rng.random() > 0.04 else None
                send("operator_replied", t, operator=operator, **named(team))
            elif action == "handoff":
                team = rng.choice([other for other in TEAMS if other != team])
                send("session_updated", t, platform=rng.choice([platform, None]), **named(team))
            elif action == "rename":
                send("session_updated", t, title=f"title {said}", **named(team))
            elif action == "edit":
                send("message_updated", t)
            elif action == "unknown":
                kind = rng.choice(["delivery_status", "typing_started"])
                send(kind, t, platform=rng.choice(PLATFORMS))  # changes no chat
            else:  # the customer comes back after more than a day, with no session_updated
                t += IDLE + rng.randint(1, 6) * HOUR
                send("message_created", t)
        if rng.random() < 0.4:
            t += IDLE + rng.randint(0, 30) * HOUR + rng.randint(0, HOUR)  # a day of silence
        else:
            t += rng.randint(1, 180) * MINUTE  # a new opening pair inside the session
    return [Delivery(source, body) for body in bodies]


def traffic(seed: int, chats: int = 9) -> list[Delivery]:
    """Nine chats, a third of them of the source `shop`: one through the night the clocks go
    back, one through the end of October, the others from some time in the week."""
    rng = random.Random(seed)
    deliveries: list[Delivery] = []
    for n in range(chats):
        start = {0: NIGHT, 1: MONTH_END}.get(n) or rng.randint(FIRST, FIRST + 5 * DAY)
        deliveries += chat_traffic(rng, f"chat-{seed}-{n}", SHOP if n % 3 == 2 else DEFAULT, start)
    return deliveries


def shuffled_with_repeats(deliveries: list[Delivery], seed: int) -> list[Delivery]:
    rng = random.Random(-seed)
    sent = [*deliveries, *rng.sample(deliveries, len(deliveries) // 6)]
    rng.shuffle(sent)
    return sent


# The store.


@dataclass
class Store:
    client: Client
    secrets: dict[str, str]

    def post(self, delivery: Delivery, content: str) -> Any:
        path = "/webhooks/fasttrack" if delivery.source == DEFAULT else "/webhooks/fasttrack/shop"
        return self.client.post(
            path,
            params={"token": self.secrets[delivery.source]},
            content=content,
            headers=JSON_TYPE,
        )


@pytest.fixture
def store(database: str) -> Iterator[Store]:
    """A store in Europe/Berlin with the sources `default` and `shop`."""
    engine = make_engine(database)
    with engine.begin() as connection:
        secrets = {
            name: credentials.add_source(connection, name).secret for name in (DEFAULT, SHOP)
        }
    engine.dispose()
    settings = Settings(
        database_url=database,
        session_idle_timeout=timedelta(milliseconds=IDLE),
        session_open_window=timedelta(milliseconds=OPEN_WINDOW),
        phone_region="RU",
        timezone=TIMEZONE,
    )
    with TestClient(create_app(settings)) as client:
        yield Store(client, secrets)


@dataclass(frozen=True)
class Placed:
    """An event as its chat's timeline places it, with the body it came in."""

    at: int
    kind: str
    session: int | None
    team: int | None
    body: Body


def deliver(store: Store, deliveries: list[Delivery]) -> dict[int, Delivery]:
    """Post each delivery; a repeated one (its keys in another order, indented) must be
    answered as a duplicate of the first. The deliveries stored, by position."""
    stored: dict[int, Delivery] = {}
    positions: dict[str, int] = {}
    for delivery in deliveries:
        canonical = json.dumps(delivery.body, sort_keys=True, separators=(",", ":"))
        if canonical in positions:
            again = json.dumps(dict(reversed(delivery.body.items())), indent=2)
            answer = store.post(delivery, again)
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"position": positions[canonical], "duplicate": True}
        else:
            answer = store.post(delivery, json.dumps(delivery.body))
            assert answer.status_code == 202, answer.text
            positions[canonical] = answer.json()["position"]
            stored[positions[canonical]] = delivery
    return stored


def timelines(store: Store, stored: dict[int, Delivery]) -> dict[str, list[Placed]]:
    """Each chat's events as its timeline (read in pages of 25) places them, in order."""
    chats: dict[str, list[Placed]] = {}
    for delivery in stored.values():
        chats.setdefault(delivery.body["payload"]["chat"]["uuid"], [])
    for chat, placed in chats.items():
        positions, after = [], None
        while True:
            params: dict[str, Any] = {"limit": 25, **({"after": after} if after else {})}
            answer = store.client.get(f"/chats/{chat}/timeline", params=params)
            assert answer.status_code == 200, answer.text
            for item in answer.json()["items"]:
                positions.append(item["position"])
                body = stored[item["position"]].body
                assert ms(datetime.fromisoformat(item["occurred_at"])) == body["timestamp"]
                assert item["kind"] in KINDS, item
                team = item["team"]["id"] if item["team"] else None
                placed.append(
                    Placed(body["timestamp"], item["kind"], item["session_number"], team, body)
                )
            after = answer.json()["next"]
            if after is None:
                break
        ours = [p for p, d in stored.items() if d.body["payload"]["chat"]["uuid"] == chat]
        assert sorted(positions) == sorted(ours), f"{chat}: the timeline holds each event once"
        assert [p.at for p in placed] == sorted(p.at for p in placed), f"{chat}: in time order"
    return chats


# The recount.


@dataclass(frozen=True)
class Fact:
    """One thing a metric counts or measures: when it counts (the event; the start of a
    wait or session), the scopes it is in, and for a time when it ended (None: a wait with
    no reply)."""

    metric: str
    at: int
    scopes: frozenset[tuple[str, str | int]]
    end: int | None = None


@dataclass(frozen=True)
class Began:
    """A wait begun: when, under which team, and the messenger its first event named."""

    at: int
    team: int | None
    platform: str | None


def recount(chats: dict[str, list[Placed]], sources: dict[str, str]) -> list[Fact]:
    facts: list[Fact] = []
    for chat, events in chats.items():
        sessions: dict[int, list[Placed]] = {}
        for event in events:
            if event.session is not None:  # events before the first session are in none
                sessions.setdefault(event.session, []).append(event)
        for session in sessions.values():
            facts += session_facts(session, sources[chat])
    return facts


def session_facts(session: list[Placed], source: str) -> Iterator[Fact]:
    def scoped(**scopes: str | int | None) -> frozenset[tuple[str, str | int]]:
        return frozenset((k, v) for k, v in {"source": source, **scopes}.items() if v is not None)

    def ended(
        metric: str, began: Began, operator: str | None = None, end: int | None = None
    ) -> Fact:
        scopes = scoped(team=began.team, platform=began.platform, operator=operator)
        return Fact(metric, began.at, scopes, end)

    opening = session[0]
    assert opening.kind == "session_opened", opening
    team: int | None = opening.team
    turn: Began | None = None  # the current turn, while it has no reply
    wait: Began | None = None  # the customer's current wait for a reply
    for event in session:
        platform = platform_of(event.body)
        if event.kind in ("session_opened", "handoff"):
            if event.kind == "session_opened":
                yield Fact("sessions_opened", event.at, scoped(team=event.team, platform=platform))
            else:
                yield Fact("handoffs_in", event.at, scoped(team=event.team, platform=platform))
                yield Fact("handoffs_out", event.at, scoped(team=team, platform=platform))
            if turn is not None:  # handed on with no reply
                yield ended("first_response", turn)
            team = event.team
            turn = Began(event.at, team, platform)
        elif event.kind == "message_in":
            yield Fact("customer_messages", event.at, scoped(team=team, platform=platform))
            if wait is None:  # the session's first message, or the first after a reply
                wait = Began(event.at, team, platform)
        elif event.kind == "operator_reply":
            operator = operator_of(event.body)
            scopes = scoped(team=team, platform=platform, operator=operator)
            yield Fact("operator_replies", event.at, scopes)
            if turn is not None:
                yield ended("first_response", turn, operator, event.at)
                turn = None
            if wait is not None:
                yield ended("reply_time", wait, operator, event.at)
                wait = None
        assert event.team == team, f"the timeline's team in charge at {event}"
    if turn is not None:
        yield ended("first_response", turn)
    if wait is not None:
        yield ended("reply_time", wait)
    # Every session has ended: its last event is weeks old. Events of unknown types change
    # no session, so its last event is the last of a known type.
    last = [event for event in session if event.kind != "other"][-1]
    # A session's messenger: the one its opening names.
    scopes = scoped(team=opening.team, platform=platform_of(opening.body))
    yield Fact("session_duration", opening.at, scopes, last.at)


def unit_of(at: int, group: str) -> int:
    """The start of the local hour, day, ISO week or month `at` falls in."""
    moment = local(at)
    if group == "hour":  # Berlin's offsets are whole hours; fold tells the two 02:00s apart
        return ms(moment.replace(minute=0, second=0, microsecond=0))
    day = moment.date()
    if group == "week":
        day -= timedelta(days=day.weekday())
    elif group == "month":
        day = day.replace(day=1)
    return midnight(day)


def next_unit(start: int, group: str) -> int:
    if group == "hour":
        return start + HOUR
    day = local(start).date()
    if group == "day":
        return midnight(day + timedelta(days=1))
    if group == "week":
        return midnight(day + timedelta(days=7))
    return midnight(months_on(day, 1))


def moment_of(text: str) -> int:
    """A `since` or `until`: a local day, a local time, or a time with its offset."""
    if len(text) == 10:
        return midnight(date.fromisoformat(text))
    parsed = datetime.fromisoformat(text)
    return ms(parsed if parsed.tzinfo else parsed.replace(tzinfo=ZONE))


def whole_units(since: int, until: int, group: str) -> tuple[int, int]:
    start, end = unit_of(since, group), unit_of(until, group)
    return start, end if end == until else next_unit(end, group)


def previous(since: int, until: int) -> tuple[int, int]:
    """The period just before, as long: in months, local days or milliseconds."""
    first, last = local(since), local(until)
    if first.time() == last.time() == time(0):
        if first.day == last.day == 1:
            months = (last.year - first.year) * 12 + last.month - first.month
            return midnight(months_on(first.date(), -months)), since
        return midnight(first.date() - (last.date() - first.date())), since
    return since - (until - since), since


def percentile(lengths: list[float], fraction: float) -> float:
    """As PostgreSQL's percentile_cont: interpolated between the two nearest."""
    position = fraction * (len(lengths) - 1)
    low, high = math.floor(position), math.ceil(position)
    return lengths[low] + (lengths[high] - lengths[low]) * (position - low)


def point(facts: list[Fact], metric: str, start: int, end: int, length: Length) -> Body:
    inside = [fact for fact in facts if start <= fact.at < end]
    if metric in COUNTS:
        found: Body = {"count": len(inside), "median_seconds": None, "p90_seconds": None}
        return {"start": iso(start), **found, "unanswered": None}
    lengths = sorted(length(f.at, f.end) / 1000 for f in inside if f.end is not None)
    return {
        "start": iso(start),
        "count": len(lengths),
        "median_seconds": percentile(lengths, 0.5) if lengths else None,
        "p90_seconds": percentile(lengths, 0.9) if lengths else None,
        "unanswered": sum(f.end is None for f in inside) if metric in WAITS else None,
    }


def series(
    facts: list[Fact], metric: str, group: str, period: tuple[int, int], length: Length
) -> Body:
    since, until = period
    starts = [since]
    while (following := next_unit(starts[-1], group)) < until:
        starts.append(following)
    return {
        "since": iso(since),
        "until": iso(until),
        "points": [point(facts, metric, a, b, length) for a, b in pairwise([*starts, until])],
        "total": point(facts, metric, since, until, length),
    }


def clock(start: int, end: int) -> int:
    return end - start


@dataclass(frozen=True)
class Schedule:
    """Working hours: each weekday's local intervals, and holidays."""

    week: dict[str, list[str]]
    holidays: tuple[str, ...]

    def body(self) -> Body:
        return {"week": self.week, "holidays": [{"day": day} for day in self.holidays]}

    def working(self, start: int, end: int) -> int:
        """The working time between two instants, in milliseconds: the overlap of
        [start, end) with each working interval, from a local minute to a local minute."""
        total, day = 0, local(start).date()
        while midnight(day) < end:
            if day.isoformat() not in self.holidays:
                for interval in self.week.get(WEEKDAYS[day.weekday()], []):
                    opens, closes = (self.on(day, hhmm) for hhmm in interval.split("-"))
                    total += max(0, min(end, closes) - max(start, opens))
            day += timedelta(days=1)
        return total

    @staticmethod
    def on(day: date, hhmm: str) -> int:
        hours, minutes = map(int, hhmm.split(":"))
        if hours == 24:
            return midnight(day + timedelta(days=1))
        return ms(datetime(day.year, day.month, day.day, hours, minutes, tzinfo=ZONE))


# A week like the docs', with a lunch break on Monday and Tuesday, a late Saturday and a
# Sunday night that spans the clocks going back (five hours on 25 October, four after),
# and a holiday on Wednesday 28 October.
OFFICE = Schedule(
    {
        "monday": ["08:00-12:00", "13:00-19:30"],
        "tuesday": ["08:00-12:00", "13:00-19:30"],
        "wednesday": ["09:00-18:00"],
        "thursday": ["09:00-18:00"],
        "friday": ["09:00-17:00"],
        "saturday": ["10:00-14:00", "22:00-24:00"],
        "sunday": ["00:30-04:30"],
    },
    ("2026-10-28",),
)
# Round the clock but on Friday 30 October: 25 hours on 25 October.
ALWAYS = Schedule({day: ["00:00-24:00"] for day in WEEKDAYS}, ("2026-10-30",))


# Asking, and comparing.


def ask(
    store: Store, metric: str, group: str, since: str, until: str, scope: Scope, **options: str
) -> Any:
    params = {"metric": metric, "group": group, "since": since, "until": until, **options}
    if scope is not None:
        params[scope[0]] = str(scope[1])
    return store.client.get("/reports/trends", params=params)


def expected(
    facts: list[Fact],
    metric: str,
    group: str,
    since: str,
    until: str,
    scope: Scope,
    compare: bool = False,
    hours: Schedule | None = None,
) -> Body:
    chosen = [f for f in facts if f.metric == metric and (scope is None or scope in f.scopes)]
    period = whole_units(moment_of(since), moment_of(until), group)
    length = clock if hours is None else hours.working
    return {
        "metric": metric,
        "group": group,
        "timezone": TIMEZONE,
        "scope": {} if scope is None else {scope[0]: scope[1]},
        "business_hours": hours is not None,
        "current": series(chosen, metric, group, period, length),
        "previous": series(chosen, metric, group, previous(*period), length) if compare else None,
    }


def same(found: Any, wanted: Any) -> bool:
    """Equal, seconds to the millisecond (the webhooks' own precision): the answers round
    them to three decimals."""
    if isinstance(wanted, float) and isinstance(found, int | float):
        return abs(found - wanted) <= 0.0005 + 1e-9
    if isinstance(wanted, dict) and isinstance(found, dict):
        return found.keys() == wanted.keys() and all(same(found[k], wanted[k]) for k in wanted)
    if isinstance(wanted, list) and isinstance(found, list):
        return len(found) == len(wanted) and all(map(same, found, wanted))
    return bool(found == wanted) and type(found) is type(wanted)


def differences(found: Body, wanted: Body) -> list[str]:
    """Where an answered trend differs from the recount: its heading, each series' period,
    its first point that differs, and its total."""
    heads = ("metric", "group", "timezone", "scope", "business_hours")
    if not same({k: found.get(k) for k in heads}, {k: wanted[k] for k in heads}):
        return [f"answered { ({k: found.get(k) for k in heads}) }"]
    seen: list[str] = []
    for name in ("current", "previous"):
        got, want = found[name], wanted[name]
        if got is None or want is None:
            if got is not want:
                seen.append(f"{name}: answered {got}, recounted {want}")
            continue
        if (got["since"], got["until"]) != (want["since"], want["until"]):
            seen.append(
                f"{name}: answered {got['since']} to {got['until']}, recounted "
                f"{want['since']} to {want['until']}"
            )
            continue
        starts = [p["start"] for p in got["points"]]
        if starts != [p["start"] for p in want["points"]]:
            seen.append(f"{name}: answered points from {starts}")
            continue
        for got_point, want_point in zip(got["points"], want["points"], strict=True):
            if not same(got_point, want_point):
                seen.append(f"{name}: answered {got_point}, recounted {want_point}")
                break
        if not same(got["total"], want["total"]):
            seen.append(f"{name} total: answered {got['total']}, recounted {want['total']}")
    return seen


@dataclass
class Recounted:
    """The store with the traffic delivered, the recount of its figures, and every
    disagreement seen so far between the two."""

    store: Store
    facts: list[Fact]
    disagreements: list[str] = field(default_factory=list)

    def report(self) -> str:
        """The disagreements, one a line."""
        return f"{len(self.disagreements)} disagreements:\n" + "\n".join(self.disagreements)

    def check(
        self,
        metric: str,
        group: str,
        since: str,
        until: str,
        scope: Scope = None,
        compare: bool = False,
        hours: Schedule | None = None,
    ) -> Body:
        """Ask for a trend and compare it with the recount, point by point."""
        options = {"compare": "previous"} if compare else {}
        if hours is not None:
            options["business_hours"] = "true"
        answer = ask(self.store, metric, group, since, until, scope, **options)
        asked = f"{metric} by {group} of {scope or 'the store'} from {since} to {until}"
        asked += "".join(f" {k}={v}" for k, v in options.items())
        assert answer.status_code == 200, f"{asked}: {answer.text}"
        found: Body = answer.json()
        wanted = expected(self.facts, metric, group, since, until, scope, compare, hours)
        self.disagreements += [f"{asked}: {seen}" for seen in differences(found, wanted)]
        return found


def delivered(store: Store, seed: int, chats: int = 9) -> Recounted:
    deliveries = traffic(seed, chats)
    stored = deliver(store, shuffled_with_repeats(deliveries, seed))
    assert len(stored) == len(deliveries)
    sources = {d.body["payload"]["chat"]["uuid"]: d.source for d in deliveries}
    facts = recount(timelines(store, stored), sources)
    # The traffic holds something of every figure, a wait with no reply among them.
    assert {f.metric for f in facts} == set(METRICS)
    assert any(f.end is None for f in facts if f.metric == "first_response")
    assert any(f.end is None for f in facts if f.metric == "reply_time")
    return Recounted(store, facts)


SCOPES: tuple[Scope, ...] = (
    None,
    *(("team", team) for team in TEAMS),
    ("source", DEFAULT),
    ("source", SHOP),
    *(("platform", platform) for platform in PLATFORMS),
)


# The tests.


def test_the_hour_the_clocks_go_back_over_comes_twice_as_two_local_hours() -> None:
    assert [iso(NIGHT + 40 * MINUTE + n * HOUR) for n in range(3)] == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T03:00:00+01:00",
    ]
    assert [iso(unit_of(NIGHT + n * HOUR, "hour")) for n in range(3)] == [
        "2026-10-25T01:00:00+02:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:00:00+01:00",
    ]
    assert next_unit(unit_of(NIGHT, "day"), "day") - unit_of(NIGHT, "day") == 25 * HOUR


@pytest.mark.parametrize("seed", SEEDS)
def test_every_metric_by_hour_day_week_and_month_equals_its_recount_in_every_scope(
    store: Store, seed: int
) -> None:
    recounted = delivered(store, seed)
    for metric in METRICS:
        for group in GROUPS:
            for scope in SCOPES:
                recounted.check(metric, group, SINCE, UNTIL, scope)
            if metric in BY_OPERATOR:
                for operator in OPERATORS:
                    recounted.check(metric, group, SINCE, UNTIL, ("operator", operator))
    assert not recounted.disagreements, recounted.report()


COMPARED = (
    # November against October: 30 days against 31.
    ("month", "2026-11-01", "2026-11-30"),
    ("day", "2026-10-01", "2026-10-31T18:00"),  # October (to its end) against September
    # A week against the seven local days before, the clocks going back in them.
    ("day", "2026-10-26", "2026-11-02"),
    ("week", "2026-10-28", "2026-11-03"),  # the weeks of 26 October and 2 November
    ("hour", "2026-10-25", "2026-10-26"),  # the 25 hours of 25 October against the 24th
    # From 01:00 summer time to 05:00 winter time, five hours, against the five before.
    ("hour", "2026-10-25T01:30", "2026-10-25T04:10"),
    ("hour", "2026-10-31T21:00:00+01:00", "2026-11-01T02:00"),  # into November: 5 h and 5 h
    # From the second 02:00 of 25 October (winter time) to 06:00, against the four hours before.
    ("hour", "2026-10-25T02:30:00+01:00", "2026-10-25T06:00"),
    ("day", "2026-10-24T12:00", "2026-10-27T12:00"),  # taken to whole days: 24 to 28 October
)


def test_the_period_before_equals_its_recount_month_for_month_day_for_day_or_hour_for_hour(
    store: Store,
) -> None:
    recounted = delivered(store, seed=4)
    for group, since, until in COMPARED:
        for metric in METRICS:
            for scope in (None, ("team", 2), ("source", SHOP), ("platform", "WhatsApp")):
                recounted.check(metric, group, since, until, scope, compare=True)
        for metric in BY_OPERATOR:
            recounted.check(metric, group, since, until, ("operator", "op-boris"), compare=True)
    assert not recounted.disagreements, recounted.report()


def csv_points(text: str) -> list[Body]:
    assert text.startswith("\ufeff"), "a byte-order mark, for spreadsheets"
    rows = list(csv.reader(io.StringIO(text[1:])))
    assert rows[0] == ["period", "start", "count", "median_seconds", "p90_seconds", "unanswered"]

    def number(cell: str) -> float | None:
        return None if cell == "" else float(cell)

    return [
        {
            "period": period,
            "start": start,
            "count": int(count),
            "median_seconds": number(median),
            "p90_seconds": number(p90),
            "unanswered": None if unanswered == "" else int(unanswered),
        }
        for period, start, count, median, p90, unanswered in rows[1:]
    ]


def json_points(trend: Body) -> list[Body]:
    return [
        {"period": name, **point}
        for name in ("current", "previous")
        if trend[name] is not None
        for point in trend[name]["points"]
    ]


def test_a_trend_as_csv_holds_the_points_of_its_json_current_and_previous(store: Store) -> None:
    recounted = delivered(store, seed=6, chats=3)
    types = set()
    for metric in METRICS:
        for group, since, until in (("day", SINCE, UNTIL), ("hour", "2026-10-25", "2026-10-26")):
            found = recounted.check(metric, group, since, until, ("team", 2), compare=True)
            options = {"compare": "previous", "format": "csv"}
            answer = ask(store, metric, group, since, until, ("team", 2), **options)
            assert answer.status_code == 200, answer.text
            assert csv_points(answer.text) == json_points(found), f"{metric} by {group}"
            types.add(answer.headers["content-type"])
    assert {kind.split(";")[0] for kind in types} == {"text/csv"}, "a CSV file"


def test_other_metrics_than_replies_and_waits_by_operator_are_a_400_that_says_so(
    store: Store,
) -> None:
    for metric in METRICS:
        answer = ask(store, metric, "day", SINCE, UNTIL, ("operator", OPERATORS[0]))
        if metric in BY_OPERATOR:
            assert answer.status_code == 200, answer.text
            continue
        assert answer.status_code == 400, answer.text
        problem = answer.json()
        assert [error["path"] for error in problem["errors"]] == ["operator"]
        assert f"{metric} is not counted by operator" in problem["detail"]


def test_waits_in_business_hours_count_the_working_time_between_their_start_and_end_alone(
    store: Store,
) -> None:
    recounted = delivered(store, seed=5)
    refused = ask(store, "reply_time", "day", SINCE, UNTIL, None, business_hours="true")
    assert refused.status_code == 409, refused.text
    assert "PUT /reports/business-hours" in refused.json()["detail"]
    for schedule in (OFFICE, ALWAYS):  # each change shows in the next answer
        answer = store.client.put("/reports/business-hours", json=schedule.body())
        assert answer.status_code == 200, answer.text
        for metric in WAITS:
            for group in GROUPS:
                scopes = [*SCOPES, *(("operator", operator) for operator in OPERATORS)]
                for scope in scopes:
                    recounted.check(metric, group, SINCE, UNTIL, scope, hours=schedule)
            for group, since, until in COMPARED:
                recounted.check(metric, group, since, until, compare=True, hours=schedule)
    assert not recounted.disagreements, recounted.report()


def test_a_rebuild_gives_the_figures_the_webhooks_gave_as_they_came(store: Store) -> None:
    recounted = delivered(store, seed=7)
    rebuilt(store.client)
    for metric in METRICS:
        for scope in SCOPES:
            recounted.check(metric, "day", SINCE, UNTIL, scope)
        if metric in BY_OPERATOR:
            recounted.check(metric, "week", SINCE, UNTIL, ("operator", OPERATORS[-1]))
    assert not recounted.disagreements, recounted.report()


def test_a_trend_with_no_period_covers_the_last_30_local_days_today_included(
    store: Store,
) -> None:
    before = datetime.now(ZONE).date()
    answer = store.client.get("/reports/trends", params={"metric": "reply_time"})
    after = datetime.now(ZONE).date()  # the day may have changed meanwhile
    assert answer.status_code == 200, answer.text
    found = answer.json()["current"]
    periods = {(d - timedelta(days=29), d + timedelta(days=1)) for d in (before, after)}
    assert (found["since"], found["until"]) in {
        (iso(midnight(a)), iso(midnight(b))) for a, b in periods
    }
    since, until = moment_of(found["since"]), moment_of(found["until"])
    assert found == series([], "reply_time", "day", (since, until), clock)
    assert len(found["points"]) == 30


def test_a_message_or_a_reply_before_a_chats_first_session_is_counted_in_no_figure(
    store: Store,
) -> None:
    """customer_messages counts a message_created within a session, operator_replies an
    operator_replied within a session: a chat's events before its first session are in
    none (docs/rules.md)."""
    at = moment_of("2026-10-26T10:00")
    early = [
        webhook("message_created", chat="early", at=at, message="anyone?"),
        webhook("operator_replied", chat="early", at=at + MINUTE, operator="op-anna", team=1),
    ]
    later = [
        webhook("session_updated", chat="early", at=at + HOUR, team=1),
        webhook("message_created", chat="early", at=at + HOUR + 50, message="hello"),
    ]
    stored = deliver(store, [Delivery(DEFAULT, body) for body in [*early, *later]])
    placed = timelines(store, stored)["early"]
    assert [(p.kind, p.session) for p in placed] == [
        ("message_in", None),
        ("operator_reply", None),
        ("session_opened", 1),
        ("message_in", 1),
    ]
    wanted = {
        ("customer_messages", None): 1,
        ("customer_messages", ("platform", "Telegram")): 1,
        ("customer_messages", ("source", DEFAULT)): 1,
        ("customer_messages", ("team", 1)): 1,
        ("operator_replies", None): 0,
        ("operator_replies", ("platform", "Telegram")): 0,
        ("operator_replies", ("operator", "op-anna")): 0,
    }
    found = {}
    for metric, scope in wanted:
        answer = ask(store, metric, "day", "2026-10-26", "2026-10-27", scope)
        assert answer.status_code == 200, answer.text
        found[metric, scope] = answer.json()["current"]["total"]["count"]
    assert found == wanted
