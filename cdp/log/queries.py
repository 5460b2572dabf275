"""Reads of the log: its events a page at a time, its tail, and the rejected deliveries."""

import base64
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import (
    Connection,
    Row,
    func,
    select,
)

from cdp.conversations.tables import chats, handoffs, sessions
from cdp.http import schemas as http_schemas
from cdp.log import rejected, schemas, store, tables
from cdp.privacy import personal
from cdp.privacy import tables as privacy_tables
from cdp.privacy.keystore import Keystore
from cdp.profiles.tables import profile_chats
from cdp.projections.runner import key_lookup
from cdp.teams.tables import teams
from cdp.times import utc


def events(
    connection: Connection,
    keystore: Keystore,
    *,
    after: int,
    limit: int,
    event_type: str | None = None,
    chat_uuid: str | None = None,
    profile_uuid: str | None = None,
    source: str | None = None,
) -> schemas.EventPage:
    rows, more = store.page(
        connection,
        after=after,
        limit=limit,
        max_bytes=PAGE_BYTES,
        event_type=event_type,
        chat_uuid=chat_uuid,
        profile_uuid=profile_uuid,
        source=source,
    )
    items = _events(connection, keystore, rows)
    return schemas.EventPage(items=items, next_after=items[-1].position if more else None)


# Bodies a page of the log holds at most (one at least, however large): a page of 1000
# large bodies would otherwise hold a gigabyte in the server.
PAGE_BYTES: Final = 4 * 1024 * 1024


def event(connection: Connection, keystore: Keystore, position: int) -> schemas.Event | None:
    rows = store.read(connection, after=position - 1, limit=1)
    if not rows or rows[0].position != position:
        return None
    return _events(connection, keystore, rows)[0]


@dataclass(frozen=True, slots=True)
class Tail:
    """A page of the log for a reader that follows it: the events; the position up to which
    it holds every event that matches (the head once the log was read to its end, so that a
    filter that matches rarely is not read from far back each time); whether more follow."""

    items: list[schemas.Event]
    read_to: int
    more: bool


def tail(
    connection: Connection,
    keystore: Keystore,
    *,
    after: int,
    limit: int,
    event_type: str | None = None,
    chat_uuid: str | None = None,
    profile_uuid: str | None = None,
    source: str | None = None,
) -> Tail:
    # The head first: positions follow commit order, so every event up to it is committed
    # before the page is read, and a page that reaches the end of the log holds them all.
    head = store.head(connection)
    page = events(
        connection,
        keystore,
        after=after,
        limit=limit,
        event_type=event_type,
        chat_uuid=chat_uuid,
        profile_uuid=profile_uuid,
        source=source,
    )
    if page.next_after is not None:
        return Tail(page.items, page.next_after, more=True)
    last = page.items[-1].position if page.items else after
    return Tail(page.items, max(head, last), more=False)


def feed(
    connection: Connection,
    keystore: Keystore,
    *,
    after: int,
    limit: int,
    wanted: Callable[[Any], bool],
) -> tuple[Tail, int]:
    """A page of the whole log for the event streams that share one reader: as `tail` reads
    it (the head first), but each event opened only if `wanted` says a stream wants it
    (asked of its log row, which has the columns the streams filter by, and its position);
    and how many events the page read, wanted or not."""
    head = store.head(connection)
    rows, more = store.page(connection, after=after, limit=limit, max_bytes=PAGE_BYTES)
    chosen = [row for row in rows if wanted(row)]
    items = _events(connection, keystore, chosen) if chosen else []
    last = rows[-1].position if rows else after
    return Tail(items, last if more else max(head, last), more), len(rows)


UNREADABLE_NO_KEY: Final = "its key is not in the keystore, and no erasure destroyed it"


UNREADABLE_BROKEN: Final = "its key does not open it: the sealed copy was changed"


def _events(connection: Connection, keystore: Keystore, rows: Sequence[Any]) -> list[schemas.Event]:
    """The events of log rows, each body opened with its key; one whose key is gone, told
    apart as erased or as unreadable (see schemas.Event)."""
    bodies = store.bodies(rows, key_lookup(connection, keystore))
    gone = {
        _subject(row)
        for row, (_, opened) in zip(rows, bodies, strict=True)
        if opened is store.Opened.KEY_GONE
    }
    erased = keystore.erased(connection, gone)
    items = []
    for row, (body, opened) in zip(rows, bodies, strict=True):
        unreadable = None
        if opened is store.Opened.BROKEN:
            unreadable = UNREADABLE_BROKEN
        elif opened is store.Opened.KEY_GONE and _subject(row) not in erased:
            unreadable = UNREADABLE_NO_KEY
        erased_here = opened is store.Opened.KEY_GONE and unreadable is None
        items.append(_event(row, body, erased_here, unreadable))
    return items


