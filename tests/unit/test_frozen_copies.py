"""The copies of cdp's code frozen into the migrations (see test_frozen_migrations) do what
cdp's own code does today, byte for byte: what the migrations wrote must stay what cdp
verifies and opens, and a drift must show here, not when someone upgrades.

The live code these copies were taken from is imported right below: when it moves, these
imports move with it; when it changes what it writes, a migration may not follow.
"""

import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp import times
from cdp.log import chain, webhook
from cdp.privacy import keyfile, personal
from tests.factories import PAST, opened, reply
from tests.factories import webhook as made

VERSIONS = Path(__file__).parents[2] / "migrations" / "versions"


def migration(revision: str) -> ModuleType:
    """The migration of `revision`, imported from its file."""
    (path,) = VERSIONS.glob(f"{revision}_*.py")
    spec = importlib.util.spec_from_file_location(f"frozen_migration_{revision}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


M0006, M0009, M0016 = migration("0006"), migration("0009"), migration("0016")
# The two that seal and chain the log carry the same copies.
SEALING = pytest.mark.parametrize("frozen", [M0006, M0009], ids=["0006", "0009"])

DOCUMENTS: list[dict[str, Any]] = [
    *opened("c1", profile="p1", name="Анна", phone="+79991234567", avatar="https://a/1.png"),
    reply("c1", at=PAST + 9000),
    made("session_updated", chat="c2", team="42", operator="op 2", title="Заказ 1042"),
    {"event_type": "x", "timestamp": PAST, "payload": {"n": "Анна"}},
    {"event_type": ["not", "a", "value"], "payload": {"chat": {"uuid": {"id": 1}}}},
    {"payload": {"session": {"team": [1], "operator": {"uuid": None, "name": 3.5}}}},
    {},
]
BODIES: list[str] = [
    *(json.dumps(document, ensure_ascii=False) for document in DOCUMENTS),
    *(json.dumps(document) for document in DOCUMENTS),  # \u escapes
    '{"a": 1e400, "b": -1e400, "c": -0.0, "d": 1e16, "e": 0.1}',
    '{"a": NaN, "b": Infinity, "c": -Infinity}',
    '{"n": 123456789012345678901234567890, "m": -9223372036854775809}',
    '{"a": "\\ud800", "\\udfff": ["\\ud83d\\ude00", "\\uDBFF"]}',
    '{"a": 1, "a": 2}',
    '{"s": "' + "[" * 600 + '"}',  # brackets in a string nest nothing
    '{"a":' * 512 + "1" + "}" * 512,
    '{"a":' * 513 + "1" + "}" * 513,
    "[" * 100_000,
    '{"a": [1, 2, {"b": null}]}  ',
    "[1, 2]",
    '"text"',
    "null",
    "not JSON at all",
    '{"unterminated": "',
    "",
]
ROWS: list[dict[str, Any]] = [
    {
        "position": 1,
        "event_type": "message_created",
        "occurred_at": PAST,
        "received_at": PAST + 5,
        "chat_uuid": "c1",
        "profile_uuid": "p1",
        "dedupe_key": "ab" * 32,
        "body": '{"event_type":"message_created","timestamp":1777000000000}',
        "source": "default",
        "key_id": "0f" * 16,
        "sealed": os.urandom(77),
        "hash": "not covered",
    },
    {
        "position": 2,
        "event_type": "Анна's type",
        "occurred_at": 2**62,
        "received_at": 0,
        "chat_uuid": None,
        "profile_uuid": None,
        "dedupe_key": "",
        "body": 'héllo "\\ \u2028 \U0001f600',
        "source": "источник",
        "key_id": None,
        "sealed": None,
    },
    {
        "position": 3,
        "event_type": "x",
        "occurred_at": -1,
        "received_at": 1,
        "chat_uuid": "c/2",
        "profile_uuid": "p",
        "dedupe_key": "k",
        "body": "{}",
        "source": "s",
        "key_id": "k",
        "sealed": b"",
    },
]


@SEALING
def test_the_hash_chain_links_as_cdp_s(frozen: ModuleType) -> None:
    assert frozen._GENESIS == chain.GENESIS
    assert frozen._COLUMNS == chain.COLUMNS
    previous = live = chain.GENESIS
    for row in ROWS:
        previous, live = frozen._link(previous, row), chain.link(live, row)
        assert previous == live


@SEALING
@pytest.mark.parametrize("body", BODIES)
def test_a_logged_body_reads_as_cdp_reads_it(frozen: ModuleType, body: str) -> None:
    assert repr(frozen._logged(body)) == repr(webhook.logged(body))  # repr: -0.0 and 0.0 differ


def kept_names(kept: dict[str, Any]) -> set[str]:
    """Every field name in a tree such as personal.KEPT."""
    names = set(kept)
    for inner in kept.values():
        if isinstance(inner, dict):
            names |= kept_names(inner)
    return names


# The names of the fields a redacted body keeps (at any depth, where they may be kept or not),
# and others.
NAMES = st.sampled_from(sorted(kept_names(personal.KEPT))) | st.text(max_size=5)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=4),
    max_leaves=25,
)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(NAMES, JSON))
def test_any_body_reads_and_redacts_as_cdp_s(document: dict[str, Any]) -> None:
    body = json.dumps(document, ensure_ascii=False)
    for frozen in (M0006, M0009):
        read = frozen._logged(body)
        assert repr(read) == repr(webhook.logged(body))
        assert frozen._redacted(read) == personal.redacted(read)


