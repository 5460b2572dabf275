"""Chats, their sessions, handoffs and timeline: the conversation fold, written to tables.

A new event can change how the chat's later events fall (a late message can split a
session, a late opening can renumber the ones after it), but nothing before the last
session that opened before it (see `Rules.reach`). So each chat a batch touches is
folded again from that opening on, from its stored timeline rows and the new facts,
and only the rows whose content changed are written: the cost of an event follows
the session it lands in, not the length of its chat.
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import (
    ColumnElement,
    Connection,
    RowMapping,
    Table,
    and_,
    bindparam,
    or_,
    select,
    tuple_,
)

from cdp import db
from cdp.log import Recorded
from cdp.models import chats, handoffs, sessions, timeline
from cdp.phones import normalize
from cdp.projectors.conversation import (
    FACT_FIELDS,
    Conversation,
    Fact,
    Placement,
    Rules,
    fact_of,
    fold,
)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_CHUNK: Final = 500  # chats per statement that names them one by one
_PLACEMENT_FIELDS: Final = tuple(Placement.__dataclass_fields__)
_SESSION_COLUMNS: Final = tuple(c.name for c in sessions.columns if c.name != "chat_uuid")


@dataclass(slots=True)
class _Stored:
    """What the tables hold of one chat from the point its new facts can change on.

    `placed` are the timeline's facts from the opening of session `sessions_before + 1`
    (or from the chat's start, or from just after a fact outside any session); `sessions`
    and `handoffs` are the rows of the sessions from there on.
    """

    chat: dict[str, Any] | None = None
    sessions_before: int = 0
    placed: list[tuple[Fact, Placement]] = field(default_factory=list)
    sessions: dict[int, dict[str, Any]] = field(default_factory=dict)
    handoffs: dict[int, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Resume:
    """Where one chat's fold starts again: at an opening, after a fact, or at the start."""

    chat_uuid: str
    sessions_before: int = 0
    opened_at: int | None = None  # the opening of session `sessions_before + 1`
    after: tuple[int, int, str] | None = None  # the order of the last fact kept as it is

    def facts(self) -> ColumnElement[bool]:
        condition = timeline.c.chat_uuid == self.chat_uuid
        if self.opened_at is not None:
            return and_(
                condition,
                timeline.c.occurred_at >= self.opened_at,
                timeline.c.session_number > self.sessions_before,
            )
        if self.after is not None:
            order = tuple_(timeline.c.occurred_at, timeline.c.rank, timeline.c.dedupe_key)
            return and_(condition, order > tuple_(*self.after))
        return condition

    def sessions(self) -> ColumnElement[bool]:
        return and_(
            sessions.c.chat_uuid == self.chat_uuid, sessions.c.number > self.sessions_before
        )

    def handoffs(self) -> ColumnElement[bool]:
        condition = handoffs.c.chat_uuid == self.chat_uuid
        if self.opened_at is not None:
            return and_(condition, handoffs.c.at >= self.opened_at)
        return condition


class ChatsProjector:
    name = "chats"
    tables: tuple[Table, ...] = (timeline, sessions, handoffs, chats)

    def __init__(self, rules: Rules, phone_region: str) -> None:
        self.rules = rules
        self.phone_region = phone_region

    def apply(self, connection: Connection, batch: Sequence[Recorded], *, fresh: bool) -> None:
        """Project new events. `fresh`: the tables hold nothing of their chats yet."""
        new: dict[str, list[Fact]] = defaultdict(list)
        for recorded in batch:
            chat_uuid = recorded.incoming.webhook.chat_uuid
            if chat_uuid is not None:
                new[chat_uuid].append(fact_of(recorded.position, recorded.incoming))
        if not new:
            return
        stored = {} if fresh else self._stored(connection, new)
        writes = _Writes(self.phone_region)
        for chat_uuid, facts in new.items():
            before = stored.get(chat_uuid) or _Stored()
            known = [fact for fact, _ in before.placed]
            conversation = fold(
                chat_uuid, [*known, *facts], self.rules, sessions_before=before.sessions_before
            )
            writes.add(chat_uuid, conversation, facts, before)
        writes.flush(connection)

    def _stored(self, connection: Connection, new: Mapping[str, list[Fact]]) -> dict[str, _Stored]:
        """For each chat, what its new facts can change, read set-wise."""
        chat_uuids = list(new)
        stored = {chat_uuid: _Stored() for chat_uuid in chat_uuids}
        for row in _chunked(connection, select(chats), chats.c.uuid, chat_uuids):
            stored[row["uuid"]].chat = dict(row)
        # Most events land in a chat's latest session, or pair with its opening: the
        # last two sessions settle where to resume for nearly every chat.
        latest = select(sessions).join(chats, chats.c.uuid == sessions.c.chat_uuid)
        latest = latest.where(sessions.c.number >= chats.c.session_number - 1)
        recent: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in _chunked(connection, latest, chats.c.uuid, chat_uuids):
            recent[row["chat_uuid"]].append(dict(row))
        resumes = []
        for chat_uuid, facts in new.items():
            reach = self.rules.reach(min(fact.occurred_at for fact in facts))
            opened = [s for s in recent[chat_uuid] if s["opened_at"] < reach]
            if opened:
                anchor = max(opened, key=lambda s: s["number"])
                resumes.append(_Resume(chat_uuid, anchor["number"] - 1, anchor["opened_at"]))
                for session in recent[chat_uuid]:
                    if session["number"] >= anchor["number"]:
                        stored[chat_uuid].sessions[session["number"]] = _session_row(session)
            elif stored[chat_uuid].chat is None:
                resumes.append(_Resume(chat_uuid))  # no known event yet: nothing to skip
            else:
                resumes.append(_resume_before(connection, chat_uuid, reach))
        for resume in resumes:
            stored[resume.chat_uuid].sessions_before = resume.sessions_before
        for row in _any_of(connection, select(timeline), [r.facts() for r in resumes]):
            fact = Fact(**{name: row[name] for name in FACT_FIELDS})
            placement = Placement(*(row[name] for name in _PLACEMENT_FIELDS))
            stored[row["chat_uuid"]].placed.append((fact, placement))
        unread = [resume for resume in resumes if not stored[resume.chat_uuid].sessions]
        for row in _any_of(connection, select(sessions), [r.sessions() for r in unread]):
            stored[row["chat_uuid"]].sessions[row["number"]] = _session_row(row)
        for row in _any_of(connection, select(handoffs), [r.handoffs() for r in resumes]):
            if row["session_number"] > stored[row["chat_uuid"]].sessions_before:
                stored[row["chat_uuid"]].handoffs[row["position"]] = dict(row)
        return stored


def _resume_before(connection: Connection, chat_uuid: str, reach: int) -> _Resume:
    """Where to resume a chat whose recent sessions all opened at or after `reach`."""
    last = connection.execute(
        select(
            timeline.c.occurred_at,
            timeline.c.rank,
            timeline.c.dedupe_key,
            timeline.c.session_number,
        )
        .where(timeline.c.chat_uuid == chat_uuid, timeline.c.occurred_at < reach)
        .order_by(
            timeline.c.occurred_at.desc(), timeline.c.rank.desc(), timeline.c.dedupe_key.desc()
        )
        .limit(1)
    ).first()
    if last is None:
        return _Resume(chat_uuid)
    if last.session_number is None:
        return _Resume(chat_uuid, after=(last.occurred_at, last.rank, last.dedupe_key))
    opened_at = connection.scalar(
        select(sessions.c.opened_at).where(
            sessions.c.chat_uuid == chat_uuid, sessions.c.number == last.session_number
        )
    )
    assert opened_at is not None, "a timeline row names a session the sessions table lacks"
    return _Resume(chat_uuid, last.session_number - 1, opened_at)


def _chunked(
    connection: Connection, query: Any, column: ColumnElement[Any], values: list[str]
) -> Iterable[RowMapping]:
    """The rows whose `column` is one of `values`, a statement per few hundred of them."""
    for start in range(0, len(values), _CHUNK):
        chunk = values[start : start + _CHUNK]
        yield from connection.execute(query.where(column.in_(chunk))).mappings()


def _any_of(
    connection: Connection, query: Any, conditions: list[ColumnElement[bool]]
) -> Iterable[RowMapping]:
    """The rows matching any of `conditions`, a statement per few hundred of them."""
    for start in range(0, len(conditions), _CHUNK // 2):
        chunk = conditions[start : start + _CHUNK // 2]
        yield from connection.execute(query.where(or_(*chunk))).mappings()


def _session_row(row: Mapping[Any, Any]) -> dict[str, Any]:
    return {column.name: row[column.name] for column in sessions.columns}


def _fields(record: "DataclassInstance") -> dict[str, Any]:
    """A dataclass's fields as a dict, shallow: asdict() deep-copies, and that costs."""
    return {field.name: getattr(record, field.name) for field in fields(record)}


class _Writes:
    """The rows a batch of folded chats changes, written set-wise on flush."""

    def __init__(self, phone_region: str) -> None:
        self.phone_region = phone_region
        self.timeline_new: list[dict[str, Any]] = []
        self.timeline_moved: list[dict[str, Any]] = []
        self.sessions: list[dict[str, Any]] = []
        self.sessions_gone: list[tuple[str, int]] = []
        self.handoffs: list[dict[str, Any]] = []
        self.handoffs_gone: list[int] = []
        self.chats: list[dict[str, Any]] = []

    def add(
        self, chat_uuid: str, conversation: Conversation, new: Iterable[Fact], stored: _Stored
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
        self.sessions_gone.extend((chat_uuid, n) for n in stored.sessions if n not in folded)
        folded = {h.position: {**_fields(h), "chat_uuid": chat_uuid} for h in conversation.handoffs}
        self.handoffs.extend(_changed(folded, stored.handoffs))
        self.handoffs_gone.extend(p for p in stored.handoffs if p not in folded)
        chat = self._chat_row(chat_uuid, conversation, stored.chat)
        if chat is not None and chat != stored.chat:
            self.chats.append(chat)

    def _chat_row(
        self, chat_uuid: str, conversation: Conversation, stored: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """The chat's row: what was stored, with what the refolded facts say on top."""
        seen = conversation.chat
        if seen is None:
            return stored
        row: dict[str, Any] = dict(stored) if stored is not None else {"uuid": chat_uuid}
        row["first_seen_at"] = min(seen.first_seen_at, row.get("first_seen_at", seen.first_seen_at))
        row["last_seen_at"] = max(seen.last_seen_at, row.get("last_seen_at", seen.last_seen_at))
        for name in ("profile_uuid", "platform", "name", "phone", "avatar"):
            value = getattr(seen, name)
            if value is not None or name not in row:
                row[name] = value
        row["phone_e164"] = normalize(row["phone"], self.phone_region)
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
        if self.timeline_new:
            connection.execute(timeline.insert(), self.timeline_new)
        if self.timeline_moved:
            # The other keys of each row (kind, session_number, team) become the SET clause.
            move = timeline.update().where(timeline.c.position == bindparam("at_position"))
            connection.execute(move, self.timeline_moved)
        if self.sessions_gone:
            gone = [
                and_(sessions.c.chat_uuid == chat_uuid, sessions.c.number == number)
                for chat_uuid, number in self.sessions_gone
            ]
            for start in range(0, len(gone), _CHUNK // 2):
                connection.execute(sessions.delete().where(or_(*gone[start : start + _CHUNK // 2])))
        if self.handoffs_gone:
            for start in range(0, len(self.handoffs_gone), _CHUNK):
                chunk = self.handoffs_gone[start : start + _CHUNK]
                connection.execute(handoffs.delete().where(handoffs.c.position.in_(chunk)))
        db.upsert(connection, sessions, self.sessions, key=["chat_uuid", "number"])
        db.upsert(connection, handoffs, self.handoffs, key=["position"])
        db.upsert(connection, chats, self.chats, key=["uuid"])


def _changed(
    folded: dict[Any, dict[str, Any]], stored: dict[Any, dict[str, Any]]
) -> Iterable[dict[str, Any]]:
    return (row for key, row in folded.items() if stored.get(key) != row)
