"""The console's pages without a browser, on both databases: who may see them, how forms
are protected, what they say in which language and zone, and what hostile input gets."""

import csv
import html
import io
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from litestar.testing import TestClient
from sqlalchemy import Engine, event

from cdp.access import credentials
from cdp.console import pages, views
from cdp.http.app import create_app
from cdp.paging import Listing
from cdp.privacy.keystore import Keystore
from cdp.settings import Settings
from tests.factories import JSON_TYPE, PAST, handoff, opened, samples, webhook

Client = TestClient  # type: ignore[type-arg]
CHAT = "0b6f7a52-3f8e-4d55-9a0e-6f1f3c2b9d10"
PROFILE = "5d2c1e0a-7b7f-4c1e-8d5e-2a9b4f6c8e01"


def browser(settings: Settings) -> Client:
    """A client that keeps the console's cookies, which are sent over HTTPS only."""
    return TestClient(create_app(settings), base_url="https://testserver.local")


@pytest.fixture
def open_console(settings: Settings) -> Iterator[Client]:
    with browser(settings) as client:
        for body in samples():
            assert (
                client.post("/webhooks/fasttrack", content=body, headers=JSON_TYPE).status_code
                == 202
            )
        yield client


def csrf(client: Client) -> str:
    if "cdp_csrf" not in client.cookies:
        client.get("/console/")
    value: str = client.cookies["cdp_csrf"]
    return value


def tokens(engine: Engine) -> tuple[str, str]:
    with engine.begin() as connection:
        return (
            credentials.create_token(connection, "lead", "read"),
            credentials.create_token(connection, "ops", "admin"),
        )


def test_an_open_store_shows_the_console_without_sign_in_and_says_it_is_open(
    open_console: Client,
) -> None:
    page = open_console.get("/console/", headers={"Accept-Language": "en"})
    assert page.status_code == 200
    assert "This store is open" in page.text
    assert 'href="/console/operations/"' in page.text  # nobody to refuse it to


def test_every_page_forbids_framing_caching_foreign_scripts_and_referrers(
    open_console: Client,
) -> None:
    for path in ("/console/", f"/console/chats/{CHAT}", "/console/sign-in", "/console/chats/x"):
        page = open_console.get(path)
        assert page.headers["content-security-policy"].startswith("default-src 'none'")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["x-frame-options"] == "DENY"


def test_the_icon_browsers_ask_for_is_served_with_the_headers_of_every_answer(
    settings: Settings, engine: Engine
) -> None:
    tokens(engine)  # a closed store: the icon needs no sign-in, as the style sheet needs none
    with browser(settings) as client:
        icon = client.get("/favicon.ico")
        page = client.get("/console/sign-in")
        named = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', page.text)
        assert named is not None
        svg = client.get(named.group(1))
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/vnd.microsoft.icon"
    assert icon.content.startswith(b"\0\0\1\0")  # an ICO file
    assert svg.status_code == 200
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.text.startswith("<svg ")
    for answer in (icon, svg):
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["cross-origin-resource-policy"] == "same-origin"
        assert answer.headers["content-security-policy"].startswith("default-src 'none'")


def test_a_search_is_posted_and_refused_without_the_forms_csrf_value(
    open_console: Client,
) -> None:
    form = {"q": "+7 999 123-45-67"}
    assert open_console.post("/console/", data=form).status_code == 403
    forged = open_console.post("/console/", data={**form, "csrf": "x" * 43})
    assert forged.status_code == 403
    assert "did not come from a page of the console" in forged.text
    for elsewhere in ("cross-site", "same-site"):  # a sibling subdomain can plant cookies
        refused = open_console.post(
            "/console/",
            data={**form, "csrf": csrf(open_console)},
            headers={"Sec-Fetch-Site": elsewhere},
        )
        assert refused.status_code == 403
    found = open_console.post("/console/", data={**form, "csrf": csrf(open_console)})
    assert found.status_code == 200
    assert f'href="/console/profiles/{PROFILE}"' in found.text


