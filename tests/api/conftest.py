"""A real `cdp serve`, in a process of its own, for the tests that need one."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest


@dataclass(frozen=True)
class Server:
    url: str
    process: "subprocess.Popen[bytes]"


@pytest.fixture
def serve(database: str, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start `cdp serve` on the test database with the settings given."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(**settings: str) -> Server:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = {**os.environ, "CDP_DATABASE_URL": database, **settings}
        with (tmp_path / "server.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "cdp", "serve", "--port", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    return Server(url, process)
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
