"""Reports beside the trends: reply targets and their breaches, who is waiting now, the
heat map, the leaderboard, and the settings an admin gives them (docs/reports.md)."""

import csv
import io
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from litestar.testing import TestClient
from sqlalchemy import Engine

from cdp.access import credentials
from cdp.http.app import create_app
from cdp.settings import Settings
from tests.factories import now_ms, opened, reply, webhook

Client = TestClient  # type: ignore[type-arg]
MINUTE = 60_000
MOSCOW = ZoneInfo("Europe/Moscow")


def deliver(client: Client, *bodies: dict[str, Any]) -> None:
    for body in bodies:
        answer = client.post("/webhooks/fasttrack", json=body)
        assert answer.status_code == 202, answer.text


def customer(chat: str, at: int, text: str = "hello?") -> dict[str, Any]:
    return webhook("message_created", chat=chat, at=at, message=f"{text} {at}")


def targets(client: Client, team: int, first: float | None, following: float | None) -> None:
    body = {"first_reply_seconds": first, "next_reply_seconds": following}
    answer = client.put(f"/reports/targets/{team}", json=body)
    assert answer.status_code == 200, answer.text


@pytest.fixture
def one_client(tmp_path: Path, sqlite_template: Path) -> Iterator[Client]:
    """A client of a SQLite store alone: for questions refused before any database is
    asked (what the databases answer is tested on both)."""
    path = tmp_path / "cdp.db"
    shutil.copy(sqlite_template, path)
    with TestClient(create_app(Settings(database_url=f"sqlite:///{path}"))) as client:
        yield client


# -- who is waiting now ----------------------------------------------------------------


def test_who_waits_now_is_listed_longest_first_with_each_team_s_target_state(
    client: Client,
) -> None:
    now = now_ms()
    targets(client, 1, first=600, following=300)
    # c-long: answered once, then the customer wrote again 20 minutes ago (next reply, 300 s).
    deliver(client, *opened("c-long", at=now - 40 * MINUTE, team=1))
    deliver(client, reply("c-long", at=now - 39 * MINUTE, team=1))
    deliver(client, customer("c-long", now - 20 * MINUTE), customer("c-long", now - 5 * MINUTE))
    # c-risk: opened 9 minutes ago, no reply yet: 90% of its first-reply target.
    deliver(client, *opened("c-risk", at=now - 9 * MINUTE, team=1))
    # c-fine: opened a minute ago with team 2, which has no target.
    deliver(client, *opened("c-fine", at=now - MINUTE, team=2))
    # c-done: answered; c-old: its session went idle a day ago.
    deliver(client, *opened("c-done", at=now - 30 * MINUTE, team=1))
    deliver(client, reply("c-done", at=now - 29 * MINUTE, team=1))
    deliver(client, *opened("c-old", at=now - 25 * 60 * MINUTE, team=1))

    found = client.get("/reports/waiting").json()
    chats = [(c["chat_uuid"], c["team_id"], c["target"], c["state"]) for c in found["chats"]]
    assert chats == [
        ("c-long", 1, "next_reply", "open_breached"),
        ("c-risk", 1, "first_reply", "at_risk"),
        ("c-fine", 2, None, None),
    ]
    first = found["chats"][0]
    assert first["since"] == _iso(now - 20 * MINUTE)  # the wait's first message
    assert 20 * 60 <= first["waiting_seconds"] < 21 * 60
    assert {(t["team_id"], t["waiting"], t["at_risk"], t["breached"]) for t in found["teams"]} == {
        (1, 2, 1, 1),
        (2, 1, 0, 0),
    }
    # Next to change: c-risk passing its target, a minute from the webhooks' now.
    changes = datetime.fromisoformat(found["changes_at"]).timestamp() * 1000
    assert abs(changes - (now - 9 * MINUTE + 600_000)) < 1000
    one_team = client.get("/reports/waiting", params={"team": 2}).json()
    assert [c["chat_uuid"] for c in one_team["chats"]] == ["c-fine"]


