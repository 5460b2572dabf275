"""What every list read shares: pages, their cursors, the clock they are read by."""

import base64
import json
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TypeVar

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Integer,
    Row,
    Select,
    String,
    select,
    tuple_,
    union_all,
)

from cdp.http import schemas
from cdp.times import utc

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Clock:
    """When sessions count as idle, as of one moment (`now`, in ms): read once per request."""

    idle_timeout_ms: int
    now: int

    @property
    def idle_before(self) -> int:
        """A session whose last activity is before this is idle."""
        return self.now - self.idle_timeout_ms

    def state(self, last_activity_at: int) -> schemas.SessionState:
        return "open" if last_activity_at > self.idle_before else "idle"


class BadCursor(ValueError):
    """An `after` that is not a cursor this list gave (HTTP 400)."""


class BeingErased(Exception):
    """A profile whose erasure has begun and not ended (HTTP 409): its chats are erased a
    few at a time (see cdp.privacy.erasure), and until the last one is, it is neither whole nor
    erased."""

    def __init__(self, uuid: str) -> None:
        super().__init__(f"profile {uuid!r} is being erased: ask again once its erasure ended")


@dataclass(frozen=True, slots=True)
class Listing:
    """Where one page of a list starts and how long it is: `after` is the previous `next`."""

    after: str | None = None
    limit: int = 100


Order = Sequence[ColumnElement[Any]]


def paged(
    connection: Connection,
    queries: Sequence[Select[Any]],
    order: Order,
    listing: Listing,
    build: Callable[[Row[Any]], Any],
    item: type[T],
    *,
    descending: bool = False,
    before: Callable[[Sequence[Row[Any]]], None] | None = None,
) -> schemas.Page[T]:
    """A page of the rows of `queries` in `order`: columns that make each row unique, all
    ascending or all `descending`.

    Several queries of disjoint rows are each read in order, up to a page, and the database
    orders what they found together: each can use an index of its own, where an OR of two
    columns would be read whole and sorted. The cursor is the last row's sort key, so a page
    never repeats or skips a row that stayed where it was, however the list changes.
    `before` is given the page's rows before they are built (to fetch what opens them).
    """
    limit = listing.limit + 1
    after = None if listing.after is None else tuple_(*decode_cursor(listing.after, order))

    def arranged(query: Select[Any], columns: Order) -> Select[Any]:
        if after is not None:
            key = tuple_(*columns)
            query = query.where(key < after if descending else key > after)
        ordered = (column.desc() if descending else column for column in columns)
        return query.order_by(*ordered).limit(limit)

    if len(queries) == 1:
        query = arranged(queries[0], order)
    else:
        found = union_all(*(select(arranged(q, order).subquery()) for q in queries)).subquery()
        query = arranged(select(found), [found.c[column.name] for column in order])
    rows = list(connection.execute(query))
    cursor = None
    if len(rows) > listing.limit:
        rows = rows[: listing.limit]
        cursor = encode_cursor([rows[-1]._mapping[column.name] for column in order])
    if before is not None:
        before(rows)
    # Each row is built as plain data and the page validated once, in pydantic's core:
    # building a model per row and per nested object cost more than the query.
    items = [build(row) for row in rows]
    return schemas.Page[item].model_validate({"items": items, "next": cursor})  # type: ignore[valid-type]


def encode_cursor(key: list[Any]) -> str:
    text = json.dumps(key, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


_MAX_CURSOR: Final = 1000


def decode_cursor(cursor: str, order: Order) -> list[Any]:
    key = None
    if len(cursor) <= _MAX_CURSOR:
        with suppress(ValueError):
            key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    if not (
        isinstance(key, list)
        and len(key) == len(order)
        and all(_fits(value, column) for value, column in zip(key, order, strict=True))
    ):
        raise BadCursor(f"{cursor[:80]!r} is not a cursor of this list: pass a `next` it gave")
    return key


def _fits(value: object, column: ColumnElement[Any]) -> bool:
    """Could a row hold `value` in `column`? A forged cursor must not reach the database."""
    if isinstance(column.type, Integer):  # BigInteger too
        bits = 63 if isinstance(column.type, BigInteger) else 31
        return type(value) is int and -(2**bits) <= value < 2**bits
    if isinstance(column.type, String):
        return (
            type(value) is str
            and "\x00" not in value
            and not any("\ud800" <= character <= "\udfff" for character in value)
        )
    return False


def instant(ms: int | None) -> datetime | None:
    return None if ms is None else utc(ms)
