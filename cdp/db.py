"""Engines, transactions and the few statements that differ between SQLite and PostgreSQL."""

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

_WRITER = "cdp_writer"


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout and explicit transactions."""
    if make_url(url).get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN, so writers can ask for IMMEDIATE.
        dbapi_connection.isolation_level = None
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