def test_a_search_finds_by_uuid_by_phone_in_any_spelling_and_by_the_start_of_a_name(
    open_console: Client,
) -> None:
    token = csrf(open_console)
    for text in (PROFILE, "89991234567", "+7 (999) 123 45 67", "анн", "АННА"):
        found = open_console.post("/console/", data={"q": text, "csrf": token})
        assert f'href="/console/profiles/{PROFILE}"' in found.text, text
    by_chat = open_console.post("/console/", data={"q": CHAT, "csrf": token})
    assert f'href="/console/chats/{CHAT}"' in by_chat.text
    for text in ("89990000000", "Борис", "x" * 5000, "a\x00b", "'; DROP TABLE chats; --"):
        nothing = open_console.post("/console/", data={"q": text, "csrf": token})
        assert nothing.status_code == 200, text
        assert "/console/profiles/" not in nothing.text, text


def test_a_form_larger_than_any_the_console_sends_is_refused_unread(
    open_console: Client,
) -> None:
    answer = open_console.post("/console/", data={"q": "x" * 100_000, "csrf": csrf(open_console)})
    assert answer.status_code == 413


def test_a_closed_store_sends_the_browser_to_sign_in_and_keeps_the_token_in_a_cookie(
    settings: Settings, engine: Engine
) -> None:
    read, _ = tokens(engine)
    with browser(settings) as client:
        page = client.get(f"/console/chats/{CHAT}", follow_redirects=False)
        assert (page.status_code, page.headers["location"]) == (303, "/console/sign-in")
        fragment = client.get(f"/console/chats/{CHAT}", headers={"HX-Request": "true"})
        assert (fragment.status_code, fragment.headers["hx-redirect"]) == (401, "/console/sign-in")
        form = client.get("/console/sign-in")
        assert 'type="password"' in form.text
        signed = client.post(
            "/console/sign-in",
            data={"token": read, "csrf": csrf(client)},
            follow_redirects=False,
        )
        assert (signed.status_code, signed.headers["location"]) == (303, "/console/")
        cookie = signed.headers["set-cookie"]
        assert all(
            part in cookie for part in ("HttpOnly", "Secure", "SameSite=lax", "Path=/console")
        )
        assert client.get("/console/").status_code == 200
        again = client.get("/console/sign-in", follow_redirects=False)
        assert (again.status_code, again.headers["location"]) == (303, "/console/")
        # The token is the API's: the same read limit and the same 403 for admin work.
        assert client.get("/console/operations/").status_code == 403
        assert read not in client.get("/console/").text


def test_a_sign_in_without_the_forms_csrf_value_is_refused(
    settings: Settings, engine: Engine
) -> None:
    read, _ = tokens(engine)
    with browser(settings) as client:
        answer = client.post("/console/sign-in", data={"token": read}, follow_redirects=False)
        assert answer.status_code == 403
        assert "cdp_console" not in client.cookies


def test_wrong_tokens_count_against_the_address_as_on_the_api(
    settings: Settings, engine: Engine
) -> None:
    tokens(engine)
    with browser(settings) as client:
        token = csrf(client)
        statuses = [
            client.post("/console/sign-in", data={"token": f"wrong-{n}", "csrf": token}).status_code
            for n in range(12)
        ]
        assert statuses[0] == 401
        assert statuses[-1] == 429


@pytest.mark.parametrize(
    ("accept_language", "expected"),
    [("ru-RU,ru;q=0.9,en;q=0.8", "Поиск"), ("en-GB,en;q=0.9", "Search"), ("de-DE", "Search")],
)
def test_the_console_speaks_the_browsers_language(
    open_console: Client, accept_language: str, expected: str
) -> None:
    page = open_console.get("/console/search", headers={"Accept-Language": accept_language})
    assert f"<h1>{expected}</h1>" in page.text
    assert f'<html lang="{"ru" if expected == "Поиск" else "en"}">' in page.text


def test_times_are_shown_in_the_configured_zone_with_utc_on_hover(settings: Settings) -> None:
    zoned = settings.model_copy(update={"timezone": "Asia/Almaty"})
    with browser(zoned) as client:
        for body in samples():
            client.post("/webhooks/fasttrack", content=body, headers=JSON_TYPE)
        page = client.get(f"/console/chats/{CHAT}").text
    # The customer's first message: 2026-05-05 07:46:12.150 UTC.
    assert (
        '<time datetime="2026-05-05T07:46:12.150Z" title="2026-05-05 07:46:12 UTC">'
        "2026-05-05 12:46:12</time>"
    ) in page
    assert "Asia/Almaty" in page


