"""Who may post and read: sources and their secrets, signatures, tokens and roles, limits."""

import asyncio
import base64
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import OperationalError

from cdp.access import credentials
from cdp.access.auth import Keys
from cdp.access.credentials import Keyring
from cdp.db import make_engine
from cdp.http.app import create_app
from cdp.log.tables import events
from cdp.runtime.service import Lane
from cdp.settings import Settings
from tests.api.conftest import rebuilt
from tests.factories import JSON_TYPE, webhook

Client = TestClient  # type: ignore[type-arg]


@dataclass
class Store:
    """A store with two sources (one signing) and a read and an admin token."""

    client: Client
    engine: Engine
    shop: str
    signed: str
    signing_key: str
    read: str
    admin: str

    def logged(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.scalar(select(func.count()).select_from(events)) or 0)


def body(chat: str = "c", **fields: Any) -> bytes:
    """A webhook of its own chat and profile: a source may not post into another's."""
    fields.setdefault("profile", f"profile-{chat}")
    return json.dumps(webhook("message_created", chat=chat, **fields)).encode()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def store(settings: Settings, engine: Engine) -> Iterator[Store]:
    with engine.begin() as connection:
        shop = credentials.add_source(connection, "shop")
        signed = credentials.add_source(connection, "signed", signed=True)
        read = credentials.create_token(connection, "analyst", "read")
        admin = credentials.create_token(connection, "ops", "admin")
    assert signed.signing_key is not None
    with TestClient(create_app(settings)) as client:
        yield Store(client, engine, shop.secret, signed.secret, signed.signing_key, read, admin)


def test_a_source_posts_with_its_secret_in_the_url_or_a_header(store: Store) -> None:
    by_url = store.client.post(
        "/webhooks/fasttrack/shop",
        params={"token": store.shop},
        content=body("a"),
        headers=JSON_TYPE,
    )
    by_header = store.client.post(
        "/webhooks/fasttrack/shop", headers={**JSON_TYPE, **bearer(store.shop)}, content=body("b")
    )
    assert (by_url.status_code, by_header.status_code) == (202, 202)
    logged = store.client.get("/events", headers=bearer(store.read)).json()["items"]
    assert [(event["chat_uuid"], event["source"]) for event in logged] == [
        ("a", "shop"),
        ("b", "shop"),
    ]


@pytest.mark.parametrize(
    ("path", "token"),
    [
        ("/webhooks/fasttrack/shop", "cdps_wrong"),
        ("/webhooks/fasttrack/shop", None),
        ("/webhooks/fasttrack/nobody", "cdps_wrong"),
        ("/webhooks/fasttrack", "cdps_wrong"),  # the default source: not configured here
        ("/webhooks/fasttrack/signed", "SHOP"),  # another source's secret
    ],
)
def test_a_wrong_or_missing_secret_is_a_401_whether_or_not_the_source_exists(
    store: Store, path: str, token: str | None
) -> None:
    token = store.shop if token == "SHOP" else token
    answer = store.client.post(path, params={"token": token} if token else {}, content=body())
    assert answer.status_code == 401
    assert answer.json() == {
        "detail": "unknown source or wrong secret: give the source's secret as ?token= or "
        "Authorization: Bearer"
    }
    assert answer.headers["www-authenticate"] == "Bearer"
    assert store.logged() == 0


def signed_headers(key: str, content: bytes, at: float | None = None) -> dict[str, str]:
    moment = int(time.time() if at is None else at)
    return {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(moment),
        "webhook-signature": credentials.sign(key, "msg_1", moment, content),
    }


def test_a_signing_source_needs_a_valid_standard_webhooks_signature(store: Store) -> None:
    url, params = "/webhooks/fasttrack/signed", {"token": store.signed}
    content = body()
    unsigned = store.client.post(url, params=params, content=content, headers=JSON_TYPE)
    forged = store.client.post(
        url,
        params=params,
        content=content,
        headers={
            **JSON_TYPE,
            **signed_headers("whsec_" + base64.b64encode(b"not the key" * 3).decode(), content),
        },
    )
    stale = store.client.post(
        url,
        params=params,
        content=content,
        headers={**JSON_TYPE, **signed_headers(store.signing_key, content, time.time() - 301)},
    )
    tampered = store.client.post(
        url,
        params=params,
        content=body(chat="other"),
        headers={**JSON_TYPE, **signed_headers(store.signing_key, content)},
    )
    assert [a.status_code for a in (unsigned, forged, stale, tampered)] == [401] * 4
    assert "webhook-signature are required" in unsigned.json()["detail"]
    assert "5 minutes" in stale.json()["detail"]
    assert store.logged() == 0
    good = store.client.post(
        url,
        params=params,
        content=content,
        headers={**JSON_TYPE, **signed_headers(store.signing_key, content)},
    )
    assert good.status_code == 202


