"""Several server processes on one PostgreSQL: nothing lost, nothing duplicated, positions
in commit order, every projection equal to a rebuild; refused on SQLite."""

import json
import subprocess
import threading
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from cdp import chain, log, projectors
from cdp.bench.soak import keystore_of, rebuild_changes
from cdp.bench.traffic import Traffic, webhooks
from cdp.db import make_engine
from cdp.settings import Settings
from tests.cli.test_commands import cdp
from tests.conftest import Server, empty

WORKERS, CLIENTS = 4, 8


def test_four_workers_and_eight_clients_lose_nothing_and_store_nothing_twice(
    postgres_url: str, serve_on: Callable[..., Server]
) -> None:
    empty(postgres_url)
    server = serve_on(postgres_url, "--workers", str(WORKERS), CDP_WEBHOOK_RATE_LIMIT="0")
    traffic = Traffic(events=5000, seed=11, redeliveries=0.1, shuffled=True)
    bodies = [json.dumps(body, ensure_ascii=False) for body in webhooks(traffic)]
    assert len(bodies) > len(set(bodies)) > 4000  # re-deliveries among them
    answers: list[tuple[str, int, dict[str, Any]]] = []
    turn = iter(bodies)
    guard = threading.Lock()

    def post() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            while True:
                with guard:
                    body = next(turn, None)
                if body is None:
                    return
                answer = client.post("/webhooks/fasttrack", content=body)
                with guard:
                    answers.append((body, answer.status_code, answer.json()))

    clients = [threading.Thread(target=post) for _ in range(CLIENTS)]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    assert len(_children(server)) == WORKERS

    assert {status for _, status, _ in answers} == {200, 202}
    positions: dict[str, set[int]] = defaultdict(set)
    new = defaultdict(int)
    for body, status, answer in answers:
        positions[body].add(answer["position"])
        new[body] += status == 202
    assert all(len(found) == 1 for found in positions.values())  # one position a body
    assert set(new.values()) == {1}  # answered as new exactly once
    engine = make_engine(postgres_url)
    with engine.connect() as connection:
        logged = log.read(connection)
        assert chain.verify(connection).broken_at is None  # each row chained to the one before
    assert [row.position for row in logged] == list(range(1, len(set(bodies)) + 1))
    assert {row.position for row in logged} == {p for found in positions.values() for p in found}
    keystore = keystore_of(engine)
    assert rebuild_changes(engine, projectors.registry(Settings()), keystore) == []
    keystore.dispose()
    engine.dispose()


def _children(server: Server) -> list[str]:
    """The worker processes under the server's."""
    found = subprocess.run(
        ["pgrep", "-P", str(server.process.pid), "-f", "spawn_main"],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.split()


def test_workers_above_one_are_refused_on_sqlite(sqlite_template: Path, tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'cdp.db'}"
    result = cdp(database, "serve", "--workers", "2")
    assert result.exit_code == 1
    assert "--workers above 1 needs PostgreSQL" in result.output
