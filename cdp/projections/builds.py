"""Projections built anew beside the ones that serve, then put in their place at once.

A projection's tables get shadows named with NEXT (`timeline__next`), made empty from the
models, filled by the projector itself, handed them as its tables (db.Tables: the very
statements that write the live tables, run on the shadows) a batch a transaction,
brought up to the log head, and swapped in in one short transaction under the append
lock: the live table dropped (on SQLite, put aside and dropped afterwards, a little at a
time), its shadow renamed. Readers see the
old projection or the new one, never a half-built one; webhooks wait for the swap alone.
One build of a projection runs at a time across processes (see claimed), and its
progress and end are kept in projection_builds (see run).

Index names are global to a database. PostgreSQL renames the shadow's indexes and
constraints to the models' names in the swap. SQLite cannot rename an index: there a
projection's indexes alternate, from one build to the next, between the models' names
and those names with NEXT (see `_index_name`); what they index never changes.
"""

import fcntl
import logging
import os
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Final

from sqlalchemy import (
    Connection,
    Engine,
    Index,
    MetaData,
    Table,
    bindparam,
    select,
    text,
)
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.schema import CreateIndex, CreateTable, DropTable
from sqlalchemy.sql.elements import conv

from cdp import db
from cdp.log import store
from cdp.log.tables import events
from cdp.privacy import erasure
from cdp.privacy.keystore import Keystore
from cdp.privacy.tables import erasures, pending_erasures
from cdp.projections import schemas
from cdp.projections.runner import BATCH, Projector, built, key_lookup, refold, whole_chats
from cdp.projections.tables import checkpoints, projection_builds
from cdp.tables import NAMING
from cdp.times import now_ms, utc

NEXT: Final = "__next"
OLD: Final = "__old"  # SQLite: a live table put aside by a swap, until discard_old drops it
DISCARD_ROWS: Final = 5000
# Events a transaction of a build projects at most (whole chats may make it more): fewer
# on SQLite, where every writer waits for each.
BUILD_BATCH: Final = {"sqlite": 1000, "postgresql": BATCH}
_SHADOWS: Final = MetaData(naming_convention=NAMING)
# Events left to catch up with at most, for the swap: what webhooks wait for.
SWAP_WITHIN: Final = 1000
# PostgreSQL: how long the swap waits for a table lock (a long query reading a live table
# holds one) before it lets go of the append lock and tries again, SWAP_ATTEMPTS times:
# webhooks never wait behind a slow reader for longer.
SWAP_LOCK_WAIT: Final = "2s"
SWAP_ATTEMPTS: Final = 10

# Told the events done and the events to do, as a build goes.
Report = Callable[[int, int], None]


OWNER: Final = f"{socket.gethostname()}:{os.getpid()}"
_LOG: Final = logging.getLogger("cdp.builds")


class BuildRunning(Exception):
    """Another build of a projection runs (in this process or another): says which."""

    def __init__(self, name: str, owner: str, started_at: int, done: int, total: int) -> None:
        self.name = name
        super().__init__(
            f"projection {name} is being built by {owner} since {_iso(started_at)} "
            f"({done} of {total} events)"
        )


def needed(connection: Connection, projectors: Sequence[Projector]) -> list[Projector]:
    """Those of `projectors` whose tables were never built, or were built by another version
    of them or under other settings: to build anew. On an empty log, none: each starts
    with the log's first events (see runner.project)."""
    if store.head(connection) == 0:
        return []
    rows = {row.name: row for row in connection.execute(select(checkpoints))}
    return [
        projector
        for projector in projectors
        if (row := rows.get(projector.name)) is None
        or (row.version, row.shape) != (projector.version, projector.shape)
    ]


def with_dependencies(
    connection: Connection, registry: Sequence[Projector], chosen: Sequence[Projector]
) -> list[Projector]:
    """`chosen`, with the projections whose tables they read (see Projector.reads), and
    those that read theirs if they need building too (see needed): in the registry's order.

    One that reads another's tables is built with it, from its shadows: the live ones are
    ahead of a build, and what a build folds on from must be what it has folded so far."""
    names = {projector.name for projector in chosen}
    names |= {name for p in registry if p.name in names for name in p.reads}
    readers = {p.name for p in registry if names & set(p.reads)}
    names |= readers & {projector.name for projector in needed(connection, registry)}
    return [projector for projector in registry if projector.name in names]


class Stopped(Exception):
    """A build given up on request (the server stopping): the live projection serves on."""


