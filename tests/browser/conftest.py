"""Browser tests: a real Chromium, driven by Playwright, on a `cdp serve` of each database.

The browser is the distribution's (CDP_TEST_CHROMIUM, or chromium on the PATH): the suite
needs one, as it needs PostgreSQL, and fails without it rather than skipping. Screenshots
for the docs are saved to CDP_TEST_SCREENSHOTS when that names a folder (docs/images).
"""

import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    Route,
    sync_playwright,
)

from cdp.access import credentials
from cdp.db import make_engine
from tests.browser.story import WEBHOOKS
from tests.conftest import Server


def _chromium() -> str:
    found = os.environ.get("CDP_TEST_CHROMIUM") or next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
    )
    if not found:
        pytest.fail(
            "the browser tests need Chromium: install the distribution's package (Debian: "
            "apt-get install chromium), or name a Chromium or Chrome in CDP_TEST_CHROMIUM",
            pytrace=False,
        )
    return found


# Module-scoped, not session-scoped: the driver keeps an event loop running in this thread
# while it lives, and a later test that starts one of its own (asyncio.run) would fail.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
    yield launched
    launched.close()


@dataclass(frozen=True)
class Console:
    """A server holding the story's webhooks, and a read and an admin token for it."""

    url: str
    database: str
    read_token: str
    admin_token: str
    server: Server


@pytest.fixture
def console(database: str, serve_on: Callable[..., Server]) -> Console:
    server = serve_on(database)
    with httpx.Client(base_url=server.url) as client:
        for body in WEBHOOKS:
            answer = client.post(
                "/webhooks/fasttrack", content=body, headers={"Content-Type": "application/json"}
            )
            assert answer.status_code in (200, 202), answer.text
    engine = make_engine(database)
    with engine.begin() as connection:
        read = credentials.create_token(connection, "lead", "read")
        admin = credentials.create_token(connection, "ops", "admin")
    engine.dispose()
    deadline = time.monotonic() + 5
    while httpx.get(f"{server.url}/teams").status_code != 401:  # tokens are read each second
        assert time.monotonic() < deadline, "the server did not read its new tokens"
        time.sleep(0.1)
    return Console(server.url, database, read, admin, server)


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A browser profile of its own, in Russian, on a laptop screen, with no internet."""
    made = browser.new_context(
        locale="ru-RU",
        extra_http_headers={"Accept-Language": "ru-RU,ru;q=0.9"},
        viewport={"width": 1280, "height": 860},
        accept_downloads=True,
    )
    made.set_default_timeout(10_000)
    elsewhere, refused = watched(made)
    yield made
    made.close()
    assert not elsewhere, f"the console asked for resources elsewhere: {elsewhere}"
    assert not refused, f"the console's own policy refused: {refused}"


def watched(context: BrowserContext) -> tuple[list[str], list[str]]:
    """Keep `context` off the internet: what its pages ask of another host is refused, and
    listed in the first list; the second lists what a page's Content-Security-Policy
    refused (a resource of another host, an inline script)."""
    elsewhere: list[str] = []
    refused: list[str] = []

    def local_only(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", local_only)
    context.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return elsewhere, refused


def sign_in(page: Page, console: Console, token: str) -> None:
    page.goto(f"{console.url}/console/")
    page.get_by_label("Токен").fill(token)
    page.get_by_role("button", name="Войти").click()
    page.wait_for_url(f"{console.url}/console/")


def screenshot(page: Page, name: str) -> None:
    """Save the page for the docs, when CDP_TEST_SCREENSHOTS names a folder."""
    folder = os.environ.get("CDP_TEST_SCREENSHOTS")
    if folder:
        page.screenshot(path=Path(folder) / f"{name}.png")
