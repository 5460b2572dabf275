"""Hostile and broken input: clear refusals, each kept as a rejected delivery, never logged."""

import asyncio
import gc
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import Engine, func, select

from cdp.access import credentials
from cdp.http.app import create_app
from cdp.log.tables import events, rejected
from cdp.log.webhook import Rejection
from cdp.privacy.keystore import MAIN
from cdp.projections import registry
from cdp.runtime import service
from cdp.runtime.metrics import Metrics
from cdp.settings import Settings
from tests.cli.test_commands import cdp
from tests.factories import JSON_TYPE, webhook

Client = TestClient  # type: ignore[type-arg]


def good(chat: str = "c", **fields: Any) -> bytes:
    return json.dumps(webhook("message_created", chat=chat, message="hi", **fields)).encode()


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(table)) or 0)


BROKEN = {
    "duplicate key": (
        good().replace(b'{"uuid": "c"', b'{"uuid": "c", "uuid": "d"'),
        400,
        "the key 'uuid' twice",
    ),
    "duplicate key, escaped": (
        good().replace(b'{"uuid": "c"', b'{"uuid": "c", "\\u0075uid": "d"'),
        400,
        "twice in one object",
    ),
    "64 KiB string": (
        good().replace(b'"hi"', json.dumps("я" * 40_000).encode()),
        422,
        "payload.message.text: it is 80000 bytes long",
    ),
    "10 001 keys": (
        good().replace(b'"hi"', json.dumps({f"k{n}": 0 for n in range(10_001)}).encode()),
        422,
        "more than 10000 keys",
    ),
    "invalid UTF-8": (good().replace(b'"hi"', b'"\xff\xfe"'), 400, "not UTF-8"),
    "NaN": (good().replace(b'"hi"', b"NaN"), 422, "finite"),
}


@pytest.mark.parametrize(("content", "status", "named"), BROKEN.values(), ids=BROKEN.keys())
def test_broken_input_is_refused_clearly_and_kept_apart_from_the_log(
    client: Client, engine: Engine, content: bytes, status: int, named: str
) -> None:
    answer = client.post(
        "/webhooks/fasttrack", content=content, headers={"User-Agent": "t/1", **JSON_TYPE}
    )
    assert answer.status_code == status, answer.text
    assert named in answer.json()["detail"]
    assert count(engine, events) == 0
    (kept,) = client.get("/rejected").json()["items"]
    assert kept["status"] == status
    assert named in kept["reason"]
    assert kept["source"] == "default"
    assert kept["headers"]["user-agent"] == "t/1"
    if named == "not UTF-8":  # no erasure could read it: kept as its size and hash only
        assert (kept["body"], kept["size"]) == ("", len(content))
        assert "body not kept, since no erasure could read it" in kept["reason"]
    else:
        assert kept["body"].encode() == content


def test_a_wrong_content_type_is_a_415_and_its_body_is_kept(client: Client, engine: Engine) -> None:
    answer = client.post(
        "/webhooks/fasttrack", content=good(), headers={"Content-Type": "text/plain"}
    )
    assert answer.status_code == 415
    assert "'text/plain' is not JSON" in answer.json()["detail"]
    assert (
        client.post(
            "/webhooks/fasttrack",
            content=good("d"),
            headers={"Content-Type": "application/json; charset=utf-8"},
        ).status_code
        == 202
    )
    (kept,) = client.get("/rejected").json()["items"]
    assert (kept["status"], kept["body"]) == (415, good().decode())


def test_a_body_over_the_limit_is_a_413_read_no_further_and_its_start_kept(
    settings: Settings, engine: Engine
) -> None:
    small = settings.model_copy(update={"max_body_size": 2048})
    content = good().replace(b'"hi"', json.dumps("x" * 5000).encode())

    def chunks() -> Any:
        yield content[:1000]
        yield content[1000:]

    with TestClient(create_app(small)) as client:
        streamed = client.post("/webhooks/fasttrack", content=chunks(), headers=JSON_TYPE)
        announced = client.post("/webhooks/fasttrack", content=content, headers=JSON_TYPE)
        assert (streamed.status_code, announced.status_code) == (413, 413)
        assert "larger than 2048 bytes" in streamed.json()["detail"]
        items = client.get("/rejected").json()["items"]
    assert [item["status"] for item in items] == [413, 413]
    assert items[0]["body"].encode() == content[:2048]
    assert items[1]["body"] == ""  # refused on its Content-Length, before a byte was read
    assert items[1]["size"] == len(content)
    assert count(engine, events) == 0


