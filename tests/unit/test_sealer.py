"""A chat's values in the read models, sealed (cdp.privacy.personal.Sealer): the same value seals
to the same bytes under one chat's key, and opens only as what it was, where it was."""

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdp.privacy import personal

KEY = os.urandom(32)


@given(st.text())
def test_a_value_seals_to_the_same_bytes_every_time_and_opens_as_itself(value: str) -> None:
    sealed = personal.Sealer(KEY, "chat-1").seal("name", value)
    assert sealed == personal.Sealer(KEY, "chat-1").seal("name", value)
    assert sealed is not None
    plain = value.encode("utf-8", "surrogatepass")
    assert len(plain) < 8 or plain not in sealed  # shorter ones may occur by chance
    assert personal.Sealer(KEY, "chat-1").open("name", sealed) == value


def test_a_sealed_value_opens_nowhere_else() -> None:
    sealer = personal.Sealer(KEY, "chat-1")
    sealed = sealer.seal("title", "Order 1042 for Анна")
    assert sealed is not None
    assert sealer.open("context", sealed) is None  # moved to another column
    assert personal.Sealer(KEY, "chat-2").open("title", sealed) is None  # to another chat
    assert personal.Sealer(os.urandom(32), "chat-1").open("title", sealed) is None  # new key
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    assert sealer.open("title", tampered) is None
    assert sealer.open("title", b"") is None
    assert sealer.open("title", b"plain text written around cdp") is None


def test_values_of_one_chat_differ_in_another_chat_and_under_another_key() -> None:
    one = personal.Sealer(KEY, "chat-1").seal("phone", "+79991234567")
    assert one != personal.Sealer(KEY, "chat-2").seal("phone", "+79991234567")
    assert one != personal.Sealer(os.urandom(32), "chat-1").seal("phone", "+79991234567")


def test_nothing_seals_without_a_key() -> None:
    assert personal.sealer(None, "chat-1") is None
    assert personal.sealer(b"", "chat-1") is None
    assert personal.Sealer(KEY, "chat-1").seal("name", None) is None
    with pytest.raises(ValueError, match="32 bytes"):
        personal.Sealer(b"short", "chat-1")
