"""Projections built anew beside the live ones and swapped in: the same answers as a
rebuild in place, what was logged or erased meanwhile included, and the schema the
models say once swapped."""

import json
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import OperationalError

from cdp import db
from cdp.conversations.tables import chats, timeline
from cdp.log import ingest
from cdp.privacy import erasure
from cdp.privacy.keystore import MAIN
from cdp.projections import builds, registry, runner
from cdp.projections.runner import Projector
from cdp.settings import Settings
from tests.factories import PAST, checked, handoff, opened, reply, webhook
from tests.integration.test_migrations import drift
from tests.integration.test_projections import IDLE, WINDOW, rules, snapshot

REGISTRY = registry.projectors(rules())


def log(engine: Engine, *bodies: dict[str, Any]) -> None:
    incoming = [checked(json.dumps(body, ensure_ascii=False)) for body in bodies]
    ingest.record(engine, incoming, REGISTRY, keystore=MAIN)


def history(chat: str, profile: str, at: int = PAST) -> list[dict[str, Any]]:
    first = opened(chat, at=at, team=1, profile=profile, name="Анна", phone="+79991234567")
    return [*first, reply(chat, at=at + 1000), handoff(chat, at=at + 2000, team=2)]


def rebuilt_in_place(engine: Engine) -> dict[str, Any]:
    with db.writing(engine) as connection:
        runner.rebuild(connection, REGISTRY, MAIN)
    return snapshot(engine)


def test_a_build_swapped_in_answers_as_a_rebuild_in_place(engine: Engine) -> None:
    for n, chat in enumerate(["c1", "c2"]):
        log(engine, *history(chat, f"p{n + 1}", at=PAST + n * 10_000))
    expected = rebuilt_in_place(engine)
    assert builds.build(engine, REGISTRY, MAIN) > 0
    assert snapshot(engine) == expected
    assert builds.build(engine, REGISTRY, MAIN) > 0  # again, over the swapped tables
    assert snapshot(engine) == expected
    assert drift(engine) == []  # two builds: on SQLite, the indexes' names are back too
    left = [name for name in inspect(engine).get_table_names() if "__" in name]
    assert left == []  # no shadow, nor (SQLite) a live table put aside


def test_a_build_makes_partial_indexes_partial_as_the_migrations_do(engine: Engine) -> None:
    partial = {
        index.name: table.name
        for projection in REGISTRY
        for table in projection.tables
        for index in table.indexes
        if index.dialect_kwargs.get(f"{engine.dialect.name}_where") is not None
    }
    assert "ix_report_replies_unanswered" in partial  # there are some to check

    def conditions() -> dict[str, str]:
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                query = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
            else:
                query = (
                    "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
                )
            return {
                name.removesuffix(builds.NEXT): sql.upper().partition(" WHERE ")[2]
                for name, sql in connection.execute(text(query))
            }

    migrated = conditions()
    assert all(migrated[name] for name in partial), migrated
    log(engine, *history("c1", "p1"))
    builds.build(engine, REGISTRY, MAIN)
    built = conditions()
    assert {name: built[name] for name in partial} == {name: migrated[name] for name in partial}


def test_a_build_stores_columns_as_the_migrations_do(engine: Engine) -> None:
    """On PostgreSQL, the reports' records are stored apart, uncompressed (see
    cdp.reports.tables.ReportTimesRow); SQLite has no such setting."""
    stored = {
        (table.name, column.name): column.info["postgresql_storage"]
        for projection in REGISTRY
        for table in projection.tables
        for column in table.columns
        if "postgresql_storage" in column.info
    }
    assert stored == {("report_times", "records"): "EXTERNAL"}
    if engine.dialect.name != "postgresql":
        return
    query = text(
        "SELECT attstorage FROM pg_attribute "
        "WHERE attrelid = CAST(:table AS regclass) AND attname = :column"
    )

    def storage() -> list[str]:
        with engine.connect() as connection:
            return [
                connection.scalar(query, {"table": table, "column": column})
                for table, column in stored
            ]

    assert storage() == ["e"]  # as migrated
    log(engine, *history("c1", "p1"))
    builds.build(engine, REGISTRY, MAIN)
    assert storage() == ["e"]  # and as built anew, swapped in


