"""Whatever bytes arrive, parse answers a checked webhook or a refusal, and nothing else.

Fuzzed three ways: any bytes; JSON-like text holding every hostile thing the checks name
(NaN and Infinity, deep nesting, repeated keys, invalid UTF-8, strings and key counts at
their limits); and the real samples, mutated. What parse accepts keeps its dedupe key
however it is spelt, and the log's lenient reader reads it back as parse read it.
"""

import json
from collections.abc import Iterator
from typing import Any, Final

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cdp.conversations.fold import fact_of
from cdp.log.store import Recorded
from cdp.log.webhook import (
    KNOWN_TYPES,
    MAX_KEYS,
    MAX_STRING_BYTES,
    Incoming,
    InvalidWebhook,
    Rejection,
    Webhook,
    logged,
)
from tests.factories import checked, now_ms, samples

SAMPLES: Final = samples()
FUZZ: Final = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# JSON text that parsers disagree on, or that the checks refuse by name.
TOKENS: Final = [
    *("NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "-0", "1E+2", "1.5e300"),
    *("9" * 4300, "9" * 4301, str(2**63), str(-(2**64)), "01", "+1", ".5", "0x10", "tru"),
    *('"\\ud800"', '"\\udfff"', '"a\\ud83d"', '"\\ud83d\\ude00"', '"\\u0000"', '"\\u200b"'),
    *('"\x00"', '"\x1f"', '"\\"', '"\\x41"', '"unterminated', "[", "{", "]", "}", ""),
]
# Hypothesis favours the small end of a range: the usual case there, the rare one at the top.
_MOSTLY: Final = st.integers(0, 9).map(lambda n: n < 9)


def _long_string(spare: int, unit: str) -> str:
    """A JSON string that decodes to MAX_STRING_BYTES + `spare` bytes of UTF-8, or about."""
    size = len(json.loads(f'"{unit}"').encode())
    return '"' + unit * ((MAX_STRING_BYTES + spare) // size) + '"'


def _many_keys(spare: int) -> str:
    return "{" + ",".join(f'"k{n}":0' for n in range(MAX_KEYS + spare)) + "}"


def _nested(depth: int, opening: str) -> str:
    closing = {"[": "]", '{"a":': "}"}[opening]
    return opening * depth + "0" + closing * depth


HUGE: Final = st.one_of(
    st.builds(_long_string, st.integers(-4, 4), st.sampled_from(["x", "я", "😀", "\\u044f"])),
    st.builds(_many_keys, st.integers(-4, 4)),
    st.builds(_nested, st.integers(1, 70) | st.sampled_from([511, 512, 513, 5000]), st.just("[")),
    st.builds(_nested, st.integers(60, 70), st.just('{"a":')),
)
ESCAPED: Final = st.one_of(
    st.text(max_size=12).map(json.dumps),
    st.text(max_size=12).map(lambda text: json.dumps(text, ensure_ascii=False)),
)
STRINGS: Final = ESCAPED | st.text(max_size=12).map(lambda text: f'"{text}"')  # raw controls
SCALARS: Final = st.one_of(
    st.sampled_from(TOKENS),
    st.sampled_from(["null", "true", "false", "0", '""']),
    st.integers().map(str),
    st.floats().map(json.dumps),  # NaN and Infinity among them
    STRINGS,
)
NAMES: Final = st.sampled_from(["uuid", "id", "chat", "team", "event_type"]).map(json.dumps)
VALUES: Final = st.recursive(
    _MOSTLY.flatmap(lambda usual: SCALARS if usual else HUGE),
    lambda children: st.one_of(
        st.lists(children, max_size=3).map(lambda items: "[" + ",".join(items) + "]"),
        st.lists(st.tuples(NAMES | STRINGS, children), max_size=3).map(
            lambda pairs: "{" + ",".join(f"{name}:{value}" for name, value in pairs) + "}"
        ),
    ),
    max_leaves=6,
)


def mostly(
    usual: st.SearchStrategy[str], rare: st.SearchStrategy[str] = VALUES
) -> st.SearchStrategy[str]:
    """`usual` nine times in ten, else `rare`: a hostile field or two a body, not all at once."""
    return _MOSTLY.flatmap(lambda usual_one: usual if usual_one else rare)


@st.composite
def objects(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[str]]) -> str:
    """An object's JSON text: most of `fields`, now and then a key twice or an unknown one."""
    pairs = [(json.dumps(name), draw(value)) for name, value in fields.items() if draw(_MOSTLY)]
    if not draw(_MOSTLY):
        pairs.append((draw(NAMES | STRINGS), draw(VALUES)))
    pairs = draw(st.permutations(pairs))
    space = draw(st.sampled_from(["", " ", "\n\t"]))
    return "{" + f",{space}".join(f"{name}:{space}{value}" for name, value in pairs) + "}"


IDS: Final = mostly(
    st.sampled_from(['"c"', '"chat-1"', '"чат 1/ü"']),
    st.sampled_from(['""', '" c"', '"c\\u200b"', '"c\\u0000"', "1", "null"]) | VALUES,
)
TEXTS: Final = mostly(st.sampled_from(['"Анна"', "null", '"+7 999 000-00-01"']) | ESCAPED)
SESSION: Final = objects(
    {
        "team": objects(
            {
                "id": mostly(
                    st.sampled_from(["12", '"12"']),
                    st.sampled_from(['"12a"', "2e1", str(2**63)]) | VALUES,
                )
            }
        ),
        "operator": objects({"uuid": IDS, "name": TEXTS}),
        "title": TEXTS,
    }
)
PAYLOAD: Final = objects(
    {
        "chat": objects({"uuid": IDS, "name": TEXTS, "phone": TEXTS, "platform": TEXTS}),
        "profile": objects({"uuid": IDS}),
        "session": SESSION,
        "message": objects({"text": TEXTS}),
    }
)
ENVELOPE: Final = objects(
    {
        "event_type": mostly(
            st.sampled_from([*sorted(KNOWN_TYPES), "chat_rated"]).map(json.dumps),
            st.sampled_from(['""', '" chat_rated"', str(2**63)]) | VALUES,
        ),
        "payload": mostly(PAYLOAD),
        "timestamp": mostly(st.builds(lambda: str(now_ms()))),
    }
)


@st.composite
def spoilt(draw: st.DrawFn, text: st.SearchStrategy[str]) -> bytes:
    """`text` as UTF-8, now and then with bytes that are no UTF-8 spliced in."""
    raw = draw(text).encode("utf-8", "surrogatepass")
    if not draw(_MOSTLY):
        at = draw(st.integers(0, len(raw)))
        raw = (
            raw[:at]
            + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90"]))
            + raw[at:]
        )
    return raw


PYTHON: Final = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),  # NaN and Infinity, written as json.dumps writes them
        st.text(max_size=8),
        st.sampled_from(
            ["", " c", "\u200b", "\x00", "\ud800", "x" * (MAX_STRING_BYTES + 1), 2**63]
        ),
    ),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def mutated_samples(draw: st.DrawFn) -> bytes:
    """A real sample with values replaced or removed, written out, perhaps byte-mangled."""
    document = json.loads(draw(st.sampled_from(SAMPLES)))
    document["timestamp"] = now_ms()  # else the samples age past nothing
    for _ in range(draw(st.integers(1, 3))):
        places = list(_places(document))
        if not places:
            break
        container, key = draw(st.sampled_from(places))
        if draw(st.booleans()):
            container[key] = draw(PYTHON)
        else:
            del container[key]
    text = json.dumps(
        document,
        ensure_ascii=draw(st.booleans()),
        indent=draw(st.sampled_from([None, 2])),
        sort_keys=draw(st.booleans()),
    )
    raw = bytearray(text.encode("utf-8", "surrogatepass"))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        at = draw(st.integers(0, len(raw)))
        raw[at : at + draw(st.integers(0, 3))] = draw(st.binary(max_size=3))
    return bytes(raw)


