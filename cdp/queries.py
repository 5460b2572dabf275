"""The questions the API answers, each one a few set-based reads of the read models."""

import base64
import json
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from functools import cache, partial
from typing import Any, Final, NamedTuple, TypeVar

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Integer,
    Row,
    Select,
    String,
    and_,
    bindparam,
    func,
    literal,
    select,
    true,
    tuple_,
    union_all,
)

from cdp import credentials, db, erasure, log, models, names, personal, phones, rejected, schemas
from cdp.keystore import Keystore
from cdp.models import chats, handoffs, profile_chats, sessions, teams, timeline, waits
from cdp.names import search_key
from cdp.projectors import keys
from cdp.times import utc
from cdp.webhook import OPERATOR_REPLIED

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
    few at a time (see cdp.erasure), and until the last one is, it is neither whole nor
    erased."""

    def __init__(self, uuid: str) -> None:
        super().__init__(f"profile {uuid!r} is being erased: ask again once its erasure ended")


@dataclass(frozen=True, slots=True)
class Listing:
    """Where one page of a list starts and how long it is: `after` is the previous `next`."""

    after: str | None = None
    limit: int = 100


Order = Sequence[ColumnElement[Any]]


def _page(
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
    after = None if listing.after is None else tuple_(*_decode(listing.after, order))

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
        cursor = _encode([rows[-1]._mapping[column.name] for column in order])
    if before is not None:
        before(rows)
    # Each row is built as plain data and the page validated once, in pydantic's core:
    # building a model per row and per nested object cost more than the query.
    items = [build(row) for row in rows]
    return schemas.Page[item].model_validate({"items": items, "next": cursor})  # type: ignore[valid-type]


def _encode(key: list[Any]) -> str:
    text = json.dumps(key, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


_MAX_CURSOR: Final = 1000


def _decode(cursor: str, order: Order) -> list[Any]:
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


# Chats each profile a search finds holds; the rest are a page at a time (owned_chats).
FOUND_CHATS: Final = 10
# A profile's phones and names are those of its newest chats, this many at most: what a
# page of a profile reads stays the same however many chats a sender names under it.
NAMED_BY: Final = 100
# A profile's chats in the order it lists them: when each was first seen, then the uuid.
_PROFILE_ORDER: Final = ("first_seen_at", "uuid")
_PROFILE_CHAT: Final = (
    "uuid",
    "platform",
    "name",
    "phone",
    "avatar",
    "first_seen_at",
    "last_seen_at",
)


def profile(
    connection: Connection, uuid: str, most: int = 100, *, keystore: Keystore
) -> schemas.Profile | None:
    """A profile with its first `most` chats (see profiles); None if no event named it;
    BeingErased while it is."""
    if erasure.pending(connection, [uuid]):
        raise BeingErased(uuid)
    found = profiles(connection, [uuid], most, keystore=keystore)
    return found[0] if found else None


def profiles(
    connection: Connection, uuids: Sequence[str], most: int = 100, *, keystore: Keystore
) -> list[schemas.Profile]:
    """Profiles in the order asked; unknown uuids are left out, and so are those being
    erased (see BeingErased). Each holds its own fields, its first `most` chats and the
    cursor of the rest (for owned_chats): a sender may name a hundred thousand chats under
    one profile.

    Each part is read from one end of an index, for each profile, and cut short: when it
    was first and last named and on which chat last (for merged_into), its first chats,
    and its NAMED_BY newest for its phones and names."""
    erasing = erasure.pending(connection, uuids)
    uuids = [uuid for uuid in uuids if uuid not in erasing]
    facts, first, newest = _profile_reads(db.dialect(connection))
    wanted = {"wanted": [{"uuid": uuid} for uuid in dict.fromkeys(uuids)]}
    owned: dict[str, list[Row[Any]]] = defaultdict(list)
    rows = connection.execute(first, {**wanted, "most": most + 1}).all()
    for row in sorted(rows, key=lambda row: (row.first_seen_at, row.uuid)):
        owned[row.wanted].append(row)
    named: dict[str, list[Row[Any]]] = defaultdict(list)
    for row in connection.execute(newest, {**wanted, "most": NAMED_BY}):
        named[row.wanted].append(row)
    every = {row.uuid for listed in (*owned.values(), *named.values()) for row in listed}
    sealers = keystore.sealers(connection, every)
    found = {}
    for row in connection.execute(facts, wanted):
        uuid = row.uuid
        if row.first_seen_at is None:
            continue  # no event named it
        shown, cursor = owned[uuid][:most], None
        if len(owned[uuid]) > most:
            cursor = _encode([shown[-1].first_seen_at, shown[-1].uuid])
        phones, names = set(), set()
        for chat in named[uuid]:
            sealer = sealers.get(chat.uuid)
            phone = personal.opened(sealer, "phone_e164", chat.phone_e164)
            phones.add(phone or personal.opened(sealer, "phone", chat.phone))
            names.add(personal.opened(sealer, "name", chat.name))
        found[uuid] = dict(
            uuid=uuid,
            phones=sorted(phone for phone in phones if phone),
            names=sorted(name for name in names if name),
            first_seen_at=utc(row.first_seen_at),
            last_seen_at=utc(row.last_seen_at),
            merged_into=None if named[uuid] else row.holder,
            chats=[_profile_chat(chat, sealers.get(chat.uuid)) for chat in shown],
            chats_next=cursor,
        )
    return [schemas.Profile.model_validate(found[uuid]) for uuid in uuids if uuid in found]


def owned_chats(
    connection: Connection, uuid: str, listing: Listing, *, keystore: Keystore
) -> schemas.Page[schemas.ProfileChat] | None:
    """A page of the chats a profile owns, in the order profiles() lists them; None if no
    event named the profile; BeingErased while it is."""
    if erasure.pending(connection, [uuid]):
        raise BeingErased(uuid)
    query = select(*(chats.c[name] for name in _PROFILE_CHAT)).where(chats.c.profile_uuid == uuid)
    order = [chats.c[name] for name in _PROFILE_ORDER]
    sealers: dict[str, personal.Sealer | None] = {}

    def before(rows: Sequence[Row[Any]]) -> None:
        sealers.update(keystore.sealers(connection, {row.uuid for row in rows}))

    def build(row: Row[Any]) -> dict[str, Any]:
        return _profile_chat(row, sealers.get(row.uuid))

    page = _page(connection, [query], order, listing, build, schemas.ProfileChat, before=before)
    if not page.items and not _profile_named(connection, uuid):
        return None
    return page


def _profile_named(connection: Connection, uuid: str) -> bool:
    """Has any event named this profile (on any chat, its own now or not)?"""
    named = select(profile_chats.c.chat_uuid).where(profile_chats.c.profile_uuid == uuid)
    return connection.scalar(named.limit(1)) is not None


def _profile_chat(row: Row[Any], sealer: personal.Sealer | None) -> dict[str, Any]:
    """A chat of a profile as plain data, for schemas.ProfileChat."""
    return dict(
        uuid=row.uuid,
        platform=row.platform,
        name=personal.opened(sealer, "name", row.name),
        phone=personal.opened(sealer, "phone", row.phone),
        avatar=personal.opened(sealer, "avatar", row.avatar),
        first_seen_at=utc(row.first_seen_at),
        last_seen_at=utc(row.last_seen_at),
    )


@cache
def _profile_reads(dialect: str) -> tuple[Select[Any], Select[Any], Select[Any]]:
    """What profiles() reads, built once for each database: each profile's facts, its
    first chats and the names and phones of its newest."""
    return (
        _profile_facts(dialect),
        _each_profile(dialect, _PROFILE_CHAT),
        _each_profile(dialect, ("uuid", "name", "phone", "phone_e164"), newest=True),
    )


def _each_profile(dialect: str, columns: Sequence[str], *, newest: bool = False) -> Select[Any]:
    """For each profile asked ("wanted": uuid), the `columns` of its first `most` chats in
    the order it lists them (its `most` newest, with `newest`), its uuid as `wanted`.

    One range of ix_chats_profile_uuid_order read from one end for each: LATERAL on
    PostgreSQL; on SQLite, which has none, a subquery of each profile chooses the chats."""
    wanted = db.records("wanted", dialect, {"uuid": String()})

    def first(table: Any, *selected: ColumnElement[Any]) -> Select[Any]:
        order = [table.c[name] for name in _PROFILE_ORDER]
        return (
            select(*selected)
            .where(table.c.profile_uuid == wanted.c.uuid)
            .order_by(*(column.desc() for column in order) if newest else order)
            .limit(bindparam("most", type_=Integer()))
        )

    if dialect == "postgresql":
        each = first(chats, *(chats.c[name] for name in columns)).lateral("each")
        return select(wanted.c.uuid.label("wanted"), each).select_from(wanted.join(each, true()))
    inner = chats.alias("inner")
    chosen = chats.c.uuid.in_(first(inner, inner.c.uuid))
    return select(wanted.c.uuid.label("wanted"), *(chats.c[name] for name in columns)).select_from(
        wanted.join(chats, chosen)
    )


def _profile_facts(dialect: str) -> Select[Any]:
    """For each profile asked ("wanted": uuid): when it was first and last named (NULL if
    never), and the profile that holds the chat it was last named on now (`holder`)."""
    wanted = db.records("wanted", dialect, {"uuid": String()})
    pairs = profile_chats
    of_profile = pairs.c.profile_uuid == wanted.c.uuid
    first_seen = select(pairs.c.first_seen_at).where(of_profile).order_by(pairs.c.first_seen_at)
    last_seen = select(pairs.c.last_seen_at).where(of_profile).order_by(pairs.c.last_seen_at.desc())
    holder = (
        select(chats.c.profile_uuid)
        .select_from(pairs.join(chats, chats.c.uuid == pairs.c.chat_uuid))
        .where(of_profile)
        .order_by(pairs.c.last_seen_at.desc(), pairs.c.chat_uuid.desc())
    )
    return select(
        wanted.c.uuid,
        first_seen.limit(1).scalar_subquery().label("first_seen_at"),
        last_seen.limit(1).scalar_subquery().label("last_seen_at"),
        holder.limit(1).scalar_subquery().label("holder"),
    )


def profiles_by_phone(
    connection: Connection,
    number: str,
    listing: Listing,
    source: str | None = None,
    most: int = FOUND_CHATS,
    *,
    keystore: Keystore,
) -> schemas.Page[schemas.Profile]:
    """Profiles owning a chat with this number (E.164), of one source or any, in uuid order,
    each with its first `most` chats (see profiles)."""
    return _owners(connection, keystore, _phone_wanted(number), listing, source, most)


def profiles_by_name(
    connection: Connection,
    text: str,
    listing: Listing,
    source: str | None = None,
    most: int = FOUND_CHATS,
    *,
    keystore: Keystore,
) -> schemas.Page[schemas.Profile]:
    """Profiles owning a chat whose name starts with `text`, both folded alike (see
    cdp.names), of one source or any, in uuid order, each with its first `most` chats. A
    prefix of the whole name, not of any word in it, of names.PREFIX characters at least
    (a shorter text finds only names that short); a text that folds to nothing finds none."""
    wanted = _name_wanted(text)
    if wanted is None:
        return schemas.Page[schemas.Profile](items=[], next=None)
    return _owners(connection, keystore, wanted, listing, source, most)


@dataclass(frozen=True, slots=True)
class _Wanted:
    """What a search looks chats up by: a digest (`column` is `digest`), then what the
    chat's sealed `opened` column must hold, once opened (see cdp.names, cdp.phones)."""

    column: str
    digest: int | None
    opened: str
    holds: Callable[[str], bool]


