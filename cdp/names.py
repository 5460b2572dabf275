"""Customer names in one form for search, so that "иван" and "ИВАН" find "Иван Петров"."""

import unicodedata
from typing import Final

# Characters of a name that its key keeps: enough to search by, and a btree entry holds a
# key whatever the name (names can be megabytes long).
KEY_LENGTH: Final = 100


def search_key(name: str | None) -> str | None:
    """`name` as searches compare it: NFKC, case-folded, ё as Russians often type it
    ("Ёлкин" as "елкин"), each run of whitespace one space, stripped, cut to KEY_LENGTH
    characters. None if nothing is left."""
    if not name:
        return None
    folded = unicodedata.normalize("NFKC", name).casefold()
    folded = folded.replace("\N{CYRILLIC SMALL LETTER IO}", "\N{CYRILLIC SMALL LETTER IE}")
    return " ".join(folded.split())[:KEY_LENGTH] or None
