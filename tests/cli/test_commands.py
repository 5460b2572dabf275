"""The cdp command: import, rebuild, status, migrate, and serve's schema check."""

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, make_url, text

from cdp import queries
from cdp.cli import main
from cdp.db import make_engine
from tests.factories import opened, reply, samples, webhook


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
        chat = queries.chat(connection, "c", queries.Clock(1000))
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
    assert "events: 5" in status.output
    assert "sessions: 1" in status.output


def test_status_prints_the_head_each_projection_and_counts(database: str) -> None:
    cdp(database, "import", "-", stdin=jsonl(*opened("a", profile="p"), *opened("b", profile="p")))
    result = cdp(database, "status")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "log head: 4" in lines
    assert "projection chats: position 4, lag 0" in lines
    assert "projection profiles: position 4, lag 0" in lines
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
    ],
)
def test_an_invalid_setting_is_named(tmp_path: Path, variable: str, value: str) -> None:
    result = cdp(f"sqlite:///{tmp_path / 'x.db'}", "status", **{variable: value})
    assert result.exit_code == 1
    assert variable in result.output


def test_commands_bring_a_new_sqlite_file_to_the_latest_schema_by_themselves(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    result = cdp(url, "import", "-", stdin=jsonl(*opened("c")))
    assert result.exit_code == 0, result.output
    assert "accepted: 2" in result.output


def test_progress_is_shown_on_a_terminal_and_nowhere_else(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cdp.cli import _Progress, _Tally

    progress = _Progress(enabled=True)
    progress.show(_Tally(lines=7, accepted=5, duplicates=1, rejected=[(3, "bad")]))
    progress.done()
    # click drops the ANSI erase sequence when stderr is not a terminal, as here
    assert capsys.readouterr().err == "\r7 lines: 5 accepted, 1 duplicates, 1 rejected\r"
    _Progress(enabled=False).show(_Tally(lines=1))
    assert capsys.readouterr().err == ""