def _phone_wanted(number: str) -> _Wanted:
    return _Wanted("phone_digest", phones.digest(number), "phone_e164", number.__eq__)


def _name_wanted(text: str) -> _Wanted | None:
    prefix = search_key(text)
    if prefix is None:
        return None

    def holds(name: str) -> bool:
        return (search_key(name) or "").startswith(prefix)

    return _Wanted("name_digest", names.digest(prefix), "name", holds)


# Owners a search reads the chats of in one statement (SQLite: 500 parts of one at most).
_OWNERS_AT_ONCE: Final = 200


def _owners(
    connection: Connection,
    keystore: Keystore,
    wanted: _Wanted,
    listing: Listing,
    source: str | None,
    most: int,
) -> schemas.Page[schemas.Profile]:
    """Profiles owning a chat that holds what `wanted` wants, of one source or any, in uuid
    order: the owners of chats of its digest, each read as the least after the one before
    from the digest's index (a profile that owns a hundred thousand chats of a number
    costs one probe of it, not a hundred thousand rows), then kept if one of their chats
    of the digest, opened, holds it (see _holding).

    A page opens SEARCH_OPENED chats at most (and all those of its first owner): when
    that is not enough to tell its owners apart (many chats share the first letters of
    a name), it holds fewer than `limit` profiles, and `next` goes on from there."""
    after = "" if listing.after is None else _decode(listing.after, [chats.c.profile_uuid])[0]
    found: list[str] = []
    spent, cut = 0, None
    while len(found) <= listing.limit:
        values = {"digest": wanted.digest, "after": after, "source": source}
        values["most"] = listing.limit - len(found)  # one more than that, at most
        rows = connection.execute(_digest_owners(wanted.column, source is not None), values)
        candidates = [row.uuid for row in sorted(rows, key=lambda row: row.n)]
        if not candidates:
            break
        told = _holding(connection, keystore, wanted, candidates, SEARCH_OPENED - spent)
        spent += told.opened
        found += [owner for owner in candidates[: told.decided] if owner in told.holding]
        if told.decided < len(candidates):  # what may be opened for a page is spent
            cut = candidates[told.decided - 1]
            break
        after = candidates[-1]
    cursor = None
    if len(found) > listing.limit:
        found = found[: listing.limit]
        cursor = _encode([found[-1]])
    elif cut is not None:
        cursor = _encode([cut])
    items = profiles(connection, found, most, keystore=keystore)
    return schemas.Page[schemas.Profile](items=items, next=cursor)


