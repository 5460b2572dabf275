"""The event log: idempotent appends in commit order, and reads after a position."""

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, Final, NamedTuple

from sqlalchemy import Connection, Row, Select, bindparam, func, select, text

from cdp import chain, db, personal
from cdp.keystore import Key
from cdp.models import events
from cdp.times import now_ms
from cdp.webhook import Incoming, Webhook, logged

# The key material of those of the ids given that were not destroyed (see cdp.keystore).
Keys = Callable[[Collection[str]], Mapping[str, bytes]]

# Any constant will do: it only has to be the same for every writer of one database.
_APPEND_LOCK: Final = 0x63647000


@dataclass(frozen=True, slots=True)
class Recorded:
    """A webhook as the log holds it."""

    position: int
    received_at: int
    incoming: Incoming


@dataclass(frozen=True, slots=True)
class Receipt:
    position: int
    duplicate: bool


def lock(connection: Connection) -> None:
    """Serialize appends until this transaction ends, so positions follow commit order.

    SQLite has one writer at a time already (writes begin IMMEDIATE); PostgreSQL takes
    a transaction-scoped advisory lock.
    """
    if connection.dialect.name == "postgresql":
        _LOCK.run(connection, [{"key": _APPEND_LOCK}])


_LOCK: Final = db.Prepared(text("SELECT pg_advisory_xact_lock(:key)"))


def head(connection: Connection) -> int:
    """The position of the latest event, 0 for an empty log."""
    return int(_HEAD.rows(connection)[0]["head"])


# The position of the latest event, 0 for an empty log, as a column to select; and its hash.
HEAD: Final = func.coalesce(func.max(events.c.position), 0)
HEAD_HASH: Final = (
    select(events.c.hash).order_by(events.c.position.desc()).limit(1).scalar_subquery()
)


class Head(NamedTuple):
    """The latest event: its position (0 for an empty log) and its hash, which the next
    event chains to (None for an empty log)."""

    position: int
    hash: str | None


_HEAD: Final = db.Prepared(select(HEAD.label("head")))


def append(
    connection: Connection,
    batch: Sequence[Incoming],
    received_at: int | None = None,
    *,
    head: Head,
    ring: Mapping[str, Key],
) -> tuple[list[Receipt], list[Recorded]]:
    """Append the webhooks not yet in the log; a receipt for each, and what was new.

    The caller holds lock() and read `head` under it (see projectors.standing), so the
    new events take the positions after it, in batch order, each sealed with its
    subject's key from `ring` (see cdp.personal) and chained to the one before it. A body
    that is already logged (or repeated within the batch) is a duplicate and answers with
    the position of the first copy.
    """
    received_at = received_at if received_at is not None else now_ms()
    known = _positions(connection, {incoming.dedupe_key for incoming in batch})
    recorded: list[Recorded] = []
    rows = []
    previous = head.hash or chain.GENESIS
    for incoming in batch:
        if incoming.dedupe_key not in known:
            position = known[incoming.dedupe_key] = head.position + len(recorded) + 1
            recorded.append(Recorded(position, received_at, incoming))
            rows.append(row(incoming, received_at, position, previous, ring))
            previous = rows[-1]["hash"]
    if rows:
        db.insert(connection, events, rows)
        if connection.dialect.name == "postgresql":  # keep the column's default past them
            _FOLLOW_SEQUENCE.run(connection, [{"position": rows[-1]["position"]}])
    fresh = {r.incoming.dedupe_key for r in recorded}
    receipts = []
    for incoming in batch:
        key = incoming.dedupe_key
        receipts.append(Receipt(position=known[key], duplicate=key not in fresh))
        fresh.discard(key)
    return receipts, recorded


_FOLLOW_SEQUENCE: Final = db.Prepared(
    text("SELECT setval(pg_get_serial_sequence('events', 'position'), :position)")
)


def read(
    connection: Connection, *, after: int = 0, limit: int | None = None, **filters: str | None
) -> list[Row[Any]]:
    """Log rows after a position, oldest first, optionally filtered (see `page`)."""
    return list(connection.execute(_query(after, filters).limit(limit)))


def page(
    connection: Connection, *, after: int, limit: int, max_bytes: int, **filters: str | None
) -> tuple[list[Row[Any]], bool]:
    """Log rows after a position, oldest first: `limit` at most, and no more bodies than
    `max_bytes` (characters; one row at least), read as they stream in; and whether more
    are left. `filters` are event_type, chat_uuid, profile_uuid and source."""
    return db.bounded(
        connection,
        _query(after, filters),
        limit=limit,
        max_bytes=max_bytes,
        weight=lambda row: len(row.body) + len(row.sealed or b""),
    )


_FILTERS: Final = ("event_type", "chat_uuid", "profile_uuid", "source")


