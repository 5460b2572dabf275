"""The event log: idempotent appends in commit order, and reads after a position."""

import enum
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from itertools import islice
from typing import Any, Final, NamedTuple

from sqlalchemy import (
    Connection,
    Row,
    Select,
    String,
    bindparam,
    column,
    func,
    select,
    text,
)

from cdp import db
from cdp.log import chain
from cdp.log.tables import events
from cdp.log.webhook import Incoming, Webhook, logged
from cdp.privacy import personal
from cdp.privacy.keystore import Key
from cdp.times import now_ms

# The key material of those of the ids given that were not destroyed (see cdp.privacy.keystore).
KeyLookup = Callable[[Collection[str]], Mapping[str, bytes]]

# Any constant will do: it only has to be the same for every writer of one database.
_APPEND_LOCK: Final = 0x63647000


@dataclass(frozen=True, slots=True)
class Recorded:
    """A webhook as the log holds it, with the key of its subject (see cdp.privacy.personal) when
    its body opened whole: what seals its personal values in the read models (b"": none,
    its body is only what the log keeps in the clear)."""

    position: int
    received_at: int
    incoming: Incoming
    dedupe_key: str
    key: bytes = b""


@dataclass(frozen=True, slots=True)
class Receipt:
    position: int
    duplicate: bool


def lock(connection: Connection, *, wait: bool = False, within: timedelta | None = None) -> None:
    """Serialize appends until this transaction ends, so positions follow commit order.

    SQLite has one writer at a time already (writes begin IMMEDIATE, see db.writing);
    PostgreSQL takes a transaction-scoped advisory lock. In a pipeline, the lock is asked
    for and this returns at once, unless `wait`: then it returns once the lock is held.
    With `within` (PostgreSQL; implies `wait`), the lock is waited for this long at most,
    then an error that db.lock_timed_out() tells is raised; it is still queued for in the
    meantime, so a holder that lets go and asks again comes after it.
    """
    if connection.dialect.name != "postgresql":
        return
    if within is not None:
        values = {"wait": f"{db.milliseconds(within)}ms", "key": _APPEND_LOCK}
        db.read_together(connection, (_WAIT, values), (_LOCKED, values), (_NO_WAIT, {}))
    elif wait:
        _LOCKED.rows(connection, {"key": _APPEND_LOCK})
    else:
        _LOCK.run(connection, [{"key": _APPEND_LOCK}])


_LOCK: Final = db.Prepared(text("SELECT pg_advisory_xact_lock(:key)"))
_LOCKED: Final = db.Prepared(
    text("SELECT pg_advisory_xact_lock(:key) AS locked").columns(column("locked"))
)
# For this transaction: lock waits end after :wait; once the lock is held, only at the
# statement timeout, as anywhere else.
_WAIT: Final = db.Prepared(
    text("SELECT set_config('lock_timeout', :wait, true) AS wait").columns(column("wait"))
)
_NO_WAIT: Final = db.Prepared(
    text("SELECT set_config('lock_timeout', '0', true) AS wait").columns(column("wait"))
)


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


def count(connection: Connection) -> int:
    """How many events the log holds."""
    return int(connection.scalar(select(func.count()).select_from(events)) or 0)


def append(
    connection: Connection,
    batch: Sequence[Incoming],
    received_at: int | None = None,
    *,
    head: Head,
    ring: Mapping[str, Key],
    erased: Collection[str] = (),
) -> tuple[list[Receipt], list[Recorded]]:
    """Append the webhooks not yet in the log; a receipt for each, and what was new.

    The caller holds lock() and read `head` under it (see runner.log_state), so the
    new events take the positions after it, in batch order, each sealed with its
    subject's key from `ring` (see cdp.privacy.personal) and chained to the one before it. A body
    that is already logged (or repeated within the batch) is a duplicate and answers with
    the position of the first copy; so does one of a subject `erased` (not suppressed)
    that an event sealed under a key since destroyed holds the clear part of (see
    _erased_copies): what was erased does not come back with a redelivery.
    """
    received_at = received_at if received_at is not None else now_ms()
    sealed = [_Sealed.of(incoming, ring) for incoming in batch]
    known = _positions(connection, {item.dedupe_key for item in sealed})
    if erased:
        again = [item for item in sealed if item.subject in erased]
        known |= _erased_copies(connection, [i for i in again if i.dedupe_key not in known])
    recorded: list[Recorded] = []
    rows = []
    previous = head.hash or chain.GENESIS
    for item in sealed:
        if item.dedupe_key not in known:
            position = known[item.dedupe_key] = head.position + len(recorded) + 1
            recorded.append(
                Recorded(position, received_at, item.incoming, item.dedupe_key, item.key.material)
            )
            rows.append(item.row(received_at, position, previous))
            previous = rows[-1]["hash"]
    if rows:
        db.insert(connection, events, rows)
        if connection.dialect.name == "postgresql":  # keep the column's default past them
            _FOLLOW_SEQUENCE.run(connection, [{"position": rows[-1]["position"]}])
    fresh = {r.dedupe_key for r in recorded}
    receipts = []
    for item in sealed:
        key = item.dedupe_key
        receipts.append(Receipt(position=known[key], duplicate=key not in fresh))
        fresh.discard(key)
    return receipts, recorded


