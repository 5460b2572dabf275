"""Chats, their sessions, turns, handoffs and timeline: the conversation fold, written to tables.

A new event can change where later events fall (a late message can split a session, a
late opening renumber the ones after it), but nothing placed before its reach (see
`Rules.reach`). So the fold resumes from the state the tables hold after the chat's last
known event before that time (its timeline row says where it fell) and places the facts
from there on, with the new ones among them: a region that grows, a chunk at a time,
only until the stored events fall again as they did (same session, team and turn) and
everything the region says of a session, turn or chat is settled.

The region's rows are then compared with what they were, and each session, turn and the
chat is brought up to date from its stored row: what the region held of it before is
taken out, what it holds now put in. Counts are added and taken away; the first or
latest event of a sort (a title, a reply, the chat's name) comes from the region when
it changed there, unless events after the region carry one (then the region grows);
only when an event of that sort left the session or turn it shared with the region's
start is it looked up before the region, one index probe. So the cost of an event
follows the events near it, not the length of its session or its chat.

Only the rows whose content changed are written. A rebuild (`fresh`) folds each chat
whole instead, from the same rules (`fold`).
"""

from bisect import insort
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Integer,
    String,
    Table,
    and_,
    bindparam,
    func,
    literal,
    or_,
    select,
    true,
    tuple_,
    union_all,
)

from cdp import db
from cdp.conversations.fold import (
    BEGINNING,
    CHAT_ATTRIBUTES,
    FACT_FIELDS,
    PLACEMENT_FIELDS,
    TURN_STARTS,
    Conversation,
    Fact,
    Placement,
    Rules,
    SessionSummary,
    State,
    Step,
    Summary,
    TurnSummary,
    decided,
    fact_of,
    fold,
    operator_of,
    place,
    summarize,
)
from cdp.conversations.tables import SEALED, chats, handoffs, sessions, timeline, waits
from cdp.log.store import Recorded
from cdp.log.webhook import INT64_MAX
from cdp.privacy import personal
from cdp.profiles import names, phones
from cdp.profiles.names import fold_name
from cdp.settings import Settings

_CHAT_COLUMNS: Final = tuple(c.name for c in chats.columns)
_SESSION_COLUMNS: Final = tuple(c.name for c in sessions.columns)
_TURN_COLUMNS: Final = tuple(c.name for c in waits.columns)
_ORDER: Final = (timeline.c.occurred_at, timeline.c.rank, timeline.c.dedupe_key)
# A stored event as the fold reads it back: all but its message, which can be megabytes.
_READ: Final = tuple(column for column in timeline.c if column.name != "message")
_READ_NAMES: Final = frozenset(column.name for column in _READ)
# The personal values of a stored event the fold reads back, sealed (its message is not read).
_FACT_SEALED: Final = tuple(name for name in SEALED[timeline] if name in _READ_NAMES)
# Stored events read after the region's first chunk, at least, a chunk at a time.
_CHUNK: Final = 64
# Stored events of a chat's first chunk, at most (PostgreSQL; see _first_chunk).
_FIRST_MOST: Final = 1000


def _first_chunk(dialect: str) -> Any:
    """For each chat of a batch ("wanted": chat_uuid, reach, until): the last known event
    before its reach (is_start), every event after it up to `until`, and the time of the
    chat's last event (last_at); a row of NULLs, with last_at, if there are none.

    Each an index probe or range, however long the chat: LATERAL on PostgreSQL, whose
    planner would otherwise join whole tables for the few rows of a batch (and, where one
    chat holds most events, scan another index whole); ordered and limited, the range is
    read from the chat's own index, _FIRST_MOST rows at most (a burst of events within
    the open window reads on as any region does). Correlated subqueries on SQLite, which
    has no LATERAL and loops over the rows anyway."""
    columns = {"chat_uuid": String(), "reach": BigInteger(), "until": BigInteger()}
    wanted = db.records("wanted", dialect, columns)
    of_chat = timeline.c.chat_uuid == wanted.c.chat_uuid
    before = (
        select(timeline.c.position, *_ORDER)
        .where(of_chat, timeline.c.occurred_at < wanted.c.reach, timeline.c.kind != "other")
        .order_by(*(column.desc() for column in _ORDER))
        .limit(1)
    )
    last_at = select(func.max(timeline.c.occurred_at)).where(of_chat).scalar_subquery()
    if dialect == "postgresql":
        start = before.lateral("start")
        region = (
            select(*_READ)
            .where(of_chat, _from(start), timeline.c.occurred_at <= wanted.c.until)
            .order_by(*_ORDER)
            .limit(_FIRST_MOST)
            .lateral("region")
        )
        return (
            select(
                wanted.c.chat_uuid.label("wanted"),
                last_at.label("last_at"),
                (region.c.position == start.c.position).label("is_start"),
                *(region.c[column.name] for column in _READ),
            )
            .select_from(wanted.outerjoin(start, true()).outerjoin(region, true()))
            .order_by(wanted.c.chat_uuid, *(region.c[column.name] for column in _ORDER))
        )
    starts = select(
        wanted.c.chat_uuid,
        wanted.c.until,
        before.with_only_columns(timeline.c.position).scalar_subquery().label("start"),
        last_at.label("last_at"),
    ).cte("starts")
    first = timeline.alias("start")
    within = and_(
        timeline.c.chat_uuid == starts.c.chat_uuid,
        _from(first),
        timeline.c.occurred_at <= starts.c.until,
    )
    return (
        select(
            starts.c.chat_uuid.label("wanted"),
            starts.c.last_at,
            (timeline.c.position == starts.c.start).label("is_start"),
            *_READ,
        )
        .select_from(
            starts.outerjoin(first, first.c.position == starts.c.start).outerjoin(timeline, within)
        )
        .order_by(starts.c.chat_uuid, *_ORDER)
    )


