"""The figures of `cdp bench`, each measured beside a baseline in the same run.

The machine is shared and noisy: a figure means something only as a ratio to its baseline,
measured the same way, on the same database, moments apart.
"""

import asyncio
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import count, islice
from pathlib import Path
from typing import IO, Any, Final

import httpx
from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Index,
    MetaData,
    Table,
    create_engine,
    func,
    select,
    text,
)
from sqlalchemy.engine import Engine, make_url

from cdp import db, paging, upgrades
from cdp.access import credentials
from cdp.bench import progress
from cdp.bench.progress import Progress, note
from cdp.bench.traffic import START_MS, Traffic, lines, webhooks
from cdp.conversations import queries
from cdp.conversations.tables import chats, timeline
from cdp.log import chain, ingest, store, tables
from cdp.log import queries as log_queries
from cdp.log.tables import events
from cdp.log.webhook import latest_timestamp, logged, parse
from cdp.privacy import keyfile, personal
from cdp.privacy import tables as privacy_tables
from cdp.privacy.keystore import Key, Keystore
from cdp.profiles import queries as profiles_queries
from cdp.projections import registry
from cdp.reports import hours as report_hours
from cdp.reports import queries as report_queries
from cdp.reports.calendar import WEEKDAYS, Calendar
from cdp.settings import Settings
from cdp.teams import queries as teams_queries
from cdp.times import now_ms


