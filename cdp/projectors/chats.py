"""Chats, their sessions, handoffs and timeline: the conversation fold, written to tables.

Most events arrive in order: each falls after every stored event of its chat, beyond
the open window, and changes none of them. Such a chat is folded on from its stored
state (its row and its latest session's), with the new facts alone.

A late event can change how the chat's later events fall (a late message can split a
session, a late opening can renumber the ones after it), but nothing before the last
session that opened before it (see `Rules.reach`). So such a chat is folded again from
that opening on, from its stored timeline rows and the new facts.

Either way only the rows whose content changed are written: the cost of an event follows
the session it lands in, or nothing at all, never the length of its chat.
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    and_,
    bindparam,
    func,
    select,
    tuple_,
)

from cdp import db
from cdp.log import Recorded
from cdp.models import chats, handoffs, sessions, timeline
from cdp.names import search_key
from cdp.phones import normalize
from cdp.projectors.conversation import (
    FACT_FIELDS,
    Conversation,
    Fact,
    Operator,
    Placement,
    Rules,
    Session,
    Tail,
    fact_of,
    fold,
)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_PLACEMENT_FIELDS: Final = tuple(Placement.__dataclass_fields__)
_SESSION_COLUMNS: Final = tuple(c.name for c in sessions.columns if c.name != "chat_uuid")
_CHAT_COLUMNS: Final = tuple(c.name for c in chats.columns)


# Prepared once (see db.Prepared). Those that read a batch's chats take their uuids as the
# list parameter "chats".
_NAMED: Final = db.among(chats.c.uuid, "chats")


def _from_latest_opening(table: Table, at: ColumnElement[int], back: int) -> db.Prepared:
    """The rows of `table` from the opening of a chat's latest session (less `back`) on."""
    opening = and_(
        sessions.c.chat_uuid == chats.c.uuid, sessions.c.number == chats.c.session_number - back
    )
    since = and_(
        table.c.chat_uuid == chats.c.uuid,
        at >= sessions.c.opened_at,
        table.c.session_number >= sessions.c.number,
    )
    query = select(table).select_from(chats.join(sessions, opening).join(table, since))
    return db.Prepared(query.where(_NAMED))


_LATEST: Final = sessions.alias("latest")
# Each chat's row, its latest session's row (columns named latest_*), and the time of its
# last stored event of any kind: an index probe, however long the chat.
_CHATS: Final = db.Prepared(
    select(
        chats,
        *(column.label(f"latest_{column.name}") for column in _LATEST.c),
        select(func.max(timeline.c.occurred_at))
        .where(timeline.c.chat_uuid == chats.c.uuid)
        .scalar_subquery()
        .label("last_event_at"),
    )
    .select_from(
        chats.outerjoin(
            _LATEST,
            and_(_LATEST.c.chat_uuid == chats.c.uuid, _LATEST.c.number == chats.c.session_number),
        )
    )
    .where(_NAMED)
)
_TIMELINE_OF: Final = db.Prepared(select(timeline).where(db.among(timeline.c.chat_uuid, "chats")))
_LAST_TWO_SESSIONS: Final = db.Prepared(
    select(sessions)
    .join(chats, chats.c.uuid == sessions.c.chat_uuid)
    .where(sessions.c.number >= chats.c.session_number - 1, _NAMED)
)
# [back]: from the latest session's opening, or from the one before. Two statements, not
# one reading both: what a webhook reads then follows the session it lands in alone.
_FACTS_SINCE: Final = [
    _from_latest_opening(timeline, timeline.c.occurred_at, back) for back in (0, 1)
]
_HANDOFFS_SINCE: Final = [_from_latest_opening(handoffs, handoffs.c.at, back) for back in (0, 1)]
_MOVE: Final = db.Prepared(
    timeline.update()
    .where(timeline.c.position == bindparam("at_position"))
    .values({name: bindparam(name, type_=timeline.c[name].type) for name in _PLACEMENT_FIELDS})
)
_SESSION_GONE: Final = db.Prepared(
    sessions.delete().where(
        sessions.c.chat_uuid == bindparam("chat_uuid"), sessions.c.number == bindparam("number")
    )
)
_HANDOFFS_GONE: Final = db.Prepared(
    handoffs.delete().where(db.among(handoffs.c.position, "positions"))
)