def _from(start: Any) -> ColumnElement[bool]:
    """A timeline row is `start` or after it (any row, if there is no start). The time is
    compared alone too: a bound PostgreSQL's planner sees, where it cannot see into the
    row comparison, and takes the chat's own index for."""
    at = func.coalesce(start.c.occurred_at, -INT64_MAX)
    return and_(
        timeline.c.occurred_at >= at,
        tuple_(*_ORDER)
        >= tuple_(at, func.coalesce(start.c.rank, 0), func.coalesce(start.c.dedupe_key, "")),
    )


_FIRST_CHUNK: Final = db.Prepared(_first_chunk)
_AFTER: Final = db.Prepared(
    select(*_READ)
    .where(
        timeline.c.chat_uuid == bindparam("chat"),
        tuple_(*_ORDER) > tuple_(bindparam("at"), bindparam("rank"), bindparam("key")),
    )
    .order_by(*_ORDER)
    .limit(bindparam("most"))
)
# The latest event of a session at or before a point, of a sort (see _before).
_BEFORE: Final = {
    sort: db.Prepared(
        select(*_READ)
        .where(
            timeline.c.chat_uuid == bindparam("chat"),
            timeline.c.session_number == bindparam("number"),
            tuple_(*_ORDER) <= tuple_(bindparam("at"), bindparam("rank"), bindparam("key")),
            condition,
        )
        .order_by(*(column.desc() for column in _ORDER))
        .limit(1)
    )
    for sort, condition in {
        "title": and_(timeline.c.title.is_not(None), timeline.c.kind != "other"),
        "context": and_(timeline.c.context.is_not(None), timeline.c.kind != "other"),
        "turn": or_(
            *(timeline.c.kind == kind for kind in sorted({*TURN_STARTS, "operator_reply"}))
        ),
    }.items()
}
_CHATS: Final = db.Prepared(select(chats).where(db.any_of(chats.c.uuid, "chats")))


def _sessions(dialect: str) -> Any:
    """The sessions of each chat ("wanted": chat_uuid, low, high) numbered low to high."""
    columns = {"chat_uuid": String(), "low": Integer(), "high": Integer()}
    wanted = db.records("wanted", dialect, columns)
    any_of = and_(
        sessions.c.chat_uuid == wanted.c.chat_uuid,
        sessions.c.number >= wanted.c.low,
        sessions.c.number <= wanted.c.high,
    )
    if dialect == "postgresql":  # see _first_chunk
        found = select(sessions).where(any_of).offset(0).lateral("found")
        return select(found).select_from(wanted.join(found, true()))
    return select(sessions).join(wanted, any_of)


_SESSIONS: Final = db.Prepared(_sessions)


def _turns(dialect: str) -> Any:
    """The turns of a batch's chats that a region can change: those that began within it
    (by position), and the one each region begins in ("wanted": chat_uuid, number, reach),
    the latest of its session to begin before the reach."""
    columns = {"chat_uuid": String(), "number": Integer(), "reach": BigInteger()}
    wanted = db.records("wanted", dialect, columns)
    inner = waits.alias("inner")
    latest = (
        select(inner)
        .where(
            inner.c.chat_uuid == wanted.c.chat_uuid,
            inner.c.session_number == wanted.c.number,
            inner.c.started_at < wanted.c.reach,
        )
        .order_by(inner.c.ordinal.desc())
        .limit(1)
    )
    within = select(waits, literal(False).label("ongoing")).where(
        db.any_of(waits.c.position, "positions")
    )
    if dialect == "postgresql":  # see _first_chunk
        found = latest.lateral("found")
        ongoing = select(found, literal(True).label("ongoing")).select_from(
            wanted.join(found, true())
        )
        return union_all(ongoing, within)
    position = latest.with_only_columns(inner.c.position).scalar_subquery()
    ongoing = select(waits, literal(True).label("ongoing")).join(
        wanted, waits.c.position == position
    )
    return union_all(ongoing, within)


_TURNS: Final = db.Prepared(_turns)
_TURNS_AFTER: Final = db.Prepared(
    select(waits).where(
        waits.c.chat_uuid == bindparam("chat"),
        waits.c.session_number == bindparam("number"),
        waits.c.ordinal > bindparam("ordinal"),
    )
)
_HANDOFFS_OF: Final = db.Prepared(
    select(handoffs)
    .where(
        handoffs.c.chat_uuid == bindparam("chat"), handoffs.c.session_number == bindparam("number")
    )
    .order_by(handoffs.c.at, handoffs.c.dedupe_key)
)
_MOVE: Final = db.Prepared(
    timeline.update()
    .where(timeline.c.position == bindparam("at_position"))
    .values({name: bindparam(name, type_=timeline.c[name].type) for name in PLACEMENT_FIELDS})
)
_SESSION_GONE: Final = db.Prepared(
    sessions.delete().where(
        sessions.c.chat_uuid == bindparam("chat_uuid"), sessions.c.number == bindparam("number")
    )
)
_HANDOFFS_GONE: Final = db.Prepared(
    handoffs.delete().where(db.any_of(handoffs.c.position, "positions"))
)
_TURNS_GONE: Final = db.Prepared(waits.delete().where(db.any_of(waits.c.position, "positions")))
# A chat's rows, every table's (see ChatsProjector.forget).
_FORGET: Final = tuple(
    db.Prepared(table.delete().where(db.any_of(table.c[column], "chats")))
    for table, column in (
        (timeline, "chat_uuid"),
        (sessions, "chat_uuid"),
        (handoffs, "chat_uuid"),
        (waits, "chat_uuid"),
        (chats, "uuid"),
    )
)