def test_a_timeline_page_asked_by_the_page_itself_is_the_fragment_alone(settings: Settings) -> None:
    with browser(settings) as client:
        bodies = opened("long", at=PAST, team=1)
        bodies += [
            webhook("message_created", chat="long", at=PAST + n * 1000, message=f"m{n}")
            for n in range(1, 80)
        ]
        for body in bodies:
            client.post("/webhooks/fasttrack", content=json.dumps(body), headers=JSON_TYPE)
        first = client.get("/console/chats/long").text
        after = re.search(r'hx-get="/console/chats/long\?after=([^"]+)"', first)
        assert after is not None
        fragment = client.get(
            f"/console/chats/long?after={after.group(1)}", headers={"HX-Request": "true"}
        )
        assert not fragment.text.lstrip().startswith("<!doctype")
        assert "(continued)" in fragment.text or "(продолжение)" in fragment.text
        shown = re.findall(r"m(\d+)</p>", first) + re.findall(r"m(\d+)</p>", fragment.text)
        assert [int(n) for n in shown] == list(range(1, 80))
        assert "Load more" not in fragment.text
        assert "Показать ещё" not in fragment.text


def test_a_link_a_sender_wrote_is_a_link_only_if_it_is_http(settings: Settings) -> None:
    with browser(settings) as client:
        for url, name in (
            ("javascript:alert(1)", "evil.pdf"),
            ("https://files.example.com/a.pdf", "a.pdf"),
        ):
            body = webhook("operator_replied", chat="files", at=PAST, operator="op", team=1)
            body["payload"]["message"] = {
                "uuid": name,
                "type": "document",
                "url": url,
                "name": name,
            }
            body["timestamp"] += len(name)
            client.post("/webhooks/fasttrack", content=json.dumps(body), headers=JSON_TYPE)
        page = client.get("/console/chats/files").text
    assert 'href="https://files.example.com/a.pdf"' in page
    assert "javascript:" not in page
    assert "evil.pdf" in page


def test_text_a_sender_wrote_is_shown_as_text_never_as_markup(settings: Settings) -> None:
    with browser(settings) as client:
        body = webhook("message_created", chat="x", at=PAST, message="<script>alert(1)</script>")
        body["payload"]["chat"]["name"] = '"><img src=x onerror=alert(1)>'
        client.post("/webhooks/fasttrack", content=json.dumps(body), headers=JSON_TYPE)
        pages = [client.get("/console/chats/x").text, client.get("/console/log").text]
    for page in pages:
        assert "<script>alert" not in page
        assert "<img src=x" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_hostile_parameters_get_a_page_naming_what_is_wrong(open_console: Client) -> None:
    cases = {
        "/console/teams/12?since=yesterday": "since",
        "/console/teams/12?since=2026-05-06&until=2026-05-01": "since",
        "/console/handoffs?team_id=-1": "team_id",
        "/console/handoffs?after=bm90IGEgY3Vyc29y": "after",
        "/console/log?after=x": "after",
        "/console/chats/x?nope=1": "nope",
        "/console/teams/99999999999999999999": "team_id",
    }
    for path, named in cases.items():
        page = open_console.get(path, headers={"Accept-Language": "en"})
        assert page.status_code == 400, path
        assert named in page.text, path
        assert page.text.lstrip().startswith("<!doctype html>"), path
    missing = open_console.get("/console/teams/7")
    assert missing.status_code == 404
    assert "no team 7" in missing.text


def test_the_handoff_audit_csv_holds_every_handoff_the_filter_selects_and_no_formula(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pages, "CSV_PAGE", 4)  # the CSV is read page by page
    with browser(settings) as client:
        bodies = []
        for n in range(10):
            at = PAST + n * 60_000
            bodies += [
                *opened(f"c{n}", at=at, team=1),
                handoff(f"c{n}", at=at + 1000, team=2, team_name='=HYPERLINK("x")'),
            ]
        bodies.append(handoff("c0", at=PAST + 3_600_000, team=3, team_name=" -1+1"))
        for body in bodies:
            client.post("/webhooks/fasttrack", content=json.dumps(body), headers=JSON_TYPE)
        answer = client.get("/console/handoffs.csv?team_id=2")
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.headers["content-disposition"] == 'attachment; filename="handoffs-team-2.csv"'
    rows = list(csv.DictReader(io.StringIO(answer.content.decode("utf-8-sig"))))
    assert [row["chat_uuid"] for row in rows] == [f"c{n}" for n in range(10)] + ["c0"]
    assert {row["to_team"] for row in rows[:10]} == {'\'=HYPERLINK("x")'}
    assert rows[10]["to_team"] == "' -1+1"
    assert rows[0]["at_utc"] == "2026-04-24T03:06:41.000Z"


