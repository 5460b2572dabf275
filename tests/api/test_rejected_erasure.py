"""Every kept delivery is covered by erasure, whatever its encoding or why it was refused:
after the customer's erasure neither GET /rejected nor the table holds anything of them."""

import base64
import gzip
import hashlib
import json
import zlib
from urllib.parse import urlencode

import pytest
from litestar.testing import TestClient
from sqlalchemy import Engine, insert, select

from cdp import db
from cdp.log.rejected import Unreadable, expire, texts
from cdp.log.tables import rejected
from cdp.privacy.keystore import Keystore
from cdp.privacy.tables import key_buckets, keys
from cdp.settings import Settings
from tests.api.conftest import kept_deliveries
from tests.factories import PAST, now_ms, webhook

Client = TestClient  # type: ignore[type-arg]

NAME, PHONE, TEXT = "Анна Петрова", "+79991234567", "my card is 4276 1234"
PROFILE = "profile-erased"


def body(chat: str = "chat-1", profile: str = PROFILE, team: int | str = "12a") -> bytes:
    """A session_updated naming the customer, refused (422) for its team id as it stands."""
    found = webhook("session_updated", chat=chat, profile=profile, team=team, name=NAME)
    found["payload"]["chat"]["phone"] = PHONE
    found["payload"]["message"] = {"uuid": "m-1", "type": "text", "text": TEXT}
    return json.dumps(found, ensure_ascii=False).encode()


JSON = {"Content-Type": "application/json"}
ENCODINGS: dict[str, tuple[bytes, dict[str, str], int]] = {
    "gzip": (gzip.compress(body()), {**JSON, "Content-Encoding": "gzip"}, 400),
    "deflate": (zlib.compress(body()), {**JSON, "Content-Encoding": "deflate"}, 400),
    "form-encoded": (
        urlencode({"payload": body().decode()}).encode(),
        {"Content-Type": "application/x-www-form-urlencoded"},
        415,
    ),
    "UTF-16": (
        body().decode().encode("utf-16"),
        {"Content-Type": "application/json; charset=utf-16"},
        415,
    ),
    "UTF-16 unannounced": (body().decode().encode("utf-16-le"), JSON, 400),
    "a trailing space in the chat id": (body(chat="chat-1 ", team=1), JSON, 422),
    "the chat id in capitals": (
        body(chat="CHAT-1", profile="p-9", team=1).replace(b"CHAT-1", b"CHAT-1\\u200b"),
        JSON,
        422,
    ),
    "as it is": (body(), JSON, 422),
}


def held(engine: Engine, settings: Settings) -> list[bytes]:
    """Every kept delivery as the bytes and text it holds, whichever way it is read."""
    found = []
    for row in kept_deliveries(engine, settings):
        body = row["body"] or b""
        try:
            read = texts(body, row["headers"])
        except Unreadable:
            read = []
        found.append(b" ".join([body, row["reason"].encode(), *(t.encode() for t in read)]))
    return found


def personal(data: bytes) -> bool:
    return any(value.encode() in data for value in (NAME, PHONE, TEXT, "4276"))


@pytest.mark.parametrize(("content", "headers", "status"), ENCODINGS.values(), ids=ENCODINGS.keys())
def test_a_kept_delivery_is_forgotten_by_the_erasure_whatever_its_encoding(
    client: Client,
    engine: Engine,
    settings: Settings,
    content: bytes,
    headers: dict[str, str],
    status: int,
) -> None:
    assert (
        client.post(
            "/webhooks/fasttrack",
            json=webhook("message_created", chat="chat-1", profile=PROFILE, message="hi"),
        ).status_code
        == 202
    )
    answer = client.post("/webhooks/fasttrack", content=content, headers=headers)
    assert answer.status_code == status, answer.text
    theirs = gzip.compress(body(chat="chat-9", profile="other"))
    refused = client.post(
        "/webhooks/fasttrack", content=theirs, headers={**JSON, "Content-Encoding": "gzip"}
    )
    assert refused.status_code == 400
    assert [personal(data) for data in held(engine, settings)] == [True, True]
    assert client.post(f"/profiles/{PROFILE}/erase").status_code == 200
    (kept,) = client.get("/rejected").json()["items"]
    assert base64.b64decode(kept["body_base64"]) == theirs
    assert kept["headers"]["content-encoding"] == "gzip"
    (left,) = held(engine, settings)
    assert b"chat-9" in left


def test_a_body_no_erasure_could_read_is_kept_as_its_size_and_hash_only(
    client: Client, engine: Engine, settings: Settings
) -> None:
    content = b"\x0b\x02\x80" + body()  # what a brotli body might be: not read here
    headers = {**JSON, "Content-Encoding": "br"}
    assert client.post("/webhooks/fasttrack", content=content, headers=headers).status_code == 400
    (kept,) = client.get("/rejected").json()["items"]
    assert (kept["body"], kept["size"], kept["status"]) == ("", len(content), 400)
    assert "Content-Encoding 'br' is not gzip or deflate" in kept["reason"]
    assert hashlib.sha256(content).hexdigest() in kept["reason"]
    assert not any(personal(data) for data in held(engine, settings))


def test_a_bomb_is_kept_as_its_size_and_hash_only(
    client: Client, engine: Engine, settings: Settings
) -> None:
    content = gzip.compress(body()[:-1] + b" " * (64 << 20) + b"}")
    headers = {**JSON, "Content-Encoding": "gzip"}
    assert client.post("/webhooks/fasttrack", content=content, headers=headers).status_code == 400
    (kept,) = client.get("/rejected").json()["items"]
    assert kept["body"] == ""
    assert "decompresses to more than" in kept["reason"]


