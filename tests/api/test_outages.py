"""A database that goes away, or stays locked, under a real server taking webhooks.

While it is gone every request is answered 503 with Retry-After, and nothing is half
written; once it is back the same server process takes webhooks again. Each test starts
`cdp serve` in a process of its own.
"""

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from sqlalchemy import func, select

from cdp import upgrades
from cdp.access import credentials
from cdp.bench.soak import account, digest, keystore_of, rebuild_changes
from cdp.db import make_engine
from cdp.log.store import Receipt
from cdp.log.tables import events
from cdp.projections import registry
from cdp.runtime.service import Overloaded
from cdp.settings import Settings
from tests.conftest import Server
from tests.factories import JSON_TYPE, PAST, webhook

pytestmark = pytest.mark.slow

CLIENTS = 4
BUSY = str(Overloaded("webhooks", timedelta(seconds=5)))  # CDP_DATABASE_POOL_TIMEOUT


class Outage(Protocol):
    url: str  # the database the server runs on
    settings: dict[str, str]  # the server's
    detail: str  # what a webhook is answered while the database is away
    reads: int  # what /health and a read are answered meanwhile

    def begin(self) -> None: ...

    def end(self) -> None: ...


def _postgresql_binaries() -> Path:
    try:
        found = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=True, timeout=30
        )
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.fail(f"PostgreSQL's initdb and pg_ctl are needed (pg_config: {error})")
    return Path(found.stdout.strip())


