"""Nothing the log holds breaks a read or a rebuild: rows written into it around cdp."""

import json
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import Engine, insert, text

from cdp import db, upgrades
from cdp.db import make_engine
from cdp.http.app import create_app
from cdp.log import store
from cdp.log.tables import events
from cdp.privacy import personal
from cdp.privacy.keystore import Keystore
from cdp.settings import Settings
from tests.api.conftest import rebuilt
from tests.factories import JSON_TYPE, PAST, webhook

Client = TestClient  # type: ignore[type-arg]


def deep(depth: int) -> str:
    """A message_created of chat "c" whose message nests `depth` levels of arrays."""
    body = json.dumps(webhook("message_created", chat="c", message="x", at=PAST + depth))
    return body.replace('"text": "x"', '"text": ' + "[" * depth + "]" * depth)


ODD_BODIES = {
    "255 levels deep": deep(255),
    "900 levels deep": deep(900),
    "100 000 levels deep": deep(100_000),
    "not JSON": "{not json",
    "a JSON array": "[1, 2]",
    "an overflowing number": deep(1).replace("[]", "1e400"),
    "a lone surrogate": deep(1).replace("[]", '"\\ud800"'),
    "a session_updated without a team": json.dumps(webhook("session_updated", chat="c", at=PAST)),
    "a session_updated whose team id has 5000 digits": json.dumps(
        webhook("session_updated", chat="c", team="9" * 5000, at=PAST)
    ),
}


def log_directly(engine: Engine, bodies: dict[str, str], keystore: Keystore) -> None:
    """Each body logged as it is, sealed under the chat's key as cdp seals what it logs."""
    subject = personal.of_chat("c")
    with db.writing(engine) as connection:
        store.lock(connection)
        known = keystore.known(connection, [subject], ())
        key = keystore.ring(connection, [subject], known)[subject]
    rows: list[dict[str, Any]] = [
        {
            "event_type": "session_updated" if "session" in name else "message_created",
            "occurred_at": PAST + index,
            "received_at": PAST + index,
            "chat_uuid": "c",
            "profile_uuid": "profile-1",
            "dedupe_key": f"{index:064x}",
            "body": body,  # in the clear too: the reads must not care
            "hash": f"{index:064x}",  # no chain: nor about this
            "key_id": key.id,
            "sealed": personal.seal(key.material, body, f"{index:064x}"),
        }
        for index, (name, body) in enumerate(bodies.items(), start=1)
    ]
    with engine.begin() as connection:
        connection.execute(insert(events), rows)


@pytest.fixture
def odd_log(client: Client, engine: Engine, settings: Settings) -> Client:
    """A log holding every odd body, then one good webhook of the same chat, all projected."""
    keystore = Keystore.at(settings.keystore(), key_file=settings.key_path())
    log_directly(engine, ODD_BODIES, keystore)
    keystore.dispose()
    rebuilt(client)  # written around cdp: built from the log, as `cdp catch-up` would
    answer = client.post(
        "/webhooks/fasttrack",
        content=json.dumps(webhook("session_updated", chat="c", team=1, at=PAST + 100)),
        headers=JSON_TYPE,
    )
    assert answer.status_code == 202, answer.text
    return client


def test_every_page_of_the_log_serves_every_body(odd_log: Client) -> None:
    page = odd_log.get("/events", params={"limit": 1000})
    assert page.status_code == 200
    bodies = [item["body"] for item in page.json()["items"]]
    assert len(bodies) == len(ODD_BODIES) + 1
    assert bodies[:2] == [json.loads(ODD_BODIES["255 levels deep"]), json.loads(deep(900))]
    # Too deep for the server to read, or not JSON at all: served as the text it is.
    assert bodies[2:4] == [ODD_BODIES["100 000 levels deep"], "{not json"]
    assert bodies[4] == [1, 2]


def test_each_logged_event_is_served_on_its_own(odd_log: Client) -> None:
    for position in range(1, len(ODD_BODIES) + 2):
        assert odd_log.get(f"/events/{position}").status_code == 200


def test_the_chats_timeline_serves_every_message(odd_log: Client) -> None:
    timeline = odd_log.get("/chats/c/timeline")
    assert timeline.status_code == 200
    items = timeline.json()["items"]
    assert len(items) == len(ODD_BODIES) + 1
    deepest_read = json.loads(ODD_BODIES["255 levels deep"])["payload"]["message"]
    assert [item["message"] for item in items[:3]] == [deepest_read, None, None]
    kinds = {item["kind"] for item in items}
    assert "other" in kinds  # the session_updated without a team counts for nothing
    assert odd_log.get("/chats/c").json()["team"]["id"] == 1


def test_a_rebuild_goes_through_every_body_and_gives_the_same_answers(odd_log: Client) -> None:
    before = [odd_log.get(path).json() for path in ("/chats/c", "/chats/c/timeline")]
    rebuilt(odd_log)
    after = [odd_log.get(path).json() for path in ("/chats/c", "/chats/c/timeline")]
    assert after == before


@pytest.mark.parametrize(
    "columns",
    [
        {"chat_uuid": None},  # a known type naming no chat, yet a profile
        {"occurred_at": 2**62},  # beyond year 9999
        {"occurred_at": -(2**62)},  # before year 1
    ],
    ids=["no chat", "after 9999", "before year 1"],
)
def test_odd_columns_break_no_read_no_webhook_and_no_rebuild(
    client: Client, engine: Engine, columns: dict[str, Any]
) -> None:
    row = {
        "event_type": "message_created",
        "occurred_at": PAST,
        "received_at": PAST,
        "chat_uuid": "c",
        "profile_uuid": "p",
        "dedupe_key": "f" * 64,
        "body": json.dumps(webhook("message_created", chat="c", profile="p")),
        "hash": "f" * 64,
        **columns,
    }
    with engine.begin() as connection:
        connection.execute(insert(events), [row])
    good = json.dumps(webhook("session_updated", chat="c", team=1, at=PAST + 5))
    assert client.post("/webhooks/fasttrack", content=good, headers=JSON_TYPE).status_code == 202
    for path in ("/events", "/events/1", "/chats/c", "/chats/c/timeline", "/profiles/p"):
        assert client.get(path).status_code in (200, 404), path
    rebuilt(client)


def test_text_that_is_not_utf_8_in_a_sqlite_log_reads_as_u_fffd(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cdp.db'}"
    engine = make_engine(url)
    upgrades.upgrade(engine)
    body = json.dumps(webhook("message_created", chat="c", message="MARK"))
    with engine.begin() as connection:  # SQLite keeps whatever bytes it is given as text
        connection.execute(
            text(
                "INSERT INTO events (event_type, occurred_at, received_at, chat_uuid, "
                "dedupe_key, body, hash) VALUES ('message_created', :at, :at, 'c', :key, "
                "CAST(:bytes AS TEXT), :key)"
            ),
            {"at": PAST, "key": "e" * 64, "bytes": body.replace("MARK", "\xff").encode("latin-1")},
        )
    engine.dispose()
    with TestClient(create_app(Settings(database_url=url))) as client:
        assert client.get("/events").json()["items"][0]["body"]["payload"]["message"]["text"]
        rebuilt(client)
        assert client.get("/chats/c/timeline").status_code == 200
