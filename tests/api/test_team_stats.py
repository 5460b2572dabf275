"""GET /teams, /teams/{id}/stats and /operators/{uuid}/stats, on both databases."""

import json
import random
from typing import Any

from litestar.testing import TestClient
from sqlalchemy import Engine

from cdp.conversations.tables import waits
from cdp.http.app import create_app
from cdp.projections.tables import checkpoints
from cdp.settings import Settings
from cdp.times import iso, utc
from tests.api.conftest import settled
from tests.factories import JSON_TYPE, PAST, handoff, opened, reply, webhook

Client = TestClient  # type: ignore[type-arg]
SECOND, MINUTE = 1000, 60_000
A, B, C = PAST, PAST + 10 * MINUTE, PAST + 20 * MINUTE


def history() -> list[dict[str, Any]]:
    """Three chats of teams 1 and 2, with waits of 60 s, 180 s and 20 s, and two unanswered."""
    return [
        *opened("a", at=A, team=1, team_name="Sales"),
        webhook("message_created", chat="a", at=A + 30 * SECOND, message="still there?"),
        reply("a", at=A + 60 * SECOND, operator="op-1", team=1),
        handoff("a", at=A + 2 * MINUTE, team=2, team_name="Support"),
        reply("a", at=A + 2 * MINUTE + 180 * SECOND, operator="op-2", team=2),
        webhook("message_created", chat="a", at=A + 7 * MINUTE, message="thanks"),
        *opened("b", at=B, team=1, team_name="Sales"),
        reply("b", at=B + 20 * SECOND, operator="op-1", team=1),
        *opened("c", at=C, team=1, team_name="Sales"),
        handoff("c", at=C + 100 * SECOND, team=2, team_name="Support"),
    ]


def bands(*answered: int) -> list[dict[str, Any]]:
    """The first-response bands with these counts: below 1, 5 and 15 min, 1 and 4 h, beyond."""
    bounds = [60, 300, 900, 3600, 14400, None]
    return [{"below_seconds": b, "answered": n} for b, n in zip(bounds, answered, strict=True)]


def deliver(client: Client, bodies: list[dict[str, Any]]) -> None:
    for body in bodies:
        answer = client.post("/webhooks/fasttrack", content=json.dumps(body), headers=JSON_TYPE)
        assert answer.status_code in (200, 202), answer.text


def stats(client: Client, path: str, **params: Any) -> dict[str, Any]:
    answer = client.get(path, params=params)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def test_a_teams_figures_count_its_sessions_handoffs_messages_replies_and_waits(
    client: Client,
) -> None:
    deliver(client, history())
    sales = stats(client, "/teams/1/stats")
    assert sales["team"] == {"id": 1, "name": "Sales"}
    assert (sales["since"], sales["until"]) == (None, None)
    assert sales["sessions_opened"] == 3
    assert (sales["handoffs_in"], sales["handoffs_out"]) == (0, 2)
    assert (sales["customer_messages"], sales["operator_replies"]) == (4, 2)
    # Waits of 20 s and 60 s: the median halfway, the 90th percentile 9/10 of the way.
    assert sales["first_response"] == {
        "answered": 2,
        "median_seconds": 40.0,
        "p90_seconds": 56.0,
        "bands": bands(1, 1, 0, 0, 0, 0),  # 20 s, and 60 s: at a bound, in the band after
    }
    assert sales["unanswered"] == 1

    support = stats(client, "/teams/2/stats")
    assert support["team"] == {"id": 2, "name": "Support"}
    assert (support["sessions_opened"], support["handoffs_in"], support["handoffs_out"]) == (
        0,
        2,
        0,
    )
    assert (support["customer_messages"], support["operator_replies"]) == (1, 1)
    assert support["first_response"] == {
        "answered": 1,
        "median_seconds": 180.0,
        "p90_seconds": 180.0,
        "bands": bands(0, 1, 0, 0, 0, 0),
    }
    assert support["unanswered"] == 1


def test_a_period_counts_what_began_in_it_alone(client: Client) -> None:
    deliver(client, history())
    since, until = iso(utc(A + 5 * MINUTE)), iso(utc(C + 100 * SECOND))
    sales = stats(client, "/teams/1/stats", since=since, until=until)
    assert sales["since"] == since
    assert sales["until"] == until
    assert (sales["sessions_opened"], sales["handoffs_out"]) == (2, 0)  # c's is at `until`
    assert (sales["customer_messages"], sales["operator_replies"]) == (2, 1)
    assert sales["first_response"]["answered"] == 1
    assert sales["first_response"]["median_seconds"] == 20.0
    assert sales["unanswered"] == 1


