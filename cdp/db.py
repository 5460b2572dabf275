"""Engines, transactions and the few statements that differ between SQLite and PostgreSQL."""

import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from functools import cache, partial
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import msgspec
from sqlalchemy import JSON, Connection, Engine, Executable, Table, case, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from cdp.settings import Settings

_WRITER = "cdp_writer"
# Called for every text value SQLite returns: a partial of str runs in C, a def would not.
_UTF8 = partial(str, encoding="utf-8", errors="replace")


logger = logging.getLogger("cdp.db")
# SQLite: with a Checkpointer running, a commit checkpoints only a log grown this large
# (pages of 4 KiB), in case the checkpointer cannot keep up.
_CHECKPOINT_BEHIND = 16_384


def engine_of(settings: "Settings", *, connections: int, checkpointer: bool = False) -> Engine:
    """The engine of CDP_DATABASE_URL, with every wait bounded as the settings say."""
    return make_engine(
        settings.database_url,
        connections=connections,
        wait=settings.database_pool_timeout,
        connect_timeout=settings.database_connect_timeout,
        statement_timeout=settings.database_statement_timeout,
        checkpointer=checkpointer,
    )


def make_engine(
    url: str,
    *,
    connections: int = 5,
    wait: timedelta = timedelta(seconds=30),
    connect_timeout: timedelta = timedelta(seconds=10),
    statement_timeout: timedelta = timedelta(seconds=30),
    checkpointer: bool = False,
) -> Engine:
    """An engine for `url` holding at most `connections`, waiting for one at most `wait`.

    PostgreSQL gets connect and statement timeouts; SQLite gets WAL, a busy timeout (the
    statement timeout) and explicit transactions. `checkpointer`: a Checkpointer copies
    SQLite's write-ahead log into the database, so commits need not.
    """
    pool = {"pool_size": connections, "max_overflow": 0, "pool_timeout": wait.total_seconds()}
    # JSON columns keep text as text, not \u escapes: what they hold is served as it is.
    # hide_parameters: a failed statement's values (phone numbers, messages) stay out of logs.
    options: dict[str, Any] = {**pool, "json_serializer": _json, "hide_parameters": True}
    if make_url(url).get_backend_name() != "sqlite":
        milliseconds = statement_timeout // timedelta(milliseconds=1)
        connect_args = {
            "connect_timeout": max(1, round(connect_timeout.total_seconds())),
            "options": f"-c statement_timeout={milliseconds}",
            # A server gone silent (a network partition) is noticed in about a minute.
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
            "tcp_user_timeout": 60_000,
        }
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args, **options)
    engine = create_engine(
        url, connect_args={"timeout": statement_timeout.total_seconds()}, **options
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN, so writers can ask for IMMEDIATE.
        dbapi_connection.isolation_level = None
        # Text that is not UTF-8 (only ever written around cdp) reads with U+FFFD, not an error.
        dbapi_connection.text_factory = _UTF8
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # The log's guard triggers give every insert a statement journal: in a temporary
        # file, that cost more than the insert itself.
        cursor.execute("PRAGMA temp_store=MEMORY")
        if checkpointer:
            cursor.execute(f"PRAGMA wal_autocheckpoint={_CHECKPOINT_BEHIND}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        # A writer takes the database lock up front: no deadlock upgrading a read lock.
        writer = connection.get_execution_options().get(_WRITER, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

    return engine


class Checkpointer:
    """Copies SQLite's write-ahead log into the database file from a thread of its own.

    By default the commit that grows the log past 1 000 pages copies it, and that commit
    takes milliseconds instead of a fraction of one. Here no commit waits for it: a
    PASSIVE checkpoint copies what no reader still needs, and never blocks a writer.
    """

    def __init__(self, url: str, every: timedelta = timedelta(seconds=1)) -> None:
        self.url, self.every = url, every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="cdp-checkpointer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        engine = make_engine(self.url, connections=1)
        try:
            while not self._stop.wait(self.every.total_seconds()):
                # Outside any transaction: SQLite refuses to checkpoint inside one.
                connection = engine.raw_connection()
                try:
                    connection.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
                except sqlite3.Error as error:  # the next turn tries again; commits are a backstop
                    logger.warning("checkpoint failed: %s", error)
                finally:
                    connection.close()
        finally:
            engine.dispose()


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A write transaction: committed when the block ends, rolled back if it raises."""
    with engine.connect() as connection:
        connection.execution_options(**{_WRITER: True})
        with connection.begin():
            yield connection


def _json(value: object) -> str:
    return _JSON_ENCODER.encode(value).decode()


# Text as text, not \u escapes: what JSON columns hold is served as it is. Ten times
# faster than json.dumps, and what it writes reads back to the same values.
_JSON_ENCODER = msgspec.json.Encoder()


def _with_json(positions: list[int], row: Sequence[Any]) -> list[Any]:
    """The row with the values at `positions` written as JSON text (None stays NULL)."""
    values = list(row)
    for i in positions:
        if values[i] is not None:
            values[i] = _json(values[i])
    return values


def dialect(connection: Connection | Engine) -> str:
    return connection.dialect.name


def insert(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert new rows through the driver's fastest path: COPY on PostgreSQL, executemany
    on SQLite. Statement building per row cost more than the database's own work."""
    if not rows:
        return
    if len(rows) < _BULK_FROM:
        connection.execute(table.insert(), rows)
        return
    names = list(rows[0])
    pick = itemgetter(*names) if len(names) > 1 else lambda row: (row[names[0]],)
    values: Iterable[Sequence[Any]] = map(pick, rows)
    if as_json := [i for i, name in enumerate(names) if isinstance(table.c[name].type, JSON)]:
        values = map(partial(_with_json, as_json), values)
    quote = connection.dialect.identifier_preparer.quote
    into = f"{quote(table.name)} ({', '.join(map(quote, names))})"
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        if dialect(connection) == "postgresql":
            with cursor.copy(f"COPY {into} FROM STDIN") as copy:
                for row in values:
                    copy.write_row(row)
        else:
            cursor.executemany(f"INSERT INTO {into} VALUES ({', '.join('?' * len(names))})", values)
    finally:
        cursor.close()


_BULK_FROM = 50  # rows: below it, the setup costs more than it saves


def upsert(
    connection: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    key: Sequence[str],
    least: Sequence[str] = (),
    greatest: Sequence[str] = (),
) -> None:
    """INSERT ... ON CONFLICT (key) DO UPDATE: a stored row takes the new values, except
    that the columns in `least` and `greatest` keep the smaller or larger of the two."""
    if not rows:
        return
    statement = _upsert(
        dialect(connection), table, tuple(key), tuple(rows[0]), tuple(least), tuple(greatest)
    )
    connection.execute(statement, rows)


@cache  # building one costs more than running it: it aliases every column of the table
def _upsert(
    dialect: str,
    table: Table,
    key: tuple[str, ...],
    columns: tuple[str, ...],
    least: tuple[str, ...],
    greatest: tuple[str, ...],
) -> Executable:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table)
    new = statement.excluded
    set_: dict[str, Any] = {name: new[name] for name in columns if name not in key}
    for name in least:
        set_[name] = case((new[name] < table.c[name], new[name]), else_=table.c[name])
    for name in greatest:
        set_[name] = case((new[name] > table.c[name], new[name]), else_=table.c[name])
    return statement.on_conflict_do_update(index_elements=list(key), set_=set_)