# Chats a search opens at most for a page (see _owners): some milliseconds' work.
SEARCH_OPENED: Final = 5_000


class _Told(NamedTuple):
    holding: set[str]  # the owners found to hold it
    decided: int  # how many of the owners, from the first, were told apart
    opened: int  # how many chats were opened


def _holding(
    connection: Connection,
    keystore: Keystore,
    wanted: _Wanted,
    owners: Sequence[str],
    budget: int,
) -> _Told:
    """Which of `owners` own a chat of the digest that holds what `wanted` wants: each
    owner's chats of the digest are read in uuid order from the index and opened, first
    one (which holds it all but always), then more at a time, until one holds it or none
    is left. Once `budget` chats are opened, only the first owner is read on: the owners
    told apart are a run from the first."""
    column = chats.c[wanted.column]
    pending = dict.fromkeys(owners, "")  # each owner not told yet, and its last chat read
    holding: set[str] = set()
    opened, chunk = 0, 1
    while pending:
        listed = list(pending.items())
        if opened >= budget:
            if owners[0] not in pending:
                break
            listed = listed[:1]  # the first owner, whatever it takes: each page moves on
        rows: list[Row[Any]] = []
        for at in range(0, len(listed), _OWNERS_AT_ONCE):  # SQLite: 500 parts at most
            parts = [
                select(chats.c.uuid, chats.c.profile_uuid, chats.c[wanted.opened])
                .where(column == wanted.digest, chats.c.profile_uuid == owner)
                .where(chats.c.uuid > last)
                .order_by(chats.c.uuid)  # the index's order: read from it, and cut short
                .limit(chunk)
                .subquery()
                for owner, last in listed[at : at + _OWNERS_AT_ONCE]
            ]
            rows += connection.execute(union_all(*(select(part) for part in parts))).all()
        opened += len(rows)
        sealers = keystore.sealers(connection, {row.uuid for row in rows})
        read: dict[str, list[Row[Any]]] = defaultdict(list)
        for row in rows:
            read[row.profile_uuid].append(row)
        for owner, _ in listed:
            got = sorted(read.get(owner, []), key=lambda row: row.uuid)
            if any(
                (
                    value := personal.opened(
                        sealers.get(row.uuid), wanted.opened, row._mapping[wanted.opened]
                    )
                )
                is not None
                and wanted.holds(value)
                for row in got
            ):
                holding.add(owner)
                del pending[owner]
            elif len(got) < chunk:  # none left: it holds none
                del pending[owner]
            else:
                pending[owner] = got[-1].uuid
        chunk = min(chunk * 8, 512)
    decided = next((n for n, owner in enumerate(owners) if owner in pending), len(owners))
    return _Told(holding, decided, opened)


