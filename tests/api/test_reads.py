"""The query endpoints, through the Litestar test client, on both databases."""

import json
from typing import Any

import pytest
from litestar.testing import TestClient

from cdp.profiles import phones
from cdp.projections import registry
from cdp.settings import Settings
from tests.api.conftest import rebuilt
from tests.factories import JSON_TYPE, PAST, handoff, now_ms, opened, reply, samples, webhook

Client = TestClient  # type: ignore[type-arg]
MINUTE = 60_000


def deliver(client: Client, *bodies: dict[str, Any]) -> list[int]:
    positions = []
    for body in bodies:
        answer = client.post(
            "/webhooks/fasttrack", content=json.dumps(body, ensure_ascii=False), headers=JSON_TYPE
        )
        assert answer.status_code in (200, 202), answer.text
        positions.append(answer.json()["position"])
    return positions


def items(client: Client, path: str, **params: Any) -> list[dict[str, Any]]:
    answer = client.get(path, params=params)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["items"])


def test_a_profile_lists_its_chats_phones_and_names(client: Client) -> None:
    deliver(
        client,
        *opened("tg", at=PAST, profile="p", phone="+79990000001", name="Анна"),
        *opened("wa", at=PAST + MINUTE, profile="p", phone="8 999 000-00-02", name="Anna"),
    )
    profile = client.get("/profiles/p").json()
    assert [chat["uuid"] for chat in profile["chats"]] == ["tg", "wa"]
    assert profile["phones"] == ["+79990000001", "+79990000002"]
    assert profile["names"] == ["Anna", "Анна"]
    assert profile["first_seen_at"] == "2026-04-24T03:06:40.000Z"
    assert profile["last_seen_at"] == "2026-04-24T03:07:40.050Z"
    assert profile["merged_into"] is None


def test_a_profile_lists_one_number_once_however_it_was_written_and_keeps_odd_ones(
    client: Client,
) -> None:
    deliver(
        client,
        *opened("tg", at=PAST, profile="p", phone="+7 999 000-00-02"),
        *opened("wa", at=PAST + MINUTE, profile="p", phone="89990000002"),
        *opened("vk", at=PAST + 2 * MINUTE, profile="p", phone="ask the bot"),
    )
    assert client.get("/profiles/p").json()["phones"] == ["+79990000002", "ask the bot"]


def test_an_unknown_profile_is_a_404(client: Client) -> None:
    answer = client.get("/profiles/nobody")
    assert answer.status_code == 404
    assert "nobody" in answer.json()["detail"]


def test_a_profile_whose_chats_all_moved_reports_where_it_was_merged(client: Client) -> None:
    deliver(client, *opened("tg", at=PAST, profile="old"), *opened("wa", at=PAST, profile="old"))
    deliver(client, webhook("message_created", chat="tg", at=PAST + MINUTE, profile="new"))
    assert client.get("/profiles/old").json()["merged_into"] is None
    deliver(client, webhook("message_created", chat="wa", at=PAST + 2 * MINUTE, profile="new"))
    old, new = client.get("/profiles/old").json(), client.get("/profiles/new").json()
    assert (old["chats"], old["merged_into"]) == ([], "new")
    assert [chat["uuid"] for chat in new["chats"]] == ["tg", "wa"]


@pytest.mark.parametrize("phone", ["+7 999 000-00-01", "79990000001", "8 (999) 000-00-01"])
def test_a_phone_in_any_notation_finds_the_profile(client: Client, phone: str) -> None:
    deliver(client, *opened("tg", profile="p", phone="+79990000001"))
    deliver(client, *opened("other", profile="q", phone="+79990000009"))
    assert [profile["uuid"] for profile in items(client, "/profiles", phone=phone)] == ["p"]


