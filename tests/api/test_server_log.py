"""The server's log: a line per request, text by default or JSON lines, and never a
secret, a phone number or a message text in it."""

import json
import logging
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient
from sqlalchemy import Engine

from cdp.access import credentials
from tests.conftest import Server
from tests.factories import JSON_TYPE, webhook

Client = TestClient  # type: ignore[type-arg]
PHONE = "+7 999 123-45-67"
TEXT = "Здравствуйте, меня зовут Анна, мой заказ 12345678 не пришёл"
# No line may hold any of these, in any spelling a log could give them.
NEVER = ("999 123-45-67", "123-45-67", "9991234567", "12345678", "Здравствуйте", "Анна")


def test_each_request_is_one_line_with_its_path_and_never_its_query_string(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="cdp.requests"):
        client.get("/profiles", params={"phone": PHONE})
        client.post(
            "/webhooks/fasttrack", params={"token": "s3cret"}, content=b"{}", headers=JSON_TYPE
        )
        client.get("/no/such/route")
    lines = [record for record in caplog.records if record.name == "cdp.requests"]
    assert [line.fields["path"] for line in lines] == [  # type: ignore[attr-defined]
        "/profiles",
        "/webhooks/fasttrack",
        "/no/such/route",
    ]
    assert [line.fields["status"] for line in lines] == [200, 422, 404]  # type: ignore[attr-defined]
    assert lines[1].fields["source"] == "default"  # type: ignore[attr-defined]
    assert lines[0].getMessage().startswith('testclient "GET /profiles" 200 ')
    assert all("?" not in line.getMessage() and "s3cret" not in line.getMessage() for line in lines)


def server_with_traffic(serve: Callable[..., Server], engine: Engine, **settings: str) -> str:
    """A server (a source and a read token) that took a webhook with a phone and a text, a
    refused one, queries by phone and by a phone-like id, and wrong credentials; stopped,
    its log is returned whole."""
    with engine.begin() as connection:
        secret = credentials.add_source(connection, "default").secret
        token = credentials.create_token(connection, "analyst", "read")
    server = serve(**settings)
    reader = {"Authorization": f"Bearer {token}"}
    good = webhook("message_created", chat="79991234567", phone=PHONE, name="Анна", message=TEXT)
    bad = webhook("message_created", chat=PHONE + " ", phone=PHONE, message=TEXT)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        sent = client.post("/webhooks/fasttrack", params={"token": secret}, json=good)
        refused = client.post("/webhooks/fasttrack", params={"token": secret}, json=bad)
        found = client.get("/profiles", params={"phone": PHONE}, headers=reader)
        chat = client.get("/chats/79991234567", headers=reader)
        wrong = client.get("/metrics", headers={"Authorization": "Bearer guessed"})
        scraped = client.get("/metrics", headers=reader)
    answers = [sent, refused, found, chat, wrong, scraped]
    assert [answer.status_code for answer in answers] == [202, 422, 200, 200, 401, 200]
    server.process.terminate()  # every line written before the log is read
    server.process.wait(timeout=30)
    text = server.log.read_text()
    assert secret not in text
    assert token not in text
    for never in NEVER:
        assert never not in text, never
    return text


@pytest.mark.slow
def test_json_log_lines_hold_each_request_and_no_secret_phone_or_text(
    serve: Callable[..., Server], engine: Engine
) -> None:
    lines: list[dict[str, Any]] = [
        json.loads(line)
        for line in server_with_traffic(serve, engine, CDP_LOG_FORMAT="json").splitlines()
    ]
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line), line
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
    requests = [line for line in lines if line["logger"] == "cdp.requests"]
    webhooks = [line for line in requests if line["method"] == "POST"]
    assert [(line["path"], line["status"], line["source"]) for line in webhooks] == [
        ("/webhooks/fasttrack", 202, "default"),
        ("/webhooks/fasttrack", 422, "default"),
    ]
    for line in requests:
        assert line["level"] == "INFO"
        assert line["client"] == "127.0.0.1"
        assert isinstance(line["duration_ms"], float)
        assert line["duration_ms"] >= 0
        assert "?" not in line["path"]
    paths = {(line["method"], line["path"], line["status"]) for line in requests}
    assert {
        ("GET", "/profiles", 200),
        ("GET", "/chats/*********67", 200),
        ("GET", "/metrics", 401),
        ("GET", "/metrics", 200),
        ("GET", "/health", 200),
    } <= paths
    (rejection,) = [
        line for line in lines if line["logger"] == "cdp.api" and line.get("status") == 422
    ]
    assert rejection["level"] == "INFO"
    assert (rejection["method"], rejection["path"]) == ("POST", "/webhooks/fasttrack")
    assert rejection["reason"].startswith("invalid webhook: payload.chat.uuid: ")
    assert "token=***" in rejection["message"]
    assert any(line["logger"].startswith("uvicorn") for line in lines)


@pytest.mark.slow
def test_text_is_the_default_log_format(serve: Callable[..., Server], engine: Engine) -> None:
    lines = server_with_traffic(serve, engine).splitlines()
    assert not any(line.startswith("{") for line in lines)
    assert any(
        re.search(
            r' INFO cdp\.requests: 127\.0\.0\.1 "POST /webhooks/fasttrack" 202 [\d.]+ ms '
            r"source=default$",
            line,
        )
        for line in lines
    )
