"""Several server processes on one PostgreSQL: nothing lost, nothing duplicated, positions
in commit order, every projection equal to a rebuild; refused on SQLite."""

import json
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from cdp.bench.soak import _fresh, keystore_of, rebuild_changes
from cdp.bench.traffic import Traffic, webhooks
from cdp.conversations.tables import waits
from cdp.db import make_engine
from cdp.log import chain, ingest, store
from cdp.projections import registry
from cdp.projections.tables import checkpoints
from cdp.settings import Settings
from cdp.teams.tables import teams
from tests.cli.test_commands import cdp
from tests.conftest import Server, empty
from tests.factories import JSON_TYPE, checked

WORKERS, CLIENTS = 4, 8


@pytest.mark.slow
def test_four_workers_and_eight_clients_lose_nothing_and_store_nothing_twice(
    postgres_url: str, serve_on: Callable[..., Server]
) -> None:
    empty(postgres_url)
    server = serve_on(postgres_url, "--workers", str(WORKERS), CDP_WEBHOOK_RATE_LIMIT="0")
    traffic = Traffic(events=2000, seed=11, redeliveries=0.1, shuffled=True)
    bodies = [json.dumps(body, ensure_ascii=False) for body in webhooks(traffic)]
    assert len(bodies) > len(set(bodies)) > 1600  # re-deliveries among them
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
                answer = client.post("/webhooks/fasttrack", content=body, headers=JSON_TYPE)
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
        logged = store.read(connection)
        assert chain.verify(connection).broken_at is None  # each row chained to the one before
    assert [row.position for row in logged] == list(range(1, len(set(bodies)) + 1))
    assert {row.position for row in logged} == {p for found in positions.values() for p in found}
    keystore = keystore_of(engine)
    assert rebuild_changes(engine, registry.projectors(Settings()), keystore) == []
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


@pytest.mark.slow
def test_under_load_four_workers_rebuild_every_projection_and_add_team_statistics(
    postgres_url: str, serve_on: Callable[..., Server]
) -> None:
    """What an operator does on a live system: a store that has served without team
    statistics gets them (the teams projection is new: its workers build it as they start),
    then every projection is rebuilt, while clients post webhooks all along. None fails,
    and what every projection holds afterwards is what a rebuild from the log makes."""
    empty(postgres_url)
    settings = Settings(database_url=postgres_url)
    engine = make_engine(postgres_url)
    keystore = keystore_of(engine)
    earlier = [checked(json.dumps(body)) for body in webhooks(Traffic(events=3000, seed=21))]
    for start in range(0, len(earlier), 500):
        projectors = registry.projectors(settings)
        ingest.record(engine, earlier[start : start + 500], projectors, keystore=keystore)
    with engine.begin() as connection:  # as before the teams projector was added
        connection.execute(checkpoints.delete().where(checkpoints.c.name == "teams"))
        connection.execute(waits.delete())
        connection.execute(teams.delete())

    server = serve_on(postgres_url, "--workers", str(WORKERS), CDP_WEBHOOK_RATE_LIMIT="0")
    statuses: list[int] = []
    accepted_at: list[float] = []  # when each webhook logged was answered (epoch seconds)
    posted = threading.Event()
    done = threading.Event()
    fresh = _fresh(31)
    guard = threading.Lock()

    def post() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            while not done.is_set():
                with guard:
                    body = next(fresh).body
                status = client.post(
                    "/webhooks/fasttrack", content=body, headers=JSON_TYPE
                ).status_code
                with guard:
                    statuses.append(status)
                    if status == 202:
                        accepted_at.append(time.time())
                    if len(statuses) >= 200:
                        posted.set()

    clients = [threading.Thread(target=post) for _ in range(CLIENTS)]
    for client in clients:
        client.start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as reader:
            added = _settled(reader, lambda states: states["teams"]["status"] == "live")
            assert added["teams"]["build"]["state"] == "done"  # built by a worker, at start
            assert posted.wait(60)
            asked = reader.post("/projections/rebuild")
            assert asked.status_code == 202, asked.text
            before = {name: state["build"] for name, state in added.items()}

            def rebuilt(states: dict[str, Any]) -> bool:
                return all(
                    state["status"] == "live"
                    and state["build"] != before[name]
                    and state["build"]["state"] == "done"
                    for name, state in states.items()
                )

            after = _settled(reader, rebuilt)
    finally:
        done.set()
        for client in clients:
            client.join()
    assert len(_children(server)) == WORKERS
    assert set(statuses) <= {200, 202}
    for name, state in after.items():  # webhooks were logged while each build ran
        build = state["build"]
        began, ended = (
            datetime.fromisoformat(build[at]).timestamp() for at in ("started_at", "finished_at")
        )
        assert any(began <= at <= ended for at in accepted_at), (name, build)
    with httpx.Client(base_url=server.url, timeout=60) as reader:
        caught_up = _settled(reader, lambda states: all(s["lag"] == 0 for s in states.values()))
    assert {state["status"] for state in caught_up.values()} == {"live"}
    with engine.connect() as connection:
        assert store.head(connection) == len(earlier) + statuses.count(202)
        assert connection.scalar(select(func.count()).select_from(waits)) > 0
    assert rebuild_changes(engine, registry.projectors(settings), keystore) == []
    keystore.dispose()
    engine.dispose()


def _settled(
    reader: httpx.Client, settled: Callable[[dict[str, Any]], bool], within: float = 120
) -> dict[str, Any]:
    """The projections' states once `settled` holds of them; an AssertionError after
    `within` seconds, with the last states."""
    deadline = time.monotonic() + within
    while True:
        answer = reader.get("/projections")
        assert answer.status_code == 200, answer.text
        states = {item["name"]: item for item in answer.json()["items"]}
        if settled(states):
            return states
        assert time.monotonic() < deadline, states
        time.sleep(0.2)
