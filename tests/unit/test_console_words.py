"""The console's language, plurals and lengths of time."""

import pytest

from cdp.console.render import duration
from cdp.console.words import Words, language


@pytest.mark.parametrize(
    ("header", "chosen"),
    [
        ("ru-RU,ru;q=0.9,en-US;q=0.8,en;q=0.7", "ru"),
        ("en-US,en;q=0.9,ru;q=0.8", "en"),
        ("de-DE,de;q=0.9,ru;q=0.5", "ru"),
        ("en;q=0.5,ru;q=0.6", "ru"),
        ("de-DE,fr", "en"),
        ("RU", "ru"),
        ("ru;q=0,en;q=0.1", "en"),
        ("ru;q=nan", "en"),
        ("ru;q=2", "en"),
        (None, "en"),
        ("," * 100_000 + "ru", "en"),  # read no further than a header needs
    ],
)
def test_the_language_is_the_one_the_browser_prefers_among_russian_and_english(
    header: str | None, chosen: str
) -> None:
    assert language(header) == chosen


def test_counts_take_the_plural_form_their_language_gives_them() -> None:
    russian, english = Words("ru"), Words("en")
    shown = {n: russian.count("n_waits", n, str(n)) for n in (1, 2, 5, 11, 12, 21, 22, 111)}
    assert shown == {
        1: "1 ожидание",
        2: "2 ожидания",
        5: "5 ожиданий",
        11: "11 ожиданий",
        12: "12 ожиданий",
        21: "21 ожидание",
        22: "22 ожидания",
        111: "111 ожиданий",
    }
    assert [english.count("n_events", n, str(n)) for n in (0, 1, 2)] == [
        "0 events",
        "1 event",
        "2 events",
    ]


def test_a_length_of_time_is_shown_in_its_two_largest_units() -> None:
    words = Words("en")
    assert duration(None, words) == "—"
    assert duration(0.4, words) == "0 s"
    assert duration(62.9, words) == "1 min 3 s"
    assert duration(180, words) == "3 min"
    assert duration(3 * 3600 + 61, words) == "3 h 1 min"
    assert duration(2 * 86400 + 7200, words) == "2 d 2 h"
    assert duration(95, Words("ru")) == "1 мин 35 с"