@dataclass(slots=True)
class _Stored:
    """What the tables hold of one chat from the point its new facts can change on.

    `tail`: the new facts fall after every stored one and are folded on from there; then
    `sessions` holds the latest session's row alone. Otherwise `placed` are the timeline's
    facts from the opening of session `sessions_before + 1` (or from the chat's start, or
    from just after a fact outside any session); `sessions` and `handoffs` are the rows of
    the sessions from there on.
    """

    chat: dict[str, Any] | None = None
    tail: Tail | None = None
    sessions_before: int = 0
    placed: list[tuple[Fact, Placement]] = field(default_factory=list)
    sessions: dict[int, dict[str, Any]] = field(default_factory=dict)
    handoffs: dict[int, dict[str, Any]] = field(default_factory=dict)

    def place(self, row: Mapping[Any, Any]) -> None:
        fact = Fact(**{name: row[name] for name in FACT_FIELDS})
        self.placed.append((fact, Placement(*(row[name] for name in _PLACEMENT_FIELDS))))


class ChatsProjector:
    name = "chats"
    version = 2  # 2: chats.name_key
    tables: tuple[Table, ...] = (timeline, sessions, handoffs, chats)
    reads: tuple[str, ...] = ()

    def __init__(self, rules: Rules, phone_region: str) -> None:
        self.rules = rules
        self.phone_region = phone_region
        self.shape = (
            f"session_idle_timeout={rules.idle_timeout_ms}ms "
            f"session_open_window={rules.open_window_ms}ms phone_region={phone_region}"
        )

    def apply(self, connection: Connection, batch: Sequence[Recorded], *, fresh: bool) -> None:
        """Project new events. `fresh`: the tables hold nothing of their chats yet."""
        new: dict[str, list[Fact]] = defaultdict(list)
        # A chat belongs to the source of its first event (see owners): a log older than
        # owners may hold some of another.
        sources: dict[str, str] = {}
        for recorded in batch:
            chat_uuid = recorded.incoming.webhook.chat_uuid
            if chat_uuid is not None:
                new[chat_uuid].append(fact_of(recorded))
                sources.setdefault(chat_uuid, recorded.incoming.source)
        if not new:
            return
        stored = {} if fresh else self._stored(connection, new)
        writes = _Writes(self.phone_region, fresh=fresh)
        for chat_uuid, facts in new.items():
            before = stored.get(chat_uuid) or _Stored()
            if before.tail is not None:
                conversation = fold(chat_uuid, facts, self.rules, after=before.tail)
            else:
                known = [fact for fact, _ in before.placed]
                conversation = fold(
                    chat_uuid, [*known, *facts], self.rules, sessions_before=before.sessions_before
                )
            writes.add(chat_uuid, sources[chat_uuid], conversation, facts, before)
        writes.flush(connection)

    def _stored(self, connection: Connection, new: Mapping[str, list[Fact]]) -> dict[str, _Stored]:
        """For each chat, what its new facts can change, read set-wise."""
        stored = {chat_uuid: _Stored() for chat_uuid in new}
        reach = {
            chat_uuid: self.rules.reach(min(f.occurred_at for f in facts))
            for chat_uuid, facts in new.items()
        }
        for row in _CHATS.rows(connection, {"chats": list(new)}):
            chat = stored[row["uuid"]]
            chat.chat = {name: row[name] for name in _CHAT_COLUMNS}
            last_event_at = row["last_event_at"]
            # Every new fact falls after every stored one, beyond the open window.
            if last_event_at is not None and last_event_at < reach[row["uuid"]]:
                latest = _latest_session(row)
                chat.tail = Tail(_resumed(latest, chat.chat), row["last_seen_at"])
                chat.sessions = {latest["number"]: latest} if latest is not None else {}
        late = [c for c in new if stored[c].chat is not None and stored[c].tail is None]
        # A late event most often lands in a chat's latest session, or pairs with its
        # opening: the last two sessions settle where to resume for nearly every chat.
        recent: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in _LAST_TWO_SESSIONS.rows(connection, {"chats": late}) if late else ():
            recent[row["chat_uuid"]].append(_session_row(row))
        back: tuple[list[str], list[str]] = ([], [])  # resumed at the latest opening, or before
        beginning, elsewhere = [], []
        for chat_uuid in new:
            chat = stored[chat_uuid]
            if chat.tail is not None:
                continue
            opened = [s for s in recent[chat_uuid] if s["opened_at"] < reach[chat_uuid]]
            if opened:
                anchor = max(s["number"] for s in opened)
                chat.sessions_before = anchor - 1
                chat.sessions = {s["number"]: s for s in recent[chat_uuid] if s["number"] >= anchor}
                back[max(chat.sessions) - anchor].append(chat_uuid)
            elif chat.chat is None:
                beginning.append(chat_uuid)  # no known event yet: no session, no handoff
            else:
                elsewhere.append(chat_uuid)
        for steps, chat_uuids in enumerate(back):
            if not chat_uuids:
                continue
            for row in _FACTS_SINCE[steps].rows(connection, {"chats": chat_uuids}):
                stored[row["chat_uuid"]].place(row)
            for row in _HANDOFFS_SINCE[steps].rows(connection, {"chats": chat_uuids}):
                stored[row["chat_uuid"]].handoffs[row["position"]] = row
        for row in _TIMELINE_OF.rows(connection, {"chats": beginning}) if beginning else ():
            stored[row["chat_uuid"]].place(row)
        for chat_uuid in elsewhere:  # a late event before the last two sessions: rare
            _read_before(connection, stored[chat_uuid], chat_uuid, reach[chat_uuid])
        return stored


