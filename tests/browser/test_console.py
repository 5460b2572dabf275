"""A support lead, an analyst and an operator of the service, each in a real browser."""

import csv
import io
import time

import httpx
from playwright.sync_api import BrowserContext, expect

from cdp.access import credentials
from cdp.db import make_engine
from tests.browser.conftest import Console, screenshot, sign_in
from tests.browser.story import EXCHANGES, PROFILE, TELEGRAM, WHATSAPP


def test_a_support_lead_finds_a_customer_by_phone_and_sees_who_handled_each_chat(
    console: Console, context: BrowserContext
) -> None:
    page = context.new_page()
    sign_in(page, console, console.read_token)

    # The phone as the customer dictated it, not as either messenger spelled it.
    page.get_by_label("Телефон, uuid профиля или чата, или начало имени (от трёх букв)").fill(
        "+7 999 123 45 67"
    )
    page.get_by_role("button", name="Найти").click()
    profiles = page.get_by_role("list", name="Профили")
    expect(profiles.get_by_role("listitem")).to_have_count(1)
    expect(profiles).to_contain_text("Telegram · WhatsApp")
    screenshot(page, "console-search")

    profiles.get_by_role("link", name="Анна").click()
    expect(page).to_have_url(f"{console.url}/console/profiles/{PROFILE}")
    page.keyboard.press("Tab")  # the first stop: past the navigation, to the page itself
    expect(page.get_by_role("link", name="Перейти к содержимому")).to_be_focused()
    expect(page.get_by_role("heading", level=2)).to_have_text(
        ["Telegram · Анна", "WhatsApp · Анна"]
    )
    whatsapp = page.get_by_role("region", name="WhatsApp · Анна")
    # Who handled it and when: the teams in turn, the operators who replied.
    session = whatsapp.get_by_role("row").nth(1)
    expect(session).to_contain_text("2026-05-06 10:00:00")
    expect(session).to_contain_text("Первая линия → Вторая линия")
    expect(session).to_contain_text("Светлана, Игорь")

    whatsapp.get_by_role("link", name="Открыть чат").click()
    expect(page).to_have_url(f"{console.url}/console/chats/{WHATSAPP}")
    expect(page.locator(".facts.now")).to_contain_text("Вторая линия")
    owner = page.locator(".facts.now").get_by_role("link", name="Анна")
    expect(owner).to_have_attribute("href", f"/console/profiles/{PROFILE}")
    handoff = page.locator(".marker.handoff")
    expect(handoff).to_contain_text("из «Первая линия» в «Вторая линия»")
    expect(handoff).to_contain_text("Первый ответ через 3 мин")
    reply = page.locator(".bubble.reply").first
    expect(reply).to_contain_text("Светлана · Первая линия")
    expect(reply).to_contain_text("Передаю коллегам из второй линии")
    expect(page.locator(".session-head")).to_contain_text("Первый ответ через 1 мин 35 с")
    # The time in Moscow, and in UTC on hover.
    stamp = reply.locator("time")
    expect(stamp).to_have_text("2026-05-06 10:01:35")
    expect(stamp).to_have_attribute("title", "2026-05-06 07:01:35 UTC")
    screenshot(page, "console-chat")

    # A long timeline comes page by page, each page added below the one before.
    bubbles = page.locator(".bubble")
    expect(bubbles).to_have_count(50 - 2)  # the opening and the handoff are markers
    page.get_by_role("link", name="Показать ещё").click()
    expect(bubbles).to_have_count(3 + 2 * EXCHANGES)
    expect(bubbles.last).to_contain_text(f"Ответ номер {EXCHANGES}")
    expect(page.get_by_text("Это всё.")).to_be_visible()
    expect(page.get_by_role("link", name="Показать ещё")).to_have_count(0)

    # Every item links to its event in the log, pretty-printed.
    bubbles.last.get_by_role("link").click()
    expect(page.locator("pre.body")).to_contain_text(f'"text": "Ответ номер {EXCHANGES}"')


