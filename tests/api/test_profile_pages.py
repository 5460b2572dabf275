"""A profile answers its own fields and the first page of its chats; the rest, and the
profiles a search finds, come a page at a time, on both databases."""

import base64
import json
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient
from sqlalchemy import Engine

from cdp.log import ingest
from cdp.privacy.keystore import Keystore
from cdp.profiles.queries import FOUND_CHATS, NAMED_BY
from cdp.projections import registry
from cdp.settings import Settings
from tests.conftest import Server
from tests.factories import JSON_TYPE, PAST, checked, webhook

Client = TestClient  # type: ignore[type-arg]
MINUTE = 60_000


def deliver(client: Client | httpx.Client, *bodies: dict[str, Any]) -> None:
    for body in bodies:
        answer = client.post(
            "/webhooks/fasttrack", content=json.dumps(body, ensure_ascii=False), headers=JSON_TYPE
        )
        assert answer.status_code in (200, 202), answer.text


def chats_of(profile: str, count: int, **fields: Any) -> list[dict[str, Any]]:
    """`count` new chats of `profile`, a minute apart, named `{profile}-00`, ..."""
    return [
        webhook(
            "message_created",
            chat=f"{profile}-{n:02}",
            profile=profile,
            at=PAST + n * MINUTE,
            **fields,
        )
        for n in range(count)
    ]


def every_chat(client: Client | httpx.Client, profile: str, limit: int) -> list[list[str]]:
    """The uuids of a profile's chats, page by page: its first, then each from `next`."""
    answer = client.get(f"/profiles/{profile}", params={"limit": limit})
    assert answer.status_code == 200, answer.text
    pages = [[chat["uuid"] for chat in answer.json()["chats"]]]
    after = answer.json()["chats_next"]
    while after is not None:
        answer = client.get(f"/profiles/{profile}/chats", params={"after": after, "limit": limit})
        assert answer.status_code == 200, answer.text
        pages.append([chat["uuid"] for chat in answer.json()["items"]])
        after = answer.json()["next"]
    return pages


def test_a_profile_answers_its_own_fields_first_then_the_first_page_of_its_chats(
    client: Client,
) -> None:
    deliver(client, *chats_of("p", 5, phone="+79990000001", name="Анна"))
    answer = client.get("/profiles/p", params={"limit": 2})
    assert answer.status_code == 200
    profile = answer.json()
    assert list(profile) == [
        "uuid",
        "phones",
        "names",
        "first_seen_at",
        "last_seen_at",
        "merged_into",
        "chats",
        "chats_next",
    ]
    assert answer.text.index('"chats"') > answer.text.index('"merged_into"')
    assert [chat["uuid"] for chat in profile["chats"]] == ["p-00", "p-01"]
    assert (profile["phones"], profile["names"]) == (["+79990000001"], ["Анна"])
    rest = client.get("/profiles/p/chats", params={"after": profile["chats_next"]}).json()
    assert [chat["uuid"] for chat in rest["items"]] == ["p-02", "p-03", "p-04"]
    assert rest["next"] is None
    assert client.get("/profiles/p").json()["chats_next"] is None  # 5 of 100: all


def test_the_chats_of_a_profile_read_page_by_page_are_each_chat_once_in_order(
    client: Client,
) -> None:
    deliver(client, *chats_of("p", 7), *chats_of("q", 2))
    pages = every_chat(client, "p", 2)
    assert [len(page) for page in pages] == [2, 2, 2, 1]
    assert [chat for page in pages for chat in page] == [f"p-{n:02}" for n in range(7)]
    whole = client.get("/profiles/p/chats", params={"limit": 1000}).json()
    assert [chat["uuid"] for chat in whole["items"]] == [f"p-{n:02}" for n in range(7)]


def test_a_profile_whose_chats_all_moved_has_an_empty_page_of_chats(client: Client) -> None:
    deliver(client, *chats_of("old", 2))
    deliver(
        client,
        *(
            webhook("message_created", chat=f"old-{n:02}", profile="new", at=PAST + MINUTE * 9)
            for n in range(2)
        ),
    )
    old = client.get("/profiles/old").json()
    assert (old["chats"], old["chats_next"], old["merged_into"]) == ([], None, "new")
    assert client.get("/profiles/old/chats").json() == {"items": [], "next": None}


def test_the_chats_of_an_unknown_profile_are_a_404(client: Client) -> None:
    answer = client.get("/profiles/nobody/chats")
    assert answer.status_code == 404
    assert "nobody" in answer.json()["detail"]


def test_a_found_profile_holds_its_first_chats_and_where_the_rest_begin(client: Client) -> None:
    count = FOUND_CHATS + 3
    deliver(client, *chats_of("p", count, phone="+79990000001", name="Анна"))
    for search in ({"phone": "8 999 000-00-01"}, {"name": "анн"}):
        found = client.get("/profiles", params=search).json()["items"]
        assert [profile["uuid"] for profile in found] == ["p"]
        first = [chat["uuid"] for chat in found[0]["chats"]]
        assert len(first) == FOUND_CHATS
        rest = client.get("/profiles/p/chats", params={"after": found[0]["chats_next"]}).json()
        shown = first + [chat["uuid"] for chat in rest["items"]]
        assert shown == [f"p-{n:02}" for n in range(count)]


