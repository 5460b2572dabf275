"""Erasure on request: personal data sealed in the log, unreadable once its keys are gone,
the facts kept; through rebuilds, replays and backups restored later."""

import hashlib
import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    delete,
    func,
    make_url,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL

from cdp import db
from cdp.access import credentials
from cdp.db import make_engine
from cdp.http.app import create_app
from cdp.log.tables import events
from cdp.privacy import erasure
from cdp.privacy.keystore import Keystore
from cdp.privacy.tables import erasures, pending_erasures
from cdp.privacy.tables import keys as keys_table
from cdp.profiles.tables import profile_chats
from cdp.projections import registry
from cdp.runtime.service import Writer
from cdp.settings import Settings
from tests.api.conftest import kept_deliveries, name_digest, name_digests, rebuilt
from tests.factories import JSON_TYPE, PAST, handoff, opened, reply, webhook

Client = TestClient  # type: ignore[type-arg]

PHONE, NAME, TEXT = "+79991234567", "Анна Петрова", "my card is 4276 1234"
PROFILE = "profile-erased"


def history(chat: str = "chat-1", profile: str = PROFILE) -> list[dict[str, Any]]:
    """A chat opened, answered and handed off, with a name, a phone and texts."""
    personal = {"profile": profile, "phone": PHONE, "name": NAME}
    first = opened(chat, at=PAST, team=1, title="Order 1042 for Анна", **personal)
    said = webhook("message_created", chat=chat, at=PAST + 1000, message=TEXT, **personal)
    bodies = [*first, said, reply(chat, at=PAST + 2000), handoff(chat, at=PAST + 3000, **personal)]
    return [anonymous_message_ids(body) for body in bodies]


def anonymous_message_ids(body: dict[str, Any]) -> dict[str, Any]:
    """The factories name a message after its text: here its id must not hold the text."""
    message = body["payload"].get("message")
    if message is not None:
        message["uuid"] = f"m-{body['timestamp']}"
    return body


def post(client: Client, body: dict[str, Any]) -> int:
    answer = client.post(
        "/webhooks/fasttrack", content=json.dumps(body, ensure_ascii=False), headers=JSON_TYPE
    )
    assert answer.status_code in (200, 202, 410), answer.text
    return answer.status_code


def answers(client: Client) -> dict[str, Any]:
    """Everything the API says about the chat, its profile and the log."""
    return {
        path: client.get(path).json()
        for path in (
            "/chats/chat-1",
            "/chats/chat-1/timeline",
            "/chats/chat-1/sessions",
            "/chats/chat-1/handoffs",
            f"/profiles/{PROFILE}",
            "/events",
        )
    }


def raw_log(engine: Engine) -> bytes:
    """Every byte the log's rows hold, as one string to search."""
    with engine.connect() as connection:
        rows = connection.execute(select(events)).all()
    return b"".join(
        value if isinstance(value, bytes) else str(value).encode() for row in rows for value in row
    )


def test_the_log_holds_no_personal_data_in_the_clear(client: Client, engine: Engine) -> None:
    for body in history():
        post(client, body)
    stored = raw_log(engine)
    for secret in (PHONE, NAME, TEXT, "Order 1042"):
        assert secret.encode() not in stored
        assert json.dumps(secret).encode() not in stored  # nor escaped
    event = client.get("/events/3").json()
    assert event["body"]["payload"]["message"]["text"] == TEXT
    assert event["erased"] is False


def test_an_event_that_names_no_customer_is_sealed_too(client: Client, engine: Engine) -> None:
    rated = {"event_type": "survey_answered", "timestamp": PAST, "payload": {"answer": PHONE}}
    assert post(client, rated) == 202
    assert PHONE.encode() not in raw_log(engine)
    assert client.get("/events/1").json()["body"] == rated


