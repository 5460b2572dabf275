"""The ids a kept delivery names, as an erasure looks for them: every short JSON string,
escapes resolved, whether or not the delivery is JSON, compressed, form-encoded or in
another charset; and a body no erasure could read is not kept."""

import gzip
import hashlib
import json
import zlib

import pytest

from cdp.log.rejected import MAX_DECODED, Unreadable, folded, mentioned, named, rejection, texts


def test_every_short_string_is_found_after_a_long_one_and_in_broken_json() -> None:
    body = json.dumps({"text": "x" * 5000, "payload": {"chat": {"uuid": "c-1"}}})
    assert {"c-1", "payload", "chat", "uuid"} <= named([body])
    assert "x" * 5000 not in named([body])
    assert "c-1" in named([body[:-3] + "\ufffd oops"])


def test_escapes_are_resolved_and_broken_ones_taken_as_they_stand() -> None:
    assert "chat-1" in named(['{"uuid": "\\u0063hat-1"'])
    assert 'say "hi"' in named(['["say \\"hi\\""]'])
    assert "\\u00zz" in named(['["\\u00zz"]'])


def test_a_string_left_open_runs_to_the_end_and_no_control_character_is_an_id() -> None:
    assert named(['{"uuid": "c-1", "text": "never closed']) == {
        "uuid",
        "c-1",
        "text",
        "never closed",
    }
    # A megabyte of escaped quotes is one string, left open: read in one pass.
    assert named(['"' + '\\"' * (1 << 19)]) == set()
    assert named(['["\\u0000", "\\ud800", "", "ok"]']) == {"ok"}


def test_an_id_with_whitespace_at_its_ends_is_named_without_it_too() -> None:
    assert {"chat-1 ", "chat-1"} <= named(['{"uuid": "chat-1 "}'])


BODY = json.dumps({"payload": {"chat": {"uuid": "chat-1", "name": "Анна"}}}, ensure_ascii=False)
DATA = BODY.encode()


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    return compressor.compress(data) + compressor.flush()


READABLE = {
    "gzip": (gzip.compress(DATA), {"content-encoding": "gzip"}),
    "x-gzip": (gzip.compress(DATA), {"content-encoding": "X-GZIP"}),
    "deflate (zlib)": (zlib.compress(DATA), {"content-encoding": "deflate"}),
    "deflate (raw)": (raw_deflate(DATA), {"content-encoding": "deflate"}),
    "gzip, unannounced": (gzip.compress(DATA), {}),
    "zlib, unannounced": (zlib.compress(DATA), {}),
    "gzip of deflate": (gzip.compress(zlib.compress(DATA)), {"content-encoding": "deflate, gzip"}),
    "two gzip members": (gzip.compress(DATA[:20]) + gzip.compress(DATA[20:]), {}),
    "UTF-16 with a byte order mark": (BODY.encode("utf-16"), {}),
    "UTF-16 without one": (BODY.encode("utf-16-be"), {}),
    "UTF-32": (BODY.encode("utf-32-le"), {}),
    "windows-1251, named": (
        BODY.encode("cp1251"),
        {"content-type": "application/json; charset=windows-1251"},
    ),
    "form-encoded": (b"payload=" + DATA.replace(b"{", b"%7B"), {}),
}


@pytest.mark.parametrize(("body", "headers"), READABLE.values(), ids=READABLE.keys())
def test_a_body_is_read_whatever_its_coding_and_charset(
    body: bytes, headers: dict[str, str]
) -> None:
    found = texts(body, headers)
    assert any("Анна" in text for text in found)
    assert "chat-1" in mentioned(found)


def test_a_gzip_body_cut_short_gives_what_it_holds() -> None:
    whole = gzip.compress((BODY + " " * 100_000).encode(), compresslevel=0)
    (text,) = texts(whole[:20_000], {"content-encoding": "gzip"})
    assert text.startswith(BODY)


UNREADABLE = {
    "a bomb": (gzip.compress(b" " * (MAX_DECODED + 1)), {}, "decompresses to more than"),
    "too high a ratio": (gzip.compress(b"{" + b" " * 100_000 + b"}"), {}, "more than"),
    "brotli": (b"\x0b\x02\x80{}\x03", {"content-encoding": "br"}, "'br' is not gzip"),
    "broken gzip": (gzip.compress(DATA)[:10] + b"\xff" * 20, {}, "gzip data is broken"),
    "four codings": (DATA, {"content-encoding": "gzip, gzip, gzip, gzip"}, "more than 3"),
    "not UTF-8": (DATA.replace(b"chat", b"\xff\xfe\xfd"), {}, "not text"),
    "a charset of bytes": (
        zlib.compress(DATA).replace(b"x", b"\xff", 1),
        {"content-type": "application/json; charset=zlib"},
        "not text",
    ),
}


@pytest.mark.parametrize(("body", "headers", "why"), UNREADABLE.values(), ids=UNREADABLE.keys())
def test_a_body_that_cannot_be_read_is_kept_as_its_size_and_hash_only(
    body: bytes, headers: dict[str, str], why: str
) -> None:
    with pytest.raises(Unreadable, match=why):
        texts(body, headers)
    kept = rejection(1, "default", 400, "bad", len(body), headers, body)
    assert (kept.body, kept.size, kept.names) == (b"", len(body), frozenset())
    assert kept.reason.startswith("bad (body not kept, since no erasure could read it: ")
    assert why in kept.reason
    assert hashlib.sha256(body).hexdigest() in kept.reason


def test_a_body_that_can_be_read_is_kept_with_the_ids_it_names() -> None:
    body = gzip.compress(DATA)
    kept = rejection(1, "default", 400, "bad", len(body), {"content-encoding": "gzip"}, body)
    assert (kept.body, kept.reason, kept.headers) == (body, "bad", {"content-encoding": "gzip"})
    assert "chat-1" in kept.names


def test_an_id_is_mentioned_in_any_form_a_person_would_take_for_it() -> None:
    wanted = folded("Chat-1")
    for text in (
        '{"uuid": "chat-1 "}',
        '{"uuid": "CHAT-1"}',
        '{"uuid": "\\u00a0chat\\u200b-1"}',
        "chat%5Buuid%5D=chat-1&name=x",
        '--b\r\nContent-Disposition: form-data; name="chat"\r\n\r\nchat-1\r\n--b--',
        "<chat><uuid>chat-1</uuid></chat>",
        "chat: \uff43\uff48\uff41\uff54\uff0d\uff11 wrote",  # full width
    ):
        assert wanted in mentioned([text]), text
    assert wanted not in mentioned(['{"uuid": "chat-10"}', "chat-1x"])
