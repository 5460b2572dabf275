"""The projectors that turn the log into read models, and the runner that feeds them.

Each projector's checkpoint is written in the same transaction as its rows.
"""

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from itertools import groupby
from typing import Any, Final, NamedTuple, Protocol

from sqlalchemy import (
    Boolean,
    Connection,
    Label,
    LargeBinary,
    String,
    Table,
    cast,
    null,
    select,
    union_all,
)

from cdp import db
from cdp.access.tables import owners
from cdp.log import store
from cdp.log.store import Recorded
from cdp.privacy.keystore import Keystore, Known, knowing, known_of
from cdp.projections.tables import checkpoints
from cdp.times import now_ms

# Events per write on rebuild and catch-up: large enough to write set-wise, small
# enough to keep memory flat whatever the size of the log.
BATCH: Final = 5000


# Told how many events of how many a rebuild has folded into a projection: (name, done, total).
Progress = Callable[[str, int, int], None]


class Projector(Protocol):
    """Turns the log into read models: the tables it declares (`tables`), and no other.
    `version` changes whenever the code changes what its tables hold; `shape` names the
    settings that shape them: when either differs from what built the live tables, they
    are built anew (see cdp.projections.builds).

    It is handed the tables to write each time (`tables`: db.LIVE, or a build's shadows
    of its own), and runs every statement on them."""

    name: str
    version: int
    shape: str
    tables: tuple[Table, ...]
    # The projectors whose tables it reads, in the same transaction: they come before it
    # in the registry, and a build of it builds them too (see builds.with_dependencies).
    reads: tuple[str, ...]

    def apply(
        self, connection: Connection, batch: Sequence[Recorded], *, fresh: bool, tables: db.Tables
    ) -> None:
        """Project new events, given in log order, into `tables`.

        `fresh`: the projector's tables hold nothing yet of the chats the batch names, and
        the batch holds every event of each of them (a rebuild).
        """

    def forget(self, connection: Connection, chats: Sequence[str], tables: db.Tables) -> None:
        """Delete from `tables` every row that holds something of `chats` (their customers'
        values, or what was derived from them), so that folding their events again (after
        an erasure destroyed their keys) writes them as a rebuild would. Rows of no chat
        alone (a team's name) hold nothing personal and stay."""


class LogState(NamedTuple):
    head: store.Head
    positions: dict[str, int]  # how far each projector has got
    owners: dict[str, str]  # the source each subject a batch names belongs to
    known: Known | None  # what the keystore in the main database knows of a batch


def log_state(
    connection: Connection,
    named: Collection[str] = (),
    subjects: Collection[str] | None = None,
) -> LogState:
    """The log head (its position and hash), how far each projector has got, and the
    source each of `named` (the subjects a batch names) belongs to; with `subjects`, also
    what the keystore, in the main database, knows of them and of `named` (see
    keystore.knowing): one statement, one round trip."""
    if subjects is None:
        rows = _STANDING.rows(connection, {"named": list(named)})
    else:
        values = {"named": list(named), "subjects": list(subjects)}
        rows = _STANDING_KNOWING.rows(connection, values)
    top = next(row for row in rows if row["name"] is None and row["position"] is not None)
    return LogState(
        store.Head(top["position"], top["hash"]),
        {row["name"]: row["position"] for row in rows if row["name"] is not None},
        {row["subject"]: row["source"] for row in rows if row["source"] is not None},
        None if subjects is None else known_of(rows),
    )


def _text(name: str) -> Label[Any]:
    """A NULL of a type: PostgreSQL types an untyped NULL in a UNION's first part as text."""
    return cast(null(), String).label(name)


_OF_THE_LOG: Final = (
    select(null().label("name"), store.HEAD.label("position"), store.HEAD_HASH.label("hash")),
    select(checkpoints.c.name, checkpoints.c.position, null().label("hash")),
)


_NO_LOG: Final = (null().label("name"), null().label("position"), null().label("hash"))


_NO_KEY: Final = (
    _text("key_id"),
    cast(null(), LargeBinary).label("material"),
    _text("profile_uuid"),
    cast(null(), Boolean).label("suppressed"),
)


_OWNERS: Final = select(*_NO_LOG, owners.c.subject, owners.c.source).where(
    db.any_of(owners.c.subject, "named")
)


_STANDING: Final = db.Prepared(
    union_all(
        *(part.add_columns(_text("subject"), _text("source")) for part in _OF_THE_LOG), _OWNERS
    )
)


_STANDING_KNOWING: Final = db.Prepared(
    union_all(
        *(part.add_columns(_text("subject"), *_NO_KEY, _text("source")) for part in _OF_THE_LOG),
        select(*_NO_LOG, owners.c.subject, *_NO_KEY, owners.c.source).where(
            db.any_of(owners.c.subject, "named")
        ),
        *(part.add_columns(_text("source")) for part in knowing(*_NO_LOG)),
    )
)


