"""POST /webhooks/fasttrack, through the Litestar test client, on both databases."""

import json
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import Engine

from cdp.log import store
from cdp.privacy.keystore import Keystore
from cdp.projections.runner import key_lookup
from cdp.settings import Settings
from tests.factories import JSON_TYPE, PAST, samples, webhook

Client = TestClient  # type: ignore[type-arg]


def post(client: Client, body: Any) -> Any:
    content = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False)
    return client.post("/webhooks/fasttrack", content=content, headers=JSON_TYPE)


def head(client: Client) -> int:
    return int(client.get("/health").json()["head"])


def test_the_samples_are_accepted_in_turn(client: Client) -> None:
    answers = [post(client, body) for body in samples()]
    assert {answer.status_code for answer in answers} == {202}
    positions = [answer.json()["position"] for answer in answers]
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)
    assert not any(answer.json()["duplicate"] for answer in answers)


def test_a_redelivered_webhook_answers_with_its_original_position(client: Client) -> None:
    body = webhook("message_created", message="hello")
    first = post(client, body)
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=3).encode()
    again = post(client, reordered)
    assert again.status_code == 200
    assert again.json() == {"position": first.json()["position"], "duplicate": True}
    assert len(client.get("/events").json()["items"]) == 1


@pytest.mark.parametrize(
    ("content", "named"),
    [(b"{not json", "not valid JSON"), (b"[1, 2]", "got array"), (b'"text"', "got string")],
)
def test_a_body_that_is_not_a_json_object_is_a_400_and_stores_nothing(
    client: Client, content: bytes, named: str
) -> None:
    answer = post(client, content)
    assert answer.status_code == 400
    assert named in answer.json()["detail"]
    assert head(client) == 0


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda b: b["payload"]["chat"].update(uuid=""), "payload.chat.uuid"),
        (lambda b: b["payload"]["session"]["team"].update(id="12a"), "payload.session.team.id"),
        (lambda b: b["payload"]["session"]["team"].update(id=True), "payload.session.team.id"),
        (lambda b: b["payload"]["session"]["team"].update(id=1.5), "payload.session.team.id"),
        (lambda b: b["payload"]["session"].pop("team"), "payload.session.team"),
        (lambda b: b.update(timestamp="1777000000000"), "timestamp"),
        (lambda b: b.update(timestamp=1777000000000.5), "timestamp"),
        (lambda b: b["payload"]["profile"].update(uuid=7), "payload.profile.uuid"),
    ],
)
def test_an_invalid_webhook_is_a_422_naming_the_field_and_stores_nothing(
    client: Client, change: Any, path: str
) -> None:
    post(client, webhook("message_created", message="kept"))
    body = webhook("session_updated", team=1)
    change(body)
    answer = post(client, body)
    assert answer.status_code == 422
    assert path in [error["path"] for error in answer.json()["errors"]]
    assert path in answer.json()["detail"]
    assert head(client) == 1
    assert [item["event_type"] for item in client.get("/events").json()["items"]] == [
        "message_created"
    ]


def test_a_team_id_given_as_digits_is_returned_as_an_integer(client: Client) -> None:
    post(client, webhook("session_updated", chat="c", team="12", team_name="Первая линия"))
    assert client.get("/chats/c").json()["team"] == {"id": 12, "name": "Первая линия"}


def test_unknown_fields_are_kept_in_the_log_as_they_came(
    client: Client, engine: Engine, settings: Settings
) -> None:
    body = webhook("operator_replied", operator="op", team=1, message="hi")
    body["payload"]["message"]["attachments"] = [{"url": "https://example.com/a.pdf"}]
    body["payload"]["bot"] = {"id": 3}
    raw = json.dumps(body, ensure_ascii=False, indent=2)
    position = post(client, raw.encode()).json()["position"]
    assert client.get(f"/events/{position}").json()["body"] == body
    keystore = Keystore.at(settings.keystore())
    with engine.connect() as connection:
        ((whole, opened),) = store.bodies(store.read(connection), key_lookup(connection, keystore))
    keystore.dispose()
    assert (whole, opened) == (raw, store.Opened.WHOLE)


