"""Webhooks into the log and every projection, in one transaction; and deliveries once
refused, run through today's checks again."""

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Final

from sqlalchemy import Connection, Engine, bindparam, select, update

from cdp import db
from cdp.access.tables import owners
from cdp.log import rejected, store
from cdp.log.store import Receipt
from cdp.log.tables import rejected as rejected_table
from cdp.log.webhook import (
    Foreign,
    Incoming,
    InvalidWebhook,
    MalformedBody,
    Rejection,
    Suppressed,
    latest_timestamp,
    parse,
)
from cdp.privacy import personal
from cdp.privacy.keystore import Keystore
from cdp.privacy.tables import erasures
from cdp.projections.runner import Projector, log_state, project
from cdp.times import now_ms


def record(
    engine: Engine,
    batch: Sequence[Incoming],
    projectors: Sequence[Projector],
    *,
    keystore: Keystore,
    rejections: Sequence[rejected.RejectedDelivery] = (),
    forget: Sequence[int] = (),
) -> list[Receipt | Rejection]:
    """Append checked webhooks and project them; once this returns, every query sees them.

    A webhook naming a customer erased and suppressed, or a chat or profile of another
    source, is kept as a rejected delivery instead and answers Suppressed or Foreign (see
    _refuse). In the same transaction,
    keep the rejected deliveries `rejections` and forget the kept ones of ids `forget` (those that
    `batch` now logs)."""
    # A few webhooks make a transaction of round trips; thousands, one of rows.
    with db.writing(engine, pipeline=len(batch) < db.BULK_FROM) as connection:
        return record_in(
            connection, batch, projectors, keystore=keystore, rejections=rejections, forget=forget
        )


def record_in(
    connection: Connection,
    batch: Sequence[Incoming],
    projectors: Sequence[Projector],
    *,
    keystore: Keystore,
    rejections: Sequence[rejected.RejectedDelivery] = (),
    forget: Sequence[int] = (),
) -> list[Receipt | Rejection]:
    """As record(), in the write transaction of `connection` (which may hold lock() already)."""
    if not (batch or rejections or forget):
        return []
    store.lock(connection)  # the keys of what is kept are made under it (see Keystore.ring)
    rejected.keep(connection, _scrubbed(connection, keystore, rejections), keystore)
    rejected.forget(connection, forget, keystore)
    if not batch:
        return []
    subjects = [personal.subject(incoming.webhook, incoming.source) for incoming in batch]
    names = [sorted(personal.named(incoming.webhook)) for incoming in batch]
    named = {name for listed in names for name in listed}
    # What a keystore in the main database knows comes in the same round trip.
    in_main = None if keystore.apart else set(subjects)
    head, positions, owned, known = log_state(connection, named, in_main)
    if known is None:
        known = keystore.known(connection, set(subjects), named)
    outcomes = _refuse(connection, keystore, batch, names, known.suppressed, owned)
    kept = [incoming for incoming, out in zip(batch, outcomes, strict=True) if out is None]
    sealing = {s for s, out in zip(subjects, outcomes, strict=True) if out is None}
    ring = keystore.ring(connection, sealing, known)
    receipts, new = store.append(connection, kept, head=head, ring=ring, erased=known.erased)
    project(connection, projectors, new, head.position, positions, keystore)
    logged = iter(receipts)
    return [next(logged) if outcome is None else outcome for outcome in outcomes]


def _scrubbed(
    connection: Connection, keystore: Keystore, rejections: Sequence[rejected.RejectedDelivery]
) -> Sequence[rejected.RejectedDelivery]:
    """The deliveries `refused`, those that name a customer erased and suppressed kept
    without their body (see rejected.without): whatever else is wrong with them, they hold
    what the customer asked to be forgotten."""
    if not rejections:
        return rejections
    ids = set().union(*(rejection.names for rejection in rejections))
    subjects = {s for uuid in ids for s in (personal.of_chat(uuid), personal.of_profile(uuid))}
    suppressed = keystore.known(connection, (), subjects).suppressed
    if not suppressed:
        return rejections
    return rejected.without(rejections, {personal.uuid_of(subject) for subject in suppressed})