def _places(value: Any) -> Iterator[tuple[Any, Any]]:
    """Every (container, key) in the document, depth first."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in list(items):
        yield value, key
        if isinstance(item, dict | list):
            yield from _places(item)


def parsed(raw: bytes) -> Incoming | Rejection:
    try:
        return checked(raw)
    except Rejection as refused:
        return refused


def outcome(raw: bytes) -> None:
    """Parse `raw`: a refusal that says why, or a webhook that keeps its fingerprint however
    it is spelt and that the log's reader reads back as parse read it."""
    incoming = parsed(raw)
    if isinstance(incoming, Rejection):
        assert incoming.status in (400, 422)
        assert str(incoming)
        assert not isinstance(incoming, InvalidWebhook) or incoming.errors
        event(f"refused {incoming.status}")
        return
    event("accepted")
    key = incoming.fingerprint
    assert checked(raw).fingerprint == checked(incoming.body).fingerprint == key
    document = incoming.webhook.document
    assert document is not None
    assert checked(json.dumps(document, ensure_ascii=False, indent=1)).fingerprint == key
    read = logged(incoming.body)
    assert read == document
    webhook = incoming.webhook
    reread = Webhook(
        webhook.event_type, webhook.timestamp, webhook.chat_uuid, webhook.profile_uuid, read
    )
    again = Incoming(incoming.body, None, reread)
    assert fact_of(Recorded(1, 0, again, "k")) == fact_of(Recorded(1, 0, incoming, "k"))


@FUZZ
@given(raw=st.binary(max_size=300))
def test_any_bytes_are_a_webhook_or_a_refusal(raw: bytes) -> None:
    outcome(raw)


@pytest.mark.slow
@FUZZ
@given(raw=spoilt(ENVELOPE))
def test_hostile_json_is_a_webhook_or_a_refusal(raw: bytes) -> None:
    outcome(raw)


@pytest.mark.slow
@FUZZ
@given(raw=mutated_samples())
def test_a_mutated_sample_is_a_webhook_or_a_refusal(raw: bytes) -> None:
    outcome(raw)


@pytest.mark.slow
@FUZZ
@given(text=spoilt(ENVELOPE).map(lambda raw: raw.decode("utf-8", "replace")))
def test_whatever_text_the_log_holds_reads_as_an_object_or_nothing(text: str) -> None:
    """The log may hold text written around cdp: reading it never fails a rebuild."""
    assert isinstance(logged(text), dict | None)
