"""Erasure on request: a customer's personal data made unreadable everywhere by destroying
the keys it is sealed with (see cdp.privacy.personal), the log's rows left as they are.

What the read models held of the customer is folded again from the log, which now gives
only the fields that are no personal data: the same result a rebuild gives. Deliveries
refused and kept as they came that name the customer are forgotten.

A profile may own any number of chats, so an erasure works in steps, each a transaction
under the append lock that webhooks wait for: the first records the erasure, destroys the
profile's own key and lists its chats as pending (`pending_erasures`); each next one takes
a few of those chats, destroys their keys and folds them again, and crosses them off. A
chat is thus erased whole in one step, its keys and its rows together, never half; while
any chat is pending the profile is being erased, and reads of it say so (see
queries.BeingErased). An erasure stopped midway (a crash, a lost connection) is finished
by the next attempt, by the next start of the server, or by `cdp erase --reconcile`.
"""

import logging
import time
from bisect import bisect_right
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Final

from sqlalchemy import (
    ClauseElement,
    Connection,
    Engine,
    String,
    bindparam,
    delete,
    func,
    select,
    true,
    union,
)
from sqlalchemy.dialects import postgresql, sqlite

from cdp import db
from cdp.log import rejected as rejected_rows
from cdp.log import store
from cdp.log.rejected import Unreadable, folded, mentioned
from cdp.log.rejected import texts as readable
from cdp.log.tables import events, rejected
from cdp.log.webhook import Suppressed
from cdp.privacy import personal
from cdp.privacy.keystore import Keystore
from cdp.privacy.tables import erasures, pending_erasures
from cdp.profiles.tables import profile_chats
from cdp.projections.runner import Projector, following, refold
from cdp.times import now_ms

logger = logging.getLogger("cdp.erasure")

# A step folds this many events again at most (and one chat at least, however long), of
# this many chats at most: some tens of milliseconds, that webhooks wait for.
STEP_EVENTS = 1_000
STEP_CHATS = 200
# Chats an erasure lists as pending a transaction (see _list).
LIST_AT_ONCE = 10_000
# Keys wrapped anew under their bucket's next generation a transaction (see rotate).
ROTATE_KEYS = 500

# Called between two steps, so that webhooks waiting for the append lock get it first.
Between = Callable[[], None]
# SQLite: how long a step waits before the next, for another process's webhooks (its busy
# handler looks for the write lock again every 100 ms at most); PostgreSQL queues them.
_PAUSE: Final = 0.1


def pause(engine: Engine) -> Between | None:
    """What to call between two steps when the webhooks to let in are another process's."""
    return partial(time.sleep, _PAUSE) if engine.dialect.name == "sqlite" else None


@dataclass(frozen=True, slots=True)
class Erased:
    profile_uuid: str
    erased_at: int
    chats: list[str]
    keys_destroyed: int
    suppressed: bool


def erase(
    engine: Engine,
    keystore: Keystore,
    projectors: Sequence[Projector],
    profile_uuid: str,
    *,
    suppress: bool = False,
    between: Between | None = None,
) -> Erased:
    """Destroy the keys of a profile and of every chat it was named on, and fold those
    chats again, in steps (see above). Erasing again is harmless, and finishes an erasure
    stopped midway; a profile no event names yet can be erased (with `suppress`, before
    its first webhook)."""
    with engine.connect() as connection:  # every chat named so far: not under the lock
        head = store.head(connection)
        seen = _chats_of(connection, profile_uuid)
    with db.writing(engine) as connection:
        store.lock(connection)  # no webhook is sealed with a key while it is destroyed
        erased_at = now_ms()
        named_since = _chats_named_since(connection, profile_uuid, head)
        chats = sorted({*seen, *named_since}) if named_since else seen
        profile = [personal.of_profile(profile_uuid)]
        destroyed = keystore.destroy(
            connection, profile_uuid, profile, erased_at, suppress=suppress
        )
        suppressed = _record(connection, profile_uuid, erased_at, chats, suppress)
    destroyed += _finish(engine, keystore, projectors, profile_uuid, between)
    return Erased(profile_uuid, erased_at, chats, destroyed, suppressed)


