"""A real server under many concurrent reads: it never freezes, and waits are bounded.

Each test starts `cdp serve` in a process of its own, on SQLite and on PostgreSQL.
"""

import asyncio
import json
import math
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from cdp.access import credentials
from cdp.db import make_engine
from cdp.http.app import create_app
from cdp.log import ingest
from cdp.privacy.keystore import MAIN
from cdp.projections import registry
from cdp.settings import Settings
from tests.api.conftest import Server
from tests.factories import JSON_TYPE, PAST, checked, now_ms, webhook

READS = 100


def seed(database: str, events: int) -> None:
    """`events` messages of about 1 KB each, so that a page of the log takes some work."""
    bodies = [
        webhook("message_created", chat=f"c{n % 20}", at=PAST + n, message="x" * 1000 + str(n))
        for n in range(events)
    ]
    engine = make_engine(database)
    ingest.record(
        engine,
        [checked(json.dumps(body)) for body in bodies],
        registry.projectors(Settings()),
        keystore=MAIN,
    )
    engine.dispose()


async def under_reads(url: str) -> tuple[list[httpx.Response], list[float], list[float]]:
    """100 concurrent reads of a large log page; meanwhile /health and webhooks, timed."""
    limits = httpx.Limits(max_connections=READS + 10)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        reads = [
            asyncio.create_task(client.get("/events", params={"limit": 1000})) for _ in range(READS)
        ]
        health, posts = [], []
        await asyncio.sleep(0.2)  # let the reads queue up first
        n = 0
        while not all(read.done() for read in reads) or n < 3:
            started = time.perf_counter()
            probe = await client.get("/health", timeout=5)
            assert probe.status_code == 200, probe.text
            health.append(time.perf_counter() - started)
            body = webhook("message_created", chat="probe", at=now_ms(), message=f"probe {n}")
            started = time.perf_counter()
            answer = await client.post(
                "/webhooks/fasttrack", content=json.dumps(body), headers=JSON_TYPE, timeout=5
            )
            assert answer.status_code == 202, answer.text
            posts.append(time.perf_counter() - started)
            n += 1
            await asyncio.sleep(0.05)
        return await asyncio.gather(*reads), health, posts


@pytest.mark.slow
def test_health_and_webhooks_answer_within_a_second_while_100_slow_reads_queue(
    database: str, serve: Callable[..., Server]
) -> None:
    seed(database, 300)
    url = serve(CDP_DATABASE_POOL_SIZE="5", CDP_DATABASE_POOL_TIMEOUT="120").url
    reads, health, posts = asyncio.run(under_reads(url))
    assert [read.status_code for read in reads] == [200] * READS
    assert {len(read.json()["items"]) for read in reads} >= {300}
    assert len(health) >= 3
    assert max(health) < 1.0, health
    assert max(posts) < 1.0, posts


@pytest.mark.slow
def test_a_read_that_finds_no_connection_in_time_is_a_503_with_retry_after(
    database: str, serve: Callable[..., Server]
) -> None:
    seed(database, 300)
    url = serve(CDP_DATABASE_POOL_SIZE="5", CDP_DATABASE_POOL_TIMEOUT="0").url
    reads, health, _ = asyncio.run(under_reads(url))
    statuses = {read.status_code for read in reads}
    assert statuses <= {200, 503}
    assert 503 in statuses
    busy = next(read for read in reads if read.status_code == 503)
    assert busy.headers["Retry-After"] == "1"
    assert "busy" in busy.json()["detail"]
    assert health


def test_health_answers_while_the_credentials_are_being_read_even_with_no_wait_for_a_place(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The credentials every request is checked against are read again each second, by one
    request: in a place of their own, so that /health, which may not wait at all here,
    never finds its place taken by them (nor a request theirs by /health)."""
    reading, release = threading.Event(), threading.Event()
    load = credentials.load

    def slow(connection: Any) -> Any:
        reading.set()
        release.wait(10)
        return load(connection)

    async def scenario() -> tuple[int, int, int]:
        settings = Settings(database_url=database, database_pool_timeout=timedelta(0))
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app)  # concurrent requests, on this event loop
        async with (
            app.lifespan(),
            httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client,
        ):
            assert (await client.get("/events")).status_code == 200  # the credentials, read
            monkeypatch.setattr(credentials, "load", slow)
            app.state["gate"].keys._read_at = -math.inf  # old: the next request reads them
            read = asyncio.create_task(client.get("/events"))
            while not reading.is_set():
                await asyncio.sleep(0.01)
            health = await client.get("/health")
            again = await client.get("/health")
            release.set()
            return health.status_code, again.status_code, (await read).status_code

    assert asyncio.run(scenario()) == (200, 200, 200)
