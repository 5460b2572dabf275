"""Parsing a webhook body: what is accepted, what is refused and how it is named."""

import hashlib
import inspect
import json
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdp.conversations.fold import fact_of
from cdp.log.store import Recorded
from cdp.log.webhook import Incoming, InvalidWebhook, MalformedBody, logged, nesting, parse
from tests.factories import PAST, checked, now_ms, samples, webhook


def paths(body: object) -> list[str]:
    with pytest.raises(InvalidWebhook) as raised:
        checked(json.dumps(body))
    return [error.path for error in raised.value.errors]


def test_every_sample_is_accepted() -> None:
    parsed = [checked(body) for body in samples()]
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
        '{ "timestamp": 1777000000000,\n "payload": {"chat": {"uuid": "c"}, "x": [1.50]},'
        ' "event_type": "message_created" }'
    )
    assert checked(body.encode()).body == body


def test_the_fingerprint_ignores_key_order_and_whitespace() -> None:
    body = webhook("message_created", message="hi")
    spaced = json.dumps(body, indent=4)
    reordered = json.dumps(dict(reversed(list(body.items()))), separators=(",", ":"))
    assert checked(spaced).fingerprint == checked(reordered).fingerprint
    other = webhook("message_created", message="hi!")
    assert checked(json.dumps(other)).fingerprint != checked(spaced).fingerprint


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        (b"{", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "got array"),
        (b'"text"', "got string"),
        (b"null", "got null"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_malformed(raw: bytes, named: str) -> None:
    with pytest.raises(MalformedBody, match=named):
        checked(raw)


def test_the_envelope_fields_are_required_and_typed() -> None:
    assert paths({}) == ["event_type", "payload", "timestamp"]
    assert paths({"event_type": 5, "payload": [], "timestamp": PAST}) == ["event_type", "payload"]


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
    no_profile = checked(json.dumps(webhook("message_created", profile=None)))
    assert no_profile.webhook.profile_uuid is None


@pytest.mark.parametrize(("team", "expected"), [(12, 12), ("12", 12), ("007", 7)])
def test_a_team_id_is_an_integer_or_a_string_of_digits(team: object, expected: int) -> None:
    incoming = checked(json.dumps(webhook("session_updated", team=team)))  # type: ignore[arg-type]
    assert fact_of(logged_as_first(incoming)).event_team_id == expected


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
    incoming = checked(json.dumps(body))
    assert json.loads(incoming.body) == body


def test_an_unknown_event_type_needs_only_a_valid_envelope() -> None:
    incoming = checked(
        json.dumps(
            {"event_type": "chat_rated", "payload": {"chat": {"uuid": 5}}, "timestamp": PAST}
        )
    )
    assert incoming.webhook.chat_uuid is None
    named = checked(
        json.dumps(
            {"event_type": "chat_rated", "payload": {"chat": {"uuid": "c"}}, "timestamp": PAST}
        )
    )
    assert named.webhook.chat_uuid == "c"


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"event_type": "message_created", "payload": {}, "timestamp": PAST}, "message_created"),
        ({"event_type": "chat_rated", "payload": [], "timestamp": PAST}, "chat_rated"),
        ({"event_type": 7, "payload": {}, "timestamp": PAST}, None),
        ({"payload": {}, "timestamp": PAST}, None),
        ({"event_type": "message_created", "text": "x" * 70_000}, "message_created"),
    ],
)
def test_a_refused_webhook_names_the_event_type_its_body_names(
    body: dict[str, Any], named: str | None
) -> None:
    with pytest.raises(InvalidWebhook) as raised:
        checked(json.dumps(body))
    assert raised.value.event_type == named


def test_a_body_that_is_no_json_object_names_no_event_type() -> None:
    with pytest.raises(MalformedBody) as raised:
        checked('["message_created"]')
    assert raised.value.event_type is None


def message_with(raw_value: str) -> str:
    """A valid message_created whose message text is `raw_value`, spliced in as JSON text."""
    body = json.dumps(webhook("message_created", message="PLACEHOLDER"))
    return body.replace('"text": "PLACEHOLDER"', f'"text": {raw_value}')


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "a\\ud83d", "\\ude00b"])
def test_a_lone_surrogate_escape_is_a_422_naming_the_field(escape: str) -> None:
    with pytest.raises(InvalidWebhook) as raised:
        checked(message_with(f'"{escape}"'))
    assert [error.path for error in raised.value.errors] == ["payload.message.text"]
    assert "surrogate" in raised.value.errors[0].message


