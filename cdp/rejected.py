"""Rejected deliveries: what was refused as bad input, kept apart from the log for a while.

A delivery refused as bad input (400, 413, 415, 422) is kept with its bytes, the headers
that tell where it came from, its source, when, and why; not one refused for its
credentials or its rate (401, 429): those prove nothing came from a source. Replaying runs
them through today's checks and moves those that pass into the log, exactly once.
"""

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from sqlalchemy import Connection, bindparam, delete, insert, select

from cdp import db
from cdp.models import rejected

# The request headers kept with a refused delivery: never Authorization or cookies.
KEPT_HEADERS: Final = (
    "content-type",
    "content-length",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "x-forwarded-for",
    "x-request-id",
)
_KEEP: Final = db.Prepared(
    insert(rejected).values(
        {column: bindparam(column.name) for column in rejected.c if column.name != "id"}
    )
)
_HEADER_BYTES: Final = 1024  # of each kept header at most


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused delivery as it is kept."""

    received_at: int
    source: str
    status: int
    reason: str
    size: int
    headers: Mapping[str, str]
    body: bytes

    def row(self) -> dict[str, object]:
        return {
            "received_at": self.received_at,
            "source": self.source,
            "status": self.status,
            "reason": self.reason,
            "size": self.size,
            "headers": dict(self.headers),
            "body": self.body,
        }


def kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        name: headers[name][:_HEADER_BYTES]
        for name in KEPT_HEADERS
        if headers.get(name) is not None
    }


def named(body: bytes) -> set[str]:
    """Every JSON string of `body` short enough to be an id (200 characters), escapes
    resolved, wherever it is and whether or not the body is JSON at all: the ids a kept
    delivery may name, as an erasure must find them."""
    found = set()
    for literal in _STRING.findall(body):
        if len(literal) > _ID_CHARACTERS * 6:  # \uXXXX six bytes a character at most
            continue
        text = literal.decode("utf-8", errors="replace")
        try:
            value = json.loads(f'"{text}"') if "\\" in text else text
        except ValueError:  # a broken escape: the text as it stands
            value = text
        # No id holds a control character or a lone surrogate (nor could a database take it).
        if 0 < len(value) <= _ID_CHARACTERS and value.isprintable():
            found.add(value)
    return found


# A JSON string, escapes and all: unbounded, so that one long string never throws the
# scan off the quotes that open and close the strings after it; possessive, so that a
# string of a megabyte costs no backtracking state; and one left open runs to the end of
# the body, so that the scan is one pass whatever the body holds.
_STRING: Final = re.compile(rb'"([^"\\]*+(?:\\.[^"\\]*+)*+)"?', re.DOTALL)
_ID_CHARACTERS: Final = 200


def without(refusals: Sequence[Refusal], doomed: set[str]) -> list[Refusal]:
    """`refusals`, those whose body names one of `doomed` (ids of customers erased and
    suppressed) kept without it, their reason saying so."""
    kept = []
    for refusal in refusals:
        if named(refusal.body) & doomed:
            reason = f"{refusal.reason} (body not kept: it names a customer erased on request)"
            refusal = replace(refusal, body=b"", reason=reason)
        kept.append(refusal)
    return kept


def keep(connection: Connection, refusals: Sequence[Refusal]) -> None:
    _KEEP.run(connection, [refusal.row() for refusal in refusals])


def expire(connection: Connection, before: int, most: int) -> int:
    """Forget the oldest deliveries refused before `before` (ms), `most` at most: a sender
    may have had millions refused, and forgetting them must not hold the writer up for
    long. How many were forgotten."""
    oldest = (
        select(rejected.c.id)
        .where(rejected.c.received_at < before)
        .order_by(rejected.c.received_at)
        .limit(most)
    )
    doomed = delete(rejected).where(rejected.c.id.in_(oldest.scalar_subquery()))
    return int(connection.execute(doomed).rowcount)


def read(
    connection: Connection, *, after: int, limit: int, source: str | None, max_bytes: int
) -> tuple[list[Any], bool]:
    """Refused deliveries after id `after`, oldest first: `limit` at most, and no more than
    `max_bytes` of bodies (one at least); and whether more are left."""
    query = select(rejected).where(rejected.c.id > after)
    if source is not None:
        query = query.where(rejected.c.source == source)
    return db.bounded(
        connection,
        query.order_by(rejected.c.id),
        limit=limit,
        max_bytes=max_bytes,
        weight=lambda row: len(row.body),
    )


def forget(connection: Connection, ids: Sequence[int]) -> None:
    _FORGET.run(connection, [{"id": id_} for id_ in ids])


_FORGET: Final = db.Prepared(delete(rejected).where(rejected.c.id == bindparam("id")))