@dataclass(frozen=True)
class Figure:
    """One measurement beside its baseline; `ratio` is value / baseline."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""

    @property
    def ratio(self) -> float | None:
        return self.value / self.baseline if self.baseline else None


@dataclass(frozen=True)
class Plan:
    """What to measure: on which database server, with how many events."""

    database: (
        str  # SQLite: any sqlite:/// URL (files go to a temporary folder); PostgreSQL: a server
    )
    events: int = 10_000
    seed: int = 1
    small: int = 10_000  # the size the query figures are compared with
    session_sizes: tuple[int, ...] = (1, 1_000, 10_000, 20_000)  # one webhook into them
    repeats: int = 200
    clients: int = 16
    posts: int = 3_000
    profile_size: int = 100_000  # the chats of the big profile a page is read of, or erased
    settings: Settings = field(default_factory=Settings)
    only: frozenset[str] = frozenset()  # of cdp.bench.GROUPS; none: every one

    def measures(self, *groups: str) -> bool:
        return not self.only or not self.only.isdisjoint(groups)

    @classmethod
    def of(cls, database: str, events: int, seed: int, settings: Settings) -> "Plan":
        """A run of `events`: queries compared with 10 000 events (a tenth in a smaller run),
        one webhook into sessions of 1, 1 000, 10 000 and 20 000 events, a page of a
        profile of 100 000 chats, and its erasure. A run of fewer than 10 000 events is a
        quick look: sessions of 1 and `events` events, a profile of `events` chats, and a
        quarter of the repeats."""
        return cls(
            database=database,
            events=events,
            seed=seed,
            small=min(10_000, max(events // 10, 1_000), events),
            session_sizes=(1, 1_000, 10_000, 20_000) if events >= 10_000 else (1, events),
            repeats=200 if events >= 10_000 else 50,
            profile_size=100_000 if events >= 10_000 else events,
            settings=settings,
        )


def measure(plan: Plan, report: Callable[[Figure], None]) -> list[Figure]:
    """Every figure of the plan, each reported as soon as it is measured."""
    figures: list[Figure] = []

    def take(found: Iterable[Figure]) -> None:
        for figure in found:
            figures.append(figure)
            report(figure)

    with databases(plan.database) as fresh:
        big = fresh()
        if plan.measures("import"):
            take(_import_and_rebuild(plan, big, fresh()))
        else:
            _load(big, Traffic(events=plan.events, seed=plan.seed), plan.settings)
        small = big
        if plan.small < plan.events and plan.measures("queries", "reports", "console"):
            small = fresh()
            _load(small, Traffic(events=plan.small, seed=plan.seed), plan.settings)
        if plan.measures("queries"):
            note("measuring the queries")
            take(_queries(plan, small, big))
        if plan.measures("reports"):
            note("measuring the reports")
            take(_reports(plan, small, big))
        if plan.measures("console"):
            note("measuring the console's pages")
            take(_console(plan, small, big))
        if plan.measures("webhook"):
            take(_one_webhook(plan, fresh))
            note("measuring HTTP ingest while one session is written")
            take(_other_chats_meanwhile(plan, fresh()))
        if plan.measures("http", "workers"):
            note("measuring HTTP ingest")
            take(_http_ingest(plan, fresh()))
        if plan.measures("rebuild"):
            note("measuring webhooks during a rebuild")
            take(_ingest_during_a_rebuild(plan, big))
        if plan.measures("profiles"):
            take(_big_profile(plan, fresh()))
        if plan.measures("maintenance"):
            take(_ingest_during_an_erasure(plan, fresh()))
        if plan.measures("streams"):
            note("measuring HTTP ingest and a query with live streams open")
            take(_with_streams(plan, fresh()))
        progress.clear()
    return figures


@contextmanager
def databases(url: str) -> Iterator[Callable[[], str]]:
    """Makes fresh, migrated databases on the server of `url`, and drops them at the end."""
    made: list[str] = []
    server = make_url(url)
    with tempfile.TemporaryDirectory(prefix="cdp-bench-") as folder:

        def fresh() -> str:
            name = f"cdp_bench_{uuid.uuid4().hex[:10]}"
            if server.get_backend_name() == "sqlite":
                fresh_url = f"sqlite:///{Path(folder) / name}.db"
            else:
                _on_server(
                    server.render_as_string(hide_password=False), f'CREATE DATABASE "{name}"'
                )
                made.append(name)
                fresh_url = server.set(database=name).render_as_string(hide_password=False)
            engine = db.make_engine(fresh_url)
            upgrades.upgrade(engine)
            engine.dispose()
            return fresh_url

        try:
            yield fresh
        finally:
            for name in made:
                with suppress(Exception):  # one that cannot be dropped must not keep the rest
                    _on_server(
                        server.render_as_string(hide_password=False),
                        f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                    )
                key_file = keyfile.default_path(server.set(database=name))
                if key_file is not None:  # the key file its keys were wrapped under
                    key_file.unlink(missing_ok=True)


def _on_server(url: str, statement: str) -> None:
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(statement))
    admin.dispose()


def _keystore(url: str) -> Keystore:
    """The keystore `cdp` uses for the database at `url` (the bench sets no other)."""
    return Keystore.at(Settings(database_url=url).keystore())


def _load(url: str, traffic: Traffic, settings: Settings) -> None:
    """Fill a database with `traffic`, in the import's batches, and settle it as the import
    does, without timing it."""
    engine, keystore = db.make_engine(url), _keystore(url)
    projectors = registry.projectors(settings)
    latest = latest_timestamp(settings.max_clock_skew)
    batch = []
    loading = f"loading {traffic.events:,} events"
    for line in progress.counted(lines(traffic), loading, traffic.events):
        batch.append(parse(line, latest=latest))
        if len(batch) == 500:
            ingest.record(engine, batch, projectors, keystore=keystore)
            batch.clear()
    if batch:
        ingest.record(engine, batch, projectors, keystore=keystore)
    db.analyze(engine, [tables.events, *(table for p in projectors for table in p.tables)])
    engine.dispose()
    keystore.dispose()


# -- import and rebuild ------------------------------------------------------------------


def _import_and_rebuild(plan: Plan, url: str, bare_url: str) -> Iterator[Figure]:
    traffic = Traffic(events=plan.events, seed=plan.seed, redeliveries=0.02)
    with tempfile.TemporaryDirectory(prefix="cdp-bench-") as folder:
        path = Path(folder) / "webhooks.jsonl"
        expected = round(plan.events * (1 + traffic.redeliveries))
        making = Progress(f"generating {plan.events:,} events", expected, "webhooks")
        with path.open("wb") as file:
            for line in lines(traffic):
                file.write(line)
                making.advance()
        making.close()
        note(f"timing cdp import of {making.done:,} webhooks")
        seconds, memory = _child(url, "import", str(path))
        baseline = _bare_insert(bare_url, path, plan.settings, making.done)
    yield Figure(
        "cdp import", plan.events / seconds, "events/s", plan.events / baseline, "bare insert"
    )
    yield Figure("cdp import: peak memory", memory, "MB")
    note(f"timing cdp rebuild of {plan.events:,} events")
    seconds, memory = _child(url, "rebuild")
    note(f"timing a bare rebuild of {plan.events:,} events")
    baseline = _bare_rebuild(url, bare_url)
    yield Figure(
        "cdp rebuild",
        plan.events / seconds,
        "events/s",
        plan.events / baseline,
        "read+parse+insert",
    )
    yield Figure("cdp rebuild: peak memory", memory, "MB")


def _child(url: str, *command: str) -> tuple[float, float]:
    """Run `cdp COMMAND` in a process of its own: (seconds of work, peak resident memory in
    MB). The seconds a process of cdp takes to start and stop (`cdp --version`) are left out."""
    seconds, memory = _process(url, *command)
    return max(seconds - _process(url, "--version")[0], 1e-3), memory


def _process(url: str, *command: str) -> tuple[float, float]:
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "cdp", *command],
        env={**os.environ, "CDP_DATABASE_URL": url, "CDP_KEYSTORE_URL": ""},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    errors = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    process.stderr.close()
    if process.returncode != 0:
        raise RuntimeError(f"cdp {' '.join(command)} failed: {errors.decode()[-500:]}")
    return seconds, usage.ru_maxrss / 1024


_LOG_COLUMNS = tuple(column.name for column in events.c if column is not events.c.position)


def _bare_insert(url: str, path: Path, settings: Settings, total: int) -> float:
    """Seconds to insert the file's log rows (`total` lines) into a bare copy of the log
    (same indexes, no triggers, no projections) with the driver, in one transaction; COPY
    on PostgreSQL.

    The rows are made ready a chunk at a time, untimed, so memory stays bounded."""
    latest = latest_timestamp(settings.max_clock_skew)
    table = _bare_copy(url, events, "bare_events", indexes=True).name
    columns = ", ".join(_LOG_COLUMNS)
    engine = create_engine(url)
    seconds, seen = 0.0, set()
    # Each row sealed and chained as the log's are: preparing rows is untimed, inserting is.
    ring: dict[str, Key] = defaultdict(lambda: Key(secrets.token_hex(16), personal.new_key()))
    previous = chain.GENESIS
    inserting = Progress("timing a bare insert", total, "webhooks")
    with path.open("rb") as file, engine.begin() as connection:
        raw: Any = connection.connection.driver_connection
        while chunk := list(islice(file, 10_000)):
            rows = []
            for line in chunk:
                incoming = parse(line.rstrip(b"\n"), latest=latest)
                if incoming.fingerprint not in seen:
                    seen.add(incoming.fingerprint)
                    stored = store.row(incoming, ring, now_ms(), len(seen), previous)
                    previous = stored["hash"]
                    rows.append(tuple(stored[name] for name in _LOG_COLUMNS))
            started = time.perf_counter()
            if engine.dialect.name == "postgresql":
                with (
                    raw.cursor() as cursor,
                    cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
                ):
                    for row in rows:
                        copy.write_row(row)
            else:
                marks = ", ".join("?" * len(_LOG_COLUMNS))
                raw.cursor().executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)
            seconds += time.perf_counter() - started
            inserting.advance(len(chunk))  # untimed
        inserting.close()
        started = time.perf_counter()
    seconds += time.perf_counter() - started  # the commit
    engine.dispose()
    return seconds


def _bare_rebuild(url: str, bare_url: str) -> float:
    """Seconds to read every logged row, open its sealed body with its key (all read at
    once), parse it, and insert one timeline-shaped row for it, its message sealed again
    as the read models keep it, into a bare table, in one transaction: the least that
    reading what the log holds takes."""
    table = _bare_copy(bare_url, timeline, "bare_timeline", indexes=False)
    source, target = create_engine(url), create_engine(bare_url)
    keystore = _keystore(url)
    query = select(
        events.c.position,
        events.c.chat_uuid,
        events.c.occurred_at,
        events.c.dedupe_key,
        events.c.event_type,
        events.c.body,
        events.c.key_id,
        events.c.sealed,
    )
    started = time.perf_counter()
    with source.connect() as reading, target.begin() as writing:
        with keystore.connect(reading) as keys:
            ids = list(keys.scalars(select(privacy_tables.keys.c.id)))
        materials = keystore.materials(reading, ids)  # unwrapped: see cdp.privacy.keyfile
        batch: list[dict[str, Any]] = []
        sealers: dict[str, personal.Sealer | None] = {}
        for row in reading.execute(query.execution_options(yield_per=2000)):
            body, _ = store.body(row, materials)
            payload = (logged(body) or {}).get("payload") or {}
            chat = row.chat_uuid or ""
            if chat not in sealers:
                sealers[chat] = personal.sealer(materials.get(row.key_id), chat)
            sealer, message = sealers[chat], payload.get("message")
            batch.append(
                {
                    **dict.fromkeys(table.c.keys()),
                    "position": row.position,
                    "chat_uuid": row.chat_uuid or "",
                    "rank": 1,
                    "occurred_at": row.occurred_at,
                    "dedupe_key": row.dedupe_key,
                    "event_type": row.event_type,
                    "kind": "other",
                    "message": None
                    if sealer is None or message is None
                    else sealer.seal("message", personal.as_json(message)),
                }
            )
            if len(batch) == 2000:
                writing.execute(table.insert(), batch)
                batch.clear()
        if batch:
            writing.execute(table.insert(), batch)
    seconds = time.perf_counter() - started
    source.dispose()
    target.dispose()
    keystore.dispose()
    return seconds


def _bare_copy(url: str, model: Table, name: str, *, indexes: bool) -> Table:
    """Create a table shaped like `model`, named `name`: no triggers, no projections."""
    metadata = MetaData()
    copy = Table(
        name,
        metadata,
        *(
            Column(
                column.name,
                column.type,
                primary_key=column.primary_key,
                unique=bool(column.unique),
                autoincrement=column.autoincrement,
            )
            for column in model.c
        ),
    )
    if indexes:
        for index in model.indexes:
            Index(f"bare_{index.name}", *(copy.c[column.name] for column in index.columns))
    engine = create_engine(url)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    engine.dispose()
    return copy


# -- queries -----------------------------------------------------------------------------


def _queries(plan: Plan, small_url: str, big_url: str) -> Iterator[Figure]:
    """p50 and p99 of every query the API runs, at the small size and at the plan's size."""
    at_small = _query_times(small_url, plan)
    at_big = _query_times(big_url, plan) if big_url != small_url else at_small
    for name, times in at_big.items():
        small_times = at_small[name]
        for cut, label in ((50, "p50"), (99, "p99")):
            yield Figure(
                f"query {name} at {plan.events:,} events: {label}",
                percentile(times, cut) * 1000,
                "ms",
                percentile(small_times, cut) * 1000,
                f"at {plan.small:,}",
            )


