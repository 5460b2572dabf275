"""Each chat and profile belongs to one source: another's webhooks naming it are refused,
and every list can be read for one source."""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import Engine, func, select

from cdp.access import credentials
from cdp.http.app import create_app
from cdp.log import ingest
from cdp.log.tables import events, rejected
from cdp.log.webhook import Foreign
from cdp.privacy.keystore import MAIN
from cdp.projections import registry
from cdp.settings import Settings
from tests.factories import JSON_TYPE, PAST, checked, handoff, opened, webhook

Client = TestClient  # type: ignore[type-arg]
PHONE = "+79161234567"


@dataclass
class Two:
    """A store with two sources, a and b."""

    client: Client
    secrets: dict[str, str]

    def post(self, source: str, body: dict[str, Any]) -> Any:
        return self.client.post(
            f"/webhooks/fasttrack/{source}",
            params={"token": self.secrets[source]},
            content=json.dumps(body),
            headers=JSON_TYPE,
        )


@pytest.fixture
def two(settings: Settings, engine: Engine) -> Iterator[Two]:
    with engine.begin() as connection:
        secrets = {name: credentials.add_source(connection, name).secret for name in "ab"}
    with TestClient(create_app(settings)) as client:
        yield Two(client, secrets)


def logged(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(events)) or 0)


def test_another_source_s_webhook_naming_a_chat_is_refused_and_kept(
    two: Two, engine: Engine
) -> None:
    assert two.post("a", webhook("message_created", chat="c1", profile="p1")).status_code == 202
    later = webhook("message_created", chat="c1", profile="p9", at=PAST + 1, message="forged")
    answer = two.post("b", later)
    assert answer.status_code == 409
    assert answer.json()["detail"] == "chat c1 belongs to another source"  # not which one
    assert logged(engine) == 1
    with engine.connect() as connection:
        kept = connection.execute(select(rejected.c.status, rejected.c.source)).all()
    assert [tuple(row) for row in kept] == [(409, "b")]
    assert two.client.get("/chats/c1").json()["source"] == "a"


def test_another_source_s_webhook_naming_a_profile_is_refused(two: Two, engine: Engine) -> None:
    assert two.post("a", webhook("message_created", chat="c1", profile="p1")).status_code == 202
    answer = two.post("b", webhook("message_created", chat="c2", profile="p1"))
    assert answer.status_code == 409
    assert answer.json()["detail"] == "profile p1 belongs to another source"
    assert two.client.get("/chats/c2").status_code == 404


def test_a_source_may_post_again_what_it_owns(two: Two) -> None:
    first = webhook("message_created", chat="c1", profile="p1")
    assert two.post("a", first).status_code == 202
    assert two.post("a", first).status_code == 200  # a duplicate, as ever
    assert two.post("a", handoff("c1", at=PAST + 10, profile="p1")).status_code == 202


def test_in_one_batch_the_first_source_to_name_a_chat_gets_it(
    engine: Engine, settings: Settings
) -> None:
    batch = [
        checked(json.dumps(webhook("message_created", chat="c1", at=PAST + n, message=str(n))))
        for n in range(2)
    ]
    mine, theirs = (
        type(incoming)(incoming.body, incoming.fingerprint, incoming.webhook, source)
        for incoming, source in zip(batch, "ab", strict=True)
    )
    first, second = ingest.record(
        engine, [mine, theirs], registry.projectors(settings), keystore=MAIN
    )
    assert not isinstance(first, Foreign)
    assert isinstance(second, Foreign)
    assert logged(engine) == 1


def test_every_list_can_be_read_for_one_source(two: Two) -> None:
    for source, chat, profile in (("a", "ca", "pa"), ("b", "cb", "pb")):
        for body in opened(chat, team=1, profile=profile, phone=PHONE, name="Иван"):
            assert two.post(source, body).status_code == 202
        assert (
            two.post(source, handoff(chat, at=PAST + 100, team=2, profile=profile)).status_code
            == 202
        )

    def listed(path: str, **params: str) -> list[Any]:
        answer = two.client.get(path, params=params)
        assert answer.status_code == 200, answer.text
        return list(answer.json()["items"])

    assert {c["uuid"] for c in listed("/teams/2/chats")} == {"ca", "cb"}
    assert [(c["uuid"], c["source"]) for c in listed("/teams/2/chats", source="a")] == [("ca", "a")]
    assert [(h["chat_uuid"], h["source"]) for h in listed("/handoffs", source="b")] == [("cb", "b")]
    assert {p["uuid"] for p in listed("/profiles", phone=PHONE)} == {"pa", "pb"}
    assert [p["uuid"] for p in listed("/profiles", phone=PHONE, source="b")] == ["pb"]
    assert {p["uuid"] for p in listed("/profiles", name="иван")} == {"pa", "pb"}
    assert [p["uuid"] for p in listed("/profiles", name="иван", source="a")] == ["pa"]
    assert {e["chat_uuid"] for e in listed("/events", source="a")} == {"ca"}
    assert listed("/teams/2/chats", source="nobody") == []