def _fact(row: Mapping[str, Any], sealer: personal.Sealer | None) -> Fact:
    """A stored event's fact, read back and opened (its message is not: see _READ)."""
    fields: dict[str, Any] = {name: row.get(name) for name in FACT_FIELDS}
    for name in _FACT_SEALED:
        fields[name] = personal.opened(sealer, name, fields[name])
    return Fact(**fields)


def _placement(row: Mapping[str, Any]) -> Placement:
    return Placement(*(row[name] for name in PLACEMENT_FIELDS))


@dataclass(slots=True)
class _Stored:
    """What the tables hold of one chat's events from its new facts' reach on.

    `start`: the last known event before the reach, with where it fell (None: there is
    none); `loaded`: the events after it, in order, as far as read; `whole`: whether those
    reach the chat's last event.
    """

    start: tuple[Fact, Placement] | None = None
    loaded: list[tuple[Fact, Placement]] = field(default_factory=list)
    whole: bool = True

    @property
    def state(self) -> State:
        if self.start is None:
            return BEGINNING
        fact, placement = self.start
        return State(
            placement.session_number, placement.team_id, placement.team_name, fact.occurred_at
        )

    def read_on(
        self,
        connection: Connection,
        tables: db.Tables,
        chat_uuid: str,
        sealer: personal.Sealer | None,
    ) -> None:
        """Read the next chunk of events, as many as read so far (_CHUNK at least)."""
        last = self.loaded[-1][0] if self.loaded else self.start[0] if self.start else None
        most = max(_CHUNK, len(self.loaded))
        after = _at(last) if last is not None else {"at": -INT64_MAX, "rank": 0, "key": ""}
        rows = _AFTER.rows(connection, {"chat": chat_uuid, **after, "most": most}, tables)
        self.loaded += [(_fact(row, sealer), _placement(row)) for row in rows]
        self.whole = len(rows) < most


@dataclass(slots=True)
class _Region:
    """A chat's region, folded: the summaries of what it holds now (`new`) and held before
    (`old`), and whether it ends with the chat (else stored events follow it, unchanged)."""

    steps: list[Step]  # the region's facts, stored and new, where they fall now
    old_steps: list[Step]  # the region's stored facts where they fell
    new: Summary
    old: Summary
    ended: bool

    @property
    def last(self) -> Step:
        return self.steps[-1]


def _folded(
    rules: Rules, stored: _Stored, facts: list[Fact], read_on: Callable[[], None]
) -> _Region:
    """Fold the chat's region (see the module): read on until it is settled."""
    facts = sorted(facts, key=lambda fact: fact.order)
    state = stored.state
    while True:
        merged = [fact for fact, _ in stored.loaded]
        for fact in facts:
            insort(merged, fact, key=lambda f: f.order)
        steps = place(merged, rules, state)
        settled = decided(merged, rules, whole=stored.whole)
        old_steps = _as_stored(stored.loaded)
        was = {step.fact.position: step for step in old_steps}
        last_new = max(i for i, fact in enumerate(merged) if fact.position not in was)
        # Once a stored event falls as it fell, every later one does: the region may end at
        # any of them, and ends as late as what was read allows, so that reading on helps.
        converged = any(
            merged[i].known
            and merged[i].position in was
            and _same(steps[i], was[merged[i].position])
            for i in range(last_new + 1, settled)
        )
        if converged or (stored.whole and settled == len(merged)):
            end = settled - 1
            if merged[end].position in was:
                old_end = old_steps.index(was[merged[end].position]) + 1
            else:  # the region's last event is new: it holds every stored one read
                old_end = len(old_steps)
            region = _Region(
                steps[: end + 1],
                old_steps[:old_end],
                summarize(steps[: end + 1], state),
                summarize(old_steps[:old_end], state),
                ended=stored.whole and end == len(merged) - 1,
            )
            if region.ended or _settled(region):
                return region
        read_on()


def _as_stored(loaded: Sequence[tuple[Fact, Placement]]) -> list[Step]:
    """Stored facts where they fell, with their turns (None: begun before them)."""
    steps, turn = [], None
    for fact, placement in loaded:
        if placement.kind in TURN_STARTS:
            turn = fact.position
        steps.append(Step(fact, placement, turn))
    return steps


def _same(now: Step, before: Step) -> bool:
    return now.placement == before.placement and now.turn == before.turn


