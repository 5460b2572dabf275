"""Erasure on request: a customer's personal data made unreadable everywhere by destroying
the keys it is sealed with (see cdp.personal), the log's rows left as they are.

What the read models held of the customer is folded again from the log, which now gives
only the fields that are no personal data: the same result a rebuild gives. Deliveries
refused and kept as they came that name the customer are forgotten.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, delete, select, union

from cdp import db, log, personal
from cdp.keystore import Keystore
from cdp.models import erasures, events, profile_chats, rejected
from cdp.projectors import Projector, refold
from cdp.times import now_ms
from cdp.webhook import Suppressed, logged


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
) -> Erased:
    """Destroy the keys of a profile and of every chat it was named on, and fold those
    chats again. Erasing again is harmless; a profile no event names yet can be erased
    (with `suppress`, before its first webhook)."""
    with db.writing(engine) as connection:
        log.lock(connection)  # no webhook is sealed with a key while it is destroyed
        erased_at = now_ms()
        chats = _chats_of(connection, profile_uuid)
        subjects = [personal.of_profile(profile_uuid), *map(personal.of_chat, chats)]
        destroyed = keystore.destroy(
            connection, profile_uuid, subjects, erased_at, suppress=suppress
        )
        suppressed = _record(connection, profile_uuid, erased_at, chats, suppress)
        refold(connection, projectors, keystore, chats)
        _forget_refused(connection, [profile_uuid, *chats])
    return Erased(profile_uuid, erased_at, chats, destroyed, suppressed)


def _forget_refused(connection: Connection, ids: Sequence[str]) -> int:
    """Forget the rejected deliveries that hold any of `ids` (a profile's and its chats'):
    they are kept as they came, personal data and all. A scan of every kept delivery, as
    they may not even be JSON; they are few, and kept a while only. Those refused because
    the customer was suppressed (410) hold no personal data and stay."""
    wanted = set(ids)
    quoted = [json.dumps(uuid).encode() for uuid in ids]
    found = []
    query = select(rejected.c.id, rejected.c.body).where(rejected.c.status != Suppressed.status)
    query = query.execution_options(yield_per=500)
    with connection.execute(query) as kept:
        for row in kept:
            if _names(row.body, wanted, quoted):
                found.append(row.id)
    if found:
        connection.execute(delete(rejected).where(rejected.c.id.in_(found)))
    return len(found)


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
    """Keep the erasure in the main database (and whether it suppresses): whether it does."""
    before = connection.execute(
        select(erasures.c.suppressed, erasures.c.refused, erasures.c.chats).where(
            erasures.c.profile_uuid == profile_uuid
        )
    ).first()
    suppressed = suppress or (before is not None and before.suppressed)
    connection.execute(delete(erasures).where(erasures.c.profile_uuid == profile_uuid))
    row = {
        "profile_uuid": profile_uuid,
        "erased_at": erased_at,
        "suppressed": suppressed,
        "chats": sorted({*chats, *(before.chats if before else ())}),
        "refused": before.refused if before else 0,
    }
    db.insert(connection, erasures, [row])
    return suppressed


def _names(body: bytes, ids: set[str], quoted: list[bytes]) -> bool:
    """Does a kept delivery name one of `ids` as its chat or profile? One that is no JSON
    object is taken to when it holds one of them as a JSON string."""
    document = logged(body.decode("utf-8", errors="replace"))
    if document is None:
        return any(needle in body for needle in quoted)
    payload = document.get("payload")
    if not isinstance(payload, dict):
        return False
    named = (payload.get(part) for part in ("chat", "profile"))
    return any(isinstance(part, dict) and part.get("uuid") in ids for part in named)


@dataclass(frozen=True, slots=True)
class Reconciled:
    moved: int  # keys and erasure records moved from the main database to the keystore
    applied: list[str]  # profiles the main database had not yet erased
    reapplied: list[str]  # profiles whose keys the keystore held again


def reconcile(engine: Engine, keystore: Keystore, projectors: Sequence[Projector]) -> Reconciled:
    """Make the main database and the keystore agree on every erasure, after either was
    restored from a backup taken before it, or a failure between their commits.

    A profile the keystore records as erased but the main database does not is folded
    again; one the main database records but the keystore does not has its keys
    destroyed again. Run at every start of the server, and by `cdp erase --reconcile`."""
    with db.writing(engine) as connection:
        log.lock(connection)
        moved = keystore.adopt(connection)
        kept = keystore.erasures(connection)
        recorded = {row.profile_uuid: row for row in connection.execute(select(erasures))}
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
        named = [chat for s in subjects if (chat := personal.chat_of(s)) is not None]
        with db.writing(engine) as connection:
            log.lock(connection)
            # Keys the main database brought back, restored from before: gone again.
            keystore.destroy(connection, profile, subjects, at, suppress=suppressed, made_by=at)
            _record(connection, profile, at, named, suppressed)
            refold(connection, projectors, keystore, named)
            _forget_refused(connection, [profile, *named])
    for profile in reapplied:
        row = recorded[profile]
        again = [personal.of_profile(profile), *map(personal.of_chat, row.chats)]
        with db.writing(engine) as connection:
            log.lock(connection)
            keystore.destroy(
                connection,
                profile,
                again,
                row.erased_at,
                suppress=row.suppressed,
                made_by=row.erased_at,
            )
            refold(connection, projectors, keystore, row.chats)
    return Reconciled(moved, applied, reapplied)
