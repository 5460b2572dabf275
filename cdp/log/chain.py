"""The log's hash chain: each row's hash covers the hash of the row before it and every
column of its own, so that a row edited, deleted or inserted out of order breaks the chain
from that row on.

    hash = SHA-256(previous row's hash, 32 bytes (zeros for the first row)
                   + JSON array of the row's columns (COLUMNS, in order; `sealed` as its
                     length) + the sealed bytes)
"""

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from sqlalchemy import Connection, select

from cdp.log.tables import events

GENESIS: Final = "0" * 64
# What a hash covers, in this order: every column but the hash itself. Fixed here, not
# read from the table: a hash must mean the same thing whatever columns come later.
COLUMNS: Final = (
    "position",
    "event_type",
    "occurred_at",
    "received_at",
    "chat_uuid",
    "profile_uuid",
    "dedupe_key",
    "body",
    "source",
    "key_id",
    "sealed",
)
_SEALED: Final = COLUMNS.index("sealed")
_ENCODER: Final = msgspec.json.Encoder()


def link(previous: str, row: Mapping[Any, Any]) -> str:
    """The hash of `row`, logged right after the row whose hash is `previous`."""
    sealed: bytes | None = row["sealed"]
    fields = [row[name] for name in COLUMNS]
    fields[_SEALED] = None if sealed is None else len(sealed)
    digest = hashlib.sha256(bytes.fromhex(previous))
    digest.update(_ENCODER.encode(fields))
    if sealed is not None:
        digest.update(sealed)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a walk of the chain found: how many rows it checked, the last good position and
    hash, the first position where the chain breaks (None if it holds), and whether the
    anchor given was met."""

    rows: int
    position: int
    hash: str
    broken_at: int | None = None
    anchored: bool = False


def verify(connection: Connection, *, anchor: tuple[int, str] | None = None) -> Verdict:
    """Walk the whole log in position order and check every row's hash; and that the row
    at the `anchor`'s position (a head kept earlier) still has the anchor's hash.

    A chain that holds proves that no row was changed, removed or slipped in since its
    successors were logged; only an anchor kept outside proves the whole chain was not
    written anew."""
    previous, position, count, anchored = GENESIS, 0, 0, False
    query = select(*(events.c[name] for name in (*COLUMNS, "hash"))).order_by(events.c.position)
    with connection.execute(query.execution_options(yield_per=2000)) as result:
        for row in result:
            values = row._mapping
            if values["hash"] != link(previous, values):
                return Verdict(count, position, previous, broken_at=values["position"])
            previous, position, count = values["hash"], values["position"], count + 1
            anchored = anchored or (anchor is not None and anchor == (position, previous))
    return Verdict(count, position, previous, anchored=anchored)
