"""Customer names in one form for search, so that "иван" and "ИВАН" find "Иван Петров".

A chat's name is sealed (see cdp.privacy.personal): a search finds the chats whose name's first
PREFIX characters, folded, have the digest of its own text's, then opens those names and
keeps the ones that start with the text. So a search needs PREFIX characters at least;
a shorter text finds only names that short.
"""

import unicodedata
from typing import Final

from cdp.privacy import personal

# Characters of a name that its key keeps: enough to search by (names can be megabytes).
FOLDED_LENGTH: Final = 100
# Characters of a name's key its digest is of, and the digest's bits: one chat in 4 096
# shares a name's, and one digest stands for some ten prefixes of three letters.
PREFIX: Final = 3
DIGEST_BITS: Final = 12


def fold_name(name: str | None) -> str | None:
    """`name` as searches compare it: NFKC, case-folded, ё as Russians often type it
    ("Ёлкин" as "елкин"), each run of whitespace one space, stripped, cut to FOLDED_LENGTH
    characters. None if nothing is left."""
    if not name:
        return None
    folded = unicodedata.normalize("NFKC", name).casefold()
    folded = folded.replace("\N{CYRILLIC SMALL LETTER IO}", "\N{CYRILLIC SMALL LETTER IE}")
    return " ".join(folded.split())[:FOLDED_LENGTH] or None


def digest(key: str | None) -> int | None:
    """What a chat whose name has this key is looked up by (see the module)."""
    if key is None:
        return None
    return personal.digest(b"name", key[:PREFIX], DIGEST_BITS)