def test_no_dedupe_key_lets_a_guess_of_erased_data_be_tested(
    client: Client, engine: Engine
) -> None:
    """A plain hash of the body would let whoever holds a copy of the log confirm a guess of
    an erased phone or name: the dedupe key's part that depends on the body is keyed."""
    bodies = history()
    for body in bodies:
        post(client, body)
    assert client.post(f"/profiles/{PROFILE}/erase").status_code == 200
    stored = raw_log(engine)
    for body in bodies:
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        assert digest[:32].encode() not in stored
        assert digest[32:].encode() not in stored
    with engine.connect() as connection:
        rows = connection.execute(select(events.c.dedupe_key, events.c.body)).all()
    # The clear half is made from what the log shows in the clear anyway.
    assert all(row.dedupe_key[:32] == sha256(row.body)[:32] for row in rows)
    assert len({row.dedupe_key[32:] for row in rows}) == len(rows)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_erasure_removes_the_personal_data_and_keeps_the_facts(client: Client) -> None:
    for body in history():
        post(client, body)
    before = answers(client)
    answer = client.post(f"/profiles/{PROFILE}/erase")
    assert answer.status_code == 200, answer.text
    assert answer.json()["chats"] == ["chat-1"]
    assert answer.json()["keys_destroyed"] == 1  # the chat's: every event names it
    after = answers(client)
    text_after = json.dumps(after, ensure_ascii=False)
    for secret in (PHONE, "79991234567", NAME, TEXT, "Order 1042", "hello at"):
        assert secret not in text_after, secret
    chat = after["/chats/chat-1"]
    assert (chat["name"], chat["phone"]) == (None, None)
    assert chat["team"] == before["/chats/chat-1"]["team"]
    assert after["/chats/chat-1/handoffs"] == before["/chats/chat-1/handoffs"]
    sessions = [
        (s["number"], s["opened_at"], s["teams"]) for s in after["/chats/chat-1/sessions"]["items"]
    ]
    assert sessions == [
        (s["number"], s["opened_at"], s["teams"]) for s in before["/chats/chat-1/sessions"]["items"]
    ]
    kinds = [item["kind"] for item in after["/chats/chat-1/timeline"]["items"]]
    assert kinds == [item["kind"] for item in before["/chats/chat-1/timeline"]["items"]]
    logged = after["/events"]["items"]
    assert all(item["erased"] for item in logged)
    assert all(item["unreadable"] is None for item in logged)
    assert [item["body"]["event_type"] for item in logged] == [
        item["event_type"] for item in before["/events"]["items"]
    ]
    assert logged[3]["body"]["payload"]["session"]["operator"]["uuid"] == "op-1"
    assert client.get("/profiles", params={"phone": PHONE}).json()["items"] == []
    assert client.get("/profiles", params={"name": "анна"}).json()["items"] == []


def test_erasure_takes_the_search_key_of_the_name_with_it(client: Client, engine: Engine) -> None:
    for body in history():
        post(client, body)
    assert name_digests(engine) == {"chat-1": name_digest("анна петрова")}
    assert name_digest("анна петрова") is not None
    assert client.post(f"/profiles/{PROFILE}/erase").status_code == 200
    assert name_digests(engine) == {"chat-1": None}


def test_an_erased_profile_stays_erased_through_a_rebuild(client: Client) -> None:
    for body in history():
        post(client, body)
    assert client.post(f"/profiles/{PROFILE}/erase").status_code == 200
    erased = answers(client)
    rebuilt(client)
    assert answers(client) == erased


def test_later_webhooks_of_an_erased_profile_are_kept_as_usual(client: Client) -> None:
    for body in history():
        post(client, body)
    client.post(f"/profiles/{PROFILE}/erase")
    later = webhook(
        "message_created", chat="chat-1", at=PAST + 9000, message="new", name="Аня", profile=PROFILE
    )
    assert post(client, later) == 202
    assert client.get("/chats/chat-1").json()["name"] == "Аня"
    bodies = [item["body"] for item in client.get("/events").json()["items"]]
    assert bodies[-1]["payload"]["message"]["text"] == "new"
    assert TEXT not in json.dumps(bodies, ensure_ascii=False)
    # A redelivery of an erased webhook stays a duplicate: it brings nothing back.
    assert post(client, history()[2]) == 200
    assert TEXT not in json.dumps(client.get("/events").json(), ensure_ascii=False)