def test_after_one_build_only_sqlite_s_index_names_differ_from_the_models(engine: Engine) -> None:
    log(engine, *history("c1", "p1"))
    builds.build(engine, REGISTRY, MAIN)
    changes = drift(engine)
    if engine.dialect.name == "postgresql":
        assert changes == []
    else:
        kinds = {(change[0], change[1].name.removesuffix(builds.NEXT)) for change in changes}
        named = {index.name for t in (chats, timeline) for index in t.indexes}
        assert {kind for kind, _ in kinds} == {"add_index", "remove_index"}
        assert named <= {name for _, name in kinds}


def test_what_is_logged_or_erased_during_a_build_is_in_what_it_swaps_in(engine: Engine) -> None:
    log(engine, *history("c1", "p1"), *history("c2", "p2", at=PAST + 10_000))
    seen: list[dict[str, Any]] = []

    def meanwhile(done: int, total: int) -> None:
        if seen:
            return
        seen.append(snapshot(engine))  # the live projection, whole, while the shadow fills
        log(engine, webhook("message_created", chat="c1", at=PAST + 5000, message="late"))
        log(engine, *history("c3", "p3", at=PAST + 20_000))
        erasure.erase(engine, MAIN, REGISTRY, "p2")

    builds.build(engine, REGISTRY, MAIN, report=meanwhile)
    assert seen[0]["c1"]["chat"]["name"] == "Анна"
    answers = snapshot(engine)
    assert answers == rebuilt_in_place(engine)
    assert answers["c2"]["chat"]["name"] is None  # erased during the build: not in the shadow
    assert '"late"' in json.dumps(answers["c1"]["timeline"])  # logged during the build


class Crash(Exception):
    """The process stops here."""


