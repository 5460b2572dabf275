"""A start that tells the truth: `cdp serve`, `cdp migrate` and `cdp status` check the
keystore as they check the database, and say which one they cannot reach; /health reports
the keystore; the log names each database; a metrics directory loses only metrics files."""

import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from litestar.testing import TestClient
from sqlalchemy.engine import make_url

from cdp.http.app import create_app
from cdp.privacy import keyfile
from cdp.settings import Settings
from tests.cli.test_commands import cdp, jsonl
from tests.conftest import Server
from tests.factories import PAST, opened

# A PostgreSQL server nobody listens for: refused at once, with no wait for a timeout.
UNREACHABLE = "postgresql+psycopg://cdp_keys:s3cret-word@127.0.0.1:1/cdp_keys"


@pytest.mark.parametrize("command", [["serve"], ["migrate"], ["status"], ["import", "-"]])
def test_a_keystore_that_cannot_be_reached_stops_the_command_naming_it(
    database: str, command: list[str]
) -> None:
    result = cdp(database, *command, stdin="", CDP_KEYSTORE_URL=UNREACHABLE)
    assert result.exit_code == 1, result.output
    assert "cannot use the keystore postgresql+psycopg://cdp_keys:***@127.0.0.1:1/cdp_keys" in (
        result.output
    )
    assert "(CDP_KEYSTORE_URL)" in result.output
    assert "s3cret-word" not in result.output


def test_a_keystore_in_a_directory_that_is_not_there_is_named(
    database: str, tmp_path: Path
) -> None:
    keys = tmp_path / "gone" / "keys.db"
    result = cdp(database, "status", CDP_KEYSTORE_URL=f"sqlite:///{keys}")
    assert result.exit_code == 1
    assert f"cannot use the keystore sqlite:///{keys}: there is no directory" in result.output


def test_status_names_the_database_and_where_the_keys_are(database: str, tmp_path: Path) -> None:
    shown = make_url(database).render_as_string(hide_password=True)
    result = cdp(database, "status")
    assert result.exit_code == 0, result.output
    assert f"database: {shown}\n" in result.output
    if database.startswith("sqlite"):  # a keystore beside the file, made with the first key
        assert "keys in: sqlite:///" in result.output
    else:
        assert "keys in: the main database\n" in result.output
    assert f"key file: {keyfile.default_path(database)}" in result.output
    keys = tmp_path / "keys.db"
    keys.touch()
    result = cdp(database, "status", CDP_KEYSTORE_URL=f"sqlite:///{keys}")
    assert f"keys in: sqlite:///{keys}\n" in result.output


@pytest.mark.parametrize(
    "command", [["status"], ["serve"], ["erase", "--profile", "p-1"], ["verify"], ["rebuild"]]
)
def test_a_key_file_that_is_not_there_stops_the_command_naming_it_and_none_is_made(
    database: str, tmp_path: Path, command: list[str]
) -> None:
    """A store whose keys are wrapped under a key file, pointed at another path: a new file
    there would open none of them, so none is made, and the command says which file."""
    stored = cdp(database, "import", "-", stdin=jsonl(*opened("chat-1", at=PAST)))
    assert stored.exit_code == 0, stored.output
    wrong = tmp_path / "elsewhere" / "wrong.kek"
    result = cdp(database, *command, CDP_KEY_FILE=str(wrong))
    assert result.exit_code == 1, result.output
    assert f"the key file {wrong} does not exist" in result.output
    assert "set CDP_KEY_FILE" in result.output
    assert not wrong.exists()
    assert cdp(database, "status").exit_code == 0


@pytest.mark.parametrize("command", [["status"], ["serve"], ["verify"]])
def test_a_key_file_cut_short_stops_the_command_naming_it(
    database: str, tmp_path: Path, command: list[str]
) -> None:
    stored = cdp(database, "import", "-", stdin=jsonl(*opened("chat-1", at=PAST)))
    assert stored.exit_code == 0, stored.output
    path = keyfile.default_path(database)
    assert path is not None
    cut = tmp_path / "cut.kek"
    cut.write_bytes(path.read_bytes()[:100])
    result = cdp(database, *command, CDP_KEY_FILE=str(cut))
    assert result.exit_code == 1, result.output
    assert f"{cut} is not a cdp key file" in result.output
    assert cut.read_bytes() == path.read_bytes()[:100]


