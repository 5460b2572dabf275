"""Projections built anew while the service keeps working: what /projections and cdp
status say, one build at a time across processes, and a build killed midway."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient
from sqlalchemy import Engine, func, select, update

from cdp import upgrades
from cdp.bench.soak import rebuild_changes
from cdp.conversations.projector import ChatsProjector
from cdp.conversations.tables import timeline
from cdp.http.app import create_app
from cdp.log import ingest
from cdp.privacy.keystore import MAIN, Keystore
from cdp.projections import builds, registry
from cdp.projections.tables import checkpoints
from cdp.settings import Settings
from tests.api.conftest import name_digest, name_digests
from tests.cli.test_commands import cdp
from tests.conftest import Server
from tests.factories import PAST, checked, handoff, opened, reply, webhook

Client = TestClient  # type: ignore[type-arg]


def history(chats: int, at: int = PAST) -> list[dict[str, Any]]:
    bodies = []
    for n in range(chats):
        chat, start = f"chat-{n}", at + 60_000 * n
        bodies += [*opened(chat, at=start, profile=f"p{n}"), reply(chat, at=start + 1000)]
        bodies.append(handoff(chat, at=start + 2000, team=2))
    return bodies


def log(engine: Engine, settings: Settings, bodies: list[dict[str, Any]]) -> None:
    """Log `bodies` as a server on `settings` would, with its keystore."""
    incoming = [checked(json.dumps(body, ensure_ascii=False)) for body in bodies]
    keystore = Keystore.at(settings.keystore())
    for start in range(0, len(incoming), 500):
        batch = incoming[start : start + 500]
        ingest.record(engine, batch, registry.projectors(settings), keystore=keystore)
    keystore.dispose()


def states(client: Client) -> dict[str, dict[str, Any]]:
    answer = client.get("/projections")
    assert answer.status_code == 200, answer.text
    return {item["name"]: item for item in answer.json()["items"]}


def until_live(client: Client) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = states(client)
        if all(state["status"] == "live" for state in found.values()):
            return found
        time.sleep(0.05)
    raise AssertionError(f"the projections are not live: {found}")


def test_projections_say_what_built_them_and_a_rebuild_answers_at_once(
    client: Client, engine: Engine, settings: Settings
) -> None:
    log(engine, settings, history(3))
    found = states(client)
    names = [projector.name for projector in registry.projectors(settings)]
    assert {name: state["status"] for name, state in found.items()} == dict.fromkeys(names, "live")
    chats = found["chats"]
    assert (chats["version"], chats["built_version"]) == (ChatsProjector.version,) * 2
    assert chats["shape"] == chats["built_shape"]
    assert "session_idle_timeout=86400000ms" in chats["shape"]
    assert (chats["lag"], chats["lag_seconds"], chats["build"]) == (0, 0.0, None)
    before = contents(engine)
    answer = client.post("/projections/rebuild")
    assert answer.status_code == 202, answer.text
    assert {state["status"] for state in answer.json()["items"]} <= {"rebuilding", "live"}
    after = until_live(client)
    assert after["chats"]["build"]["state"] == "done"
    assert after["chats"]["build"]["done"] == after["chats"]["head"] == 12
    assert contents(engine) == before


def test_one_projection_is_rebuilt_by_name_and_an_unknown_one_is_a_404(
    client: Client, engine: Engine, settings: Settings
) -> None:
    log(engine, settings, history(2))
    assert client.post("/projections/profiles/rebuild").status_code == 202
    after = until_live(client)
    assert after["profiles"]["build"]["state"] == "done"
    assert after["chats"]["build"] is None
    unknown = client.post("/projections/nothing/rebuild")
    assert unknown.status_code == 404
    names = sorted(projector.name for projector in registry.projectors(Settings()))
    assert f"there are {', '.join(names)}" in unknown.json()["detail"]


def test_a_second_build_of_a_projection_is_refused_naming_the_running_one(
    client: Client, engine: Engine, database: str, settings: Settings
) -> None:
    log(engine, settings, history(2))
    with builds.claimed(engine, ["chats"]):  # as another process's build would hold it
        builds._record(engine, ["chats"], state="running", started_at=PAST, done=5, total=9)
        refused = client.post("/projections/chats/rebuild")
        assert refused.status_code == 409
        assert "projection chats is being built by" in refused.json()["detail"]
        assert "(5 of 9 events)" in refused.json()["detail"]
        assert states(client)["chats"]["status"] == "rebuilding"
        by_cli = cdp(database, "rebuild", "--projection", "chats")
        assert by_cli.exit_code == 1
        assert "projection chats is being built by" in by_cli.output
    assert states(client)["chats"]["build"]["state"] == "interrupted"  # its holder is gone
    assert cdp(database, "rebuild", "--projection", "chats").exit_code == 0


def test_other_settings_make_a_projection_stale_until_it_is_built_anew(
    engine: Engine, database: str, settings: Settings
) -> None:
    log(engine, settings, history(2))
    other = {"CDP_SESSION_IDLE_TIMEOUT": "3600"}
    shown = cdp(database, "status", **other).output
    version = ChatsProjector.version
    assert f"projection chats: position 8, lag 0, stale (built by version {version} with" in shown
    assert "session_idle_timeout=3600000ms" in shown
    assert "projection profiles: position 8, lag 0, live" in shown
    assert "projection teams: position 8, lag 0, live" in shown  # names follow no session rule
    built = cdp(database, "catch-up", **other)
    assert built.exit_code == 0, built.output
    assert "built chats, reports up to position 8" in built.output  # and what reads chats
    assert "projection chats: position 8, lag 0, live" in cdp(database, "status", **other).output
    assert "nothing to build" in cdp(database, "catch-up", **other).output


def test_the_server_builds_stale_projections_as_it_starts(
    engine: Engine, settings: Settings
) -> None:
    log(engine, settings, history(2))
    shorter = settings.model_copy(update={"session_idle_timeout": timedelta(hours=1)})
    with TestClient(create_app(shorter)) as client:
        found = until_live(client)
        assert "session_idle_timeout=3600000ms" in found["chats"]["built_shape"]
        assert found["chats"]["build"]["state"] == "done"


def test_a_store_from_before_name_keys_gets_them_from_the_build_the_server_starts(
    engine: Engine, settings: Settings
) -> None:
    """The migration adds the keys empty: the names are sealed in the log, and only a build
    opens them. The chats projector's new version is what makes the server build it."""
    log(engine, settings, opened("c", profile="p", name="Иван  Петров"))
    upgrades.downgrade(engine, "0011")
    with engine.begin() as connection:  # what the code before the keys recorded
        built_by = update(checkpoints).where(checkpoints.c.name == "chats")
        connection.execute(built_by.values(version=ChatsProjector.version - 1))
    upgrades.upgrade(engine)
    assert name_digests(engine) == {"c": None}
    with TestClient(create_app(settings)) as client:
        assert until_live(client)["chats"]["build"]["state"] == "done"
    assert name_digests(engine) == {"c": name_digest("иван петров")}