def test_a_reply_even_one_delivered_late_takes_a_chat_off_the_waiting_list(
    client: Client,
) -> None:
    now = now_ms()
    deliver(client, *opened("c1", at=now - 10 * MINUTE))
    deliver(client, customer("c1", now - 2 * MINUTE))
    assert [c["chat_uuid"] for c in client.get("/reports/waiting").json()["chats"]] == ["c1"]
    deliver(client, reply("c1", at=now - MINUTE))
    assert client.get("/reports/waiting").json()["chats"] == []
    # A reply delivered late, before the customer's last message, leaves it waiting.
    deliver(client, *opened("c2", at=now - 10 * MINUTE))
    deliver(client, customer("c2", now - 2 * MINUTE))
    deliver(client, reply("c2", at=now - 5 * MINUTE))
    waiting = client.get("/reports/waiting").json()["chats"]
    assert [(c["chat_uuid"], c["since"]) for c in waiting] == [("c2", _iso(now - 2 * MINUTE))]


# -- targets and breaches ----------------------------------------------------------------


def test_targets_are_judged_answered_late_or_open_and_breaches_are_listed_alike_as_csv(
    client: Client,
) -> None:
    now = now_ms()
    targets(client, 1, first=60, following=120)
    deliver(client, *opened("c1", at=now - 60 * MINUTE))  # answered in 30 s: within
    deliver(client, reply("c1", at=now - 60 * MINUTE + 30_000))
    deliver(client, customer("c1", now - 50 * MINUTE))  # next reply in 5 min: breached
    deliver(client, reply("c1", at=now - 45 * MINUTE, operator="op-2"))
    deliver(client, *opened("c2", at=now - 10 * MINUTE))  # no reply for 10 min: still open

    sla = client.get("/reports/sla", params={"team": 1}).json()
    first, following = sla["first_reply"]["total"], sla["next_reply"]["total"]
    assert (first["within"], first["breached"], first["open"], first["open_breached"]) == (
        1,
        0,
        0,
        1,
    )
    assert (following["within"], following["breached"]) == (0, 1)
    assert sla["working_time"] is False

    breaches = client.get("/reports/breaches", params={"team": 1}).json()["items"]
    assert [(b["chat_uuid"], b["kind"], b["operator_uuid"], b["open"]) for b in breaches] == [
        ("c1", "next_reply", "op-2", False),
        ("c2", "first_reply", None, True),
    ]
    assert breaches[0]["wait_seconds"] == 300.0
    assert breaches[0]["target_seconds"] == 120.0
    sheet = client.get("/reports/breaches", params={"team": 1, "format": "csv"})
    assert sheet.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(sheet.text.lstrip("\ufeff"))))
    assert [(r["chat_uuid"], r["kind"], r["operator_uuid"], r["open"]) for r in rows] == [
        ("c1", "next_reply", "op-2", "False"),
        ("c2", "first_reply", "", "True"),
    ]
    assert rows[0]["wait_seconds"] == "300.0"  # the open one has waited on since


def test_breaches_come_a_page_at_a_time_in_the_order_of_the_whole_list(client: Client) -> None:
    targets(client, 1, first=60, following=60)
    start = now_ms() - 120 * MINUTE
    for n in range(7):  # two chats open at each moment: ties broken by the chat
        for chat in (f"b{n}", f"a{n}"):
            deliver(client, *opened(chat, at=start + n * MINUTE))
            deliver(client, reply(chat, at=start + n * MINUTE + 5 * MINUTE))
    every = client.get("/reports/breaches", params={"team": 1, "limit": 1000}).json()
    assert every["next"] is None
    expected = [(b["started_at"], b["chat_uuid"]) for b in every["items"]]
    assert len(expected) == 14
    assert expected == sorted(expected)
    pages, after = [], None
    while True:
        params: dict[str, str | int] = {"team": 1, "limit": 3}
        if after is not None:
            params["after"] = after
        page = client.get("/reports/breaches", params=params).json()
        assert len(page["items"]) <= 3
        pages += [(b["started_at"], b["chat_uuid"]) for b in page["items"]]
        after = page["next"]
        if after is None:
            break
    assert pages == expected
    sheet = client.get("/reports/breaches", params={"team": 1, "format": "csv", "limit": 2})
    rows = list(csv.DictReader(io.StringIO(sheet.text.lstrip("\ufeff"))))
    assert len(rows) == 14  # a file holds every one
    forged = client.get("/reports/breaches", params={"team": 1, "after": "bm90IGEgY3Vyc29y"})
    assert forged.status_code == 400
    assert "after" in forged.text or "cursor" in forged.text