def _subject(row: Any) -> str:
    return personal.subject_of(row.chat_uuid, row.profile_uuid, row.source)


@dataclass(frozen=True, slots=True)
class Openings:
    """What opening every body of the log found (see cdp verify)."""

    whole: int = 0
    erased: int = 0
    missing_key: int = 0  # not erased, and the keystore lacks the key: the wrong keystore?
    broken: int = 0  # their key does not open them: the sealed copy was changed

    @property
    def sound(self) -> bool:
        return not (self.missing_key or self.broken)


def openings(connection: Connection, keystore: Keystore) -> Openings:
    """Open every body the log holds with its key, a chunk at a time, and count how each
    was read: whole, erased, or unreadable for a missing key or a changed sealed copy."""
    counts = Counter[str]()
    for chunk in store.chunks(connection):
        for item in _events(connection, keystore, chunk):
            counts[_opening(item)] += 1
    return Openings(**counts)


def _opening(event: schemas.Event) -> str:
    if event.unreadable == UNREADABLE_BROKEN:
        return "broken"
    if event.unreadable is not None:
        return "missing_key"
    return "erased" if event.erased else "whole"


def _event(row: Row[Any], body: str, erased: bool, unreadable: str | None) -> schemas.Event:
    return schemas.Event(
        position=row.position,
        event_type=row.event_type,
        occurred_at=utc(row.occurred_at),
        received_at=utc(row.received_at),
        chat_uuid=row.chat_uuid,
        profile_uuid=row.profile_uuid,
        source=row.source,
        body=http_schemas.RawJSON.of(body),
        erased=erased,
        unreadable=unreadable,
        hash=row.hash,
    )


def rejected_deliveries(
    connection: Connection, keystore: Keystore, *, after: int, limit: int, source: str | None
) -> schemas.RejectedPage:
    rows, more = rejected.read(
        connection, after=after, limit=limit, source=source, max_bytes=PAGE_BYTES
    )
    items = []
    for row, body in zip(rows, rejected.bodies(connection, keystore, rows), strict=True):
        text: str | None
        encoded: str | None = None
        if body is None:  # its key is gone: answered without it, as neither
            text = None
        else:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text, encoded = None, base64.b64encode(body).decode()
        items.append(
            schemas.Rejected(
                **_rejected_delivery(row), headers=row.headers, body=text, body_base64=encoded
            )
        )
    return schemas.RejectedPage(items=items, next_after=items[-1].id if more else None)


def latest_rejected(connection: Connection, limit: int) -> list[schemas.Refusal]:
    """The latest deliveries refused as bad input, newest first, without their bodies."""
    query = select(*(column for column in tables.rejected.c if column.name != "body"))
    rows = connection.execute(query.order_by(tables.rejected.c.id.desc()).limit(limit))
    return [schemas.Refusal(**_rejected_delivery(row)) for row in rows]


def _rejected_delivery(row: Any) -> dict[str, Any]:
    """What a refused delivery's row says of it, its body and headers aside."""
    return dict(
        id=row.id,
        received_at=utc(row.received_at),
        source=row.source,
        status=row.status,
        reason=row.reason,
        size=row.size,
    )


def counts(connection: Connection) -> dict[str, int]:
    """How many rows the log and each read model hold."""
    statements = {
        "events": select(func.count()).select_from(tables.events),
        "profiles": select(func.count(func.distinct(profile_chats.c.profile_uuid))),
        "chats": select(func.count()).select_from(chats),
        "sessions": select(func.count()).select_from(sessions),
        "handoffs": select(func.count()).select_from(handoffs),
        "teams": select(func.count()).select_from(teams),
        "erased profiles": select(func.count()).select_from(privacy_tables.erasures),
        # Begun and not ended (see cdp.privacy.erasure): the next start or cdp erase finishes them.
        "erasures under way": select(
            func.count(func.distinct(privacy_tables.pending_erasures.c.profile_uuid))
        ),
        "webhooks refused as suppressed": select(
            func.coalesce(func.sum(privacy_tables.erasures.c.refused), 0)
        ),
    }
    return {name: connection.scalar(statement) or 0 for name, statement in statements.items()}