def _settled(region: _Region) -> bool:
    """Is what the region says of the session, turn and chat it ends in settled, though
    stored events follow it? Not if the latest event of a sort changed within it, since a
    later one may take its place; nor if a turn's first reply left it."""
    last = region.last
    if any(
        region.new.chat.latest.get(n) is not region.old.chat.latest.get(n) for n in CHAT_ATTRIBUTES
    ):
        return False
    number = last.placement.session_number
    if number is None:
        return True
    now, before = region.new.sessions.get(number), region.old.sessions.get(number)
    for sort in ("last_titled", "last_context", "last_turn_event"):
        if _of(now, sort) is not _of(before, sort):
            return False
    now_turn, turn_before = region.new.turns.get(last.turn), region.old.turns.get(last.turn)
    if _of(now_turn, "last_reply") is not _of(turn_before, "last_reply"):
        return False
    first_reply = _of(now_turn, "first_reply")
    return not (first_reply is None and _of(turn_before, "first_reply") is not None)


def _of(summary: SessionSummary | TurnSummary | None, sort: str) -> Any:
    return None if summary is None else getattr(summary, sort)


def create(settings: Settings) -> "ChatsProjector":
    """The chats projector, under the session rules and phone region of `settings`."""
    rules = Rules.of(settings.session_idle_timeout, settings.session_open_window)
    return ChatsProjector(rules, settings.phone_region)


class ChatsProjector:
    name = "chats"
    # 2: chats.name_key; 3: turns (waits), written by this projector; 4: the customer's
    # values sealed (see tables.SEALED), and chats looked up by digests
    version = 4
    tables: tuple[Table, ...] = (timeline, sessions, handoffs, waits, chats)
    reads: tuple[str, ...] = ()

    def __init__(self, rules: Rules, phone_region: str) -> None:
        self.rules = rules
        self.phone_region = phone_region
        self.shape = (
            f"session_idle_timeout={rules.idle_timeout_ms}ms "
            f"session_open_window={rules.open_window_ms}ms phone_region={phone_region}"
        )

    def apply(
        self, connection: Connection, batch: Sequence[Recorded], *, fresh: bool, tables: db.Tables
    ) -> None:
        """Project new events into `tables`. `fresh`: they hold nothing of their chats yet,
        and the batch holds every event of each (a rebuild)."""
        new: dict[str, list[Fact]] = defaultdict(list)
        # A chat belongs to the source of its first event (see owners): a log older than
        # owners may hold some of another.
        sources: dict[str, str] = {}
        # The chat's key, as its latest event that opened whole was sealed with: a chat has
        # one at a time, and events sealed under one since destroyed hold nothing personal.
        keys: dict[str, bytes] = {}
        for recorded in batch:
            chat_uuid = recorded.incoming.webhook.chat_uuid
            if chat_uuid is not None:
                new[chat_uuid].append(fact_of(recorded))
                sources.setdefault(chat_uuid, recorded.incoming.source)
                if recorded.key:
                    keys[chat_uuid] = recorded.key
        if not new:
            return
        sealers = {chat_uuid: personal.sealer(keys.get(chat_uuid), chat_uuid) for chat_uuid in new}
        writes = _Writes(self.phone_region, sealers, fresh=fresh)
        if fresh:
            for chat_uuid, facts in new.items():
                conversation = fold(chat_uuid, facts, self.rules)
                writes.whole(chat_uuid, sources[chat_uuid], facts, conversation)
        else:
            self._refold(connection, tables, new, sources, sealers, writes)
        writes.flush(connection, tables)

    def forget(self, connection: Connection, chats: Sequence[str], tables: db.Tables) -> None:
        """Every row of the chats: each table's are the chat's alone."""
        values = [{"chats": list(chats)}]
        for statement in _FORGET:
            statement.run(connection, values, tables)

    def _refold(
        self,
        connection: Connection,
        tables: db.Tables,
        new: Mapping[str, list[Fact]],
        sources: Mapping[str, str],
        sealers: Mapping[str, personal.Sealer | None],
        writes: "_Writes",
    ) -> None:
        """Fold each chat's region, and bring what it changes up to date (see the module)."""
        reach = {
            chat_uuid: self.rules.reach(min(fact.occurred_at for fact in facts))
            for chat_uuid, facts in new.items()
        }
        window = self.rules.open_window_ms
        stored, found = _first_chunks(connection, tables, new, reach, window, sealers)
        regions = {
            chat_uuid: _folded(
                self.rules,
                stored[chat_uuid],
                facts,
                partial(
                    stored[chat_uuid].read_on, connection, tables, chat_uuid, sealers[chat_uuid]
                ),
            )
            for chat_uuid, facts in new.items()
        }
        rows = _Rows.read(connection, tables, found, stored, regions, reach, sealers)
        for chat_uuid, region in regions.items():
            change = _Change(
                connection,
                tables,
                chat_uuid,
                stored[chat_uuid],
                region,
                rows,
                reach[chat_uuid],
                sources[chat_uuid],
                sealers[chat_uuid],
            )
            writes.change(change)