def test_a_suppressed_profile_s_later_webhooks_are_refused_kept_without_personal_data_and_counted(
    client: Client, engine: Engine, settings: Settings
) -> None:
    for body in history():
        post(client, body)
    assert client.post(f"/profiles/{PROFILE}/erase", params={"suppress": True}).json()["suppressed"]
    head = client.get("/events").json()["items"][-1]["position"]
    new_chat = webhook(
        "message_created", chat="chat-2", at=PAST + 9000, message=TEXT, phone=PHONE, profile=PROFILE
    )
    same_chat = webhook(
        "message_created", chat="chat-1", at=PAST + 9001, message=TEXT, profile=None
    )
    for body in (anonymous_message_ids(new_chat), anonymous_message_ids(same_chat)):
        answer = client.post("/webhooks/fasttrack", content=json.dumps(body), headers=JSON_TYPE)
        assert answer.status_code == 410
        assert PROFILE in answer.json()["detail"]
    assert client.get("/events").json()["items"][-1]["position"] == head
    with engine.connect() as connection:
        refused = connection.scalar(select(erasures.c.refused))
    kept = [(row["status"], row["body"]) for row in kept_deliveries(engine, settings)]
    assert [status for status, _ in kept] == [410, 410]
    assert all(PHONE.encode() not in body and TEXT.encode() not in body for _, body in kept)
    assert json.loads(kept[0][1])["payload"]["chat"]["uuid"] == "chat-2"
    assert refused == 2
    # Erasing again without --suppress does not lift it.
    assert client.post(f"/profiles/{PROFILE}/erase").json()["suppressed"]


def test_a_profile_not_seen_yet_can_be_suppressed_before_its_first_webhook(client: Client) -> None:
    answer = client.post("/profiles/someone-new/erase", params={"suppress": True})
    assert answer.json()["chats"] == []
    body = webhook("message_created", chat="c9", profile="someone-new", message="hi")
    assert (
        client.post("/webhooks/fasttrack", content=json.dumps(body), headers=JSON_TYPE).status_code
        == 410
    )


def test_a_body_whose_key_was_lost_is_unreadable_not_erased(
    client: Client, settings: Settings, engine: Engine
) -> None:
    for body in history():
        post(client, body)
    with keys_of(settings, engine) as keys:
        keys.execute(delete(keys_table))  # lost (a keystore restored from too early), not erased
    event = client.get("/events/3").json()
    assert event["erased"] is False
    assert "not in the keystore" in event["unreadable"]
    assert TEXT not in json.dumps(event, ensure_ascii=False)
    assert event["body"]["payload"]["message"]["uuid"] == f"m-{PAST + 1000}"


def test_a_body_its_key_does_not_open_is_unreadable_not_erased(
    client: Client, settings: Settings, engine: Engine
) -> None:
    for body in history():
        post(client, body)
    with keys_of(settings, engine) as keys:
        keys.execute(update(keys_table).values(material=bytes(32)))
    event = client.get("/events/3").json()
    assert event["erased"] is False
    assert "was changed" in event["unreadable"]


@contextmanager
def keys_of(settings: Settings, engine: Engine) -> Iterator[Connection]:
    """A transaction on the keystore the server uses (its own, or the main database)."""
    keystore = Keystore.at(settings.keystore())
    with engine.begin() as main, keystore.connect(main, write=True) as connection:
        yield connection
    keystore.dispose()


def test_erasure_needs_an_admin_token(settings: Settings, engine: Engine) -> None:
    with engine.begin() as connection:
        read = credentials.create_token(connection, "analyst", "read")
        admin = credentials.create_token(connection, "ops", "admin")
    with TestClient(create_app(settings)) as client:
        assert client.post(f"/profiles/{PROFILE}/erase").status_code == 401
        as_reader = {"Authorization": f"Bearer {read}"}
        assert client.post(f"/profiles/{PROFILE}/erase", headers=as_reader).status_code == 403
        as_admin = {"Authorization": f"Bearer {admin}"}
        assert client.post(f"/profiles/{PROFILE}/erase", headers=as_admin).status_code == 200