def _finish(
    engine: Engine,
    keystore: Keystore,
    projectors: Sequence[Projector],
    profile_uuid: str,
    between: Between | None,
) -> int:
    """Take the profile's pending chats, a step at a time, until none is left; then (in the
    last step) forget the rejected deliveries that name the profile or its chats. How many
    keys were destroyed. Several processes may finish one erasure at once: each step takes
    what is pending once it holds the lock."""
    with engine.connect() as connection:
        chats = _erased_chats(connection, profile_uuid)
        listed = connection.scalar(_LISTED, {"profile": profile_uuid})
    _list(engine, profile_uuid, chats, after=listed, between=between)
    ids = {profile_uuid, *chats}
    with engine.connect() as connection:  # a scan of every kept delivery: not under the lock
        doomed, scanned = _refused_naming(connection, keystore, ids)
    destroyed = 0
    while True:
        with db.writing(engine) as connection:
            store.lock(connection)
            erased_at, suppressed = _erasure(connection, profile_uuid)
            chats = _next_step(connection, profile_uuid)
            subjects = [personal.of_chat(chat) for chat in chats]
            if subjects:
                destroyed += keystore.destroy(
                    connection,
                    profile_uuid,
                    subjects,
                    erased_at,
                    suppress=suppressed,
                    made_by=erased_at,
                )
                refold(
                    connection, following(connection, projectors), keystore, chats, tables=db.LIVE
                )
                # The first pending in their order: none pending comes before the last.
                _DONE.run(connection, [{"profile": profile_uuid, "last": chats[-1]}])
            rejected_rows.drop(connection, doomed, keystore)
            doomed = []
            last = not pending(connection, [profile_uuid])
            if last:  # and those kept since the scan
                later = _refused_naming(connection, keystore, ids, after=scanned)[0]
                rejected_rows.drop(connection, later, keystore)
        if last:
            rotate(engine, keystore, between)
            # SQLite: the pages the read models had of the customer, in no file any more
            # (deleted rows are zeroed in the database file: see db.make_engine).
            if not db.empty_log(engine):
                logger.info(
                    "the database's log was not emptied after an erasure: a reader was in the way"
                )
            return destroyed
        if between is not None:
            between()


def rotate(engine: Engine, keystore: Keystore, between: Between | None = None) -> int:
    """Move every bucket an erasure destroyed a key of to its next key-encryption key (see
    Keystore.rotate): a step of at most ROTATE_KEYS keys a transaction under the
    append lock, and once every key of a bucket is wrapped anew, its last KEK overwritten
    in the key file; then a keystore of its own on SQLite empties its write-ahead log.
    How many buckets moved. An erasure returns only after this; one stopped before it is
    finished by the next start or attempt."""
    moved = 0
    while True:
        with db.writing(engine) as connection:
            store.lock(connection)
            step = keystore.rotate(connection, ROTATE_KEYS)
        keystore.advance(engine, step.done)
        moved += len(step.done)
        if not step.more:
            break
        if between is not None:
            between()
    if moved:
        keystore.checkpoint()
    return moved


def _next_step(connection: Connection, profile_uuid: str) -> list[str]:
    """The profile's next pending chats: STEP_CHATS at most, and no more events than
    STEP_EVENTS between them (the first chat whatever its events)."""
    taken: list[str] = []
    events_taken = 0
    for row in _NEXT.rows(connection, {"profile": profile_uuid, "most": STEP_CHATS}):
        events_taken += row["events"]
        if taken and events_taken > STEP_EVENTS:
            break
        taken.append(row["chat_uuid"])
    return taken


_NEXT: Final = db.Prepared(
    select(
        pending_erasures.c.chat_uuid,
        select(func.count())
        .where(events.c.chat_uuid == pending_erasures.c.chat_uuid)
        .scalar_subquery()
        .label("events"),
    )
    .where(pending_erasures.c.profile_uuid == bindparam("profile"))
    .order_by(pending_erasures.c.chat_uuid)
    .limit(bindparam("most"))
)
_DONE: Final = db.Prepared(
    delete(pending_erasures).where(
        pending_erasures.c.profile_uuid == bindparam("profile"),
        pending_erasures.c.chat_uuid <= bindparam("last"),
    )
)


def _list(
    engine: Engine,
    profile_uuid: str,
    chats: Sequence[str],
    *,
    after: str | None,
    between: Between | None,
) -> None:
    """List as pending the erasure's `chats` (in their order) after `after`, the last one
    listed (None: none is, and the erasure is over), a transaction LIST_AT_ONCE at a time,
    `between` called after each.

    The first transaction of an erasure lists the first of them: from then on the profile
    is being erased, and what is pending tells how far listing got, since no step begins
    before the listing is done."""
    if after is None:
        return
    rest = chats[bisect_right(chats, after) :]
    for at in range(0, len(rest), LIST_AT_ONCE):
        with db.writing(engine) as connection:
            _pend(connection, profile_uuid, rest[at : at + LIST_AT_ONCE])
        if between is not None:
            between()