@SEALING
@pytest.mark.parametrize("body", BODIES)
def test_a_body_redacts_as_cdp_redacts_it(frozen: ModuleType, body: str) -> None:
    document = webhook.logged(body)
    assert frozen._redacted(document) == personal.redacted(document)
    assert frozen._KEPT == personal.KEPT


@SEALING
def test_bodies_seal_and_open_as_cdp_s(frozen: ModuleType) -> None:
    key = frozen._new_key()
    assert len(key) == personal.KEY_BYTES
    for body in ["", "Анна +79991234567", *BODIES[:3]]:
        sealed = frozen._seal(key, body, "d" * 64)
        assert personal.unseal(key, sealed, "d" * 64) == body
        assert frozen._unseal(key, personal.seal(key, body, "d" * 64), "d" * 64) == body
        assert frozen._unseal(key, sealed, "e" * 64) is None  # bound to its dedupe key
        assert frozen._unseal(os.urandom(32), sealed, "d" * 64) is None
    assert frozen._unseal(key, b"short", "d") is None


@SEALING
def test_subjects_and_times_are_cdp_s(frozen: ModuleType) -> None:
    assert frozen._of_chat("c 1") == personal.of_chat("c 1")
    assert frozen._of_profile("p 1") == personal.of_profile("p 1")
    before = times.now_ms()
    assert before <= frozen._now_ms() <= times.now_ms()


def test_0009_makes_dedupe_keys_and_source_subjects_as_cdp_does() -> None:
    assert M0009._of_source("default") == personal.of_source("default")
    key = os.urandom(32)
    for document in DOCUMENTS:
        redacted = personal.redacted(document)
        fingerprint = os.urandom(32).hex()
        assert M0009._dedupe_key(redacted, fingerprint, key) == personal.dedupe_key(
            redacted, fingerprint, key
        )


def test_0016_s_key_file_and_wrapping_are_cdp_s(tmp_path: Path) -> None:
    assert (M0016._MAGIC, M0016._BUCKETS, M0016._SIZE) == (
        keyfile.MAGIC,
        keyfile.BUCKETS,
        keyfile.SIZE,
    )
    for subject in ("chat:c1", "profile:p1", "source:default", "chat:Анна", ""):
        assert M0016._bucket(subject) == keyfile.bucket_of(subject)
    path = tmp_path / "store.kek"
    entries = M0016._entries(path)  # made here: cdp reads it as its own
    live = keyfile.KeyFile(path)
    assert all(live.kek(bucket, 0) == entries[bucket][1] for bucket in (0, 1, 1023))
    material = os.urandom(32)
    wrapped = M0016._wrap(entries[7][1], 7, 0, "key-1", material)
    assert keyfile.header(wrapped) == (7, 0)
    assert keyfile.unwrap(AESGCM(entries[7][1]), "key-1", wrapped) == material
    later = keyfile.wrap(keyfile.step(keyfile.step(entries[9][1])), 9, 2, "key-2", material)
    assert M0016._unwrap(entries, "key-2", later) == material  # stepped on as cdp steps
    assert M0016._unwrap(entries, "key-1", later) is None
