"""GET /profiles?name=: profiles found by the start of a customer's name, whatever its case."""

import itertools
import string
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import Engine

from cdp import paging
from cdp.privacy.keystore import MAIN
from cdp.profiles import names, queries
from cdp.profiles.names import FOLDED_LENGTH
from tests.api.conftest import name_digest, name_digests
from tests.api.test_reads import deliver, items
from tests.factories import PAST, opened, webhook

Client = TestClient  # type: ignore[type-arg]
DAY = 24 * 3600 * 1000


def every_page(client: Client, query: dict[str, Any]) -> list[list[str]]:
    """The profiles of each page of a search, following `next` until it is null."""
    pages = []
    while True:
        answer = client.get("/profiles", params=query).json()
        pages.append([profile["uuid"] for profile in answer["items"]])
        if answer["next"] is None:
            return pages
        query = {**query, "after": answer["next"]}


def found(client: Client, name: str, **params: Any) -> list[str]:
    return [profile["uuid"] for profile in items(client, "/profiles", name=name, **params)]


@pytest.mark.parametrize("typed", ["иван", "ИВАН", "Иван", "иВаН пЕт", " иван   петров ", "ИВа"])
def test_a_name_is_found_by_its_start_in_any_case(client: Client, typed: str) -> None:
    deliver(client, *opened("tg", profile="p", name="Иван Петров"))
    deliver(client, *opened("wa", profile="q", name="Ирина Иванова"))
    assert found(client, typed) == ["p"]


def test_a_text_of_fewer_than_three_letters_finds_only_names_that_short(client: Client) -> None:
    deliver(client, *opened("a", profile="p", name="Ян"))
    deliver(client, *opened("b", profile="q", name="Яна"))
    deliver(client, *opened("c", profile="r", name="Я"))
    assert (found(client, "ян"), found(client, "яна"), found(client, "я")) == (["p"], ["q"], ["r"])


def test_a_name_whose_first_letters_share_the_digest_is_opened_and_left_out(
    client: Client, engine: Engine
) -> None:
    """Names are sealed: a search finds the chats by a digest of the first three letters,
    which thousands of prefixes share, and keeps only the names that start with the text."""
    wanted = names.digest("ива")
    other = next(
        "".join(letters)
        for letters in itertools.product(string.ascii_lowercase, repeat=3)
        if names.digest("".join(letters)) == wanted
    )
    deliver(client, *opened("tg", profile="p", name="Иван"))
    deliver(client, *opened("wa", profile="q", name=f"{other.title()} Smith"))
    assert set(name_digests(engine).values()) == {wanted}
    assert (found(client, "иван"), found(client, other)) == (["p"], ["q"])


@pytest.mark.parametrize("typed", ["петров", "ван", "иван петрович", "ivan"])
def test_only_the_start_of_the_whole_name_is_searched_not_of_a_later_word(
    client: Client, typed: str
) -> None:
    deliver(client, *opened("tg", profile="p", name="Иван Петров"))
    assert found(client, typed) == []


def test_yo_and_ye_find_each_other(client: Client) -> None:
    deliver(client, *opened("tg", profile="p", name="Семён Ёлкин"))
    deliver(client, *opened("wa", profile="q", name="Семен Елкин"))
    for typed in ("семен", "СЕМЁН", "семён ел", "Семен Ёлкин"):
        assert found(client, typed) == ["p", "q"], typed


def test_names_are_compared_in_one_unicode_form(client: Client) -> None:
    name = "\N{LATIN SMALL LIGATURE FI}lipp\N{NO-BREAK SPACE}Straße"
    deliver(client, *opened("tg", profile="p", name=name))
    assert found(client, "FILIPP STRASSE") == ["p"]


def test_a_profile_is_found_once_however_many_of_its_chats_match(client: Client) -> None:
    deliver(client, *opened("tg", profile="p", name="Иван"))
    deliver(client, *opened("wa", profile="p", name="Иван Петров"))
    deliver(client, *opened("vk", profile=None, name="Иван Сидоров"))  # no profile: not listed
    assert found(client, "иван") == ["p"]


def test_a_name_search_reads_page_by_page_in_uuid_order(client: Client) -> None:
    for n in range(5):
        deliver(client, *opened(f"c{n}", at=PAST + n, profile=f"p{4 - n}", name=f"Анна {n}"))
    deliver(client, *opened("other", profile="x", name="Борис"))
    pages = every_page(client, {"name": "анна", "limit": 2})
    assert pages == [["p0", "p1"], ["p2", "p3"], ["p4"]]


