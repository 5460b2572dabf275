"""No SQL statement, on either database, changes or removes an event once it is logged."""

import json
import zlib
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from cdp import upgrades
from cdp.log import ingest
from cdp.privacy.keystore import MAIN
from cdp.projections import registry
from cdp.settings import Settings
from tests.factories import checked, webhook

COLUMNS = "event_type, occurred_at, received_at, chat_uuid, profile_uuid, dedupe_key, body, hash"
HASH = "'" + "0" * 64 + "'"  # a forged row's, well formed: only the guards may refuse it
# A forged event: at the first event's position, or under its dedupe_key. Each statement
# forges bytes of its own, so that one overwrite cannot hide the next.
AT_ITS_POSITION = (
    f"(position, {COLUMNS})"
    f" VALUES (:position, 'forged', 0, 0, NULL, NULL, :forged_key, :forged, {HASH})"
)
UNDER_ITS_KEY = f"({COLUMNS}) VALUES ('forged', 0, 0, NULL, NULL, :dedupe_key, :forged, {HASH})"

REFUSED_ON_BOTH = [
    "UPDATE events SET body = :forged WHERE position = :position",
    "DELETE FROM events WHERE position = :position",
    "DELETE FROM events",
    f"INSERT INTO events {AT_ITS_POSITION} ON CONFLICT (position) DO UPDATE SET body = :forged",
    f"INSERT INTO events {UNDER_ITS_KEY} ON CONFLICT (dedupe_key) DO UPDATE SET body = :forged",
    f"INSERT INTO events {UNDER_ITS_KEY} ON CONFLICT (dedupe_key) DO UPDATE SET position = 99",
]
REFUSED_ON = {
    "sqlite": [
        f"REPLACE INTO events {AT_ITS_POSITION}",
        f"REPLACE INTO events {UNDER_ITS_KEY}",
        f"INSERT OR REPLACE INTO events {AT_ITS_POSITION}",
        f"INSERT OR REPLACE INTO events {UNDER_ITS_KEY}",
        f"INSERT OR IGNORE INTO events {AT_ITS_POSITION}",
        "UPDATE OR REPLACE events SET dedupe_key = :dedupe_key WHERE position = :other",
    ],
    "postgresql": [
        "TRUNCATE events",
        "TRUNCATE events RESTART IDENTITY CASCADE",
        "MERGE INTO events USING (SELECT :position AS p) AS forged ON position = forged.p"
        " WHEN MATCHED THEN UPDATE SET body = :forged",
        "MERGE INTO events USING (SELECT :position AS p) AS forged ON position = forged.p"
        " WHEN MATCHED THEN DELETE",
    ],
}
# SQLite's guard refuses any insert that meets a logged row; PostgreSQL skips the row.
DO_NOTHING = [
    f"INSERT INTO events {AT_ITS_POSITION} ON CONFLICT DO NOTHING",
    f"INSERT INTO events {AT_ITS_POSITION} ON CONFLICT (position) DO NOTHING",
    f"INSERT INTO events {UNDER_ITS_KEY} ON CONFLICT (dedupe_key) DO NOTHING",
]
ON_CONFLICT_DO_NOTHING = {"sqlite": "refused", "postgresql": "accepted"}
BELOW_POSITION_1 = (
    f"INSERT INTO events (position, {COLUMNS})"
    " VALUES (-1, 'forged', 0, 0, NULL, NULL, :forged_key, :forged, {HASH})"
)
# What 0001 leaves on the log, and so what a downgrade from 0002 must leave.
GUARDS_OF_0001 = {
    "sqlite": {"events_refuse_update", "events_refuse_delete"},
    "postgresql": {"events_refuse_change", "events_refuse_truncate"},
}


def append(engine: Engine, settings: Settings, *messages: str) -> None:
    """Log a message_created event for each message, as a webhook delivery would."""
    bodies = [webhook("message_created", message=message) for message in messages]
    ingest.record(
        engine,
        [checked(json.dumps(body)) for body in bodies],
        registry.projectors(settings),
        keystore=MAIN,
    )


def logged(engine: Engine) -> list[tuple[Any, ...]]:
    """Every column of every logged event, in position order."""
    with engine.connect() as connection:
        rows = connection.execute(text(f"SELECT position, {COLUMNS} FROM events ORDER BY position"))
        return [tuple(row) for row in rows]