def test_a_period_with_nothing_in_it_gives_zeros_and_an_unknown_team_a_404(
    client: Client,
) -> None:
    deliver(client, history())
    empty = stats(client, "/teams/1/stats", until=iso(utc(A)))
    figures = [empty[name] for name in ("sessions_opened", "handoffs_in", "handoffs_out")]
    assert [*figures, empty["customer_messages"], empty["operator_replies"]] == [0] * 5
    assert empty["first_response"] == {
        "answered": 0,
        "median_seconds": None,
        "p90_seconds": None,
        "bands": bands(0, 0, 0, 0, 0, 0),
    }
    assert empty["unanswered"] == 0
    missing = client.get("/teams/99/stats")
    assert missing.status_code == 404
    assert "no team 99" in missing.json()["detail"]
    backwards = client.get("/teams/1/stats", params={"since": "2026-05-02", "until": "2026-05-01"})
    assert backwards.status_code == 400
    assert "since" in backwards.text


def test_an_operators_figures_count_what_they_did(client: Client) -> None:
    deliver(client, history())
    first = stats(client, "/operators/op-1/stats")
    assert first["operator"] == {"uuid": "op-1", "name": "Operator op-1", "avatar": None}
    assert (first["sessions"], first["operator_replies"]) == (2, 2)
    assert first["handoffs_out"] == 1  # a's, after their reply; c's had none
    assert first["first_response"] == {
        "answered": 2,
        "median_seconds": 40.0,
        "p90_seconds": 56.0,
        "bands": bands(1, 1, 0, 0, 0, 0),
    }
    second = stats(client, "/operators/op-2/stats", since=iso(utc(B)))
    assert (second["sessions"], second["operator_replies"], second["handoffs_out"]) == (0, 0, 0)
    assert second["first_response"]["answered"] == 0
    assert client.get("/operators/op-9/stats").status_code == 404


def test_teams_are_listed_by_their_latest_name_whatever_the_order_they_arrive_in(
    client: Client,
) -> None:
    renamed = [
        handoff("d", at=PAST, team=3, team_name="Billing"),
        handoff("d", at=PAST + MINUTE, team=4, team_name="Returns"),
        handoff("e", at=PAST + 2 * MINUTE, team=3, team_name="Billing & Refunds"),
    ]
    deliver(client, list(reversed(renamed)))
    answer = client.get("/teams")
    assert answer.status_code == 200
    listed = [(t["id"], t["name"], t["first_seen_at"]) for t in answer.json()["items"]]
    assert listed == [
        (3, "Billing & Refunds", iso(utc(PAST))),
        (4, "Returns", iso(utc(PAST + MINUTE))),
    ]


def test_figures_are_the_same_whatever_the_order_the_webhooks_arrive_in(
    client: Client,
) -> None:
    bodies = history()
    random.Random(7).shuffle(bodies)
    deliver(client, bodies)
    sales, support = stats(client, "/teams/1/stats"), stats(client, "/teams/2/stats")
    assert (sales["sessions_opened"], sales["handoffs_out"], sales["unanswered"]) == (3, 2, 1)
    assert sales["first_response"]["median_seconds"] == 40.0
    assert (support["handoffs_in"], support["first_response"]["answered"]) == (2, 1)


def test_a_late_opening_takes_the_reply_after_it_from_the_session_before(
    client: Client,
) -> None:
    """A session opened at A; a reply after the idle timeout, then the session_updated that,
    arriving late, opens a second session just before it: the first wait is unanswered."""
    later = A + 30 * 60 * MINUTE  # the idle timeout is 24 hours
    first = [*opened("f", at=A, team=1), reply("f", at=later, operator="op-1", team=1)]
    late = handoff("f", at=later - MINUTE, team=1)
    deliver(client, [*first, late])
    sales = stats(client, "/teams/1/stats")
    assert sales["sessions_opened"] == 2
    assert sales["first_response"] == {
        "answered": 1,
        "median_seconds": 60.0,
        "p90_seconds": 60.0,
        "bands": bands(0, 1, 0, 0, 0, 0),
    }
    assert sales["unanswered"] == 1


def test_team_statistics_of_a_store_whose_chats_are_of_an_older_version_are_built_at_start(
    settings: Settings, engine: Engine
) -> None:
    with TestClient(create_app(settings)) as client:
        deliver(client, history())
        expected = [stats(client, path) for path in ("/teams/1/stats", "/operators/op-1/stats")]
    with engine.begin() as connection:  # as before the chats projector counted turns
        older = checkpoints.update().where(checkpoints.c.name == "chats").values(version=2)
        connection.execute(older)
        connection.execute(waits.delete())
    with TestClient(create_app(settings)) as client:
        found = {state["name"]: state for state in settled(client)}
        assert found["chats"]["status"] == "live"
        assert found["chats"]["build"]["state"] == "done"
        assert [
            stats(client, path) for path in ("/teams/1/stats", "/operators/op-1/stats")
        ] == expected


def test_figures_of_one_source_count_its_chats_alone(client: Client) -> None:
    deliver(client, history())
    assert stats(client, "/teams/1/stats", source="default") == stats(client, "/teams/1/stats")
    assert stats(client, "/operators/op-1/stats", source="default")["operator_replies"] == 2
    assert client.get("/teams/1/stats", params={"source": "another"}).status_code == 404
    assert client.get("/operators/op-1/stats", params={"source": "another"}).status_code == 404
