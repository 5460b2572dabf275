"""Erasure on request: a customer's personal data made unreadable everywhere by destroying
the keys it is sealed with (see cdp.personal), the log's rows left as they are.

What the read models held of the customer is folded again from the log, which now gives
only the fields that are no personal data: the same result a rebuild gives. Deliveries
refused and kept as they came that name the customer are forgotten.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, delete, select, union

from cdp import db, log, personal
from cdp.keystore import Keystore
from cdp.models import erasures, events, profile_chats, rejected
from cdp.projectors import Projector, following, refold
from cdp.rejected import named
from cdp.times import now_ms
from cdp.webhook import Suppressed


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
    with engine.connect() as connection:  # a scan of every kept delivery: not under the lock
        seen = _chats_of(connection, profile_uuid)
        doomed, scanned = _refused_naming(connection, {profile_uuid, *seen})
    with db.writing(engine) as connection:
        log.lock(connection)  # no webhook is sealed with a key while it is destroyed
        erased_at = now_ms()
        chats = _chats_of(connection, profile_uuid)
        subjects = [personal.of_profile(profile_uuid), *map(personal.of_chat, chats)]
        destroyed = keystore.destroy(
            connection, profile_uuid, subjects, erased_at, suppress=suppress
        )
        suppressed = _record(connection, profile_uuid, erased_at, chats, suppress)
        refold(connection, following(connection, projectors), keystore, chats)
        # Kept since the scan; and, for a chat first named since, kept before it.
        doomed += _refused_naming(connection, {profile_uuid, *chats}, after=scanned)[0]
        if new := set(chats) - set(seen):
            doomed += _refused_naming(connection, new)[0]
        _forget(connection, doomed)
    return Erased(profile_uuid, erased_at, chats, destroyed, suppressed)


def _refused_naming(
    connection: Connection, ids: set[str], *, after: int = 0
) -> tuple[list[int], int]:
    """The rejected deliveries kept after id `after` that name any of `ids` (a profile's and
    its chats') anywhere in them (see rejected.named): they are kept as they came, personal
    data and all. And the last id scanned. A scan of every kept delivery, since they may
    not even be JSON; they are few, and kept a while only. Those refused because the
    customer was suppressed (410) hold no personal data and stay."""
    found, last = [], after
    query = select(rejected.c.id, rejected.c.body).where(
        rejected.c.id > after, rejected.c.status != Suppressed.status
    )
    with connection.execute(query.order_by(rejected.c.id).execution_options(yield_per=500)) as kept:
        for row in kept:
            last = row.id
            if named(row.body) & ids:
                found.append(row.id)
    return found, last


def _forget(connection: Connection, ids: Sequence[int]) -> None:
    if ids:
        connection.execute(delete(rejected).where(rejected.c.id.in_(list(ids))))


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
            refold(connection, following(connection, projectors), keystore, named)
            _forget(connection, _refused_naming(connection, {profile, *named})[0])
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
            refold(connection, following(connection, projectors), keystore, row.chats)
    return Reconciled(moved, applied, reapplied)