def test_the_handoff_audit_downloads_as_csv_holding_the_rows_shown(
    console: Console, context: BrowserContext
) -> None:
    page = context.new_page()
    sign_in(page, console, console.read_token)
    page.get_by_role("link", name="Передачи").click()
    page.get_by_label("Команда").select_option(label="Вторая линия (15)")
    page.get_by_label("С", exact=True).fill("2026-05-06")
    page.get_by_label("По (включительно)").fill("2026-05-06")
    page.get_by_role("button", name="Показать").click()
    rows = page.locator("#handoffs tbody tr")
    expect(rows).to_have_count(1)
    shown = [cell.strip() for cell in rows.first.locator("td").all_inner_texts()]

    with page.expect_download() as waiting:
        page.get_by_role("link", name="Скачать CSV").click()
    download = waiting.value
    assert download.suggested_filename == "handoffs-team-15-2026-05-06-2026-05-06.csv"
    lines = list(csv.DictReader(io.StringIO(download.path().read_text(encoding="utf-8-sig"))))
    assert len(lines) == 1
    line = lines[0]
    assert line["at"] == "2026-05-06T10:02:00.000+03:00"
    assert line["at_utc"] == "2026-05-06T07:02:00.000Z"
    assert [line["chat_uuid"], line["session"], line["from_team"], line["to_team"]] == [
        WHATSAPP,
        "1",
        "Первая линия",
        "Вторая линия",
    ]
    # The chat by its customer's name, the uuid the link's target (as in the CSV) and title.
    assert shown[:5] == ["2026-05-06 10:02:00", "Анна", "1", "Первая линия", "Вторая линия"]
    chat = rows.first.get_by_role("link", name="Анна")
    expect(chat).to_have_attribute("href", f"/console/chats/{WHATSAPP}")
    expect(chat).to_have_attribute("title", WHATSAPP)

    # The team the chat went to: its figures for the day and its first responses by length.
    rows.first.get_by_role("link", name="Вторая линия").click()
    expect(page).to_have_url(f"{console.url}/console/teams/15")
    page.get_by_label("С", exact=True).fill("2026-05-06")
    page.get_by_label("По (включительно)").fill("2026-05-06")
    page.get_by_role("button", name="Показать").click()
    figures = page.locator(".figures")
    expect(figures.locator("div").filter(has_text="Передано в команду")).to_contain_text("1")
    expect(figures.locator("div").filter(has_text="Ответов операторов")).to_contain_text(
        str(1 + EXCHANGES)
    )
    expect(figures.locator("div").filter(has_text="Медиана первого ответа")).to_contain_text(
        "3 мин"
    )
    expect(page.get_by_role("img", name="Время первого ответа")).to_be_visible()
    expect(page.locator("#chart-desc")).to_contain_text("1 мин–5 мин: 1;")
    expect(page.get_by_role("table").last).to_contain_text("Анна")
    screenshot(page, "console-team")

    page.get_by_role("link", name="Передачи").click()
    expect(page).to_have_url(f"{console.url}/console/handoffs")
    # The day before holds the samples' handoff alone, in her Telegram chat.
    page.get_by_label("С", exact=True).fill("2026-05-05")
    page.get_by_label("По (включительно)").fill("2026-05-05")
    page.get_by_role("button", name="Показать").click()
    expect(rows).to_have_count(1)
    expect(rows.first.get_by_role("link", name="Анна")).to_have_attribute(
        "href", f"/console/chats/{TELEGRAM}"
    )
    # And the day before that, none.
    page.get_by_label("С", exact=True).fill("2026-05-04")
    page.get_by_label("По (включительно)").fill("2026-05-04")
    page.get_by_role("button", name="Показать").click()
    expect(page.get_by_text("Передач не найдено.")).to_be_visible()


def test_a_read_token_may_look_but_not_rebuild_and_an_admin_token_may(
    console: Console, context: BrowserContext
) -> None:
    page = context.new_page()
    sign_in(page, console, console.read_token)
    expect(page.get_by_role("navigation")).not_to_contain_text("Обслуживание")
    answer = page.goto(f"{console.url}/console/operations/")
    assert answer is not None
    assert answer.status == 403
    expect(page.get_by_role("alert")).to_contain_text("this needs an admin token")
    # The rebuild form posted with the read token's cookie and a valid CSRF value.
    csrf = next(c["value"] for c in context.cookies() if c["name"] == "cdp_csrf")
    refused = page.request.post(
        f"{console.url}/console/operations/rebuild", form={"csrf": csrf, "projection": ""}
    )
    assert refused.status == 403

    page.get_by_role("button", name="Выйти").click()
    expect(page).to_have_url(f"{console.url}/console/sign-in")
    sign_in(page, console, console.admin_token)
    page.get_by_role("link", name="Обслуживание").click()
    table = page.locator("#projections")
    expect(table).to_contain_text("chats")
    page.get_by_label("Перестроить").select_option("chats")
    page.get_by_role("button", name="Перестроить").click()
    # The build runs beside the live tables and ends live; the page follows it by itself,
    # in the browser's language.
    row = table.get_by_role("row").filter(has_text="chats")
    expect(row).to_contain_text("завершена", timeout=30_000)
    expect(row.locator(".badge")).to_have_text("актуальна")
    states = httpx.get(
        f"{console.url}/projections",
        headers={"Authorization": f"Bearer {console.admin_token}"},
    ).json()["items"]
    chats = next(state for state in states if state["name"] == "chats")
    assert (chats["build"]["state"], chats["status"]) == ("done", "live")


