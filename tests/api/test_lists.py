"""Lists that can grow come in pages; parameters are checked, unknown ones refused."""

import base64
import json
from typing import Any

import pytest
from litestar.testing import TestClient

from tests.factories import JSON_TYPE, PAST, handoff, now_ms, opened, webhook

Client = TestClient  # type: ignore[type-arg]
MINUTE = 60_000


def deliver(client: Client, *bodies: dict[str, Any]) -> None:
    for body in bodies:
        answer = client.post(
            "/webhooks/fasttrack", content=json.dumps(body, ensure_ascii=False), headers=JSON_TYPE
        )
        assert answer.status_code in (200, 202), answer.text


def pages(client: Client, path: str, **params: Any) -> list[list[Any]]:
    """Every page of a list, two items at a time, following `next`."""
    found, query = [], {**params, "limit": 2}
    while True:
        answer = client.get(path, params=query)
        assert answer.status_code == 200, answer.text
        found.append(answer.json()["items"])
        if answer.json()["next"] is None:
            return found
        query["after"] = answer.json()["next"]


def a_busy_chat(client: Client) -> None:
    """Chat "c" of profile "p", phone +79990000001: three sessions, handoffs in each."""
    for n in range(3):
        at = PAST + n * 2 * 24 * 60 * MINUTE
        deliver(
            client,
            *opened("c", at=at, team=1, profile="p", phone="+79990000001"),
            handoff("c", at=at + MINUTE, team=2),
            handoff("c", at=at + 2 * MINUTE, team=1),
        )


LISTS = [
    ("/chats/c/timeline", {}, 12),
    ("/chats/c/sessions", {}, 3),
    ("/chats/c/handoffs", {}, 6),
    ("/handoffs", {"team_id": 2}, 6),
    ("/teams/1/chats", {}, 5),
    ("/profiles", {"phone": "8 999 000-00-01"}, 5),
]


@pytest.mark.parametrize(("path", "params", "count"), LISTS, ids=[path for path, *_ in LISTS])
def test_a_list_read_page_by_page_is_the_whole_list_in_order(
    client: Client, path: str, params: dict[str, Any], count: int
) -> None:
    a_busy_chat(client)
    for n in range(4):  # more chats of team 1, and of the same phone
        deliver(client, *opened(f"other-{n}", at=PAST + n, profile=f"p{n}", phone="+79990000001"))
    whole = client.get(path, params={**params, "limit": 1000}).json()
    assert whole["next"] is None
    assert len(whole["items"]) == count
    paged = pages(client, path, **params)
    assert [item for page in paged for item in page] == whole["items"]
    assert [len(page) for page in paged[:-1]] == [2] * (len(paged) - 1)


def test_the_default_page_is_100_items(client: Client) -> None:
    deliver(client, *(webhook("message_created", chat="c", at=PAST + n) for n in range(101)))
    first = client.get("/chats/c/timeline").json()
    assert len(first["items"]) == 100
    rest = client.get("/chats/c/timeline", params={"after": first["next"]}).json()
    assert len(rest["items"]) == 1
    assert rest["next"] is None


def test_a_cursor_stays_true_when_the_list_grows_before_it(client: Client) -> None:
    deliver(client, *(webhook("message_created", chat="c", at=PAST + n * MINUTE) for n in range(4)))
    first = client.get("/chats/c/timeline", params={"limit": 2}).json()
    # A late webhook from before the first page, and one after everything.
    deliver(client, webhook("message_created", chat="c", at=PAST - MINUTE))
    deliver(client, webhook("message_created", chat="c", at=PAST + 9 * MINUTE))
    rest = client.get("/chats/c/timeline", params={"limit": 10, "after": first["next"]}).json()
    times = [item["occurred_at"] for item in first["items"] + rest["items"]]
    assert len(times) == 5
    assert times == sorted(times)


@pytest.mark.parametrize("path", [path for path, *_ in LISTS])
@pytest.mark.parametrize("limit", [0, 1001])
def test_a_page_size_outside_1_to_1000_is_a_400(client: Client, path: str, limit: int) -> None:
    a_busy_chat(client)
    params = {**dict(next(p for q, p, _ in LISTS if q == path)), "limit": limit}
    answer = client.get(path, params=params)
    assert answer.status_code == 400
    assert [error["path"] for error in answer.json()["errors"]] == ["limit"]


@pytest.mark.parametrize("cursor", ["nonsense", "WzFd", "W10", "eyJhIjoxfQ"])
def test_a_cursor_no_list_gave_is_a_400_naming_after(client: Client, cursor: str) -> None:
    a_busy_chat(client)
    answer = client.get("/chats/c/timeline", params={"after": cursor})
    assert answer.status_code == 400
    assert [error["path"] for error in answer.json()["errors"]] == ["after"]


@pytest.mark.parametrize(
    ("path", "typo"),
    [
        ("/events", "chat_uid"),
        ("/handoffs", "teamid"),
        ("/teams/1/chats", "status"),
        ("/chats/c/timeline", "offset"),
        ("/profiles/p", "phone"),
        ("/health", "verbose"),
    ],
)
def test_an_unknown_query_parameter_is_a_400_naming_it(
    client: Client, path: str, typo: str
) -> None:
    a_busy_chat(client)
    answer = client.get(path, params={typo: "x"})
    assert answer.status_code == 400
    assert [error["path"] for error in answer.json()["errors"]] == [typo]
    assert repr(typo) in answer.json()["detail"]


