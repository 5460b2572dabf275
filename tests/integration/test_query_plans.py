"""Every page the API lists is read in index order, never sorted whole (SQLite's plans)."""

import re
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event

from cdp import paging, upgrades
from cdp.bench.traffic import Traffic, lines
from cdp.conversations import queries
from cdp.db import make_engine
from cdp.log import ingest
from cdp.log import queries as log_queries
from cdp.privacy.keystore import MAIN
from cdp.profiles import queries as profiles_queries
from cdp.projections import registry
from cdp.settings import Settings
from tests.factories import checked

pytestmark = pytest.mark.slow

LISTING = paging.Listing(limit=10)
CLOCK = paging.Clock(86_400_000, 1_800_000_000_000)
LISTS: dict[str, Callable[[Connection, str], Any]] = {
    "timeline": lambda c, chat: queries.chat_timeline(c, chat, LISTING, keystore=MAIN),
    "sessions": lambda c, chat: queries.chat_sessions(c, chat, CLOCK, LISTING),
    "chat handoffs": lambda c, chat: queries.chat_handoffs(c, chat, LISTING),
    "handoff audit": lambda c, _: queries.team_handoffs(c, LISTING),
    "handoff audit of a team": lambda c, _: queries.team_handoffs(c, LISTING, 12),
    "team chats": lambda c, _: queries.team_chats(c, 12, None, CLOCK, LISTING, keystore=MAIN),
    "team chats, open": lambda c, _: queries.team_chats(
        c, 12, "open", CLOCK, LISTING, keystore=MAIN
    ),
    "log of a chat and a type": lambda c, chat: log_queries.events(
        c, MAIN, after=0, limit=10, chat_uuid=chat, event_type="operator_replied"
    ),
    "log of a source": lambda c, _: log_queries.events(
        c, MAIN, after=0, limit=10, source="default"
    ),
}


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, str]]:
    """A log of realistic traffic, and its busiest chat."""
    path = Path(tmp_path_factory.mktemp("plans")) / "cdp.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrades.upgrade(engine)
    bodies = [checked(line) for line in lines(Traffic(events=3000, seed=5))]
    ingest.record(engine, bodies, registry.projectors(Settings()), keystore=MAIN)
    busiest = Counter(incoming.webhook.chat_uuid for incoming in bodies).most_common(1)[0][0]
    assert busiest is not None
    yield engine, busiest
    engine.dispose()


def plans(logged: tuple[Engine, str], name: str) -> list[str]:
    """The plan of every statement that answering the list `name` runs."""
    return plans_of(logged, LISTS[name])


def plans_of(logged: tuple[Engine, str], ask: Callable[[Connection, str], Any]) -> list[str]:
    """The plan of every statement that `ask` runs (given the busiest chat)."""
    engine, chat = logged
    statements: list[tuple[str, Any]] = []

    def seen(_c: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    with engine.connect() as connection:
        event.listen(engine, "before_cursor_execute", seen)
        try:
            ask(connection, chat)
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        return [
            " | ".join(row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {s}", p))
            for s, p in statements
        ]


@pytest.mark.parametrize("name", LISTS)
def test_a_page_is_read_in_index_order_not_sorted(logged: tuple[Engine, str], name: str) -> None:
    found = plans(logged, name)
    assert found
    for plan in found:
        # Merged queries: each side is a page read by index; ordering two pages is allowed.
        plan = re.sub(r"SCAN anon_\d+ \| USE TEMP B-TREE FOR ORDER BY", "", plan)
        assert "TEMP B-TREE" not in plan, plan
        assert "SCAN" not in plan.replace("SCAN handoffs USING INDEX ix_handoffs_at", ""), plan


def test_the_log_of_a_chat_and_a_type_uses_the_index_of_both(
    logged: tuple[Engine, str],
) -> None:
    assert any(
        "ix_events_chat_uuid_event_type" in plan
        for plan in plans(logged, "log of a chat and a type")
    )


def test_a_name_search_reads_one_range_of_the_name_index(logged: tuple[Engine, str]) -> None:
    found = plans_of(
        logged, lambda c, _: profiles_queries.profiles_by_name(c, "Анн", LISTING, keystore=MAIN)
    )
    searched = "USING COVERING INDEX ix_chats_name_digest (name_digest=? AND profile_uuid>?)"
    assert any(searched in plan for plan in found), found
