"""`cdp reports`: working hours, holidays and reply targets set from the command line, seen
the same by the command and the HTTP API, refused in words when they cannot be, and
recorded with `cli:` and the account that ran the command."""

import getpass
import shutil
import threading
import time
from datetime import date
from pathlib import Path

import pytest
from litestar.testing import TestClient
from sqlalchemy import text

from cdp.cli.reports import duration_seconds, duration_text
from cdp.db import make_engine
from cdp.reports import hours
from tests.cli.test_commands import cdp
from tests.conftest import empty

ZONE = "working hours in Europe/Moscow (CDP_TIMEZONE)"
WEEK = ("mon-fri=09:00-13:00,14:00-18:00", "Sat=10:00-14:00", "sun=")
WEEK_SHOWN = [
    ZONE,
    "monday     09:00-13:00,14:00-18:00",
    "tuesday    09:00-13:00,14:00-18:00",
    "wednesday  09:00-13:00,14:00-18:00",
    "thursday   09:00-13:00,14:00-18:00",
    "friday     09:00-13:00,14:00-18:00",
    "saturday   10:00-14:00",
    "sunday     closed",
]
WEEK_JSON = {
    **{day: ["09:00-13:00", "14:00-18:00"] for day in ("monday", "tuesday", "wednesday")},
    **{day: ["09:00-13:00", "14:00-18:00"] for day in ("thursday", "friday")},
    "saturday": ["10:00-14:00"],
    "sunday": [],
}


@pytest.fixture
def one_database(tmp_path: Path, sqlite_template: Path) -> str:
    """A migrated SQLite store alone: for the many ways of writing a setting, which the
    command reads before any database is asked (each rule on both is tested apart)."""
    path = tmp_path / "cdp.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


def reports(database: str, *args: str) -> list[str]:
    """The lines of a `cdp reports` command that must succeed."""
    result = cdp(database, "reports", *args)
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def changes_recorded(database: str) -> int:
    engine = make_engine(database)
    with engine.connect() as connection:
        found = len(hours.changes(connection, 1000))
    engine.dispose()
    return found


# -- working hours ---------------------------------------------------------------------


def test_the_week_set_is_what_show_prints_and_what_the_api_answers(
    database: str,
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    assert reports(database, "hours", "set", *WEEK) == [*WEEK_SHOWN, "no holidays"]
    assert reports(database, "hours", "show") == [*WEEK_SHOWN, "no holidays"]
    answer = client.get("/reports/business-hours")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"timezone": "Europe/Moscow", "week": WEEK_JSON, "holidays": []}


def test_an_empty_store_shows_every_day_closed_and_how_to_set_them(database: str) -> None:
    lines = reports(database, "hours", "show")
    assert lines[0] == ZONE
    assert lines[1:8] == [f"{day:<10} closed" for day in hours.WEEKDAYS]
    assert "cdp reports hours set" in lines[8]
    assert lines[9] == "no holidays"


@pytest.mark.parametrize(
    "given",
    [
        ("monday=09:00-18:00", "TUE=09:00-18:00", "wed-fri=9:00-18:00", "sat,sun=closed"),
        ("Monday-Friday=09:00-18:00", "saturday=", "sun="),
        ("mon-fri=09:00-18:00",),
        ("mon,tue=09:00-18:00", "wed-thu=09:00-18:00", "fri=09:00-18:00"),
    ],
)
def test_weekdays_by_name_abbreviation_range_or_list_and_a_day_left_out_is_closed(
    one_database: str, given: tuple[str, ...]
) -> None:
    reports(one_database, "hours", "set", *given)
    week = reports(one_database, "hours", "show")[1:8]
    assert week == [
        *(f"{day:<10} 09:00-18:00" for day in hours.WEEKDAYS[:5]),
        "saturday   closed",
        "sunday     closed",
    ]