@cache
def _digest_owners(column: str, of_source: bool) -> Select[Any]:
    """The owners of chats whose `column` is `digest` (of `source`, if `of_source`) after
    `after`, `most` + 1 of them, each numbered `n` in order: one probe of the index each."""
    owner, digest = chats.c.profile_uuid, chats.c[column]

    def least(previous: ColumnElement[Any]) -> Any:
        query = select(func.min(owner)).where(digest == bindparam("digest"), owner > previous)
        if of_source:
            query = query.where(chats.c.source == bindparam("source"))
        return query.scalar_subquery()

    first = select(least(bindparam("after", type_=String())).label("uuid"), literal(1).label("n"))
    owners = first.cte("owners", recursive=True)
    owners = owners.union_all(
        select(least(owners.c.uuid), owners.c.n + 1).where(
            owners.c.uuid.is_not(None), owners.c.n <= bindparam("most", type_=Integer())
        )
    )
    return select(owners).where(owners.c.uuid.is_not(None))


def unowned_chats(
    connection: Connection,
    clock: Clock,
    limit: int,
    *,
    phone: str | None,
    name: str | None,
    keystore: Keystore,
) -> list[schemas.Chat]:
    """Chats no profile owns (their webhooks named none) with this number (E.164) or whose
    name starts with `name`, in uuid order, `limit` at most, among the first SEARCH_OPENED
    of each digest: what a search for profiles cannot find."""
    wanted = [] if phone is None else [_phone_wanted(phone)]
    if name is not None and (by_name := _name_wanted(name)) is not None:
        wanted.append(by_name)
    build = _Chats(connection, keystore, clock)
    found: dict[str, Row[Any]] = {}
    for each in wanted:
        held, after, opened = 0, "", 0
        # The unowned chats of its digest, a page at a time, SEARCH_OPENED at most.
        while held < limit and opened < SEARCH_OPENED:
            of_digest = [chats.c[each.column] == each.digest, chats.c.profile_uuid.is_(None)]
            query = _chats().where(*of_digest, chats.c.uuid > after)
            rows = connection.execute(query.order_by(chats.c.uuid).limit(limit)).all()
            opened += len(rows)
            build.before(rows)
            for row in rows:
                value = personal.opened(
                    build.sealers.get(row.uuid), each.opened, row._mapping[each.opened]
                )
                if value is not None and each.holds(value):
                    found[row.uuid] = row
                    held += 1
            if len(rows) < limit:
                break
            after = rows[-1].uuid
    chosen = [found[uuid] for uuid in sorted(found)[:limit]]
    build.before(chosen)
    return [schemas.Chat.model_validate(build(row)) for row in chosen]


def chat(
    connection: Connection, uuid: str, clock: Clock, *, keystore: Keystore
) -> schemas.Chat | None:
    found = chats_of(connection, [uuid], clock, keystore=keystore)
    return found[0] if found else None


def chats_of(
    connection: Connection, uuids: Sequence[str], clock: Clock, *, keystore: Keystore
) -> list[schemas.Chat]:
    """The chats of `uuids`, in the order asked; unknown ones are left out."""
    found = connection.execute(_chats().where(chats.c.uuid.in_(uuids))).all()
    build = _Chats(connection, keystore, clock)
    build.before(found)
    rows = {row.uuid: row for row in found}
    return [schemas.Chat.model_validate(build(rows[uuid])) for uuid in uuids if uuid in rows]


def team_chats(
    connection: Connection,
    team_id: int,
    state: schemas.SessionState | None,
    clock: Clock,
    listing: Listing,
    source: str | None = None,
    *,
    keystore: Keystore,
) -> schemas.Page[schemas.Chat]:
    """Chats whose active team is `team_id`, optionally only those whose session is open/idle
    or of one source, most recently active first."""
    query = _chats().where(chats.c.team_id == team_id)
    if source is not None:
        query = query.where(chats.c.source == source)
    fresh = sessions.c.last_activity_at > clock.idle_before
    if state == "open":
        # A session's last activity is never after its chat's last_seen_at: the scan of the
        # team's chats, newest first, can stop where they went quiet.
        query = query.where(fresh, chats.c.last_seen_at > clock.idle_before)
    elif state == "idle":
        query = query.where(~fresh)
    order = [chats.c.last_seen_at, chats.c.uuid]
    build = _Chats(connection, keystore, clock)
    return _page(
        connection,
        [query],
        order,
        listing,
        build,
        schemas.Chat,
        descending=True,
        before=build.before,
    )


def _chats() -> Select[Any]:
    """Chats with their latest session, its columns named current_*."""
    current = sessions.c.chat_uuid == chats.c.uuid
    return select(
        chats, *(column.label(f"current_{column.name}") for column in sessions.c)
    ).outerjoin(sessions, and_(current, sessions.c.number == chats.c.session_number))