def posted_as_a_server_passes_it_on(client: Client, content_length: bytes) -> int:
    """The status of a webhook whose Content-Length header reaches the app byte for byte
    (HTTP clients refuse to send a header that is not ASCII)."""
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": good(), "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/webhooks/fasttrack",
        "raw_path": b"/webhooks/fasttrack",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"content-length", content_length)],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    client.blocking_portal.call(client.app, scope, receive, send)
    return int(sent[0]["status"])


@pytest.mark.parametrize("content_length", [b"\xb2", b"1\xb3"], ids=["²", "1³"])
def test_a_content_length_of_digits_int_cannot_read_is_a_400_not_a_500(
    client: Client, engine: Engine, content_length: bytes
) -> None:
    """A superscript two is a digit to str.isdigit(), yet no number to int(): the request
    is malformed, not the server broken."""
    assert posted_as_a_server_passes_it_on(client, content_length) == 400
    assert count(engine, events) == 0


@pytest.mark.slow
def test_a_refused_delivery_and_its_body_are_freed_at_once_not_by_a_full_collection(
    client: Client,
) -> None:
    """A stream of large refused bodies must not pile up in memory until Python's cyclic
    garbage collector next looks at its oldest objects, which may be hundreds away."""

    def alive() -> int:
        return sum(isinstance(thing, Rejection) for thing in gc.get_objects())

    def over_a_mebibyte() -> Iterator[bytes]:
        yield from [b" " * 65536] * 17

    gc.collect()
    gc.disable()
    try:
        before = alive()
        for _ in range(3):
            assert (
                client.post(
                    "/webhooks/fasttrack", content=b"{" * 1000, headers=JSON_TYPE
                ).status_code
                == 400
            )
            assert (
                client.post(
                    "/webhooks/fasttrack", content=over_a_mebibyte(), headers=JSON_TYPE
                ).status_code
                == 413
            )
            text = {"Content-Type": "text/plain"}
            assert (
                client.post("/webhooks/fasttrack", content=good(), headers=text).status_code == 415
            )
        assert (
            client.post("/webhooks/fasttrack", content=good(), headers=JSON_TYPE).status_code == 202
        )
        assert alive() == before  # the writer let go of its last group of refusals too
    finally:
        gc.enable()


def test_refusals_for_credentials_or_rate_are_not_kept(settings: Settings, engine: Engine) -> None:
    with engine.begin() as connection:
        secret = credentials.add_source(connection, "shop").secret
    with TestClient(create_app(settings.model_copy(update={"webhook_rate_limit": 1}))) as client:
        assert (
            client.post(
                "/webhooks/fasttrack/shop", params={"token": "x"}, content=b"{", headers=JSON_TYPE
            ).status_code
            == 401
        )
        statuses = {
            client.post(
                "/webhooks/fasttrack/shop",
                params={"token": secret},
                content=good(f"c{n}"),
                headers=JSON_TYPE,
            ).status_code
            for n in range(30)
        }
    assert 429 in statuses
    assert count(engine, rejected) == 0


def test_rejected_deliveries_need_an_admin_token(settings: Settings, engine: Engine) -> None:
    with engine.begin() as connection:
        read = credentials.create_token(connection, "r", "read")
        admin = credentials.create_token(connection, "a", "admin")
    with TestClient(create_app(settings)) as client:
        assert client.get("/rejected").status_code == 401
        assert (
            client.get("/rejected", headers={"Authorization": f"Bearer {read}"}).status_code == 403
        )
        assert (
            client.get("/rejected", headers={"Authorization": f"Bearer {admin}"}).status_code == 200
        )


def test_a_page_of_rejected_deliveries_is_bounded_in_bytes(client: Client) -> None:
    big = good().replace(b'"hi"', json.dumps("x" * 60_000).encode()).replace(b'"c"', b'""')
    for n in range(80):
        client.post(
            "/webhooks/fasttrack",
            content=big.replace(b'"x', f'"{n}'.encode(), 1),
            headers=JSON_TYPE,
        )
    pages = all_pages(client, "/rejected")
    assert len(pages) > 1
    assert all(sum(len(item["body"]) for item in page) <= 4 * 1024 * 1024 for page in pages)
    ids = [item["id"] for page in pages for item in page]
    assert ids == sorted(set(ids))
    assert len(ids) == 80


