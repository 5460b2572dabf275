"""The console's reports on both databases: each page shows the numbers of a small known
history as the API counts them, its CSV is the API's, a refused question says what to do,
and both languages are spoken. Who is waiting now is the start page, and follows the log."""

import html
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from litestar.testing import TestClient
from sqlalchemy import Engine

from cdp.access import credentials
from cdp.console import views
from cdp.http.app import create_app
from cdp.settings import Settings
from tests.api.test_reports import customer, deliver, targets
from tests.api.test_stream import Message, messages
from tests.conftest import Server
from tests.factories import now_ms, opened, reply, webhook

Client = TestClient  # type: ignore[type-arg]
MINUTE = 60_000
MOSCOW = ZoneInfo("Europe/Moscow")
ENGLISH = {"Accept-Language": "en"}
RUSSIAN = {"Accept-Language": "ru-RU,ru;q=0.9"}


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def at(day: int, hour: int, minute: int = 0, month: int = 3) -> int:
    """A local time in Moscow, in 2026."""
    return _ms(datetime(2026, month, day, hour, minute, tzinfo=MOSCOW))


@pytest.fixture
def client(settings: Settings) -> Iterator[Client]:
    """A browser's client of an open store (its cookies are kept over HTTPS only), whose
    quiet streams say so every second."""
    quiet = settings.model_copy(update={"stream_heartbeat": timedelta(seconds=1)})
    with TestClient(create_app(quiet), base_url="https://testserver.local") as client:
        yield client


