"""`cdp import` killed midway (kill -9) and run again over the same file stores every event once."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cdp.bench.soak import keystore_of, rebuild_changes
from cdp.bench.traffic import Traffic, lines
from cdp.db import make_engine
from cdp.log.tables import events
from cdp.projections import registry
from cdp.settings import Settings
from tests.cli.test_commands import cdp

pytestmark = pytest.mark.slow

EVENTS = 20_000


def test_an_import_killed_midway_and_run_again_stores_every_event_exactly_once(
    database: str, tmp_path: Path
) -> None:
    path = tmp_path / "webhooks.jsonl"
    path.write_bytes(b"".join(lines(Traffic(events=EVENTS, seed=7, redeliveries=0.02))))
    engine = make_engine(database)

    def logged() -> int:
        with engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(events)) or 0

    with (tmp_path / "import.log").open("wb") as output:
        importing = subprocess.Popen(
            [sys.executable, "-m", "cdp", "import", "--batch-size", "500", str(path)],
            env={**os.environ, "CDP_DATABASE_URL": database},
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 120
    while logged() == 0 and importing.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    importing.send_signal(signal.SIGKILL)
    importing.wait(timeout=30)
    killed_at = logged()
    assert 0 < killed_at < EVENTS, (tmp_path / "import.log").read_text()

    again = cdp(database, "import", str(path))

    assert again.exit_code == 0, again.output
    assert f"accepted: {EVENTS - killed_at}, " in again.output
    with engine.connect() as connection:
        keys = list(connection.scalars(select(events.c.dedupe_key)))
    assert len(keys) == len(set(keys)) == EVENTS
    assert rebuild_changes(engine, registry.projectors(Settings()), keystore_of(engine)) == []
    engine.dispose()