def test_set_replaces_the_whole_week_and_keeps_the_holidays(
    database: str,
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    reports(database, "hours", "set", *WEEK)
    reports(database, "holidays", "add", "2026-12-31", "New Year's Eve")
    lines = reports(database, "hours", "set", "tue=10:00-12:00")
    assert lines == [
        ZONE,
        "monday     closed",
        "tuesday    10:00-12:00",
        *(f"{day:<10} closed" for day in hours.WEEKDAYS[2:]),
        "holiday    2026-12-31 New Year's Eve",
    ]
    assert client.get("/reports/business-hours").json() == {
        "timezone": "Europe/Moscow",
        "week": {day: ["10:00-12:00"] if day == "tuesday" else [] for day in hours.WEEKDAYS},
        "holidays": [{"day": "2026-12-31", "name": "New Year's Eve"}],
    }


def test_24_00_ends_the_day(database: str) -> None:
    reports(database, "hours", "set", "sat-sun=00:00-24:00")
    assert reports(database, "hours", "show")[6:8] == [
        "saturday   00:00-24:00",
        "sunday     00:00-24:00",
    ]


@pytest.mark.parametrize(
    ("given", "said"),
    [
        (("mun=09:00-18:00",), "'mun' is not a weekday"),
        (("mon-fry=09:00-18:00",), "'fry' is not a weekday"),
        (("mon=9-18",), "'9-18' is not an interval: write it as 09:00-18:00"),
        (("mon=09:00-25:00",), "'09:00-25:00' is not an interval of a day"),
        (("mon=09:00-13:00,",), "'' is not an interval"),
        (("mon=18:00-09:00",), "monday 18:00-09:00: an interval must begin before it ends"),
        (("mon=09:00-13:00,12:00-18:00",), "monday: 09:00-13:00 and 12:00-18:00 overlap"),
        (("fri-mon=09:00-18:00",), "'fri-mon' runs backwards"),
        (("mon-fri=09:00-18:00", "fri=09:00-17:00"), "friday is given twice"),
        (("monday",), "'monday': write WEEKDAY=INTERVALS"),
    ],
)
def test_a_week_that_cannot_be_is_refused_in_words_and_nothing_changes(
    one_database: str, given: tuple[str, ...], said: str
) -> None:
    reports(one_database, "hours", "set", *WEEK)
    reports(one_database, "holidays", "add", "2026-12-31")
    before, recorded = reports(one_database, "hours", "show"), changes_recorded(one_database)
    result = cdp(one_database, "reports", "hours", "set", *given)
    assert result.exit_code == 2, result.output
    assert said in result.output
    assert reports(one_database, "hours", "show") == before
    assert changes_recorded(one_database) == recorded


# -- holidays --------------------------------------------------------------------------


def test_holidays_added_renamed_and_removed_keep_the_week(
    database: str,
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    reports(database, "hours", "set", *WEEK)
    assert reports(database, "holidays", "list") == [
        "no holidays: add one with cdp reports holidays add YYYY-MM-DD [NAME]"
    ]
    assert reports(database, "holidays", "add", "2027-01-07") == ["holiday 2027-01-07 added"]
    assert reports(database, "holidays", "add", "2026-12-31", "New Year's Eve") == [
        "holiday 2026-12-31 New Year's Eve added"
    ]
    assert reports(database, "holidays", "add", "2027-01-07", "Christmas") == [
        "holiday 2027-01-07 Christmas renamed"
    ]
    for again in (("2027-01-07", "Christmas"), ("2027-01-07",)):  # no name: the name stays
        assert reports(database, "holidays", "add", *again) == [
            "2027-01-07 is a holiday already: nothing changed"
        ]
    assert reports(database, "holidays", "list") == [
        "2026-12-31 New Year's Eve",
        "2027-01-07 Christmas",
    ]
    assert client.get("/reports/business-hours").json() == {
        "timezone": "Europe/Moscow",
        "week": WEEK_JSON,
        "holidays": [
            {"day": "2026-12-31", "name": "New Year's Eve"},
            {"day": "2027-01-07", "name": "Christmas"},
        ],
    }

    assert reports(database, "holidays", "remove", "2026-12-31") == ["holiday 2026-12-31 removed"]
    assert reports(database, "hours", "show") == [*WEEK_SHOWN, "holiday    2027-01-07 Christmas"]
    assert reports(database, "holidays", "remove", "2027-01-07") == ["holiday 2027-01-07 removed"]
    assert client.get("/reports/business-hours").json()["holidays"] == []
    assert client.get("/reports/business-hours").json()["week"] == WEEK_JSON


@pytest.mark.parametrize(
    ("args", "status", "said"),
    [
        (("remove", "2026-12-30"), 1, "2026-12-30 is not a holiday"),
        (("remove", "31.12.2026"), 2, "'31.12.2026' is not a day: write it as YYYY-MM-DD"),
        (("add", "2026-02-30"), 2, "'2026-02-30' is not a day"),
        (("add", "2026-12-30", "x" * 201), 2, "longer than 200 characters"),
    ],
)
def test_a_holiday_that_cannot_be_is_refused_and_nothing_changes(
    one_database: str, args: tuple[str, ...], status: int, said: str
) -> None:
    reports(one_database, "holidays", "add", "2026-12-31")
    recorded = changes_recorded(one_database)
    result = cdp(one_database, "reports", "holidays", *args)
    assert result.exit_code == status, result.output
    assert said in result.output
    assert reports(one_database, "holidays", "list") == ["2026-12-31"]
    assert changes_recorded(one_database) == recorded


def test_a_holiday_added_meanwhile_over_http_is_kept(postgres_url: str) -> None:
    """The command reads the holidays and writes them back in one transaction, which
    another writer's (a PUT's) waits for or waits on: neither loses the other's day."""
    empty(postgres_url)
    assert cdp(postgres_url, "reports", "holidays", "add", "2026-12-31").exit_code == 0
    engine = make_engine(postgres_url)
    other = engine.connect()
    transaction = other.begin()
    days = {date(2026, 12, 31): None, date(2027, 1, 7): "Christmas"}
    hours.set_hours(other, {}, days, actor="admin", timezone="Europe/Moscow")
    results = []
    command = threading.Thread(
        target=lambda: results.append(
            cdp(postgres_url, "reports", "holidays", "add", "2027-05-01", "May Day")
        )
    )
    command.start()
    time.sleep(0.5)
    assert command.is_alive()  # waiting for the other transaction
    transaction.commit()
    other.close()
    command.join(timeout=30)
    assert results[0].exit_code == 0, results[0].output
    with engine.connect() as connection:
        assert connection.execute(text("SELECT day, name FROM holidays ORDER BY day")).all() == [
            ("2026-12-31", None),
            ("2027-01-07", "Christmas"),
            ("2027-05-01", "May Day"),
        ]
    engine.dispose()


# -- reply targets ---------------------------------------------------------------------


def test_targets_set_shown_changed_and_removed(
    database: str,
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    assert reports(database, "targets", "show") == [
        "no reply targets: set a team's with cdp reports targets set TEAM_ID --first 5m"
    ]
    assert reports(database, "targets", "set", "12", "--first", "5m", "--next", "15m") == [
        "team 12: first 5m, next 15m"
    ]
    assert reports(database, "targets", "set", "7", "--next", "90") == [
        "team 7: first none, next 1m30s"
    ]
    assert client.get("/reports/targets").json() == [
        {"team_id": 7, "first_reply_seconds": None, "next_reply_seconds": 90.0},
        {"team_id": 12, "first_reply_seconds": 300.0, "next_reply_seconds": 900.0},
    ]
    # One target given: the other stays; none removes one.
    assert reports(database, "targets", "set", "12", "--next", "1h30m") == [
        "team 12: first 5m, next 1h30m"
    ]
    assert reports(database, "targets", "set", "12", "--first", "none") == [
        "team 12: first none, next 1h30m"
    ]
    assert reports(database, "targets", "show") == [
        "team 7: first none, next 1m30s",
        "team 12: first none, next 1h30m",
    ]
    assert reports(database, "targets", "remove", "12") == ["team 12: targets removed"]
    assert client.get("/reports/targets").json() == [
        {"team_id": 7, "first_reply_seconds": None, "next_reply_seconds": 90.0}
    ]
    result = cdp(database, "reports", "targets", "remove", "12")
    assert result.exit_code == 1
    assert "team 12 has no reply targets" in result.output


@pytest.mark.parametrize(
    ("given", "seconds"),
    [("90s", 90), ("5m", 300), ("1h30m", 5400), ("2h", 7200), ("300", 300), ("2.5", 2.5)],
)
def test_durations_are_set_as_seconds(
    database: str,
    client: TestClient,  # type: ignore[type-arg]
    given: str,
    seconds: float,
) -> None:
    reports(database, "targets", "set", "3", "--first", given)
    assert client.get("/reports/targets").json()[0]["first_reply_seconds"] == seconds


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        ("90s", 90),
        ("5m", 300),
        ("1h30m", 5400),
        ("2h", 7200),
        ("1h0m5s", 3605),
        ("1m30.5s", 90.5),
        ("300", 300),
        ("1.5", 1.5),
        (" 2H ", 7200),
    ],
)
def test_a_duration_reads_as_seconds(given: str, seconds: float) -> None:
    assert duration_seconds(given) == seconds


@pytest.mark.parametrize("given", ["", "5x", "1h30", "m", "-5m", "5 m", "1d", "30s5m", "1e3"])
def test_what_is_not_a_duration_reads_as_none(given: str) -> None:
    assert duration_seconds(given) is None


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, "none"), (90, "1m30s"), (300, "5m"), (5400, "1h30m"), (7200, "2h"), (1.5, "1.5s")],
)
def test_a_duration_shows_as_it_is_written(seconds: float | None, shown: str) -> None:
    assert duration_text(seconds) == shown


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--first", "5x"), "'5x' is not a duration: write 90s, 5m, 1h30m, 2h or seconds"),
        (("--next", "0"), "'0': a target is 1 ms at least"),
        (("--next", "0.0004"), "'0.0004': a target is 1 ms at least"),
        (("--first", "400000000"), "a target is at least 1 s and at most a year"),
        ((), "give --first, --next or both"),
    ],
)
def test_a_target_that_cannot_be_is_refused_and_nothing_changes(
    one_database: str, args: tuple[str, ...], said: str
) -> None:
    reports(one_database, "targets", "set", "12", "--first", "5m")
    recorded = changes_recorded(one_database)
    result = cdp(one_database, "reports", "targets", "set", "12", *args)
    assert result.exit_code == 2, result.output
    assert said in result.output
    assert reports(one_database, "targets", "show") == ["team 12: first 5m, next none"]
    assert changes_recorded(one_database) == recorded