def test_chats_erased_during_a_build_are_folded_again_in_the_shadows_before_the_swap(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An erasure begun before the build (and stopped midway) and finished during it: the
    chats it reaches while the shadows fill are folded again in them before the swap, a
    step at a time outside the append lock; the swap has none left to fold."""
    monkeypatch.setattr(erasure, "STEP_CHATS", 1)
    log(engine, *history("c1", "p1"), *history("c2", "p1", at=PAST + 10_000))

    def crash() -> None:
        raise Crash

    with pytest.raises(Crash):  # c1 erased, c2 still pending
        erasure.erase(engine, MAIN, REGISTRY, "p1", between=crash)
    folded: list[list[str]] = []
    refold = builds.refold
    monkeypatch.setattr(
        builds,
        "refold",
        lambda *args, **kwargs: folded.append(list(args[3])) or refold(*args, **kwargs),
    )

    def meanwhile(done: int, total: int) -> None:
        if not folded and done == total:
            erasure.reconcile(engine, MAIN, REGISTRY)  # finishes it: c2 erased

    builds.build(engine, REGISTRY, MAIN, report=meanwhile)

    answers = snapshot(engine)
    assert answers == rebuilt_in_place(engine)
    assert [answers[chat]["chat"]["name"] for chat in ("c1", "c2")] == [None, None]
    assert folded[-1] == []  # in the swap, under the append lock
    assert ["c2"] in folded[:-1]


def test_many_events_logged_during_a_build_are_caught_up_before_the_lock(
    engine: Engine,
) -> None:
    log(engine, *history("c1", "p1"))
    count = builds.SWAP_WITHIN + 50

    def posted() -> None:
        bodies = [
            webhook("message_created", chat=f"m{n % 7}", at=PAST + n, message=f"m{n}")
            for n in range(count)
        ]
        log(engine, *bodies)

    calls: list[tuple[int, int]] = []

    def meanwhile(done: int, total: int) -> None:
        if not calls:
            posted()
        calls.append((done, total))

    head = builds.build(engine, REGISTRY, MAIN, report=meanwhile)
    assert head == len(history("c1", "p1")) + count
    assert any(total == head for _, total in calls[1:-1])  # a catch-up before the swap
    assert snapshot(engine) == rebuilt_in_place(engine)


@pytest.mark.slow
def test_a_reader_holding_a_live_table_delays_the_swap_not_the_webhooks(engine: Engine) -> None:
    """PostgreSQL: the swap waits for a table lock a little, lets go of the append lock, and
    tries again; SQLite's readers keep their snapshot and hold nothing up."""
    log(engine, *history("c1", "p1"))
    reader = engine.connect()
    reading = reader.begin()
    reader.execute(chats.select()).all()  # a long report, say: it holds chats until it ends
    logged: list[int] = []

    def meanwhile(done: int, total: int) -> None:
        if done == total and not logged:  # the build is at the swap
            log(engine, webhook("message_created", chat="c1", at=PAST + 9000, message="x"))
            logged.append(done)

    def end_the_report() -> None:
        time.sleep(3)
        reading.commit()
        reader.close()

    ending = threading.Thread(target=end_the_report)
    ending.start()
    try:
        head = builds.build(engine, REGISTRY, MAIN, report=meanwhile)
    finally:
        ending.join()
    assert logged
    assert head == len(history("c1", "p1")) + 1
    assert snapshot(engine) == rebuilt_in_place(engine)


def test_a_projection_is_built_with_those_it_reads_and_those_that_read_it_if_they_need_it(
    engine: Engine,
) -> None:
    log(engine, *history("c1", "p1"))
    chats_projection, profiles, teams = (
        by_name(REGISTRY, n) for n in ("chats", "profiles", "teams")
    )
    with engine.connect() as connection:  # every one live, none reading another's tables
        assert builds.with_dependencies(connection, REGISTRY, [teams]) == [teams]
        assert builds.with_dependencies(connection, REGISTRY, [chats_projection]) == [
            chats_projection
        ]
    # A projection that reads chats' tables (as teams once did) is built with chats' shadows
    # whenever it is built; and with chats, only when it needs building too.
    other = registry.projectors(Settings(session_idle_timeout=IDLE * 2, session_open_window=WINDOW))
    chats_projection, profiles, teams = (by_name(other, n) for n in ("chats", "profiles", "teams"))
    other = [chats_projection, profiles, teams]
    teams.reads = (chats_projection.name,)
    with engine.connect() as connection:  # chats is stale: another idle timeout
        assert builds.with_dependencies(connection, other, [teams]) == [chats_projection, teams]
        assert builds.with_dependencies(connection, other, [chats_projection]) == [chats_projection]
        teams.version += 1
        assert builds.with_dependencies(connection, other, [chats_projection]) == [
            chats_projection,
            teams,
        ]
        assert builds.with_dependencies(connection, other, [profiles]) == [profiles]


def by_name(projectors: Sequence[Projector], name: str) -> Projector:
    (found,) = (projector for projector in projectors if projector.name == name)
    return found


def test_team_statistics_built_while_webhooks_come_count_each_once(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Turns are built with chats, while webhooks are logged and projected into the live
    tables, which are then ahead of the build: c2's handoff is in them before the build has
    filled c2 (a chat a batch)."""
    monkeypatch.setitem(builds.BUILD_BATCH, db.dialect(engine), 1)
    for n, chat in enumerate(["c1", "c2"]):
        log(engine, *history(chat, f"p{n + 1}", at=PAST + n * 10_000))
    with engine.connect() as connection:
        chosen = builds.with_dependencies(connection, REGISTRY, [REGISTRY[0], REGISTRY[-1]])
    later, logged = PAST + 3 * 10_000, []

    def meanwhile(done: int, total: int) -> None:
        if not logged:
            logged.append(done)
            log(engine, handoff("c2", at=later, team=3), reply("c2", at=later + 1000))
            log(engine, *history("c3", "p3", at=later + 5000))

    builds.build(engine, chosen, MAIN, report=meanwhile)
    answers = snapshot(engine)
    assert answers == rebuilt_in_place(engine)
    assert [stats["team"]["id"] for stats in answers["team stats"]] == [1, 2, 3]


class _DriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize("sqlstate", ["55P03", "40P01"])
def test_a_swap_that_lost_a_lock_or_a_deadlock_is_tried_again(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, sqlstate: str
) -> None:
    """A swap waiting too long for a lock, or ended as a deadlock's victim (a read held one
    of its tables and asked for another it held), is tried again, not the build failed."""
    log(engine, *history("c1", "p1"))
    expected = rebuilt_in_place(engine)
    real, tries = builds.swap, []

    def swap_once_refused(connection: Any, tables: Any) -> None:
        tries.append(1)
        if len(tries) == 1:
            raise OperationalError("ALTER TABLE ...", None, _DriverError(sqlstate))
        real(connection, tables)

    monkeypatch.setattr(builds, "swap", swap_once_refused)
    monkeypatch.setattr(builds.time, "sleep", lambda _: None)
    assert builds.build(engine, REGISTRY, MAIN) > 0
    assert len(tries) == 2
    assert snapshot(engine) == expected


def test_a_swap_that_failed_otherwise_fails_the_build(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    log(engine, *history("c1", "p1"))

    def swap_refused(connection: Any, tables: Any) -> None:
        raise OperationalError("ALTER TABLE ...", None, _DriverError("57014"))

    monkeypatch.setattr(builds, "swap", swap_refused)
    with pytest.raises(OperationalError):
        builds.build(engine, REGISTRY, MAIN)
