"""Projections built anew beside the ones that serve, then put in their place at once.

A projection's tables get shadows named with NEXT (`timeline__next`), made empty from the
models, filled by the projector itself through db.shadowing (the very statements that
write the live tables), and swapped in in one short transaction: the live table dropped,
its shadow renamed. Readers see the old projection or the new one, never a half-built one.

Index names are global to a database. PostgreSQL renames the shadow's indexes and
constraints to the models' names in the swap. SQLite cannot rename an index: there a
projection's indexes alternate, from one build to the next, between the models' names
and those names with NEXT (see `_index_name`); what they index never changes.
"""

from collections.abc import Callable, Sequence
from functools import cache
from typing import Final

from sqlalchemy import Connection, Engine, Index, MetaData, Table, select, text
from sqlalchemy.schema import CreateIndex, CreateTable, DropTable
from sqlalchemy.sql.elements import conv

from cdp import db, log
from cdp.keystore import Keystore
from cdp.models import NAMING, erasures
from cdp.projectors import BATCH, Projector, advance, keys, refold, whole_chats
from cdp.times import now_ms

NEXT: Final = "__next"
_SHADOWS: Final = MetaData(naming_convention=NAMING)
# Events left to catch up with at most, for the swap: what webhooks wait for.
SWAP_WITHIN: Final = 1000

# Told the events done and the events to do, as a build goes.
Report = Callable[[int, int], None]


def build(
    engine: Engine,
    projectors: Sequence[Projector],
    keystore: Keystore,
    *,
    report: Report | None = None,
) -> int:
    """Build the projections of `projectors` anew beside the live ones and swap them in;
    the log head they reach.

    Webhooks go on being logged and projected into the live tables meanwhile. The shadows
    are filled from the log up to the head of the start, a transaction a batch of whole
    chats, then catch up with what was logged since, a batch at a time, until little is
    left; only then is the append lock taken, for the rest and the swap: webhooks wait for
    that alone. Chats erased meanwhile are folded again in the shadows before the swap.
    """
    report = report or (lambda done, total: None)
    tables = [table for projector in projectors for table in projector.tables]
    shadows = {table: shadow(table) for table in tables}
    started = now_ms()
    with db.writing(engine) as connection:
        create(connection, tables)
    with engine.connect() as reading:
        reached = log.head(reading)
        done = 0
        for batch in whole_chats(log.replay(reading, keys(reading, keystore), until=reached)):
            with db.writing(engine) as connection, db.shadowing(shadows):
                for projector in projectors:
                    projector.apply(connection, batch, fresh=True)
            done += len(batch)
            report(done, reached)
    while True:
        with engine.connect() as connection:
            head = log.head(connection)
        if head - reached <= SWAP_WITHIN:
            break
        while reached < head:
            with db.writing(engine) as connection, db.shadowing(shadows):
                reached = _project_since(connection, projectors, keystore, reached, head)
            report(reached, head)
    with db.writing(engine) as connection, db.shadowing(shadows):
        log.lock(connection)
        head = log.head(connection)
        while reached < head:
            reached = _project_since(connection, projectors, keystore, reached, head)
        refold(connection, projectors, keystore, _erased_since(connection, started))
        swap(connection, tables)
        advance(connection, projectors, head)
    report(head, head)
    return head


def _project_since(
    connection: Connection,
    projectors: Sequence[Projector],
    keystore: Keystore,
    after: int,
    until: int,
) -> int:
    """Project a batch of the events after `after` up to `until`; the position reached."""
    batch = log.since(
        connection, after=after, until=until, limit=BATCH, keys=keys(connection, keystore)
    )
    for projector in projectors:
        projector.apply(connection, batch, fresh=False)
    return batch[-1].position if batch else until


def _erased_since(connection: Connection, started: int) -> list[str]:
    """The chats erased since `started` (ms): a shadow may hold what their keys opened."""
    rows = connection.execute(select(erasures.c.chats).where(erasures.c.erased_at >= started))
    return sorted({chat for (chats,) in rows for chat in chats})


@cache
def shadow(table: Table) -> Table:
    """The table a build fills for `table`: its columns and constraints, named with NEXT.
    One object for every build, so that the statements compiled for it are compiled once."""
    copy = table.to_metadata(_SHADOWS, name=table.name + NEXT)
    copy.indexes.clear()  # made by create(), under names that depend on the database's
    for constraint in copy.constraints:  # names are global on PostgreSQL: pk_timeline__next
        if isinstance(constraint.name, str):
            named = constraint.name.replace(table.name, copy.name)
            constraint.name = conv(named if named != constraint.name else named + NEXT)
    return copy


def create(connection: Connection, tables: Sequence[Table]) -> None:
    """Empty shadows of `tables`, with every index the models give them; what an earlier
    build left (one stopped before its swap) is dropped first."""
    for table in tables:
        connection.execute(DropTable(shadow(table), if_exists=True))
        connection.execute(CreateTable(shadow(table)))
    for table in tables:
        ddl = shadow(table).to_metadata(MetaData())  # what the indexes attach to, then go
        for index in table.indexes:
            columns = [ddl.c[column.name] for column in index.columns]
            name = _index_name(connection, index.name or "")
            connection.execute(CreateIndex(Index(name, *columns, unique=index.unique)))


def drop(connection: Connection, tables: Sequence[Table]) -> None:
    """Drop the shadows of `tables` (a build given up)."""
    for table in tables:
        connection.execute(DropTable(shadow(table), if_exists=True))


def swap(connection: Connection, tables: Sequence[Table]) -> None:
    """Put each shadow of `tables` in its table's place: in the caller's transaction, which
    holds the append lock, so that no webhook is projected into a table being dropped."""
    postgresql = connection.dialect.name == "postgresql"
    for table in tables:
        connection.execute(DropTable(table))
        connection.execute(text(f'ALTER TABLE "{table.name}{NEXT}" RENAME TO "{table.name}"'))
        if postgresql:
            for (index,) in connection.execute(_INDEXES_OF, {"table": table.name}):
                canonical = _canonical(index, table.name)
                if canonical != index:
                    connection.execute(text(f'ALTER INDEX "{index}" RENAME TO "{canonical}"'))


_INDEXES_OF: Final = text(
    "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
    "WHERE i.indrelid = CAST(:table AS regclass)"
)


def _canonical(name: str, table: str) -> str:
    """The models' name of a shadow's index or constraint: `ix_timeline_chat_uuid_order__next`
    is `ix_timeline_chat_uuid_order`, `pk_timeline__next` is `pk_timeline`."""
    return name.replace(table + NEXT, table).removesuffix(NEXT)


def _index_name(connection: Connection, name: str) -> str:
    """The name a shadow's index takes: with NEXT on PostgreSQL (renamed in the swap); on
    SQLite, whichever of the models' name and that name with NEXT the live index is not."""
    if connection.dialect.name == "postgresql":
        return name + NEXT
    taken = connection.execute(
        text("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = :name"), {"name": name}
    ).first()
    return name + NEXT if taken else name