@pytest.mark.parametrize(
    ("path", "parameter"),
    [("/teams/abc/chats", "team_id"), ("/events/abc", "position"), ("/events/0", "position")],
)
def test_a_malformed_path_parameter_is_a_400_naming_it(
    client: Client, path: str, parameter: str
) -> None:
    answer = client.get(path)
    assert answer.status_code == 400
    assert [error["path"] for error in answer.json()["errors"]] == [parameter]


def test_a_state_that_is_neither_open_nor_idle_is_a_400_naming_state(client: Client) -> None:
    answer = client.get("/teams/1/chats", params={"state": "closed"})
    assert answer.status_code == 400
    assert [error["path"] for error in answer.json()["errors"]] == ["state"]


@pytest.mark.parametrize(
    ("since", "until"),
    [
        ("2026-04-24T03:08:00Z", "2026-04-24T03:12:00Z"),
        ("2026-04-24T06:08:00+03:00", "2026-04-24T06:12:00+03:00"),
        ("2026-04-24T03:08:00", "2026-04-24T03:12:00"),
        (str(PAST + 80_000), str(PAST + 320_000)),
    ],
)
def test_since_and_until_take_iso_8601_with_or_without_zone_and_epoch_ms(
    client: Client, since: str, until: str
) -> None:
    a_busy_chat(client)  # handoffs at PAST + 1 and + 2 minutes: 03:07:40 and 03:08:40
    found = client.get("/handoffs", params={"since": since, "until": until}).json()["items"]
    assert [item["at"] for item in found] == ["2026-04-24T03:08:40.000Z"]


def test_a_date_alone_is_its_midnight_utc(client: Client) -> None:
    a_busy_chat(client)
    on_the_day = client.get("/handoffs", params={"since": "2026-04-24", "until": "2026-04-25"})
    assert len(on_the_day.json()["items"]) == 2
    after = client.get("/handoffs", params={"since": "2026-04-25"}).json()["items"]
    assert len(after) == 4


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"since": "2026-05-02", "until": "2026-05-01"}, "since"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01"}, "until"),
        ({"until": "9" * 30}, "until"),
        ({"since": "1777967172"}, "since"),
    ],
)
def test_a_bad_period_is_a_400_naming_it(
    client: Client, params: dict[str, str], named: str
) -> None:
    answer = client.get("/handoffs", params=params)
    assert answer.status_code == 400
    assert [error["path"] for error in answer.json()["errors"]] == [named]


def test_open_chats_are_all_reported_open_when_the_clock_ticks_between_reads(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = now_ms()
    day = 24 * 60 * MINUTE
    deliver(client, webhook("session_updated", chat="edge", team=1, at=start - day + 1))
    ticks = iter(range(start * 1_000_000, start * 1_000_000 + 10**15, 1_000_000))

    class Ticking:
        """A clock that moves a millisecond every time it is read."""

        @staticmethod
        def time_ns() -> int:
            return next(ticks)

    monkeypatch.setattr("cdp.times.time", Ticking)
    listed = client.get("/teams/1/chats", params={"state": "open"}).json()["items"]
    assert [chat["session"]["state"] for chat in listed] == ["open"]


@pytest.mark.parametrize(("silence", "state"), [(-1, "open"), (0, "idle"), (1, "idle")])
def test_a_session_is_open_until_exactly_one_idle_timeout_after_its_last_activity(
    client: Client, monkeypatch: pytest.MonkeyPatch, silence: int, state: str
) -> None:
    now, day = now_ms(), 24 * 60 * MINUTE
    deliver(client, webhook("session_updated", chat="c", team=1, at=now - day - silence))

    class Frozen:
        @staticmethod
        def time_ns() -> int:
            return now * 1_000_000

    monkeypatch.setattr("cdp.times.time", Frozen)
    assert client.get("/chats/c").json()["session"]["state"] == state
    assert client.get("/chats/c/sessions").json()["items"][0]["state"] == state
    listed = client.get("/teams/1/chats", params={"state": state}).json()["items"]
    assert [chat["uuid"] for chat in listed] == ["c"]


def cursor(*key: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("path", "params", "forged"),
    [
        ("/handoffs", {}, cursor(2**63, "a")),
        ("/chats/c/sessions", {}, cursor(-(10**20))),
        ("/chats/c/sessions", {}, cursor(2**31)),  # sessions.number is a 32-bit integer
        ("/profiles", {"phone": "+79990000001"}, cursor("\ud800")),
        ("/profiles", {"name": "иван"}, cursor("\ud800")),
        ("/handoffs", {}, cursor(1, "\u0000")),
        ("/chats/c/timeline", {}, cursor(1, True, "x")),
        ("/chats/c/timeline", {}, "A" * 5000),
    ],
)
def test_a_forged_cursor_is_a_400_never_a_database_error(
    client: Client, path: str, params: dict[str, str], forged: str
) -> None:
    a_busy_chat(client)
    answer = client.get(path, params={**params, "after": forged})
    assert answer.status_code == 400, answer.text
    assert [error["path"] for error in answer.json()["errors"]] == ["after"]