@pytest.fixture
def copy(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Makes a backup of a database, as a new database: the SQLite file, or a PostgreSQL
    clone (dropped at the end)."""
    clones: list[tuple[URL, str]] = []

    def backup(database: str) -> str:
        url = make_url(database)
        if url.get_backend_name() == "sqlite":
            assert url.database is not None
            target = tmp_path / f"backup-{len(clones)}.db"
            shutil.copy(url.database, target)
            return f"sqlite:///{target}"
        clone = f"cdp_backup_{uuid.uuid4().hex[:12]}"
        _on_server(url, f'CREATE DATABASE "{clone}" TEMPLATE "{url.database}"')
        clones.append((url, clone))
        return url.set(database=clone).render_as_string(hide_password=False)

    yield backup
    for url, clone in clones:
        _on_server(url, f'DROP DATABASE "{clone}" WITH (FORCE)')


def _on_server(url: URL, statement: str) -> None:
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(statement))
    admin.dispose()


def test_an_erasure_outlives_a_backup_of_the_database_restored_later(
    settings: Settings, tmp_path: Path, copy: Callable[[str], str]
) -> None:
    """With the keys in a keystore of their own, a backup taken before the erasure and
    restored after it holds the sealed data but no key to it; the server folds the
    erased chats again as it starts."""
    keystore = f"sqlite:///{tmp_path / 'keys.db'}"
    live = settings.model_copy(update={"keystore_url": keystore})
    with TestClient(create_app(live)) as client:
        for body in history():
            post(client, body)
    backup = copy(settings.database_url)
    with TestClient(create_app(live)) as client:
        assert client.post(f"/profiles/{PROFILE}/erase").status_code == 200
        erased = answers(client)
    restored = live.model_copy(update={"database_url": backup})
    with TestClient(create_app(restored)) as client:
        assert answers(client) == erased
        assert NAME not in json.dumps(client.get("/events").json(), ensure_ascii=False)


def test_an_erasure_outlives_a_backup_of_the_keystore_restored_later(
    settings: Settings, tmp_path: Path
) -> None:
    """A keystore restored from before the erasure holds the erased keys again: the
    database's record of the erasure destroys them again as the server starts."""
    keys = tmp_path / "keys.db"
    live = settings.model_copy(update={"keystore_url": f"sqlite:///{keys}"})
    with TestClient(create_app(live)) as client:
        for body in history():
            post(client, body)
    shutil.copy(keys, tmp_path / "keys-backup.db")
    with TestClient(create_app(live)) as client:
        assert client.post(f"/profiles/{PROFILE}/erase").status_code == 200
        erased = answers(client)
    shutil.copy(tmp_path / "keys-backup.db", keys)
    with TestClient(create_app(live)) as client:
        assert answers(client) == erased
    engine = make_engine(f"sqlite:///{keys}")
    with engine.connect() as connection:
        left = connection.execute(text("SELECT count(*) FROM keys")).scalar()
    engine.dispose()
    assert left == 0


def test_keys_of_the_main_database_move_to_a_keystore_of_its_own(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    with TestClient(
        create_app(settings.model_copy(update={"keystore_url": settings.database_url}))
    ) as client:
        for body in history():
            post(client, body)
    apart = settings.model_copy(update={"keystore_url": f"sqlite:///{tmp_path / 'keys.db'}"})
    with TestClient(create_app(apart)) as client:
        assert client.get("/events/3").json()["body"]["payload"]["message"]["text"] == TEXT
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM keys")).scalar() == 0
        assert connection.scalar(select(func.count()).select_from(events)) == len(history())


def test_erasure_forgets_the_refused_deliveries_that_name_the_customer(
    client: Client, engine: Engine, settings: Settings
) -> None:
    for body in history():
        post(client, body)
    mine = webhook("session_updated", chat="chat-1", team="12a", phone=PHONE, profile=PROFILE)
    theirs = webhook("session_updated", chat="chat-9", team="12a", phone=PHONE, profile="other")
    for body in (mine, theirs):
        assert (
            client.post(
                "/webhooks/fasttrack", content=json.dumps(body), headers=JSON_TYPE
            ).status_code
            == 422
        )
    # Not JSON, its chat's id spelt with escapes: still the customer's.
    broken = b'{"payload": {"chat": {"uuid": "\\u0063hat-1", "phone": "+7999"}}, oops'
    assert client.post("/webhooks/fasttrack", content=broken, headers=JSON_TYPE).status_code == 400
    assert client.post(f"/profiles/{PROFILE}/erase").status_code == 200
    left = [row["body"] for row in kept_deliveries(engine, settings)]
    assert [json.loads(body)["payload"]["chat"]["uuid"] for body in left] == ["chat-9"]


def test_a_bad_delivery_naming_a_suppressed_customer_is_kept_without_its_body(
    client: Client,
) -> None:
    assert client.post(f"/profiles/{PROFILE}/erase", params={"suppress": True}).status_code == 200
    mine = webhook("session_updated", chat="chat-1", team="12a", phone=PHONE, profile=PROFILE)
    theirs = webhook("session_updated", chat="chat-9", team="12a", phone=PHONE, profile="other")
    for body in (mine, theirs):
        assert (
            client.post(
                "/webhooks/fasttrack", content=json.dumps(body), headers=JSON_TYPE
            ).status_code
            == 422
        )
    kept = client.get("/rejected").json()["items"]
    assert [item["body"] for item in kept] == ["", json.dumps(theirs)]
    assert "body not kept: it names a customer erased on request" in kept[0]["reason"]
    assert "names a customer" not in kept[1]["reason"]


def test_keys_a_restored_database_still_holds_do_not_come_back_into_the_keystore(
    settings: Settings, tmp_path: Path, copy: Callable[[str], str]
) -> None:
    """A backup from when the keys lived in the main database holds the erased keys: the
    keystore, which took them over, does not take them back."""
    inside = settings.model_copy(update={"keystore_url": settings.database_url})
    with TestClient(create_app(inside)) as client:
        for body in history():
            post(client, body)
    backup = copy(settings.database_url)  # keys and all
    apart = settings.model_copy(update={"keystore_url": f"sqlite:///{tmp_path / 'keys.db'}"})
    with TestClient(create_app(apart)) as client:  # the keys move to the keystore
        assert client.post(f"/profiles/{PROFILE}/erase").status_code == 200
        erased = answers(client)
    restored = apart.model_copy(update={"database_url": backup})
    with TestClient(create_app(restored)) as client:
        assert answers(client) == erased
        assert all(item["erased"] for item in client.get("/events").json()["items"])


def erase(settings: Settings, between: Callable[[], None] | None = None) -> erasure.Erased:
    """Erase PROFILE as the server does, calling `between` between two of its steps."""
    engine, keystore = make_engine(settings.database_url), Keystore.at(settings.keystore())
    try:
        return erasure.erase(
            engine, keystore, registry.projectors(settings), PROFILE, between=between
        )
    finally:
        engine.dispose()
        keystore.dispose()


def test_a_profile_is_erased_a_few_chats_a_step_and_webhooks_go_on_between_steps(
    client: Client, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(erasure, "STEP_CHATS", 1)
    chats = ["chat-1", "chat-2", "chat-3"]
    for chat in chats:
        for body in history(chat):
            post(client, body)
    midway = []

    def between() -> None:
        other = webhook("message_created", chat=f"other-{len(midway)}", profile="someone-else")
        midway.append(
            (
                client.post(
                    "/webhooks/fasttrack", content=json.dumps(other), headers=JSON_TYPE
                ).status_code,
                client.get(f"/profiles/{PROFILE}").status_code,
                client.get("/profiles", params={"phone": PHONE}).json()["items"],
                [client.get(f"/chats/{chat}").json()["name"] for chat in chats],
            )
        )

    done = erase(settings, between)

    assert (done.chats, done.keys_destroyed) == (chats, 3)
    # Once its chats are listed, and between steps: another's webhook is stored, the
    # profile is neither whole nor erased, and each chat is either as it was or erased.
    assert midway == [
        (202, 409, [], [NAME, NAME, NAME]),
        (202, 409, [], [None, NAME, NAME]),
        (202, 409, [], [None, None, NAME]),
    ]
    profile = client.get(f"/profiles/{PROFILE}").json()
    assert [chat["name"] for chat in profile["chats"]] == [None, None, None]
    assert len(client.get("/events", params={"profile_uuid": "someone-else"}).json()["items"]) == 3


class Crash(Exception):
    """The process stops here."""


@pytest.mark.parametrize("where", ["while it listed its chats", "between two steps"])
@pytest.mark.parametrize("then", ["the next start", "the next attempt"])
def test_an_erasure_stopped_midway_is_finished_by(
    then: str, where: str, settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    chats = ["chat-1", "chat-2", "chat-3"]
    monkeypatch.setattr(erasure, "STEP_CHATS", 1)
    monkeypatch.setattr(erasure, "LIST_AT_ONCE", 1)
    with TestClient(create_app(settings)) as client:
        for chat in chats:
            for body in history(chat):
                post(client, body)
    listed, pend = [], erasure._pend

    def listing(*args: Any) -> None:  # the first is listed with the erasure itself
        listed.append(args)
        if where == "while it listed its chats" and len(listed) == 3:
            raise Crash
        pend(*args)

    def between() -> None:  # after each of two chats listed, then after the first step
        calls.append(1)
        if len(calls) == 3:
            raise Crash

    calls: list[int] = []
    monkeypatch.setattr(erasure, "_pend", listing)
    with pytest.raises(Crash):
        erase(settings, between)
    monkeypatch.setattr(erasure, "_pend", pend)
    left = {"while it listed its chats": chats[:2], "between two steps": chats[1:]}[where]
    with engine.connect() as connection:
        assert connection.scalars(select(pending_erasures.c.chat_uuid)).all() == left
    if then == "the next attempt":
        assert erase(settings).chats == chats
    with TestClient(create_app(settings)) as client:  # a start finishes it, if left to do
        profile = client.get(f"/profiles/{PROFILE}")
        assert profile.status_code == 200
        assert [chat["name"] for chat in profile.json()["chats"]] == [None, None, None]
        assert NAME not in json.dumps(client.get("/events").json(), ensure_ascii=False)
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(pending_erasures)) == 0


@pytest.mark.slow
def test_a_profile_of_more_chats_than_a_statement_takes_parameters_is_erased(
    client: Client, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL takes 65 535 parameters a statement at most: every list of the erasure
    (keys, chats to fold again, rows to delete) is longer here, in one step. The chats but
    one are made as the projection has them, without events: quicker than 65 536 webhooks."""
    monkeypatch.setattr(erasure, "STEP_CHATS", 70_000)
    monkeypatch.setattr(erasure, "STEP_EVENTS", 70_000)
    for body in history():
        post(client, body)
    many = [f"many-{n:05d}" for n in range(65_536)]
    rows = [
        {"profile_uuid": PROFILE, "chat_uuid": chat, "first_seen_at": PAST, "last_seen_at": PAST}
        for chat in many
    ]
    with engine.begin() as connection:
        db.insert(connection, profile_chats, rows)

    answer = client.post(f"/profiles/{PROFILE}/erase")

    assert answer.status_code == 200, answer.text
    assert answer.json()["chats"] == ["chat-1", *many]
    assert answer.json()["keys_destroyed"] == 1
    assert client.get("/chats/chat-1").json()["name"] is None
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(pending_erasures)) == 0
        mine = select(profile_chats.c.chat_uuid).where(profile_chats.c.profile_uuid == PROFILE)
        assert connection.scalars(mine).all() == ["chat-1"]  # the others had no event


def test_an_erasure_asked_of_the_api_gives_way_to_the_waiting_webhooks_between_steps(
    client: Client, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's writers take turns at one lock that a waiting one only looks at now and
    then: between two steps, the webhooks waiting are committed first (PostgreSQL queues
    them at its lock by itself)."""
    erase, given = erasure.erase, []

    def erasing(*args: Any, **kwargs: Any) -> erasure.Erased:
        given.append(kwargs.get("between"))
        return erase(*args, **kwargs)

    monkeypatch.setattr(erasure, "erase", erasing)
    assert client.post(f"/profiles/{PROFILE}/erase").status_code == 200
    (between,) = given
    if engine.dialect.name == "sqlite":
        assert getattr(between, "__func__", None) is Writer.yield_to_webhooks
    else:
        assert between is None