def test_an_unknown_event_type_is_stored_and_shown_as_other_on_its_chat(client: Client) -> None:
    post(client, webhook("session_updated", chat="c", team=1))
    rated = {
        "event_type": "chat_rated",
        "payload": {"chat": {"uuid": "c"}, "score": 5},
        "timestamp": PAST + 10,
    }
    answer = post(client, rated)
    assert answer.status_code == 202
    events = client.get("/events", params={"event_type": "chat_rated"}).json()["items"]
    assert [event["body"] for event in events] == [rated]
    timeline = client.get("/chats/c/timeline").json()["items"]
    assert [item["kind"] for item in timeline] == ["session_opened", "other"]
    assert (
        client.get("/chats/c").json()["last_seen_at"]
        == client.get("/chats/c").json()["first_seen_at"]
    )


def test_a_202_means_every_query_already_reflects_the_webhook(client: Client) -> None:
    for body in samples():
        post(client, body)
        projections = client.get("/projections").json()["items"]
        assert {p["lag"] for p in projections} == {0}
    chat = client.get("/chats/0b6f7a52-3f8e-4d55-9a0e-6f1f3c2b9d10").json()
    # The samples end with a handoff to the second line and its operator's reply.
    assert (chat["team"]["id"], chat["operator"]["name"]) == (15, "Игорь")


def test_a_nul_character_in_an_identifier_is_a_422(client: Client) -> None:
    answer = post(client, webhook("message_created", chat="c\u0000d"))
    assert answer.status_code == 422
    assert [error["path"] for error in answer.json()["errors"]] == ["payload.chat.uuid"]
    assert head(client) == 0


def test_a_nul_character_in_text_is_kept_in_the_log_and_replaced_in_read_models(
    client: Client,
) -> None:
    body = webhook("message_created", chat="c", name="An\u0000na", message="hi\u0000")
    position = post(client, body).json()["position"]
    assert client.get(f"/events/{position}").json()["body"] == body
    assert client.get("/chats/c").json()["name"] == "An\ufffdna"


def with_text(raw_value: str) -> bytes:
    body = json.dumps(webhook("message_created", chat="c", message="PLACEHOLDER"))
    return body.replace('"text": "PLACEHOLDER"', f'"text": {raw_value}').encode()


HOSTILE = {
    "lone surrogate": (with_text('"\\ud800"'), 422, "payload.message.text"),
    "100 000 levels deep": (with_text("[" * 100_000 + "]" * 100_000), 400, "nested more than 64"),
    "1e400": (with_text("1e400"), 422, "payload.message.text"),
    "NaN": (with_text("NaN"), 422, "payload.message.text"),
    "-Infinity": (with_text("-Infinity"), 422, "payload.message.text"),
    "seconds": (
        json.dumps(webhook("message_created", chat="c", at=1_777_967_172)).encode(),
        422,
        "looks like seconds",
    ),
    "year 9999": (
        json.dumps(webhook("session_updated", chat="c", team=9, at=253_402_300_000_000)).encode(),
        422,
        "ahead of the server's clock",
    ),
    "zero-width space": (
        json.dumps(webhook("message_created", chat="c\u200b")).encode(),
        422,
        "payload.chat.uuid",
    ),
    "right-to-left override": (
        json.dumps(webhook("message_created", chat="c", profile="\u202ep")).encode(),
        422,
        "payload.profile.uuid",
    ),
    "trailing space": (
        json.dumps(webhook("operator_replied", chat="c", operator="op ", team=1)).encode(),
        422,
        "payload.session.operator.uuid",
    ),
}


@pytest.mark.parametrize(("body", "status", "named"), HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_body_is_refused_with_a_clear_error_and_changes_nothing(
    client: Client, body: bytes, status: int, named: str
) -> None:
    post(client, webhook("session_updated", chat="c", team=1, name="Anna"))
    before = client.get("/chats/c").json()
    answer = post(client, body)
    assert answer.status_code == status
    assert named in answer.text
    assert head(client) == 1
    assert client.get("/chats/c").json() == before