def _first_chunks(
    connection: Connection,
    tables: db.Tables,
    new: Mapping[str, list[Fact]],
    reach: Mapping[str, int],
    window: int,
    sealers: Mapping[str, personal.Sealer | None],
) -> tuple[dict[str, _Stored], dict[str, dict[str, Any]]]:
    """Each chat's start and first chunk (its events up to the open window after its
    latest new one), and each one's row: set-wise, in one round trip."""
    wanted = [
        {
            "chat_uuid": chat_uuid,
            "reach": reach[chat_uuid],
            "until": max(fact.occurred_at for fact in facts) + window,
        }
        for chat_uuid, facts in new.items()
    ]
    until = {row["chat_uuid"]: row["until"] for row in wanted}
    stored = {chat_uuid: _Stored() for chat_uuid in new}
    chunks, found = db.read_together(
        connection,
        (_FIRST_CHUNK, {"wanted": wanted}),
        (_CHATS, {"chats": list(new)}),
        tables=tables,
    )
    read: dict[str, int] = defaultdict(int)
    for row in chunks:
        chat_uuid = row["wanted"]
        chat = stored[chat_uuid]
        chat.whole = row["last_at"] is None or row["last_at"] <= until[chat_uuid]
        if row["position"] is None:
            continue
        read[chat_uuid] += 1
        fact = _fact(row, sealers[chat_uuid])
        if row["is_start"]:
            chat.start = (fact, _placement(row))
        else:
            chat.loaded.append((fact, _placement(row)))
    for chat_uuid, count in read.items():
        if count >= _FIRST_MOST:  # cut short: more may follow within the chunk's time
            stored[chat_uuid].whole = False
    chat_rows = {
        row["uuid"]: _opened_row(row, sealers[row["uuid"]], SEALED[chats]) for row in found
    }
    return stored, chat_rows


@dataclass(slots=True)
class _Rows:
    """The stored rows of what a batch's regions change: chats, sessions and turns."""

    chats: dict[str, dict[str, Any]]
    sessions: dict[tuple[str, int], dict[str, Any]]
    turns: dict[int, dict[str, Any]]  # by position
    ongoing: dict[str, dict[str, Any]]  # each region's first turn, begun before it

    @classmethod
    def read(
        cls,
        connection: Connection,
        tables: db.Tables,
        found_chats: dict[str, dict[str, Any]],
        stored: Mapping[str, _Stored],
        regions: Mapping[str, _Region],
        reach: Mapping[str, int],
        sealers: Mapping[str, personal.Sealer | None],
    ) -> "_Rows":
        """The rows of the sessions and turns `regions` change, in one round trip; what
        they hold of the customer, opened."""
        spans, starts, positions = [], [], []
        for chat_uuid, region in regions.items():
            numbers = {*region.new.sessions, *region.old.sessions}
            first = stored[chat_uuid].state.session_number
            if first is not None:
                numbers.add(first)
                starts.append({"chat_uuid": chat_uuid, "number": first, "reach": reach[chat_uuid]})
            if numbers:
                spans.append({"chat_uuid": chat_uuid, "low": min(numbers), "high": max(numbers)})
            positions += [p for p in region.old.turns if p is not None]
        queries: list[tuple[db.Prepared, dict[str, Any]]] = []
        if spans:
            queries.append((_SESSIONS, {"wanted": spans}))
        if starts or positions:
            queries.append((_TURNS, {"wanted": starts, "positions": positions}))
        found = db.read_together(connection, *queries, tables=tables)
        found_sessions = {
            (row["chat_uuid"], row["number"]): _opened_row(
                row, sealers[row["chat_uuid"]], SEALED[sessions]
            )
            for row in (found.pop(0) if spans else ())
        }
        turns, ongoing = {}, {}
        for row in found.pop(0) if found else ():
            turn = {name: row[name] for name in _TURN_COLUMNS}
            if row["ongoing"]:
                ongoing[row["chat_uuid"]] = turn
            else:
                turns[row["position"]] = turn
        return cls(found_chats, found_sessions, turns, ongoing)


class _Unchanged:
    """The stored value stands."""


UNCHANGED: Final = _Unchanged()


