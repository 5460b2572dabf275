"""Fixtures: every test that takes `database` runs once on SQLite and once on PostgreSQL.

PostgreSQL is the server of CDP_TEST_POSTGRES_URL (default: the local one, as `postgres`):
the suite creates a database of its own there, through the server's maintenance database
`postgres`, and drops it at the end. An unreachable server fails the PostgreSQL tests:
they are never skipped.

Markers (see tests/README.md): a test that runs on PostgreSQL is marked `postgres`, and one
under tests/browser `browser`, here; `slow` is marked by hand. `--quick` leaves all three
out.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from litestar.testing import TestClient
from sqlalchemy import Engine, create_engine, make_url, text

from cdp import upgrades
from cdp.db import make_engine
from cdp.http.app import create_app
from cdp.privacy import keyfile
from cdp.settings import Settings

POSTGRES_URL = os.environ.get(
    "CDP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)

BROWSER_TESTS = Path(__file__).parent / "browser"

# The fixture parameters that run a test on PostgreSQL: `database` here, the bench's
# `server` (tests/bench/conftest.py), and the outage of a server of the test's own
# (tests/api/test_outages.py).
ON_POSTGRESQL = {"database": "postgresql", "server": "postgresql", "outage": "postgresql stops"}

QUICK_LEAVES_OUT = ("postgres", "browser", "slow")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--quick",
        action="store_true",
        help="the quick loop: leave out the tests marked postgres, browser or slow",
    )


@pytest.hookimpl(tryfirst=True)  # before -m reads the markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept: list[pytest.Item] = []
    left_out: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec else {}
        if "postgres_url" in getattr(item, "fixturenames", ()) or any(
            params.get(name) == value for name, value in ON_POSTGRESQL.items()
        ):
            item.add_marker(pytest.mark.postgres)
        if item.path.is_relative_to(BROWSER_TESTS):
            item.add_marker(pytest.mark.browser)
        quick = not any(map(item.get_closest_marker, QUICK_LEAVES_OUT))
        (kept if quick else left_out).append(item)
    if config.getoption("quick") and left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


@pytest.fixture(scope="session", autouse=True)
def _state_of_its_own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The key files of PostgreSQL test databases (see keyfile.default_path) go to a state
    directory of the test run's own, for every process it starts too, never the user's."""
    before = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))
    yield
    if before is None:
        del os.environ["XDG_STATE_HOME"]
    else:
        os.environ["XDG_STATE_HOME"] = before


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "cdp.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrades.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test run."""
    admin_url = make_url(POSTGRES_URL).set(database="postgres")
    name = f"cdp_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is needed by the suite: {error}", pytrace=False)
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrades.upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()
    key_file = keyfile.default_path(url)  # made beside no database: in the state directory
    if key_file is not None:
        key_file.unlink(missing_ok=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty, migrated database."""
    if request.param == "sqlite":
        path = tmp_path / "cdp.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_url")
    empty(url)
    return url


def empty(url: str) -> None:
    """Empty every table, the log included, and start its positions at 1 again: only
    tests may, by switching triggers off. (DELETE: a test's few rows go faster than
    TRUNCATE, which makes every table's files anew.) A database an earlier test left
    otherwise than the migrations make it (a killed build's shadow tables, `chats__next`;
    a schema it downgraded) is made anew."""
    engine = make_engine(url)
    with engine.connect() as connection:
        there = set(
            connection.scalars(
                text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
            )
        )
    if there != {*upgrades.METADATA.tables, "alembic_version"} or (
        upgrades.pending(engine)[0] != upgrades.pending(engine)[1]
    ):
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        upgrades.upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("SET LOCAL session_replication_role = replica"))
        for table in upgrades.METADATA.sorted_tables:
            connection.execute(text(f'DELETE FROM "{table.name}"'))
        sequences = text(
            "SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema()"
        )
        for sequence in connection.scalars(sequences).all():
            connection.execute(text(f'ALTER SEQUENCE "{sequence}" RESTART'))
    engine.dispose()


@pytest.fixture
def settings(database: str) -> Settings:
    return Settings(
        database_url=database,
        session_idle_timeout=timedelta(hours=24),
        session_open_window=timedelta(seconds=5),
        phone_region="RU",
    )


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings.database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:  # type: ignore[type-arg]
    with TestClient(create_app(settings)) as client:
        yield client


@dataclass(frozen=True)
class Server:
    url: str
    process: "subprocess.Popen[bytes]"
    log: Path  # what it wrote to standard output and error


@pytest.fixture
def serve_on(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start `cdp serve` in a process of its own on a database, with the options (`args`)
    and settings (CDP_...=value) given, once /health answers. Every server is stopped at
    the end."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(database: str, *args: str, **settings: str) -> Server:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = {**os.environ, "CDP_DATABASE_URL": database, **settings}
        log_path = tmp_path / f"server-{len(processes)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "cdp", "serve", "--port", str(port), *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert process.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    return Server(url, process, log_path)
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError("cdp serve did not start within 30 s")

    yield start
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # a frozen server does not even stop
            process.kill()
            process.wait()