def test_a_team_page_counts_first_responses_by_length(open_console: Client) -> None:
    page = open_console.get(
        "/console/teams/12?since=2026-05-01&until=2026-05-31", headers={"Accept-Language": "en"}
    )
    assert page.status_code == 200
    # The sample's one wait: 62.9 s, in the 1 to 5 minute bar.
    description = re.search(r"<desc id=\"chart-desc\">(.*?)</desc>", page.text, re.S)
    assert description is not None
    assert "&lt; 1 min: 0; 1 min–5 min: 1; 5 min–15 min: 0;" in description.group(1)


def _figure(page: str, label: str) -> str:
    found = re.search(rf"<dt>{re.escape(label)}</dt><dd>([^<]*)</dd>", page)
    assert found is not None, label
    return found.group(1)


def test_a_team_page_with_no_days_chosen_shows_the_week_up_to_the_teams_latest_activity(
    open_console: Client,
) -> None:
    """The samples are of May 2026: the page opened later shows their week, not zeros, and
    says which days it shows, with a link to the last seven."""
    page = open_console.get("/console/teams/15", headers={"Accept-Language": "en"}).text
    assert _figure(page, "Handed in") == "1"
    assert _figure(page, "Operator replies") == "1"
    # Its latest activity: Игорь's reply, 2026-05-05 07:51:52 UTC, 10:51:52 in Moscow.
    period = re.search(r'<p class="period" id="period">(.*?)</p>', page, re.S)
    assert period is not None
    said = html.unescape(" ".join(re.sub(r"<[^>]+>", "", period.group(1)).split()))
    today = datetime.now(ZoneInfo("Europe/Moscow")).date()
    week = f"since={today - timedelta(days=6)}&amp;until={today}"
    assert said == (
        "Period: 2026-04-29 – 2026-05-05, the 7 days up to the team's latest activity "
        "(2026-05-05 10:51:52). Show the last 7 days"
    )
    assert f'href="/console/teams/15?{week}"' in period.group(1)
    assert 'id="since" name="since" type="date" value="2026-04-29"' in page
    assert 'id="until" name="until" type="date" value="2026-05-05"' in page
    russian = open_console.get("/console/teams/15", headers={"Accept-Language": "ru"}).text
    assert "Период:" in russian
    assert "7 дней до последней активности команды" in russian


def test_a_team_page_shows_the_days_chosen_as_before_and_says_which(
    open_console: Client,
) -> None:
    english = {"Accept-Language": "en"}
    later = open_console.get("/console/teams/15?since=2026-06-01&until=2026-06-07", headers=english)
    assert _figure(later.text, "Handed in") == "0"
    assert "Period:\n  <strong>2026-06-01 – 2026-06-07</strong>." in later.text
    assert "latest activity" not in later.text
    day = open_console.get("/console/teams/15?since=2026-05-05&until=2026-05-05", headers=english)
    assert _figure(day.text, "Handed in") == "1"
    assert "<strong>2026-05-05</strong>." in day.text
    since = open_console.get("/console/teams/15?since=2026-05-01", headers=english)
    assert _figure(since.text, "Handed in") == "1"
    assert "<strong>from 2026-05-01 on</strong>." in since.text


def test_the_operations_page_says_each_projections_status_in_russian(
    open_console: Client,
) -> None:
    page = open_console.get("/console/operations/", headers={"Accept-Language": "ru"}).text
    badges = re.findall(r'<span class="badge (\w+)">([^<]*)</span>', page)
    assert badges
    assert set(badges) == {("live", "актуальна")}