class _Change:
    """What one chat's region changes: its rows as they must be now (see the module)."""

    def __init__(
        self,
        connection: Connection,
        tables: db.Tables,
        chat_uuid: str,
        stored: _Stored,
        region: _Region,
        rows: _Rows,
        reach: int,
        source: str,
        sealer: personal.Sealer | None,
    ) -> None:
        self.connection, self.tables = connection, tables
        self.chat_uuid, self.sealer = chat_uuid, sealer
        self.stored, self.region, self.rows, self.reach = stored, region, rows, reach
        found = rows.chats.get(chat_uuid)
        self.source: str = found["source"] if found is not None else source
        self.first = stored.state.session_number  # the session the region begins in
        self._probed: dict[str, Fact | None] = {}

    def _open(self, session_number: int | None) -> bool:
        """Do stored events of this session follow the region (so it ends in it)?"""
        last = self.region.last.placement.session_number
        return not self.region.ended and session_number is not None and session_number == last

    def _open_turn(self, key: int | None) -> bool:
        """Do stored events of this turn (None: the one begun before the region) follow it?"""
        return not self.region.ended and key == self.region.last.turn

    # -- what lies before the region -----------------------------------------------------

    def before(self, sort: str) -> Fact | None:
        """The latest event of a sort (see _BEFORE) in the session the region begins in, at
        or before its start."""
        if sort not in self._probed:
            found = None
            if self.stored.start is not None and self.first is not None:
                values = {"chat": self.chat_uuid, "number": self.first}
                rows = _BEFORE[sort].rows(
                    self.connection, values | _at(self.stored.start[0]), self.tables
                )
                found = _fact(rows[0], self.sealer) if rows else None
            self._probed[sort] = found
        return self._probed[sort]

    # -- sessions ------------------------------------------------------------------------

    def sessions(self) -> tuple[list[dict[str, Any]], list[int]]:
        """The sessions the region changes, as rows; and the numbers of those now gone."""
        new, old = self.region.new.sessions, self.region.old.sessions
        changed, gone = [], []
        for number in sorted({*new, *old}):
            stored = self.rows.sessions.get((self.chat_uuid, number))
            if number not in new and number != self.first:
                gone.append(number)
                continue
            row = self._session(number, new.get(number), old.get(number), stored)
            if row != stored:
                changed.append(row)
        return changed, gone

    def _session(
        self,
        number: int,
        now: SessionSummary | None,
        before: SessionSummary | None,
        stored: dict[str, Any] | None,
    ) -> dict[str, Any]:
        now, before = now or SessionSummary(), before or SessionSummary()
        base = stored or {"messages_in": 0, "messages_out": 0, "handoffs": 0}
        if number == self.first:
            assert stored is not None, f"session {number} of {self.chat_uuid} is not stored"
            opened_at = stored["opened_at"]
        else:
            assert now.opening is not None
            opened_at = now.opening.occurred_at
        last_known = self._latest(number, now.last_known, before.last_known, "known")
        titled = self._latest(number, now.last_titled, before.last_titled, "title")
        context = self._latest(number, now.last_context, before.last_context, "context")
        return {
            "chat_uuid": self.chat_uuid,
            "number": number,
            "opened_at": opened_at,
            "last_activity_at": _value(last_known, "occurred_at", stored, "last_activity_at"),
            "title": _value(titled, "title", stored, "title"),
            "context": _value(context, "context", stored, "context"),
            "teams": self._teams(number, now, before, stored),
            "handoffs": base["handoffs"] - len(before.handed_to) + len(now.handed_to),
            "messages_in": base["messages_in"] - before.messages_in + now.messages_in,
            "messages_out": base["messages_out"] - before.messages_out + now.messages_out,
        }

    def _latest(
        self, number: int, now: Fact | None, before: Fact | None, sort: str
    ) -> Fact | _Unchanged | None:
        """The latest event of a sort in session `number`: unchanged where the region's is
        (or where stored events after the region hold one); else the region's; else the
        latest before the region."""
        if now is before or self._open(number):
            return UNCHANGED
        if now is not None:
            return now
        if number != self.first:
            return None
        if sort == "known":  # the region's start is known, and in this session
            return self.stored.start[0] if self.stored.start else None
        return self.before(sort)

    def _teams(
        self,
        number: int,
        now: SessionSummary,
        before: SessionSummary,
        stored: dict[str, Any] | None,
    ) -> list[int]:
        """The teams of a session in turn: the opening's, then each handoff's."""
        if number != self.first:
            assert now.opening is not None
            assert now.opening.event_team_id is not None
            after: list[int] = []
            if self._open(number) and stored is not None:
                after = stored["teams"][1 + len(before.handed_to) :]
            return [now.opening.event_team_id, *now.handed_to, *after]
        assert stored is not None
        teams: list[int] = stored["teams"]
        if now.handed_to == before.handed_to:
            return teams
        if not self._open(number):
            return [*teams[: len(teams) - len(before.handed_to)], *now.handed_to]
        # Handoffs before and after the region: read, since only their total is known.
        region = {step.fact.position for step in self.region.old_steps}
        values = {"chat": self.chat_uuid, "number": number}
        outside = [
            row
            for row in _HANDOFFS_OF.rows(self.connection, values, self.tables)
            if row["position"] not in region
        ]
        earlier = [row["to_team_id"] for row in outside if row["at"] < self.reach]
        later = [row["to_team_id"] for row in outside if row["at"] >= self.reach]
        return [teams[0], *earlier, *now.handed_to, *later]

    # -- turns ---------------------------------------------------------------------------

    def turns(self) -> tuple[list[dict[str, Any]], list[int]]:
        """The turns the region changes, as rows; and the positions of those now gone."""
        new, old = self.region.new.turns, self.region.old.turns
        ongoing = self.rows.ongoing.get(self.chat_uuid)
        changed: list[dict[str, Any]] = []
        gone = [p for p in old if p is not None and p not in new]
        ordinals: dict[int, int] = {}
        if ongoing is not None:
            ordinals[ongoing["session_number"]] = ongoing["ordinal"]
        shift = None
        for key, turn in new.items():
            stored = ongoing if key is None else self.rows.turns.get(key)
            if key is None:
                if ongoing is None:  # no session before the region: nothing to count
                    continue
                row = dict(ongoing)
            else:
                assert turn.start is not None
                assert turn.start.placement.team_id is not None
                ordinal = ordinals.get(turn.session_number, 0) + 1
                ordinals[turn.session_number] = ordinal
                row = {
                    "position": key,
                    "chat_uuid": self.chat_uuid,
                    "session_number": turn.session_number,
                    "ordinal": ordinal,
                    "source": self.source,
                    "team_id": turn.start.placement.team_id,
                    "started_at": turn.start.fact.occurred_at,
                    "started_by": "opening"
                    if turn.start.placement.kind == "session_opened"
                    else "handoff",
                }
            before = old.get(key)
            first = self._first_reply(key, turn, before, stored)
            last = self._last_reply(key, turn, before)
            row["replied_at"] = _value(first, "occurred_at", stored, "replied_at")
            row["replied_by"] = _value(first, "operator_uuid", stored, "replied_by")
            row["last_operator_uuid"] = _value(last, "operator_uuid", stored, "last_operator_uuid")
            if turn.next is not None:
                row["handed_off_at"] = turn.handed_off_at
            elif self._open_turn(key) and stored is not None:
                row["handed_off_at"] = stored["handed_off_at"]
            else:
                row["handed_off_at"] = None
            if self._open_turn(key) and stored is not None and row["ordinal"] != stored["ordinal"]:
                shift = (
                    row["session_number"],
                    stored["ordinal"],
                    row["ordinal"] - stored["ordinal"],
                )
            if row != stored:
                changed.append(row)
        if shift is not None:  # the turns after the region, in its last session, renumbered
            number, ordinal, by = shift
            values = {"chat": self.chat_uuid, "number": number, "ordinal": ordinal}
            for row in _TURNS_AFTER.rows(self.connection, values, self.tables):
                changed.append({**row, "ordinal": row["ordinal"] + by})
        return changed, gone

    def _first_reply(
        self,
        key: int | None,
        now: TurnSummary,
        before: TurnSummary | None,
        stored: dict[str, Any] | None,
    ) -> Fact | _Unchanged | None:
        if key is None:
            assert stored is not None
            if stored["replied_at"] is not None and stored["replied_at"] < self.reach:
                return UNCHANGED  # a reply before the region came first
        if now.first_reply is _of(before, "first_reply"):
            return UNCHANGED
        return now.first_reply

    def _last_reply(
        self, key: int | None, now: TurnSummary, before: TurnSummary | None
    ) -> Fact | _Unchanged | None:
        if now.last_reply is _of(before, "last_reply"):
            return UNCHANGED
        if now.last_reply is not None or key is not None:
            return now.last_reply
        found = self.before("turn")  # the latest reply, opening or handoff before the region
        return found if found is not None and found.event_type != "session_updated" else None

    # -- the chat ------------------------------------------------------------------------

    def chat(self, phone_region: str) -> dict[str, Any] | None:
        """The chat's row now (None: it has no known event yet)."""
        stored = self.rows.chats.get(self.chat_uuid)
        now, before = self.region.new.chat, self.region.old.chat
        if now.first_known_at is None or now.last_known_at is None:
            return stored
        row: dict[str, Any] = dict(stored) if stored is not None else {"uuid": self.chat_uuid}
        row.setdefault("source", self.source)
        row["first_seen_at"] = min(now.first_known_at, row.get("first_seen_at", INT64_MAX))
        row["last_seen_at"] = max(now.last_known_at, row.get("last_seen_at", -INT64_MAX))
        for name in CHAT_ATTRIBUTES:
            latest = now.latest.get(name)
            if stored is None or latest is not before.latest.get(name):
                row[name] = getattr(latest, name) if latest is not None else None
        if stored is None or row["phone"] != stored["phone"]:  # parsing a number costs
            row |= _phone(row["phone"], phone_region)
        if stored is None or row["name"] != stored["name"]:  # a name can be megabytes
            row["name_digest"] = names.digest(fold_name(row["name"]))
        if self.region.ended:
            row |= self._latest_session(stored)
        return row

    def _latest_session(self, stored: Mapping[str, Any] | None) -> dict[str, Any]:
        """The chat's latest session, its team and operator, as the region leaves them."""
        last = self.region.last.placement
        number = last.session_number
        empty = dict.fromkeys(("operator_uuid", "operator_name", "operator_avatar"))
        if number is None:
            return {"session_number": None, "team_id": None, "team_name": None, **empty}
        now = self.region.new.sessions.get(number)
        before = self.region.old.sessions.get(number)
        event = _of(now, "last_turn_event")
        found: dict[str, Any]
        if (
            event is None
            and _of(before, "last_turn_event") is None
            and stored is not None
            and stored["session_number"] == number
        ):
            found = {name: stored[name] for name in empty}
        else:
            if event is None:
                assert number == self.first, "a session opened within the region has an opening"
                event = self.before("turn")
            operator = operator_of(event)
            found = (
                empty
                if operator is None
                else {
                    "operator_uuid": operator.uuid,
                    "operator_name": operator.name,
                    "operator_avatar": operator.avatar,
                }
            )
        return {
            "session_number": number,
            "team_id": last.team_id,
            "team_name": last.team_name,
            **found,
        }