def test_a_surrogate_pair_escape_is_one_character_and_accepted() -> None:
    incoming = checked(message_with('"\\ud83d\\ude00"'))
    message = fact_of(logged_as_first(incoming)).message
    assert message == {"uuid": "m-PLACEHOLDER", "type": "text", "text": "😀"}


@pytest.mark.parametrize(
    "number", ["1e400", "-1e400", "NaN", "Infinity", "-Infinity", "9" * 400 + ".0"]
)
def test_a_number_that_is_not_finite_is_a_422_naming_the_field(number: str) -> None:
    with pytest.raises(InvalidWebhook) as raised:
        checked(message_with(number))
    assert [error.path for error in raised.value.errors] == ["payload.message.text"]
    assert "finite" in raised.value.errors[0].message


def test_a_large_finite_number_is_accepted() -> None:
    assert fact_of(logged_as_first(checked(message_with("1e300")))).message is not None


def nested(depth: int) -> str:
    """A webhook whose body nests `depth` levels of arrays and objects in all."""
    return message_with("[" * (depth - 3) + "]" * (depth - 3))


def test_nesting_up_to_64_levels_is_accepted() -> None:
    assert checked(nested(64)).webhook.chat_uuid == "chat-1"


@pytest.mark.parametrize("depth", [65, 1000, 100_000])
def test_deeper_nesting_is_refused_before_it_is_parsed(depth: int) -> None:
    with pytest.raises(MalformedBody, match="nested more than 64 levels deep"):
        checked(nested(depth))


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    incoming = checked(message_with(json.dumps("[{" * 500 + '\\"' + "}]" * 500)))
    assert incoming.webhook.chat_uuid == "chat-1"


@pytest.mark.parametrize("seconds", [1_777_967_172, 946_684_800])
def test_a_timestamp_in_seconds_is_a_422_that_says_so(seconds: int) -> None:
    body = webhook("message_created", at=seconds)
    with pytest.raises(InvalidWebhook, match="looks like seconds"):
        checked(json.dumps(body))


def test_a_timestamp_before_2000_is_refused_and_2000_itself_accepted() -> None:
    assert paths(webhook("message_created", at=946_684_799_999)) == ["timestamp"]
    assert checked(json.dumps(webhook("message_created", at=946_684_800_000))).webhook.timestamp


def test_a_timestamp_beyond_the_allowed_clock_skew_is_a_422_that_says_so() -> None:
    latest = now_ms() + 60_000
    too_late = json.dumps(webhook("message_created", at=latest + 1))
    with pytest.raises(InvalidWebhook, match="ahead of the server's clock") as raised:
        parse(too_late, latest=latest)
    assert [error.path for error in raised.value.errors] == ["timestamp"]
    on_time = json.dumps(webhook("message_created", at=latest))
    assert parse(on_time, latest=latest).webhook.timestamp == latest


def test_a_timestamp_in_year_9999_is_refused() -> None:
    assert paths(webhook("session_updated", team=1, at=253_402_300_799_999)) == ["timestamp"]


LOOK_ALIKES = {
    "zero-width space": "chat\u200b-1",
    "right-to-left override": "\u202echat-1",
    "byte order mark": "\ufeffchat-1",
    "leading space": " chat-1",
    "trailing newline": "chat-1\n",
    "no-break space": "chat\u00a01",
    "tab": "chat\t1",
    "NUL": "chat\u00001",
    "line separator": "chat\u20281",
}


@pytest.mark.parametrize("value", LOOK_ALIKES.values(), ids=LOOK_ALIKES.keys())
@pytest.mark.parametrize(
    ("field", "put"),
    [
        ("payload.chat.uuid", lambda b, v: b["payload"]["chat"].update(uuid=v)),
        ("payload.profile.uuid", lambda b, v: b["payload"]["profile"].update(uuid=v)),
        (
            "payload.session.operator.uuid",
            lambda b, v: b["payload"]["session"]["operator"].update(uuid=v),
        ),
        ("event_type", lambda b, v: b.update(event_type=v)),
    ],
)
def test_an_identifier_with_invisible_or_control_characters_is_a_422(
    value: str, field: str, put: Callable[[dict[str, Any], str], None]
) -> None:
    body = webhook("operator_replied", operator="op-1", team=1)
    put(body, value)
    assert field in paths(body)


def test_an_identifier_may_hold_any_visible_text() -> None:
    incoming = checked(json.dumps(webhook("message_created", chat="чат 1\\ü%2F...")))
    assert incoming.webhook.chat_uuid == "чат 1\\ü%2F..."


