"""Every id the log accepts can be reached through the API and the console; an id that
could not be (it holds "/", or is "." or "..") is refused at the door and kept as a
rejected delivery; such an id an older version logged is still read, rebuilt and erased."""

import hashlib
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from litestar.testing import TestClient
from sqlalchemy import Engine, func, select

from cdp.http.app import create_app
from cdp.log import ingest
from cdp.log.tables import events
from cdp.log.webhook import Incoming, Webhook
from cdp.privacy.keystore import MAIN
from cdp.projections import registry
from cdp.settings import Settings
from tests.api.conftest import rebuilt
from tests.cli.test_commands import cdp
from tests.conftest import Server
from tests.factories import JSON_TYPE, PAST, webhook

Client = TestClient  # type: ignore[type-arg]

NAME, PHONE = "Анна Петрова", "+79991234567"


def put(body: dict[str, Any], field: str, value: str) -> dict[str, Any]:
    if field == "payload.chat.uuid":
        body["payload"]["chat"]["uuid"] = value
    elif field == "payload.profile.uuid":
        body["payload"]["profile"]["uuid"] = value
    else:
        body["payload"]["session"]["operator"]["uuid"] = value
    return body


UNREACHABLE = {
    "a slash": ("payload.chat.uuid", "a/b", "must not contain '/'"),
    "a dot-dot segment": ("payload.chat.uuid", "../x", "must not contain '/'"),
    "a dot": ("payload.chat.uuid", ".", "must not be '.'"),
    "two dots": ("payload.chat.uuid", "..", "must not be '..'"),
    "a profile with a slash": ("payload.profile.uuid", "org/cust-9", "must not contain '/'"),
    "an operator with a slash": ("payload.session.operator.uuid", "ops/1", "must not contain"),
}


@pytest.mark.parametrize(("field", "value", "why"), UNREACHABLE.values(), ids=UNREACHABLE.keys())
def test_an_id_the_api_could_not_reach_is_refused_at_the_door_and_kept(
    client: Client, engine: Engine, field: str, value: str, why: str
) -> None:
    body = put(webhook("operator_replied", chat="c", operator="op-1", team=1), field, value)
    answer = client.post("/webhooks/fasttrack", content=json.dumps(body), headers=JSON_TYPE)
    assert answer.status_code == 422, answer.text
    (error,) = answer.json()["errors"]
    assert error["path"] == field
    assert why in error["message"]
    (kept,) = client.get("/rejected").json()["items"]
    assert (kept["status"], json.loads(kept["body"])) == (422, body)
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(events)) == 0


def test_an_unknown_event_type_naming_such_an_id_names_no_chat(client: Client) -> None:
    body = webhook("chat_archived", chat="a/b", profile="org/cust-9")
    assert (
        client.post("/webhooks/fasttrack", content=json.dumps(body), headers=JSON_TYPE).status_code
        == 202
    )
    (event,) = client.get("/events").json()["items"]
    assert (event["chat_uuid"], event["profile_uuid"]) == (None, None)


# Every character a path segment must encode, and segments clients could take for dots.
ODD = ["a\\b", "a%2Fb", "a%b", "a?b#c", "a;b=c&d", "a b+c", "чат ü", "...", "%2e%2e", ".x", "x."]


@pytest.mark.slow
def test_every_id_the_log_accepts_is_reachable_through_the_api_and_the_console(
    serve: Callable[..., Server],
) -> None:
    """Over HTTP to a real server: the test client decodes a path twice, a server once."""
    with httpx.Client(base_url=serve().url) as client:
        for at, uuid in enumerate(ODD):
            body = webhook(
                "message_created", chat=uuid, profile=f"p-{uuid}", at=PAST + at, name=NAME
            )
            assert client.post("/webhooks/fasttrack", json=body).status_code == 202
            chat, profile = quote(uuid, safe=""), quote(f"p-{uuid}", safe="")
            assert client.get(f"/chats/{chat}").json()["uuid"] == uuid
            timeline = client.get(f"/chats/{chat}/timeline").json()["items"]
            assert [item["kind"] for item in timeline] == ["message_in"]
            assert client.get(f"/profiles/{profile}").json()["chats"][0]["uuid"] == uuid
            page = client.get(f"/console/chats/{chat}")
            assert (page.status_code, NAME in page.text) == (200, True), uuid
            assert client.get(f"/console/profiles/{profile}").status_code == 200
            erased = client.post(f"/profiles/{profile}/erase")
            assert erased.status_code == 200, erased.text
            assert erased.json()["chats"] == [uuid]
            assert client.get(f"/chats/{chat}").json()["name"] is None


def logged_by_an_older_version(body: dict[str, Any]) -> Incoming:
    """`body` as a version that took any identifier logged it."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    chat, profile = body["payload"]["chat"]["uuid"], body["payload"]["profile"]["uuid"]
    found = Webhook(body["event_type"], body["timestamp"], chat, profile, body)
    return Incoming(json.dumps(body), hashlib.sha256(canonical.encode()).hexdigest(), found)


def test_such_an_id_an_older_version_logged_is_still_read_rebuilt_and_erased(
    engine: Engine, settings: Settings, database: str
) -> None:
    bodies = [
        webhook("session_updated", chat="a/b", profile="org/cust-9", team=1, phone=PHONE),
        webhook("message_created", chat="a/b", profile="org/cust-9", at=PAST + 1, name=NAME),
    ]
    old = [logged_by_an_older_version(body) for body in bodies]
    ingest.record(engine, old, registry.projectors(settings), keystore=MAIN)
    with TestClient(create_app(settings)) as client:
        read_rebuilt_and_erased(client, database, bodies)


def read_rebuilt_and_erased(client: Client, database: str, bodies: list[dict[str, Any]]) -> None:
    rebuilt(client)
    by_chat = client.get("/events", params={"chat_uuid": "a/b"}).json()["items"]
    assert [(e["erased"], e["unreadable"]) for e in by_chat] == [(False, None)] * 2
    assert [event["body"] for event in by_chat] == bodies
    by_profile = client.get("/events", params={"profile_uuid": "org/cust-9"}).json()["items"]
    assert len(by_profile) == 2
    assert cdp(database, "erase", "--profile", "org/cust-9").exit_code == 0
    rebuilt(client)
    text = json.dumps(client.get("/events", params={"chat_uuid": "a/b"}).json())
    assert NAME not in text
    assert PHONE not in text