def _phone(phone: str | None, region: str) -> dict[str, Any]:
    """A chat's phone in E.164, and what searches look it up by."""
    e164 = phones.normalize(phone, region)
    return {"phone_e164": e164, "phone_digest": phones.digest(e164)}


def _opened_row(
    row: Mapping[str, Any], sealer: personal.Sealer | None, columns: Iterable[str]
) -> dict[str, Any]:
    """A stored row with its sealed `columns` opened."""
    return {**row, **{name: personal.opened(sealer, name, row[name]) for name in columns}}


def _sealed_row(
    row: Mapping[str, Any], sealer: personal.Sealer | None, columns: Iterable[str]
) -> dict[str, Any]:
    """A row to store, with its `columns` sealed."""
    return {**row, **{name: personal.sealed(sealer, name, row[name]) for name in columns}}


def _value(
    found: Fact | _Unchanged | None, name: str, stored: Mapping[str, Any] | None, column: str
) -> Any:
    if isinstance(found, _Unchanged):
        return stored[column] if stored is not None else None
    return getattr(found, name) if found is not None else None


def _at(fact: Fact) -> dict[str, Any]:
    """A fact's place in the order, as the statements that read from one take it."""
    return {"at": fact.occurred_at, "rank": fact.rank, "key": fact.dedupe_key}


def _fields(record: Any) -> dict[str, Any]:
    """A dataclass's fields as a dict, shallow: asdict() deep-copies, and that costs."""
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