def test_one_matching_signature_among_several_is_enough(store: Store) -> None:
    content = body()
    headers = signed_headers(store.signing_key, content)
    headers["webhook-signature"] = f"v1,{'A' * 43}= v2,whatever {headers['webhook-signature']}"
    answer = store.client.post(
        "/webhooks/fasttrack/signed",
        params={"token": store.signed},
        content=content,
        headers={**JSON_TYPE, **headers},
    )
    assert answer.status_code == 202


def test_a_rotated_secret_and_key_stay_valid_for_the_grace_period_only(
    store: Store, settings: Settings
) -> None:
    with store.engine.begin() as connection:
        new = credentials.rotate_source(connection, "signed", grace=timedelta(hours=1))
        fresh = credentials.rotate_source(connection, "shop", grace=timedelta(0))
    assert new.signing_key is not None
    with TestClient(create_app(settings)) as client:
        content = body("a")
        old = client.post(
            "/webhooks/fasttrack/signed",
            params={"token": store.signed},
            content=content,
            headers={**JSON_TYPE, **signed_headers(store.signing_key, content)},
        )
        assert old.status_code == 202
        content = body("b")
        rotated = client.post(
            "/webhooks/fasttrack/signed",
            params={"token": new.secret},
            content=content,
            headers={**JSON_TYPE, **signed_headers(new.signing_key, content)},
        )
        assert rotated.status_code == 202
        revoked = client.post(
            "/webhooks/fasttrack/shop",
            params={"token": store.shop},
            content=body("c"),
            headers=JSON_TYPE,
        )
        assert revoked.status_code == 401
        assert (
            client.post(
                "/webhooks/fasttrack/shop",
                params={"token": fresh.secret},
                content=body("c"),
                headers=JSON_TYPE,
            ).status_code
            == 202
        )


READS = [
    "/events",
    "/profiles?phone=%2B79161234567",
    "/chats/c",
    "/handoffs",
    "/teams/1/chats",
    "/projections",
]


@pytest.mark.parametrize("path", READS)
def test_every_query_needs_a_token(store: Store, path: str) -> None:
    assert store.client.get(path).status_code == 401
    assert store.client.get(path, headers=bearer("cdpt_wrong")).status_code == 401
    assert store.client.get(path, headers=bearer(store.read)).status_code in (200, 404)
    assert store.client.get(path, headers=bearer(store.admin)).status_code in (200, 404)


def test_health_stays_open(store: Store) -> None:
    assert store.client.get("/health").status_code == 200


def test_a_rebuild_needs_an_admin_token(store: Store) -> None:
    refused = store.client.post("/projections/rebuild", headers=bearer(store.read))
    assert refused.status_code == 403
    assert "admin" in refused.json()["detail"]
    assert store.client.post("/projections/rebuild").status_code == 401
    rebuilt(store.client, headers=bearer(store.admin))


def test_a_revoked_token_is_refused_within_a_second(store: Store) -> None:
    assert store.client.get("/events", headers=bearer(store.read)).status_code == 200
    with store.engine.begin() as connection:
        credentials.revoke_token(connection, "analyst")
    deadline = time.monotonic() + 5
    while store.client.get("/events", headers=bearer(store.read)).status_code == 200:
        assert time.monotonic() < deadline, "the revoked token was still taken after 5 s"
        time.sleep(0.1)
    assert store.client.get("/events", headers=bearer(store.admin)).status_code == 200


def test_credentials_that_cannot_be_read_again_fail_the_request_and_are_kept_as_they_were(
    store: Store, tmp_path: Path
) -> None:
    wait = timedelta(seconds=1)
    keys = Keys(Lane("health", 1, wait, store.engine), max_age=0)  # read again every time
    unreachable = make_engine(f"sqlite:///{tmp_path / 'gone' / 'cdp.db'}")

    async def read_then_lose_the_database() -> tuple[Keyring, Keyring | None]:
        first = await keys.current()
        keys.lane = Lane("health", 1, wait, unreachable)
        with pytest.raises(OperationalError):
            await keys.current()
        return first, keys.ring

    first, kept = asyncio.run(read_then_lose_the_database())
    assert kept is first
    assert not first.ingest_open
    assert not first.reads_open
    unreachable.dispose()


