"""A tiny `cdp bench` run on each database, so the benchmark cannot rot. No speed is asserted."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, make_url, text

from cdp.bench import GROUPS, run
from cdp.bench.run import SESSION_PATTERNS, Plan
from cdp.cli import main

QUERIES = (
    "profile",
    "phone search",
    "name search",
    "chat",
    "sessions",
    "timeline page",
    "handoff audit page",
    "team chats page",
    "log page",
    "team stats",
    "operator stats",
)
PAGES = (
    "search by phone",
    "search by name",
    "profile",
    "chat",
    "team",
    "handoff audit",
    "log",
    "log event",
    "operations",
    "report: a team's first response in working time, vs before",
    "report: heat map",
    "report: a team's leaderboard",
    "report: a team's breaches",
    "report: who is waiting now",
)


REPORTS = (
    "customer messages by day",
    "customer messages by hour",
    "first response of a team, working time, vs before",
    "first response by day",
    "reply time by day",
    "session duration by day",
    "customer messages over a year by month",
    "first response over a year by month",
    "targets met by day",
    "breaches of a team, a page",
    "heat map",
    "leaderboard of a team",
    "who is waiting now",
)


def _expected(group: str, server: str) -> set[str]:
    """The figures a run of 500 events measures in `group`."""
    waits = ("longest", "p99")
    return {
        "import": {
            "cdp import",
            "cdp import: peak memory",
            "cdp rebuild",
            "cdp rebuild: peak memory",
        },
        "queries": {
            f"query {name} at 500 events: {cut}" for name in QUERIES for cut in ("p50", "p99")
        },
        "reports": {
            f"report {name} at 500 events: {cut}" for name in REPORTS for cut in ("p50", "p99")
        },
        "console": {
            f"console {name} at 500 events: {cut}" for name in PAGES for cut in ("p50", "p99")
        },
        "webhook": {
            *(
                f"one webhook into a session of {size} events: {pattern}"
                for size in (1, 500)
                for pattern in SESSION_PATTERNS
            ),
            "HTTP ingest of other chats while a session of 500 events is written",
        },
        "http": {
            "HTTP ingest",
            "HTTP ingest: p50",
            "HTTP ingest: p99",
            # What a commit that survives a power cut costs: SQLite's setting alone.
            *(["HTTP ingest, SQLite synchronous=FULL"] if server.startswith("sqlite") else []),
        },
        "rebuild": {
            *(f"webhook wait during a rebuild: {cut}" for cut in waits),
            "webhooks during a rebuild",
        },
        "profiles": {
            "a page of a 500-chat profile: p50",
            "a page of a 500-chat profile: p99",
            "a page of a 500-chat profile: p50, as full a page",
            "a page of a 500-chat profile: peak memory, 40 at once",
        },
        "maintenance": {
            "erasure of a profile of 500 chats",
            *(f"webhook wait during an erasure: {cut}" for cut in waits),
            "webhooks during an erasure",
        },
        "streams": {
            f"{figure} with {count} live streams"
            for count in (10, 100)
            for figure in ("HTTP ingest", "query p50 during HTTP ingest")
        },
    }[group]


# HTTP ingest with several workers is left out: it starts three servers of two and four
# processes (tests/api/test_workers.py serves with workers).
@pytest.mark.slow
@pytest.mark.parametrize("group", [group for group in GROUPS if group != "workers"])
def test_a_tiny_bench_prints_and_writes_every_figure_of_a_group_beside_its_baseline(
    server: str, group: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "bench.json"
    made = _databases_made(monkeypatch)
    result = CliRunner().invoke(
        main,
        ["bench", "--events", "500", "--database", server, "--json", str(out), f"--only={group}"],
    )
    assert result.exit_code == 0, result.output
    assert bool(made) == server.startswith("postgresql")
    assert _benches(server) & set(made) == set()  # every database it made, dropped
    figures = {figure["name"]: figure for figure in json.loads(out.read_text())["figures"]}
    assert set(figures) == _expected(group, server)
    for name, figure in figures.items():
        assert figure["value"] > 0, name
        if figure["baseline"] is not None:
            assert figure["ratio"] == pytest.approx(figure["value"] / figure["baseline"]), name
            assert name in result.output
    heading = next(line for line in result.output.splitlines() if line.startswith("figure "))
    assert heading.split()[-4:] == ["baseline", "ratio", "unit,", "baseline"]
    unit_column = heading.index("unit,")
    for name, figure in figures.items():  # the last column: the unit, and what it is beside
        row = next(line for line in result.output.splitlines() if line.startswith(name + " "))
        assert row[unit_column:].startswith(figure["unit"]), row
    # What it makes before measuring, said on stderr as it goes: the store of 500 events.
    making = "generating 500 events" if group == "import" else "loading 500 events"
    assert f"{making}\n" in result.output
    assert f"{making}: done in " in result.output
    measured = {"import": "cdp import", "http": "HTTP ingest"}.get(group)
    if measured:  # the figures a reader looks at first are never without their baseline
        assert figures[measured]["baseline"] is not None


def _databases_made(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the databases this process's `cdp bench` creates (other tests running at
    the same time may make their own)."""
    made: list[str] = []
    create = run._on_server

    def spy(url: str, statement: str) -> None:
        if statement.startswith("CREATE DATABASE"):
            made.append(statement.split('"')[1])
        create(url, statement)

    monkeypatch.setattr(run, "_on_server", spy)
    return made


def _benches(server: str) -> set[str]:
    """The databases `cdp bench` makes on a PostgreSQL server (none on SQLite's)."""
    if not server.startswith("postgresql"):
        return set()
    admin = create_engine(make_url(server).set(database="postgres"))
    with admin.connect() as connection:
        found = connection.scalars(
            text("SELECT datname FROM pg_database WHERE datname LIKE 'cdp_bench_%'")
        )
        names = set(found)
    admin.dispose()
    return names


def test_only_measures_the_groups_it_names() -> None:
    plan = Plan(database="sqlite:///", only=frozenset({"console", "queries"}))
    assert plan.measures("console")
    assert plan.measures("import", "queries")
    assert not plan.measures("import")
    assert not plan.measures("workers")
    assert Plan(database="sqlite:///").measures("import")