_LISTED: Final = select(func.max(pending_erasures.c.chat_uuid)).where(
    pending_erasures.c.profile_uuid == bindparam("profile")
)


def _pend(connection: Connection, profile_uuid: str, chats: Collection[str]) -> None:
    """List `chats` as pending for the profile's erasure (those pending already stay)."""
    if chats:
        rows = [{"chat": chat} for chat in chats]
        _PEND.run(connection, [{"profile": profile_uuid, "chats": rows}])


def _pend_of(dialect: str) -> ClauseElement:
    given = db.records("chats", dialect, {"chat": String()})
    # WHERE true: SQLite would read the ON of ON CONFLICT as a join's.
    chats = select(bindparam("profile", type_=String()), given.c.chat).where(true())
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    into = insert(pending_erasures).from_select(["profile_uuid", "chat_uuid"], chats)
    return into.on_conflict_do_nothing()


_PEND: Final = db.Prepared(_pend_of)


def pending(connection: Connection, profiles: Sequence[str]) -> set[str]:
    """Those of `profiles` being erased: an erasure of each has begun and not ended."""
    if not profiles:
        return set()
    values = {"profiles": [{"uuid": uuid} for uuid in profiles]}
    return {row["uuid"] for row in _PENDING.rows(connection, values)}


def _pending_of(dialect: str) -> ClauseElement:
    given = db.records("profiles", dialect, {"uuid": String()})
    anyone = select(pending_erasures.c.chat_uuid).where(
        pending_erasures.c.profile_uuid == given.c.uuid
    )
    return select(given.c.uuid).where(anyone.exists())


_PENDING: Final = db.Prepared(_pending_of)


def _erasure(connection: Connection, profile_uuid: str) -> tuple[int, bool]:
    """When the profile's erasure was recorded, and whether it suppresses."""
    row = connection.execute(
        select(erasures.c.erased_at, erasures.c.suppressed).where(
            erasures.c.profile_uuid == profile_uuid
        )
    ).one()
    return row.erased_at, row.suppressed


def _erased_chats(connection: Connection, profile_uuid: str) -> list[str]:
    """The chats the profile's erasure records, in their order."""
    found = connection.scalar(
        select(erasures.c.chats).where(erasures.c.profile_uuid == profile_uuid)
    )
    return sorted(found or [])


def _chats_named_since(connection: Connection, profile_uuid: str, head: int) -> list[str]:
    """The chats that events after position `head` name together with the profile."""
    query = select(events.c.chat_uuid).where(
        events.c.profile_uuid == profile_uuid,
        events.c.position > head,
        events.c.chat_uuid.is_not(None),
    )
    return list(connection.scalars(query.distinct()))


def _refused_naming(
    connection: Connection, keystore: Keystore, ids: set[str], *, after: int = 0
) -> tuple[list[int], int]:
    """The rejected deliveries kept after id `after` that name any of `ids` (a profile's and
    its chats') anywhere in them, in any form a person would take for the id (see
    rejected.mentioned): they are kept as they came, personal data and all (sealed, see
    cdp.log.rejected). One whose body cannot be read (kept by an older version, compressed or
    in another charset) may name anyone: it is among them. And the last id scanned. A scan
    of every kept delivery, since they may not even be JSON; they are few, and kept a while
    only. Those refused because the customer was suppressed (410) hold no personal data
    and stay."""
    found: list[int] = []
    last = after
    wanted = {folded(uuid) for uuid in ids}
    query = select(rejected.c.id, rejected.c.body, rejected.c.key_id, rejected.c.headers)
    query = query.where(rejected.c.status != Suppressed.status).order_by(rejected.c.id)
    while True:
        rows = connection.execute(query.where(rejected.c.id > last).limit(500)).all()
        if not rows:
            return found, last
        last = rows[-1].id
        for row, body in zip(rows, rejected_rows.bodies(connection, keystore, rows), strict=True):
            try:
                if body is None:
                    raise Unreadable("its key is gone")
                texts = readable(body, row.headers or {})
            except Unreadable:
                found.append(row.id)
                continue
            if mentioned(texts) & wanted:
                found.append(row.id)