def test_a_wrong_token_is_refused_and_a_revoked_one_signs_the_browser_out(
    console: Console, context: BrowserContext
) -> None:
    page = context.new_page()
    page.goto(f"{console.url}/console/chats/{TELEGRAM}")
    expect(page).to_have_url(f"{console.url}/console/sign-in")
    page.get_by_label("Токен").fill("cdpt_not-a-token")
    page.get_by_role("button", name="Войти").click()
    expect(page.get_by_role("alert")).to_have_text("Этот токен недействителен.")
    expect(page.get_by_label("Токен")).to_have_attribute("aria-invalid", "true")
    assert not [c for c in context.cookies() if c["name"] == "cdp_console"]
    sign_in(page, console, console.read_token)
    cookie = next(c for c in context.cookies() if c["name"] == "cdp_console")
    assert (cookie["httpOnly"], cookie["secure"]) == (True, True)
    assert (cookie["sameSite"], cookie["path"]) == ("Lax", "/console")

    page.goto(f"{console.url}/console/chats/{TELEGRAM}")
    expect(page.locator("h1")).to_contain_text("Анна")
    engine = make_engine(console.database)
    with engine.begin() as connection:
        credentials.revoke_token(connection, "lead")
    engine.dispose()
    time.sleep(1.2)  # tokens are read again at most a second after they change
    page.reload()
    expect(page).to_have_url(f"{console.url}/console/sign-in")
    expect(page.get_by_role("status")).to_have_text("Токен больше не действует: войдите снова.")
    assert not [c for c in context.cookies() if c["name"] == "cdp_console"]


def test_the_console_fits_a_phones_screen(console: Console, context: BrowserContext) -> None:
    page = context.new_page()
    page.set_viewport_size({"width": 360, "height": 740})
    sign_in(page, console, console.read_token)
    for path in (f"/console/profiles/{PROFILE}", "/console/teams/15", f"/console/chats/{WHATSAPP}"):
        page.goto(f"{console.url}{path}")
        # Nothing wider than the screen but the tables, which scroll in their own box.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 360, path
    expect(page.locator(".bubble").first).to_be_in_viewport()


def test_a_table_wider_than_a_phone_scrolls_in_its_box_and_says_so(
    console: Console, context: BrowserContext
) -> None:
    page = context.new_page()
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, console, console.admin_token)
    every_table_boxed = (
        "[...document.querySelectorAll('table')]"
        ".every(table => table.parentElement.classList.contains('scroll'))"
    )
    for path in (
        "/console/teams",
        "/console/teams/15",
        "/console/handoffs",
        f"/console/profiles/{PROFILE}",
        "/console/operations/",
    ):
        page.goto(f"{console.url}{path}")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
        assert page.evaluate(every_table_boxed), path
        # Each box that is wider than the screen says so above it, and takes the focus.
        for box in page.locator(".scroll.wide").all():
            hint = box.locator("xpath=preceding-sibling::*[1]")
            expect(hint).to_have_class("scroll-hint")
            expect(hint).to_be_visible()
            expect(hint).to_have_text("Шире экрана: прокрутите вбок →")
            expect(box).to_have_attribute("tabindex", "0")

    page.goto(f"{console.url}/console/handoffs")
    box = page.locator(".scroll")
    expect(box).to_have_class("scroll wide")
    # A shadow at the edge with more beyond it.
    assert "radial-gradient" in box.evaluate("box => getComputedStyle(box).backgroundImage")
    last = page.locator("#handoffs thead th").last
    expect(last).not_to_be_in_viewport()
    screenshot(page, "console-phone")
    box.focus()
    for _ in range(30):
        page.keyboard.press("ArrowRight")
    expect(last).to_be_in_viewport()

    page.set_viewport_size({"width": 1280, "height": 860})  # wide enough: nothing to say
    expect(page.locator(".scroll-hint")).to_be_hidden()
    expect(box).not_to_have_attribute("tabindex", "0")