class _Chats:
    """Builds chats (see _chat) of rows of _chats(): their keys fetched a page at a time."""

    def __init__(self, connection: Connection, keystore: Keystore, clock: Clock) -> None:
        self.connection, self.keystore, self.clock = connection, keystore, clock
        self.sealers: dict[str, personal.Sealer | None] = {}

    def before(self, rows: Sequence[Row[Any]]) -> None:
        self.sealers = self.keystore.sealers(self.connection, {row.uuid for row in rows})

    def __call__(self, row: Row[Any]) -> dict[str, Any]:
        return _chat(row, self.clock, self.sealers.get(row.uuid))


def _chat(row: Row[Any], clock: Clock, sealer: personal.Sealer | None) -> dict[str, Any]:
    """A chat as plain data, for schemas.Chat."""
    team = session = None
    if row.team_id is not None:
        team = dict(id=row.team_id, name=row.team_name)
    operator = _operator(row)
    if row.current_number is not None:
        session = dict(
            number=row.current_number,
            opened_at=utc(row.current_opened_at),
            last_activity_at=utc(row.current_last_activity_at),
            title=personal.opened(sealer, "title", row.current_title),
            context=personal.opened(sealer, "context", row.current_context),
            state=clock.state(row.current_last_activity_at),
        )
    return dict(
        uuid=row.uuid,
        profile_uuid=row.profile_uuid,
        platform=row.platform,
        name=personal.opened(sealer, "name", row.name),
        phone=personal.opened(sealer, "phone", row.phone),
        avatar=personal.opened(sealer, "avatar", row.avatar),
        team=team,
        operator=operator,
        session=session,
        first_seen_at=utc(row.first_seen_at),
        last_seen_at=utc(row.last_seen_at),
        source=row.source,
    )


def _operator(row: Any) -> dict[str, Any] | None:
    """The operator a row names, or None if it names none (a reply without session.operator)."""
    if row.operator_uuid is None and row.operator_name is None and row.operator_avatar is None:
        return None
    return dict(uuid=row.operator_uuid, name=row.operator_name, avatar=row.operator_avatar)


def chat_known(connection: Connection, uuid: str) -> bool:
    """Has any logged event named this chat (of a known type or not)?"""
    return (
        connection.scalar(select(timeline.c.position).where(timeline.c.chat_uuid == uuid).limit(1))
        is not None
    )


def chat_sessions(
    connection: Connection, uuid: str, clock: Clock, listing: Listing
) -> schemas.Page[schemas.Session] | None:
    """A chat's sessions in order; None if no logged event named the chat."""
    if not chat_known(connection, uuid):
        return None
    query = select(sessions).where(sessions.c.chat_uuid == uuid)
    build = partial(_session, clock=clock)
    return _page(connection, [query], [sessions.c.number], listing, build, schemas.Session)


def _session(row: Any, clock: Clock) -> dict[str, Any]:
    return dict(
        number=row.number,
        opened_at=utc(row.opened_at),
        last_activity_at=utc(row.last_activity_at),
        state=clock.state(row.last_activity_at),
        teams=row.teams,
        handoffs=row.handoffs,
        messages_in=row.messages_in,
        messages_out=row.messages_out,
    )


def chat_handoffs(
    connection: Connection, uuid: str, listing: Listing
) -> schemas.Page[schemas.Handoff] | None:
    """A chat's handoffs in time order; None if no logged event named the chat."""
    if not chat_known(connection, uuid):
        return None
    return _handoffs(connection, [select(handoffs).where(handoffs.c.chat_uuid == uuid)], listing)


def team_handoffs(
    connection: Connection,
    listing: Listing,
    team_id: int | None = None,
    since: int | None = None,
    until: int | None = None,
    source: str | None = None,
) -> schemas.Page[schemas.Handoff]:
    """Handoffs across chats, from or to a team, at or after `since` and before `until` (ms),
    of one source or any."""
    query = select(handoffs)
    if source is not None:
        query = query.where(handoffs.c.source == source)
    if since is not None:
        query = query.where(handoffs.c.at >= since)
    if until is not None:
        query = query.where(handoffs.c.at < until)
    if team_id is None:
        return _handoffs(connection, [query], listing)
    # From and to a team are disjoint (a handoff changes team): two index scans, merged.
    sides = [handoffs.c.from_team_id, handoffs.c.to_team_id]
    return _handoffs(connection, [query.where(side == team_id) for side in sides], listing)


def _handoffs(
    connection: Connection, queries: Sequence[Select[Any]], listing: Listing
) -> schemas.Page[schemas.Handoff]:
    order = [handoffs.c.at, handoffs.c.dedupe_key]
    return _page(connection, queries, order, listing, _handoff, schemas.Handoff)


def _handoff(row: Any) -> dict[str, Any]:
    return dict(
        chat_uuid=row.chat_uuid,
        at=utc(row.at),
        session_number=row.session_number,
        from_team=dict(id=row.from_team_id, name=row.from_team_name),
        to_team=dict(id=row.to_team_id, name=row.to_team_name),
        position=row.position,
        source=row.source,
    )