def test_a_number_that_shares_the_digest_is_opened_and_left_out(client: Client) -> None:
    """Numbers are sealed: a search finds the chats by a 16-bit digest of the number, which
    thousands of numbers share, and keeps only the chats that hold the number itself."""
    wanted = phones.digest("+79990000001")
    other = next(
        number for n in range(2, 10_000_000) if phones.digest(number := f"+7999{n:07}") == wanted
    )
    deliver(client, *opened("tg", profile="p", phone="+79990000001"))
    deliver(client, *opened("wa", profile="q", phone=other))
    assert [profile["uuid"] for profile in items(client, "/profiles", phone=other)] == ["q"]
    assert [p["uuid"] for p in items(client, "/profiles", phone="+79990000001")] == ["p"]


def test_a_phone_search_for_what_is_not_a_number_is_a_400(client: Client) -> None:
    answer = client.get("/profiles", params={"phone": "call me"})
    assert answer.status_code == 400
    assert [error["path"] for error in answer.json()["errors"]] == ["phone"]


def test_a_chat_shows_its_team_operator_and_latest_session(client: Client) -> None:
    deliver(
        client,
        *opened("c", at=PAST, team=1, title="Доставка"),
        reply("c", at=PAST + MINUTE, operator="anna"),
    )
    chat = client.get("/chats/c").json()
    assert chat["team"] == {"id": 1, "name": "Team 1"}
    assert chat["operator"] == {"uuid": "anna", "name": "Operator anna", "avatar": None}
    assert chat["session"] == {
        "number": 1,
        "opened_at": "2026-04-24T03:06:40.000Z",
        "last_activity_at": "2026-04-24T03:07:40.000Z",
        "title": "Доставка",
        "context": None,
        "state": "idle",
    }
    assert client.get("/chats/missing").status_code == 404


def test_a_handoff_moves_the_chat_to_the_new_team_with_no_operator(client: Client) -> None:
    deliver(
        client,
        *opened("c", team=1),
        reply("c", at=PAST + MINUTE),
        handoff("c", at=PAST + 2 * MINUTE, team=2),
    )
    chat = client.get("/chats/c").json()
    assert (chat["team"]["id"], chat["operator"]) == (2, None)
    deliver(client, reply("c", at=PAST + 3 * MINUTE, operator="boris", team=2))
    assert client.get("/chats/c").json()["operator"]["uuid"] == "boris"


def test_a_recent_session_is_open_and_an_old_one_idle(client: Client) -> None:
    deliver(client, *opened("fresh", at=now_ms() - MINUTE), *opened("stale", at=PAST))
    assert client.get("/chats/fresh").json()["session"]["state"] == "open"
    assert client.get("/chats/stale").json()["session"]["state"] == "idle"
    assert [s["state"] for s in items(client, "/chats/fresh/sessions")] == ["open"]


def test_sessions_are_numbered_and_count_teams_handoffs_and_messages(client: Client) -> None:
    deliver(
        client,
        *opened("c", at=PAST, team=1),
        reply("c", at=PAST + MINUTE),
        handoff("c", at=PAST + 2 * MINUTE, team=2),
        handoff("c", at=PAST + 3 * MINUTE, team=3),
        *opened("c", at=PAST + 30 * 3600 * 1000, team=3),
    )
    sessions = items(client, "/chats/c/sessions")
    assert [
        (s["number"], s["teams"], s["handoffs"], s["messages_in"], s["messages_out"])
        for s in sessions
    ] == [
        (1, [1, 2, 3], 2, 1, 1),
        (2, [3], 0, 1, 0),
    ]


def test_a_chats_handoffs_are_listed_in_time_order(client: Client) -> None:
    positions = deliver(
        client,
        handoff("c", at=PAST + 3 * MINUTE, team=3),
        *opened("c", at=PAST, team=1),
        handoff("c", at=PAST + 2 * MINUTE, team=2),
    )
    found = items(client, "/chats/c/handoffs")
    assert [(h["from_team"]["id"], h["to_team"]["id"], h["session_number"]) for h in found] == [
        (1, 2, 1),
        (2, 3, 1),
    ]
    assert [h["position"] for h in found] == [positions[3], positions[0]]
    assert [h["at"] for h in found] == ["2026-04-24T03:08:40.000Z", "2026-04-24T03:09:40.000Z"]


