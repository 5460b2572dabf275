"""Parsing a webhook body: what is accepted, what is refused and how it is named."""

import json

import pytest

from cdp.events import InvalidWebhook, MalformedBody, parse
from tests.factories import samples, webhook


def paths(body: object) -> list[str]:
    with pytest.raises(InvalidWebhook) as raised:
        parse(json.dumps(body))
    return [error.path for error in raised.value.errors]


def test_every_sample_is_accepted() -> None:
    parsed = [parse(body) for body in samples()]
    assert {incoming.webhook.event_type for incoming in parsed} == {
        "session_updated",
        "message_created",
        "operator_replied",
        "message_updated",
    }
    assert {incoming.webhook.chat_uuid for incoming in parsed} == {
        "0b6f7a52-3f8e-4d55-9a0e-6f1f3c2b9d10"
    }


def test_the_body_is_kept_exactly_as_received() -> None:
    body = (
        '{ "timestamp": 1,\n "payload": {"chat": {"uuid": "c"}, "x": [1.50]},'
        ' "event_type": "message_created" }'
    )
    assert parse(body.encode()).body == body


def test_the_dedupe_key_ignores_key_order_and_whitespace() -> None:
    body = webhook("message_created", message="hi")
    spaced = json.dumps(body, indent=4)
    reordered = json.dumps(dict(reversed(list(body.items()))), separators=(",", ":"))
    assert parse(spaced).dedupe_key == parse(reordered).dedupe_key
    other = webhook("message_created", message="hi!")
    assert parse(json.dumps(other)).dedupe_key != parse(spaced).dedupe_key


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        (b"{", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "got array"),
        (b'"text"', "got string"),
        (b"null", "got null"),
        (b'{"timestamp": NaN}', "NaN"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_malformed(raw: bytes, named: str) -> None:
    with pytest.raises(MalformedBody, match=named):
        parse(raw)


def test_the_envelope_fields_are_required_and_typed() -> None:
    assert paths({}) == ["event_type", "payload", "timestamp"]
    assert paths({"event_type": 5, "payload": [], "timestamp": 1}) == ["event_type", "payload"]


@pytest.mark.parametrize("timestamp", ["1777967172150", 1777967172150.5, True, -1, 10**15])
def test_a_timestamp_must_be_integer_milliseconds_in_range(timestamp: object) -> None:
    body = webhook("message_created")
    body["timestamp"] = timestamp
    assert paths(body) == ["timestamp"]


def test_a_known_event_needs_a_non_empty_chat_uuid() -> None:
    body = webhook("message_created", chat="")
    assert paths(body) == ["payload.chat.uuid"]
    del body["payload"]["chat"]
    assert paths(body) == ["payload.chat"]


def test_a_profile_uuid_is_a_string_or_absent() -> None:
    body = webhook("message_created")
    body["payload"]["profile"]["uuid"] = 42
    assert paths(body) == ["payload.profile.uuid"]
    assert parse(json.dumps(webhook("message_created", profile=None))).webhook.profile_uuid is None


@pytest.mark.parametrize(("team", "expected"), [(12, 12), ("12", 12), ("007", 7)])
def test_a_team_id_is_an_integer_or_a_string_of_digits(team: object, expected: int) -> None:
    incoming = parse(json.dumps(webhook("session_updated", team=team)))  # type: ignore[arg-type]
    assert incoming.webhook.payload is not None
    assert incoming.webhook.payload.session is not None
    assert incoming.webhook.payload.session.team is not None
    assert incoming.webhook.payload.session.team.id == expected


@pytest.mark.parametrize("team", ["12a", "", "-3", "١٢", True, 1.5, None, [12], 2**63])
def test_any_other_team_id_is_refused(team: object) -> None:
    body = webhook("session_updated", team=1)
    body["payload"]["session"]["team"]["id"] = team
    assert paths(body) == ["payload.session.team.id"]


def test_a_session_updated_needs_a_team() -> None:
    assert paths(webhook("session_updated", title="no team")) == ["payload.session.team"]


def test_every_bad_field_is_named_at_once() -> None:
    body = webhook("session_updated", chat="", team="x")
    body["timestamp"] = "soon"
    assert paths(body) == ["timestamp", "payload.chat.uuid", "payload.session.team.id"]


def test_unknown_fields_are_kept_not_refused() -> None:
    body = webhook("operator_replied", operator="op", team=1)
    body["payload"]["session"]["integration"] = {"kind": "crm"}
    body["payload"]["rating"] = 5
    body["trace"] = "abc"
    incoming = parse(json.dumps(body))
    assert json.loads(incoming.body) == body


def test_an_unknown_event_type_needs_only_a_valid_envelope() -> None:
    incoming = parse(
        json.dumps({"event_type": "chat_rated", "payload": {"chat": {"uuid": 5}}, "timestamp": 1})
    )
    assert (incoming.webhook.payload, incoming.webhook.chat_uuid) == (None, None)
    named = parse(
        json.dumps({"event_type": "chat_rated", "payload": {"chat": {"uuid": "c"}}, "timestamp": 1})
    )
    assert named.webhook.chat_uuid == "c"