def test_a_profile_of_many_chats_answers_a_bounded_page_and_the_phones_of_its_newest(
    client: Client,
) -> None:
    count = NAMED_BY + 20
    bodies = chats_of("p", count)
    for n, body in enumerate(bodies):  # each chat a phone of its own
        body["payload"]["chat"]["phone"] = f"+7999{n:07}"
    deliver(client, *bodies)
    profile = client.get("/profiles/p", params={"limit": 5}).json()
    assert len(profile["chats"]) == 5
    assert profile["phones"] == [f"+7999{n:07}" for n in range(count - NAMED_BY, count)]
    assert profile["first_seen_at"] == "2026-04-24T03:06:40.000Z"  # its first chat's, still
    found = client.get("/profiles", params={"phone": "+79990000000"}).json()["items"]
    assert [len(profile["chats"]) for profile in found] == [FOUND_CHATS]


def cursor(*key: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("path", "params", "named"),
    [
        ("/profiles/p", {"limit": 0}, "limit"),
        ("/profiles/p", {"limit": 1001}, "limit"),
        ("/profiles/p", {"limit": "ten"}, "limit"),
        ("/profiles/p", {"after": cursor(1, "a")}, "after"),  # the profile's own takes none
        ("/profiles/p/chats", {"limit": 0}, "limit"),
        ("/profiles/p/chats", {"after": "nonsense"}, "after"),
        ("/profiles/p/chats", {"after": cursor("a", "b")}, "after"),
        ("/profiles/p/chats", {"after": cursor(2**63, "a")}, "after"),
        ("/profiles/p/chats", {"after": cursor(1, "\u0000")}, "after"),
        ("/profiles/p/chats", {"after": cursor(1)}, "after"),
        ("/profiles/p/chats", {"after": "A" * 5000}, "after"),
        ("/profiles/p/chats", {"offset": 2}, "offset"),
    ],
)
def test_a_bad_page_is_a_400_naming_the_parameter(
    client: Client, path: str, params: dict[str, Any], named: str
) -> None:
    answer = client.get(path, params=params)
    assert answer.status_code == 400, answer.text
    assert [error["path"] for error in answer.json()["errors"]] == [named]


@pytest.mark.slow
def test_paging_while_webhooks_arrive_gives_every_chat_once_in_order(
    serve: Callable[..., Server],
) -> None:
    """A writer posts all along (later messages into chats read and not yet read, new chats
    of the profile and of another) while the profile is paged, a page per write at least."""
    server = serve(CDP_WEBHOOK_RATE_LIMIT="0", CDP_READ_RATE_LIMIT="0")
    count = 24
    with httpx.Client(base_url=server.url, timeout=30) as client:
        deliver(client, *chats_of("p", count))
        written = threading.Semaphore(0)
        done = threading.Event()
        failed: list[BaseException] = []

        def write() -> None:
            n = 0
            try:
                with httpx.Client(base_url=server.url, timeout=30) as writer:
                    while not done.is_set():
                        at = PAST + (count + n) * MINUTE
                        deliver(
                            writer,
                            webhook(
                                "message_created", chat=f"p-{n * 7 % count:02}", profile="p", at=at
                            ),
                            webhook("message_created", chat=f"new-{n}", profile="p", at=at),
                            webhook("message_created", chat=f"q-{n}", profile="q", at=at),
                        )
                        written.release()
                        n += 1
            except BaseException as error:  # reported by the test, in its own thread
                failed.append(error)
                written.release()

        writer = threading.Thread(target=write)
        writer.start()
        try:
            pages: list[list[str]] = []
            answer = client.get("/profiles/p", params={"limit": 3}).json()
            pages.append([chat["uuid"] for chat in answer["chats"]])
            after = answer["chats_next"]
            while after is not None:
                assert written.acquire(timeout=30), "the writer wrote nothing"
                params = {"after": after, "limit": 3}
                answer = client.get("/profiles/p/chats", params=params).json()
                pages.append([chat["uuid"] for chat in answer["items"]])
                after = answer["next"]
        finally:
            done.set()
            writer.join()
        assert not failed, failed
        listed = [chat for page in pages for chat in page]
        whole = client.get("/profiles/p/chats", params={"limit": 1000}).json()["items"]
    assert len(pages) > count // 3  # it went on for the new chats too
    assert len(listed) == len(set(listed))
    assert [chat for chat in listed if chat.startswith("p-")] == [f"p-{n:02}" for n in range(count)]
    order = {chat["uuid"]: n for n, chat in enumerate(whole)}
    assert [order[chat] for chat in listed] == sorted(order[chat] for chat in listed)


PHONE = "+79995550011"


@pytest.mark.slow
def test_a_phone_search_answers_a_full_page_of_a_thousand_profiles(
    client: Client, engine: Engine, settings: Settings
) -> None:
    """Each profile a digest finds is told apart by opening its chats: in bounded parts,
    however many a page asks for (SQLite takes 500 parts of one statement at most)."""
    bodies = [
        webhook("message_created", chat=f"c{n:04}", profile=f"p{n:04}", at=PAST, phone=PHONE)
        for n in range(1001)
    ]
    keystore = Keystore.at(settings.keystore(), key_file=settings.key_path())
    try:
        incoming = [checked(json.dumps(body)) for body in bodies]
        ingest.record(engine, incoming, registry.projectors(settings), keystore=keystore)
    finally:
        keystore.dispose()
    answer = client.get("/profiles", params={"phone": PHONE, "limit": 1000})
    assert answer.status_code == 200, answer.text
    found = [profile["uuid"] for profile in answer.json()["items"]]
    assert found == [f"p{n:04}" for n in range(1000)]
    rest = client.get("/profiles", params={"phone": PHONE, "after": answer.json()["next"]})
    assert [profile["uuid"] for profile in rest.json()["items"]] == ["p1000"]
