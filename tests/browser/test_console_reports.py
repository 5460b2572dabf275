"""A support lead's reports in a real browser: who is waiting now, following the log and the
clock by itself, and a trend drawn with its numbers beside it."""

import csv
import io

import httpx
from playwright.sync_api import BrowserContext, expect

from tests.browser.conftest import Console, screenshot, sign_in
from tests.factories import now_ms, opened, reply

MINUTE = 60_000
SECOND_LINE = {"team": 15, "team_name": "Вторая линия"}


def post(console: Console, *bodies: dict[str, object]) -> None:
    for body in bodies:
        answer = httpx.post(f"{console.url}/webhooks/fasttrack", json=body)
        assert answer.status_code == 202, answer.text


def test_a_lead_sees_who_is_waiting_and_the_list_follows_webhooks_and_the_clock(
    console: Console, context: BrowserContext
) -> None:
    admin = {"Authorization": f"Bearer {console.admin_token}"}
    target = {"first_reply_seconds": 600, "next_reply_seconds": 300}
    assert httpx.put(f"{console.url}/reports/targets/15", json=target, headers=admin).is_success
    now = now_ms()
    post(console, *opened("w-petr", at=now - 9 * MINUTE, name="Пётр", **SECOND_LINE))
    post(console, *opened("w-olga", at=now - 2 * MINUTE, name="Ольга", **SECOND_LINE))

    page = context.new_page()
    # The start page is who is waiting now; it follows the log on a stream of its own.
    with page.expect_response(lambda answer: "/console/reports/waiting/live" in answer.url) as live:
        sign_in(page, console, console.read_token)
    assert live.value.status == 200
    assert live.value.headers["content-type"].startswith("text/event-stream")
    expect(page.get_by_role("heading", level=1)).to_have_text("Ждут ответа")
    rows = page.locator("#waiting-chats tbody tr")
    expect(rows).to_have_count(2)
    petr = rows.filter(has_text="Пётр")
    expect(rows.first).to_contain_text("Пётр")  # the longest wait first
    expect(petr).to_contain_text("Вторая линия")
    expect(petr).to_contain_text("первый ответ: 10 мин")
    expect(petr.locator(".badge")).to_have_text("под угрозой")  # 9 of its 10 minutes
    expect(rows.filter(has_text="Ольга").locator(".badge")).to_have_text("в пределах нормы")
    expect(page.locator(".team-counts")).to_contain_text("ждут: 2 · под угрозой: 1 · нарушено: 0")
    # How long each has waited goes on by itself.
    waited = petr.locator(".ticking")
    expect(waited).to_contain_text("9 мин")
    shown = waited.inner_text()
    expect(waited).not_to_have_text(shown)
    screenshot(page, "console-waiting")

    # A webhook changes the list without a reload: a reply takes Пётр off it, a new chat
    # comes on.
    page.evaluate("window.notReloaded = true")
    post(console, reply("w-petr", at=now_ms(), team=15))
    expect(rows.filter(has_text="Пётр")).to_have_count(0)
    post(console, *opened("w-ivan", at=now_ms(), name="Иван", team=12, team_name="Первая линия"))
    expect(rows.filter(has_text="Иван")).to_have_count(1)
    expect(rows).to_have_count(2)

    # And so does time alone: a target of a few seconds passes with no webhook.
    short = {"first_reply_seconds": 3, "next_reply_seconds": None}
    assert httpx.put(f"{console.url}/reports/targets/12", json=short, headers=admin).is_success
    post(console, *opened("w-anna", at=now_ms(), name="Аня", team=12, team_name="Первая линия"))
    anna = rows.filter(has_text="Аня")
    expect(anna).to_have_count(1)
    expect(anna.locator(".badge")).to_have_text("нарушено", timeout=30_000)
    assert page.evaluate("window.notReloaded") is True

    # The customer search is one click away, and still posted.
    page.get_by_label("Телефон, uuid профиля или чата, или начало имени (от трёх букв)").fill(
        "Ольга"
    )
    page.get_by_role("button", name="Найти").click()
    expect(page).to_have_url(f"{console.url}/console/search")
    expect(page.get_by_role("list", name="Профили")).to_contain_text("Ольга")