def chat_timeline(
    connection: Connection, uuid: str, listing: Listing, *, keystore: Keystore
) -> schemas.Page[schemas.TimelineItem] | None:
    """A chat's events in time order, where each falls; None if no logged event named it."""
    if not chat_known(connection, uuid):
        return None
    query = select(timeline).where(timeline.c.chat_uuid == uuid)
    order = [timeline.c.occurred_at, timeline.c.rank, timeline.c.dedupe_key]
    sealer: personal.Sealer | None = None

    def before(rows: Sequence[Row[Any]]) -> None:
        nonlocal sealer
        if any(row.message is not None for row in rows):
            sealer = keystore.sealers(connection, [uuid])[uuid]

    def build(row: Row[Any]) -> dict[str, Any]:
        # The message as the JSON text it was kept as: served as it is, whatever its depth.
        text = personal.opened(sealer, "message", row.message)
        return dict(
            position=row.position,
            occurred_at=utc(row.occurred_at),
            event_type=row.event_type,
            kind=row.kind,
            session_number=row.session_number,
            team=None if row.team_id is None else dict(id=row.team_id, name=row.team_name),
            operator=_operator(row) if row.event_type == OPERATOR_REPLIED else None,
            message=None if text is None else schemas.RawJSON.of(text),
        )

    return _page(connection, [query], order, listing, build, schemas.TimelineItem, before=before)


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
    rows, more = log.page(
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
    rows = log.read(connection, after=position - 1, limit=1)
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
    head = log.head(connection)
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
    head = log.head(connection)
    rows, more = log.page(connection, after=after, limit=limit, max_bytes=PAGE_BYTES)
    chosen = [row for row in rows if wanted(row)]
    items = _events(connection, keystore, chosen) if chosen else []
    last = rows[-1].position if rows else after
    return Tail(items, last if more else max(head, last), more), len(rows)


UNREADABLE_NO_KEY: Final = "its key is not in the keystore, and no erasure destroyed it"
UNREADABLE_BROKEN: Final = "its key does not open it: the sealed copy was changed"


def _events(connection: Connection, keystore: Keystore, rows: Sequence[Any]) -> list[schemas.Event]:
    """The events of log rows, each body opened with its key; one whose key is gone, told
    apart as erased or as unreadable (see schemas.Event)."""
    bodies = log.bodies(rows, keys(connection, keystore))
    gone = {
        _subject(row)
        for row, (_, opened) in zip(rows, bodies, strict=True)
        if opened is log.Opened.KEY_GONE
    }
    erased = keystore.erased(connection, gone)
    items = []
    for row, (body, opened) in zip(rows, bodies, strict=True):
        unreadable = None
        if opened is log.Opened.BROKEN:
            unreadable = UNREADABLE_BROKEN
        elif opened is log.Opened.KEY_GONE and _subject(row) not in erased:
            unreadable = UNREADABLE_NO_KEY
        erased_here = opened is log.Opened.KEY_GONE and unreadable is None
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
    for chunk in log.chunks(connection):
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
        body=schemas.RawJSON.of(body),
        erased=erased,
        unreadable=unreadable,
        hash=row.hash,
    )


def refused(
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
            schemas.Rejected(**_refusal(row), headers=row.headers, body=text, body_base64=encoded)
        )
    return schemas.RejectedPage(items=items, next_after=items[-1].id if more else None)


def latest_refused(connection: Connection, limit: int) -> list[schemas.Refusal]:
    """The latest deliveries refused as bad input, newest first, without their bodies."""
    query = select(*(column for column in models.rejected.c if column.name != "body"))
    rows = connection.execute(query.order_by(models.rejected.c.id.desc()).limit(limit))
    return [schemas.Refusal(**_refusal(row)) for row in rows]


def _refusal(row: Any) -> dict[str, Any]:
    """What a refused delivery's row says of it, its body and headers aside."""
    return dict(
        id=row.id,
        received_at=utc(row.received_at),
        source=row.source,
        status=row.status,
        reason=row.reason,
        size=row.size,
    )


def sources(connection: Connection) -> list[schemas.Source]:
    """Every source of webhooks; never its secret."""
    return [
        schemas.Source(
            name=info.name,
            created_at=utc(info.created_at),
            signed=info.signed,
            previous_valid_until=_instant(info.previous_until),
        )
        for info in credentials.list_sources(connection)
    ]


def counts(connection: Connection) -> dict[str, int]:
    """How many rows the log and each read model hold."""
    statements = {
        "events": select(func.count()).select_from(models.events),
        "profiles": select(func.count(func.distinct(profile_chats.c.profile_uuid))),
        "chats": select(func.count()).select_from(chats),
        "sessions": select(func.count()).select_from(sessions),
        "handoffs": select(func.count()).select_from(handoffs),
        "teams": select(func.count()).select_from(teams),
        "erased profiles": select(func.count()).select_from(models.erasures),
        # Begun and not ended (see cdp.erasure): the next start or cdp erase finishes them.
        "erasures under way": select(
            func.count(func.distinct(models.pending_erasures.c.profile_uuid))
        ),
        "webhooks refused as suppressed": select(
            func.coalesce(func.sum(models.erasures.c.refused), 0)
        ),
    }
    return {name: connection.scalar(statement) or 0 for name, statement in statements.items()}


def known_teams(connection: Connection, source: str | None = None) -> list[schemas.KnownTeam]:
    """Every team the events named (of one source, or of every one), by id."""
    query = select(teams).order_by(teams.c.id, teams.c.source)
    if source is not None:
        query = query.where(teams.c.source == source)
    return [
        schemas.KnownTeam(
            id=row.id,
            name=row.name,
            source=row.source,
            first_seen_at=utc(row.first_seen_at),
            last_seen_at=utc(row.last_seen_at),
        )
        for row in connection.execute(query)
    ]