@pytest.mark.parametrize("value", ["a/b", "/", "../x", ".", ".."])
@pytest.mark.parametrize(
    ("field", "put"),
    [
        ("payload.chat.uuid", lambda b, v: b["payload"]["chat"].update(uuid=v)),
        ("payload.profile.uuid", lambda b, v: b["payload"]["profile"].update(uuid=v)),
        (
            "payload.session.operator.uuid",
            lambda b, v: b["payload"]["session"]["operator"].update(uuid=v),
        ),
    ],
)
def test_an_id_that_could_not_be_a_path_segment_is_a_422(
    value: str, field: str, put: Callable[[dict[str, Any], str], None]
) -> None:
    body = webhook("operator_replied", operator="op-1", team=1)
    put(body, value)
    assert paths(body) == [field]


def test_an_empty_profile_uuid_names_no_profile() -> None:
    body = webhook("message_created")
    body["payload"]["profile"]["uuid"] = ""
    assert checked(json.dumps(body)).webhook.profile_uuid is None


def test_a_logged_body_too_deep_or_not_json_reads_as_nothing() -> None:
    assert logged("[" * 100_000 + "]" * 100_000) is None
    assert logged('{"a": ' + "[" * 600 + "]" * 600 + "}") is None
    assert logged("{not json") is None
    assert logged("[1]") is None


def test_a_logged_body_reads_unrepresentable_values_as_null_and_u_fffd() -> None:
    document = logged('{"a": 1e400, "b": NaN, "c": "x\\ud800y", "d": [1.5, "\\ud83d\\ude00"]}')
    assert document == {"a": None, "b": None, "c": "x\ufffdy", "d": [1.5, "😀"]}


def test_a_logged_body_255_levels_deep_is_read() -> None:
    document = logged('{"a": ' + "[" * 254 + "]" * 254 + "}")
    assert document is not None
    assert isinstance(document["a"], list)


def test_a_logged_body_512_levels_deep_reads_as_nothing_rather_than_fail_deep_in_a_stack() -> None:
    """Both readers count their nesting against Python's recursion limit, the frames of
    whoever calls them included: near it, a body they read elsewhere is read as nothing."""
    body = '{"a": ' + "[" * 511 + "]" * 511 + "}"

    def called_from(depth: int) -> dict[str, Any] | None:
        return logged(body) if depth == 0 else called_from(depth - 1)

    assert logged(body) is not None
    headroom = 300  # frames left below the limit: fewer than the body's levels
    assert called_from(sys.getrecursionlimit() - len(inspect.stack()) - headroom) is None


@pytest.mark.parametrize(
    "body",
    ['{"a":' + '"\\' * 300_000, '"' * 600_000, '["' * 300_000, '"\\\\' * 200_000],
    ids=["escaped quotes", "quotes", "open strings", "escaped backslashes"],
)
def test_measuring_the_nesting_of_any_body_takes_one_pass(body: str) -> None:
    done = threading.Event()
    worker = threading.Thread(target=lambda: (nesting(body, 64), done.set()), daemon=True)
    worker.start()
    worker.join(timeout=30)  # one pass takes milliseconds; a quadratic scan takes hours
    assert done.is_set()


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@given(extra=_JSON, ascii_only=st.booleans())
def test_a_body_is_read_as_json_reads_it(extra: Any, ascii_only: bool) -> None:
    """The fast reader must give what json.loads gives, float for float, key for key."""
    body = webhook("message_created", message="hi")
    body["payload"]["extra"] = extra
    text = json.dumps(body, ensure_ascii=ascii_only)
    expected = repr(json.loads(text))
    assert repr(checked(text).webhook.document) == expected
    assert repr(logged(text)) == expected


@given(extra=_JSON, ascii_only=st.booleans(), spaced=st.booleans())
def test_a_body_has_the_fingerprint_of_its_canonical_json_floats_or_not(
    extra: Any, ascii_only: bool, spaced: bool
) -> None:
    """It must never change: a redelivery of a body logged long ago is a duplicate."""
    body = webhook("message_created", message="hi")
    body["payload"]["extra"] = extra
    text = json.dumps(body, ensure_ascii=ascii_only, indent=2 if spaced else None)
    canonical = json.dumps(
        json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    assert checked(text).fingerprint == hashlib.sha256(canonical.encode()).hexdigest()


def logged_as_first(incoming: Incoming) -> Recorded:
    return Recorded(1, PAST, incoming, "0" * 64)