def test_what_targets_met_keeps_of_past_hours_follows_targets_hours_and_late_webhooks(
    client: Client,
) -> None:
    """The SLA report keeps each past hour's outcomes (cdp.reports.outcomes): a new
    target, a new working week or a late webhook into that hour changes the answer."""
    monday = _ms(datetime(2026, 11, 2, 10, 0, tzinfo=MOSCOW))
    deliver(client, *opened("c1", at=monday))
    deliver(client, reply("c1", at=monday + 10 * MINUTE))  # a first reply in 10 minutes
    params = {"team": 1, "since": "2026-11-02", "until": "2026-11-03"}

    def outcome() -> tuple[int, int]:
        total = client.get("/reports/sla", params=params).json()["first_reply"]["total"]
        return total["within"], total["breached"]

    targets(client, 1, first=15 * 60, following=None)
    assert outcome() == (1, 0)
    assert outcome() == (1, 0)  # asked again: from what was kept
    targets(client, 1, first=5 * 60, following=None)
    assert outcome() == (0, 1)
    week = {"monday": ["10:05-18:00"]}  # only 5 working minutes before the reply
    assert client.put("/reports/business-hours", json={"week": week}).status_code == 200
    assert outcome() == (1, 0)
    deliver(client, *opened("c2", at=monday + MINUTE))  # late, into the same hour
    assert outcome() == (1, 0)  # c2's turn ended unanswered in no working time: neither
    deliver(client, reply("c2", at=monday + 30 * MINUTE))
    assert outcome() == (1, 1)


def test_with_working_hours_a_wait_over_the_night_counts_only_working_time(
    client: Client,
) -> None:
    week = {name: ["09:00-18:00"] for name in ("monday", "tuesday", "wednesday", "thursday")}
    answer = client.put("/reports/business-hours", json={"week": week})
    assert answer.status_code == 200, answer.text
    targets(client, 1, first=3600, following=None)
    evening = _ms(datetime(2026, 11, 2, 17, 30, tzinfo=MOSCOW))  # a Monday
    morning = _ms(datetime(2026, 11, 3, 9, 15, tzinfo=MOSCOW))
    deliver(client, *opened("c1", at=evening))
    deliver(client, reply("c1", at=morning))
    params = {"team": 1, "since": "2026-11-02", "until": "2026-11-03"}
    sla = client.get("/reports/sla", params=params).json()
    assert sla["working_time"] is True
    assert sla["first_reply"]["total"]["within"] == 1  # 45 working minutes, not 15 hours
    trend = client.get(
        "/reports/trends",
        params={"metric": "first_response", "business_hours": "true", **params, "group": "day"},
    ).json()
    assert trend["current"]["total"]["median_seconds"] == 45 * 60


def test_business_hours_are_refused_until_set_and_a_bad_week_names_what_is_wrong(
    client: Client,
) -> None:
    before = client.get("/reports/trends", params={"metric": "reply_time", "business_hours": True})
    assert before.status_code == 409
    assert "PUT /reports/business-hours" in before.json()["detail"]
    bad = client.put(
        "/reports/business-hours", json={"week": {"monday": ["09:00-13:00", "12:00-18:00"]}}
    )
    assert bad.status_code == 400
    assert "monday: 09:00-13:00 and 12:00-18:00 overlap" in bad.json()["detail"]
    crowded = [f"{h:02d}:00-{h:02d}:30" for h in range(24)] + [
        f"{h:02d}:40-{h:02d}:50" for h in range(24)
    ]
    many = client.put(
        "/reports/business-hours", json={"week": {"monday": [*crowded, "23:55-24:00"]}}
    )
    assert many.status_code == 400
    assert "monday: more than 48 intervals in a day" in many.json()["detail"]
    unknown = client.put("/reports/business-hours", json={"week": {"funday": ["09:00-18:00"]}})
    assert unknown.status_code == 400
    assert "'funday': not a weekday" in unknown.json()["detail"]
    assert client.get("/reports/business-hours").json()["week"]["monday"] == []
    counted = client.get(
        "/reports/trends", params={"metric": "customer_messages", "business_hours": True}
    )
    assert counted.status_code == 400
    assert "business_hours counts waits" in counted.json()["detail"]


@pytest.fixture
def closed(settings: Settings, engine: Engine) -> Iterator[tuple[Client, str, str]]:
    with engine.begin() as connection:
        read = credentials.create_token(connection, "analyst", "read")
        admin = credentials.create_token(connection, "lead", "admin")
    with TestClient(create_app(settings)) as client:
        yield client, read, admin