def test_a_trend_is_drawn_with_its_points_beside_it_and_downloads_as_csv(
    console: Console, context: BrowserContext
) -> None:
    page = context.new_page()
    sign_in(page, console, console.read_token)
    page.get_by_role("navigation", name="Разделы").get_by_role("link", name="Отчёты").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Динамика")
    page.get_by_label("Показатель").select_option(label="Первый ответ")
    page.get_by_label("С", exact=True).fill("2026-05-05")
    page.get_by_label("По (включительно)").fill("2026-05-06")
    page.get_by_label("Сравнить с предыдущим периодом").check()
    page.get_by_role("button", name="Показать").click()

    chart = page.get_by_role("img", name="Первый ответ, шаг: день")
    expect(chart).to_be_visible()
    expect(chart.locator("path.line.current")).to_have_count(1)
    expect(chart.locator("path.line.previous")).to_have_count(0)  # nothing the days before
    # Each day's two turns (an opening, a handoff): on the 6th, the WhatsApp chat's first
    # reply after 1 min 35 s and, after the handoff, 3 min.
    points = page.locator("#points tbody tr")
    expect(points).to_have_count(2)
    expect(points.nth(0)).to_contain_text("2026-05-05")
    expect(points.nth(0)).to_contain_text("1 мин 33 с")
    expect(points.nth(1)).to_contain_text("2026-05-06")
    expect(points.nth(1)).to_contain_text("2 мин 18 с")
    expect(page.locator("#chart-desc")).to_contain_text("учтено 4, медиана 1 мин 49 с")
    page.evaluate("document.getElementById('period').scrollIntoView()")
    screenshot(page, "console-trends")

    with page.expect_download() as waiting:
        page.get_by_role("link", name="Скачать CSV").click()
    download = waiting.value
    assert download.suggested_filename == "first_response-day-2026-05-05-2026-05-06.csv"
    lines = list(csv.DictReader(io.StringIO(download.path().read_text(encoding="utf-8-sig"))))
    current = [line for line in lines if line["period"] == "current"]
    assert [line["count"] for line in current] == ["2", "2"]
    assert current[1]["median_seconds"] == "137.5"
    assert {line["period"] for line in lines} == {"current", "previous"}

    # The other reports, a click away each, fit a phone's screen: their tables scroll in
    # their own box.
    page.set_viewport_size({"width": 360, "height": 740})
    for name in ("Тепловая карта", "Операторы команды", "Нарушения", "Ждут ответа", "Динамика"):
        page.get_by_role("navigation", name="Отчёты").get_by_role("link", name=name).click()
        expect(page.get_by_role("heading", level=1)).to_have_text(name)
        assert page.evaluate("document.documentElement.scrollWidth") <= 360, name
        assert page.evaluate(
            "[...document.querySelectorAll('table')]"
            ".every(table => table.parentElement.classList.contains('scroll'))"
        ), name
    page.get_by_role("navigation", name="Отчёты").get_by_role("link", name="Тепловая карта").click()
    page.get_by_label("С", exact=True).fill("2026-05-04")
    page.get_by_label("По (включительно)").fill("2026-05-10")
    page.get_by_role("button", name="Показать").click()
    # Wednesday 10:00 in Moscow: the WhatsApp chat's 36 customer messages.
    wednesday = page.locator("#heatmap tbody tr").nth(2)
    expect(wednesday.locator("th")).to_have_text("Среда")
    expect(wednesday.locator("td").nth(10)).to_have_text("36")
    expect(wednesday.locator("td").nth(10)).to_have_class("cell level-6")
    expect(page.locator(".scroll.wide")).to_have_count(1)  # the grid, on a phone
    page.set_viewport_size({"width": 1280, "height": 860})
    page.locator("#heatmap").scroll_into_view_if_needed()
    screenshot(page, "console-heatmap")