def _query_times(url: str, plan: Plan) -> dict[str, list[float]]:
    engine, keystore = db.make_engine(url), _keystore(url)
    idle = plan.settings.session_idle_timeout // timedelta(milliseconds=1)
    page = paging.Listing(limit=100)
    chosen = random.Random(plan.seed)

    def sample(column: ColumnElement[Any]) -> list[Any]:
        """Up to `plan.repeats` values of a column, the same ones for the same seed."""
        found = sorted(connection.scalars(select(column).distinct().where(column.is_not(None))))
        return list(chosen.sample(found, min(plan.repeats, len(found))))

    with engine.connect() as connection:
        chat_ids = sample(chats.c.uuid)
        profile_ids = sample(chats.c.profile_uuid)
        phones, names = _phones_and_names(connection, keystore, chosen, plan.repeats)
        teams = sample(chats.c.team_id)
        operators = sample(timeline.c.operator_uuid)
        head = connection.scalar(select(func.max(events.c.position))) or 0
        # As of the traffic's last moment, so that some chats are open to be listed.
        clock = paging.Clock(
            idle, (connection.scalar(select(func.max(chats.c.last_seen_at))) or 0) + 1
        )
        work: dict[str, Callable[[int], object]] = {
            "profile": lambda n: profiles_queries.profile(
                connection, profile_ids[n % len(profile_ids)], keystore=keystore
            ),
            "phone search": lambda n: profiles_queries.profiles_by_phone(
                connection, phones[n % len(phones)], page, keystore=keystore
            ),
            # Three letters, as a console asks while a name is typed: a wide range of keys.
            "name search": lambda n: profiles_queries.profiles_by_name(
                connection, names[n % len(names)][:3], page, keystore=keystore
            ),
            "chat": lambda n: queries.chat(
                connection, chat_ids[n % len(chat_ids)], clock, keystore=keystore
            ),
            "sessions": lambda n: queries.chat_sessions(
                connection, chat_ids[n % len(chat_ids)], clock, page
            ),
            "timeline page": lambda n: queries.chat_timeline(
                connection, chat_ids[n % len(chat_ids)], page, keystore=keystore
            ),
            "handoff audit page": lambda n: queries.team_handoffs(
                connection, page, teams[n % len(teams)]
            ),
            "team chats page": lambda n: queries.team_chats(
                connection, teams[n % len(teams)], "open", clock, page, keystore=keystore
            ),
            "log page": lambda n: log_queries.events(
                connection, keystore, after=(n * 7919) % max(head, 1), limit=100
            ),
            # Over the whole log: the most a period can hold.
            "team stats": lambda n: teams_queries.team_stats(
                connection, teams[n % len(teams)], teams_queries.Period()
            ),
            "operator stats": lambda n: teams_queries.operator_stats(
                connection, operators[n % len(operators)], teams_queries.Period()
            ),
        }
        times: dict[str, list[float]] = {}
        for name, run in work.items():
            run(0)  # warm
            times[name] = []
            for n in range(plan.repeats):
                started = time.perf_counter()
                run(n)
                times[name].append(time.perf_counter() - started)
    engine.dispose()
    keystore.dispose()
    return times


def _reports(plan: Plan, small_url: str, big_url: str) -> Iterator[Figure]:
    """p50 and p99 of each report over the traffic's busiest 30 days (and one over all of
    it, by month), at the small size and at the plan's size."""
    at_small = _report_times(small_url, plan)
    at_big = _report_times(big_url, plan) if big_url != small_url else at_small
    for name, times in at_big.items():
        for cut, label in ((50, "p50"), (99, "p99")):
            yield Figure(
                f"report {name} at {plan.events:,} events: {label}",
                percentile(times, cut) * 1000,
                "ms",
                percentile(at_small[name], cut) * 1000,
                f"at {plan.small:,}",
            )


def _report_times(url: str, plan: Plan) -> dict[str, list[float]]:
    """What each report takes, asked as the API asks it, with every team given reply
    targets and a working week set (so that targets and business hours are worked out)."""
    engine = db.make_engine(url)
    calendar = Calendar.of(plan.settings.timezone)
    idle = plan.settings.session_idle_timeout // timedelta(milliseconds=1)
    team_ids = _report_settings(engine, calendar)
    with engine.connect() as connection:
        last = connection.scalar(select(func.max(chats.c.last_seen_at))) or 0
    since = calendar.midnight(calendar.day(START_MS))
    until = calendar.midnight(calendar.day(START_MS) + timedelta(days=30))
    year = (
        calendar.midnight(calendar.day(START_MS)),
        calendar.midnight(calendar.day(START_MS) + timedelta(days=365)),
    )
    now = last + 1  # as of the traffic's last moment: some sessions are open

    def trend(
        metric: str, scope: report_queries.Scope, **options: Any
    ) -> Callable[[Connection, int], object]:
        question = report_queries.Question(
            metric,
            options.pop("group", "day"),
            options.pop("since", since),
            options.pop("until", until),
            scope,
            **options,
        )
        return lambda connection, n: report_queries.trend(
            connection, question, calendar, idle_ms=idle, now=now
        )

    def team_of(n: int) -> int:
        found: int = team_ids[n % len(team_ids)]
        return found

    store = report_queries.Scope()
    work: dict[str, Callable[[Connection, int], object]] = {
        "customer messages by day": trend("customer_messages", store),
        "customer messages by hour": trend("customer_messages", store, group="hour"),
        "first response of a team, working time, vs before": lambda c, n: report_queries.trend(
            c,
            report_queries.Question(
                "first_response",
                "day",
                since,
                until,
                report_queries.Scope("team", team_of(n)),
                True,
                True,
            ),
            calendar,
            idle_ms=idle,
            now=now,
        ),
        "first response by day": trend("first_response", store),
        "reply time by day": trend("reply_time", store),
        "session duration by day": trend("session_duration", store),
        "customer messages over a year by month": trend(
            "customer_messages", store, group="month", since=year[0], until=year[1]
        ),
        "first response over a year by month": trend(
            "first_response", store, group="month", since=year[0], until=year[1]
        ),
        "targets met by day": lambda c, n: report_queries.sla(
            c, "day", since, until, None, calendar, idle_ms=idle, now=now
        ),
        "breaches of a team, a page": lambda c, n: report_queries.breaches(
            c, since, until, team_of(n), calendar, idle_ms=idle, now=now, limit=100
        ),
        "heat map": lambda c, n: report_queries.heatmap(
            c, "customer_messages", since, until, store, calendar
        ),
        "leaderboard of a team": lambda c, n: report_queries.leaderboard(
            c, team_of(n), since, until, calendar, idle_ms=idle, now=now
        ),
        "who is waiting now": lambda c, n: report_queries.waiting(
            c, None, calendar, idle_ms=idle, now=now
        ),
    }
    times: dict[str, list[float]] = {}
    repeats = max(plan.repeats // 4, 10)
    with engine.connect() as connection:
        for name, run in work.items():
            run(connection, 0)  # warm
            times[name] = []
            for n in range(repeats):
                started = time.perf_counter()
                run(connection, n)
                times[name].append(time.perf_counter() - started)
    engine.dispose()
    return times


def _report_settings(engine: Engine, calendar: Calendar) -> list[int]:
    """Give the reports a working week (9 to 18, Monday to Friday) and every team targets
    (5 minutes to a first reply, 15 to the next), as a store that uses them has; the
    teams."""
    week = {day: ["09:00-18:00"] for day in WEEKDAYS[:5]}
    with report_hours.changing(engine, *report_hours.HOURS_TABLES) as connection:
        report_hours.set_hours(
            connection, report_hours.week_of(week), {}, actor="bench", timezone=calendar.zone.key
        )
    with engine.connect() as connection:
        team_ids = sorted(set(connection.scalars(select(chats.c.team_id).distinct())) - {None})
    with report_hours.changing(engine, *report_hours.TARGETS_TABLES) as connection:
        for team in team_ids:
            report_hours.set_targets(connection, team, 300, 900, actor="bench")
    return team_ids


def percentile(values: list[float], cut: int) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[cut - 1]
        if len(values) > 1
        else values[0]
    )