class StoppedPostgreSQL:
    """A PostgreSQL server of the test's own, stopped and started again.

    The machine's server is shared and must never stop, and a proxy that cuts connections
    would only imitate a server going away: this is a real one, made in a temporary folder
    on a free port by the binaries of the machine's server (initdb and pg_ctl, about a
    second). It stops as a crash would (`pg_ctl stop -m immediate`: every connection cut at
    once, new ones refused, recovery on start). PostgreSQL refuses to run as root: as root,
    its commands run as the `postgres` user, which then owns the folder.
    """

    settings: dict[str, str] = {}
    detail = "database unavailable: it cannot be reached"
    reads = 503

    def __init__(self) -> None:
        self.binaries = _postgresql_binaries()
        # Not pytest's tmp_path: as root, that is closed to the postgres user.
        self.folder = Path(tempfile.mkdtemp(prefix="cdp-outage-"))
        self.as_postgres: list[str] = []
        if os.geteuid() == 0:
            self.as_postgres = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.folder, "postgres")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        try:
            self._run("initdb", "-D", str(self.folder / "data"), "-A", "trust", "-U", "postgres")
            self.end()
        except BaseException:
            self.close()
            raise

    def begin(self) -> None:
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop")

    def end(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} "
            "-c fsync=off -c shared_buffers=16MB"
        )
        self._run(
            "pg_ctl",
            *("-D", str(self.folder / "data"), "-l", str(self.folder / "server.log")),
            *("-o", options, "-w", "-t", "60", "start"),
        )

    def close(self) -> None:
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self, command: str, *args: str, check: bool = True) -> None:
        command_line = [*self.as_postgres, str(self.binaries / command), *args]
        done = subprocess.run(command_line, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 or not check, f"{command}: {done.stdout}{done.stderr}"


class LockedSQLite:
    """Another process holds SQLite's write lock longer than the server waits for it (1 s).

    Reads go on meanwhile: in write-ahead-log mode they never wait for a writer."""

    settings = {"CDP_DATABASE_STATEMENT_TIMEOUT": "1"}
    detail = (
        "database unavailable: another process held its write lock longer than "
        "CDP_DATABASE_STATEMENT_TIMEOUT"
    )
    reads = 200

    def __init__(self, folder: Path) -> None:
        self.path = folder / "cdp.db"
        self.url = f"sqlite:///{self.path}"
        self.holder: subprocess.Popen[str] | None = None

    def begin(self) -> None:
        hold = (
            "import sqlite3, sys\n"
            f"connection = sqlite3.connect({str(self.path)!r}, isolation_level=None)\n"
            "connection.execute('BEGIN IMMEDIATE')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.readline()\n"
            "connection.execute('ROLLBACK')\n"
        )
        self.holder = subprocess.Popen(
            [sys.executable, "-c", hold],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.holder.stdout is not None
        assert self.holder.stdout.readline() == "locked\n"

    def end(self) -> None:
        assert self.holder is not None
        self.holder.communicate("\n", timeout=30)  # it rolls back and ends
        assert self.holder.returncode == 0

    def close(self) -> None:
        if self.holder is not None and self.holder.returncode is None:
            self.holder.kill()
            self.holder.communicate(timeout=30)


@pytest.fixture(params=["postgresql stops", "sqlite stays locked"])
def outage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Outage]:
    """A migrated database, with a source and a read token, and how to take it away."""
    made = StoppedPostgreSQL() if request.param == "postgresql stops" else LockedSQLite(tmp_path)
    try:
        engine = make_engine(made.url)
        upgrades.upgrade(engine)
        engine.dispose()
        yield made
    finally:
        made.close()


@dataclass
class Answer:
    sent: bytes
    status: int
    retry_after: str | None
    json: Any


@dataclass
class Traffic:
    """Every answer the clients got, in the order they got them."""

    answers: list[Answer] = field(default_factory=list)
    strangers: list[int] = field(default_factory=list)  # statuses of wrong credentials
    health: list[httpx.Response] = field(default_factory=list)  # while the database was away
    reads: list[httpx.Response] = field(default_factory=list)  # the same

    def accepted(self, since: int = 0) -> int:
        return sum(answer.status in (200, 202) for answer in self.answers[since:])

    def refused(self) -> int:
        return sum(answer.status == 503 for answer in self.answers)


async def within(seconds: float, condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        await asyncio.sleep(0.02)


async def through(outage: Outage, url: str, secret: str, token: str) -> Traffic:
    """Clients post new webhooks all along while the database goes away and comes back."""
    traffic = Traffic()
    stop = asyncio.Event()
    numbers = iter(range(10**9))

    async def post(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            n = next(numbers)
            body = json.dumps(
                webhook("message_created", chat=f"c{n % 10}", at=PAST + n, message=str(n))
            ).encode()
            answer = await client.post(
                f"/webhooks/fasttrack?token={secret}", content=body, headers=JSON_TYPE
            )
            found = answer.json()
            traffic.answers.append(
                Answer(body, answer.status_code, answer.headers.get("Retry-After"), found)
            )
            if answer.status_code == 503:  # less than Retry-After says, not at once either
                await asyncio.sleep(0.1)

    async def stranger(client: httpx.AsyncClient) -> None:
        """Wrong credentials, all along: never let in, whatever the database does."""
        while not stop.is_set():
            body = json.dumps(webhook("message_created", chat="intruder")).encode()
            posted = await client.post(
                "/webhooks/fasttrack?token=wrong", content=body, headers=JSON_TYPE
            )
            read = await client.get("/chats/c1")
            traffic.strangers += [posted.status_code, read.status_code]
            await asyncio.sleep(0.05)

    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        tasks = [asyncio.create_task(post(client)) for _ in range(CLIENTS)]
        tasks.append(asyncio.create_task(stranger(client)))
        await within(60, lambda: traffic.accepted() >= 20, "webhooks stored before the outage")
        await asyncio.to_thread(outage.begin)
        await within(60, lambda: traffic.refused() >= 5, "webhooks refused during the outage")
        await asyncio.sleep(1.5)  # past the credentials' age (1 s): they are read again, and fail
        bearer = {"Authorization": f"Bearer {token}"}
        traffic.health.append(await client.get("/health"))
        traffic.reads.append(await client.get("/chats/c1", headers=bearer))
        await asyncio.to_thread(outage.end)
        since = len(traffic.answers)
        await within(60, lambda: traffic.accepted(since) >= 20, "webhooks stored after it")
        traffic.health.append(await client.get("/health"))
        traffic.reads.append(await client.get("/chats/c1", headers=bearer))
        stop.set()
        await asyncio.gather(*tasks)
    return traffic


def test_webhooks_get_503_while_the_database_is_away_and_are_stored_once_it_is_back(
    outage: Outage, serve_on: Callable[..., Server]
) -> None:
    engine = make_engine(outage.url)
    with engine.begin() as connection:
        secret = credentials.add_source(connection, "default").secret
        token = credentials.create_token(connection, "reader", "read")
    url = serve_on(outage.url, **outage.settings).url

    traffic = asyncio.run(through(outage, url, secret, token))

    statuses = {answer.status for answer in traffic.answers}
    assert statuses == {202, 503}, statuses
    refused = [answer for answer in traffic.answers if answer.status == 503]
    assert all(answer.retry_after for answer in refused)
    said = {answer.json["detail"] for answer in refused}
    assert outage.detail in said
    assert said <= {outage.detail, BUSY}  # BUSY: queued behind a failing group too long
    assert set(traffic.strangers) <= {401, 429, 503}
    assert [answer.status_code for answer in traffic.health] == [outage.reads, 200]
    assert [answer.status_code for answer in traffic.reads] == [outage.reads, 200]
    if outage.reads == 503:
        assert traffic.health[0].json() == {"detail": outage.detail}
        assert traffic.health[0].headers["Retry-After"]

    stored = {digest(a.sent): [Receipt(**a.json)] for a in traffic.answers if a.status == 202}
    assert account(engine, stored, keystore_of(engine)) == (0, 0)  # (lost, duplicated)

    # As Fasttrack does: what got a 503 is delivered again, and then every webhook is there once.
    with httpx.Client(base_url=url, timeout=60) as client:
        again = [
            (
                answer.sent,
                client.post(
                    f"/webhooks/fasttrack?token={secret}", content=answer.sent, headers=JSON_TYPE
                ),
            )
            for answer in refused
        ]
    assert {answer.status_code for _, answer in again} <= {200, 202}
    redelivered = {digest(sent): [Receipt(**answer.json())] for sent, answer in again}
    assert account(engine, stored | redelivered, keystore_of(engine)) == (0, 0)
    with engine.connect() as connection:
        logged = connection.scalar(select(func.count()).select_from(events))
    assert logged == len(stored | redelivered) == len(traffic.answers)
    assert rebuild_changes(engine, registry.projectors(Settings()), keystore_of(engine)) == []
    engine.dispose()