@dataclass(frozen=True, slots=True)
class Period:
    """At or after `since`, before `until` (ms), of one source or of any: what statistics count."""

    since: int | None = None
    until: int | None = None
    source: str | None = None

    def of(self, at: ColumnElement[Any], source: ColumnElement[Any]) -> list[ColumnElement[bool]]:
        """The conditions that keep what happened (`at`, of `source`) in the period."""
        found = []
        if self.since is not None:
            found.append(at >= self.since)
        if self.until is not None:
            found.append(at < self.until)
        if self.source is not None:
            found.append(source == self.source)
        return found


_IN_CHATS: Final = timeline.join(chats, chats.c.uuid == timeline.c.chat_uuid)


def _timeline(period: "Period") -> Any:
    """The timeline, joined to its chats when `period` keeps one source: a row's is its chat's."""
    return timeline if period.source is None else _IN_CHATS


def _count(*conditions: ColumnElement[bool], table: Any) -> Any:
    return select(func.count()).select_from(table).where(*conditions).scalar_subquery()


def team_stats(connection: Connection, team_id: int, period: Period) -> schemas.TeamStats | None:
    """A team's figures for `period` (see schemas.TeamStats); None if no event named it."""
    named = select(teams).where(teams.c.id == team_id).order_by(teams.c.named_at.desc())
    if period.source is not None:
        named = named.where(teams.c.source == period.source)
    team = connection.execute(named.limit(1)).first()
    if team is None:
        return None
    turns = _turns(team_id, period)

    def said(kind: str) -> Any:
        kept = period.of(timeline.c.occurred_at, chats.c.source)
        conditions = (timeline.c.team_id == team_id, timeline.c.kind == kind, *kept)
        return _count(*conditions, table=_timeline(period))

    # The team's turns, read once (the index holds what is counted).
    counted = (
        select(
            func.count().filter(waits.c.started_by == "opening").label("opened"),
            func.count().filter(waits.c.started_by == "handoff").label("handed_in"),
            func.count().filter(waits.c.replied_at.is_(None)).label("unanswered"),
        )
        .where(*turns)
        .subquery()
    )
    figures = connection.execute(
        select(
            counted.c.opened,
            counted.c.handed_in,
            counted.c.unanswered,
            _count(
                handoffs.c.from_team_id == team_id,
                *period.of(handoffs.c.at, handoffs.c.source),
                table=handoffs,
            ).label("handed_out"),
            said("message_in").label("messages"),
            said("operator_reply").label("replies"),
        )
    ).one()
    return schemas.TeamStats(
        team=schemas.Team(id=team.id, name=team.name),
        since=_instant(period.since),
        until=_instant(period.until),
        sessions_opened=figures.opened,
        handoffs_in=figures.handed_in,
        handoffs_out=figures.handed_out,
        customer_messages=figures.messages,
        operator_replies=figures.replies,
        first_response=_first_responses(connection, turns),
        unanswered=figures.unanswered,
    )


def _turns(team_id: int, period: Period) -> list[ColumnElement[bool]]:
    """The team's turns that began in `period`: the waits its statistics count."""
    return [waits.c.team_id == team_id, *period.of(waits.c.started_at, waits.c.source)]


def operator_stats(
    connection: Connection, uuid: str, period: Period
) -> schemas.OperatorStats | None:
    """An operator's figures for `period` (see schemas.OperatorStats); None if no reply of
    theirs was logged."""
    replies = [timeline.c.operator_uuid == uuid, timeline.c.kind == "operator_reply"]
    latest = (
        select(timeline.c.operator_name, timeline.c.operator_avatar)
        .select_from(_IN_CHATS)
        .where(*replies, *Period(source=period.source).of(timeline.c.occurred_at, chats.c.source))
        .order_by(timeline.c.occurred_at.desc(), timeline.c.position.desc())
        .limit(1)
    )
    operator = connection.execute(latest).first()
    if operator is None:
        return None
    kept = period.of(timeline.c.occurred_at, chats.c.source)
    table = _timeline(period)
    sessions_replied = (
        select(timeline.c.chat_uuid, timeline.c.session_number)
        .select_from(table)
        .where(*replies, *kept)
        .distinct()
        .subquery()
    )
    answered = [waits.c.replied_by == uuid, *period.of(waits.c.started_at, waits.c.source)]
    figures = connection.execute(
        select(
            select(func.count()).select_from(sessions_replied).scalar_subquery().label("sessions"),
            _count(*replies, *kept, table=table).label("replies"),
            _count(
                waits.c.last_operator_uuid == uuid,
                waits.c.handed_off_at.is_not(None),
                *period.of(waits.c.handed_off_at, waits.c.source),
                table=waits,
            ).label("handed_out"),
        )
    ).one()
    return schemas.OperatorStats(
        operator=schemas.Operator(
            uuid=uuid, name=operator.operator_name, avatar=operator.operator_avatar
        ),
        since=_instant(period.since),
        until=_instant(period.until),
        sessions=figures.sessions,
        operator_replies=figures.replies,
        handoffs_out=figures.handed_out,
        first_response=_first_responses(connection, answered),
    )


# The bands of first responses (see schemas.Band), in seconds.
BANDS: Final = (60, 300, 900, 3600, 14400)