def run(
    engine: Engine,
    projectors: Sequence[Projector],
    keystore: Keystore,
    *,
    report: Report | None = None,
    on_claim: Callable[[], None] | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Build `projectors` anew (see build), holding the right to across processes (BuildRunning if
    another holds it; `on_claim` is called once it is held and the build recorded as
    running) and recording the build's progress and end in projection_builds."""
    names = [projector.name for projector in projectors]
    with claimed(engine, names):
        started = now_ms()
        _record(engine, names, state="running", started_at=started, done=0, total=0)
        if on_claim is not None:
            on_claim()

        def beat(done: int, total: int) -> None:
            _record(engine, names, heartbeat_at=now_ms(), done=done, total=total)
            if report is not None:
                report(done, total)

        def done(connection: Connection, head: int) -> None:
            values = {"state": "done", "finished_at": now_ms(), "done": head, "total": head}
            _FINISH.run(connection, [{"name": name, **values} for name in names])

        try:
            return build(engine, projectors, keystore, report=beat, stop=stop, swapped=done)
        except BaseException as error:
            _record(engine, names, state="failed", finished_at=now_ms(), error=repr(error)[:500])
            raise


_FINISH: Final = db.Prepared(
    projection_builds.update()
    .where(projection_builds.c.name == bindparam("name"))
    .values({name: bindparam(name) for name in ("state", "finished_at", "done", "total")})
)


def _record(engine: Engine, names: Sequence[str], **values: object) -> None:
    """Write the build's row of each of `names`: anew when it starts running."""
    with db.writing(engine) as connection:
        if values.get("state") == "running":
            connection.execute(
                projection_builds.delete().where(projection_builds.c.name.in_(names))
            )
            start = {"owner": OWNER, "heartbeat_at": values["started_at"], **values}
            connection.execute(projection_builds.insert(), [{"name": n, **start} for n in names])
        else:
            connection.execute(
                projection_builds.update().where(projection_builds.c.name.in_(names)).values(values)
            )


@contextmanager
def claimed(engine: Engine, names: Sequence[str]) -> Iterator[None]:
    """Hold the right to build the projections `names` while the block runs, across every
    process on this database: BuildRunning, naming the build that holds it, if taken. Released when
    the block ends or the process dies (a PostgreSQL session's advisory lock; on SQLite, a
    lock on a file beside the database), so a build killed midway never blocks the next."""
    with ExitStack() as held:
        if engine.dialect.name == "postgresql":
            # A connection of its own, outside the pool the build itself draws on.
            alone = db.make_engine(engine.url.render_as_string(hide_password=False), connections=1)
            held.callback(alone.dispose)
            connection = held.enter_context(alone.connect())
            for name in names:
                lock = {"lock": _advisory_lock_id(name)}
                if not connection.scalar(text("SELECT pg_try_advisory_lock(:lock)"), lock):
                    raise running_build(engine, name)
                held.callback(connection.execute, text("SELECT pg_advisory_unlock(:lock)"), lock)
            connection.commit()  # a session's lock: no transaction left open meanwhile
        else:
            database = engine.url.database
            assert database is not None
            for name in names:
                file = held.enter_context(_lock_file(database, name).open("a"))
                try:
                    fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise running_build(engine, name) from None
        yield


# The advisory locks of builds: a range of their own, apart from the append lock's.
_LOCK_KEY: Final = 0x63647001 << 32


def _advisory_lock_id(name: str) -> int:
    return _LOCK_KEY + zlib.crc32(name.encode())


def _lock_file(database: str, name: str) -> Path:
    return Path(f"{database}.build-{name}.lock")


def _held(connection: Connection, name: str) -> bool:
    """Does a process hold the right to build `name` (see claimed)? Asked without taking it."""
    if connection.dialect.name == "postgresql":
        lock = _advisory_lock_id(name)
        found = connection.scalar(_ADVISORY_HELD, {"high": lock >> 32, "low": lock & 0xFFFF_FFFF})
        return bool(found)
    database = connection.engine.url.database
    path = _lock_file(database or "", name)
    if not path.exists():
        return False
    with path.open("a") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(file, fcntl.LOCK_UN)
        return False


_ADVISORY_HELD: Final = text(
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND classid = CAST(:high AS oid) AND objid = CAST(:low AS oid) AND objsubid = 1)"
)