# -- console pages -----------------------------------------------------------------------


def _console(plan: Plan, small_url: str, big_url: str) -> Iterator[Figure]:
    """p50 and p99 of each console page, asked of a server as a browser asks, at the
    small size and at the plan's size: the time to the last byte of the page."""
    at_small = _page_times(small_url, plan)
    at_big = _page_times(big_url, plan) if big_url != small_url else at_small
    for name, times in at_big.items():
        for cut, label in ((50, "p50"), (99, "p99")):
            yield Figure(
                f"console {name} at {plan.events:,} events: {label}",
                percentile(times, cut) * 1000,
                "ms",
                percentile(at_small[name], cut) * 1000,
                f"at {plan.small:,}",
            )


def _phones_and_names(
    connection: Connection, keystore: Keystore, chosen: random.Random, count: int
) -> tuple[list[str], list[str]]:
    """Up to `count` of the chats' phones (E.164) and names, opened, the same ones for the
    same seed: they are sealed in the chats' rows."""
    rows = connection.execute(select(chats.c.uuid, chats.c.phone_e164, chats.c.name)).all()
    sealers = keystore.sealers(connection, [row.uuid for row in rows])
    phones, names = set(), set()
    for row in rows:
        if (sealer := sealers[row.uuid]) is not None:
            phones.add(sealer.open("phone_e164", row.phone_e164))
            names.add(sealer.open("name", row.name))
    found = [sorted(value for value in values if value) for values in (phones, names)]
    return chosen.sample(found[0], min(count, len(found[0]))), chosen.sample(
        found[1], min(count, len(found[1]))
    )