class Counter:
    """A projector with no tables that notes every event it is given: added to a projectors,
    it must get the whole log once, then follow it."""

    name, version, shape = "counter", 1, ""
    tables: tuple[Any, ...] = ()

    def __init__(self) -> None:
        self.seen: list[int] = []

    def apply(self, connection: Any, batch: Any, *, fresh: bool, tables: Any) -> None:
        self.seen += [recorded.position for recorded in batch]

    def forget(self, connection: Any, chats: Any, tables: Any) -> None:
        pass


def test_a_projector_added_to_the_registry_fills_from_the_whole_log_then_follows_it(
    engine: Engine, settings: Settings
) -> None:
    log(engine, settings, history(3))
    counter = Counter()
    projectors = [*registry.projectors(settings), counter]
    with engine.connect() as connection:
        assert [p.name for p in builds.needed(connection, projectors)] == ["counter"]
    body = webhook("message_created", chat="chat-9", at=PAST, message="before it is built")
    ingest.record(engine, [checked(json.dumps(body))], projectors, keystore=MAIN)
    assert counter.seen == []  # not fed until built
    builds.run(engine, [counter], MAIN)
    later = webhook("message_created", chat="chat-9", at=PAST + 1, message="after")
    ingest.record(engine, [checked(json.dumps(later))], projectors, keystore=MAIN)
    assert sorted(counter.seen) == list(range(1, 15))


@pytest.fixture
def big(engine: Engine, settings: Settings) -> int:
    """A log long enough for a build to be caught midway: its head."""
    log(engine, settings, history(700))
    return 2100


def contents(engine: Engine) -> list[list[Any]]:
    """Every row of every projection, in the order of their keys."""
    with engine.connect() as connection:
        return [
            list(connection.execute(select(table).order_by(*table.primary_key.columns)))
            for projector in registry.projectors(Settings())
            for table in projector.tables
        ]


def equal_to_a_rebuild(engine: Engine, settings: Settings) -> bool:
    keystore = Keystore.at(settings.keystore())
    try:
        return rebuild_changes(engine, registry.projectors(Settings()), keystore) == []
    finally:
        keystore.dispose()


@pytest.mark.slow
def test_a_build_killed_midway_leaves_the_live_projection_serving_and_runs_again(
    big: int, engine: Engine, database: str, settings: Settings
) -> None:
    before = contents(engine)
    env = {**os.environ, "CDP_DATABASE_URL": database}
    process = subprocess.Popen(
        [sys.executable, "-m", "cdp", "rebuild"],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert process.stderr is not None
    for line in process.stderr:  # killed at its first word of progress
        if b"building" in line and b" 0 of" not in line:
            break
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()
    assert contents(engine) == before  # the live tables, whole
    with engine.connect() as connection:
        chats, *_ = builds.states(connection, registry.projectors(settings))
    assert chats.status == "live"
    assert chats.build is not None
    assert chats.build.state == "interrupted"
    again = cdp(database, "rebuild")
    assert again.exit_code == 0, again.output
    assert contents(engine) == before


@pytest.mark.slow
def test_webhooks_are_taken_all_through_a_build_and_are_in_what_it_swaps_in(
    big: int, serve: Callable[..., Server], engine: Engine, settings: Settings
) -> None:
    server = serve()
    posted, answers = [], []
    stop = threading.Event()

    def post() -> None:
        n = 0
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                body = webhook("message_created", chat=f"live-{n % 5}", at=PAST + n, message=str(n))
                answers.append(client.post("/webhooks/fasttrack", json=body).status_code)
                posted.append(body)
                n += 1

    poster = threading.Thread(target=post)
    poster.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.post("/projections/rebuild").status_code == 202
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                found = client.get("/projections").json()["items"]
                if all(s["build"] and s["build"]["state"] == "done" for s in found):
                    break
                time.sleep(0.1)
    finally:
        stop.set()
        poster.join()
    assert answers
    assert set(answers) == {202}
    assert equal_to_a_rebuild(engine, settings)
    with engine.connect() as connection:
        live = connection.scalar(
            select(func.count()).select_from(timeline).where(timeline.c.chat_uuid.like("live-%"))
        )
    assert live == len(posted)
