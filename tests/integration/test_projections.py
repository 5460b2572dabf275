"""Projections depend only on the set of distinct events: not on delivery order, batching or
repeats, and a rebuild from the log gives exactly what was built live."""

import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import partial
from itertools import permutations
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, select

from cdp import db, paging
from cdp.conversations import projector, queries
from cdp.db import make_engine
from cdp.http.schemas import Page, RawJSON
from cdp.log import ingest, store
from cdp.privacy import erasure, personal
from cdp.privacy.keystore import MAIN
from cdp.profiles import queries as profiles_queries
from cdp.projections import registry, runner
from cdp.reports import hours
from cdp.reports import projector as reports_projector
from cdp.reports import queries as report_queries
from cdp.reports.calendar import Calendar
from cdp.reports.records import FLAG_BITS, KEY, unpacked, version_of
from cdp.settings import Settings
from cdp.teams import queries as teams_queries
from tests.conftest import empty
from tests.factories import PAST, checked, now_ms, webhook

CHATS, PROFILES, TEAMS = ["c1", "c2"], ["p1", "p2", None], [1, 2, "3"]
PHONES = [None, "+7 999 000-00-01", "8 (999) 000-00-01", "79990000002"]
# Short rules, so that a few minutes of events cross the idle timeout and the open window.
IDLE, WINDOW = timedelta(seconds=60), timedelta(seconds=5)
# Few moments, so that events often share a millisecond, around the window and the timeout.
MOMENTS = [0, 1000, 4000, 5000, 6000, 30_000, 64_000, 65_000, 130_000, 200_000]


@pytest.fixture(autouse=True)
def same_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every database here seals with the same key. Events of one chat and millisecond that
    differ only in personal data are ordered by the keyed half of their dedupe keys (see
    cdp.privacy.personal.dedupe_key): the keys are an input of the fold, like the events, and only
    the order of delivery may differ between the databases compared."""
    monkeypatch.setattr(personal, "new_key", lambda: bytes(personal.KEY_BYTES))


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    events = []
    for _ in range(draw(st.integers(1, 16))):
        event_type = draw(
            st.sampled_from(
                [
                    "session_updated",
                    "message_created",
                    "operator_replied",
                    "message_updated",
                    "chat_rated",
                ]
            )
        )
        body = webhook(
            event_type,
            chat=draw(st.sampled_from(CHATS)),
            at=PAST + draw(st.sampled_from(MOMENTS)) + draw(st.sampled_from([0, 0, 0, 1])),
            profile=draw(st.sampled_from(PROFILES)),
            team=draw(st.sampled_from(TEAMS))
            if event_type in ("session_updated", "operator_replied")
            else None,
            operator=draw(st.sampled_from(["anna", "boris"]))
            if event_type == "operator_replied"
            else None,
            message=draw(st.sampled_from(["a", "b", "c"]))
            if event_type != "session_updated"
            else None,
            phone=draw(st.sampled_from(PHONES)),
            name=draw(st.sampled_from([None, "Anna", "Анна"])),
        )
        events.append(body)
    return events


@pytest.fixture
def fresh(
    database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[], Engine]]:
    """Make an empty database of the fixture's kind, as often as an example needs one."""
    engines: list[Engine] = []

    def make() -> Engine:
        for engine in engines:
            engine.dispose()
        if database.startswith("sqlite"):
            path = tmp_path / f"{uuid.uuid4().hex}.db"
            shutil.copy(request.getfixturevalue("sqlite_template"), path)
            url = f"sqlite:///{path}"
        else:
            empty(database)
            url = database
        engines.append(make_engine(url))
        return engines[-1]

    yield make
    for engine in engines:
        engine.dispose()


def deliver(engine: Engine, bodies: list[dict[str, Any]], batch_sizes: list[int]) -> None:
    projectors = registry.projectors(rules())
    incoming = [checked(json.dumps(body, ensure_ascii=False)) for body in bodies]
    start = 0
    for size in batch_sizes:
        if start >= len(incoming):
            break
        ingest.record(engine, incoming[start : start + size], projectors, keystore=MAIN)
        start += size
    if start < len(incoming):
        ingest.record(engine, incoming[start:], projectors, keystore=MAIN)


def rules() -> Settings:
    return Settings(session_idle_timeout=IDLE, session_open_window=WINDOW)


