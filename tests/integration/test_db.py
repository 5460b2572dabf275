"""Every wait on the database is bounded: connecting, a statement, a free connection;
SQLite's write-ahead log is copied into the database by a thread of its own; and prepared
statements take lists of any length and fail as SQLAlchemy's do."""

import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, bindparam, func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from cdp import db
from cdp.db import Checkpointer, make_engine, writing
from cdp.projections import registry
from cdp.projections.tables import checkpoints
from cdp.runtime.metrics import Metrics
from cdp.runtime.service import Service
from cdp.settings import Settings


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


def test_connecting_to_a_server_that_never_answers_gives_up_after_the_connect_timeout(
    silent_server: int,
) -> None:
    engine = make_engine(
        f"postgresql+psycopg://cdp@127.0.0.1:{silent_server}/cdp",
        connect_timeout=timedelta(seconds=1),
    )
    failures: list[Exception] = []

    def connect() -> None:
        try:
            engine.connect().close()
        except Exception as error:
            failures.append(error)

    attempt = threading.Thread(target=connect, daemon=True)
    attempt.start()
    attempt.join(timeout=30)  # without a connect timeout the driver waits for ever
    assert not attempt.is_alive()
    assert [type(error) for error in failures] == [OperationalError]
    engine.dispose()


def test_a_postgresql_statement_longer_than_the_statement_timeout_is_cancelled(
    postgres_url: str,
) -> None:
    engine = make_engine(postgres_url, statement_timeout=timedelta(seconds=1))
    with pytest.raises(OperationalError, match="statement timeout"), engine.connect() as c:
        c.execute(text("SELECT pg_sleep(5)"))
    engine.dispose()


def test_waiting_for_a_free_connection_gives_up_after_the_pool_timeout(engine: Engine) -> None:
    url = engine.url.render_as_string(hide_password=False)
    bounded = make_engine(url, connections=1, wait=timedelta(milliseconds=200))
    with bounded.connect(), pytest.raises(PoolTimeout), bounded.connect():
        pass
    bounded.dispose()


def test_a_failed_statement_never_carries_its_values_into_an_error_message(
    engine: Engine,
) -> None:
    with pytest.raises(DBAPIError) as raised, engine.connect() as connection:
        connection.execute(
            text("SELECT * FROM no_such_table WHERE x = :phone"), {"phone": "+79991234567"}
        )
    assert "+79991234567" not in str(raised.value)


def test_with_a_checkpointer_commits_leave_the_write_ahead_log_to_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'wal.db'}"
    engine = make_engine(url, checkpointer=True)
    with writing(engine) as connection:
        connection.execute(text("CREATE TABLE filler (text TEXT)"))
    for _ in range(40):  # some 1 600 pages of log: by default, commits would have copied it
        with writing(engine) as connection:
            connection.execute(
                text("INSERT INTO filler VALUES (:text)"), [{"text": "x" * 4000}] * 40
            )
    database = tmp_path / "wal.db"
    assert database.stat().st_size < 100_000

    checkpointer = Checkpointer(url, every=timedelta(milliseconds=20))
    checkpointer.start()
    try:
        deadline = time.monotonic() + 10
        while database.stat().st_size < 6_400_000 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        checkpointer.stop()
    assert database.stat().st_size >= 6_400_000
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM filler")) == 1600
    engine.dispose()


def test_a_postgresql_connection_that_died_while_idle_is_replaced_before_it_is_used(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "_FRESH", 0.05)
    engine = make_engine(postgres_url, connections=1)
    with engine.connect() as connection:
        first = connection.scalar(text("SELECT pg_backend_pid()"))
    killer = make_engine(postgres_url)
    with killer.begin() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
    killer.dispose()
    time.sleep(0.1)  # idle for longer than a connection in steady use

    with engine.connect() as connection:
        assert connection.scalar(text("SELECT pg_backend_pid()")) != first
    engine.dispose()


@pytest.mark.parametrize(("setting", "pragma"), [(None, 2), ("full", 2), ("NORMAL", 1)])
def test_sqlite_commits_as_durably_as_the_setting_says_in_the_store_and_the_keystore(
    tmp_path: Path, setting: str | None, pragma: int
) -> None:
    """FULL (2, the default) writes the log to disk at every commit: a webhook answered
    survives a power cut. NORMAL (1) only at checkpoints."""
    given = {} if setting is None else {"sqlite_synchronous": setting}
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'cdp.db'}", **given)
    service = Service.of(settings, registry.projectors(settings), Metrics())
    assert service.keystore.engine is not None  # a file of its own, beside the store
    try:
        for engine in (service.engine, service.keystore.engine):
            with engine.connect() as connection:
                assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == pragma
    finally:
        service.engine.dispose()
        service.keystore.dispose()


def test_a_prepared_list_parameter_matches_any_number_of_values(engine: Engine) -> None:
    stored = {f"p{n}" for n in range(600)}
    with writing(engine) as connection:
        connection.execute(checkpoints.insert(), [{"name": name, "position": 1} for name in stored])
    any_of = db.Prepared(select(checkpoints.c.name).where(db.any_of(checkpoints.c.name, "names")))
    with engine.connect() as connection:
        for names in ([], ["p7"], ["p7", "p7", "none"], [f"p{n}" for n in range(0, 1200, 2)]):
            found = [row["name"] for row in any_of.rows(connection, {"names": names})]
            assert sorted(found) == sorted(set(names) & stored)


def test_a_prepared_statement_that_fails_raises_sqlalchemys_error_without_its_parameters(
    engine: Engine,
) -> None:
    insert = db.Prepared(
        checkpoints.insert().values(name=bindparam("name"), position=bindparam("position"))
    )
    with writing(engine) as connection:
        insert.run(connection, [{"name": "+79991234567", "position": 1}])
    with pytest.raises(IntegrityError) as raised, writing(engine) as connection:
        insert.run(connection, [{"name": "+79991234567", "position": 2}])
    # PostgreSQL's own detail may quote the row; the parameters are never shown.
    assert "[parameters" not in str(raised.value)
    assert raised.value.statement is not None
    assert "+79991234567" not in raised.value.statement
    with engine.connect() as connection:  # the failed transaction left nothing behind
        assert connection.scalar(select(func.count()).select_from(checkpoints)) == 1


def test_after_a_statement_finds_postgresql_gone_every_older_connection_is_replaced(
    postgres_url: str,
) -> None:
    engine = make_engine(postgres_url, connections=2)
    probe = db.Prepared(select(func.pg_backend_pid().label("pid")))
    with engine.connect() as first, engine.connect() as second:  # two pooled connections
        pids = {probe.rows(c)[0]["pid"] for c in (first, second)}
    killer = make_engine(postgres_url)
    with killer.begin() as connection:
        for pid in pids:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    killer.dispose()

    with pytest.raises(DBAPIError) as raised, engine.connect() as connection:
        probe.rows(connection)  # in steady use, not pinged: it finds the server gone
    assert raised.value.connection_invalidated
    with engine.connect() as connection:  # the other one, as old, is not handed out
        assert probe.rows(connection)[0]["pid"] not in pids
    engine.dispose()