@dataclass(frozen=True, slots=True)
class _Sealed:
    """A checked webhook with what its log row is made of: its subject and key, its body's
    fields that are no personal data, and its dedupe key (see cdp.privacy.personal)."""

    incoming: Incoming
    subject: str
    key: Key
    redacted: str
    dedupe_key: str

    @classmethod
    def of(cls, incoming: Incoming, ring: Mapping[str, Key]) -> "_Sealed":
        if incoming.fingerprint is None:
            raise ValueError("an event read back from the log cannot be appended again")
        subject = personal.subject(incoming.webhook, incoming.source)
        key = ring[subject]
        redacted = personal.redacted(incoming.webhook.document)
        dedupe_key = personal.dedupe_key(redacted, incoming.fingerprint, key.material)
        return cls(incoming, subject, key, redacted, dedupe_key)

    def row(self, received_at: int, position: int, previous: str) -> dict[str, Any]:
        """The log row, chained to the row whose hash is `previous`."""
        webhook = self.incoming.webhook
        stored: dict[str, Any] = {
            "position": position,
            "event_type": webhook.event_type,
            "occurred_at": webhook.timestamp,
            "received_at": received_at,
            "chat_uuid": webhook.chat_uuid,
            "profile_uuid": webhook.profile_uuid,
            "dedupe_key": self.dedupe_key,
            "body": self.redacted,
            "source": self.incoming.source,
            "key_id": self.key.id,
            "sealed": personal.seal(self.key.material, self.incoming.body, self.dedupe_key),
        }
        stored["hash"] = chain.link(previous, stored)
        return stored


def row(
    incoming: Incoming, ring: Mapping[str, Key], received_at: int, position: int, previous: str
) -> dict[str, Any]:
    """The log row of a checked webhook, sealed with its subject's key from `ring` and
    chained to the row whose hash is `previous`, as append() writes it."""
    return _Sealed.of(incoming, ring).row(received_at, position, previous)


def _erased_copies(connection: Connection, items: Sequence[_Sealed]) -> dict[str, int]:
    """The position of the event that each of `items` (webhooks of erased subjects, not
    found in the log) is a redelivery of, by the item's dedupe key: the first event of the
    same subject, sealed under another key (destroyed by the erasure), whose dedupe key has
    the same clear half. Its keyed half cannot be compared: its key is gone."""
    if not items:
        return {}
    chats = {item.incoming.webhook.chat_uuid for item in items}
    profiles = {item.incoming.webhook.profile_uuid for item in items}
    values = {
        "chats": [c for c in chats if c],
        "profiles": [p for p in profiles if p],
        "halves": list({personal.clear_half(item.dedupe_key) for item in items}),
    }
    current = {item.subject: item.key.id for item in items}
    first: dict[tuple[str, str], int] = {}
    for row in _ERASED_COPIES.rows(connection, values):
        subject = personal.subject_of(row["chat_uuid"], row["profile_uuid"], row["source"])
        if row["key_id"] != current.get(subject):
            place = (subject, personal.clear_half(row["dedupe_key"]))
            first.setdefault(place, row["position"])
    found = {}
    for item in items:
        position = first.get((item.subject, personal.clear_half(item.dedupe_key)))
        if position is not None:
            found[item.dedupe_key] = position
    return found


