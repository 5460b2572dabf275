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

from cdp.models import rejected
from cdp.rejected import Unreadable, texts
from tests.factories import PAST, webhook

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


def held(engine: Engine) -> list[bytes]:
    """Every kept delivery as the bytes and text it holds, whichever way it is read."""
    with engine.connect() as connection:
        rows = connection.execute(select(rejected)).all()
    found = []
    for row in rows:
        try:
            read = texts(row.body, row.headers)
        except Unreadable:
            read = []
        found.append(b" ".join([row.body, row.reason.encode(), *(t.encode() for t in read)]))
    return found


def personal(data: bytes) -> bool:
    return any(value.encode() in data for value in (NAME, PHONE, TEXT, "4276"))


@pytest.mark.parametrize(("content", "headers", "status"), ENCODINGS.values(), ids=ENCODINGS.keys())
def test_a_kept_delivery_is_forgotten_by_the_erasure_whatever_its_encoding(
    client: Client, engine: Engine, content: bytes, headers: dict[str, str], status: int
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
    assert [personal(data) for data in held(engine)] == [True, True]
    assert client.post(f"/profiles/{PROFILE}/erase").status_code == 200
    (kept,) = client.get("/rejected").json()["items"]
    assert base64.b64decode(kept["body_base64"]) == theirs
    assert kept["headers"]["content-encoding"] == "gzip"
    (left,) = held(engine)
    assert b"chat-9" in left


def test_a_body_no_erasure_could_read_is_kept_as_its_size_and_hash_only(
    client: Client, engine: Engine
) -> None:
    content = b"\x0b\x02\x80" + body()  # what a brotli body might be: not read here
    headers = {**JSON, "Content-Encoding": "br"}
    assert client.post("/webhooks/fasttrack", content=content, headers=headers).status_code == 400
    (kept,) = client.get("/rejected").json()["items"]
    assert (kept["body"], kept["size"], kept["status"]) == ("", len(content), 400)
    assert "Content-Encoding 'br' is not gzip or deflate" in kept["reason"]
    assert hashlib.sha256(content).hexdigest() in kept["reason"]
    assert not any(personal(data) for data in held(engine))


def test_a_bomb_is_kept_as_its_size_and_hash_only(client: Client, engine: Engine) -> None:
    content = gzip.compress(body()[:-1] + b" " * (64 << 20) + b"}")
    headers = {**JSON, "Content-Encoding": "gzip"}
    assert client.post("/webhooks/fasttrack", content=content, headers=headers).status_code == 400
    (kept,) = client.get("/rejected").json()["items"]
    assert kept["body"] == ""
    assert "decompresses to more than" in kept["reason"]


def test_a_kept_body_an_older_version_could_not_read_is_forgotten_by_any_erasure(
    client: Client, engine: Engine
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
    client: Client, engine: Engine, charset: str
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