def test_the_chat_page_names_its_profile_and_keeps_the_uuid_as_the_links_target(
    open_console: Client,
) -> None:
    page = open_console.get(f"/console/chats/{CHAT}").text
    assert f'<a href="/console/profiles/{PROFILE}" title="{PROFILE}">Анна</a>' in page


def test_the_handoff_audit_names_each_chat_reading_a_pages_names_at_once(
    settings: Settings, engine: Engine
) -> None:
    with browser(settings) as client:
        bodies = []
        for n in range(12):
            at, name = PAST + n * 60_000, f"Клиент {n}"
            bodies += [
                *opened(f"c{n}", at=at, team=1, name=name),
                handoff(f"c{n}", at=at + 1000, team=2, name=name),
            ]
        bodies += [
            *opened("nameless", at=PAST, team=1),
            handoff("nameless", at=PAST + 60_000, team=2),
        ]
        for body in bodies:
            client.post("/webhooks/fasttrack", content=json.dumps(body), headers=JSON_TYPE)
        page = client.get("/console/handoffs?team_id=2").text
    # The name shown, the uuid the link's target and title; a chat with no name, its uuid.
    assert '<a href="/console/chats/c3" title="c3">Клиент 3</a>' in page
    assert '<a href="/console/chats/nameless" title="nameless">nameless</a>' in page
    keystore = Keystore.at(settings.keystore(), key_file=settings.key_path())
    engines = [engine, *([keystore.engine] if keystore.engine is not None else [])]

    def statements(size: int) -> tuple[int, int]:
        """How many statements a page of `size` handoffs takes, and how many it names."""
        ran: list[str] = []

        def seen(_c: object, _cursor: object, statement: str, *_: object) -> None:
            ran.append(statement)

        for each in engines:
            event.listen(each, "before_cursor_execute", seen)
        try:
            with engine.connect() as connection:
                found = views.audit(connection, keystore, Listing(None, size), 2, None, None)
        finally:
            for each in engines:
                event.remove(each, "before_cursor_execute", seen)
        return len(ran), len(found.chat_names)

    statements(13)  # the keystore reads its keys once
    one, named_one = statements(1)
    many, named_many = statements(13)
    keystore.dispose()
    assert (named_one, named_many) == (1, 12)
    assert many == one  # not a statement more for each chat


def test_a_search_finds_chats_that_no_profile_owns_by_phone_and_by_name(
    open_console: Client,
) -> None:
    body = webhook("message_created", chat="orphan", profile=None, message="hi")
    body["payload"]["chat"] |= {"phone": "8 912 000-11-22", "name": "Борис Орфанов"}
    assert (
        open_console.post(
            "/webhooks/fasttrack", content=json.dumps(body), headers=JSON_TYPE
        ).status_code
        == 202
    )
    for text in ("+79120001122", "бор"):
        found = open_console.post("/console/", data={"q": text, "csrf": csrf(open_console)})
        assert 'href="/console/chats/orphan"' in found.text, text


def test_a_profile_of_many_chats_shows_a_page_of_them_and_a_link_to_the_next(
    settings: Settings,
) -> None:
    with browser(settings) as client:
        for n in range(45):
            body = webhook(
                "message_created",
                chat=f"c{n:02}",
                profile="many",
                at=PAST + n,
                message=str(n),
                name="Многочатов",
            )
            client.post("/webhooks/fasttrack", content=json.dumps(body), headers=JSON_TYPE)
        english = {"Accept-Language": "en"}
        found = client.post("/console/", data={"q": "много", "csrf": csrf(client)}, headers=english)
        card = re.search(r'<li class="card">.*?</li>', found.text, re.S)
        assert card is not None
        assert card.group(0).count("Telegram") == 5
        assert '<a href="/console/profiles/many">more chats</a>' in card.group(0)
        forged = client.get("/console/profiles/many?after=nonsense", headers=english)
        assert forged.status_code == 400
        page = client.get("/console/profiles/many", headers=english).text
        shown = [re.findall(r'href="/console/chats/(c\d\d)"', page)]
        while after := re.search(r'hx-get="/console/profiles/many\?after=([^"]+)"', page):
            link = f"/console/profiles/many?after={after.group(1)}"
            assert f'href="{link}"' in page  # a browser without scripts follows the link
            page = client.get(link, headers={**english, "HX-Request": "true"}).text
            assert not page.lstrip().startswith("<!doctype")
            shown.append(re.findall(r'href="/console/chats/(c\d\d)"', page))
        whole = client.get(link, headers=english).text  # the same page, in the whole one
    assert [len(set(page)) for page in shown] == [20, 20, 5]
    assert [chat for page in shown for chat in dict.fromkeys(page)] == [
        f"c{n:02}" for n in range(45)
    ]
    assert "<h1>" in whole
    assert set(re.findall(r'href="/console/chats/(c\d\d)"', whole)) == set(shown[-1])
    assert "More chats" not in page