def test_a_page_of_the_log_is_bounded_in_bytes(client: Client) -> None:
    for n in range(80):
        body = webhook("message_created", chat=f"c{n}", message="x" * 60_000)
        assert (
            client.post(
                "/webhooks/fasttrack", content=json.dumps(body), headers=JSON_TYPE
            ).status_code
            == 202
        )
    pages = all_pages(client, "/events")
    assert len(pages) > 1
    assert all(sum(len(json.dumps(e["body"])) for e in page) <= 4 * 1024 * 1024 for page in pages)
    assert [e["position"] for page in pages for e in page] == list(range(1, 81))


def all_pages(client: Client, path: str) -> list[list[dict[str, Any]]]:
    pages, after = [], 0
    while after is not None:
        page = client.get(path, params={"after": after, "limit": 1000}).json()
        pages.append(page["items"])
        after = page["next_after"]
    return pages


def test_replay_moves_what_passes_today_into_the_log_exactly_once(
    database: str, client: Client, engine: Engine
) -> None:
    late = webhook("message_created", chat="late", message="hi")
    client.post(
        "/webhooks/fasttrack", content=json.dumps(late), headers={"Content-Type": "text/plain"}
    )
    client.post("/webhooks/fasttrack", content=b"{broken", headers=JSON_TYPE)
    client.post(
        "/webhooks/fasttrack", content=json.dumps(late), headers={"Content-Type": "text/csv"}
    )
    ids = [item["id"] for item in client.get("/rejected").json()["items"]]
    assert len(ids) == 3

    one = cdp(database, "rejected", "replay", "--id", str(ids[0]))
    assert one.exit_code == 0, one.output
    assert "moved into the log: 1, still refused: 0" in one.output
    every = cdp(database, "rejected", "replay", "--all")
    assert "moved into the log: 1, still refused: 1" in every.output
    assert f"{ids[1]}: still refused: body is not valid JSON" in every.output
    again = cdp(database, "rejected", "replay", "--all")
    assert "moved into the log: 0, still refused: 1" in again.output
    logged = client.get("/events").json()["items"]
    assert [event["chat_uuid"] for event in logged] == ["late"]
    assert client.get("/chats/late").status_code == 200
    assert [item["id"] for item in client.get("/rejected").json()["items"]] == [ids[1]]


def test_old_rejected_deliveries_expire(settings: Settings, engine: Engine) -> None:
    with TestClient(create_app(settings)) as client:
        client.post("/webhooks/fasttrack", content=b"{old", headers=JSON_TYPE)
    with engine.begin() as connection:
        connection.execute(rejected.update().values(received_at=1))  # long ago
    with TestClient(create_app(settings)) as client:
        client.post("/webhooks/fasttrack", content=b"{new", headers=JSON_TYPE)
        reasons = [item["reason"] for item in client.get("/rejected").json()["items"]]
    assert len(reasons) == 1
    assert "not valid JSON" in reasons[0]


def test_old_rejected_deliveries_are_forgotten_a_few_after_each_group_then_once_an_hour(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "_EXPIRED_AT_ONCE", 2)
    old = {"received_at": 1, "source": "default", "status": 400, "reason": "old", "size": 1}
    with engine.begin() as connection:
        connection.execute(rejected.insert(), [{**old, "headers": {}, "body": b"{"}] * 5)
    writer = service.Writer(
        engine, registry.projectors(settings), settings, timedelta(seconds=30), MAIN, Metrics()
    )
    left = []
    for n in range(5):
        if n == 4:  # refused long ago, but found after the hour's expiry ended
            with engine.begin() as connection:
                connection.execute(rejected.insert(), [{**old, "headers": {}, "body": b"{"}])
        body = json.dumps(webhook("message_created", chat=f"c{n}", message=str(n))).encode()
        asyncio.run(writer.record(body))
        with engine.connect() as connection:
            left.append(connection.scalar(select(func.count()).select_from(rejected)))
    writer.stop()
    assert left == [3, 1, 0, 0, 1]