def test_a_kept_body_an_older_version_could_not_read_is_forgotten_by_any_erasure(
    client: Client, engine: Engine, settings: Settings
) -> None:
    old = {
        "received_at": PAST,
        "source": "default",
        "status": 400,
        "reason": "body is not UTF-8",
        "headers": {},
    }
    readable = json.dumps({"chat": {"uuid": "chat-9", "name": "Иван"}}, ensure_ascii=False)
    with engine.begin() as connection:
        connection.execute(
            insert(rejected),
            [
                {**old, "size": 99, "body": body().decode().encode("cp1251")},
                {**old, "size": 99, "body": readable.encode("cp1251")},
                {**old, "size": 99, "body": readable.encode()},
            ],
        )
    assert client.post("/profiles/someone-else/erase").status_code == 200
    assert [item["body"] for item in client.get("/rejected").json()["items"]] == [readable]


@pytest.mark.parametrize("charset", ["utf-16", "utf-32", "undefined", "punycode", "idna"])
def test_a_charset_the_body_is_not_in_is_refused_and_kept_never_an_error(
    client: Client, engine: Engine, settings: Settings, charset: str
) -> None:
    """A Content-Type naming a charset that does not decode the body (UTF-16 without a
    byte order mark) or is no charset at all is the sender's mistake: refused and kept,
    never a 500 (which would fail the other webhooks committed with it)."""
    content = body(chat="chat-1", profile=PROFILE, team=1)
    headers = {"Content-Type": f"application/json; charset={charset}"}
    answer = client.post("/webhooks/fasttrack", content=content, headers=headers)
    assert 400 <= answer.status_code < 500, answer.text
    (kept,) = client.get("/rejected").json()["items"]
    assert kept["status"] == answer.status_code
    assert client.post(f"/profiles/{PROFILE}/erase").status_code == 200
    assert client.get("/rejected").json()["items"] == []


def test_a_kept_body_is_sealed_under_a_key_the_erasure_destroys_and_its_kek_moves_on(
    client: Client, engine: Engine, settings: Settings
) -> None:
    """A kept body is sealed under a key of its own: in the table it holds nothing in the
    clear, GET /rejected opens it; the erasure that forgets it destroys the key and moves
    its bucket to the next key-encryption key, as for a chat's (see Keystore.rotate)."""
    assert client.post("/webhooks/fasttrack", content=body(), headers=JSON).status_code == 422
    (row,) = kept_deliveries(engine, settings)
    with engine.connect() as connection:
        sealed, key_id = connection.execute(select(rejected.c.body, rejected.c.key_id)).one()
    assert key_id is not None
    assert not personal(bytes(sealed))
    assert personal(row["body"])
    assert TEXT in client.get("/rejected").json()["items"][0]["body"]
    keystore = Keystore.at(settings.keystore(), key_file=settings.key_path())
    try:
        with engine.connect() as main, keystore.connect(main) as held:
            bucket = held.scalar(select(keys.c.bucket).where(keys.c.id == key_id))
            assert bucket is not None
            # The key file of a PostgreSQL test database outlives the tests before on it:
            # the KEK may be past generation 0 already, and must move on from where it is.
            before = held.scalar(
                select(key_buckets.c.generation).where(key_buckets.c.bucket == bucket)
            )
        assert client.post(f"/profiles/{PROFILE}/erase").status_code == 200
        with engine.connect() as main, keystore.connect(main) as held:
            assert held.scalar(select(keys.c.id).where(keys.c.id == key_id)) is None
            moved = held.execute(
                select(key_buckets.c.generation, key_buckets.c.wrapped, key_buckets.c.stale).where(
                    key_buckets.c.bucket == bucket
                )
            ).one()
    finally:
        keystore.dispose()
    assert moved.generation > (before or 0)
    assert (moved.wrapped, moved.stale) == (moved.generation, False)
    assert kept_deliveries(engine, settings) == []


def test_an_expired_delivery_takes_its_key_with_it_and_the_next_erasure_its_kek(
    client: Client, engine: Engine, settings: Settings
) -> None:
    """What expired may name a customer erased later: its copies in dead rows and the
    write-ahead log must not open then, so its key's bucket moves on at the next erasure."""
    assert client.post("/webhooks/fasttrack", content=body(), headers=JSON).status_code == 422
    with engine.connect() as connection:
        key_id = connection.scalar(select(rejected.c.key_id))
    keystore = Keystore.at(settings.keystore(), key_file=settings.key_path())
    bucket_of = select(key_buckets.c.generation, key_buckets.c.stale)
    try:
        with engine.connect() as main, keystore.connect(main) as held:
            bucket = held.scalar(select(keys.c.bucket).where(keys.c.id == key_id))
        with db.writing(engine) as connection:
            assert expire(connection, now_ms() + 1, 10, keystore) == 1
        with engine.connect() as main, keystore.connect(main) as held:
            assert held.scalar(select(keys.c.id).where(keys.c.id == key_id)) is None
            stale = held.execute(bucket_of.where(key_buckets.c.bucket == bucket)).one()
        assert client.post(f"/profiles/{PROFILE}/erase").status_code == 200
        with engine.connect() as main, keystore.connect(main) as held:
            moved = held.execute(bucket_of.where(key_buckets.c.bucket == bucket)).one()
    finally:
        keystore.dispose()
    assert (stale.stale, moved.stale, moved.generation) == (True, False, stale.generation + 1)
    assert kept_deliveries(engine, settings) == []
