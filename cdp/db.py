"""Engines, transactions and the few statements that differ between SQLite and PostgreSQL."""

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from cdp.settings import Settings

_WRITER = "cdp_writer"


def engine_of(settings: "Settings", *, connections: int) -> Engine:
    """The engine of CDP_DATABASE_URL, with every wait bounded as the settings say."""
    return make_engine(
        settings.database_url,
        connections=connections,
        wait=settings.database_pool_timeout,
        connect_timeout=settings.database_connect_timeout,
        statement_timeout=settings.database_statement_timeout,
    )


def make_engine(
    url: str,
    *,
    connections: int = 5,
    wait: timedelta = timedelta(seconds=30),
    connect_timeout: timedelta = timedelta(seconds=10),
    statement_timeout: timedelta = timedelta(seconds=30),
) -> Engine:
    """An engine for `url` holding at most `connections`, waiting for one at most `wait`.

    PostgreSQL gets connect and statement timeouts; SQLite gets WAL, a busy timeout (the
    statement timeout) and explicit transactions.
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
        dbapi_connection.text_factory = _utf8
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        # A writer takes the database lock up front: no deadlock upgrading a read lock.
        writer = connection.get_execution_options().get(_WRITER, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

    return engine


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A write transaction: committed when the block ends, rolled back if it raises."""
    with engine.connect() as connection:
        connection.execution_options(**{_WRITER: True})
        with connection.begin():
            yield connection


def _utf8(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def dialect(connection: Connection | Engine) -> str:
    return connection.dialect.name


def upsert(
    connection: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    key: Sequence[str],
    set_: Mapping[str, Any] | None = None,
) -> None:
    """INSERT ... ON CONFLICT (key) DO UPDATE; `set_` defaults to every non-key column."""
    if not rows:
        return
    insert = postgresql.insert if dialect(connection) == "postgresql" else sqlite.insert
    statement = insert(table)
    if set_ is None:
        set_ = {name: statement.excluded[name] for name in rows[0] if name not in key}
    else:
        set_ = {
            name: value(statement.excluded) if callable(value) else value
            for name, value in set_.items()
        }
    connection.execute(statement.on_conflict_do_update(index_elements=key, set_=set_), rows)