def test_the_timeline_is_in_time_order_with_every_kind(client: Client) -> None:
    bodies = [
        *opened("c", at=PAST, team=1),
        reply("c", at=PAST + MINUTE),
        webhook("message_updated", chat="c", at=PAST + 2 * MINUTE, message="failed"),
        webhook("session_updated", chat="c", at=PAST + 3 * MINUTE, team=1, title="Возврат"),
        handoff("c", at=PAST + 4 * MINUTE, team=2),
        {
            "event_type": "chat_rated",
            "payload": {"chat": {"uuid": "c"}},
            "timestamp": PAST + 5 * MINUTE,
        },
    ]
    deliver(client, *reversed(bodies))
    timeline = items(client, "/chats/c/timeline")
    assert [item["kind"] for item in timeline] == [
        "session_opened",
        "message_in",
        "operator_reply",
        "message_updated",
        "session_updated",
        "handoff",
        "other",
    ]
    assert [item["team"]["id"] for item in timeline] == [1, 1, 1, 1, 1, 2, 2]
    assert timeline[2]["operator"]["uuid"] == "op-1"
    assert timeline[1]["message"]["text"] == f"hello at {PAST}"
    assert {item["session_number"] for item in timeline} == {1}
    assert client.get("/chats/missing/timeline").status_code == 404


def test_a_reply_whose_webhook_names_no_operator_shows_operator_null(client: Client) -> None:
    anonymous = webhook("operator_replied", chat="c", at=PAST + MINUTE, team=1, message="hi")
    deliver(client, *opened("c"), anonymous)
    replies = [i for i in items(client, "/chats/c/timeline") if i["kind"] == "operator_reply"]
    assert [item["operator"] for item in replies] == [None]
    assert client.get("/chats/c").json()["operator"] is None


def test_a_team_lists_the_chats_it_has_now_by_state(client: Client) -> None:
    deliver(client, *opened("old", at=PAST, team=1), *opened("new", at=now_ms() - MINUTE, team=1))
    deliver(client, *opened("moved", at=PAST, team=1), handoff("moved", at=PAST + MINUTE, team=2))
    assert sorted(c["uuid"] for c in items(client, "/teams/1/chats")) == ["new", "old"]
    assert [c["uuid"] for c in items(client, "/teams/1/chats", state="open")] == ["new"]
    assert [c["uuid"] for c in items(client, "/teams/1/chats", state="idle")] == ["old"]
    assert [c["uuid"] for c in items(client, "/teams/2/chats")] == ["moved"]
    bad = client.get("/teams/1/chats", params={"state": "closed"})
    assert bad.status_code == 400
    assert [error["path"] for error in bad.json()["errors"]] == ["state"]


def test_the_handoff_audit_filters_by_team_and_time(client: Client) -> None:
    deliver(client, *opened("a", at=PAST, team=1), handoff("a", at=PAST + MINUTE, team=2))
    deliver(client, *opened("b", at=PAST, team=3), handoff("b", at=PAST + 10 * MINUTE, team=1))
    assert [h["chat_uuid"] for h in items(client, "/handoffs", team_id=1)] == ["a", "b"]
    assert [h["chat_uuid"] for h in items(client, "/handoffs", team_id=2)] == ["a"]
    window = {"since": "2026-04-24T03:07:40Z", "until": "2026-04-24T03:16:40Z"}
    assert [h["chat_uuid"] for h in items(client, "/handoffs", **window)] == ["a"]
    assert [h["chat_uuid"] for h in items(client, "/handoffs", since="2026-04-24T03:07:41Z")] == [
        "b"
    ]
    assert client.get("/handoffs", params={"since": "yesterday"}).status_code == 400