def test_an_exposed_store_without_credentials_refuses_everything(settings: Settings) -> None:
    with TestClient(create_app(settings, exposed=True)) as client:
        assert (
            client.post("/webhooks/fasttrack", content=body(), headers=JSON_TYPE).status_code == 401
        )
        assert client.get("/events").status_code == 401
        assert client.get("/health").status_code == 200


def test_an_open_store_takes_the_default_source_only(client: Client) -> None:
    assert (
        client.post("/webhooks/fasttrack", content=body("a"), headers=JSON_TYPE).status_code == 202
    )
    assert (
        client.post("/webhooks/fasttrack/default", content=body("b"), headers=JSON_TYPE).status_code
        == 202
    )
    assert (
        client.post("/webhooks/fasttrack/shop", content=body("c"), headers=JSON_TYPE).status_code
        == 401
    )
    assert [e["chat_uuid"] for e in client.get("/events").json()["items"]] == ["a", "b"]


def test_the_log_can_be_read_by_source(store: Store) -> None:
    store.client.post(
        "/webhooks/fasttrack/shop",
        params={"token": store.shop},
        content=body("a"),
        headers=JSON_TYPE,
    )
    content = body("b")
    store.client.post(
        "/webhooks/fasttrack/signed",
        params={"token": store.signed},
        content=content,
        headers={**JSON_TYPE, **signed_headers(store.signing_key, content)},
    )
    page = store.client.get("/events", params={"source": "signed"}, headers=bearer(store.read))
    assert [e["chat_uuid"] for e in page.json()["items"]] == ["b"]


def test_requests_beyond_a_tokens_rate_limit_are_429_with_retry_after(
    settings: Settings, engine: Engine
) -> None:
    with engine.begin() as connection:
        token = credentials.create_token(connection, "busy", "read")
        other = credentials.create_token(connection, "calm", "read")
    limited = settings.model_copy(update={"read_rate_limit": 2})
    with TestClient(create_app(limited)) as client:
        answers = [client.get("/events", headers=bearer(token)).status_code for _ in range(30)]
        assert answers.count(200) >= 10
        assert answers[-1] == 429
        refused = client.get("/events", headers=bearer(token))
        assert int(refused.headers["retry-after"]) >= 1
        assert client.get("/events", headers=bearer(other)).status_code == 200


def test_webhooks_beyond_a_sources_rate_limit_are_429_and_not_stored(
    settings: Settings, engine: Engine
) -> None:
    with engine.begin() as connection:
        secret = credentials.add_source(connection, "shop").secret
    limited = settings.model_copy(update={"webhook_rate_limit": 1})
    with TestClient(create_app(limited)) as client:
        answers = [
            client.post(
                "/webhooks/fasttrack/shop",
                params={"token": secret},
                content=body(f"c{i}"),
                headers=JSON_TYPE,
            )
            for i in range(30)
        ]
    accepted = [a for a in answers if a.status_code == 202]
    refused = [a for a in answers if a.status_code == 429]
    assert len(accepted) + len(refused) == 30
    assert refused
    assert int(refused[-1].headers["retry-after"]) >= 1
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(events)) == len(accepted)


def test_a_flood_of_wrong_credentials_is_slowed_while_a_valid_token_still_works(
    store: Store,
) -> None:
    answers = [
        store.client.get("/events", headers=bearer("cdpt_guess")).status_code for _ in range(40)
    ]
    assert answers[:5] == [401] * 5
    assert answers[-1] == 429
    assert store.client.get("/events", headers=bearer(store.read)).status_code == 200


def test_no_secret_reaches_a_log_line(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cdp"):
        store.client.post(
            "/webhooks/fasttrack/shop",
            params={"token": store.shop},
            content=b"{",
            headers=JSON_TYPE,
        )
        store.client.post(
            "/webhooks/fasttrack/shop",
            params={"token": "cdps_guess"},
            content=body(),
            headers=JSON_TYPE,
        )
        store.client.get("/events", params={"after": "x"}, headers=bearer(store.read))
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "token=***" in logged
    for secret in (store.shop, "cdps_guess", store.read):
        assert secret not in logged
        assert secret[5:15] not in logged


def test_an_admin_lists_the_sources_and_never_their_secrets(store: Store) -> None:
    client = store.client
    assert client.get("/sources").status_code == 401
    assert client.get("/sources", headers=bearer(store.read)).status_code == 403
    answer = client.get("/sources", headers=bearer(store.admin))
    assert answer.status_code == 200
    listed = {item["name"]: item for item in answer.json()["items"]}
    assert set(listed) == {"shop", "signed"}
    assert (listed["shop"]["signed"], listed["signed"]["signed"]) == (False, True)
    assert store.shop not in answer.text
    assert store.signing_key not in answer.text