def test_health_answers_503_and_the_log_names_a_keystore_that_cannot_be_reached(
    database: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    settings = Settings(database_url=database, keystore_url=UNREACHABLE)
    with TestClient(create_app(settings)) as client:
        answer = client.get("/health")
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "5"
    assert answer.json()["detail"].startswith("the keystore cannot be reached")
    assert "127.0.0.1" not in answer.text  # the answer is open to anyone: no host in it
    named = [r.getMessage() for r in caplog.records if "the keystore" in r.getMessage()]
    assert any(
        "the keystore postgresql+psycopg://cdp_keys:***@127.0.0.1:1/cdp_keys cannot be reached"
        in message
        for message in named
    ), named
    assert all("s3cret-word" not in record.getMessage() for record in caplog.records)


@pytest.mark.slow
def test_serve_logs_each_database_by_name(
    database: str, tmp_path: Path, serve_on: Callable[..., Server]
) -> None:
    keys = tmp_path / "keys.db"
    served = serve_on(database, CDP_KEYSTORE_URL=f"sqlite:///{keys}")
    assert httpx.get(f"{served.url}/health").json()["keystore"] == "sqlite"
    url = make_url(database)
    # A file by its absolute path; a server by its host and database, without a password.
    shown = (
        f"the SQLite file {url.database}"
        if url.get_backend_name() == "sqlite"
        else url.render_as_string(hide_password=True)
    )
    logged = served.log.read_text()
    assert f"database: {shown}; keys in sqlite:///{keys}" in logged
    assert "NEW, EMPTY DATABASE" not in logged


def test_serve_says_loudly_that_it_made_a_new_empty_sqlite_file_naming_it(
    tmp_path: Path, serve_on: Callable[..., Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from another folder than meant, the default ./cdp.db is a new, empty file."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    served = serve_on("sqlite:///./cdp.db")
    logged = served.log.read_text()
    path = elsewhere / "cdp.db"
    assert f"INFO cdp: database: the SQLite file {path};" in logged
    assert f"WARNING cdp: CREATED A NEW, EMPTY DATABASE at {path}: if you meant another" in (logged)


def test_other_commands_say_that_they_made_a_new_empty_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    made = cdp(f"sqlite:///{path}", "token", "create", "--role", "read")
    assert made.exit_code == 0, made.output
    assert f"created a new, empty database at {path}" in made.output
    again = cdp(f"sqlite:///{path}", "token", "create", "--role", "read")
    assert again.exit_code == 0, again.output
    assert "created" not in again.output


@pytest.mark.parametrize(
    "command",
    [["serve", "--port", "0"], ["migrate"], ["import", "-"], ["token", "create", "--role", "read"]],
)
def test_a_sqlite_file_in_a_folder_that_is_not_there_is_named_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    result = cdp("sqlite:///nonexistent/dir/cdp.db", *command, stdin="")
    assert result.exit_code == 1, result.output
    folder = tmp_path / "nonexistent" / "dir"
    assert (
        f"cannot use the database {folder / 'cdp.db'}: the folder {folder} does not exist"
        in result.output
    )
    assert "unable to open database file" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_sqlite_file_that_is_a_folder_is_named_with_the_reason(tmp_path: Path) -> None:
    folder = tmp_path / "cdp.db"
    folder.mkdir()
    result = cdp(f"sqlite:///{folder}", "migrate")
    assert result.exit_code == 1
    assert f"cannot use the database {folder}: it is a folder, not a database file" in (
        result.output
    )


def test_a_busy_port_is_named_with_the_way_out(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        path = tmp_path / "cdp.db"
        done = subprocess.run(
            [sys.executable, "-m", "cdp", "serve", "--port", str(port)],
            env={**os.environ, "CDP_DATABASE_URL": f"sqlite:///{path}"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1, done.stderr
    assert (
        f"port {port} on 127.0.0.1 is in use: pass --port N (or stop what holds it)" in done.stderr
    )
    assert "Traceback" not in done.stderr
    assert "Uvicorn running" not in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_workers_remove_only_the_metrics_files_of_an_earlier_run(
    postgres_url: str, tmp_path: Path, serve_on: Callable[..., Server], workers: str
) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    kept = {"notes.txt": b"not ours", "counter.txt": b"not ours either"}
    for name, content in kept.items():
        (directory / name).write_bytes(content)
    for left in ("counter_4242.db", "gauge_livesum_4242.db", "histogram_4242.db"):
        (directory / left).write_bytes(b"\0" * 16)
    served = serve_on(postgres_url, "--workers", workers, PROMETHEUS_MULTIPROC_DIR=str(directory))
    for name, content in kept.items():
        assert (directory / name).read_bytes() == content
    assert not list(directory.glob("*_4242.db"))
    assert httpx.get(f"{served.url}/metrics").status_code == 200
    # The workers bound their connections as one process does.
    big = httpx.get(f"{served.url}/health", headers={"X-Pad": "a" * 20_000})
    assert big.status_code == 431


def test_a_metrics_directory_holding_another_database_is_refused_and_left_whole(
    postgres_url: str, tmp_path: Path
) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    keystore = directory / "cdp-keys.db"
    keystore.write_bytes(b"SQLite format 3\0 and the keys")
    for workers in ("1", "2"):
        result = cdp(
            postgres_url, "serve", "--workers", workers, PROMETHEUS_MULTIPROC_DIR=str(directory)
        )
        assert result.exit_code == 2, result.output
        assert "holds cdp-keys.db, which prometheus_client did not make" in result.output
        assert keystore.read_bytes() == b"SQLite format 3\0 and the keys"