def _refuse(
    connection: Connection,
    keystore: Keystore,
    batch: Sequence[Incoming],
    names: Sequence[list[str]],
    suppressed: Mapping[str, str],
    owned: Mapping[str, str],
) -> list[Receipt | Rejection | None]:
    """Refuse the webhooks of `batch` (each naming the subjects of `names`) that name a
    `suppressed` subject (kept as rejected deliveries without their personal data, and
    counted with their erasure) or a subject `owned` by another source (kept as they came);
    None for each of the others, and the subjects they name first are recorded as their
    source's."""
    outcomes: list[Receipt | Rejection | None] = []
    rejections, counts = [], Counter[str]()
    claimed, claims = dict(owned), {}
    now = now_ms()
    for incoming, named in zip(batch, names, strict=True):
        source = incoming.source
        profile = next((suppressed[name] for name in named if name in suppressed), None)
        foreign = next((name for name in named if claimed.get(name, source) != source), None)
        error: Rejection | None = None
        if profile is not None:
            error = Suppressed(profile)
            counts[profile] += 1
            body = personal.redacted(incoming.webhook.document).encode()
        elif foreign is not None:
            error, body = Foreign(foreign), incoming.body.encode()
        outcomes.append(error)
        if error is not None:
            rejections.append(
                rejected.RejectedDelivery(
                    now, source, error.status, str(error), len(body), {}, body
                )
            )
            continue
        for name in named:
            if name not in claimed:
                claimed[name] = claims[name] = source
    rejected.keep(connection, rejections, keystore)
    _COUNT.run(connection, [{"profile": p, "n": n} for p, n in counts.items()])
    db.insert(connection, owners, [{"subject": s, "source": c} for s, c in claims.items()])
    return outcomes


_COUNT: Final = db.Prepared(
    update(erasures)
    .where(erasures.c.profile_uuid == bindparam("profile"))
    .values(refused=erasures.c.refused + bindparam("n"))
)


def replay_rejected(
    engine: Engine,
    projectors: Sequence[Projector],
    max_clock_skew: timedelta,
    ids: Sequence[int] | None = None,
    *,
    keystore: Keystore,
) -> Iterator[tuple[int, Exception | None]]:
    """Run kept deliveries (those of `ids`, or all) through today's checks, oldest first;
    log and project those that pass and forget them in the same transaction, so each moves
    exactly once however often this is run or stopped. Yields each id, with why it is
    still refused or None."""
    after = 0
    table = rejected_table
    while True:
        query = select(table.c.id, table.c.source, table.c.body, table.c.key_id, table.c.status)
        query = query.where(table.c.id > after)
        if ids is not None:
            query = query.where(db.any_of(table.c.id, "ids"))
        with engine.connect() as connection:
            listed = {"ids": list(ids)} if ids is not None else {}
            rows = connection.execute(query.order_by(table.c.id).limit(500), listed).all()
            kept = rejected.bodies(connection, keystore, rows)
        if not rows:
            return
        after = rows[-1].id
        latest = latest_timestamp(max_clock_skew)
        passed: list[Incoming] = []
        moved: list[int] = []
        outcomes: list[tuple[int, Exception | None]] = []
        for row, body in zip(rows, kept, strict=True):
            if row.status in _PARTIAL:
                outcomes.append((row.id, MalformedBody(_PARTIAL[row.status])))
                continue
            if body is None:
                outcomes.append((row.id, MalformedBody(_KEY_GONE)))
                continue
            try:
                passed.append(parse(body, latest=latest, source=row.source))
            except (MalformedBody, InvalidWebhook) as error:
                outcomes.append((row.id, error))
            else:
                moved.append(row.id)
        if moved:
            answers = record(engine, passed, projectors, keystore=keystore, forget=moved)
            for id, answer in zip(moved, answers, strict=True):
                outcomes.append((id, answer if isinstance(answer, Rejection) else None))
        yield from sorted(outcomes, key=lambda outcome: outcome[0])


# Kept deliveries that can never pass: only part of what arrived was kept.
_KEY_GONE: Final = "its key is not in the keystore: it cannot be opened"
_PARTIAL: Final = {
    413: "only the first part of it was kept",
    410: "only its fields that are no personal data were kept",
}