def _read_before(connection: Connection, chat: _Stored, chat_uuid: str, reach: int) -> None:
    """Read what a chat holds from the last opening (or the last fact) before `reach`."""
    named = {"chat": chat_uuid}
    found = _LAST_BEFORE.rows(connection, {**named, "reach": reach})
    last = found[0] if found else None
    since = 0  # the first session whose handoffs are read
    if last is None:  # nothing before: the whole chat
        facts = _TIMELINE_OF.rows(connection, {"chats": [chat_uuid]})
    elif last["session_number"] is None:  # no session yet: resume just after it
        after = {"at": last["occurred_at"], "rank": last["rank"], "key": last["dedupe_key"]}
        facts = _FACTS_AFTER.rows(connection, {**named, **after})
    else:
        since = last["session_number"]
        opened = _OPENED_AT.rows(connection, {**named, "number": since})
        assert opened, "a timeline row names a session the sessions table lacks"
        chat.sessions_before = since - 1
        facts = _FACTS_FROM.rows(
            connection, {**named, "opened_at": opened[0]["opened_at"], "number": since}
        )
    for row in facts:
        chat.place(row)
    for row in _SESSIONS_AFTER.rows(connection, {**named, "number": chat.sessions_before}):
        chat.sessions[row["number"]] = _session_row(row)
    for row in _HANDOFFS_FROM.rows(connection, {**named, "number": since}):
        chat.handoffs[row["position"]] = row


_CHAT: Final = timeline.c.chat_uuid == bindparam("chat")
_ORDER: Final = (timeline.c.occurred_at, timeline.c.rank, timeline.c.dedupe_key)
_LAST_BEFORE: Final = db.Prepared(
    select(*_ORDER, timeline.c.session_number)
    .where(_CHAT, timeline.c.occurred_at < bindparam("reach"))
    .order_by(*(column.desc() for column in _ORDER))
    .limit(1)
)
_OPENED_AT: Final = db.Prepared(
    select(sessions.c.opened_at).where(
        sessions.c.chat_uuid == bindparam("chat"), sessions.c.number == bindparam("number")
    )
)
_FACTS_AFTER: Final = db.Prepared(
    select(timeline).where(
        _CHAT, tuple_(*_ORDER) > tuple_(bindparam("at"), bindparam("rank"), bindparam("key"))
    )
)
_FACTS_FROM: Final = db.Prepared(
    select(timeline).where(
        _CHAT,
        timeline.c.occurred_at >= bindparam("opened_at"),
        timeline.c.session_number >= bindparam("number"),
    )
)
_SESSIONS_AFTER: Final = db.Prepared(
    select(sessions).where(
        sessions.c.chat_uuid == bindparam("chat"), sessions.c.number > bindparam("number")
    )
)
_HANDOFFS_FROM: Final = db.Prepared(
    select(handoffs).where(
        handoffs.c.chat_uuid == bindparam("chat"),
        handoffs.c.session_number >= bindparam("number"),
    )
)


def _session_row(row: Mapping[Any, Any]) -> dict[str, Any]:
    return {column.name: row[column.name] for column in sessions.columns}


def _latest_session(row: Mapping[Any, Any]) -> dict[str, Any] | None:
    """The latest session's row, read by _CHATS beside its chat's; None if it has none."""
    if row["latest_number"] is None:
        return None
    return {column.name: row[f"latest_{column.name}"] for column in sessions.columns}


def _resumed(latest: Mapping[str, Any] | None, chat: Mapping[str, Any]) -> Session | None:
    """The chat's latest session as the fold left it: its team and operator are the chat's."""
    if latest is None:
        return None
    names = (chat["operator_uuid"], chat["operator_name"], chat["operator_avatar"])
    return Session(
        number=latest["number"],
        opened_at=latest["opened_at"],
        last_activity_at=latest["last_activity_at"],
        team_id=chat["team_id"],
        team_name=chat["team_name"],
        teams=list(latest["teams"]),
        title=latest["title"],
        context=latest["context"],
        handoffs=latest["handoffs"],
        messages_in=latest["messages_in"],
        messages_out=latest["messages_out"],
        operator=Operator(*names) if any(name is not None for name in names) else None,
    )


def _fields(record: "DataclassInstance") -> dict[str, Any]:
    """A dataclass's fields as a dict, shallow: asdict() deep-copies, and that costs."""
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