def _first_responses(
    connection: Connection, conditions: Sequence[ColumnElement[bool]]
) -> schemas.FirstResponses:
    """The waits kept by `conditions` that got a reply: how many, the median and 90th
    percentile of their length, interpolated between the two nearest (percentile_cont),
    and how many fell in each band."""
    waited = waits.c.replied_at - waits.c.started_at
    answered = [*conditions, waits.c.replied_at.is_not(None)]
    if connection.dialect.name == "postgresql":
        found = connection.execute(
            select(
                func.count(),
                func.percentile_cont(0.5).within_group(waited),
                func.percentile_cont(0.9).within_group(waited),
                *(func.count().filter(waited < bound * 1000) for bound in BANDS),
            ).where(*answered)
        ).one()
        count, median, p90, *below = found
    else:  # SQLite has no percentile_cont: the lengths, in one pass, sorted here
        lengths = sorted(connection.scalars(select(waited).where(*answered)))
        count, median, p90 = len(lengths), _percentile(lengths, 0.5), _percentile(lengths, 0.9)
        below = [bisect_left(lengths, bound * 1000) for bound in BANDS]
    within = [*below, count]
    return schemas.FirstResponses(
        answered=count,
        median_seconds=None if median is None else round(median / 1000, 3),
        p90_seconds=None if p90 is None else round(p90 / 1000, 3),
        bands=[
            schemas.Band(below_seconds=bound, answered=within[n] - (within[n - 1] if n else 0))
            for n, bound in enumerate([*BANDS, None])
        ],
    )


def _percentile(ordered: Sequence[int], fraction: float) -> float | None:
    """As PostgreSQL's percentile_cont: interpolated between the two nearest of `ordered`."""
    if not ordered:
        return None
    at = fraction * (len(ordered) - 1)
    below = int(at)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (at - below)


def _instant(ms: int | None) -> datetime | None:
    return None if ms is None else utc(ms)


def latest_sessions(
    connection: Connection, uuids: Sequence[str], clock: Clock, count: int
) -> dict[str, list[schemas.Session]]:
    """The `count` latest sessions of each chat, newest first."""
    recency = (
        func.row_number()
        .over(partition_by=sessions.c.chat_uuid, order_by=sessions.c.number.desc())
        .label("recency")
    )
    ranked = select(sessions, recency).where(sessions.c.chat_uuid.in_(uuids)).subquery()
    query = (
        select(ranked)
        .where(ranked.c.recency <= count)
        .order_by(ranked.c.chat_uuid, ranked.c.number.desc())
    )
    found: dict[str, list[schemas.Session]] = {uuid: [] for uuid in uuids}
    for row in connection.execute(query):
        found[row.chat_uuid].append(schemas.Session.model_validate(_session(row, clock)))
    return found


def session_operators(
    connection: Connection, uuid: str, numbers: Sequence[int]
) -> dict[int, list[schemas.Operator]]:
    """Who replied in each of a chat's sessions `numbers`, in the order of their first
    reply: the operators the webhooks named (assigning one sends none)."""
    if not numbers:
        return {}
    opened = select(func.min(sessions.c.opened_at)).where(
        sessions.c.chat_uuid == uuid, sessions.c.number.in_(numbers)
    )
    query = (
        select(
            timeline.c.session_number,
            timeline.c.operator_uuid,
            timeline.c.operator_name,
            timeline.c.operator_avatar,
        )
        .where(
            timeline.c.chat_uuid == uuid,
            timeline.c.occurred_at >= opened.scalar_subquery(),
            timeline.c.kind == "operator_reply",
            timeline.c.session_number.in_(numbers),
        )
        .order_by(timeline.c.occurred_at, timeline.c.rank, timeline.c.dedupe_key)
    )
    found: dict[int, dict[str | None, schemas.Operator]] = defaultdict(dict)
    for row in connection.execute(query):
        operator = _operator(row)
        if operator is not None:
            found[row.session_number].setdefault(
                row.operator_uuid or row.operator_name, schemas.Operator(**operator)
            )
    return {number: list(operators.values()) for number, operators in found.items()}


def chat_turns(connection: Connection, uuid: str, numbers: Sequence[int]) -> list[schemas.Turn]:
    """A chat's turns in its sessions `numbers`, in order: each team's wait for a first reply."""
    if not numbers:
        return []
    query = (
        select(waits)
        .where(waits.c.chat_uuid == uuid, waits.c.session_number.in_(numbers))
        .order_by(waits.c.session_number, waits.c.ordinal)
    )
    return [
        schemas.Turn(
            position=row.position,
            session_number=row.session_number,
            ordinal=row.ordinal,
            team_id=row.team_id,
            started_at=utc(row.started_at),
            started_by=row.started_by,
            replied_at=_instant(row.replied_at),
            replied_by=row.replied_by,
        )
        for row in connection.execute(query)
    ]


def handoffs_at(connection: Connection, positions: Sequence[int]) -> dict[int, schemas.Handoff]:
    """The handoffs logged at `positions`, by position."""
    if not positions:
        return {}
    rows = connection.execute(select(handoffs).where(handoffs.c.position.in_(positions)))
    return {row.position: schemas.Handoff.model_validate(_handoff(row)) for row in rows}


def team_names(connection: Connection, ids: Sequence[int]) -> dict[int, str | None]:
    """The latest name of each team of `ids` that the events named, in any source."""
    if not ids:
        return {}
    query = select(teams.c.id, teams.c.name).where(teams.c.id.in_(ids)).order_by(teams.c.named_at)
    return {row.id: row.name for row in connection.execute(query)}