def _page_times(url: str, plan: Plan) -> dict[str, list[float]]:
    engine, keystore = db.make_engine(url), _keystore(url)
    chosen = random.Random(plan.seed)
    repeats = max(plan.repeats // 4, 10)

    with engine.connect() as connection:

        def sample(column: ColumnElement[Any]) -> list[Any]:
            found = sorted(connection.scalars(select(column).distinct().where(column.is_not(None))))
            return list(chosen.sample(found, min(repeats, len(found))))

        chat_ids, profile_ids = sample(chats.c.uuid), sample(chats.c.profile_uuid)
        phones, names = _phones_and_names(connection, keystore, chosen, repeats)
        teams = sample(chats.c.team_id)
        head = connection.scalar(select(func.max(events.c.position))) or 1
        first, last = connection.execute(
            select(func.min(events.c.occurred_at), func.max(events.c.occurred_at))
        ).one()
    _report_settings(engine, Calendar.of(plan.settings.timezone))
    engine.dispose()
    keystore.dispose()
    zone = plan.settings.zone()
    since, until = (
        datetime.fromtimestamp(moment / 1000, zone).date().isoformat() for moment in (first, last)
    )
    # The reports over the traffic's first 30 days (both days included), as _reports asks.
    month = {
        "since": datetime.fromtimestamp(START_MS / 1000, zone).date().isoformat(),
        "until": (
            datetime.fromtimestamp(START_MS / 1000, zone).date() + timedelta(days=29)
        ).isoformat(),
    }
    pages: dict[str, Callable[[httpx.Client, int], httpx.Response]] = {
        "search by phone": lambda client, n: client.post(
            "/console/", data={"q": phones[n % len(phones)], "csrf": client.headers["x-csrf"]}
        ),
        "search by name": lambda client, n: client.post(
            "/console/", data={"q": names[n % len(names)][:3], "csrf": client.headers["x-csrf"]}
        ),
        "profile": lambda client, n: client.get(
            f"/console/profiles/{profile_ids[n % len(profile_ids)]}"
        ),
        "chat": lambda client, n: client.get(f"/console/chats/{chat_ids[n % len(chat_ids)]}"),
        # Over the whole log: the most a period can hold.
        "team": lambda client, n: client.get(
            f"/console/teams/{teams[n % len(teams)]}", params={"since": since, "until": until}
        ),
        "handoff audit": lambda client, n: client.get(
            "/console/handoffs", params={"team_id": teams[n % len(teams)]}
        ),
        "log": lambda client, n: client.get("/console/log", params={"after": (n * 7919) % head}),
        "log event": lambda client, n: client.get(f"/console/log/{(n * 7919) % head + 1}"),
        "operations": lambda client, n: client.get("/console/operations/"),
        "report: a team's first response in working time, vs before": lambda client, n: client.get(
            "/console/reports/trends",
            params={
                "metric": "first_response",
                "team": teams[n % len(teams)],
                "business_hours": "true",
                "compare": "true",
                **month,
            },
        ),
        "report: heat map": lambda client, n: client.get("/console/reports/heatmap", params=month),
        "report: a team's leaderboard": lambda client, n: client.get(
            "/console/reports/leaderboard", params={"team": teams[n % len(teams)], **month}
        ),
        "report: a team's breaches": lambda client, n: client.get(
            "/console/reports/breaches", params={"team": teams[n % len(teams)], **month}
        ),
        "report: who is waiting now": lambda client, n: client.get("/console/reports/waiting"),
    }
    times: dict[str, list[float]] = {}
    command = ["-m", "cdp", "serve"]
    with (
        server(command, url, "/health", {"CDP_READ_RATE_LIMIT": "0"}) as base,
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        # The CSRF cookie the searches must match: sent by hand, since a client keeps a
        # Secure cookie for HTTPS only (as a browser does, but for 127.0.0.1).
        csrf = client.get("/console/").cookies["cdp_csrf"]
        client.headers.update({"Cookie": f"cdp_csrf={csrf}", "X-CSRF": csrf})
        for name, ask in pages.items():
            ask(client, 0)  # warm
            times[name] = []
            for n in range(repeats):
                started = time.perf_counter()
                answer = ask(client, n)
                times[name].append(time.perf_counter() - started)
                if answer.status_code != 200:
                    raise RuntimeError(f"console {name} was answered {answer.status_code}")
    return times


# -- one webhook into a long session ------------------------------------------------------


# How a webhook can meet a long session: each a few webhooks, the last one measured. Times
# are from the session's last event (`last`), or its middle (`middle`), in milliseconds.
SESSION_PATTERNS: Final = {
    "1 s after the last": [("message_created", "last", 1000)],
    "three in one millisecond": [
        ("message_created", "last", 1000),
        ("operator_replied", "last", 1000),
        ("message_created", "last", 1000),
    ],
    "a delivery status 0.5 s after its reply": [
        ("operator_replied", "last", 1000),
        ("message_updated", "last", 1500),
    ],
    "late, into its middle": [("message_created", "middle", 300)],
    "a new opening pair": [("session_updated", "last", 1000), ("message_created", "last", 1005)],
    "a new opening pair, message first": [
        ("message_created", "last", 1005),
        ("session_updated", "last", 1000),
    ],
}


def _one_webhook(plan: Plan, fresh: Callable[[], str]) -> Iterator[Figure]:
    """The median time of one webhook into a session of N events, in each way one can meet
    it, beside one into a new chat measured on the same store, moments apart."""
    for size in plan.session_sizes:
        medians = _into_session(fresh(), size, plan)
        alone = medians.pop("new chat")
        for pattern, median in medians.items():
            yield Figure(
                f"one webhook into a session of {size:,} events: {pattern}",
                median * 1000,
                "ms",
                alone * 1000,
                "one into a new chat",
            )


def _load_long_session(
    engine: Engine, keystore: Keystore, size: int, settings: Settings
) -> list[dict[str, Any]]:
    """Record a session of `size` events, from two days ago, into the store: its bodies."""
    projectors = registry.projectors(settings)
    latest = latest_timestamp(settings.max_clock_skew)
    session = _long_session(size, now_ms() - 2 * 24 * 3_600_000)
    loading = Progress(f"loading a session of {size:,} events", size)
    for at in range(0, len(session), 5000):
        batch = [parse(_encoded(body), latest=latest) for body in session[at : at + 5000]]
        ingest.record(engine, batch, projectors, keystore=keystore)
        loading.advance(len(batch))
    loading.close()
    return session


def _long_session(size: int, at: int) -> list[dict[str, Any]]:
    """One chat's session of `size` events from `at`: its opening pair, then the customer's
    messages and the operator's replies in turn, a second apart."""
    bodies = [_bench_body("session_updated", at, 0), _bench_body("message_created", at + 5, 1)]
    for n in range(2, size):
        kind = "message_created" if n % 2 else "operator_replied"
        bodies.append(_bench_body(kind, at + 5 + 1000 * (n - 1), n))
    return bodies[:size]


_BENCH_CHAT: Final = {
    "uuid": "bench-long-chat",
    "avatar": None,
    "platform": "Telegram",
    "phone": "+79991234567",
    "name": "Анна Петрова",
}


def _bench_body(
    event_type: str,
    at: int,
    n: int,
    chat: dict[str, Any] | None = None,
    profile: str | None = None,
) -> dict[str, Any]:
    chat = chat or _BENCH_CHAT
    profile = profile or f"profile-{chat['uuid']}"
    payload: dict[str, Any] = {"chat": chat, "profile": {"uuid": profile}}
    session = {"title": "Заказ", "context": None, "team": {"id": 12, "name": "Первая линия"}}
    if event_type == "session_updated":
        payload["session"] = session
    else:
        payload["message"] = {"uuid": f"bench-{n}", "type": "text", "text": "Где мой заказ?"}
    if event_type == "operator_replied":
        operator = {"uuid": "bench-operator", "name": "Светлана", "avatar": None}
        payload["session"] = {**session, "operator": operator, "integration": None}
    if event_type == "message_updated":
        payload["message"] |= {"status": "error", "error": "message was not delivered"}
    return {"event_type": event_type, "payload": payload, "timestamp": at}


def _into_session(url: str, size: int, plan: Plan) -> dict[str, float]:
    """Load a session of `size` events into `url`, then time each pattern's last webhook
    (and one into a new chat), each in a transaction rolled back: every repeat meets the
    same store. The patterns take turns, so that the machine's noise falls on all alike."""
    engine, keystore = db.make_engine(url), _keystore(url)
    projectors = registry.projectors(plan.settings)
    latest = latest_timestamp(plan.settings.max_clock_skew)
    session = _load_long_session(engine, keystore, size, plan.settings)
    db.analyze(engine, [tables.events, *(table for p in projectors for table in p.tables)])
    moments = {"last": session[-1]["timestamp"], "middle": session[len(session) // 2]["timestamp"]}
    other = {**_BENCH_CHAT, "uuid": "bench-new-chat"}
    patterns = {"new chat": [_bench_body("message_created", moments["last"], -1, other)]}
    for name, steps in SESSION_PATTERNS.items():
        patterns[name] = [
            _bench_body(kind, moments[since] + after, -2 - n)
            for n, (kind, since, after) in enumerate(steps)
        ]
    parsed = {
        name: [parse(_encoded(body), latest=latest) for body in bodies]
        for name, bodies in patterns.items()
    }
    times: dict[str, list[float]] = defaultdict(list)
    for _ in range(max(5, min(plan.repeats, 25))):
        for name, incoming in parsed.items():
            with db.writing(engine, commit=False) as connection, db.pipelined(connection):
                ingest.record_in(connection, incoming[:-1], projectors, keystore=keystore)
                started = time.perf_counter()
                ingest.record_in(connection, incoming[-1:], projectors, keystore=keystore)
                times[name].append(time.perf_counter() - started)
    engine.dispose()
    keystore.dispose()
    return {name: statistics.median(taken) for name, taken in times.items()}


def _encoded(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False)


def _other_chats_meanwhile(plan: Plan, url: str) -> Iterator[Figure]:
    """Webhooks/s of clients posting to other chats, while one more client writes into a
    session of 20 000 events (a second apart, as fast as it is answered), beside the same
    clients alone, on the same server."""
    size = plan.session_sizes[-1]
    engine, keystore = db.make_engine(url), _keystore(url)
    session = _load_long_session(engine, keystore, size, plan.settings)
    engine.dispose()
    keystore.dispose()
    traffic = Traffic(events=min(plan.posts, plan.events), seed=plan.seed + 7)
    others = [_encoded(body).encode() for body in webhooks(traffic)]
    half = len(others) // 2
    last = session[-1]["timestamp"]
    long_chat = (  # made as it is posted: as many as there is time for
        _encoded(
            _bench_body(
                "message_created" if n % 2 else "operator_replied", last + 1000 * n, size + n
            )
        ).encode()
        for n in count(1)
    )
    target = "/webhooks/fasttrack"
    with server(["-m", "cdp", "serve"], url, target, {"CDP_WEBHOOK_RATE_LIMIT": "0"}) as base:
        alone = asyncio.run(_post_all(base, target, others[:half], plan.clients))
        meanwhile = asyncio.run(
            _while_one_chat_is_written(base, target, others[half:], long_chat, plan.clients)
        )
    yield Figure(
        f"HTTP ingest of other chats while a session of {size:,} events is written",
        meanwhile.rate,
        "webhooks/s",
        alone.rate,
        "the same clients alone",
    )


async def _while_one_chat_is_written(
    base: str, target: str, others: list[bytes], long_chat: Iterable[bytes], clients: int
) -> "_Load":
    """Post `others` over `clients` connections while one more posts `long_chat`, in turn."""
    done = asyncio.Event()
    writer = asyncio.create_task(_post_all(base, target, long_chat, 1, until=done))
    try:
        return await _post_all(base, target, others, clients)
    finally:
        done.set()
        await writer


# -- a profile of many chats ----------------------------------------------------------


# Requests at once for the big profile, while the server's memory is watched.
_AT_ONCE: Final = 40


def _big_profile(plan: Plan, url: str) -> Iterator[Figure]:
    """p50 and p99 of GET /profiles/{uuid} (its default page of 100 chats) for a profile a
    sender named on `plan.profile_size` chats, beside the same for a profile of one chat
    and (p50) of 100 chats, a page as full, on the same server, asked in turn; and the
    server's peak memory while _AT_ONCE such requests are asked at once, beside the same
    for the profile of one chat (asked first: a process's peak never falls)."""
    size = plan.profile_size
    full = min(100, size)
    big, page, one = profiles = _profiles_of_chats(url, (size, full, 1), plan.settings)
    repeats = max(plan.repeats // 4, 10)
    with (
        server(["-m", "cdp", "serve"], url, "/health", {"CDP_READ_RATE_LIMIT": "0"}) as base,
        httpx.Client(base_url=base, timeout=120) as client,
    ):
        pid = _served_pid(base)
        peaks = {}
        for uuid_ in (one, big):
            asyncio.run(_asked_at_once(base, f"/profiles/{uuid_}", _AT_ONCE))
            peaks[uuid_] = _peak_memory(pid)
        times: dict[str, list[float]] = {uuid_: [] for uuid_ in profiles}
        for n in range(repeats + 1):
            for uuid_ in profiles:  # in turn: the machine's noise falls on each alike
                started = time.perf_counter()
                answer = client.get(f"/profiles/{uuid_}")
                if n:  # the first is a warm-up
                    times[uuid_].append(time.perf_counter() - started)
                if answer.status_code != 200:
                    raise RuntimeError(f"GET /profiles/{uuid_} was answered {answer.status_code}")
    for cut, label in ((50, "p50"), (99, "p99")):
        yield Figure(
            f"a page of a {size:,}-chat profile: {label}",
            percentile(times[big], cut) * 1000,
            "ms",
            percentile(times[one], cut) * 1000,
            "a 1-chat profile",
        )
    yield Figure(
        f"a page of a {size:,}-chat profile: p50, as full a page",
        percentile(times[big], 50) * 1000,
        "ms",
        percentile(times[page], 50) * 1000,
        f"a {full:,}-chat profile",
    )
    yield Figure(
        f"a page of a {size:,}-chat profile: peak memory, {_AT_ONCE} at once",
        peaks[big],
        "MB",
        peaks[one],
        "a 1-chat profile",
    )


def _profiles_of_chats(url: str, sizes: Iterable[int], settings: Settings) -> list[str]:
    """Name a profile on each number of new chats of `sizes`, a second apart (one webhook
    each): their uuids."""
    engine, keystore = db.make_engine(url), _keystore(url)
    projectors = registry.projectors(settings)
    latest = latest_timestamp(settings.max_clock_skew)
    named = [(f"bench-profile-{n}", size) for n, size in enumerate(sizes)]
    start = now_ms() - (sum(size for _, size in named) + 3_600) * 1000
    bodies = (
        _bench_body(
            "message_created",
            start + 1000 * n,
            n,
            {**_BENCH_CHAT, "uuid": f"bench-chat-{profile}-{n}"},
            profile=profile,
        )
        for profile, size in named
        for n in range(size)
    )
    total = sum(size for _, size in named)
    loading = Progress(f"loading {len(named)} profiles of {total:,} chats", total, "chats")
    while batch := [parse(_encoded(body), latest=latest) for body in islice(bodies, 5000)]:
        ingest.record(engine, batch, projectors, keystore=keystore)
        loading.advance(len(batch))
    loading.close()
    db.analyze(engine, [tables.events, *(table for p in projectors for table in p.tables)])
    engine.dispose()
    keystore.dispose()
    return [profile for profile, _ in named]


def _served_pid(base: str) -> int:
    """The process id of the server this process started on `base`'s port (Linux)."""
    port = base.rsplit(":", 1)[1]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError):
            stat = (entry / "stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes().split(b"\0")
            if parent == os.getpid() and port.encode() in command:
                return int(entry.name)
    raise RuntimeError(f"no server process of this bench on port {port}")


def _peak_memory(pid: int) -> float:
    """The peak resident memory of process `pid` so far, in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"process {pid} reports no peak memory")


async def _asked_at_once(base: str, path: str, clients: int) -> None:
    """GET `path` with `clients` at once. A server too busy to answer one at once may say
    so (503); any other failure fails the run."""

    async def ask(client: httpx.AsyncClient) -> None:
        answer = await client.get(path)
        if answer.status_code not in (200, 503):
            raise RuntimeError(f"GET {path} was answered {answer.status_code}")

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        await asyncio.gather(*(ask(client) for _ in range(clients)))


# -- HTTP ingest -------------------------------------------------------------------------


def _http_ingest(plan: Plan, url: str) -> Iterator[Figure]:
    """Webhooks/s and latency with `plan.clients` concurrent clients, against one server;
    on PostgreSQL, against 2 and 4 worker processes too (new webhooks for each run)."""

    def new_bodies(seed: int) -> list[bytes]:
        traffic = Traffic(events=min(plan.posts, plan.events), seed=seed)
        return [json.dumps(body, ensure_ascii=False).encode() for body in webhooks(traffic)]

    bodies = new_bodies(plan.seed + 1)
    # As Fasttrack posts: to a source, with its secret in the URL.
    engine = db.make_engine(url)
    with engine.begin() as connection:
        secret = credentials.add_source(connection, "bench").secret
    engine.dispose()
    target = f"/webhooks/fasttrack/bench?token={secret}"
    cdp = _served(["-m", "cdp", "serve"], url, target, bodies, plan.clients)
    noop_server = ["-m", "uvicorn", "cdp.bench.noop:app", "--log-level", "warning"]
    noop = _served(noop_server, url, target, bodies, plan.clients)
    yield Figure("HTTP ingest", cdp.rate, "webhooks/s", noop.rate, "no-op endpoint")
    yield Figure("HTTP ingest: p50", cdp.p50 * 1000, "ms", noop.p50 * 1000, "no-op endpoint")
    yield Figure("HTTP ingest: p99", cdp.p99 * 1000, "ms", noop.p99 * 1000, "no-op endpoint")
    if make_url(url).get_backend_name() == "sqlite":
        # What a commit that survives a power cut costs (the default), with group commit:
        # FULL measured before and after NORMAL, so that the machine's drift falls on both.
        normal, full = (
            _served(
                ["-m", "cdp", "serve"],
                url,
                target,
                new_bodies(plan.seed + seed),
                plan.clients,
                {"CDP_SQLITE_SYNCHRONOUS": synchronous},
            )
            for seed, synchronous in ((2, "normal"), (3, "full"))
        )
        yield Figure(
            "HTTP ingest, SQLite synchronous=FULL",
            (cdp.rate + full.rate) / 2,
            "webhooks/s",
            normal.rate,
            "synchronous=NORMAL",
        )
    several_workers = make_url(url).get_backend_name() == "postgresql"  # SQLite: one only
    if several_workers and plan.measures("workers"):
        for workers in (2, 4):
            command = ["-m", "cdp", "serve", "--workers", str(workers)]
            several = _served(
                command, url, target, new_bodies(plan.seed + 10 + workers), plan.clients
            )
            yield Figure(
                f"HTTP ingest, {workers} workers", several.rate, "webhooks/s", cdp.rate, "1 worker"
            )


def _ingest_during_a_rebuild(plan: Plan, url: str) -> Iterator[Figure]:
    """How long webhooks wait while every projection of the whole log is built anew beside
    the live ones, beside how long the same load waits with no build running."""

    async def rebuild(client: httpx.AsyncClient) -> None:
        answer = await client.post("/projections/rebuild")
        if answer.status_code != 202:
            raise RuntimeError(f"POST /projections/rebuild answered {answer.status_code}")
        while True:
            states = (await client.get("/projections")).json()["items"]
            builds = [state["build"] for state in states]
            if all(build and build["state"] != "running" for build in builds):
                if {build["state"] for build in builds} != {"done"}:
                    raise RuntimeError(f"a rebuild did not end well: {builds}")
                return
            await asyncio.sleep(0.05)

    alone, during, _ = _load_during(plan, url, rebuild, seed=plan.seed + 3)
    yield from _waits("a rebuild", during, alone)


def _ingest_during_an_erasure(plan: Plan, url: str) -> Iterator[Figure]:
    """How long the erasure of a profile that a sender named on `plan.profile_size` chats
    takes, and how long other clients' webhooks wait meanwhile (it works in steps: they go
    on between two), beside how long the same load waits with no erasure running."""
    size = plan.profile_size
    (profile,) = _profiles_of_chats(url, (size,), plan.settings)

    async def erase(client: httpx.AsyncClient) -> None:
        answer = await client.post(f"/profiles/{profile}/erase")
        if answer.status_code != 200:
            raise RuntimeError(f"POST /profiles/{profile}/erase answered {answer.status_code}")

    alone, during, seconds = _load_during(plan, url, erase, seed=plan.seed + 5)
    yield Figure(f"erasure of a profile of {size:,} chats", seconds, "s")
    yield from _waits("an erasure", during, alone)


# Clients posting while a rebuild or an erasure runs: a steady load, leaving the work a core.
_REBUILD_CLIENTS = 4


def _load_during(
    plan: Plan,
    url: str,
    work: Callable[[httpx.AsyncClient], Awaitable[None]],
    seed: int,
) -> tuple["_Load", "_Load", float]:
    """On one server: the load of _REBUILD_CLIENTS clients posting webhooks with nothing else
    running, then the same clients' load from the moment `work` (a client of the server's
    own) starts until it is done, or the bodies run out; and the seconds `work` took."""
    posts = min(plan.posts, plan.events)
    bodies = [
        json.dumps(body, ensure_ascii=False).encode()
        for body in webhooks(Traffic(events=max(posts * 10, min(plan.events, 20_000)), seed=seed))
    ]
    target = "/webhooks/fasttrack"
    with server(["-m", "cdp", "serve"], url, target, {"CDP_WEBHOOK_RATE_LIMIT": "0"}) as base:
        alone = asyncio.run(_post_all(base, target, bodies[:posts], _REBUILD_CLIENTS))
        during, seconds = asyncio.run(_meanwhile(base, target, bodies[posts:], work))
    return alone, during, seconds


async def _meanwhile(
    base: str,
    target: str,
    bodies: list[bytes],
    work: Callable[[httpx.AsyncClient], Awaitable[None]],
) -> tuple["_Load", float]:
    """Post `bodies` from the moment `work` starts until it is done: the load measured
    meanwhile, and the seconds `work` took."""
    done = asyncio.Event()
    took: list[float] = []

    async def working() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=3600) as client:
            started = time.perf_counter()
            try:
                await work(client)
            finally:
                took.append(time.perf_counter() - started)
                done.set()

    task = asyncio.create_task(working())
    load = await _post_all(base, target, bodies, _REBUILD_CLIENTS, until=done)
    await task
    return load, took[0]


def _waits(what: str, during: "_Load", alone: "_Load") -> Iterator[Figure]:
    """The longest and p99 webhook waits, and the rate, during `what`, beside with none."""
    baseline = f"with no {what.split()[-1]}"
    yield Figure(
        f"webhook wait during {what}: longest",
        during.longest * 1000,
        "ms",
        alone.longest * 1000,
        baseline,
    )
    yield Figure(
        f"webhook wait during {what}: p99", during.p99 * 1000, "ms", alone.p99 * 1000, baseline
    )
    yield Figure(f"webhooks during {what}", during.rate, "webhooks/s", alone.rate, baseline)


# -- live event streams ------------------------------------------------------------------


STREAM_COUNTS: Final = (10, 100)  # live streams, each measured beside none
STREAM_ROUNDS: Final = 3  # runs of each count, in turn: the medians are compared


def _with_streams(plan: Plan, url: str) -> Iterator[Figure]:
    """HTTP ingest, and the p50 of a query asked meanwhile, with 10 and 100 event streams
    open from the log's head, each beside the same with none, against one `cdp serve`. The
    streams are read by a process of their own, as clients elsewhere read them; each must
    have received every event logged before the next run begins. Each count is run three
    times (once in a run of fewer than 1 000 posts), the counts in turn (each round in
    another order), so that the machine's drift weighs on all of them; the median rate of
    each is compared, and the p50 of all the answers of its runs."""
    size = min(plan.posts, plan.events)
    rounds = STREAM_ROUNDS if size >= 1000 else 1
    _load(url, Traffic(events=size, seed=plan.seed), plan.settings)
    engine = db.make_engine(url)
    with engine.connect() as connection:
        chat_ids = list(
            connection.scalars(select(chats.c.uuid).order_by(chats.c.uuid).limit(plan.repeats))
        )
    env = {
        "CDP_WEBHOOK_RATE_LIMIT": "0",
        "CDP_READ_RATE_LIMIT": "0",
        # Room for the streams of one run while those of the run before are let go.
        "CDP_MAX_STREAMS": str(2 * max(STREAM_COUNTS)),
    }
    target = "/webhooks/fasttrack"
    counts = (0, *STREAM_COUNTS)
    rates: dict[int, list[float]] = defaultdict(list)
    asked: dict[int, list[float]] = defaultdict(list)
    try:
        with server(["-m", "cdp", "serve"], url, target, env) as base:
            for run in range(rounds * len(counts)):
                turn, place = divmod(run, len(counts))
                count = counts[(turn + place) % len(counts)]
                traffic = Traffic(events=size, seed=plan.seed + 20 + run)
                bodies = [
                    json.dumps(body, ensure_ascii=False).encode() for body in webhooks(traffic)
                ]
                with engine.connect() as connection:
                    head = store.head(connection)
                with _streams_open(base, count, head) as received:
                    load, times = asyncio.run(
                        _ingest_and_ask(base, target, bodies, chat_ids, plan.clients)
                    )
                    with engine.connect() as connection:
                        received(store.head(connection) - head)
                rates[count].append(load.rate)
                asked[count] += times
    finally:
        engine.dispose()
    for count in STREAM_COUNTS:
        yield Figure(
            f"HTTP ingest with {count} live streams",
            statistics.median(rates[count]),
            "webhooks/s",
            statistics.median(rates[0]),
            "no stream",
        )
        yield Figure(
            f"query p50 during HTTP ingest with {count} live streams",
            percentile(asked[count], 50) * 1000,
            "ms",
            percentile(asked[0], 50) * 1000,
            "no stream",
        )


async def _ingest_and_ask(
    base: str, target: str, bodies: list[bytes], chat_ids: list[str], clients: int
) -> tuple["_Load", list[float]]:
    """Post every body over `clients` connections while one more asks for a chat after
    another (GET /chats/{uuid}) until they are all posted: the load, and each answer's time."""
    done = asyncio.Event()
    host, port = base.removeprefix("http://").split(":")
    times: list[float] = []

    async def ask() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            n = 0
            while not done.is_set():
                started = time.perf_counter()
                writer.write(
                    b"GET /chats/%s HTTP/1.1\r\nHost: %s\r\n\r\n"
                    % (chat_ids[n % len(chat_ids)].encode(), host.encode())
                )
                async with asyncio.timeout(60):  # a server that hangs fails the run
                    status, length = await read_answer(reader)
                    await reader.readexactly(length)
                times.append(time.perf_counter() - started)
                if status != 200:
                    raise RuntimeError(f"GET /chats/{{uuid}} was answered {status}")
                n += 1
        finally:
            writer.close()

    asking = asyncio.create_task(ask())
    try:
        load = await _post_all(base, target, bodies, clients)
    finally:
        done.set()
        await asking
    return load, times


class _Streams:
    """The event streams a process of their own reads (see cdp.bench.streams)."""

    def __init__(self, base: str, count: int, after: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cdp.bench.streams", base, str(count), str(after)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        asks, answers, errors = self.process.stdin, self.process.stdout, self.process.stderr
        assert asks is not None
        assert answers is not None
        assert errors is not None
        self.asks, self.answers, self.errors = asks, answers, errors

    def opened(self) -> None:
        """Once every stream is open."""
        if self.answers.readline().strip() != "ready":
            raise RuntimeError(f"the live streams did not open: {self._error()}")

    def wait_for(self, events: int) -> None:
        """Until every stream has received `events` events: 60 s at most."""
        deadline = time.monotonic() + 60
        while (fewest := self._fewest()) < events:
            if time.monotonic() > deadline:
                raise RuntimeError(f"a live stream received {fewest} of {events} events in 60 s")
            time.sleep(0.05)

    def close(self) -> None:
        with suppress(BrokenPipeError):
            self.asks.close()  # its end of input: it ends
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.answers.close()
        self.errors.close()

    def _fewest(self) -> int:
        """The fewest events a stream has received so far."""
        self.asks.write("?\n")
        self.asks.flush()
        line = self.answers.readline()
        if not line:
            raise RuntimeError(f"the live streams' reader failed: {self._error()}")
        return int(line)

    def _error(self) -> str:
        self.process.wait(timeout=10)
        return self.errors.read().strip() or f"exit status {self.process.returncode}"


@contextmanager
def _streams_open(base: str, count: int, after: int) -> Iterator[Callable[[int], None]]:
    """`count` event streams of the server at `base`, from position `after`, read as fast as
    they come by a process of their own, once they are all open; closed at the end. What it
    gives waits until every stream has received so many events."""
    if count == 0:
        yield lambda events: None
        return
    streams = _Streams(base, count, after)
    try:
        streams.opened()
        yield streams.wait_for
    finally:
        streams.close()


@dataclass(frozen=True)
class _Load:
    rate: float
    p50: float
    p99: float
    longest: float = 0.0
    posted: int = 0


def _served(
    command: list[str],
    url: str,
    target: str,
    bodies: list[bytes],
    clients: int,
    env: dict[str, str] | None = None,
) -> _Load:
    """Start a server with `command` (and the settings `env`), post every body to `target`
    with `clients` at once (no rate limit), stop it. Worker processes start one after
    another: the posting waits until they all have (their start is not what is measured)."""
    with server(command, url, target, {"CDP_WEBHOOK_RATE_LIMIT": "0", **(env or {})}) as base:
        if "--workers" in command:
            time.sleep(_WORKERS_START)
        return asyncio.run(_post_all(base, target, bodies, clients))


_WORKERS_START = 5.0  # seconds: ample for a worker process to import cdp and start


@contextmanager
def server(
    command: list[str], url: str, target: str, env: dict[str, str], log: IO[bytes] | None = None
) -> Iterator[str]:
    """A server started with `command` on a free port, on the database `url`, with the
    settings `env`: its base URL, once a POST to `target` is answered. Stopped at the end.
    Its log goes to `log`, if given."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, *command, "--port", str(port)],
        # The measured database's own keystore, whatever CDP_KEYSTORE_URL says.
        env={**os.environ, "CDP_DATABASE_URL": url, "CDP_KEYSTORE_URL": "", **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL if log is None else log,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.post(f"{base}{target}", content=b"{}", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"{' '.join(command)} did not start") from None
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _post_all(
    base: str,
    target: str,
    bodies: Iterable[bytes],
    clients: int,
    until: asyncio.Event | None = None,
) -> _Load:
    """Post every body (or as many as there is time for, `until` is set) over `clients`
    kept-alive connections, each waiting for its answer.

    HTTP/1.1 written by hand on asyncio streams: a client library costs more per request
    than the server under test, and on 2 cores it would measure itself."""
    host, port = base.removeprefix("http://").split(":")
    queue = iter(bodies)
    latencies: list[float] = []

    async def post_in_turn() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for body in queue:
                if until is not None and until.is_set():
                    return
                started = time.perf_counter()
                writer.write(
                    b"POST %s HTTP/1.1\r\nHost: %s\r\n"
                    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                    % (target.encode(), host.encode(), len(body), body)
                )
                async with asyncio.timeout(60):  # a server that hangs fails the run
                    status, length = await read_answer(reader)
                    await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                if status not in (200, 202):
                    raise RuntimeError(f"a webhook was answered {status}")
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(post_in_turn() for _ in range(clients)))
    seconds = time.perf_counter() - started
    return _Load(
        rate=len(latencies) / seconds,
        p50=percentile(latencies, 50),
        p99=percentile(latencies, 99),
        longest=max(latencies, default=0.0),
        posted=len(latencies),
    )


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, int]:
    """The status and Content-Length of the answer being read; its body is left unread."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return status, int(value)
    raise RuntimeError(f"an answer without Content-Length: {head[:200]!r}")