class _Writes:
    """The rows a batch of folded chats changes, written set-wise on flush."""

    def __init__(self, phone_region: str, *, fresh: bool) -> None:
        self.phone_region = phone_region
        self.fresh = fresh  # nothing stored: every row is new
        self.timeline_new: list[dict[str, Any]] = []
        self.timeline_moved: list[dict[str, Any]] = []
        self.sessions: list[dict[str, Any]] = []
        self.sessions_gone: list[dict[str, Any]] = []
        self.handoffs: list[dict[str, Any]] = []
        self.handoffs_gone: list[int] = []
        self.chats: list[dict[str, Any]] = []

    def add(
        self,
        chat_uuid: str,
        source: str,
        conversation: Conversation,
        new: Iterable[Fact],
        stored: _Stored,
    ) -> None:
        placements = conversation.placements
        for fact in new:
            self.timeline_new.append(
                {**_fields(fact), "chat_uuid": chat_uuid, **_fields(placements[fact.position])}
            )
        for fact, placement in stored.placed:
            if placements[fact.position] != placement:
                moved = _fields(placements[fact.position])
                self.timeline_moved.append({"at_position": fact.position, **moved})
        folded = {}
        for session in conversation.sessions:
            row = {name: getattr(session, name) for name in _SESSION_COLUMNS}
            folded[session.number] = {"chat_uuid": chat_uuid, **row}
        self.sessions.extend(_changed(folded, stored.sessions))
        self.sessions_gone.extend(
            {"chat_uuid": chat_uuid, "number": n} for n in stored.sessions if n not in folded
        )
        folded = {
            h.position: {**_fields(h), "chat_uuid": chat_uuid, "source": source}
            for h in conversation.handoffs
        }
        self.handoffs.extend(_changed(folded, stored.handoffs))
        self.handoffs_gone.extend(p for p in stored.handoffs if p not in folded)
        chat = self._chat_row(chat_uuid, source, conversation, stored.chat)
        if chat is not None and chat != stored.chat:
            self.chats.append(chat)

    def _chat_row(
        self,
        chat_uuid: str,
        source: str,
        conversation: Conversation,
        stored: dict[str, Any] | None,
    ) -> dict[str, Any] | None:
        """The chat's row: what was stored, with what the refolded facts say on top."""
        seen = conversation.chat
        if seen is None:
            return stored
        row: dict[str, Any] = dict(stored) if stored is not None else {"uuid": chat_uuid}
        row.setdefault("source", source)
        row["first_seen_at"] = min(seen.first_seen_at, row.get("first_seen_at", seen.first_seen_at))
        row["last_seen_at"] = max(seen.last_seen_at, row.get("last_seen_at", seen.last_seen_at))
        for name in ("profile_uuid", "platform", "name", "phone", "avatar"):
            value = getattr(seen, name)
            if value is not None or name not in row:
                row[name] = value
        if stored is None or row["phone"] != stored["phone"]:  # parsing a number costs
            row["phone_e164"] = normalize(row["phone"], self.phone_region)
        if stored is None or row["name"] != stored["name"]:  # a name can be megabytes
            row["name_key"] = search_key(row["name"])
        session = conversation.session
        if session is not None:  # folded from an opening on: the latest session is among these
            operator = session.operator
            row |= {
                "team_id": session.team_id,
                "team_name": session.team_name,
                "operator_uuid": operator.uuid if operator else None,
                "operator_name": operator.name if operator else None,
                "operator_avatar": operator.avatar if operator else None,
                "session_number": session.number,
            }
        elif stored is None:
            row |= dict.fromkeys(
                ("team_id", "team_name", "operator_uuid", "operator_name", "operator_avatar"),
            ) | {"session_number": None}
        return row

    def flush(self, connection: Connection) -> None:
        db.insert(connection, timeline, self.timeline_new)
        _MOVE.run(connection, self.timeline_moved)
        _SESSION_GONE.run(connection, self.sessions_gone)
        if self.handoffs_gone:
            _HANDOFFS_GONE.run(connection, [{"positions": self.handoffs_gone}])
        if self.fresh:
            db.insert(connection, sessions, self.sessions)
            db.insert(connection, handoffs, self.handoffs)
            db.insert(connection, chats, self.chats)
            return
        db.upsert(connection, sessions, self.sessions, key=["chat_uuid", "number"])
        db.upsert(connection, handoffs, self.handoffs, key=["position"])
        db.upsert(connection, chats, self.chats, key=["uuid"])


def _changed(
    folded: dict[Any, dict[str, Any]], stored: dict[Any, dict[str, Any]]
) -> Iterable[dict[str, Any]]:
    return (row for key, row in folded.items() if stored.get(key) != row)