def running_build(engine: Engine, name: str) -> BuildRunning:
    """The BuildRunning that names the build of `name` running, as projection_builds records it."""
    with engine.connect() as connection:
        row = connection.execute(
            select(projection_builds).where(projection_builds.c.name == name)
        ).first()
    if row is None:
        return BuildRunning(name, "another process", now_ms(), 0, 0)
    return BuildRunning(name, row.owner, row.started_at, row.done, row.total)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def build(
    engine: Engine,
    projectors: Sequence[Projector],
    keystore: Keystore,
    *,
    report: Report | None = None,
    stop: threading.Event | None = None,
    swapped: Callable[[Connection, int], None] | None = None,
) -> int:
    """Build the projections of `projectors` anew beside the live ones and swap them in;
    the log head they reach. Stopped, between two batches, once `stop` is set. `swapped`
    is called in the swap's transaction, with the head reached.

    Webhooks go on being logged and projected into the live tables meanwhile. The shadows
    are filled from the log up to the head of the start, a transaction a batch of whole
    chats, then catch up with what was logged since, a batch at a time, until little is
    left; only then is the append lock taken, for the rest and the swap: webhooks wait for
    that alone. Chats erased meanwhile are folded again in the shadows as they go, a step
    at a time, and the swap folds again only those erased since.
    """

    def progress(done: int, total: int) -> None:
        if stop is not None and stop.is_set():
            raise Stopped(f"the build of {', '.join(p.name for p in projectors)} was stopped")
        if report is not None:
            report(done, total)

    tables = [table for projector in projectors for table in projector.tables]
    shadows = {table: shadow(table) for table in tables}
    written = db.Tables.replacing(shadows)  # what the projectors are handed to fill
    started = now_ms()
    size = BUILD_BATCH[engine.dialect.name]
    discard_old(engine, tables)  # left by a build stopped after its swap
    with db.writing(engine) as connection:
        create(connection, tables)
        erasing = sorted(set(connection.scalars(select(pending_erasures.c.profile_uuid))))
    erased = _Erased(started, erasing)
    with engine.connect() as reading:
        reached = store.head(reading)
        done = 0
        replayed = store.replay(reading, key_lookup(reading, keystore), until=reached)
        for batch in whole_chats(replayed, size):
            with db.writing(engine) as connection:
                for projector in projectors:
                    projector.apply(connection, batch, fresh=True, tables=written)
            done += len(batch)
            progress(done, reached)
    try:
        db.analyze(engine, shadows.values())  # before they serve, not once autovacuum gets there
    except SQLAlchemyError as error:
        _LOG.warning("the new tables' statistics are left to autovacuum: %s", error)
    clean: dict[str, int] = {}  # chats folded again since their erasure reached them
    while True:
        for step in erased.steps(engine, clean):
            with db.writing(engine) as connection:
                refold(connection, projectors, keystore, sorted(step), reached, tables=written)
            clean.update(step)
            progress(reached, reached)
        with engine.connect() as connection:
            head = store.head(connection)
        if head - reached <= SWAP_WITHIN:
            break
        while reached < head:
            with db.writing(engine) as connection:
                reached = _project_since(connection, projectors, keystore, reached, head, written)
            progress(reached, head)
    for attempt in range(1, SWAP_ATTEMPTS + 1):
        try:
            with db.writing(engine) as connection:
                if connection.dialect.name == "postgresql":  # see SWAP_LOCK_WAIT
                    connection.execute(text(f"SET LOCAL lock_timeout = '{SWAP_LOCK_WAIT}'"))
                store.lock(connection)
                head, at = store.head(connection), reached
                while at < head:
                    at = _project_since(connection, projectors, keystore, at, head, written)
                again = sorted(erased.since(connection, clean))
                refold(connection, projectors, keystore, again, tables=written)
                swap(connection, tables)
                built(connection, projectors, head)
                if swapped is not None:
                    swapped(connection, head)
            break
        except OperationalError as error:
            # A lock waited for too long, or a deadlock with a read that holds one table and
            # wants another this swap holds: PostgreSQL ended the swap's transaction, and the
            # next attempt finds the read gone.
            timed_out = getattr(error.orig, "sqlstate", None) == "55P03"
            if not (timed_out or db.gave_way(error)) or attempt == SWAP_ATTEMPTS:
                raise
            progress(reached, reached)  # stopped, if asked to; else the swap is tried again
            time.sleep(attempt)
    try:
        discard_old(engine, tables)
    except SQLAlchemyError as error:  # swapped in all the same; the next build discards them
        _LOG.warning("the tables put aside by a swap stay until the next build: %s", error)
    if report is not None:  # swapped in: too late to stop
        report(head, head)
    return head


def _project_since(
    connection: Connection,
    projectors: Sequence[Projector],
    keystore: Keystore,
    after: int,
    until: int,
    tables: db.Tables,
) -> int:
    """Project a batch of the events after `after` up to `until` into `tables`; the
    position reached."""
    size = BUILD_BATCH[connection.dialect.name]
    batch = store.since(
        connection, after=after, until=until, limit=size, keys=key_lookup(connection, keystore)
    )
    for projector in projectors:
        projector.apply(connection, batch, fresh=False, tables=tables)
    return batch[-1].position if batch else until


