"""The ids a kept delivery names, as an erasure looks for them: every short JSON string,
escapes resolved, whether or not the delivery is JSON."""

import json

from cdp.rejected import named


def test_every_short_string_is_found_after_a_long_one_and_in_broken_json() -> None:
    body = json.dumps({"text": "x" * 5000, "payload": {"chat": {"uuid": "c-1"}}}).encode()
    assert {"c-1", "payload", "chat", "uuid"} <= named(body)
    assert "x" * 5000 not in named(body)
    assert "c-1" in named(body[:-3] + b"\xff oops")


def test_escapes_are_resolved_and_broken_ones_taken_as_they_stand() -> None:
    assert "chat-1" in named(b'{"uuid": "\\u0063hat-1"')
    assert 'say "hi"' in named(b'["say \\"hi\\""]')
    assert "\\u00zz" in named(b'["\\u00zz"]')


def test_a_string_left_open_runs_to_the_end_and_no_control_character_is_an_id() -> None:
    assert named(b'{"uuid": "c-1", "text": "never closed') == {
        "uuid",
        "c-1",
        "text",
        "never closed",
    }
    # A megabyte of escaped quotes is one string, left open: read in one pass.
    assert named(b'"' + b'\\"' * (1 << 19)) == set()
    assert named(b'["\\u0000", "\\ud800", "", "ok"]') == {"ok"}