# -- who changed what ------------------------------------------------------------------


def test_each_change_is_recorded_with_the_account_that_made_it(
    database: str,
    client: TestClient,  # type: ignore[type-arg]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(getpass, "getuser", lambda: "alice")
    assert reports(database, "changes") == [
        "no changes: working hours, holidays and targets were never set"
    ]
    reports(database, "hours", "set", "mon=09:00-18:00")
    reports(database, "holidays", "add", "2026-12-31", "New Year's Eve")
    reports(database, "targets", "set", "12", "--first", "5m")
    reports(database, "targets", "set", "12", "--next", "15m")
    reports(database, "targets", "remove", "12")

    answer = client.get("/reports/changes").json()
    assert [(change["actor"], change["setting"]) for change in answer] == [
        ("cli:alice", "targets"),
        ("cli:alice", "targets"),
        ("cli:alice", "targets"),
        ("cli:alice", "holidays"),
        ("cli:alice", "working_hours"),
    ]
    assert answer[-1]["after"]["monday"] == ["09:00-18:00"]
    assert answer[0]["after"] == {
        "team_id": 12,
        "first_reply_seconds": None,
        "next_reply_seconds": None,
    }

    lines = reports(database, "changes")
    assert [line.split("  ", 2)[1:] for line in lines] == [
        ["cli:alice", "targets: team 12 removed (were first 5m, next 15m)"],
        ["cli:alice", "targets: team 12 next none -> 15m"],
        ["cli:alice", "targets: team 12 set: first 5m, next none"],
        ["cli:alice", "holidays: 2026-12-31 New Year's Eve added"],
        ["cli:alice", "working hours: monday closed -> 09:00-18:00"],
    ]
    assert [line.split("  ")[0] for line in lines] == [
        change["at"].replace("+00:00", "Z") for change in answer
    ]
    assert len(reports(database, "changes", "--limit", "2")) == 2


@pytest.mark.parametrize("failure", [OSError, KeyError])
def test_an_account_without_a_name_is_recorded_as_unknown(
    database: str, monkeypatch: pytest.MonkeyPatch, failure: type[Exception]
) -> None:
    def no_name() -> str:
        raise failure("no name")

    monkeypatch.setattr(getpass, "getuser", no_name)
    reports(database, "targets", "set", "1", "--first", "1m")
    assert reports(database, "changes")[0].split("  ")[1] == "cli:unknown"


def test_a_sqlite_file_that_is_not_there_is_refused_not_made(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.db"
    for args in (("hours", "show"), ("holidays", "add", "2026-12-31"), ("changes",)):
        result = cdp(f"sqlite:///{path}", "reports", *args)
        assert result.exit_code == 1
        assert f"no database at {path}" in result.output
    assert not path.exists()