def test_days_of_any_spelling_but_a_day_are_refused_and_the_last_day_is_no_error(
    open_console: Client,
) -> None:
    for path in ("/console/handoffs", "/console/handoffs.csv", "/console/teams/12"):
        assert open_console.get(path, params={"until": "9999-12-31"}).status_code == 200, path
        for day in ("\r\n2026-05-05", " 2026-05-05", "2026-W19-2", "20260505"):
            answer = open_console.get(path, params={"since": day})
            assert answer.status_code == 400, (path, day)
            assert "content-disposition" not in answer.headers


def test_a_huge_body_in_the_log_is_shown_as_received_and_cut_short(
    open_console: Client,
) -> None:
    body = webhook("message_created", chat="big", message="x")
    body["extra"] = [[[n] for n in range(10_000)]]
    raw = json.dumps(body)
    assert (
        open_console.post("/webhooks/fasttrack", content=raw, headers=JSON_TYPE).status_code == 202
    )
    page = open_console.get("/console/log", params={"chat_uuid": "big"}).text
    assert "[[[0], [1], [2]" in page  # as received, not indented line by line
    small = open_console.get("/console/log", params={"chat_uuid": CHAT, "limit": 1}).text
    assert "\n  &#34;event_type&#34;: " in small or '\n  "event_type": ' in small


def test_a_message_too_large_to_show_is_said_to_be_in_the_log_and_a_nested_one_shown(
    settings: Settings,
) -> None:
    with browser(settings) as client:
        large = webhook("message_created", chat="odd", at=PAST, message="x")
        large["payload"]["message"]["parts"] = ["y" * 60_000] * 5
        deep = webhook("message_created", chat="odd", at=PAST + 1, message="z")
        deep["payload"]["message"]["parts"] = json.loads("[" * 50 + "]" * 50)  # taken: < 64
        for body in (large, deep):
            client.post("/webhooks/fasttrack", content=json.dumps(body), headers=JSON_TYPE)
        page = client.get("/console/chats/odd", headers={"Accept-Language": "en"})
    assert page.status_code == 200
    assert page.text.count("cut short: the whole of it is in the log") == 1
    assert ">z</p>" in page.text  # nested deep, but within reason: shown


def test_the_sign_in_page_says_when_the_browser_cannot_keep_its_cookie(
    settings: Settings, engine: Engine
) -> None:
    tokens(engine)
    app = create_app(settings)
    with TestClient(app, base_url="http://cdp.example.com") as plain:
        page = plain.get("/console/sign-in", headers={"Accept-Language": "en"})
        assert "browsers keep the sign-in only over HTTPS" in page.text
    for base in ("https://cdp.example.com", "http://127.0.0.1:8000"):
        with TestClient(app, base_url=base) as client:
            page = client.get("/console/sign-in", headers={"Accept-Language": "en"})
            assert "only over HTTPS" not in page.text, base


def test_a_search_shows_twenty_chats_and_says_when_more_match(open_console: Client) -> None:
    for n in range(21):
        body = webhook("message_created", chat=f"b{n:02}", profile=None, at=PAST + n, message="hi")
        body["payload"]["chat"]["name"] = f"Борис {n}"
        open_console.post("/webhooks/fasttrack", content=json.dumps(body), headers=JSON_TYPE)
    found = open_console.post(
        "/console/",
        data={"q": "бор", "csrf": csrf(open_console)},
        headers={"Accept-Language": "en"},
    ).text
    assert len(re.findall(r'href="/console/chats/b\d\d"', found)) == 20
    assert "More match: make the search longer." in found