def _chats_of(connection: Connection, profile_uuid: str) -> list[str]:
    """Every chat an event names together with the profile."""
    logged = select(events.c.chat_uuid).where(
        events.c.profile_uuid == profile_uuid, events.c.chat_uuid.is_not(None)
    )
    projected = select(profile_chats.c.chat_uuid).where(
        profile_chats.c.profile_uuid == profile_uuid
    )
    return sorted(chat for (chat,) in connection.execute(union(logged, projected)))


def _record(
    connection: Connection, profile_uuid: str, erased_at: int, chats: list[str], suppress: bool
) -> bool:
    """Keep the erasure in the main database (and whether it suppresses), and list the first
    of its `chats` (given in their order) as pending (see _list): whether it suppresses."""
    before = connection.execute(
        select(erasures.c.suppressed, erasures.c.refused, erasures.c.chats).where(
            erasures.c.profile_uuid == profile_uuid
        )
    ).first()
    suppressed = suppress or (before is not None and before.suppressed)
    connection.execute(delete(erasures).where(erasures.c.profile_uuid == profile_uuid))
    every = sorted({*chats, *before.chats}) if before else chats
    row = {
        "profile_uuid": profile_uuid,
        "erased_at": erased_at,
        "suppressed": suppressed,
        "chats": every,
        "refused": before.refused if before else 0,
    }
    db.insert(connection, erasures, [row])
    # Listed anew from the first (the rest after this transaction, see _list): an erasure
    # asked for again reaches every chat again.
    connection.execute(
        delete(pending_erasures).where(pending_erasures.c.profile_uuid == profile_uuid)
    )
    _pend(connection, profile_uuid, every[:1])
    return suppressed


@dataclass(frozen=True, slots=True)
class Reconciled:
    moved: int  # keys and erasure records moved from the main database to the keystore
    applied: list[str]  # profiles the main database had not yet erased
    reapplied: list[str]  # profiles whose keys the keystore held again
    finished: list[str]  # profiles whose erasure had stopped midway


def reconcile(
    engine: Engine,
    keystore: Keystore,
    projectors: Sequence[Projector],
    between: Between | None = None,
) -> Reconciled:
    """Make the main database and the keystore agree on every erasure, after either was
    restored from a backup taken before it, or a failure between their commits; and
    finish every erasure stopped midway.

    A profile the keystore records as erased but the main database does not is folded
    again; one the main database records but the keystore does not has its keys
    destroyed again: in steps, as an erasure. Run at every start of the server, and by
    `cdp erase --reconcile`."""
    with db.writing(engine) as connection:
        store.lock(connection)
        keystore.check(connection)
        moved = keystore.adopt(connection)
        kept = keystore.erasures(connection)
        recorded = {row.profile_uuid: row for row in connection.execute(select(erasures))}
        stopped = _stopped(connection)
    applied = [
        profile
        for profile, (at, _, _) in kept.items()
        if profile not in recorded or recorded[profile].erased_at < at
    ]
    reapplied = [
        profile
        for profile, row in recorded.items()
        if profile not in kept or kept[profile][0] < row.erased_at
    ]
    for profile in applied:
        at, suppressed, subjects = kept[profile]
        chats = {chat for s in subjects if (chat := personal.chat_of(s)) is not None}
        with engine.connect() as connection:
            # And those it names now: only their keys made by then are destroyed.
            listed = sorted({*chats, *_chats_of(connection, profile)})
        with db.writing(engine) as connection:
            store.lock(connection)
            # Keys the main database brought back, restored from before: gone again.
            keystore.destroy(
                connection,
                profile,
                [personal.of_profile(profile)],
                at,
                suppress=suppressed,
                made_by=at,
            )
            _record(connection, profile, at, listed, suppressed)
    for profile in reapplied:
        row = recorded[profile]
        with db.writing(engine) as connection:
            store.lock(connection)
            keystore.destroy(
                connection,
                profile,
                [personal.of_profile(profile)],
                row.erased_at,
                suppress=row.suppressed,
                made_by=row.erased_at,
            )
            _pend(connection, profile, sorted(row.chats)[:1])  # the rest: see _list
    for profile in sorted({*applied, *reapplied, *stopped}):
        _finish(engine, keystore, projectors, profile, between)
    rotate(engine, keystore, between)  # stopped between its last step and the end
    finished = sorted(set(stopped) - {*applied, *reapplied})
    return Reconciled(moved, applied, reapplied, finished)


def _stopped(connection: Connection) -> list[str]:
    """The profiles whose erasure has chats still pending."""
    query = select(pending_erasures.c.profile_uuid).distinct()
    return list(connection.scalars(query))
