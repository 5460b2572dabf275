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
)


def test_a_tiny_bench_prints_and_writes_every_figure_beside_its_baseline(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "bench.json"
    made = _databases_made(monkeypatch)
    # All but HTTP ingest with several workers, which starts three servers of two and four
    # processes (tests/api/test_workers.py serves with workers).
    groups = [f"--only={group}" for group in GROUPS if group != "workers"]
    result = CliRunner().invoke(
        main, ["bench", "--events", "500", "--database", server, "--json", str(out), *groups]
    )
    assert result.exit_code == 0, result.output
    assert bool(made) == server.startswith("postgresql")
    assert _benches(server) & set(made) == set()  # every database it made, dropped
    figures = {figure["name"]: figure for figure in json.loads(out.read_text())["figures"]}
    expected = {
        "cdp import",
        "cdp import: peak memory",
        "cdp rebuild",
        "cdp rebuild: peak memory",
        *(
            f"one webhook into a session of {size} events: {pattern}"
            for size in (1, 500)
            for pattern in SESSION_PATTERNS
        ),
        "HTTP ingest of other chats while a session of 500 events is written",
        "HTTP ingest",
        "HTTP ingest: p50",
        "HTTP ingest: p99",
        "webhook wait during a rebuild: longest",
        "webhook wait during a rebuild: p99",
        "webhooks during a rebuild",
        "erasure of a profile of 500 chats",
        "webhook wait during an erasure: longest",
        "webhook wait during an erasure: p99",
        "webhooks during an erasure",
        # What a commit that survives a power cut costs: SQLite's setting alone.
        *(["HTTP ingest, SQLite synchronous=FULL"] if server.startswith("sqlite") else []),
        *(
            f"{figure} with {count} live streams"
            for count in (10, 100)
            for figure in ("HTTP ingest", "query p50 during HTTP ingest")
        ),
        *(f"query {name} at 500 events: {cut}" for name in QUERIES for cut in ("p50", "p99")),
        *(f"console {name} at 500 events: {cut}" for name in PAGES for cut in ("p50", "p99")),
        "a page of a 500-chat profile: p50",
        "a page of a 500-chat profile: p99",
        "a page of a 500-chat profile: p50, as full a page",
        "a page of a 500-chat profile: peak memory, 40 at once",
    }
    assert set(figures) == expected
    for name, figure in figures.items():
        assert figure["value"] > 0, name
        if figure["baseline"] is not None:
            assert figure["ratio"] == pytest.approx(figure["value"] / figure["baseline"]), name
            assert name in result.output
    assert figures["cdp import"]["baseline"] is not None
    assert figures["HTTP ingest"]["baseline"] is not None


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