def _query(after: int, filters: dict[str, str | None]) -> Select[Any]:
    query = select(
        events.c.position,
        events.c.event_type,
        events.c.occurred_at,
        events.c.received_at,
        events.c.chat_uuid,
        events.c.profile_uuid,
        events.c.dedupe_key,
        events.c.body,
        events.c.source,
        events.c.key_id,
        events.c.sealed,
        events.c.hash,
    ).where(events.c.position > after)
    for name, value in filters.items():
        if name not in _FILTERS:
            raise TypeError(f"the log cannot be filtered by {name!r}")
        if value is not None:
            query = query.where(events.c[name] == value)
    return query.order_by(events.c.position)


def body(row: Any, materials: Mapping[str, bytes]) -> tuple[str, bool]:
    """A logged event's body as it was received; or, once its key was destroyed, its
    fields that are no personal data. And whether it was erased."""
    if row.sealed is None:
        return row.body, False
    material = materials.get(row.key_id)
    whole = None if material is None else personal.unseal(material, row.sealed, row.dedupe_key)
    return (row.body, True) if whole is None else (whole, False)


def bodies(rows: Sequence[Any], keys: Keys) -> list[tuple[str, bool]]:
    """The body of each row (see `body`), their keys fetched at once."""
    materials = keys({row.key_id for row in rows if row.key_id is not None})
    return [body(row, materials) for row in rows]


def replay(
    connection: Connection, keys: Keys, *, chats: Sequence[str] | None = None
) -> Iterator[Recorded]:
    """Stream the whole log (or the events of `chats`) chat by chat: each chat's events in
    log order, and those naming no chat together.

    Each event is what its columns say, with its body opened with its key (see `body`) and
    read leniently: never re-validated, since a logged event is a fact, and never failing,
    whatever the body holds.
    """
    query = select(*_REPLAYED).order_by(events.c.chat_uuid, events.c.position)
    if chats is not None:
        query = query.where(events.c.chat_uuid.in_(chats))
    with connection.execute(query.execution_options(yield_per=2000)) as result:
        rows = iter(result)
        while chunk := list(islice(rows, 2000)):
            yield from _recorded(chunk, keys)


def since(
    connection: Connection, *, after: int, until: int, limit: int, keys: Keys
) -> list[Recorded]:
    """The events after position `after` up to `until`, in log order, `limit` at most;
    read as replay() reads them."""
    rows = _SINCE.rows(connection, {"after": after, "until": until, "limit": limit})
    return list(_recorded([_Row(**row) for row in rows], keys))


_REPLAYED: Final = (
    events.c.position,
    events.c.received_at,
    events.c.event_type,
    events.c.occurred_at,
    events.c.chat_uuid,
    events.c.profile_uuid,
    events.c.dedupe_key,
    events.c.body,
    events.c.source,
    events.c.key_id,
    events.c.sealed,
)
_SINCE: Final = db.Prepared(
    select(*_REPLAYED)
    .where(events.c.position > bindparam("after"), events.c.position <= bindparam("until"))
    .order_by(events.c.position)
    .limit(bindparam("limit"))
)


@dataclass(frozen=True, slots=True)
class _Row:
    """A row of _REPLAYED read through a Prepared statement (a dict), as Core gives it."""

    position: int
    received_at: int
    event_type: str
    occurred_at: int
    chat_uuid: str | None
    profile_uuid: str | None
    dedupe_key: str
    body: str
    source: str
    key_id: str | None
    sealed: bytes | None


def _recorded(rows: Sequence[Any], keys: Keys) -> Iterator[Recorded]:
    for row, (whole, _) in zip(rows, bodies(rows, keys), strict=True):
        webhook = Webhook(
            row.event_type, row.occurred_at, row.chat_uuid, row.profile_uuid, logged(whole)
        )
        incoming = Incoming(whole, row.dedupe_key, webhook, row.source)
        yield Recorded(row.position, row.received_at, incoming)


_KNOWN: Final = db.Prepared(
    select(events.c.dedupe_key, events.c.position).where(db.among(events.c.dedupe_key, "keys"))
)


def _positions(connection: Connection, keys: set[str]) -> dict[str, int]:
    """The positions of those of `keys` the log holds."""
    found = _KNOWN.rows(connection, {"keys": list(keys)})
    return {row["dedupe_key"]: row["position"] for row in found}


def row(
    incoming: Incoming,
    received_at: int,
    position: int,
    previous: str,
    ring: Mapping[str, Key],
) -> dict[str, Any]:
    """The log row of a checked webhook, sealed with its subject's key from `ring` and
    chained to the row whose hash is `previous`."""
    webhook = incoming.webhook
    subject = personal.subject(webhook)
    key = None if subject is None else ring[subject]
    stored: dict[str, Any] = {
        "position": position,
        "event_type": webhook.event_type,
        "occurred_at": webhook.timestamp,
        "received_at": received_at,
        "chat_uuid": webhook.chat_uuid,
        "profile_uuid": webhook.profile_uuid,
        "dedupe_key": incoming.dedupe_key,
        "body": incoming.body if key is None else personal.redacted(webhook.document),
        "source": incoming.source,
        "key_id": None if key is None else key.id,
        "sealed": (
            None if key is None else personal.seal(key.material, incoming.body, incoming.dedupe_key)
        ),
    }
    stored["hash"] = chain.link(previous, stored)
    return stored
