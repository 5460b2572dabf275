"""The console's language, plurals and lengths of time."""

import re
from pathlib import Path
from typing import get_args

import jinja2
import pytest

from cdp.access import credentials
from cdp.console import words
from cdp.console.render import duration
from cdp.console.words import _WORDS, Words, language
from cdp.http.schemas import SessionState
from cdp.projections.schemas import Build, Projection
from cdp.reports import schemas as report_schemas
from cdp.reports.calendar import GROUPS, WEEKDAYS


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


TEMPLATES = Path(words.__file__).parent / "templates"
# A waiting chat's state, None when its team has no target (shown as "none").
WAITING_STATE = get_args(report_schemas.WaitingChat.model_fields["state"].annotation)[0]
# Said in no language: the product's name.
NAMES = {"cdp"}
# The keys a template makes of a value, and the values it may be.
MADE_KEYS = {
    '"role_" ~ caller.role': [f"role_{role}" for role in credentials.ROLES],
    '"status_" ~ projection.status': [
        f"status_{status}" for status in get_args(Projection.model_fields["status"].annotation)
    ],
    '"build_" ~ build.state': [
        f"build_{state}" for state in get_args(Build.model_fields["state"].annotation)
    ],
    "chat.session.state": list(get_args(SessionState)),
    "session.state": list(get_args(SessionState)),
    "item.message_type": ["image", "document"],  # only these are looked up
    # The reports' pages (cdp.console.reports).
    "key": ["trends", "heatmap", "leaderboard", "breaches", "waiting_now"],
    "refused": [
        "refused_hours_not_set",
        "refused_hours_counts",
        "refused_operator",
        "refused_scope",
        "refused_points",
    ],
    '"metric_" ~ metric': [f"metric_{m}" for m in get_args(report_schemas.Metric)],
    '"metric_" ~ trend.metric': [f"metric_{m}" for m in get_args(report_schemas.Metric)],
    '"metric_" ~ view.metric': ["metric_customer_messages", "metric_sessions_opened"],
    '"group_" ~ group': [f"group_{group}" for group in GROUPS],
    '"group_" ~ trend.group': [f"group_{group}" for group in GROUPS],
    '"weekday_" ~ weekday': [f"weekday_{day}" for day in WEEKDAYS],
    '"kind_" ~ breach.kind': ["kind_first_reply", "kind_next_reply"],
    '"kind_" ~ chat.target': ["kind_first_reply", "kind_next_reply"],
    '"state_" ~ state': [*(f"state_{state}" for state in get_args(WAITING_STATE)), "state_none"],
}


def _templates() -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(TEMPLATES.glob("*.html"))}


def _literal_text(source: str) -> str:
    """What a template writes as it is, outside its expressions and tags: each expression
    or tag is a NUL, so that markup around one is still seen as markup."""
    environment = jinja2.Environment(extensions=["jinja2.ext.do"])
    written = []
    for _, kind, value in environment.lex(source):
        if kind == "data":
            written.append(value)
        elif kind.endswith("_begin"):
            written.append("\0")
    return "".join(written)


def test_every_word_a_template_writes_goes_through_the_words_of_both_languages() -> None:
    for name, source in _templates().items():
        text = _literal_text(source)
        shown = re.sub(r"&[a-z]+;|&#[0-9]+;", " ", re.sub(r"<[^>]*>", " ", text))
        words_written = set(re.findall(r"[A-Za-z]{2,}", shown)) - NAMES
        assert not words_written, f"{name} writes {sorted(words_written)} in one language"
        for attribute, value in re.findall(r'\b(title|aria-label|alt|placeholder)="([^"]*)"', text):
            assert not re.search(r"[A-Za-z]{2,}", value), f"{name}: {attribute}={value!r}"
        # A value the code names in English (a state, a status) is shown through a word; as
        # a CSS class, it is not shown.
        unclassed = re.sub(r'class="[^"]*"', "", source)
        for printed in re.findall(r"{{\s*([\w.]+\.(?:state|status|role))\s*[|}]", unclassed):
            assert printed == "refusal.status", f"{name} prints {printed} untranslated"


def test_every_word_a_template_asks_for_is_in_both_languages() -> None:
    asked: set[str] = set()
    for name, source in _templates().items():
        for call in re.findall(r"\bt(?:\.count)?\(\s*([^,)]+)", source):
            call = call.strip()
            if call[0] in "\"'" and call[-1] == call[0]:
                asked.add(call[1:-1])
            else:
                assert call in MADE_KEYS, f"{name} asks for the word {call}: list its keys"
                asked.update(MADE_KEYS[call])
    missing = asked - set(_WORDS)
    assert not missing, f"words asked for that neither language has: {sorted(missing)}"


@pytest.mark.parametrize("key", sorted(_WORDS))
def test_each_word_is_said_in_both_languages_with_the_same_blanks_and_forms(key: str) -> None:
    english, russian = _WORDS[key]
    assert english.strip()
    assert russian.strip()
    assert set(re.findall(r"{(\w+)}", english)) == set(re.findall(r"{(\w+)}", russian))
    if "|" in english or "|" in russian:  # a count: two forms in English, three in Russian
        assert (len(english.split("|")), len(russian.split("|"))) == (2, 3)
    if english == russian:  # written alike in both: identifiers alone
        assert key in ("id", "uuid"), key
