"""The session rules of docs/rules.md, pinned at their edges through the HTTP API, on both
databases.

Each scenario is posted twice under two names: once in time order ("forward") and once in
reverse ("backward"); both must come out the same, since delivery order never matters.
"""

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from litestar.testing import TestClient

from cdp.http.app import create_app
from cdp.settings import Settings
from tests.factories import JSON_TYPE, PAST, handoff, opened, reply, webhook

Client = TestClient  # type: ignore[type-arg]
Bodies = Callable[[str], list[dict[str, Any]]]
MINUTE = 60_000
MS = timedelta(milliseconds=1)
# (idle timeout, open window): the settings fixture's, and others, so that no limit is hard-coded.
RULES = {
    "24h-5s": (timedelta(hours=24), timedelta(seconds=5)),
    "90min-250ms": (timedelta(minutes=90), timedelta(milliseconds=250)),
}
EDGES = {"1ms-less": -1, "exactly": 0, "1ms-more": 1}


def deliver(client: Client, *bodies: dict[str, Any]) -> None:
    for body in bodies:
        answer = client.post(
            "/webhooks/fasttrack", content=json.dumps(body, ensure_ascii=False), headers=JSON_TYPE
        )
        assert answer.status_code == 202, answer.text


def both_ways(client: Client, bodies: Bodies) -> list[str]:
    """Post `bodies("forward")` in time order and `bodies("backward")` in reverse."""
    deliver(client, *bodies("forward"))
    deliver(client, *reversed(bodies("backward")))
    return ["forward", "backward"]


def items(client: Client, path: str) -> list[dict[str, Any]]:
    answer = client.get(path)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["items"])


def timeline(client: Client, chat: str) -> list[tuple[str, int | None, int | None]]:
    """Each event's kind, session number and team id, in time order."""
    return [
        (item["kind"], item["session_number"], (item["team"] or {}).get("id"))
        for item in items(client, f"/chats/{chat}/timeline")
    ]


def sessions(client: Client, chat: str) -> list[tuple[int, list[int], int, int, int]]:
    """Each session's number, teams, handoffs, messages in and messages out."""
    return [
        (s["number"], s["teams"], s["handoffs"], s["messages_in"], s["messages_out"])
        for s in items(client, f"/chats/{chat}/sessions")
    ]


@pytest.fixture(params=list(RULES))
def ruled(request: pytest.FixtureRequest, settings: Settings) -> Iterator[tuple[Client, int, int]]:
    """A client whose app runs on other session rules, with its idle timeout and window in ms."""
    idle, window = RULES[request.param]
    custom = Settings(
        database_url=settings.database_url,
        session_idle_timeout=idle,
        session_open_window=window,
        phone_region=settings.phone_region,
    )
    with TestClient(create_app(custom)) as client:
        yield client, idle // MS, window // MS


@pytest.mark.parametrize("team", [1, 2])
def test_an_opening_pair_inside_an_active_session_opens_the_next_session(
    client: Client, team: int
) -> None:
    def bodies(chat: str) -> list[dict[str, Any]]:
        return [
            *opened(chat, at=PAST, team=1),
            reply(chat, at=PAST + MINUTE),
            *opened(chat, at=PAST + 2 * MINUTE, team=team),
        ]

    for chat in both_ways(client, bodies):
        assert sessions(client, chat) == [(1, [1], 0, 1, 1), (2, [team], 0, 1, 0)], chat
        assert [number for _, number, _ in timeline(client, chat)] == [1, 1, 1, 2, 2], chat
        assert items(client, f"/chats/{chat}/handoffs") == [], chat
        answer = client.get(f"/chats/{chat}").json()
        assert (answer["session"]["number"], answer["operator"]) == (2, None), chat


def test_a_session_updated_between_a_session_updated_and_its_message_created_breaks_the_pair(
    client: Client,
) -> None:
    at = PAST + MINUTE

    def bodies(chat: str) -> list[dict[str, Any]]:
        return [
            *opened(chat, at=PAST, team=1),
            webhook("session_updated", chat=chat, at=at, team=1, title="first"),
            handoff(chat, at=at + 1000, team=2),
            webhook("message_created", chat=chat, at=at + 2000, message="hi"),
        ]

    for chat in both_ways(client, bodies):
        assert timeline(client, chat) == [
            ("session_opened", 1, 1),
            ("message_in", 1, 1),
            ("session_updated", 1, 1),
            ("session_opened", 2, 2),
            ("message_in", 2, 2),
        ], chat
        assert sessions(client, chat) == [(1, [1], 0, 1, 0), (2, [2], 0, 1, 0)], chat
        assert items(client, f"/chats/{chat}/handoffs") == [], chat


@pytest.mark.parametrize("between", ["operator_replied", "message_updated", "chat_rated"])
def test_other_events_between_a_session_updated_and_its_message_created_keep_the_pair(
    client: Client, between: str
) -> None:
    at = PAST + MINUTE

    def bodies(chat: str) -> list[dict[str, Any]]:
        return [
            *opened(chat, at=PAST, team=1),
            handoff(chat, at=at, team=2),
            webhook(between, chat=chat, at=at + 1000, message="in between"),
            webhook("message_created", chat=chat, at=at + 2000, message="hi"),
        ]

    for chat in both_ways(client, bodies):
        assert [number for _, number, _ in timeline(client, chat)] == [1, 1, 2, 2, 2], chat
        assert [s[:3] for s in sessions(client, chat)] == [(1, [1], 0), (2, [2], 0)], chat