def project(
    connection: Connection,
    projectors: Sequence[Projector],
    new: Sequence[Recorded],
    head: int,
    positions: Mapping[str, int],
    keystore: Keystore,
) -> None:
    """Feed events just appended after `head` to every projector built (with a checkpoint
    in `marks`), in the append's transaction.

    One without a checkpoint is fed only the log's first events, which it then holds whole;
    otherwise it is not fed at all until cdp.projections.builds has built it beside the others. One
    whose checkpoint is behind `head` first gets the events it missed, a batch at a time:
    no projector ever skips part of the log.
    """
    if not new:
        return
    following, starting = [], []
    for projector in projectors:
        mark = positions.get(projector.name)
        if mark is None:
            if head == 0:
                starting.append(projector)
            continue
        while mark < head:
            missed = store.since(
                connection,
                after=mark,
                until=head,
                limit=BATCH,
                keys=key_lookup(connection, keystore),
            )
            projector.apply(connection, missed, fresh=False, tables=db.LIVE)
            mark = missed[-1].position
        following.append(projector)
    for projector in projectors:  # in the registry's order: some read what others wrote
        if projector in following or projector in starting:
            projector.apply(connection, new, fresh=False, tables=db.LIVE)
    advance(connection, following, new[-1].position)
    built(connection, starting, new[-1].position)


def rebuild(
    connection: Connection,
    projectors: Sequence[Projector],
    keystore: Keystore,
    progress: Progress | None = None,
) -> int:
    """Empty every projection and refill it from the log, read once; the head they reach.

    `progress` is told, as it starts and after each batch, how many of the log's events
    each projection has folded, of how many."""
    store.lock(connection)
    head = store.head(connection)
    total = store.count(connection) if progress is not None else 0
    done = 0
    for projector in projectors:
        for table in reversed(projector.tables):
            connection.execute(table.delete())
        if progress is not None:
            progress(projector.name, done, total)
    for batch in whole_chats(store.replay(connection, key_lookup(connection, keystore))):
        done += len(batch)
        for projector in projectors:
            projector.apply(connection, batch, fresh=True, tables=db.LIVE)
            if progress is not None:
                progress(projector.name, done, total)
    built(connection, projectors, head)
    return head


def refold(
    connection: Connection,
    projectors: Sequence[Projector],
    keystore: Keystore,
    chats: Sequence[str],
    until: int | None = None,
    *,
    tables: db.Tables,
) -> None:
    """Fold `chats` again from the log (up to position `until`) into `tables`, as a rebuild
    would (after their keys were destroyed): each projector forgets them first. The caller
    holds the append lock, so no checkpoint moves meanwhile."""
    if not chats:
        return
    for projector in projectors:
        projector.forget(connection, chats, tables)
    replayed = store.replay(connection, key_lookup(connection, keystore), chats=chats, until=until)
    for batch in whole_chats(replayed):
        for projector in projectors:
            projector.apply(connection, batch, fresh=True, tables=tables)


def key_lookup(connection: Connection, keystore: Keystore) -> store.KeyLookup:
    """What opens the sealed bodies the log holds (see log.Keys)."""
    return lambda ids: keystore.materials(connection, ids)


def whole_chats(replay: Iterator[Recorded], size: int | None = None) -> Iterator[list[Recorded]]:
    """Batches of about `size` (BATCH) events that never split a chat (events naming none
    may split)."""
    size = size or BATCH
    batch: list[Recorded] = []
    for chat_uuid, recorded_of_chat in groupby(replay, key=lambda r: r.incoming.webhook.chat_uuid):
        for recorded in recorded_of_chat:
            batch.append(recorded)
            if chat_uuid is None and len(batch) >= size:
                yield batch
                batch = []
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def advance(connection: Connection, projectors: Sequence[Projector], position: int) -> None:
    """Move the checkpoints of `projectors`, followed live, to `position`: what built their
    tables stays as recorded."""
    rows = [{"name": projector.name, "position": position} for projector in projectors]
    db.upsert(connection, checkpoints, rows, key=["name"])


def built(connection: Connection, projectors: Sequence[Projector], position: int) -> None:
    """Record `projectors`' tables as built whole up to `position`, by their version and
    shape."""
    at = now_ms()
    rows = [
        {
            "name": projector.name,
            "position": position,
            "version": projector.version,
            "shape": projector.shape,
            "built_at": at,
        }
        for projector in projectors
    ]
    db.upsert(connection, checkpoints, rows, key=["name"])


def following(connection: Connection, projectors: Sequence[Projector]) -> list[Projector]:
    """Those of `projectors` built, that follow the log live."""
    names = set(connection.scalars(select(checkpoints.c.name)))
    return [projector for projector in projectors if projector.name in names]
