"""GET /metrics: what was counted, and what the database and the pools say when scraped."""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import OperationalError

from cdp.access import credentials
from cdp.http.app import create_app
from cdp.log.tables import events
from cdp.projections import registry
from cdp.projections.tables import checkpoints
from cdp.settings import Settings
from cdp.times import now_ms
from tests.api.conftest import rebuilt
from tests.factories import JSON_TYPE, webhook

Client = TestClient  # type: ignore[type-arg]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scraped(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@dataclass
class Store:
    """A store with two sources, a read token and an admin token."""

    client: Client
    engine: Engine
    shop: str
    other: str
    read: str
    admin: str

    def post(self, body: Any, source: str = "shop", **headers: str) -> int:
        secret = self.shop if source == "shop" else self.other
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        answer = self.client.post(
            f"/webhooks/fasttrack/{source}",
            params={"token": secret},
            content=content,
            headers={**JSON_TYPE, **headers},
        )
        return answer.status_code

    def metrics(self) -> Samples:
        answer = self.client.get("/metrics", headers={"Authorization": f"Bearer {self.read}"})
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/plain; version=")
        return scraped(answer.text)


@pytest.fixture
def store(settings: Settings, engine: Engine) -> Iterator[Store]:
    with engine.begin() as connection:
        shop = credentials.add_source(connection, "shop").secret
        other = credentials.add_source(connection, "other").secret
        read = credentials.create_token(connection, "prometheus", "read")
        admin = credentials.create_token(connection, "ops", "admin")
    with TestClient(create_app(settings)) as client:
        yield Store(client, engine, shop, other, read, admin)


def test_webhooks_are_counted_by_outcome_event_type_source_and_status(store: Store) -> None:
    opened = webhook("session_updated", chat="a", profile="pa", team=1)
    message = webhook("message_created", chat="a", profile="pa", message="hello")
    custom = webhook("bot_clicked", chat="b", profile="pb")
    no_chat = {"event_type": "message_created", "payload": {}, "timestamp": 1_777_000_000_000}
    assert [store.post(opened), store.post(message), store.post(custom)] == [202, 202, 202]
    assert [store.post(message), store.post(message)] == [200, 200]
    assert store.post(no_chat) == 422
    assert store.post(b"{") == 400
    assert store.post(message, **{"Content-Type": "text/plain"}) == 415
    assert store.post(webhook("message_created", chat="a", profile="pa"), source="other") == 409

    samples = store.metrics()
    accepted = {
        (dict(labels)["source"], dict(labels)["event_type"]): count
        for (name, labels), count in samples.items()
        if name == "cdp_webhooks_accepted_total"
    }
    assert accepted == {
        ("shop", "session_updated"): 1,
        ("shop", "message_created"): 1,
        ("shop", "other"): 1,
    }
    assert (
        value(samples, "cdp_webhooks_duplicate_total", source="shop", event_type="message_created")
        == 2
    )
    rejected = {
        (dict(labels)["source"], dict(labels)["event_type"], dict(labels)["status"]): count
        for (name, labels), count in samples.items()
        if name == "cdp_webhooks_rejected_total"
    }
    assert rejected == {
        ("shop", "message_created", "422"): 1,
        ("shop", "none", "400"): 1,
        ("shop", "none", "415"): 1,
        ("other", "message_created", "409"): 1,
    }


def test_the_ingest_histogram_counts_each_webhook_logged_or_a_duplicate(store: Store) -> None:
    first = webhook("message_created", chat="a", profile="pa", message="one")
    second = webhook("message_created", chat="a", profile="pa", message="two")
    answers = [store.post(first), store.post(second), store.post(first), store.post(b"[]")]
    assert answers == [202, 202, 200, 400]
    samples = store.metrics()
    assert value(samples, "cdp_webhook_ingest_seconds_count") == 3
    assert value(samples, "cdp_webhook_ingest_seconds_bucket", le="+Inf") == 3
    assert value(samples, "cdp_webhook_ingest_seconds_sum") > 0