def test_events_before_a_chats_first_session_belong_to_no_session(client: Client) -> None:
    def bodies(chat: str) -> list[dict[str, Any]]:
        return [
            webhook("message_created", chat=chat, at=PAST, message="anyone there?"),
            reply(chat, at=PAST + MINUTE, team=1),
            webhook("message_updated", chat=chat, at=PAST + 2 * MINUTE, message="anyone there?"),
            *opened(chat, at=PAST + 3 * MINUTE, team=1),
        ]

    for chat in both_ways(client, bodies):
        assert timeline(client, chat) == [
            ("message_in", None, None),
            ("operator_reply", None, None),
            ("message_updated", None, None),
            ("session_opened", 1, 1),
            ("message_in", 1, 1),
        ], chat
        assert sessions(client, chat) == [(1, [1], 0, 1, 0)], chat
        answer = client.get(f"/chats/{chat}").json()
        assert (answer["team"]["id"], answer["operator"]) == (1, None), chat


@pytest.mark.parametrize("edge", list(EDGES))
def test_a_message_created_up_to_exactly_one_open_window_after_a_session_updated_pairs_with_it(
    ruled: tuple[Client, int, int], edge: str
) -> None:
    client, _, window = ruled
    at = PAST + MINUTE

    def bodies(chat: str) -> list[dict[str, Any]]:
        return [
            *opened(chat, at=PAST, team=1),
            handoff(chat, at=at, team=2),
            webhook("message_created", chat=chat, at=at + window + EDGES[edge], message="hi"),
        ]

    pairs = EDGES[edge] <= 0
    expected = [(1, [1], 0, 1, 0), (2, [2], 0, 1, 0)] if pairs else [(1, [1, 2], 1, 2, 0)]
    for chat in both_ways(client, bodies):
        assert sessions(client, chat) == expected, chat


@pytest.mark.parametrize("edge", list(EDGES))
def test_a_session_updated_after_at_least_one_idle_timeout_of_silence_opens_a_new_session(
    ruled: tuple[Client, int, int], edge: str
) -> None:
    client, idle, _ = ruled
    last = PAST + 50  # the opening pair's message_created

    def bodies(chat: str) -> list[dict[str, Any]]:
        return [
            *opened(chat, at=PAST, team=1),
            # an unknown event type breaks no silence: only known ones count
            webhook("chat_rated", chat=chat, at=last + idle // 2),
            handoff(chat, at=last + idle + EDGES[edge], team=2),
        ]

    opens = EDGES[edge] >= 0
    expected = [(1, [1], 0, 1, 0), (2, [2], 0, 0, 0)] if opens else [(1, [1, 2], 1, 1, 0)]
    for chat in both_ways(client, bodies):
        assert sessions(client, chat) == expected, chat


def test_a_same_team_session_updated_inside_a_session_renames_the_team_without_a_handoff(
    client: Client,
) -> None:
    def bodies(chat: str) -> list[dict[str, Any]]:
        return [
            *opened(chat, at=PAST, team=7, team_name="Sales"),
            reply(chat, at=PAST + MINUTE, team=7, operator="anna"),
            webhook("session_updated", chat=chat, at=PAST + 2 * MINUTE, team=7, team_name="Retail"),
            webhook("message_created", chat=chat, at=PAST + 3 * MINUTE, message="thanks"),
        ]

    for chat in both_ways(client, bodies):
        found = items(client, f"/chats/{chat}/timeline")
        assert [(item["kind"], item["team"]) for item in found] == [
            ("session_opened", {"id": 7, "name": "Sales"}),
            ("message_in", {"id": 7, "name": "Sales"}),
            ("operator_reply", {"id": 7, "name": "Sales"}),
            ("session_updated", {"id": 7, "name": "Retail"}),
            ("message_in", {"id": 7, "name": "Retail"}),
        ], chat
        answer = client.get(f"/chats/{chat}").json()
        assert answer["team"] == {"id": 7, "name": "Retail"}, chat
        assert answer["operator"]["uuid"] == "anna", chat
        assert items(client, f"/chats/{chat}/handoffs") == [], chat
        assert sessions(client, chat) == [(1, [7], 0, 2, 1)], chat


@pytest.mark.parametrize(("last_on", "winner"), [("wa", "p2"), ("tg", "p1")])
def test_a_profile_whose_chats_moved_apart_is_merged_into_the_holder_of_its_last_seen_chat(
    client: Client, last_on: str, winner: str
) -> None:
    holders = {"tg": "p1", "wa": "p2"}
    earlier = "tg" if last_on == "wa" else "wa"

    def bodies(run: str) -> list[dict[str, Any]]:
        return [
            *opened(f"{run}-{earlier}", at=PAST, profile=f"{run}-old"),
            *opened(f"{run}-{last_on}", at=PAST + MINUTE, profile=f"{run}-old"),
            # the chat last seen moves first: the latest move does not decide
            *(
                webhook("message_created", chat=f"{run}-{chat}", at=at, profile=f"{run}-{holder}")
                for chat, holder, at in (
                    (last_on, holders[last_on], PAST + 10 * MINUTE),
                    (earlier, holders[earlier], PAST + 20 * MINUTE),
                )
            ),
        ]

    for run in both_ways(client, bodies):
        old = client.get(f"/profiles/{run}-old").json()
        assert (old["chats"], old["merged_into"]) == ([], f"{run}-{winner}"), run
        for chat, holder in holders.items():
            held = client.get(f"/profiles/{run}-{holder}").json()
            assert [c["uuid"] for c in held["chats"]] == [f"{run}-{chat}"], run