class _Writes:
    """The rows a batch of folded chats changes, written set-wise on flush."""

    def __init__(
        self,
        phone_region: str,
        sealers: Mapping[str, personal.Sealer | None],
        *,
        fresh: bool,
    ) -> None:
        self.phone_region, self.sealers = phone_region, sealers
        self.fresh = fresh  # nothing stored: every row is new
        self.timeline_new: list[dict[str, Any]] = []
        self.timeline_moved: list[dict[str, Any]] = []
        self.sessions: list[dict[str, Any]] = []
        self.sessions_gone: list[dict[str, Any]] = []
        self.handoffs: list[dict[str, Any]] = []
        self.handoffs_gone: list[int] = []
        self.turns: list[dict[str, Any]] = []
        self.turns_gone: list[int] = []
        self.chats: list[dict[str, Any]] = []

    def whole(
        self, chat_uuid: str, source: str, facts: Iterable[Fact], conversation: Conversation
    ) -> None:
        """A chat folded whole (a rebuild): every row is new."""
        placements = conversation.placements
        for fact in facts:
            self.timeline_new.append(
                {**_fields(fact), "chat_uuid": chat_uuid, **_fields(placements[fact.position])}
            )
        for session in conversation.sessions:
            row = {name: getattr(session, name) for name in _SESSION_COLUMNS if name != "chat_uuid"}
            self.sessions.append({"chat_uuid": chat_uuid, **row})
        owned = {"chat_uuid": chat_uuid, "source": source}
        self.handoffs += [{**_fields(handoff), **owned} for handoff in conversation.handoffs]
        self.turns += [{**_fields(turn), **owned} for turn in conversation.turns]
        seen = conversation.chat
        if seen is None:
            return
        latest = conversation.session
        operator = latest.operator if latest is not None else None
        self.chats.append(
            {
                **_fields(seen),
                "source": source,
                **_phone(seen.phone, self.phone_region),
                "name_digest": names.digest(fold_name(seen.name)),
                "team_id": latest.team_id if latest else None,
                "team_name": latest.team_name if latest else None,
                "operator_uuid": operator.uuid if operator else None,
                "operator_name": operator.name if operator else None,
                "operator_avatar": operator.avatar if operator else None,
                "session_number": latest.number if latest else None,
            }
        )

    def change(self, change: _Change) -> None:
        """What a chat's region changes (see _Change)."""
        chat_uuid, region = change.chat_uuid, change.region
        was = {step.fact.position: step.placement for step in region.old_steps}
        for step in region.steps:
            placement = was.get(step.fact.position)
            if placement is None:
                self.timeline_new.append(
                    {**_fields(step.fact), "chat_uuid": chat_uuid, **_fields(step.placement)}
                )
            elif placement != step.placement:
                self.timeline_moved.append(
                    {"at_position": step.fact.position, **_fields(step.placement)}
                )
        changed, gone = change.sessions()
        self.sessions += changed
        self.sessions_gone += [{"chat_uuid": chat_uuid, "number": number} for number in gone]
        before = {h.position: h for h in region.old.handoffs}
        now = {h.position: h for h in region.new.handoffs}
        self.handoffs += [
            {**_fields(handoff), "chat_uuid": chat_uuid, "source": change.source}
            for position, handoff in now.items()
            if before.get(position) != handoff
        ]
        self.handoffs_gone += [position for position in before if position not in now]
        changed, gone = change.turns()
        self.turns += changed
        self.turns_gone += gone
        stored = change.rows.chats.get(chat_uuid)
        row = change.chat(self.phone_region)
        if row is not None and row != stored:
            self.chats.append(row)

    def flush(self, connection: Connection, tables: db.Tables) -> None:
        """Write the rows into `tables`, the customer's values in them sealed (see
        tables.SEALED)."""
        self._seal()
        db.insert(connection, tables[timeline], self.timeline_new)
        _MOVE.run(connection, self.timeline_moved, tables)
        _SESSION_GONE.run(connection, self.sessions_gone, tables)
        if self.handoffs_gone:
            _HANDOFFS_GONE.run(connection, [{"positions": self.handoffs_gone}], tables)
        if self.turns_gone:
            _TURNS_GONE.run(connection, [{"positions": self.turns_gone}], tables)
        if self.fresh:
            db.insert(connection, tables[sessions], self.sessions)
            db.insert(connection, tables[handoffs], self.handoffs)
            db.insert(connection, tables[waits], self.turns)
            db.insert(connection, tables[chats], self.chats)
            return
        db.upsert(connection, tables[sessions], self.sessions, key=["chat_uuid", "number"])
        db.upsert(connection, tables[handoffs], self.handoffs, key=["position"])
        db.upsert(connection, tables[waits], self.turns, key=["position"])
        db.upsert(connection, tables[chats], self.chats, key=["uuid"])

    def _seal(self) -> None:
        sealers = self.sealers
        for row in self.timeline_new:
            sealer = sealers[row["chat_uuid"]]
            message = row["message"]
            row["message"] = None if message is None else personal.as_json(message)
            for name in SEALED[timeline]:
                row[name] = personal.sealed(sealer, name, row[name])
        columns = SEALED[sessions]
        self.sessions = [_sealed_row(r, sealers[r["chat_uuid"]], columns) for r in self.sessions]
        columns = SEALED[chats]
        self.chats = [_sealed_row(r, sealers[r["uuid"]], columns) for r in self.chats]