def test_requests_are_counted_by_route_and_status(store: Store) -> None:
    store.client.get("/chats/nobody", headers={"Authorization": f"Bearer {store.read}"})
    store.client.get("/chats/nobody")
    store.client.get("/no/such/route")
    samples = store.metrics()
    chat = {"method": "GET", "route": "/chats/{uuid}"}
    assert value(samples, "cdp_http_requests_total", **chat, status="404") == 1
    assert value(samples, "cdp_http_requests_total", **chat, status="401") == 1
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    assert value(samples, "cdp_http_requests_total", **unmatched) == 1


def test_the_log_head_and_each_projection_s_position_and_lag_are_those_of_get_projections(
    store: Store,
) -> None:
    for n in range(3):
        assert store.post(webhook("message_created", chat=f"c{n}", profile=f"p{n}")) == 202
    with store.engine.begin() as connection:  # as if the profiles had fallen behind
        connection.execute(
            update(checkpoints).where(checkpoints.c.name == "profiles").values(position=1)
        )
        second = connection.scalar(select(events.c.received_at).where(events.c.position == 2))
    headers = {"Authorization": f"Bearer {store.read}"}
    listed = store.client.get("/projections", headers=headers).json()["items"]
    before = now_ms()
    samples = store.metrics()
    after = now_ms()

    assert value(samples, "cdp_database_up") == 1
    assert {projection["head"] for projection in listed} == {3}
    assert value(samples, "cdp_log_head") == 3
    for projection in listed:
        name = projection["name"]
        assert value(samples, "cdp_projection_position", projection=name) == projection["position"]
        assert value(samples, "cdp_projection_lag", projection=name) == projection["lag"]
    assert {p["name"]: p["lag"] for p in listed} == {
        projector.name: 2 if projector.name == "profiles" else 0
        for projector in registry.projectors(Settings())
    }
    assert value(samples, "cdp_projection_lag_seconds", projection="chats") == 0
    waited = value(samples, "cdp_projection_lag_seconds", projection="profiles")
    assert (before - second) / 1000 <= waited <= (after - second) / 1000


def test_the_pools_use_is_shown_for_each_engine(store: Store, settings: Settings) -> None:
    samples = store.metrics()
    size = settings.database_pool_size
    assert value(samples, "cdp_database_pool_size", engine="main") == size
    assert 0 <= value(samples, "cdp_database_pool_checked_out", engine="main") <= size
    assert value(samples, "cdp_database_pool_overflow", engine="main") == 0
    if store.engine.dialect.name == "sqlite":  # its keystore is a file beside it
        assert value(samples, "cdp_database_pool_size", engine="keystore") == size


def test_a_rebuild_reports_its_progress_to_the_end(store: Store, engine: Engine) -> None:
    for n in range(4):
        assert store.post(webhook("message_created", chat=f"c{n}", profile=f"p{n}")) == 202
    admin = {"Authorization": f"Bearer {store.admin}"}
    rebuilt(store.client, headers=admin)
    samples = store.metrics()
    with engine.connect() as connection:
        logged = connection.scalar(select(func.count()).select_from(events))
    for name in ("chats", "profiles"):
        assert value(samples, "cdp_rebuild_events_done", projection=name) == logged == 4
        assert value(samples, "cdp_rebuild_events_total", projection=name) == logged


def test_metrics_need_a_read_token_once_tokens_exist(store: Store) -> None:
    assert store.client.get("/metrics").status_code == 401
    wrong = {"Authorization": "Bearer not-a-token"}
    assert store.client.get("/metrics", headers=wrong).status_code == 401
    admin = {"Authorization": f"Bearer {store.admin}"}
    assert store.client.get("/metrics", headers=admin).status_code == 200
    store.metrics()  # with the read token


def test_an_open_store_answers_metrics_without_a_token(client: Client) -> None:
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert value(scraped(answer.text), "cdp_database_up") == 1


def test_a_database_that_cannot_be_read_leaves_its_gauges_out_and_the_counts_in(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert store.post(webhook("message_created", chat="a", profile="pa")) == 202

    def down(*_: object) -> None:
        raise OperationalError("SELECT", {}, Exception("the server went away"))

    monkeypatch.setattr("cdp.projections.builds.states", down)
    samples = store.metrics()
    assert value(samples, "cdp_database_up") == 0
    assert not any(name.startswith("cdp_projection_") for name, _ in samples)
    accepted = {"source": "shop", "event_type": "message_created"}
    assert value(samples, "cdp_webhooks_accepted_total", **accepted) == 1