def test_only_an_admin_sets_hours_or_targets_and_each_change_names_the_token(
    closed: tuple[Client, str, str],
) -> None:
    client, read, admin = closed
    week = {"week": {"friday": ["10:00-16:00"]}, "holidays": [{"day": "2026-12-31"}]}
    as_reader = {"Authorization": f"Bearer {read}"}
    as_admin = {"Authorization": f"Bearer {admin}"}
    assert client.put("/reports/business-hours", json=week, headers=as_reader).status_code == 403
    assert client.put("/reports/targets/7", json={}, headers=as_reader).status_code == 403
    assert client.put("/reports/business-hours", json=week, headers=as_admin).status_code == 200
    set_ = {"first_reply_seconds": 300}
    assert client.put("/reports/targets/7", json=set_, headers=as_admin).status_code == 200
    shown = client.get("/reports/business-hours", headers=as_reader).json()
    assert shown["week"]["friday"] == ["10:00-16:00"]
    assert shown["holidays"] == [{"day": "2026-12-31", "name": None}]
    changes = client.get("/reports/changes", headers=as_reader).json()
    assert [(c["actor"], c["setting"]) for c in changes] == [
        ("lead", "targets"),
        ("lead", "holidays"),
        ("lead", "working_hours"),
    ]
    assert changes[0]["after"]["first_reply_seconds"] == 300
    tiny = client.put("/reports/targets/7", json={"first_reply_seconds": 0.2}, headers=as_admin)
    assert tiny.status_code == 400
    assert "at least 1 s" in tiny.json()["detail"]


# -- heat map and leaderboard ------------------------------------------------------------


def test_the_heat_map_counts_by_local_weekday_and_hour(client: Client) -> None:
    monday_9 = _ms(datetime(2026, 11, 2, 9, 10, tzinfo=MOSCOW))
    sunday_23 = _ms(datetime(2026, 11, 8, 23, 59, tzinfo=MOSCOW))
    deliver(client, *opened("c1", at=monday_9))
    deliver(client, customer("c1", monday_9 + MINUTE), customer("c1", monday_9 + 2 * MINUTE))
    deliver(client, *opened("c2", at=sunday_23, team=2))
    params = {"since": "2026-11-02", "until": "2026-11-09"}
    messages = client.get("/reports/heatmap", params=params).json()
    assert messages["weekdays"][0] == "monday"
    assert messages["cells"][0][9] == 3
    assert messages["cells"][6][23] == 1
    assert sum(map(sum, messages["cells"])) == 4
    opened_ = client.get("/reports/heatmap", params={**params, "metric": "sessions_opened"})
    assert sum(map(sum, opened_.json()["cells"])) == 2
    team_2 = client.get("/reports/heatmap", params={**params, "team": 2}).json()
    assert sum(map(sum, team_2["cells"])) == 1


def test_the_leaderboard_sets_a_team_s_operators_side_by_side(client: Client) -> None:
    now = now_ms()
    targets(client, 1, first=120, following=None)
    deliver(client, *opened("c1", at=now - 60 * MINUTE))
    deliver(client, reply("c1", at=now - 59 * MINUTE, operator="anna"))  # 60 s first reply
    deliver(client, reply("c1", at=now - 58 * MINUTE, operator="boris"))
    deliver(client, *opened("c2", at=now - 30 * MINUTE))
    deliver(client, reply("c2", at=now - 25 * MINUTE, operator="anna"))  # 300 s: late
    deliver(client, customer("c2", now - 20 * MINUTE))
    deliver(client, reply("c2", at=now - 19 * MINUTE, operator="anna"))
    deliver(client, *opened("c3", at=now - 10 * MINUTE, team=2))
    deliver(client, reply("c3", at=now - 9 * MINUTE, operator="boris", team=2))

    board = client.get("/reports/leaderboard", params={"team": 1}).json()
    leaders = {leader["operator_uuid"]: leader for leader in board["operators"]}
    assert list(leaders) == ["anna", "boris"]  # most replies first
    anna, boris = leaders["anna"], leaders["boris"]
    assert (anna["sessions"], anna["replies"], anna["breaches"]) == (2, 3, 1)
    assert anna["first_response_median_seconds"] == 180.0  # of 60 s and 300 s
    assert (boris["sessions"], boris["replies"], boris["breaches"]) == (1, 1, 0)
    assert boris["first_response_median_seconds"] is None  # answered no turn first
    assert anna["operator_name"] == "Operator anna"