def every(fetch: Callable[[paging.Listing], Page[Any] | None]) -> list[dict[str, Any]]:
    """Every item of a list, fetched two at a time: the cursors are part of the answer."""
    found, after = [], None
    while (page := fetch(paging.Listing(after=after, limit=2))) is not None:
        found += [item.model_dump() for item in page.items]
        if (after := page.next) is None:
            break
    return found


def snapshot(engine: Engine) -> dict[str, Any]:
    """Every query's answer, with log positions replaced by the event they name."""
    clock = paging.Clock(IDLE // timedelta(milliseconds=1), now_ms())
    with engine.connect() as connection:
        keys = {row.position: row.dedupe_key for row in store.read(connection)}
        answers = {
            "profiles": [
                p.model_dump()
                for p in profiles_queries.profiles(connection, ["p1", "p2"], keystore=MAIN)
            ],
            "profile chats": {
                profile: every(
                    partial(profiles_queries.owned_chats, connection, profile, keystore=MAIN)
                )
                for profile in ("p1", "p2")
            },
            "phones": every(
                partial(
                    profiles_queries.profiles_by_phone, connection, "+79990000001", keystore=MAIN
                )
            ),
            "names": {
                prefix: every(
                    partial(profiles_queries.profiles_by_name, connection, prefix, keystore=MAIN)
                )
                for prefix in ("ann", "анн", "an")
            },
            "teams": {
                team: every(
                    partial(queries.team_chats, connection, team, None, clock, keystore=MAIN)
                )
                for team in (1, 2, 3)
            },
            "audit": every(partial(queries.team_handoffs, connection)),
            "known teams": [team.model_dump() for team in teams_queries.known_teams(connection)],
            "team stats": [
                found.model_dump()
                for team in (1, 2, 3)
                if (found := teams_queries.team_stats(connection, team, teams_queries.Period()))
            ],
            "operator stats": [
                found.model_dump()
                for operator in ("anna", "boris")
                if (
                    found := teams_queries.operator_stats(
                        connection, operator, teams_queries.Period()
                    )
                )
            ],
        }
        answers["reports"] = reports(connection)
        for chat in CHATS:
            found = queries.chat(connection, chat, clock, keystore=MAIN)
            answers[chat] = {
                "chat": found.model_dump() if found else None,
                "sessions": every(partial(queries.chat_sessions, connection, chat, clock)),
                "handoffs": every(partial(queries.chat_handoffs, connection, chat)),
                "timeline": every(partial(queries.chat_timeline, connection, chat, keystore=MAIN)),
            }
    return json.loads(json.dumps(answers, default=_plain), object_hook=lambda d: _keyed(d, keys))


# The reports are asked as of one moment, amid the histories: some sessions open.
REPORTS_NOW = PAST + 150_000


def reports(connection: Connection) -> dict[str, Any]:
    """Every report's answer, for the store and each team and operator, with targets set
    (those are the settings, not a projection: set alike on every database compared)."""
    calendar = Calendar.of(rules().timezone)
    idle = IDLE // timedelta(milliseconds=1)
    since, until = PAST - 86_400_000, PAST + 86_400_000
    at = {"idle_ms": idle, "now": REPORTS_NOW}
    hours.set_targets(connection, 1, 30, 60, actor="test")
    hours.set_targets(connection, 2, 5, 5, actor="test")
    scopes = [
        report_queries.Scope(),
        report_queries.Scope("team", 1),
        report_queries.Scope("operator", "anna"),
    ]
    found: dict[str, Any] = {}
    for metric in (
        "sessions_opened",
        "customer_messages",
        "operator_replies",
        "handoffs_in",
        "handoffs_out",
        "first_response",
        "reply_time",
        "session_duration",
    ):
        for scope in scopes:
            if scope.kind == "operator" and metric not in report_queries.BY_OPERATOR:
                continue
            question = report_queries.Question(metric, "day", since, until, scope, compare=True)
            found[f"{metric} {scope.key}"] = report_queries.trend(
                connection, question, calendar, **at
            )
    found["sla"] = report_queries.sla(connection, "day", since, until, None, calendar, **at)
    found["breaches"] = report_queries.breaches(
        connection, since, until, None, calendar, **at
    ).items
    found["waiting"] = report_queries.waiting(connection, None, calendar, **at)
    found["heatmap"] = report_queries.heatmap(
        connection, "customer_messages", since, until, report_queries.Scope(), calendar
    )
    found["leaderboard"] = report_queries.leaderboard(connection, 1, since, until, calendar, **at)
    connection.rollback()  # the targets set above
    return {
        name: answer.model_dump()
        if hasattr(answer, "model_dump")
        else [a.model_dump() for a in answer]
        for name, answer in found.items()
    }


def _plain(value: object) -> object:
    return json.loads(value.text) if isinstance(value, RawJSON) else str(value)


def _keyed(item: dict[str, Any], keys: dict[int, str]) -> dict[str, Any]:
    if isinstance(item.get("position"), int):
        item["position"] = keys[item["position"]]
    return item


@pytest.mark.slow
@settings(
    max_examples=35, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(history=histories(), data=st.data())
def test_any_delivery_order_and_a_rebuild_give_the_same_answers(
    fresh: Callable[[], Engine], history: list[dict[str, Any]], data: st.DataObject
) -> None:
    repeats = data.draw(st.lists(st.sampled_from(history), max_size=4), label="repeats")
    first_order = data.draw(st.permutations(history + repeats), label="first order")
    second_order = data.draw(st.permutations(history), label="second order")
    batches = data.draw(st.lists(st.integers(1, 6), max_size=8), label="batch sizes")

    engine = fresh()
    deliver(engine, first_order, [1] * len(first_order))
    expected = snapshot(engine)

    engine = fresh()
    deliver(engine, second_order, batches)
    assert snapshot(engine) == expected
    live = stored(engine)

    with db.writing(engine) as connection:
        runner.rebuild(connection, registry.projectors(rules()), MAIN)
    assert snapshot(engine) == expected
    assert stored(engine) == live  # row for row, in every table of every projection


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(history=histories(), data=st.data())
def test_an_erasure_leaves_every_projection_as_a_rebuild_would(
    fresh: Callable[[], Engine], history: list[dict[str, Any]], data: st.DataObject
) -> None:
    """Each projector forgets the erased chats' rows, and they are folded again without
    their keys: row for row what a rebuild writes, in every table of the registry."""
    profile = data.draw(st.sampled_from(["p1", "p2"]), label="erased")
    engine = fresh()
    deliver(engine, history, [len(history)])
    erasure.erase(engine, MAIN, registry.projectors(rules()), profile)
    erased = stored(engine)
    with db.writing(engine) as connection:
        runner.rebuild(connection, registry.projectors(rules()), MAIN)
    assert stored(engine) == erased


def test_handoffs_of_one_millisecond_are_listed_alike_whatever_the_delivery_order(
    fresh: Callable[[], Engine],
) -> None:
    transfers = [webhook("session_updated", chat="c1", at=PAST, team=team) for team in (1, 2, 3)]
    listed = []
    for order in permutations(transfers):
        engine = fresh()
        deliver(engine, list(order), [1, 1, 1])
        with engine.connect() as connection:
            found = queries.chat_handoffs(connection, "c1", paging.Listing())
        assert found is not None
        listed.append([(h.from_team.id, h.to_team.id, h.at) for h in found.items])
    assert len(listed[0]) == 2
    assert all(answer == listed[0] for answer in listed)


def test_late_events_far_back_in_a_long_chat_are_folded_as_a_rebuild_folds_them(
    fresh: Callable[[], Engine],
) -> None:
    gap = 100_000  # beyond the idle timeout: each session_updated opens a session
    history = []
    for number in range(6):
        at = PAST + 1_000_000 + number * gap
        history.append(webhook("session_updated", chat="c1", at=at, team=1 + number % 2))
        # The second session opens by the idle timeout alone: its message is not a pair.
        later = 10_000 if number == 1 else 10
        history.append(webhook("message_created", chat="c1", at=at + later, message="hi"))
        history.append(webhook("operator_replied", chat="c1", at=at + 20, team=1, operator="anna"))
    late = [
        # Bridges the idle gap between sessions 1 and 2: they become one.
        webhook("message_created", chat="c1", at=PAST + 1_000_000 + gap // 2, message="late"),
        # A handoff inside what was session 3.
        webhook("session_updated", chat="c1", at=PAST + 1_000_000 + 2 * gap + 15, team=3),
        # A session before all the others: every later one is renumbered.
        webhook("session_updated", chat="c1", at=PAST, team=2),
        webhook("message_created", chat="c1", at=PAST + 10, message="first"),
    ]
    engine = fresh()
    deliver(engine, history, [len(history)])
    deliver(engine, late, [1] * len(late))
    answers = snapshot(engine)

    assert [s["number"] for s in answers["c1"]["sessions"]] == [1, 2, 3, 4, 5, 6]
    assert [(h["from_team"]["id"], h["to_team"]["id"]) for h in answers["c1"]["handoffs"]] == [
        (1, 2),
        (1, 3),
    ]
    engine = fresh()
    deliver(engine, history + late, [len(history + late)])
    assert snapshot(engine) == answers
    with db.writing(engine) as connection:
        runner.rebuild(connection, registry.projectors(rules()), MAIN)
    assert snapshot(engine) == answers


def test_an_event_before_a_later_unknown_one_is_folded_as_a_rebuild_folds_it(
    fresh: Callable[[], Engine],
) -> None:
    """An event after a chat's last known one is not after all of its events if an unknown
    one came later: that one's place can change, so the chat is folded again."""
    history = [
        webhook("session_updated", chat="c1", at=PAST, team=1),
        webhook("message_created", chat="c1", at=PAST + 10, message="hi"),
        webhook("chat_rated", chat="c1", at=PAST + 100_000),
    ]
    # Silent beyond the idle timeout: opens session 2, which the rating then falls in.
    late = webhook("session_updated", chat="c1", at=PAST + 70_000, team=2)
    engine = fresh()
    deliver(engine, [*history, late], [len(history), 1])
    answers = snapshot(engine)

    kinds = [(item["kind"], item["session_number"]) for item in answers["c1"]["timeline"]]
    assert kinds == [("session_opened", 1), ("message_in", 1), ("session_opened", 2), ("other", 2)]
    with db.writing(engine) as connection:
        runner.rebuild(connection, registry.projectors(rules()), MAIN)
    assert snapshot(engine) == answers


def test_events_in_order_are_folded_on_from_the_stored_state_as_a_rebuild_folds_them(
    fresh: Callable[[], Engine],
) -> None:
    history = [
        *[webhook("message_created", chat="c1", at=PAST + n, message="before") for n in (0, 1)],
        webhook("session_updated", chat="c1", at=PAST + 1_000, team=1, title="first"),
        webhook("message_created", chat="c1", at=PAST + 1_010, message="hi", phone="89990000001"),
        webhook("operator_replied", chat="c1", at=PAST + 2_000, team=1, operator="anna"),
        webhook("session_updated", chat="c1", at=PAST + 3_000, team=2),
        webhook("message_created", chat="c1", at=PAST + 9_000, message="still there?"),
        webhook("operator_replied", chat="c1", at=PAST + 10_000, team=2, operator="boris"),
        webhook("session_updated", chat="c1", at=PAST + 10_500, team=2, title="renamed"),
        webhook("message_updated", chat="c1", at=PAST + 11_000, message="failed"),
        webhook("session_updated", chat="c1", at=PAST + 80_000, team=3),
        webhook("operator_replied", chat="c1", at=PAST + 81_000, team=3, operator="vera"),
        webhook("session_updated", chat="c1", at=PAST + 82_000, team=3, title="second"),
    ]
    engine = fresh()
    deliver(engine, history, [1] * len(history))
    answers = snapshot(engine)

    sessions = answers["c1"]["sessions"]
    assert [(s["number"], s["teams"], s["messages_in"]) for s in sessions] == [
        (1, [1, 2], 2),
        (2, [3], 0),
    ]
    chat = answers["c1"]["chat"]
    assert (chat["operator"]["uuid"], chat["session"]["title"]) == ("vera", "second")
    with db.writing(engine) as connection:
        runner.rebuild(connection, registry.projectors(rules()), MAIN)
    assert snapshot(engine) == answers


def test_a_rebuild_tells_how_many_events_each_projection_has_folded_from_none_to_all(
    fresh: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "BATCH", 2)  # a batch per chat: progress as it goes
    history = [webhook("message_created", chat=f"c{n % 3}", at=PAST + n) for n in range(7)]
    engine = fresh()
    deliver(engine, history, [len(history)])
    told: list[tuple[str, int, int]] = []
    with db.writing(engine) as connection:
        runner.rebuild(
            connection,
            registry.projectors(rules()),
            MAIN,
            progress=lambda *reported: told.append(reported),
        )
    for name in ("chats", "profiles"):
        done = [d for projection, d, _ in told if projection == name]
        assert done == [0, 3, 5, 7]  # chat by chat: c0 holds 3 events, c1 and c2 2 each
        assert {total for projection, _, total in told if projection == name} == {7}


# Long sessions: a chat's events seconds apart, now and then an idle gap, a handoff, an
# update or a new opening pair; titles, names and phones that come and go.
GAPS = [0, 0, 1, 300, 1000, 1000, 2000, 4000, 6000, 70_000]


@st.composite
def long_histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    events, at = [], PAST
    for _ in range(draw(st.integers(8, 48))):
        at += draw(st.sampled_from(GAPS))
        event_type = draw(
            st.sampled_from(
                ["message_created"] * 4
                + ["operator_replied"] * 3
                + ["message_updated", "session_updated", "session_updated", "chat_rated"]
            )
        )
        replying = event_type == "operator_replied"
        events.append(
            webhook(
                event_type,
                chat="c1",
                at=at,
                team=draw(st.sampled_from(TEAMS))
                if event_type == "session_updated" or replying
                else None,
                operator=draw(st.sampled_from(["anna", "boris"])) if replying else None,
                message=f"m{len(events)}" if event_type != "session_updated" else None,
                title=draw(st.sampled_from([None, None, "Order", "Refund"])),
                phone=draw(st.sampled_from(PHONES)),
                name=draw(st.sampled_from([None, "Anna", "Анна"])),
                avatar=draw(st.sampled_from([None, "a.png"])),
                profile=draw(st.sampled_from(["p1", "p1", "p2", None])),
            )
        )
    return events


def _records(packed: bytes, metric: str, keys: dict[int, str]) -> list[tuple[Any, ...]]:
    """A blob of records (cdp.reports.records), with each position replaced by its event's
    key (a session's record holds its number instead), in order."""
    found = []
    for record in unpacked(packed):
        head, position, flags = record[:KEY], record[KEY] >> FLAG_BITS, record[KEY] & 7
        found.append((*head, position if metric == "session_duration" else keys[position], flags))
    return sorted(found)


def stored(engine: Engine) -> dict[str, Any]:
    """The rows of every table of every projector in the registry, with log positions
    replaced by the events' keys."""
    tables = [table for each in registry.projectors(rules()) for table in each.tables]
    assert {table.name for table in tables} >= {"timeline", "chats", "profile_chats", "teams"}
    with engine.connect() as connection:
        keys = {row.position: row.dedupe_key for row in store.read(connection)}
        found = {}
        for table in tables:
            rows = [dict(row._mapping) for row in connection.execute(select(table))]
            for row in rows:
                if "position" in row:
                    row["position"] = keys[row["position"]]
                if "records" in row:  # report_times: each record names a position too
                    assert row.pop("version") == version_of(row["records"])
                    row["records"] = _records(row["records"], row["metric"], keys)
            found[table.name] = sorted(rows, key=lambda row: json.dumps(row, default=str))
    return found


@pytest.mark.slow
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(history=long_histories(), data=st.data())
def test_long_sessions_fed_an_event_at_a_time_in_any_order_match_a_rebuild(
    fresh: Callable[[], Engine],
    history: list[dict[str, Any]],
    data: st.DataObject,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Most of a chat in order, then the rest late, in any order: each region grows a few
    events at a time (a chunk of 1 or 2), so that every way it grows is taken."""
    chunk = data.draw(st.sampled_from([1, 2, 64]))
    monkeypatch.setattr(projector, "_CHUNK", chunk)
    monkeypatch.setattr(reports_projector, "_CHUNK", chunk)
    on_time = data.draw(st.integers(0, len(history)), label="delivered in order")
    late = data.draw(st.permutations(history[on_time:]), label="late order")

    engine = fresh()
    deliver(engine, history, [len(history)])
    with db.writing(engine) as connection:
        runner.rebuild(connection, registry.projectors(rules()), MAIN)
    expected = stored(engine)

    engine = fresh()
    deliver(engine, history[:on_time] + late, [1] * len(history))
    assert stored(engine) == expected
