"""Pages of other sites, in a real browser, against the open store on 127.0.0.1: what they
make the browser send is refused, and a name they point at the server reads nothing."""

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Playwright, Route, expect

from tests.browser.conftest import _chromium, watched
from tests.conftest import Server
from tests.factories import webhook

PHONE = "+79991234567"


@pytest.fixture(scope="module")
def rebinding(playwright: Playwright) -> Iterator[Browser]:
    """A Chromium for which attacker.example is 127.0.0.1: a DNS rebinding done."""
    launched = playwright.chromium.launch(
        executable_path=_chromium(),
        args=[
            "--no-sandbox",
            "--host-resolver-rules=MAP attacker.example 127.0.0.1",
            # As browsers without local network protection do (Firefox, Safari, older
            # Chromium): this test is of what the server refuses.
            "--disable-features=LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests,"
            "PrivateNetworkAccessSendPreflights,PrivateNetworkAccessRespectPreflightResults",
        ],
    )
    yield launched
    launched.close()


def lines(log: Path, request: str, deadline: float = 10) -> list[str]:
    """The server's log lines of `request` ("POST /path"), once there is one."""
    stop = time.monotonic() + deadline
    while True:
        found = [line for line in log.read_text().splitlines() if f'"{request}"' in line]
        if found or time.monotonic() > stop:
            return found
        time.sleep(0.1)


def test_a_page_of_another_site_neither_writes_nor_erases_nor_reads(
    database: str, serve_on: Callable[..., Server], rebinding: Browser
) -> None:
    server = serve_on(database)
    body = webhook("message_created", chat="chat-1", profile="profile-1", phone=PHONE, message="hi")
    answer = httpx.post(f"{server.url}/webhooks/fasttrack", json=body)
    assert answer.status_code == 202, answer.text
    port = urlsplit(server.url).port
    attacker = f"http://attacker.example:{port}"
    forged = json.dumps(webhook("message_created", chat="forged", message="forged"))
    page_html = f"""<!DOCTYPE html><html><body>
      <iframe name="sink"></iframe>
      <form id="erase" method="post" target="sink"
            action="{server.url}/profiles/profile-1/erase?suppress=true"></form>
      <script>
        window.results = {{}};
        fetch("{server.url}/webhooks/fasttrack", {{
          method: "POST", mode: "no-cors", body: new Blob([{json.dumps(forged)}])
        }}).finally(() => window.results.webhook = "sent");
        fetch("{server.url}/projections/rebuild", {{method: "POST", mode: "no-cors"}})
          .finally(() => window.results.rebuild = "sent");
        document.getElementById("erase").submit();
        // The page's own origin, now 127.0.0.1: same-origin, so it may read the answer.
        fetch("/profiles?phone=%2B79991234567").then(async (answer) => {{
          window.results.read = {{status: answer.status, text: await answer.text()}};
        }}, (e) => window.results.read = {{status: 0, text: `${{e}}`}});
      </script></body></html>"""
    context: BrowserContext = rebinding.new_context()

    def attackers_page(route: Route) -> None:
        route.fulfill(status=200, content_type="text/html", body=page_html)

    # The page comes from the attacker; everything it asks for then goes to the server.
    context.route(f"{attacker}/", attackers_page)
    page = context.new_page()
    page.goto(f"{attacker}/")
    page.wait_for_function(
        "window.results.webhook && window.results.rebuild && window.results.read"
    )
    read = page.evaluate("window.results.read")
    assert read["status"] == 421
    assert "does not answer for the host 'attacker.example" in json.loads(read["text"])["detail"]
    assert "7999" not in read["text"]
    context.close()

    # Each request reached the server and was refused there, not by the browser.
    for request in (
        "POST /webhooks/fasttrack",
        "POST /projections/rebuild",
        "POST /profiles/profile-1/erase",
    ):
        answered = [line.split('"')[2].split()[0] for line in lines(server.log, request)]
        assert answered[-1:] == ["403"], (request, answered)
    with httpx.Client(base_url=server.url) as client:
        assert [event["chat_uuid"] for event in client.get("/events").json()["items"]] == ["chat-1"]
        assert client.get("/profiles/profile-1").json()["phones"] == [PHONE]
        assert client.get("/rejected").json()["items"] == []
        again = webhook("message_created", chat="chat-1", profile="profile-1", message="again")
        answer = client.post("/webhooks/fasttrack", json=again)
        assert answer.status_code == 202  # not suppressed


def test_the_schema_pages_work_under_their_policy(
    database: str, serve_on: Callable[..., Server], browser: Browser
) -> None:
    server = serve_on(database)
    context = browser.new_context()
    elsewhere, refused = watched(context)
    page = context.new_page()
    page.goto(f"{server.url}/schema")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("cdp")
    page.get_by_text("Receive a webhook from a source").first.click()
    expect(page.get_by_text("One webhook exactly as Fasttrack sends it").first).to_be_visible()
    assert refused == []
    page.goto(f"{server.url}/schema/redoc")
    expect(page.locator("h1").first).to_contain_text("cdp")
    expect(page.locator("h2", has_text="Receive a webhook from a source").first).to_be_visible()
    context.close()
    # Redoc shows its maker's logo from the internet: the policy keeps that request in.
    assert elsewhere == []
    assert all("https://cdn.redoc.ly/redoc/logo-mini.svg" in text for text in refused), refused
