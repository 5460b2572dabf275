"""A page of a profile, of its chats and of the profiles owning a phone reads no more rows
however many chats the profile owns, on both databases: from the plans each database
gives (SQLite: no table or index read whole, nothing sorted; PostgreSQL: no node reads as
many rows as the profile has chats, each loop counted)."""

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event

from cdp import db, paging
from cdp.conversations.tables import chats
from cdp.log import ingest
from cdp.privacy.keystore import MAIN
from cdp.profiles import queries
from cdp.profiles.tables import profile_chats
from cdp.projections import registry
from cdp.settings import Settings
from tests.factories import PAST, checked, webhook

CHATS = 300  # of the big profile; a page of 5, and NAMED_BY read for its phones and names
OTHERS = 1500  # profiles of one chat: the planner's estimates as in a store in use
PHONE = "+79990000001"


@pytest.fixture
def big(database: str) -> Iterator[Engine]:
    """A store with a profile of CHATS chats of one phone, and OTHERS of one chat each
    (the first three of the same phone)."""
    engine = db.make_engine(database)
    bodies = [
        webhook("message_created", chat=f"big-{n:03}", profile="big", at=PAST + n, phone=PHONE)
        for n in range(CHATS)
    ]
    bodies += [
        webhook(
            "message_created",
            chat=f"small-{n}",
            profile=f"small-{n}",
            at=PAST,
            phone=PHONE if n < 3 else f"+7912{n:07}",
        )
        for n in range(OTHERS)
    ]
    ingest.record(
        engine,
        [checked(json.dumps(body)) for body in bodies],
        registry.projectors(Settings()),
        keystore=MAIN,
    )
    db.analyze(engine, [chats, profile_chats])
    yield engine
    engine.dispose()


def reads(connection: Connection) -> None:
    """What the API reads for a page of the big profile, its next page, and a phone search."""
    found = queries.profile(connection, "big", 5, keystore=MAIN)
    assert found is not None
    assert found.chats_next is not None
    page = queries.owned_chats(
        connection, "big", paging.Listing(found.chats_next, 5), keystore=MAIN
    )
    assert page is not None
    assert len(page.items) == 5
    owners = queries.profiles_by_phone(connection, PHONE, paging.Listing(limit=2), keystore=MAIN)
    assert [profile.uuid for profile in owners.items] == ["big", "small-0"]


def statements(engine: Engine, ask: Callable[[Connection], None]) -> list[tuple[str, Any]]:
    """Every statement `ask` runs, with its parameters as the driver took them."""
    seen: list[tuple[str, Any]] = []

    def record(_c: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    with engine.connect() as connection:
        event.listen(engine, "before_cursor_execute", record)
        try:
            ask(connection)
        finally:
            event.remove(engine, "before_cursor_execute", record)
    return seen


@pytest.mark.slow
def test_a_page_of_a_big_profile_reads_a_page_of_rows(big: Engine) -> None:
    ran = statements(big, reads)
    assert len(ran) >= 5
    with big.connect() as connection:
        for statement, parameters in ran:
            if db.dialect(connection) == "sqlite":
                plan = " | ".join(
                    row[-1]
                    for row in connection.exec_driver_sql(
                        f"EXPLAIN QUERY PLAN {statement}", parameters
                    )
                )
                assert "TEMP B-TREE" not in plan, plan
                for table in ("chats", "profile_chats"):
                    assert f"SCAN {table}" not in plan, plan
            else:
                explained = connection.exec_driver_sql(
                    f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters
                ).scalar_one()
                for node in nodes(explained[0]["Plan"]):
                    assert node["Node Type"] != "Seq Scan", (statement, node)
                    assert "Sort" not in node["Node Type"], (statement, node)
                    rows = node["Actual Rows"] * node["Actual Loops"]
                    assert rows < CHATS, (statement, node["Node Type"], rows)


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)