def text_of(fragment: str) -> str:
    """What a piece of a page says, its markup left out."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def rows(page: str, table: str) -> list[list[str]]:
    """The cells of each row of a table's body, as text."""
    found = re.search(rf'<table[^>]*id="{table}".*?<tbody>(.*?)</tbody>', page, re.S)
    assert found is not None, table
    return [
        [text_of(cell) for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", found.group(1), re.S)
    ]


@pytest.fixture
def week(client: Client) -> Client:
    """Sessions and first replies over the week of 2026-03-02 (Monday), in Moscow, and one
    the week before; team 1's first-reply target is 2 minutes."""
    targets(client, 1, first=120, following=None)
    deliver(client, *opened("c0", at=at(25, 12, month=2), team=1))  # a Wednesday: 10 min
    deliver(client, reply("c0", at=at(25, 12, 10, month=2), team=1))
    deliver(client, *opened("c1", at=at(2, 9, 10), team=1))  # Monday: 1 min
    deliver(client, reply("c1", at=at(2, 9, 11), team=1, operator="anna"))
    deliver(client, *opened("c2", at=at(3, 10), team=1))  # Tuesday: 5 min, late
    deliver(client, reply("c2", at=at(3, 10, 5), team=1, operator="boris"))
    deliver(client, *opened("c3", at=at(3, 15), team=2))  # Tuesday: 2 min
    deliver(client, reply("c3", at=at(3, 15, 2), team=2, operator="anna"))
    return client


WEEK = {"since": "2026-03-02", "until": "2026-03-08"}  # the console's days, both included
API_WEEK = {"since": "2026-03-02", "until": "2026-03-09"}  # the API's: until excluded


# -- trends ----------------------------------------------------------------------------------


def test_a_count_is_drawn_as_bars_beside_the_period_before_with_its_points_in_a_table(
    week: Client,
) -> None:
    page = week.get(
        "/console/reports/trends",
        params={"metric": "sessions_opened", "compare": "true", **WEEK},
        headers=ENGLISH,
    ).text
    assert '<h2 id="chart-head">Sessions opened by day</h2>' in page
    svg = re.search(r"<svg[^>]*role=\"img\".*?</svg>", page, re.S)
    assert svg is not None
    assert len(re.findall(r'<rect class="bar"', svg.group(0))) == 7  # a bar a day
    assert '<path class="line previous"' in svg.group(0)
    description = re.search(r'<desc id="chart-desc">(.*?)</desc>', page, re.S)
    assert description is not None
    assert text_of(description.group(1)) == (
        "2026-03-02 – 2026-03-08: 3 in all; the most in one day: 2. The period before: "
        "2026-02-23 – 2026-03-01: 1 in all; the most in one day: 1. Every point is in the "
        "table below."
    )
    points = rows(page, "points")
    assert points[0] == ["2026-03-02", "1", "2026-02-23", "0"]
    assert points[1] == ["2026-03-03", "2", "2026-02-24", "0"]
    assert points[2] == ["2026-03-04", "0", "2026-02-25", "1"]
    assert [row[1] for row in points] == ["1", "2", "0", "0", "0", "0", "0"]


def test_a_time_is_drawn_as_its_median_and_p90_in_readable_units(week: Client) -> None:
    page = week.get(
        "/console/reports/trends", params={"metric": "first_response", **WEEK}, headers=ENGLISH
    ).text
    assert '<path class="line current"' in page
    assert '<path class="line p90"' in page
    # Monday one wait of 60 s; Tuesday 300 s and 120 s; the week: 60, 120 and 300 s.
    points = rows(page, "points")
    assert points[0] == ["2026-03-02", "1", "1 min", "1 min", "0"]
    assert points[1] == ["2026-03-03", "2", "3 min 30 s", "4 min 42 s", "0"]
    assert points[2] == ["2026-03-04", "0", "—", "—", "0"]
    whole = re.search(r"<tfoot>(.*?)</tfoot>", page, re.S)
    assert whole is not None
    assert text_of(whole.group(1)) == "Whole period 3 2 min 4 min 24 s 0"
    # The axis in lengths of time, and each point's value on hover.
    assert '<text class="tick" x="66" y="18.0" text-anchor="end">5 min</text>' in page
    assert "<title>2026-03-03: 3 min 30 s</title>" in page
    team = week.get(
        "/console/reports/trends",
        params={"metric": "first_response", "team": "1", **WEEK},
        headers=ENGLISH,
    ).text
    assert text_of(re.search(r"<tfoot>(.*?)</tfoot>", team, re.S).group(1)) == (  # type: ignore[union-attr]
        "Whole period 2 3 min 4 min 36 s 0"
    )


def test_the_trend_csv_is_the_apis(week: Client) -> None:
    for asked, api in (
        ({"metric": "first_response", "compare": "true"}, {"compare": "previous"}),
        ({"metric": "sessions_opened", "group": "week", "team": "1"}, {"team": "1"}),
        ({"metric": "operator_replies", "operator": "anna", "group": "hour"}, {}),
    ):
        console = week.get("/console/reports/trends.csv", params={**asked, **WEEK})
        plain = {k: v for k, v in asked.items() if k not in ("compare", "team")}
        answer = week.get("/reports/trends", params={**plain, **api, **API_WEEK, "format": "csv"})
        assert console.status_code == answer.status_code == 200
        assert console.content == answer.content, asked
        assert console.content.startswith("\ufeff".encode())
        assert console.headers["content-disposition"] == answer.headers["content-disposition"]
        assert console.headers["content-type"] == "text/csv; charset=utf-8"
    page = week.get(
        "/console/reports/trends", params={"metric": "first_response", "compare": "true", **WEEK}
    ).text
    link = re.search(r'<a class="button" id="csv" href="([^"]+)"', page)
    assert link is not None
    assert html.unescape(link.group(1)) == (
        "/console/reports/trends.csv?metric=first_response&group=day&since=2026-03-02"
        "&until=2026-03-08&compare=true"
    )


def test_a_refused_trend_says_why_and_what_to_do_in_either_language(client: Client) -> None:
    cases = [
        ({"metric": "reply_time", "business_hours": "true"}, 409, "cdp reports hours set"),
        ({"metric": "sessions_opened", "business_hours": "true"}, 400, "applies to waits only"),
        ({"metric": "sessions_opened", "operator": "anna"}, 400, "only in replies"),
        ({"metric": "sessions_opened", "team": "1", "source": "x"}, 400, "not several"),
        ({"group": "hour", "since": "1990-01-01"}, 400, "Too many points"),
    ]
    for params, status, said in cases:
        page = client.get("/console/reports/trends", params=params, headers=ENGLISH)
        assert page.status_code == status, params
        alert = re.search(
            r'<div class="problem" role="alert" id="refused">(.*?)</div>', page.text, re.S
        )
        assert alert is not None, params
        assert said in text_of(alert.group(1)), params
        assert '<form method="get" action="/console/reports/trends"' in page.text  # to fix it
        sheet = client.get("/console/reports/trends.csv", params=params)
        assert sheet.status_code == status, params
        assert "content-disposition" not in sheet.headers
    russian = client.get(
        "/console/reports/trends",
        params={"metric": "first_response", "business_hours": "true"},
        headers=RUSSIAN,
    ).text
    assert "Рабочие часы не заданы" in russian
    assert "cdp reports hours set" in russian
    week = {"monday": ["09:00-18:00"]}
    assert client.put("/reports/business-hours", json={"week": week}).status_code == 200
    counted = client.get(
        "/console/reports/trends", params={"metric": "first_response", "business_hours": "true"}
    )
    assert counted.status_code == 200


def test_bad_parameters_get_a_page_naming_what_is_wrong(client: Client) -> None:
    for path, named in {
        "/console/reports/trends?metric=happiness": "metric",
        "/console/reports/trends?group=fortnight": "group",
        "/console/reports/trends?since=2026-03-08&until=2026-03-01": "since",
        "/console/reports/heatmap?team=x": "team",
        "/console/reports/breaches?until=tomorrow": "until",
        "/console/reports/leaderboard?until=9999-12-31": "until",
        "/console/reports/waiting/live?after=-1": "after",
    }.items():
        page = client.get(path, headers=ENGLISH)
        assert page.status_code == 400, path
        assert named in page.text, path


# -- heat map, leaderboard, breaches -------------------------------------------------------


def test_the_heat_map_shades_each_cell_and_writes_its_number(client: Client) -> None:
    monday_9 = at(2, 9, 10)
    deliver(client, *opened("c1", at=monday_9))
    deliver(client, customer("c1", monday_9 + MINUTE), customer("c1", monday_9 + 2 * MINUTE))
    deliver(client, *opened("c2", at=at(8, 23, 59), team=2))
    page = client.get("/console/reports/heatmap", params=WEEK, headers=ENGLISH).text
    grid = rows(page, "heatmap")
    assert [row[0] for row in grid] == [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ]
    assert grid[0][1 + 9] == "3"
    assert grid[6][1 + 23] == "1"
    assert grid[0][-1] == "3"  # the day's total
    cells = re.findall(r'<td class="cell level-(\d)">(\d+)</td>', page)
    assert len(cells) == 7 * 24
    assert cells[9] == ("6", "3")  # the fullest, darkest
    assert cells[6 * 24 + 23] == ("2", "1")
    assert cells[0] == ("0", "0")
    caption = re.search(r"<caption>(.*?)</caption>", page)
    assert caption is not None
    assert caption.group(1) == (
        "Customer messages by weekday and local hour, 2026-03-02 – 2026-03-08"
    )
    opened_ = client.get(
        "/console/reports/heatmap",
        params={**WEEK, "metric": "sessions_opened", "team": "2"},
        headers=RUSSIAN,
    ).text
    assert rows(opened_, "heatmap")[6][0] == "Воскресенье"
    assert rows(opened_, "heatmap")[6][1 + 23] == "1"
    assert "Открыто сессий по дням недели и часам" in opened_


def test_the_leaderboard_sets_a_team_s_operators_side_by_side(client: Client) -> None:
    now = now_ms()
    targets(client, 1, first=120, following=None)
    deliver(client, *opened("c1", at=now - 60 * MINUTE))
    deliver(client, reply("c1", at=now - 59 * MINUTE, operator="anna"))  # 60 s first reply
    deliver(client, reply("c1", at=now - 58 * MINUTE, operator="boris"))
    deliver(client, *opened("c2", at=now - 30 * MINUTE))
    deliver(client, reply("c2", at=now - 25 * MINUTE, operator="anna"))  # 300 s: late
    deliver(client, customer("c2", now - 20 * MINUTE))
    deliver(client, reply("c2", at=now - 19 * MINUTE, operator="anna"))
    deliver(client, *opened("c3", at=now - 10 * MINUTE, team=2))
    deliver(client, reply("c3", at=now - 9 * MINUTE, operator="boris", team=2))

    choose = client.get("/console/reports/leaderboard", headers=ENGLISH).text
    assert "Choose a team to see its operators side by side." in choose
    page = client.get("/console/reports/leaderboard", params={"team": "1"}, headers=ENGLISH).text
    assert rows(page, "leaders") == [
        ["Operator anna", "2", "3", "3 min", "1 min", "1"],
        ["Operator boris", "1", "1", "—", "—", "0"],
    ]
    # Each operator's name leads to their reply times.
    link = re.search(r'<a href="([^"]+)" title="anna">Operator anna</a>', page)
    assert link is not None
    assert "metric=reply_time" in link.group(1)
    assert "operator=anna" in link.group(1)
    russian = client.get("/console/reports/leaderboard", params={"team": "1"}, headers=RUSSIAN)
    assert "Первый ответ, медиана" in russian.text
    assert rows(russian.text, "leaders")[0][3] == "3 мин"


def test_breaches_link_each_chat_and_download_as_the_apis_csv(week: Client) -> None:
    page = week.get("/console/reports/breaches", params=WEEK, headers=ENGLISH).text
    assert rows(page, "breaches") == [
        [
            "c2",
            "Team 1",
            "first reply",
            "2026-03-03 10:00:00",
            "5 min",
            "2 min",
            "no",
            "Operator boris",
        ]
    ]
    assert '<a href="/console/chats/c2" title="c2">c2</a>' in page
    console = week.get("/console/reports/breaches.csv", params=WEEK)
    answer = week.get("/reports/breaches", params={**API_WEEK, "format": "csv"})
    assert console.content == answer.content
    assert console.headers["content-disposition"] == answer.headers["content-disposition"]
    assert b"c2" in console.content
    none = week.get("/console/reports/breaches", params={**WEEK, "team": "2"}, headers=RUSSIAN).text
    assert "За этот период нарушений нет." in none


def test_breaches_come_a_page_at_a_time_with_a_link_to_the_next(
    week: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "BREACHES_SHOWN", 1)
    deliver(week, *opened("c4", at=at(4, 11), team=1))  # Wednesday: 4 min, late too
    deliver(week, reply("c4", at=at(4, 11, 4), team=1))
    page = week.get("/console/reports/breaches", params=WEEK, headers=ENGLISH).text
    assert [row[0] for row in rows(page, "breaches")] == ["c2"]
    assert "1 of 2 here, a page at a time; the CSV holds every one." in page
    following = re.search(r'<a class="button" id="next" href="([^"]+)"', page)
    assert following is not None
    second = week.get(html.unescape(following.group(1)), headers=ENGLISH).text
    assert [row[0] for row in rows(second, "breaches")] == ["c4"]
    assert 'id="next"' not in second


def test_a_store_with_no_targets_says_where_to_set_them(client: Client) -> None:
    page = client.get("/console/reports/breaches", headers=ENGLISH).text
    assert "cdp reports targets set" in page


# -- who is waiting now ------------------------------------------------------------------------


@pytest.fixture
def waiting(client: Client) -> tuple[Client, int]:
    """Three chats waiting now (two of team 1, which has targets) and two that are not."""
    now = now_ms()
    targets(client, 1, first=600, following=300)
    # c-long: answered once, then the customer wrote again 20 minutes ago (next reply, 300 s).
    deliver(client, *opened("c-long", at=now - 40 * MINUTE, team=1, name="Анна"))
    deliver(client, reply("c-long", at=now - 39 * MINUTE, team=1))
    deliver(client, customer("c-long", now - 20 * MINUTE), customer("c-long", now - 5 * MINUTE))
    # c-risk: opened 9 minutes ago, no reply yet: 90% of its first-reply target.
    deliver(client, *opened("c-risk", at=now - 9 * MINUTE, team=1))
    # c-fine: opened a minute ago with team 2, which has no target.
    deliver(client, *opened("c-fine", at=now - MINUTE, team=2))
    # c-done: answered; c-old: its session went idle a day ago.
    deliver(client, *opened("c-done", at=now - 30 * MINUTE, team=1))
    deliver(client, reply("c-done", at=now - 29 * MINUTE, team=1))
    deliver(client, *opened("c-old", at=now - 25 * 60 * MINUTE, team=1))
    return client, now


def test_the_start_page_lists_who_waits_longest_first_against_the_target(
    waiting: tuple[Client, int],
) -> None:
    client, now = waiting
    page = client.get("/console/", headers=ENGLISH).text
    assert "<h1>Waiting now</h1>" in page
    listed = rows(page, "waiting-chats")
    assert [row[0] for row in listed] == ["Анна", "c-risk", "c-fine"]
    assert [row[1] for row in listed] == ["Team 1", "Team 1", "Team 2"]
    assert [row[5] for row in listed] == ["next reply: 5 min", "first reply: 10 min", "—"]
    assert [row[6] for row in listed] == ["breached", "at risk", "no target"]
    assert re.fullmatch(r"20 min( \d+ s)?", listed[0][4])  # as of the page; then it ticks
    assert f'<span class="ticking" data-since="{now - 20 * MINUTE}">' in page
    # In colour as well as in words.
    assert re.findall(r'<span class="badge ([\w-]+)">', page) == [
        "breached",
        "at-risk",
        "no-target",
    ]
    counts = re.search(r'<ul class="team-counts"[^>]*>(.*?)</ul>', page, re.S)
    assert counts is not None
    assert text_of(counts.group(1)) == (
        "Team 1 2 waiting · 1 at risk · 1 breached Team 2 1 waiting · 0 at risk · 0 breached"
    )
    # It asks again when the answer says it changes with time alone: c-risk passing 10 min.
    api = client.get("/reports/waiting").json()
    assert round(datetime.fromisoformat(api["changes_at"]).timestamp() * 1000) == now + MINUTE
    assert f'data-changes-at="{now + MINUTE}"' in page
    # The customer search stays one click away: a box on the start page, posted.
    search = re.search(r'<form method="post" action="/console/search"[^>]*role="search">', page)
    assert search is not None
    one_team = client.get("/console/", params={"team": "2"}, headers=ENGLISH).text
    assert [row[0] for row in rows(one_team, "waiting-chats")] == ["c-fine"]
    russian = client.get("/console/reports/waiting", headers=RUSSIAN).text
    assert "<h1>Ждут ответа</h1>" in russian
    assert [row[6] for row in rows(russian, "waiting-chats")] == [
        "нарушено",
        "под угрозой",
        "нормы нет",
    ]
    assert "ждут: 2 · под угрозой: 1 · нарушено: 1" in russian


def test_the_list_asked_by_the_page_itself_is_the_fragment_alone(
    waiting: tuple[Client, int],
) -> None:
    client, _ = waiting
    fragment = client.get(
        "/console/reports/waiting", params={"team": "1"}, headers={"HX-Request": "true"}
    ).text
    assert fragment.lstrip().startswith('<div id="waiting"')
    assert 'hx-get="/console/reports/waiting?team=1"' in fragment
    assert [row[0] for row in rows(fragment, "waiting-chats")] == ["Анна", "c-risk"]
    deliver(client, reply("c-risk", at=now_ms(), team=1))
    after = client.get(
        "/console/reports/waiting", params={"team": "1"}, headers={"HX-Request": "true"}
    ).text
    assert [row[0] for row in rows(after, "waiting-chats")] == ["Анна"]


def test_the_search_is_at_its_own_address_and_still_posted(client: Client) -> None:
    body = webhook("message_created", chat="orphan", profile=None, message="hi")
    body["payload"]["chat"] |= {"phone": "8 912 000-11-22", "name": "Борис Орфанов"}
    deliver(client, body)
    form = client.get("/console/search", headers=ENGLISH).text
    assert "<h1>Search</h1>" in form
    assert '<form method="post" action="/console/search"' in form
    csrf = client.cookies["cdp_csrf"]
    for path in ("/console/search", "/console/"):  # where it was posted before, too
        found = client.post(path, data={"q": "+79120001122", "csrf": csrf})
        assert found.status_code == 200, path
        assert 'href="/console/chats/orphan"' in found.text, path
    assert client.post("/console/search", data={"q": "бор"}).status_code == 403  # no CSRF


@pytest.fixture
def served(serve: Callable[..., Server]) -> Server:
    """`cdp serve` of its own, whose quiet streams say so every second: a live list's stream
    is read as a browser reads it, as it comes."""
    return serve(CDP_STREAM_HEARTBEAT="1")


def live_messages(url: str, path: str, **headers: str) -> Iterator[Message]:
    """The messages of a live list's stream, the heartbeat's comments left out, until it
    ends; a minute of comments alone fails the test."""
    timeout = httpx.Timeout(10, read=60)
    with (
        httpx.Client(base_url=url, timeout=timeout) as client,
        client.stream("GET", path, headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        quiet = 0
        for message in messages(response):
            if message.event is None and message.retry is None:
                quiet += 1
                assert quiet < 60, "the stream said nothing for a minute"
                continue
            yield message


def post(url: str, *bodies: dict[str, Any]) -> None:
    for body in bodies:
        assert httpx.post(f"{url}/webhooks/fasttrack", json=body).status_code == 202


@pytest.mark.slow
def test_the_live_list_says_changed_as_webhooks_are_logged(served: Server) -> None:
    url = served.url
    post(url, *opened("c1", at=now_ms() - MINUTE))  # positions 1 and 2
    stream = live_messages(url, "/console/reports/waiting/live?after=1")
    assert next(stream).retry == 2000
    behind = next(stream)  # the page was drawn as of position 1: it is behind already
    assert (behind.event, behind.id, behind.data) == ("changed", 2, 2)
    post(url, customer("c1", now_ms()))
    logged = next(stream)
    assert (logged.event, logged.id) == ("changed", 3)
    stream.close()
    # Come again after the last it was told: nothing is behind, until the next webhook.
    again = live_messages(url, "/console/reports/waiting/live?after=1", **{"Last-Event-ID": "3"})
    assert next(again).retry == 2000
    post(url, reply("c1", at=now_ms()))
    assert next(again).id == 4
    again.close()


@pytest.mark.slow
def test_a_live_list_ends_once_its_token_is_revoked(served: Server, engine: Engine) -> None:
    with engine.begin() as connection:
        read = credentials.create_token(connection, "lead", "read")
        credentials.create_token(connection, "ops", "admin")  # the store stays closed
    for _ in range(600):  # the server reads its tokens again each second
        if httpx.get(f"{served.url}/teams").status_code == 401:
            break
        time.sleep(0.1)
    cookie = {"Cookie": f"cdp_console={read}"}
    stream = live_messages(served.url, "/console/reports/waiting/live", **cookie)
    assert next(stream).retry == 2000
    with engine.begin() as connection:
        credentials.revoke_token(connection, "lead")
    assert list(stream) == []  # it ends, with nothing more to say
    signed_out = httpx.get(f"{served.url}/console/reports/waiting/live", headers=cookie)
    assert (signed_out.status_code, signed_out.headers["location"]) == (303, "/console/sign-in")


@pytest.fixture
def closed(settings: Settings, engine: Engine) -> Iterator[tuple[Client, str]]:
    with engine.begin() as connection:
        read = credentials.create_token(connection, "lead", "read")
        credentials.create_token(connection, "ops", "admin")  # the store stays closed
    quiet = settings.model_copy(update={"stream_heartbeat": timedelta(seconds=1)})
    with TestClient(create_app(quiet), base_url="https://testserver.local") as client:
        yield client, read


def test_every_report_needs_a_sign_in(closed: tuple[Client, str]) -> None:
    client, read = closed
    for path in (
        "/console/",
        "/console/search",
        "/console/reports/trends",
        "/console/reports/trends.csv",
        "/console/reports/heatmap",
        "/console/reports/leaderboard",
        "/console/reports/breaches",
        "/console/reports/breaches.csv",
        "/console/reports/waiting",
        "/console/reports/waiting/live",
    ):
        answer = client.get(path, follow_redirects=False)
        assert (answer.status_code, answer.headers["location"]) == (303, "/console/sign-in"), path
    fragment = client.get("/console/reports/waiting", headers={"HX-Request": "true"})
    assert (fragment.status_code, fragment.headers["hx-redirect"]) == (401, "/console/sign-in")
    client.get("/console/sign-in")
    signed = client.post(
        "/console/sign-in",
        data={"token": read, "csrf": client.cookies["cdp_csrf"]},
        follow_redirects=False,
    )
    assert signed.status_code == 303
    assert client.get("/console/").status_code == 200
    assert client.get("/console/reports/trends").status_code == 200
