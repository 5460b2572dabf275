"""Metrics of several processes, summed through PROMETHEUS_MULTIPROC_DIR; bounded labels."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client.multiprocess import mark_process_dead
from prometheus_client.parser import text_string_to_metric_families

from cdp.log.store import Receipt
from cdp.runtime.metrics import (
    MULTIPROCESS_DIRECTORY,
    Metrics,
    event_type,
    method,
    multiprocess_directory,
)

# What a worker does: count webhooks, a request and a rebuild's progress, then say its pid.
WORKER = textwrap.dedent(
    """
    import sys
    from cdp.log.store import Receipt
    from cdp.log.webhook import MalformedBody
    from cdp.runtime.metrics import Metrics, multiprocess_directory

    metrics = Metrics(multiprocess_directory())
    accepted, done = int(sys.argv[1]), int(sys.argv[2])
    for n in range(accepted):
        metrics.webhook("shop", "message_created", Receipt(n, duplicate=False), 0.002)
    metrics.webhook("shop", None, MalformedBody("not JSON"), 0.0)
    metrics.request("POST", "/webhooks/fasttrack/{source}", 202)
    metrics.rebuild_progress("chats", done, 10)
    print(__import__("os").getpid())
    """
)


def worker(directory: Path, accepted: int, done: int) -> int:
    env = {**os.environ, MULTIPROCESS_DIRECTORY: str(directory)}
    ran = subprocess.run(
        [sys.executable, "-c", WORKER, str(accepted), str(done)],
        env=env,
        capture_output=True,
        check=True,
        text=True,
    )
    return int(ran.stdout)


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = metrics.exposition(None, {}).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.slow
def test_the_counts_of_every_process_writing_to_one_directory_are_summed(
    tmp_path: Path,
) -> None:
    worker(tmp_path, accepted=3, done=4)
    worker(tmp_path, accepted=5, done=7)
    here = Metrics(str(tmp_path))
    # This process counts apart (it imported prometheus_client without the directory):
    # none of it may show beside what the files hold.
    here.webhook("shop", "message_created", Receipt(1, duplicate=False), 0.002)

    found = samples(here)
    labels = frozenset({"source": "shop", "event_type": "message_created"}.items())
    assert found[("cdp_webhooks_accepted_total", labels)] == 8
    rejected = frozenset({"source": "shop", "event_type": "none", "status": "400"}.items())
    assert found[("cdp_webhooks_rejected_total", rejected)] == 2
    assert found[("cdp_webhook_ingest_seconds_count", frozenset())] == 8
    request = {"method": "POST", "route": "/webhooks/fasttrack/{source}", "status": "202"}
    assert found[("cdp_http_requests_total", frozenset(request.items()))] == 2
    # The rebuild reported last is the one shown.
    chats = frozenset({"projection": "chats"}.items())
    assert found[("cdp_rebuild_events_done", chats)] == 7


@pytest.mark.slow
def test_a_worker_marked_dead_keeps_its_counts_and_drops_its_rebuild_progress(
    tmp_path: Path,
) -> None:
    worker(tmp_path, accepted=3, done=4)
    dead = worker(tmp_path, accepted=5, done=7)
    mark_process_dead(dead, str(tmp_path))

    found = samples(Metrics(str(tmp_path)))
    labels = frozenset({"source": "shop", "event_type": "message_created"}.items())
    assert found[("cdp_webhooks_accepted_total", labels)] == 8
    assert found[("cdp_rebuild_events_done", frozenset({"projection": "chats"}.items()))] == 4


def test_the_directory_must_be_one_set_before_prometheus_client_is_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MULTIPROCESS_DIRECTORY, raising=False)
    assert multiprocess_directory() is None
    monkeypatch.setenv(MULTIPROCESS_DIRECTORY, str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="is not a directory"):
        multiprocess_directory()
    monkeypatch.setenv(MULTIPROCESS_DIRECTORY, str(tmp_path))  # too late for this process
    with pytest.raises(ValueError, match="set after prometheus_client was imported"):
        multiprocess_directory()


def test_labels_take_only_values_known_in_advance() -> None:
    assert [event_type(t) for t in ("session_updated", "bot_clicked", None)] == [
        "session_updated",
        "other",
        "none",
    ]
    assert [method(m) for m in ("GET", "BREW")] == ["GET", "other"]
