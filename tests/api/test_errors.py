"""Errors a person can act on: one log line with the reason, no personal data, no internals."""

import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest
from litestar.testing import TestClient
from sqlalchemy import Connection, Engine, select, text

from cdp import db
from cdp.conversations.tables import chats
from cdp.http.app import create_app
from cdp.log import store
from cdp.settings import Settings
from tests.factories import JSON_TYPE, webhook

Client = TestClient  # type: ignore[type-arg]


def test_a_422_is_logged_on_one_line_with_its_field_errors(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    body = webhook("session_updated", team="12a", phone="+7 999 123-45-67")
    with caplog.at_level(logging.INFO, logger="cdp.api"):
        answer = client.post("/webhooks/fasttrack", content=json.dumps(body), headers=JSON_TYPE)
    assert answer.status_code == 422
    (line,) = [record.getMessage() for record in caplog.records if record.name == "cdp.api"]
    assert line.startswith("POST /webhooks/fasttrack -> 422: invalid webhook: ")
    assert "payload.session.team.id" in line
    assert "\n" not in line


def test_a_logged_refusal_never_holds_a_phone_number_or_a_long_text_in_full(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="cdp.api"):
        answer = client.get("/profiles", params={"phone": "+7 999 123-45-67 ext"})
        assert answer.status_code == 400
        long = "Здравствуйте, меня зовут Анна, мой заказ 12345678 не пришёл"
        body = webhook("message_created", chat=long + " ")
        assert (
            client.post(
                "/webhooks/fasttrack", content=json.dumps(body), headers=JSON_TYPE
            ).status_code
            == 422
        )
    lines = [record.getMessage() for record in caplog.records if record.name == "cdp.api"]
    assert len(lines) == 2
    assert all("123-45-67" not in line and "1234567" not in line for line in lines)
    assert all(long not in line and "12345678" not in line for line in lines)
    assert "phone=" in lines[0]


def test_a_logged_refusal_never_holds_a_name_searched_for(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="cdp.api"):
        answer = client.get("/profiles", params={"name": "Анна", "limit": 5000})
        assert answer.status_code == 400
    (line,) = [record.getMessage() for record in caplog.records if record.name == "cdp.api"]
    assert "Анна" not in line
    assert "name=***" in line


def test_a_404_and_an_unknown_parameter_are_logged_with_their_reason(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="cdp.api"):
        client.get("/chats/nobody")
        client.get("/events", params={"chat_uid": "c"})
    lines = [record.getMessage() for record in caplog.records if record.name == "cdp.api"]
    assert lines[0] == "GET /chats/nobody -> 404: no chat 'nobody'"
    assert "unknown query parameter 'chat_uid'" in lines[1]


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://cdp_user@127.0.0.1:1/secret_db",
        "sqlite:///{tmp}/no/such/folder/cdp.db",
    ],
)
def test_a_503_says_the_database_is_unavailable_and_nothing_more(
    url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(database_url=url.format(tmp=tmp_path), database_connect_timeout=1)
    with caplog.at_level(logging.INFO, logger="cdp.api"), TestClient(create_app(settings)) as bad:
        body = json.dumps(webhook("message_created"))
        answers = [
            bad.get("/health"),
            bad.get("/chats/c"),
            bad.post("/webhooks/fasttrack", content=body, headers=JSON_TYPE),
        ]
    for answer in answers:
        assert answer.status_code == 503
        assert answer.json() == {"detail": "database unavailable: it cannot be reached"}
        assert answer.headers["Retry-After"]
    lines = [record.getMessage() for record in caplog.records if record.name == "cdp.api"]
    assert len(lines) == 3
    assert all("database unavailable: OperationalError" in line for line in lines)
    if url.startswith("postgresql"):  # the log names the server as a person knows it
        assert all('"127.0.0.1", port 1 failed' in line for line in lines), lines


def test_a_webhook_kept_from_the_log_past_the_statement_timeout_is_a_503_that_says_so(
    settings: Settings, engine: Engine
) -> None:
    patient = settings.model_copy(update={"database_statement_timeout": timedelta(seconds=1)})
    body = json.dumps(webhook("message_created"))
    with TestClient(create_app(patient)) as client, db.writing(engine) as connection:
        store.lock(connection)  # as a long rebuild holds it (on SQLite: the write lock)
        answer = client.post("/webhooks/fasttrack", content=body, headers=JSON_TYPE)
    assert answer.status_code == 503
    assert answer.headers["Retry-After"]
    waited = {
        "sqlite": "another process held its write lock longer than CDP_DATABASE_STATEMENT_TIMEOUT",
        "postgresql": "a statement ran longer than CDP_DATABASE_STATEMENT_TIMEOUT",
    }
    assert answer.json() == {"detail": f"database unavailable: {waited[engine.dialect.name]}"}
    with engine.connect() as connection:
        assert store.head(connection) == 0


def test_a_webhook_kept_from_the_log_by_a_held_append_lock_is_a_503_once_its_wait_is_over(
    settings: Settings, engine: Engine
) -> None:
    """Whatever holds the append lock (an erasure's step, `cdp rebuild`, another process), a
    webhook waits for it CDP_DATABASE_POOL_TIMEOUT, not the statement timeout."""
    hurried = settings.model_copy(
        update={
            "database_pool_timeout": timedelta(seconds=0.5),
            "database_statement_timeout": timedelta(seconds=60),
        }
    )
    body = json.dumps(webhook("message_created"))
    with TestClient(create_app(hurried)) as client, db.writing(engine) as connection:
        store.lock(connection)
        answer = client.post("/webhooks/fasttrack", content=body, headers=JSON_TYPE)
    assert answer.status_code == 503
    assert answer.headers["Retry-After"]
    assert answer.json() == {
        "detail": "the server is busy: no database connection for webhooks came free "
        "within 0.5 s; retry later"
    }
    with engine.connect() as connection:
        assert store.head(connection) == 0


def test_an_unexpected_failure_is_a_500_logged_once_without_the_details_in_the_answer(
    client: Client, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("the projector is broken at /srv/cdp/secret")

    monkeypatch.setattr("cdp.conversations.queries.chat", broken)
    with caplog.at_level(logging.INFO, logger="cdp.api"):
        answer = client.get("/chats/c")
    assert answer.status_code == 500
    assert answer.json() == {"detail": "internal server error"}
    assert any(record.exc_info for record in caplog.records if record.name == "cdp.api")


def _no_such_table(connection: Connection, *_: object, **__: object) -> None:
    connection.execute(text("SELECT * FROM no_such_table"))


def _too_many_parameters(connection: Connection, *_: object, **__: object) -> None:
    """More than the database takes in one statement (SQLite: 32 766, or 250 000 as
    Debian builds it), sent one parameter a value."""
    most = {"postgresql": 65_535, "sqlite": 250_000}[connection.dialect.name]
    many = [str(n) for n in range(most + 1)]
    connection.execute(select(chats.c.uuid).where(chats.c.uuid.in_(many)))


@pytest.mark.parametrize("refused", [_no_such_table, _too_many_parameters])
def test_a_statement_the_database_refuses_is_a_500_that_says_so_not_an_outage(
    client: Client,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    refused: object,
) -> None:
    monkeypatch.setattr("cdp.conversations.queries.chat", refused)
    with caplog.at_level(logging.INFO, logger="cdp.api"):
        answer = client.get("/chats/c")
    assert answer.status_code == 500
    assert "Retry-After" not in answer.headers
    detail = answer.json()["detail"]
    assert detail.startswith("internal server error: the database refused a statement (")
    assert "unavailable" not in detail
    assert any(record.exc_info for record in caplog.records if record.name == "cdp.api")


@pytest.mark.parametrize(
    ("path", "forged"),
    [
        ("/chats/x%0A2026-11-25 13:00:00,000 INFO cdp.api: FORGED", "\n"),
        ("/chats/x%00y", "\x00"),
        ("/chats/x%1B[31mred", "\x1b"),
    ],
)
def test_a_path_cannot_forge_a_log_line_or_write_control_characters(
    client: Client, caplog: pytest.LogCaptureFixture, path: str, forged: str
) -> None:
    with caplog.at_level(logging.INFO, logger="cdp.api"):
        assert client.get(path).status_code in (400, 404)
    (line,) = [record.getMessage() for record in caplog.records if record.name == "cdp.api"]
    assert forged not in line
    assert line.isprintable()


def test_a_phone_like_id_in_the_path_is_masked_in_the_log(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="cdp.api"):
        assert client.get("/chats/79991234567").status_code == 404
    (line,) = [record.getMessage() for record in caplog.records if record.name == "cdp.api"]
    assert "9991234567" not in line
    assert "/chats/*********67" in line


@pytest.mark.parametrize(
    ("request_path", "named"),
    [
        ("/events?limit=1&limit=1000", ["limit"]),
        ("/teams/1/chats?state=open&state=idle", ["state"]),
        ("/profiles", ["phone", "name"]),
        ("/events?event_type=a%00", ["event_type"]),
        ("/chats/a%00b", ["path"]),
    ],
)
def test_every_400_names_what_is_wrong_in_errors(
    client: Client, request_path: str, named: list[str]
) -> None:
    answer = client.get(request_path)
    assert answer.status_code == 400
    assert [error["path"] for error in answer.json()["errors"]] == named


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{", "not valid JSON"),
        (b'{"a": ' + b"9" * 5000 + b"}", "an integer of more than 4300 digits"),
        (b"[" * 100 + b"]" * 100, "nested more than 64 levels deep"),
    ],
)
def test_a_body_that_cannot_be_read_is_a_400_naming_the_body(
    client: Client, body: bytes, says: str
) -> None:
    answer = client.post("/webhooks/fasttrack", content=body, headers=JSON_TYPE)
    assert answer.status_code == 400
    assert answer.json()["errors"] == [{"path": "body", "message": answer.json()["detail"]}]
    assert says in answer.json()["detail"]
