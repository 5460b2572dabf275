"""Engines, transactions and the few statements that differ between SQLite and PostgreSQL."""

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from functools import cache, partial
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Final

import msgspec
from sqlalchemy import (
    JSON,
    BindParameter,
    ClauseElement,
    Column,
    ColumnElement,
    Connection,
    Dialect,
    Engine,
    FromClause,
    Row,
    Select,
    String,
    Table,
    TypeDecorator,
    any_,
    bindparam,
    case,
    cast,
    column,
    create_engine,
    event,
    func,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import visitors
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.selectable import SelectBase
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeEngine

if TYPE_CHECKING:
    from cdp.settings import Settings

_WRITER = "cdp_writer"
# A writer's transaction on SQLite: how long its BEGIN IMMEDIATE waits for the write lock.
_LOCK_WAIT = "cdp_lock_wait"
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
        synchronous=settings.sqlite_synchronous,
    )


def make_engine(
    url: str,
    *,
    connections: int = 5,
    wait: timedelta = timedelta(seconds=30),
    connect_timeout: timedelta = timedelta(seconds=10),
    statement_timeout: timedelta = timedelta(seconds=30),
    checkpointer: bool = False,
    synchronous: str = "full",
) -> Engine:
    """An engine for `url` holding at most `connections`, waiting for one at most `wait`.

    PostgreSQL gets connect and statement timeouts; SQLite gets WAL, a busy timeout (the
    statement timeout) and explicit transactions. `checkpointer`: a Checkpointer copies
    SQLite's write-ahead log into the database, so commits need not. `synchronous`: how
    SQLite makes a commit durable (see SYNCHRONOUS). SQLite overwrites what it deletes
    with zeros (secure_delete), so that an erased customer's rows are not left in freed
    space (see empty_log).
    """
    if synchronous not in SYNCHRONOUS:
        known = " or ".join(SYNCHRONOUS)
        raise ValueError(f"synchronous must be {known}, got {synchronous!r}")
    pool = {"pool_size": connections, "max_overflow": 0, "pool_timeout": wait.total_seconds()}
    # JSON columns keep text as text, not \u escapes: what they hold is served as it is.
    # hide_parameters: a failed statement's values (phone numbers, messages) stay out of logs.
    options: dict[str, Any] = {**pool, "json_serializer": _json, "hide_parameters": True}
    statement_ms = statement_timeout // timedelta(milliseconds=1)
    if make_url(url).get_backend_name() != "sqlite":
        connect_args = {
            "connect_timeout": max(1, round(connect_timeout.total_seconds())),
            # No JIT: cdp's statements read a few rows each, and a planner that misjudges
            # one (a batch's rows given as JSON, say) would compile it for tens of ms.
            "options": f"-c statement_timeout={statement_ms} -c jit=off",
            # A server gone silent (a network partition) is noticed in about a minute.
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
            "tcp_user_timeout": 60_000,
        }
        engine = create_engine(url, connect_args=connect_args, **options)
        _ping_when_idle(engine)
        return engine
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
        cursor.execute(f"PRAGMA synchronous={SYNCHRONOUS[synchronous]}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # The log's guard triggers give every insert a statement journal: in a temporary
        # file, that cost more than the insert itself.
        cursor.execute("PRAGMA temp_store=MEMORY")
        if checkpointer:
            cursor.execute(f"PRAGMA wal_autocheckpoint={_CHECKPOINT_BEHIND}")
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        # A writer takes the database lock up front: no deadlock upgrading a read lock.
        options = connection.get_execution_options()
        if not options.get(_WRITER, False):
            connection.exec_driver_sql("BEGIN")
            return
        within: timedelta | None = options.get(_LOCK_WAIT)
        if within is None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            return
        # This transaction waits for the lock `within` at most; every other, as configured.
        connection.exec_driver_sql(f"PRAGMA busy_timeout = {milliseconds(within)}")
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        finally:
            connection.exec_driver_sql(f"PRAGMA busy_timeout = {statement_ms}")

    return engine


# PRAGMA synchronous, by the name CDP_SQLITE_SYNCHRONOUS gives it. In WAL mode, FULL writes
# the log to disk at every commit, so that a commit answered survives a power cut or an OS
# crash; NORMAL only at checkpoints, so the last commits before one may be lost (the
# database stays sound, and a process killed outright loses nothing either way).
SYNCHRONOUS: Final = {"full": "FULL", "normal": "NORMAL"}


def milliseconds(wait: timedelta) -> int:
    """A wait in whole milliseconds, one at least: to a database, 0 means "no limit" or
    "not at all", never "as short as can be"."""
    return max(1, wait // timedelta(milliseconds=1))


def gave_way(error: BaseException) -> bool:
    """Did PostgreSQL end the transaction so that another could go on (a deadlock's victim,
    a serialization failure)? Running it again may succeed."""
    return getattr(getattr(error, "orig", None), "sqlstate", None) in GAVE_WAY


GAVE_WAY: Final = ("40001", "40P01")


def lock_timed_out(error: BaseException) -> bool:
    """Did a statement fail because a lock it waited for was not had in time (SQLite's
    write lock, a PostgreSQL lock past its lock_timeout)?"""
    driver = getattr(error, "orig", None)
    return getattr(driver, "sqlite_errorname", None) in ("SQLITE_BUSY", "SQLITE_LOCKED") or (
        getattr(driver, "sqlstate", None) == "55P03"
    )


# How long emptying the write-ahead log waits for readers of an older snapshot, a try, and
# how many tries: writers wait while it does.
EMPTY_LOG_WAIT_MS: Final = 100
EMPTY_LOG_TRIES: Final = 10


def empty_log(engine: Engine) -> bool:
    """SQLite: copy the write-ahead log into the database and truncate it, so that the
    pages a change replaced (an erasure's) are in no file any more; whether it was done.
    A reader of an older snapshot in the way is waited for EMPTY_LOG_WAIT_MS, and tried
    again, EMPTY_LOG_TRIES times, after which the log stays (reused from its start by the
    next checkpoint that finds no reader). Nothing to do on PostgreSQL."""
    if engine.dialect.name != "sqlite":
        return True
    raw = engine.raw_connection()
    try:
        driver = raw.driver_connection
        assert driver is not None
        (waited,) = driver.execute("PRAGMA busy_timeout").fetchone()
        driver.execute(f"PRAGMA busy_timeout={EMPTY_LOG_WAIT_MS}")
        try:
            for attempt in range(EMPTY_LOG_TRIES):
                (busy, _, _) = driver.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if not busy:
                    return True
                time.sleep(EMPTY_LOG_WAIT_MS / 1000 * (attempt + 1) / EMPTY_LOG_TRIES)
            return False
        finally:
            driver.execute(f"PRAGMA busy_timeout={waited}")
    finally:
        raw.close()


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
                try:
                    # Outside any transaction: SQLite refuses to checkpoint inside one.
                    connection = engine.raw_connection()
                    try:
                        connection.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
                    finally:
                        connection.close()
                except Exception as error:  # the next turn tries again; commits are a backstop
                    logger.warning("checkpoint failed: %s", " ".join(str(error).split()))
        finally:
            engine.dispose()


# A connection back in use within this long is not pinged first (see _ping_when_idle).
_FRESH = 1.0  # seconds


def _ping_when_idle(engine: Engine) -> None:
    """Ping a connection before it is used again, as pool_pre_ping does, but only one that
    has sat idle: under load, a round trip per transaction was a fifth of a small one's.

    A server that went away while a connection was in steady use fails that connection's
    next statement instead; the error invalidates it, and its transaction is not committed.
    """

    @event.listens_for(engine, "checkin")
    def _idle(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < _FRESH:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:  # the pool connects anew
            raise DisconnectionError(str(error)) from error


@contextmanager
def writing(
    engine: Engine,
    *,
    pipeline: bool = False,
    commit: bool = True,
    within: timedelta | None = None,
) -> Iterator[Connection]:
    """A write transaction: committed when the block ends (rolled back instead if not
    `commit`), rolled back if it raises. On SQLite it takes the write lock as it begins, so
    that it never has to trade a snapshot it read for one it writes (SQLite refuses that at
    once, without waiting, when another connection wrote in between); with `within`, it
    waits for that lock this long at most (else CDP_DATABASE_STATEMENT_TIMEOUT), then raises
    an error that lock_timed_out() tells.

    `pipeline`: on PostgreSQL, statements are sent without waiting for the answers of those
    whose rows nobody reads (psycopg's pipeline mode, where libpq has it); a small
    transaction is bound by its round trips to the server far more than by its work. Only
    Prepared statements may run in such a block: Core's results have no rows in a pipeline.
    """
    with engine.connect() as connection:
        connection.execution_options(**{_WRITER: True, _LOCK_WAIT: within})
        with connection.begin() as transaction:
            if not commit:
                yield connection
                transaction.rollback()
            else:
                with pipelined(connection, pipeline):
                    yield connection


def analyze(engine: Engine, tables: Iterable[Table]) -> None:
    """PostgreSQL: VACUUM (ANALYZE) tables just filled in bulk, as autovacuum would some
    time later: the planner's statistics, and the visibility map without which a count
    that could read an index alone reads every row too. Nothing on SQLite. However long
    it takes: no statement timeout."""
    if engine.dialect.name != "postgresql":
        return
    with engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        connection.execute(text("SET statement_timeout = 0"))
        try:
            for table in tables:
                connection.execute(text(f'VACUUM (ANALYZE) "{table.name}"'))
        finally:
            connection.execute(text("RESET statement_timeout"))


@contextmanager
def pipelined(connection: Connection, pipeline: bool = True) -> Iterator[None]:
    """Within a write transaction: the statements of the block pipelined, as writing() does
    with `pipeline` (on PostgreSQL where libpq has it; as they are otherwise)."""
    if pipeline and dialect(connection) == "postgresql" and _pipelines():
        driver = connection.connection.driver_connection
        with (
            _raised_as_sqlalchemy(connection, "(the statements of a pipeline)"),
            driver.pipeline(),  # type: ignore[union-attr]
        ):
            yield
    else:
        yield


@cache
def _pipelines() -> bool:
    """Does the installed libpq have pipeline mode (version 14 on)?"""
    from psycopg import Pipeline

    return Pipeline.is_supported()


def _pipelined(connection: Connection) -> bool:
    driver = connection.connection.driver_connection
    return dialect(connection) == "postgresql" and driver.pgconn.pipeline_status != 0  # type: ignore[union-attr]


def _json(value: object) -> str:
    return _JSON_ENCODER.encode(value).decode()


# Text as text, not \u escapes: what JSON columns hold is served as it is. Ten times
# faster than json.dumps, and what it writes reads back to the same values.
_JSON_ENCODER = msgspec.json.Encoder()
_JSON_DECODER = msgspec.json.Decoder()


def _with_json(positions: list[int], row: Sequence[Any]) -> list[Any]:
    """The row with the values at `positions` written as JSON text (None stays NULL)."""
    values = list(row)
    for i in positions:
        if values[i] is not None:
            values[i] = _json(values[i])
    return values


def bounded(
    connection: Connection,
    query: Select[Any],
    *,
    limit: int,
    max_bytes: int,
    weight: Callable[[Row[Any]], int],
) -> tuple[list[Row[Any]], bool]:
    """The rows of `query` in its order, read as they stream in: `limit` at most, and no more
    than `max_bytes` of what `weight` counts of each (one row at least, however heavy); and
    whether more are left. A page of large bodies must not hold a gigabyte in the server."""
    rows: list[Row[Any]] = []
    size = 0
    with connection.execute(query.limit(limit + 1).execution_options(yield_per=16)) as result:
        for row in result:
            heavy = weight(row)
            if len(rows) == limit or (rows and size + heavy > max_bytes):
                return rows, True
            rows.append(row)
            size += heavy
    return rows, False


def dialect(connection: Connection | Engine) -> str:
    return connection.dialect.name


class _Among(ColumnElement[bool]):
    """`column` is one of the values of a list parameter (no type of its own: a Boolean
    would be compared with 1 on SQLite, and no index would serve it)."""

    inherit_cache = True
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("values", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, column: ColumnElement[Any], values: BindParameter[Any]) -> None:
        self.column, self.values = column, values


def any_of(column: ColumnElement[Any], name: str) -> ColumnElement[bool]:
    """`column` is one of the values of the list parameter `name`: one bound value, however
    long the list (`IN (...)` binds one a value, and a database takes some tens of thousands
    at most), so the statement compiles once. In a Prepared statement or any other."""
    return _Among(column, bindparam(name, type_=_Listed(column.type)))


class _Listed(TypeDecorator[list[Any]]):
    """A list of values given as one parameter (see any_of): an array on PostgreSQL, JSON
    text on SQLite, which has no arrays."""

    impl = String
    cache_ok = True

    def __init__(self, item: TypeEngine[Any]) -> None:
        super().__init__()
        self.item = item

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.ARRAY(self.item))
        return dialect.type_descriptor(String())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if dialect.name == "sqlite" and value is not None:
            return _json(list(value))
        return value


def records(name: str, dialect: str, columns: Mapping[str, Any]) -> FromClause:
    """A table of rows given as one parameter, `name`: a list of dicts with the keys of
    `columns` (name: SQL type), sent as JSON text. Each row of a batch can then carry its
    own values (a chat and the time from which to read it, say) into one statement, which
    compiles once however many rows there are. For Prepared statements built per database
    (see Prepared), since each database reads JSON its own way."""
    given = bindparam(name, type_=JSON)
    if dialect == "postgresql":
        typed = [column(key, type_) for key, type_ in columns.items()]
        rows = func.jsonb_to_recordset(cast(given, postgresql.JSONB)).table_valued(*typed)
        return rows.render_derived(name, with_types=True)
    each = func.json_each(given).table_valued("value")
    picked = [func.json_extract(each.c.value, f"$.{key}").label(key) for key in columns]
    return select(*picked).select_from(each).subquery(name)


@compiles(_Among)
def _among_as_array(element: _Among, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.column == any_(element.values), **kw)


@compiles(_Among, "sqlite")
def _among_as_json(element: _Among, compiler: SQLCompiler, **kw: Any) -> str:
    listed = func.json_each(element.values).table_valued("value")
    return compiler.process(element.column.in_(select(listed.c.value)), **kw)


# Positional parameters on both, so that executemany takes plain tuples.
_DIALECTS: Final[dict[str, Callable[[], Dialect]]] = {
    "sqlite": sqlite.pysqlite.dialect,
    "postgresql": lambda: postgresql.psycopg.dialect(paramstyle="format"),  # type: ignore[no-untyped-call]
}


@dataclass(frozen=True, slots=True)
class _Form:
    """A statement as one database runs it: its SQL, how to lay out its parameters in the
    order the SQL takes them, and the result columns to read as JSON."""

    sql: str
    values: Callable[[Mapping[str, Any]], Sequence[Any]]
    columns: tuple[str, ...]  # of the rows a query returns
    json_columns: tuple[int, ...]


def _layout(compiled: SQLCompiler, dialect: str) -> Callable[[Mapping[str, Any]], Sequence[Any]]:
    """What turns given values into the statement's parameters: itemgetter, which runs in
    C, with the statement's own constants put in and JSON written as text."""
    names = tuple(compiled.positiontup or ())
    binds = [compiled.binds[name] for name in names]
    constants = {i: bind.value for i, bind in enumerate(binds) if not bind.required}
    pick: Callable[[Mapping[str, Any]], Sequence[Any]]
    if constants:  # a literal in the statement, coalesce(..., 0): never on a hot path
        pick = lambda given: [  # noqa: E731
            constants[i] if i in constants else given[name] for i, name in enumerate(names)
        ]
    elif len(names) > 1:
        pick = itemgetter(*names)
    else:
        pick = lambda given: tuple(given[name] for name in names)  # noqa: E731
    as_json = [i for i, bind in enumerate(binds) if _as_json(bind.type, dialect)]
    return partial(_picked_with_json, pick, as_json) if as_json else pick


def _picked_with_json(
    pick: Callable[[Mapping[str, Any]], Sequence[Any]], as_json: list[int], given: Mapping[str, Any]
) -> list[Any]:
    return _with_json(as_json, pick(given))


def _as_json(type_: Any, dialect: str) -> bool:
    """Is a value of this type given to the driver as JSON text? (JSON columns, and lists
    on SQLite, which has no arrays.)"""
    return isinstance(type_, JSON) or (isinstance(type_, _Listed) and dialect == "sqlite")


@dataclass(frozen=True, slots=True)
class Tables:
    """The tables statements run on: the tables of the models, but for those given a table
    in their place. A build hands the projectors it builds the shadows of their tables
    (`timeline__next` for `timeline`, see cdp.projections.builds), so that they fill those
    with the very statements that write the live ones; everywhere else, LIVE."""

    instead: Mapping[str, Table]  # by the name of the table each stands in for
    key: tuple[tuple[str, str], ...]  # names the set, for the forms compiled for it

    @classmethod
    def replacing(cls, tables: Mapping[Table, Table]) -> "Tables":
        """Each of `tables` run on as the table it maps to."""
        instead = {table.name: other for table, other in tables.items()}
        return cls(instead, tuple(sorted((name, t.name) for name, t in instead.items())))

    def __getitem__(self, table: Table) -> Table:
        """The table run on for `table`."""
        return self.instead.get(table.name, table)


LIVE: Final = Tables({}, ())


def _replaced(statement: ClauseElement, tables: Mapping[str, Table]) -> ClauseElement:
    """`statement` with every table of `tables`' names, and every column of one, replaced."""

    def replace(element: Any, **_: Any) -> Any:
        if isinstance(element, Table):
            return tables.get(element.name)
        if isinstance(element, Column) and isinstance(element.table, Table):
            shadow = tables.get(element.table.name)
            return None if shadow is None else shadow.c[element.key]
        return None

    replaced = visitors.replacement_traverse(statement, {}, replace)
    assert isinstance(replaced, ClauseElement)
    return replaced


class Prepared:
    """A Core statement compiled once per database and run on the driver's own cursor; or
    a function that builds one for a database (its name), where they must differ.

    On the write path SQLAlchemy's work per execution (a cache key, processing every
    parameter and every row) cost more than running the statements. The SQL is still
    what Core compiles from the tables. Values go in as the driver takes them, JSON
    columns as text and `any_of` lists as arrays (JSON text on SQLite); rows come out as
    dicts of what the driver gives, JSON columns read back on SQLite, where they are text.
    Errors are SQLAlchemy's, as from Connection.execute.
    """

    __slots__ = ("_forms", "binary", "statement")

    def __init__(
        self, statement: ClauseElement | Callable[[str], ClauseElement], *, binary: bool = False
    ) -> None:
        self.statement = statement
        # PostgreSQL sends the rows in its binary format: for large binary values, which
        # its text format doubles as hex.
        self.binary = binary
        self._forms: dict[str, _Form] = {}

    def rows(
        self,
        connection: Connection,
        values: Mapping[str, Any] | None = None,
        tables: Tables = LIVE,
    ) -> list[dict[str, Any]]:
        """Run a query once, on `tables`; its rows."""
        return read_together(connection, (self, values or {}), tables=tables)[0]

    def _rows(self, form: _Form, found: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
        names = form.columns
        rows = [dict(zip(names, row, strict=True)) for row in found]
        for name in (names[i] for i in form.json_columns):  # JSON arrives as text
            for row in rows:
                if row[name] is not None:
                    row[name] = _JSON_DECODER.decode(row[name])
        return rows

    def run(
        self, connection: Connection, rows: Sequence[Mapping[str, Any]], tables: Tables = LIVE
    ) -> None:
        """Run the statement on `tables` once for each of `rows` (executemany); nothing is
        read back, so in a pipeline nothing waits."""
        if not rows:
            return
        form = self._form(connection, tables)
        with _cursor(connection, form.sql) as cursor:
            if len(rows) == 1:  # outside a pipeline, psycopg's executemany opens one of its own
                cursor.execute(form.sql, form.values(rows[0]))
            else:
                cursor.executemany(form.sql, map(form.values, rows))

    def _form(self, connection: Connection, tables: Tables) -> _Form:
        name = connection.dialect.name
        key = name if not tables.key else f"{name} {tables.key}"
        form = self._forms.get(key)
        if form is None:
            statement = self.statement
            if not isinstance(statement, ClauseElement):
                statement = statement(name)
            if tables.key:
                statement = _replaced(statement, tables.instead)
            compiled = statement.compile(dialect=_DIALECTS[name]())
            assert isinstance(compiled, SQLCompiler)
            columns: tuple[str, ...] = ()
            json_columns: tuple[int, ...] = ()
            if isinstance(statement, SelectBase):
                selected = list(statement.selected_columns)
                columns = tuple(str(column.key) for column in selected)
                if name == "sqlite":
                    json_columns = tuple(
                        i for i, column in enumerate(selected) if isinstance(column.type, JSON)
                    )
            form = _Form(compiled.string, _layout(compiled, name), columns, json_columns)
            self._forms[key] = form
        return form


def read_together(
    connection: Connection, *queries: tuple[Prepared, Mapping[str, Any]], tables: Tables = LIVE
) -> list[list[dict[str, Any]]]:
    """Run several queries on `tables`, each with its values; the rows of each. In a
    pipeline (see pipelined) they are all sent before any answer is waited for: one round
    trip."""
    with ExitStack() as stack:
        running = []
        for query, values in queries:
            form = query._form(connection, tables)
            cursor = stack.enter_context(_cursor(connection, form.sql, binary=query.binary))
            cursor.execute(form.sql, form.values(values))
            running.append((query, form, cursor))
        return [query._rows(form, cursor.fetchall()) for query, form, cursor in running]


@contextmanager
def _cursor(connection: Connection, sql: str, *, binary: bool = False) -> Iterator[Any]:
    """A cursor of the connection's driver, whose errors are raised as SQLAlchemy's are;
    `binary`: one that reads rows in PostgreSQL's binary format."""
    raw = connection.connection
    cursor = None
    try:
        with _raised_as_sqlalchemy(connection, sql):
            driver = raw.driver_connection
            if binary and connection.dialect.name == "postgresql":
                cursor = driver.cursor(binary=True)  # type: ignore[union-attr]
            else:
                cursor = driver.cursor()  # type: ignore[union-attr]
            yield cursor
    finally:
        if cursor is not None:
            with suppress(connection.dialect.loaded_dbapi.Error):  # closed with its connection
                cursor.close()


@contextmanager
def _raised_as_sqlalchemy(connection: Connection, sql: str) -> Iterator[None]:
    """The driver's errors raised as SQLAlchemy's, as from Connection.execute: a connection
    an error shows dead is invalidated, so that the pool drops it."""
    error_type = connection.dialect.loaded_dbapi.Error
    try:
        yield
    except error_type as error:
        raw = connection.connection
        gone = connection.dialect.is_disconnect(error, raw.dbapi_connection, None)
        if gone:  # as SQLAlchemy does: every pooled connection as old is reconnected too
            connection.engine.pool._invalidate(raw, error)
        raise DBAPIError.instance(
            sql,
            None,
            error,
            error_type,
            hide_parameters=True,
            connection_invalidated=gone,
            dialect=connection.dialect,
        ) from error


def insert(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert new rows through the driver's fastest path: COPY on PostgreSQL, executemany
    on SQLite. Statement building per row cost more than the database's own work."""
    if not rows:
        return
    names = tuple(rows[0])
    postgresql = dialect(connection) == "postgresql"
    if len(rows) < BULK_FROM or not postgresql or _pipelined(connection):  # COPY cannot pipeline
        _insert(table, names).run(connection, rows)
        return
    pick = itemgetter(*names) if len(names) > 1 else lambda row: (row[names[0]],)
    values: Iterable[Sequence[Any]] = map(pick, rows)
    if as_json := [i for i, name in enumerate(names) if isinstance(table.c[name].type, JSON)]:
        values = map(partial(_with_json, as_json), values)
    quote = connection.dialect.identifier_preparer.quote
    into = f"{quote(table.name)} ({', '.join(map(quote, names))})"
    with (
        _cursor(connection, f"COPY {into}") as cursor,
        cursor.copy(f"COPY {into} FROM STDIN") as copy,
    ):
        for row in values:
            copy.write_row(row)


BULK_FROM = 50  # rows: below it, COPY's setup costs more than it saves


@cache
def _insert(table: Table, names: tuple[str, ...]) -> Prepared:
    return Prepared(
        table.insert().values({name: bindparam(name, type_=table.c[name].type) for name in names})
    )


def upsert(
    connection: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    key: Sequence[str],
    least: Sequence[str] = (),
    greatest: Sequence[str] = (),
    latest: Sequence[str] = (),
) -> None:
    """INSERT ... ON CONFLICT (key) DO UPDATE: a stored row takes the new values, except
    that the columns in `least` and `greatest` keep the smaller or larger of the two; with
    `latest` (columns that order the rows), the others take the new values only from a row
    that comes later in that order than the stored one."""
    if not rows:
        return
    statement = _upsert(
        dialect(connection),
        table,
        tuple(key),
        tuple(rows[0]),
        tuple(least),
        tuple(greatest),
        tuple(latest),
    )
    statement.run(connection, rows)


@cache  # building one costs more than running it: it aliases every column of the table
def _upsert(
    dialect: str,
    table: Table,
    key: tuple[str, ...],
    columns: tuple[str, ...],
    least: tuple[str, ...],
    greatest: tuple[str, ...],
    latest: tuple[str, ...],
) -> Prepared:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table).values(
        {name: bindparam(name, type_=table.c[name].type) for name in columns}
    )
    new = statement.excluded
    set_: dict[str, Any] = {name: new[name] for name in columns if name not in key}
    if latest:
        later = tuple_(*(new[n] for n in latest)) > tuple_(*(table.c[n] for n in latest))
        set_ = {name: case((later, value), else_=table.c[name]) for name, value in set_.items()}
    for name in least:
        set_[name] = case((new[name] < table.c[name], new[name]), else_=table.c[name])
    for name in greatest:
        set_[name] = case((new[name] > table.c[name], new[name]), else_=table.c[name])
    return Prepared(statement.on_conflict_do_update(index_elements=list(key), set_=set_))
