"""The cdp command: import, rebuild, status, migrate, and serve's schema check."""

import fcntl
import importlib.util
import io
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import uuid
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import OperationalError

from cdp import DISTRIBUTION, paging
from cdp.cli import main
from cdp.conversations import queries
from cdp.db import make_engine
from cdp.log import ingest
from cdp.privacy.keystore import MAIN, Keystore
from cdp.settings import Settings
from tests.api.test_whatever_the_log_holds import ODD_BODIES, log_directly
from tests.conftest import empty
from tests.factories import PAST, now_ms, opened, reply, samples, webhook


def cdp(database: str, *args: str, stdin: str | None = None, **env: str) -> Result:
    return CliRunner().invoke(
        main, list(args), input=stdin, env={"CDP_DATABASE_URL": database, **env}
    )


def jsonl(*bodies: object) -> str:
    return "".join(json.dumps(body, ensure_ascii=False) + "\n" for body in bodies)


def test_import_stores_good_lines_and_reports_bad_ones_by_number(
    database: str, tmp_path: Path
) -> None:
    good = [*opened("c", profile="p"), reply("c")]
    lines = (
        jsonl(good[0], good[1])
        + "{broken\n\n"
        + jsonl(good[0], webhook("message_created", chat=""), good[2])
    )
    path = tmp_path / "webhooks.jsonl"
    path.write_text(lines)
    result = cdp(database, "import", str(path))
    assert result.exit_code == 1
    assert "accepted: 3, duplicates: 1, rejected: 2" in result.output
    assert "line 3: body is not valid JSON" in result.output
    assert "line 6: invalid webhook: payload.chat.uuid" in result.output
    engine = make_engine(database)
    with engine.connect() as connection:
        chat = queries.chat(connection, "c", paging.Clock(1000, now_ms()), keystore=MAIN)
        assert chat is not None
        assert chat.operator is not None
    engine.dispose()


def test_import_reads_stdin_and_exits_0_when_every_line_is_good(database: str) -> None:
    result = cdp(database, "import", "-", stdin=jsonl(*opened("c")) + jsonl(*opened("c")))
    assert result.exit_code == 0, result.output
    assert "accepted: 2, duplicates: 2, rejected: 0" in result.output


def test_import_in_small_batches_stores_the_same_as_one_batch(database: str) -> None:
    bodies = [json.loads(body) for body in samples()]
    assert cdp(database, "import", "--batch-size", "2", "-", stdin=jsonl(*bodies)).exit_code == 0
    status = cdp(database, "status")
    assert "events: 8" in status.output
    assert "sessions: 1" in status.output
    assert "handoffs: 1" in status.output


def test_status_prints_the_head_each_projection_and_counts(database: str) -> None:
    cdp(database, "import", "-", stdin=jsonl(*opened("a", profile="p"), *opened("b", profile="p")))
    result = cdp(database, "status")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "log head: 4" in lines
    assert "projection chats: position 4, lag 0, live" in lines
    assert "projection profiles: position 4, lag 0, live" in lines
    assert {"events: 4", "profiles: 1", "chats: 2", "sessions: 2", "handoffs: 0"} <= set(lines)


def test_rebuild_refills_the_projections_from_the_log(database: str) -> None:
    cdp(database, "import", "-", stdin=jsonl(*opened("c")))
    engine = make_engine(database)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM chats"))
        connection.execute(text("UPDATE projection_checkpoints SET position = 0"))
    assert "projection chats: position 0, lag 2" in cdp(database, "status").output
    result = cdp(database, "rebuild")
    assert result.exit_code == 0, result.output
    assert "up to position 2" in result.output
    assert "projection chats: position 2, lag 0" in cdp(database, "status").output
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM chats")) == 1
    engine.dispose()


def test_migrate_creates_the_schema_of_a_new_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    result = cdp(url, "migrate")
    assert result.exit_code == 0, result.output
    assert "schema at revision" in result.output
    assert "events: 0" in cdp(url, "status").output