def test_the_key_follows_the_name_the_chat_keeps_whatever_order_the_events_came_in(
    client: Client,
) -> None:
    deliver(client, *opened("c", at=PAST, profile="p", name="Иван Петров"))
    renamed = webhook("message_created", chat="c", at=PAST + 2 * DAY, profile="p", name="Пётр")
    older = webhook("message_created", chat="c", at=PAST + 60_000, profile="p", name="Иван П.")
    for body in (renamed, older):  # the older one is delivered late
        deliver(client, body)
        assert client.get("/chats/c").json()["name"] == "Пётр"
        assert (found(client, "петр"), found(client, "иван")) == (["p"], [])


def test_a_huge_name_is_kept_whole_and_found_by_its_start(
    client: Client, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Webhooks take strings up to 64 KiB today; older logs may hold longer ones."""
    monkeypatch.setattr("cdp.log.webhook.MAX_STRING_BYTES", 1024 * 1024)
    name = ("Константин Константинопольский " * 4000)[:100_000]
    deliver(client, *opened("c", profile="p", name=name))
    assert client.get("/chats/c").json()["name"] == name
    assert name_digests(engine)["c"] == name_digest(name[:FOLDED_LENGTH]) is not None
    assert found(client, "константин") == ["p"]
    assert found(client, name[:150].upper()) == ["p"]  # beyond the key: its first 100 count


@pytest.mark.parametrize("typed", ["%ED%A0%80", "%FF", "%F4%8F%BF%BF"])
def test_text_no_name_can_hold_finds_nothing(client: Client, typed: str) -> None:
    deliver(client, *opened("c", profile="p", name="Иван"))
    answer = client.get(f"/profiles?name={typed}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["items"] == []


@pytest.mark.parametrize("text", ["\x00", "иван\x00", "\ud800", "ива\udfff", "", "  \t"])
def test_the_query_finds_nothing_for_text_no_name_can_hold_or_none_at_all(
    engine: Engine, text: str
) -> None:
    """As the console calls it, with no HTTP layer in front to refuse a NUL."""
    with engine.connect() as connection:
        page = queries.profiles_by_name(connection, text, paging.Listing(), keystore=MAIN)
    assert (page.items, page.next) == ([], None)


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("name=%00", ["name"]),
        ("name=", ["name"]),
        ("name=%20%20", ["name"]),
        ("", ["phone", "name"]),
        ("name=ivan&phone=%2B79990000001", ["phone", "name"]),
    ],
)
def test_no_name_a_nul_or_both_a_phone_and_a_name_is_a_400(
    client: Client, query: str, named: list[str]
) -> None:
    answer = client.get(f"/profiles?{query}")
    assert answer.status_code == 400, answer.text
    assert [error["path"] for error in answer.json()["errors"]] == named


def test_a_profile_is_found_however_many_of_its_chats_share_the_first_letters_but_not_the_text(
    client: Client,
) -> None:
    """A digest is of the first three letters: "Алена" and "Алексей" share it. A profile's
    chats of the digest are opened until one holds the text, however many do not."""
    for n in range(21):
        deliver(client, webhook("message_created", chat=f"a{n:02}", profile="p", name="Алена"))
    deliver(client, webhook("message_created", chat="zz", profile="p", name="Алексей"))
    deliver(client, webhook("message_created", chat="q1", profile="q", name="Алексей Q"))
    assert found(client, "Алекс") == ["p", "q"]
    assert found(client, "Алена") == ["p"]


def test_a_page_that_may_open_no_more_chats_says_where_the_next_goes_on(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However many chats share the first letters, a page opens SEARCH_OPENED at most (and
    all those of its first profile): it may then hold fewer profiles than asked, and its
    `next` goes on from the last it told apart; every page together lists each once."""
    for n in range(8):
        names = ["Алена"] * 3 + (["Алексей"] if n % 2 == 0 else [])
        for k, name in enumerate(names):
            deliver(
                client, webhook("message_created", chat=f"c{n}-{k}", profile=f"p{n}", name=name)
            )
    monkeypatch.setattr(queries, "SEARCH_OPENED", 2)
    pages = every_page(client, {"name": "алекс", "limit": 3})
    assert [uuid for page in pages for uuid in page] == ["p0", "p2", "p4", "p6"]
    assert any(len(page) < 3 for page in pages[:-1])  # cut short, and went on