@dataclass(frozen=True)
class _Erased:
    """The chats that erasures reached since a build began (ms `started`), or of the
    profiles being erased (`erasing`) then: the shadows may hold what their keys opened."""

    started: int
    erasing: list[str]

    def since(self, connection: Connection, clean: Mapping[str, int]) -> dict[str, int]:
        """Each of those chats, and when its erasure was recorded: but those an erasure
        has still to reach (it folds the live tables, which the shadows are then), and
        those `clean` says were folded again since that erasure reached them."""
        erased = erasures.c.erased_at >= self.started
        if self.erasing:
            erased = erased | db.any_of(erasures.c.profile_uuid, "erasing")
        query = select(erasures.c.profile_uuid, erasures.c.erased_at, erasures.c.chats)
        rows = connection.execute(query.where(erased), {"erasing": self.erasing}).all()
        if not rows:
            return {}
        profiles = {"profiles": [row.profile_uuid for row in rows]}
        pending = select(pending_erasures.c.chat_uuid).where(
            db.any_of(pending_erasures.c.profile_uuid, "profiles")
        )
        waiting = set(connection.scalars(pending, profiles))
        return {
            chat: row.erased_at
            for row in rows
            for chat in row.chats
            if chat not in waiting and clean.get(chat) != row.erased_at
        }

    def steps(self, engine: Engine, clean: Mapping[str, int]) -> Iterator[dict[str, int]]:
        """Those chats (see `since`), a step of an erasure's size at a time."""
        with engine.connect() as connection:
            todo = self.since(connection, clean)
        chats = sorted(todo)
        size = erasure.STEP_CHATS
        for at in range(0, len(chats), size):
            yield {chat: todo[chat] for chat in chats[at : at + size]}


@cache
def shadow(table: Table) -> Table:
    """The table a build fills for `table`: its columns and constraints, named with NEXT.
    One object for every build, so that the statements compiled for it are compiled once."""
    copy = table.to_metadata(_SHADOWS, name=table.name + NEXT)
    copy.indexes.clear()  # made by create(), under names that depend on the database's
    for constraint in copy.constraints:  # names are global on PostgreSQL: pk_timeline__next
        if isinstance(constraint.name, str):
            named = constraint.name.replace(table.name, copy.name)
            constraint.name = conv(named if named != constraint.name else named + NEXT)
    return copy


def create(connection: Connection, tables: Sequence[Table]) -> None:
    """Empty shadows of `tables`, with every index the models give them; what an earlier
    build left (one stopped before its swap) is dropped first."""
    for table in tables:
        connection.execute(DropTable(shadow(table), if_exists=True))
        connection.execute(CreateTable(shadow(table)))
        if connection.dialect.name == "postgresql":  # how a column is stored, as migrated
            for column in table.columns:
                if storage := column.info.get("postgresql_storage"):
                    connection.execute(
                        text(
                            f'ALTER TABLE "{shadow(table).name}" ALTER COLUMN "{column.name}" '
                            f"SET STORAGE {storage}"
                        )
                    )
    for table in tables:
        ddl = shadow(table).to_metadata(MetaData())  # what the indexes attach to, then go
        for index in table.indexes:
            columns = [ddl.c[column.name] for column in index.columns]
            name = _index_name(connection, index.name or "")
            # With what each database is given of it: a partial index's condition, say.
            made = Index(name, *columns, unique=index.unique, **index.dialect_kwargs)
            connection.execute(CreateIndex(made))


def swap(connection: Connection, tables: Sequence[Table]) -> None:
    """Put each shadow of `tables` in its table's place: in the caller's transaction, which
    holds the append lock, so that no webhook is projected into a table being dropped.

    PostgreSQL drops the live table at once (its files go at commit). SQLite would free
    every page of it before the commit, with every writer waiting: there the live table is
    renamed with OLD, and discard_old empties and drops it afterwards, a little at a time."""
    postgresql = connection.dialect.name == "postgresql"
    for table in tables:
        if postgresql:
            connection.execute(DropTable(table))
        else:
            connection.execute(text(f'ALTER TABLE "{table.name}" RENAME TO "{table.name}{OLD}"'))
        connection.execute(text(f'ALTER TABLE "{table.name}{NEXT}" RENAME TO "{table.name}"'))
        if postgresql:
            for (index,) in connection.execute(_INDEXES_OF, {"table": table.name}):
                canonical = _canonical(index, table.name)
                if canonical != index:
                    connection.execute(text(f'ALTER INDEX "{index}" RENAME TO "{canonical}"'))


