"""What a real `cdp serve` takes from a connection before any authentication: headers of
bounded size and time, bodies of bounded time, idle connections closed, and a bounded
number of connections that sockets sending nothing cannot fill (see cdp.runtime.server).

Every test talks to a server process over real sockets. None asserts how long anything
took: a connection closed "eventually" is read to its end, with a generous bound."""

import asyncio
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from cdp.runtime import server as bounded
from cdp.runtime.server import Limits, Tally
from tests.conftest import Server
from tests.factories import JSON_TYPE, webhook

pytestmark = pytest.mark.slow

PATIENCE = 60  # seconds a socket waits, at most, for what the test expects
SHORT = {"CDP_HEADER_TIMEOUT": "0.5", "CDP_BODY_TIMEOUT": "0.5", "CDP_KEEP_ALIVE_TIMEOUT": "1"}


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _connect(url: str) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", _port(url)), timeout=PATIENCE)
    return connection


def _until_closed(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while True:
        try:
            chunk = connection.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def _refused_midway(connection: socket.socket, megabytes: int) -> bool:
    """Whether the server closed `connection` before it had sent `megabytes` more."""
    chunk = b"a" * 1024 * 1024
    try:
        for _ in range(megabytes):
            connection.sendall(chunk)
    except (ConnectionResetError, BrokenPipeError):
        return True
    return False


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cdp.db'}"


def test_headers_over_the_limit_are_answered_431_and_those_under_it_served(
    tmp_path: Path, serve_on: Callable[..., Server]
) -> None:
    served = serve_on(_sqlite(tmp_path))
    with httpx.Client(base_url=served.url, timeout=PATIENCE) as client:
        assert client.get("/health", headers={"X-Pad": "a" * 15_000}).status_code == 200
        refused = client.get("/health", headers={"X-Pad": "a" * 20_000})
        assert refused.status_code == 431
        assert "16384 bytes (CDP_MAX_HEADER_SIZE)" in refused.json()["detail"]
        # A long request line counts too.
        assert client.get("/health?" + "q" * 20_000).status_code == 431
    # A 10 MB header: answered 431 after its first bytes, the rest never read.
    with _connect(served.url) as connection:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: ")
        assert _refused_midway(connection, megabytes=10)
        assert _until_closed(connection).startswith(b"HTTP/1.1 431 ")


def test_requests_that_are_no_http_are_answered_400_and_counted_not_logged_each(
    tmp_path: Path, serve_on: Callable[..., Server]
) -> None:
    served = serve_on(_sqlite(tmp_path))
    for _ in range(50):
        with _connect(served.url) as connection:
            connection.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            assert _until_closed(connection).startswith(b"HTTP/1.1 400 ")
    _wait_for_log(served, "that sent no HTTP/1.1 (400)", at_least=50)
    assert "Invalid HTTP request received" not in served.log.read_text()


def test_a_body_over_the_limit_is_answered_413_and_the_rest_never_read(
    tmp_path: Path, serve_on: Callable[..., Server]
) -> None:
    served = serve_on(_sqlite(tmp_path))
    with _connect(served.url) as connection:
        connection.sendall(
            b"POST /webhooks/fasttrack HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1048576000\r\n\r\n"
        )
        assert _refused_midway(connection, megabytes=1000)
        assert _until_closed(connection).startswith(b"HTTP/1.1 413 ")


def test_a_header_flood_leaves_the_memory_of_the_server_within_100_mb_of_idle(
    database: str, serve_on: Callable[..., Server]
) -> None:
    served = serve_on(database)
    idle = _rss_mb(served.process.pid)
    floods = [_connect(served.url) for _ in range(10)]
    for flood in floods:
        flood.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Flood: ")
    sending = list(floods)
    for _ in range(100):  # 100 MB a connection, unterminated, a megabyte to each in turn
        sending = [flood for flood in sending if not _refused_midway(flood, megabytes=1)]
    assert sending == []
    for flood in floods:
        assert _until_closed(flood).startswith(b"HTTP/1.1 431 ")
        flood.close()
    assert _rss_mb(served.process.pid) < idle + 100
    assert httpx.get(f"{served.url}/health", timeout=PATIENCE).status_code == 200


def test_a_connection_that_sends_nothing_is_closed(
    tmp_path: Path, serve_on: Callable[..., Server]
) -> None:
    served = serve_on(_sqlite(tmp_path), **SHORT)
    with _connect(served.url) as silent:
        assert _until_closed(silent) == b""  # closed without a word: nothing was asked


def test_half_a_header_is_answered_408_and_closed(
    tmp_path: Path, serve_on: Callable[..., Server]
) -> None:
    served = serve_on(_sqlite(tmp_path), **SHORT)
    with _connect(served.url) as slow:
        slow.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ")
        answer = _until_closed(slow)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"(CDP_HEADER_TIMEOUT)" in answer
    _wait_for_log(served, "whose headers did not arrive in time")


def test_a_body_that_stops_coming_is_cut_and_nothing_is_stored(
    database: str, serve_on: Callable[..., Server]
) -> None:
    served = serve_on(database, **SHORT)
    body = json.dumps(webhook("message_created", message="hello")).encode()
    with _connect(served.url) as slow:
        slow.sendall(
            b"POST /webhooks/fasttrack HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[: len(body) // 2]
        )
        assert _until_closed(slow) == b""  # the application never had the whole body
    _wait_for_log(served, "whose body did not arrive in time")
    with httpx.Client(base_url=served.url, timeout=PATIENCE) as client:
        assert client.get("/events").json()["items"] == []
        assert client.get("/rejected").json()["items"] == []
        # Sent whole, the same body is taken.
        assert (
            client.post("/webhooks/fasttrack", content=body, headers=JSON_TYPE).status_code == 202
        )


def test_an_idle_keep_alive_connection_is_closed(
    tmp_path: Path, serve_on: Callable[..., Server]
) -> None:
    served = serve_on(_sqlite(tmp_path), **SHORT)
    with _connect(served.url) as kept:
        kept.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = _until_closed(kept)
    assert answer.startswith(b"HTTP/1.1 200 ")  # answered, then closed once idle


def test_past_the_limit_with_every_connection_in_a_request_a_new_one_gets_503(
    tmp_path: Path, serve_on: Callable[..., Server]
) -> None:
    served = serve_on(_sqlite(tmp_path), CDP_MAX_CONNECTIONS="2", CDP_BODY_TIMEOUT="600")
    refused = _refused_past(served, busy=2)
    assert refused.startswith(b"HTTP/1.1 503 ")
    head, _, body = refused.partition(b"\r\n\r\n")
    assert b"\r\nretry-after: 1" in head
    assert "(CDP_MAX_CONNECTIONS)" in json.loads(body)["detail"]
    _wait_for_log(served, "refused with 503")


def _refused_past(served: Server, busy: int) -> bytes:
    """What a new connection is answered while `busy` connections are each in a request
    whose body is still coming. Until the server has read their headers they are idle,
    and one would be closed to make room: then they are made anew and it is tried again."""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        held = [_connect(served.url) for _ in range(busy)]
        for connection in held:
            connection.sendall(
                b"POST /webhooks/fasttrack HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
            )
        time.sleep(0.2)  # time for the server to read them; tried again if too short
        with _connect(served.url) as probe:
            probe.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            answer = _until_closed(probe)
        for connection in held:
            connection.close()
        if not answer.startswith(b"HTTP/1.1 200 "):
            return answer
    raise AssertionError("the busy connections' requests never reached the server")


def test_1100_idle_sockets_neither_starve_new_clients_nor_go_unlogged(
    database: str, tmp_path: Path
) -> None:
    """Under a limit of 1 024 open files, as the finding had it."""
    with _Serving(database, tmp_path, files=1024) as served:
        started = served.log.read_text()
        assert "may open 1024 files" in started
        limit = int(re.findall(r"at most (\d+) connections at once", started)[0])
        assert limit < 1024
        idle: list[socket.socket] = []
        try:
            for number in range(1100):
                connection = _connect(served.url)
                if number % 2:
                    connection.sendall(b"GET /health HTTP/1.1\r\nHost: 127")
                idle.append(connection)
            with httpx.Client(base_url=served.url, timeout=PATIENCE) as client:
                for _ in range(5):
                    assert client.get("/health").status_code == 200
            # Those idle the longest made room for the others and the new clients.
            _wait_for_log(served, "idle the longest", at_least=1100 - limit)
        finally:
            for connection in idle:
                connection.close()


@pytest.fixture(autouse=True)
def _enough_files_here() -> None:
    """The test process opens 1 100 sockets of its own."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


class _Serving:
    """`cdp serve` in a process that may open at most `files` files."""

    def __init__(self, database: str, tmp_path: Path, *, files: int) -> None:
        self.database, self.log, self.files = database, tmp_path / "limited.log", files

    def __enter__(self) -> Server:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        limited = (
            "import resource, runpy, sys; "
            f"resource.setrlimit(resource.RLIMIT_NOFILE, ({self.files}, {self.files})); "
            f"sys.argv = ['cdp', 'serve', '--port', '{port}']; "
            "runpy.run_module('cdp', run_name='__main__')"
        )
        env = {**os.environ, "CDP_DATABASE_URL": self.database}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", limited], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    return Server(url, self.process, self.log)
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError("cdp serve did not start within 30 s")

    def __exit__(self, *_: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _wait_for_log(served: Server, words: str, at_least: int = 1) -> None:
    """Until the server's warnings have counted `at_least` connections closed for the reason
    `words`: a warning comes at most every LOG_EVERY seconds, after what it reports."""
    said = re.compile(rf"(\d+) {re.escape(words)}")
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        counted = sum(
            int(count)
            for line in served.log.read_text().splitlines()
            if "connections closed for the server's limits" in line
            for count in said.findall(line)
        )
        if counted >= at_least:
            return
        time.sleep(0.2)
    raise AssertionError(f"no warning of {words!r} in the log:\n{served.log.read_text()}")


# The warning itself, in this process.


@pytest.fixture
def warnings_of_limits(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="cdp.server")
    return caplog


def test_a_flood_of_closed_connections_is_one_warning_at_most_every_so_often(
    warnings_of_limits: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bounded, "LOG_EVERY", 0.2)
    limits = Limits(
        connections=10,
        header_size=16384,
        header_timeout=10,
        body_timeout=30,
        keep_alive_timeout=5,
        wanted_connections=10,
        open_files=1024,
    )
    tally = Tally(limits)

    async def flood() -> None:
        for _ in range(1000):
            tally.note("evicted")
        tally.note("header_size")
        assert len(warnings_of_limits.records) == 1  # the first, at once
        while tally.flush_due is not None:
            await asyncio.sleep(0.05)

    asyncio.run(flood())
    first, second = (record.getMessage() for record in warnings_of_limits.records)
    assert "1 idle the longest" in first
    assert "999 idle the longest" in second
    assert "1 whose headers were too large (431)" in second