def attempt(engine: Engine, statement: str, log: list[tuple[Any, ...]]) -> str:
    """'refused' when the log's guard refused the statement, else what the database did."""
    (position, *_, dedupe_key, _body, _hash), (other, *_) = log[:2]
    forged = f"forged {zlib.crc32(statement.encode()):08x}"
    parameters = {"position": position, "dedupe_key": dedupe_key, "other": other}
    parameters |= {"forged": forged, "forged_key": forged}  # text and varchar to PostgreSQL
    try:
        with engine.begin() as connection:
            connection.execute(text(statement), parameters)
    except DBAPIError as error:
        return "refused" if "append-only" in str(error.orig) else f"failed: {error.orig}"
    return "accepted"


def unchanged(engine: Engine, statement: str, log: list[tuple[Any, ...]]) -> tuple[str, str]:
    """What attempt() says, and whether the statement left the log as it found it."""
    before = logged(engine)
    outcome = attempt(engine, statement, log)
    return outcome, "log unchanged" if logged(engine) == before else "log changed"


@pytest.fixture
def log(engine: Engine, settings: Settings) -> list[tuple[Any, ...]]:
    """Two real events, logged: what the log must still read afterwards."""
    append(engine, settings, "first", "second")
    return logged(engine)


@pytest.mark.parametrize("statement", REFUSED_ON_BOTH)
def test_both_databases_refuse_a_statement_that_would_change_a_logged_event(
    engine: Engine, log: list[tuple[Any, ...]], statement: str
) -> None:
    assert attempt(engine, statement, log) == "refused"
    assert logged(engine) == log


def test_each_database_refuses_its_own_ways_to_change_a_logged_event(
    engine: Engine, log: list[tuple[Any, ...]]
) -> None:
    statements = REFUSED_ON[engine.dialect.name]
    outcomes = {statement: unchanged(engine, statement, log) for statement in statements}
    assert outcomes == dict.fromkeys(statements, ("refused", "log unchanged"))
    assert logged(engine) == log


@pytest.mark.parametrize("statement", DO_NOTHING)
def test_an_insert_that_does_nothing_on_conflict_leaves_the_log_as_it_was(
    engine: Engine, log: list[tuple[Any, ...]], statement: str
) -> None:
    assert attempt(engine, statement, log) == ON_CONFLICT_DO_NOTHING[engine.dialect.name]
    assert logged(engine) == log


def test_a_row_inserted_below_position_1_cannot_block_later_appends(
    engine: Engine, settings: Settings, log: list[tuple[Any, ...]]
) -> None:
    """SQLite's guard is shown -1 as the position of an append it has yet to number."""
    attempt(engine, BELOW_POSITION_1, log)  # refused on SQLite, a stray row on PostgreSQL
    append(engine, settings, "third")
    after = logged(engine)
    assert after[-1][0] > log[-1][0]
    assert [row for row in after if row in log] == log


def triggers(engine: Engine) -> set[str]:
    """The names of the triggers on the log."""
    query = {
        "sqlite": "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events'",
        "postgresql": "SELECT tgname FROM pg_trigger"
        " WHERE tgrelid = 'events'::regclass AND NOT tgisinternal",
    }[engine.dialect.name]
    with engine.connect() as connection:
        return set(connection.scalars(text(query)))


def test_downgrading_to_0001_and_upgrading_again_restores_every_guard(
    engine: Engine, log: list[tuple[Any, ...]]
) -> None:
    guarded = triggers(engine)
    upgrades.downgrade(engine, "0001")
    try:
        unguarded = triggers(engine)
    finally:
        upgrades.upgrade(engine)  # PostgreSQL's database is shared by the whole run
    assert unguarded == GUARDS_OF_0001[engine.dialect.name]
    assert triggers(engine) == guarded

    def unhashed(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Sealed again on the way up, under new keys, the rows chain to new hashes and
        their dedupe keys have new keyed halves (see cdp.privacy.personal.dedupe_key)."""
        return [(*row[:6], row[6][:32], *row[7:-1]) for row in rows]

    now = logged(engine)
    assert unhashed(now) == unhashed(log)
    statements = REFUSED_ON_BOTH + REFUSED_ON[engine.dialect.name]
    outcomes = {statement: unchanged(engine, statement, now) for statement in statements}
    assert outcomes == dict.fromkeys(statements, ("refused", "log unchanged"))
    assert unhashed(logged(engine)) == unhashed(log)