def discard_old(engine: Engine, tables: Sequence[Table]) -> None:
    """SQLite: empty the tables a swap put aside (see swap), DISCARD_ROWS rows a transaction,
    then drop them: no transaction holds the write lock for long."""
    if engine.dialect.name != "sqlite":
        return
    for table in tables:
        old = f'"{table.name}{OLD}"'
        with engine.connect() as connection:
            there = connection.execute(
                text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :name"),
                {"name": table.name + OLD},
            ).first()
        if there is None:
            continue
        gone = DISCARD_ROWS
        while gone == DISCARD_ROWS:
            with db.writing(engine) as connection:
                gone = connection.execute(
                    text(f"DELETE FROM {old} WHERE rowid IN (SELECT rowid FROM {old} LIMIT :n)"),
                    {"n": DISCARD_ROWS},
                ).rowcount
        with db.writing(engine) as connection:
            connection.execute(text(f"DROP TABLE {old}"))


_INDEXES_OF: Final = text(
    "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
    "WHERE i.indrelid = CAST(:table AS regclass)"
)


def _canonical(name: str, table: str) -> str:
    """The models' name of a shadow's index or constraint: `ix_timeline_chat_uuid_order__next`
    is `ix_timeline_chat_uuid_order`, `pk_timeline__next` is `pk_timeline`."""
    return name.replace(table + NEXT, table).removesuffix(NEXT)


def _index_name(connection: Connection, name: str) -> str:
    """The name a shadow's index takes: with NEXT on PostgreSQL (renamed in the swap); on
    SQLite, whichever of the models' name and that name with NEXT the live index is not."""
    if connection.dialect.name == "postgresql":
        return name + NEXT
    taken = connection.execute(
        text("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = :name"), {"name": name}
    ).first()
    return name + NEXT if taken else name


def states(connection: Connection, projectors: Sequence[Projector]) -> list[schemas.Projection]:
    """Each projection: how far it has got, what built it, and its latest build."""
    # Who holds the right to build, asked before the builds are read as well as after. A
    # build records its end, then lets go: one read as running whose holder held the right
    # before the read, or holds it now, is alive; only one held at neither was interrupted.
    # While the right is held the projection is rebuilding, whatever its build's row says:
    # a build recorded as done may still be dropping the tables it put aside (SQLite).
    held = {projector.name: _held(connection, projector.name) for projector in projectors}
    head = store.head(connection)
    marks = {row.name: row for row in connection.execute(select(checkpoints))}
    latest = {row.name: row for row in connection.execute(select(projection_builds))}
    now = now_ms()
    found = []
    for projector in projectors:
        mark, last = marks.get(projector.name), latest.get(projector.name)
        position = mark.position if mark is not None else 0
        holding = _held(connection, projector.name)
        running = last is not None and last.state == "running"
        alive = running and (held[projector.name] or holding)
        build = None if last is None else _build(last, alive)
        if holding or (build is not None and build.state == "running"):
            status = "rebuilding"
        elif mark is None:
            status = "new"
        elif (mark.version, mark.shape) != (projector.version, projector.shape):
            status = "stale"
        else:
            status = "live"
        found.append(
            schemas.Projection(
                name=projector.name,
                status=status,
                version=projector.version,
                built_version=None if mark is None else mark.version,
                shape=projector.shape,
                built_shape=None if mark is None else mark.shape,
                position=position,
                head=head,
                lag=head - position,
                lag_seconds=_lag_seconds(connection, position, head, now),
                build=build,
            )
        )
    return found


def _build(row: Any, alive: bool) -> schemas.Build:
    """A build as projection_builds records it: one recorded as running whose process no
    longer holds the right to build (see claimed) was interrupted."""
    state = "interrupted" if row.state == "running" and not alive else row.state
    return schemas.Build(
        state=state,
        owner=row.owner,
        started_at=utc(row.started_at),
        heartbeat_at=utc(row.heartbeat_at),
        finished_at=None if row.finished_at is None else utc(row.finished_at),
        done=row.done,
        total=row.total,
        error=row.error,
    )


def _lag_seconds(connection: Connection, position: int, head: int, now: int) -> float:
    """How long the oldest event the projection lacks has waited: 0 when it lacks none."""
    if position >= head:
        return 0.0
    received = connection.scalar(
        select(events.c.received_at)
        .where(events.c.position > position)
        .order_by(events.c.position)
        .limit(1)
    )
    return 0.0 if received is None else max(now - received, 0) / 1000