@pytest.fixture
def empty_postgres(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL database with no schema at all."""
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    name = f"cdp_empty_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.mark.parametrize("command", [["serve"], ["import", "-"], ["status"], ["rebuild"]])
def test_an_outdated_postgresql_schema_is_refused_with_the_way_out(
    empty_postgres: str, command: list[str]
) -> None:
    result = cdp(empty_postgres, *command, stdin="")
    assert result.exit_code == 1
    assert "run `cdp migrate`" in result.output
    engine = make_engine(empty_postgres)
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT to_regclass('events')")) is None
    engine.dispose()


def test_migrate_then_brings_postgresql_up_to_date(empty_postgres: str) -> None:
    assert cdp(empty_postgres, "migrate").exit_code == 0
    assert "log head: 0" in cdp(empty_postgres, "status").output


def test_an_unreachable_database_is_one_clear_line(tmp_path: Path) -> None:
    result = cdp("postgresql+psycopg://nobody@127.0.0.1:1/none", "status")
    assert result.exit_code == 1
    assert "cannot use the database" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CDP_SESSION_IDLE_TIMEOUT", "0"),
        ("CDP_SESSION_OPEN_WINDOW", "soon"),
        ("CDP_PHONE_REGION", "XX"),
        ("CDP_LOG_FORMAT", "xml"),
        ("CDP_SQLITE_SYNCHRONOUS", "off"),
    ],
)
def test_an_invalid_setting_is_named(tmp_path: Path, variable: str, value: str) -> None:
    result = cdp(f"sqlite:///{tmp_path / 'x.db'}", "status", **{variable: value})
    assert result.exit_code == 2
    assert variable in result.output


def test_commands_bring_a_new_sqlite_file_to_the_latest_schema_by_themselves(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    result = cdp(url, "import", "-", stdin=jsonl(*opened("c")))
    assert result.exit_code == 0, result.output
    assert "accepted: 2" in result.output


def test_version_prints_the_installed_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"cdp {version(DISTRIBUTION)}\n"


def _commands(command: click.Command, name: str = "cdp") -> Iterator[tuple[str, click.Command]]:
    yield name, command
    if isinstance(command, click.Group):
        for sub_name, sub in command.commands.items():
            yield from _commands(sub, f"{name} {sub_name}")


def test_every_option_of_every_command_says_what_it_is_for() -> None:
    unexplained = [
        f"{name} {option.opts[0]}"
        for name, command in _commands(main)
        for option in command.params
        if isinstance(option, click.Option) and not option.help
    ]
    assert unexplained == []
    for name, command in _commands(main):
        assert command.help, name
        shown = CliRunner().invoke(main, [*name.split()[1:], "--help"])
        assert shown.exit_code == 0, shown.output
    serve = " ".join(CliRunner().invoke(main, ["serve", "--help"]).output.split())
    assert "--host TEXT The address to listen on" in serve
    assert "--port INTEGER RANGE The TCP port to listen on" in serve


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgres://cdp@db/cdp", "write postgresql+psycopg://"),
        ("mysql://cdp@db/cdp", "cannot use mysql:// databases"),
        ("not a url", "not a database URL"),
        ("sqlite://", "SQLite needs a file"),
    ],
)
def test_a_bad_database_url_is_one_line_saying_what_to_do(url: str, says: str) -> None:
    result = cdp(url, "status")
    assert result.exit_code == 2
    assert says in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_a_missing_postgresql_driver_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "psycopg" else real(name, *a)
    )
    result = cdp("postgresql+psycopg://cdp@db/cdp", "status")
    assert result.exit_code == 2
    assert "pip install 'psycopg[binary]'" in result.output


@pytest.mark.parametrize("value", ["1e20", "inf", "-5", "P100000D"])
def test_a_duration_out_of_range_is_named_not_a_traceback(tmp_path: Path, value: str) -> None:
    result = cdp(f"sqlite:///{tmp_path / 'x.db'}", "status", CDP_SESSION_IDLE_TIMEOUT=value)
    assert result.exit_code == 2
    assert "CDP_SESSION_IDLE_TIMEOUT" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["status", "rebuild"])
def test_status_and_rebuild_of_a_missing_sqlite_file_say_so_and_create_nothing(
    tmp_path: Path, command: str
) -> None:
    path = tmp_path / "elsewhere.db"
    result = cdp(f"sqlite:///{path}", command)
    assert result.exit_code == 1
    assert f"no database at {path}" in result.output
    assert list(tmp_path.iterdir()) == []


def test_status_names_the_database_it_read_without_its_password(database: str) -> None:
    url = make_url(database)
    if url.get_backend_name() == "postgresql":  # trust authentication ignores the password
        database = url.set(password="s3cret").render_as_string(hide_password=False)
    result = cdp(database, "status")
    assert result.exit_code == 0, result.output
    shown = make_url(database).render_as_string(hide_password=True)
    assert f"database: {shown}" in result.output.splitlines()
    assert "s3cret" not in result.output


def test_a_line_with_a_lone_surrogate_is_one_rejected_line_among_stored_ones(
    database: str,
) -> None:
    bad = jsonl(webhook("message_created", chat="c", message="TEXT"))
    bad = bad.replace('"text": "TEXT"', '"text": "\\ud800"')
    good = opened("c")
    result = cdp(database, "import", "-", stdin=jsonl(good[0]) + bad + jsonl(good[1]))
    assert result.exit_code == 1
    assert "accepted: 2, duplicates: 0, rejected: 1" in result.output
    assert "line 2: invalid webhook: payload.message.text" in result.output


def test_a_pretty_printed_file_gets_a_hint_about_one_object_per_line(database: str) -> None:
    result = cdp(database, "import", "-", stdin=json.dumps(webhook("message_created"), indent=2))
    assert result.exit_code == 1
    summary, hint, first_rejected, *_ = result.output.splitlines()
    assert summary.startswith("accepted: 0")
    assert "jq -c" in hint
    assert first_rejected.startswith("line 1: body is not valid JSON")


def test_an_import_stopped_by_the_database_reports_what_it_stored_and_resumes_exactly(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies = [webhook("message_created", chat="c", at=PAST + n, message=str(n)) for n in range(25)]
    record, calls = ingest.record, []

    def failing_third_batch(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 3:
            raise OperationalError("INSERT", {}, Exception("database or disk is full"))
        return record(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ingest, "record", failing_third_batch)
    stopped = cdp(database, "import", "--batch-size", "10", "-", stdin=jsonl(*bodies))
    assert stopped.exit_code == 3
    assert "accepted: 20, duplicates: 0, rejected: 0" in stopped.output
    assert "import stopped at line 21: database or disk is full" in stopped.output
    assert "Traceback" not in stopped.output
    monkeypatch.setattr(ingest, "record", record)
    again = cdp(database, "import", "--batch-size", "10", "-", stdin=jsonl(*bodies))
    assert again.exit_code == 0, again.output
    assert "accepted: 5, duplicates: 20, rejected: 0" in again.output
    assert "events: 25" in cdp(database, "status").output


def test_an_import_stopped_names_its_first_unstored_line_past_rejected_ones(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(*args: object, **kwargs: object) -> object:
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(ingest, "record", failing)
    lines = "{broken\n\n" + jsonl(*opened("c"))
    stopped = cdp(database, "import", "-", stdin=lines)
    assert stopped.exit_code == 3
    assert "import stopped at line 3: disk I/O error" in stopped.output


def test_an_import_whose_postgresql_goes_away_stops_with_one_line_and_resumes(
    postgres_url: str,
) -> None:
    empty(postgres_url)
    name = make_url(postgres_url).database
    admin = create_engine(
        make_url(postgres_url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    bodies = [webhook("message_created", chat="c", at=PAST + n, message=str(n)) for n in range(30)]

    class Vanishing(io.BytesIO):
        """Lines that, after the first batch, make the database refuse every connection."""

        def __iter__(self) -> Iterator[bytes]:
            for number, line in enumerate(iter(self.readline, b""), start=1):
                if number == 11:
                    with admin.connect() as connection:
                        connection.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
                        connection.execute(
                            text(
                                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE datname = :name AND pid <> pg_backend_pid()"
                            ),
                            {"name": name},
                        )
                yield line

    try:
        stopped = CliRunner().invoke(
            main,
            ["import", "--batch-size", "10", "-"],
            input=Vanishing(jsonl(*bodies).encode()),
            env={"CDP_DATABASE_URL": postgres_url},
        )
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
    assert stopped.exit_code == 3, stopped.output
    assert "accepted: 10, duplicates: 0, rejected: 0" in stopped.output
    assert "import stopped at line 11" in stopped.output
    assert "Traceback" not in stopped.output
    again = cdp(postgres_url, "import", "--batch-size", "10", "-", stdin=jsonl(*bodies))
    assert "accepted: 20, duplicates: 10, rejected: 0" in again.output
    admin.dispose()


def test_import_shows_its_progress_on_a_terminal(database: str, tmp_path: Path) -> None:
    path = tmp_path / "webhooks.jsonl"
    path.write_text(jsonl(*(webhook("message_created", at=PAST + n) for n in range(50))))
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = subprocess.run(
        [sys.executable, "-m", "cdp", "import", str(path)],
        env={**os.environ, "CDP_DATABASE_URL": database},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=terminal,
        timeout=60,
        check=False,
    )
    os.close(terminal)
    shown = b""
    while select.select([controller], [], [], 0.1)[0]:
        try:
            chunk = os.read(controller, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    assert process.returncode == 0, process.stdout
    screen = shown.decode()
    assert "100%" in screen  # the fraction of the file done
    assert "B/s" in screen  # the rate
    assert "accepted: 50" in screen


def test_import_shows_no_progress_when_stderr_is_not_a_terminal(database: str) -> None:
    result = CliRunner().invoke(
        main, ["import", "-"], input=jsonl(*opened("c")), env={"CDP_DATABASE_URL": database}
    )
    assert result.exit_code == 0
    assert result.stderr == ""


def test_import_goes_on_whatever_odd_rows_the_log_already_holds(
    database: str, engine: Engine
) -> None:
    keystore = Keystore.at(Settings(database_url=database).keystore())
    log_directly(
        engine, ODD_BODIES, keystore
    )  # the projectors have not seen them: import catches up
    keystore.dispose()
    result = cdp(database, "import", "-", stdin=jsonl(*opened("c", at=PAST + 1000)))
    assert result.exit_code == 0, result.output
    assert "accepted: 2" in result.output
    assert (
        f"projection chats: position {len(ODD_BODIES) + 2}, lag 0" in cdp(database, "status").output
    )


def test_serve_refuses_a_metrics_directory_that_is_not_one(tmp_path: Path) -> None:
    missing = tmp_path / "metrics"
    result = cdp(f"sqlite:///{tmp_path / 'x.db'}", "serve", PROMETHEUS_MULTIPROC_DIR=str(missing))
    assert result.exit_code == 2
    assert f"PROMETHEUS_MULTIPROC_DIR={str(missing)!r} is not a directory" in result.output


def test_import_and_rebuild_leave_postgresql_statistics_and_visibility_behind(
    postgres_url: str,
) -> None:
    """A count over a team's messages reads the index alone only where VACUUM marked the
    pages all-visible: after a bulk load, not whenever autovacuum gets there."""
    empty(postgres_url)
    bodies = [*opened("a", at=PAST, team=1)]
    bodies += [
        webhook("message_created", chat="a", at=PAST + n, message=str(n)) for n in range(500)
    ]
    engine = make_engine(postgres_url)

    def visible(table: str) -> tuple[int, int]:
        query = "SELECT relpages, relallvisible FROM pg_class WHERE relname = :table"
        with engine.connect() as connection:
            pages, all_visible = connection.execute(text(query), {"table": table}).one()
        return pages, all_visible

    assert cdp(postgres_url, "import", "-", stdin=jsonl(*bodies)).exit_code == 0
    pages, all_visible = visible("timeline")
    assert pages > 0
    assert all_visible == pages
    assert cdp(postgres_url, "rebuild").exit_code == 0
    pages, all_visible = visible("timeline")  # the table the build swapped in
    assert pages > 0
    assert all_visible == pages
    engine.dispose()