_ERASED_COPIES: Final = db.Prepared(
    select(
        events.c.position,
        events.c.chat_uuid,
        events.c.profile_uuid,
        events.c.source,
        events.c.dedupe_key,
        events.c.key_id,
    )
    .where(
        db.any_of(events.c.chat_uuid, "chats")
        | (events.c.chat_uuid.is_(None) & db.any_of(events.c.profile_uuid, "profiles")),
        db.any_of(func.substr(events.c.dedupe_key, 1, personal.HALF, type_=String), "halves"),
    )
    .order_by(events.c.position)
)
_FOLLOW_SEQUENCE: Final = db.Prepared(
    text("SELECT setval(pg_get_serial_sequence('events', 'position'), :position)")
)


def read(
    connection: Connection, *, after: int = 0, limit: int | None = None, **filters: str | None
) -> list[Row[Any]]:
    """Log rows after a position, oldest first, optionally filtered (see `page`)."""
    return list(connection.execute(_query(after, filters).limit(limit)))


def chunks(connection: Connection, size: int = 2000) -> Iterator[list[Row[Any]]]:
    """The whole log, oldest first, `size` rows at a time, streamed: what read() reads."""
    with connection.execute(_query(0, {}).execution_options(yield_per=size)) as result:
        for chunk in result.partitions(size):
            yield list(chunk)


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


class Opened(enum.Enum):
    """How a logged body was read."""

    WHOLE = "whole"
    # Its key is not in the keystore: destroyed by an erasure, or never there (another
    # keystore, or one restored from before the event).
    KEY_GONE = "key gone"
    # Its key does not open it: the sealed bytes, or the dedupe key they are bound to, changed.
    BROKEN = "broken"


def body(row: Any, materials: Mapping[str, bytes]) -> tuple[str, Opened]:
    """A logged event's body as it was received; or, when its sealed copy cannot be opened,
    its fields that are no personal data. And how it was read."""
    if row.sealed is None:  # written around cdp: every append seals
        return row.body, Opened.WHOLE
    material = materials.get(row.key_id)
    if material is None:
        return row.body, Opened.KEY_GONE
    whole = personal.unseal(material, row.sealed, row.dedupe_key)
    return (row.body, Opened.BROKEN) if whole is None else (whole, Opened.WHOLE)


def bodies(rows: Sequence[Any], keys: KeyLookup) -> list[tuple[str, Opened]]:
    """The body of each row (see `body`), their keys fetched at once."""
    materials = keys({row.key_id for row in rows if row.key_id is not None})
    return [body(row, materials) for row in rows]


def replay(
    connection: Connection,
    keys: KeyLookup,
    *,
    chats: Sequence[str] | None = None,
    until: int | None = None,
) -> Iterator[Recorded]:
    """Stream the whole log (or the events of `chats`; up to position `until`) chat by chat:
    each chat's events in log order, and those naming no chat together.

    Each event is what its columns say, with its body opened with its key (see `body`) and
    read leniently: never re-validated, since a logged event is a fact, and never failing,
    whatever the body holds.
    """
    query = select(*_REPLAYED).order_by(events.c.chat_uuid, events.c.position)
    if chats is not None:
        query = query.where(db.any_of(events.c.chat_uuid, "chats"))
    if until is not None:
        query = query.where(events.c.position <= until)
    listed = {"chats": list(chats)} if chats is not None else {}
    with connection.execute(query.execution_options(yield_per=2000), listed) as result:
        rows = iter(result)
        while chunk := list(islice(rows, 2000)):
            yield from _recorded(chunk, keys)


def since(
    connection: Connection, *, after: int, until: int, limit: int, keys: KeyLookup
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


def _recorded(rows: Sequence[Any], keys: KeyLookup) -> Iterator[Recorded]:
    materials = keys({row.key_id for row in rows if row.key_id is not None})
    for row in rows:
        whole, opened = body(row, materials)
        webhook = Webhook(
            row.event_type, row.occurred_at, row.chat_uuid, row.profile_uuid, logged(whole)
        )
        incoming = Incoming(whole, None, webhook, row.source)
        key = materials.get(row.key_id, b"") if opened is Opened.WHOLE and row.key_id else b""
        yield Recorded(row.position, row.received_at, incoming, row.dedupe_key, key or b"")


_KNOWN: Final = db.Prepared(
    select(events.c.dedupe_key, events.c.position).where(db.any_of(events.c.dedupe_key, "keys"))
)


def _positions(connection: Connection, keys: set[str]) -> dict[str, int]:
    """The positions of those of `keys` the log holds."""
    found = _KNOWN.rows(connection, {"keys": list(keys)})
    return {row["dedupe_key"]: row["position"] for row in found}
