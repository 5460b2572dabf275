"""Reads of profiles: one, a page of them, their chats, and searches by phone and name."""

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Final, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Row,
    Select,
    String,
    bindparam,
    func,
    literal,
    select,
    true,
    union_all,
)

from cdp import db
from cdp.conversations import schemas as conversations_schemas
from cdp.conversations.queries import ChatAnswers, chat_rows
from cdp.conversations.tables import chats
from cdp.http import schemas as http_schemas
from cdp.paging import BeingErased, Clock, Listing, decode_cursor, encode_cursor, paged
from cdp.privacy import erasure, personal
from cdp.privacy.keystore import Keystore
from cdp.profiles import names, phones, schemas
from cdp.profiles.names import fold_name
from cdp.profiles.tables import profile_chats
from cdp.times import utc

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
            cursor = encode_cursor([shown[-1].first_seen_at, shown[-1].uuid])
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
) -> http_schemas.Page[schemas.ProfileChat] | None:
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

    page = paged(connection, [query], order, listing, build, schemas.ProfileChat, before=before)
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
) -> http_schemas.Page[schemas.Profile]:
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
) -> http_schemas.Page[schemas.Profile]:
    """Profiles owning a chat whose name starts with `text`, both folded alike (see
    cdp.profiles.names), of one source or any, in uuid order, each with its first `most` chats. A
    prefix of the whole name, not of any word in it, of names.PREFIX characters at least
    (a shorter text finds only names that short); a text that folds to nothing finds none."""
    wanted = _name_wanted(text)
    if wanted is None:
        return http_schemas.Page[schemas.Profile](items=[], next=None)
    return _owners(connection, keystore, wanted, listing, source, most)


@dataclass(frozen=True, slots=True)
class _Wanted:
    """What a search looks chats up by: a digest (`column` is `digest`), then what the
    chat's sealed `opened` column must hold, once opened (see cdp.profiles.names,
    cdp.profiles.phones)."""

    column: str
    digest: int | None
    opened: str
    holds: Callable[[str], bool]


def _phone_wanted(number: str) -> _Wanted:
    return _Wanted("phone_digest", phones.digest(number), "phone_e164", number.__eq__)


def _name_wanted(text: str) -> _Wanted | None:
    prefix = fold_name(text)
    if prefix is None:
        return None

    def holds(name: str) -> bool:
        return (fold_name(name) or "").startswith(prefix)

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
) -> http_schemas.Page[schemas.Profile]:
    """Profiles owning a chat that holds what `wanted` wants, of one source or any, in uuid
    order: the owners of chats of its digest, each read as the least after the one before
    from the digest's index (a profile that owns a hundred thousand chats of a number
    costs one probe of it, not a hundred thousand rows), then kept if one of their chats
    of the digest, opened, holds it (see _holding).

    A page opens SEARCH_OPENED chats at most (and all those of its first owner): when
    that is not enough to tell its owners apart (many chats share the first letters of
    a name), it holds fewer than `limit` profiles, and `next` goes on from there."""
    after = "" if listing.after is None else decode_cursor(listing.after, [chats.c.profile_uuid])[0]
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
        cursor = encode_cursor([found[-1]])
    elif cut is not None:
        cursor = encode_cursor([cut])
    items = profiles(connection, found, most, keystore=keystore)
    return http_schemas.Page[schemas.Profile](items=items, next=cursor)


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
) -> list[conversations_schemas.Chat]:
    """Chats no profile owns (their webhooks named none) with this number (E.164) or whose
    name starts with `name`, in uuid order, `limit` at most, among the first SEARCH_OPENED
    of each digest: what a search for profiles cannot find."""
    wanted = [] if phone is None else [_phone_wanted(phone)]
    if name is not None and (by_name := _name_wanted(name)) is not None:
        wanted.append(by_name)
    build = ChatAnswers(connection, keystore, clock)
    found: dict[str, Row[Any]] = {}
    for each in wanted:
        held, after, opened = 0, "", 0
        # The unowned chats of its digest, a page at a time, SEARCH_OPENED at most.
        while held < limit and opened < SEARCH_OPENED:
            of_digest = [chats.c[each.column] == each.digest, chats.c.profile_uuid.is_(None)]
            query = chat_rows().where(*of_digest, chats.c.uuid > after)
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
    return [conversations_schemas.Chat.model_validate(build(row)) for row in chosen]