def test_an_operator_s_session_counts_in_the_period_of_their_first_reply_there(
    client: Client,
) -> None:
    evening = _ms(datetime(2026, 11, 2, 23, 50, tzinfo=MOSCOW))
    deliver(client, *opened("c1", at=evening))
    deliver(client, reply("c1", at=evening + 5 * MINUTE, operator="anna"))  # on the 2nd
    deliver(client, customer("c1", evening + 12 * MINUTE))
    deliver(client, reply("c1", at=evening + 15 * MINUTE, operator="anna"))  # on the 3rd
    deliver(client, reply("c1", at=evening + 16 * MINUTE, operator="boris"))  # his first

    def board(day: str) -> dict[str, tuple[int, int]]:
        after = {"2026-11-02": "2026-11-03", "2026-11-03": "2026-11-04"}[day]
        params = {"team": 1, "since": day, "until": after}
        answer = client.get("/reports/leaderboard", params=params).json()
        assert "operators" in answer, answer
        found = answer["operators"]
        return {each["operator_uuid"]: (each["sessions"], each["replies"]) for each in found}

    assert board("2026-11-02") == {"anna": (1, 1)}
    assert board("2026-11-03") == {"anna": (0, 1), "boris": (1, 1)}
    # His first reply there, delivered late, moves his session to the day before.
    deliver(client, reply("c1", at=evening + MINUTE, operator="boris"))
    assert board("2026-11-03") == {"anna": (0, 1), "boris": (0, 1)}
    assert board("2026-11-02") == {"anna": (1, 1), "boris": (1, 1)}


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _iso(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000)
        .astimezone(ZoneInfo("UTC"))
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


@pytest.mark.parametrize(
    ("path", "params", "named", "says"),
    [
        ("/reports/trends", {"metric": "nothing"}, "metric", ""),
        ("/reports/trends", {"metric": "reply_time", "since": "0001-01-01"}, "since", "between"),
        (
            "/reports/trends",
            {"metric": "reply_time", "until": "9999-12-31T23:59"},
            "until",
            "between",
        ),
        ("/reports/trends", {"metric": "reply_time", "since": "next tuesday"}, "since", "ISO 8601"),
        (
            "/reports/trends",
            {"metric": "reply_time", "since": "2026-11-02", "until": "2026-11-01"},
            "since",
            "before",
        ),
        (
            "/reports/trends",
            {"metric": "reply_time", "group": "hour", "since": "1971-01-01", "until": "2199-01-01"},
            "group",
            "at most 9000",
        ),
        (
            "/reports/trends",
            {"metric": "reply_time", "team": 1, "platform": "VK"},
            "scope",
            "one scope",
        ),
        (
            "/reports/trends",
            {"metric": "handoffs_in", "operator": "anna"},
            "operator",
            "by operator",
        ),
        (
            "/reports/sla",
            {"group": "hour", "since": "1971-01-01", "until": "2199-01-01"},
            "group",
            "at most 9000",
        ),
        ("/reports/leaderboard", {}, "team", ""),
        ("/reports/heatmap", {"metric": "operator_replies"}, "metric", ""),
    ],
)
def test_a_report_asked_wrongly_is_a_400_naming_the_parameter_at_once(
    one_client: Client, path: str, params: dict[str, Any], named: str, says: str
) -> None:
    answer = one_client.get(path, params=params)
    assert answer.status_code == 400, answer.text
    assert named in [error["path"] for error in answer.json()["errors"]], answer.json()
    assert says in answer.json()["detail"]


def test_a_year_by_hour_or_decades_by_month_are_answered_whole(client: Client) -> None:
    deliver(client, *opened("c1", at=_ms(datetime(2026, 3, 29, 12, tzinfo=MOSCOW))))
    by_hour = client.get(
        "/reports/trends",
        params={
            "metric": "sessions_opened",
            "group": "hour",
            "since": "2026-01-01",
            "until": "2027-01-01",
        },
    ).json()
    assert len(by_hour["current"]["points"]) == 365 * 24  # Moscow keeps one offset all year
    assert by_hour["current"]["total"]["count"] == 1
    decades = client.get(
        "/reports/trends",
        params={
            "metric": "sessions_opened",
            "group": "month",
            "since": "1990-01-01",
            "until": "2199-01-01",
        },
    ).json()
    assert len(decades["current"]["points"]) == (2199 - 1990) * 12