def test_the_log_pages_through_every_event_with_filters(client: Client) -> None:
    positions = deliver(client, *opened("a", profile="p"), *opened("b", profile="q"), reply("a"))
    first = client.get("/events", params={"limit": 2}).json()
    assert [e["position"] for e in first["items"]] == positions[:2]
    assert first["next_after"] == positions[1]
    rest = client.get("/events", params={"after": first["next_after"], "limit": 100}).json()
    assert [e["position"] for e in rest["items"]] == positions[2:]
    assert rest["next_after"] is None
    assert len(items(client, "/events", chat_uuid="a")) == 3
    assert len(items(client, "/events", profile_uuid="q")) == 2
    assert len(items(client, "/events", event_type="operator_replied")) == 1
    event = client.get(f"/events/{positions[4]}").json()
    assert (event["event_type"], event["chat_uuid"], event["occurred_at"]) == (
        "operator_replied",
        "a",
        "2026-04-24T03:06:40.000Z",
    )
    assert event["received_at"].endswith("Z")
    assert client.get("/events/999").status_code == 404


@pytest.mark.parametrize("limit", [0, 1001, -1])
def test_a_page_size_outside_1_to_1000_is_a_400(client: Client, limit: int) -> None:
    answer = client.get("/events", params={"limit": limit})
    assert answer.status_code == 400
    assert [error["path"] for error in answer.json()["errors"]] == ["limit"]


def test_a_rebuild_leaves_every_answer_as_it_was(client: Client) -> None:
    deliver(
        client,
        *opened("c", team=1),
        reply("c", at=PAST + MINUTE),
        handoff("c", at=PAST + 2 * MINUTE),
    )
    for body in samples():
        client.post("/webhooks/fasttrack", content=body, headers=JSON_TYPE)
    paths = [
        "/chats/c",
        "/chats/c/sessions",
        "/chats/c/handoffs",
        "/chats/c/timeline",
        "/profiles/profile-1",
        "/handoffs",
        "/teams/2/chats",
    ]
    before = {path: client.get(path).json() for path in paths}
    states = rebuilt(client)
    head = client.get("/health").json()["head"]
    assert {(p["position"], p["head"], p["lag"]) for p in states} == {(head, head, 0)}
    assert {path: client.get(path).json() for path in paths} == before


def test_projections_report_their_position_and_lag(client: Client) -> None:
    deliver(client, *opened("c"))
    projections = items(client, "/projections")
    assert {p["name"] for p in projections} == {p.name for p in registry.projectors(Settings())}
    assert {(p["position"], p["head"], p["lag"]) for p in projections} == {(2, 2, 0)}


def test_health_names_the_database_and_the_log_head(client: Client, database: str) -> None:
    deliver(client, *opened("c"))
    expected = "sqlite" if database.startswith("sqlite") else "postgresql"
    keystore = "sqlite" if database.startswith("sqlite") else "main"  # beside the file
    assert client.get("/health").json() == {
        "status": "ok",
        "database": expected,
        "keystore": keystore,
        "head": 2,
    }


def test_the_openapi_schema_lists_every_route(client: Client) -> None:
    paths = set(client.get("/schema/openapi.json").json()["paths"])
    assert {
        "/webhooks/fasttrack",
        "/profiles",
        "/profiles/{uuid}",
        "/chats/{uuid}",
        "/chats/{uuid}/sessions",
        "/chats/{uuid}/handoffs",
        "/chats/{uuid}/timeline",
        "/teams/{team_id}/chats",
        "/handoffs",
        "/events",
        "/events/{position}",
        "/projections",
        "/projections/rebuild",
        "/health",
    } <= paths


@pytest.mark.parametrize(
    "path",
    ["/chats/a%00b", "/profiles/a%00", "/events?chat_uuid=a%00", "/handoffs?team_id=1&x=%00"],
)
def test_a_nul_character_in_a_lookup_is_a_400(client: Client, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 400
    assert "NUL" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/events?after=9223372036854775808", "after"),
        ("/events/9223372036854775808", "position"),
        ("/teams/9223372036854775808/chats", "team_id"),
        ("/handoffs?team_id=-1", "team_id"),
    ],
)
def test_an_integer_beyond_what_the_log_holds_is_a_400(
    client: Client, path: str, parameter: str
) -> None:
    answer = client.get(path)
    assert answer.status_code == 400
    assert [error["path"] for error in answer.json()["errors"]] == [parameter]
