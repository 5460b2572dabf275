"""Chats, their sessions, handoffs and timeline: the conversation fold, written to tables.

A new event can change how the chat's other events fall (a late message can open a
session that an earlier event sits in), so every chat a batch touches is folded again
from its timeline rows, and only the rows that changed are written.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import fields
from itertools import groupby
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Connection, Table, bindparam, select

from cdp import db, log
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

_FLUSH_ROWS: Final = 2000
_CHUNK: Final = 500


class ChatsProjector:
    name = "chats"
    tables: tuple[Table, ...] = (timeline, sessions, handoffs, chats)

    def __init__(self, rules: Rules, phone_region: str) -> None:
        self.rules = rules
        self.phone_region = phone_region

    def apply(self, connection: Connection, batch: Sequence[Recorded]) -> None:
        new: dict[str, list[Fact]] = defaultdict(list)
        for recorded in batch:
            if recorded.incoming.webhook.chat_uuid is not None:
                new[recorded.incoming.webhook.chat_uuid].append(
                    fact_of(recorded.position, recorded.incoming)
                )
        if not new:
            return
        stored = _stored(connection, list(new))
        writes = _Writes(self.phone_region, replace=True)
        for chat_uuid, facts in new.items():
            placed = stored.get(chat_uuid, {})
            known = [fact for fact, _ in placed.values()]
            conversation = fold(chat_uuid, [*known, *facts], self.rules)
            writes.add(chat_uuid, conversation, facts, placed)
        writes.flush(connection)

    def rebuild(self, connection: Connection) -> None:
        """Fill the emptied tables from the whole log, one chat at a time."""
        writes = _Writes(self.phone_region, replace=False)
        by_chat = groupby(
            log.replay(connection, by_chat=True),
            key=lambda recorded: recorded.incoming.webhook.chat_uuid,
        )
        for chat_uuid, records in by_chat:
            assert chat_uuid is not None
            facts = [fact_of(recorded.position, recorded.incoming) for recorded in records]
            writes.add(chat_uuid, fold(chat_uuid, facts, self.rules), facts, {})
            if writes.size >= _FLUSH_ROWS:
                writes.flush(connection)
        writes.flush(connection)


def _stored(
    connection: Connection, chat_uuids: list[str]
) -> dict[str, dict[int, tuple[Fact, Placement]]]:
    """The facts already on the chats' timelines, with where each one fell."""
    found: dict[str, dict[int, tuple[Fact, Placement]]] = defaultdict(dict)
    for start in range(0, len(chat_uuids), _CHUNK):
        query = select(timeline).where(timeline.c.chat_uuid.in_(chat_uuids[start : start + _CHUNK]))
        for row in connection.execute(query).mappings():
            fact = Fact(**{name: row[name] for name in FACT_FIELDS})
            placement = Placement(
                row["kind"], row["session_number"], row["team_id"], row["team_name"]
            )
            found[row["chat_uuid"]][fact.position] = (fact, placement)
    return found


def _row(record: "DataclassInstance") -> dict[str, Any]:
    """A dataclass's fields as a dict, shallow: asdict() deep-copies, and that costs."""
    return {field.name: getattr(record, field.name) for field in fields(record)}


class _Writes:
    """The rows a batch of folded chats asks for, written set-wise on flush."""

    def __init__(self, phone_region: str, *, replace: bool) -> None:
        self.phone_region = phone_region
        self.replace = replace  # live: a chat's sessions and handoffs are rewritten whole
        self._reset()

    def _reset(self) -> None:
        self.chat_uuids: list[str] = []
        self.timeline_new: list[dict[str, Any]] = []
        self.timeline_moved: list[dict[str, Any]] = []
        self.sessions: list[dict[str, Any]] = []
        self.handoffs: list[dict[str, Any]] = []
        self.chats: list[dict[str, Any]] = []

    @property
    def size(self) -> int:
        return len(self.timeline_new) + len(self.timeline_moved)

    def add(
        self,
        chat_uuid: str,
        conversation: Conversation,
        new: Iterable[Fact],
        stored: dict[int, tuple[Fact, Placement]],
    ) -> None:
        placements = conversation.placements
        self.chat_uuids.append(chat_uuid)
        for fact in new:
            self.timeline_new.append(
                {**_row(fact), "chat_uuid": chat_uuid, **_row(placements[fact.position])}
            )
        for position, (_, placement) in stored.items():
            if placements[position] != placement:
                self.timeline_moved.append({"at_position": position, **_row(placements[position])})
        for session in conversation.sessions:
            row = _row(session)
            for name in ("team_id", "team_name", "operator"):
                del row[name]
            self.sessions.append({**row, "chat_uuid": chat_uuid})
        self.handoffs.extend({**_row(h), "chat_uuid": chat_uuid} for h in conversation.handoffs)
        if conversation.chat is not None:
            self.chats.append(self._chat_row(conversation))

    def _chat_row(self, conversation: Conversation) -> dict[str, Any]:
        assert conversation.chat is not None
        session, operator = conversation.session, None
        if session is not None:
            operator = session.operator
        return {
            **_row(conversation.chat),
            "phone_e164": normalize(conversation.chat.phone, self.phone_region),
            "team_id": session.team_id if session else None,
            "team_name": session.team_name if session else None,
            "operator_uuid": operator.uuid if operator else None,
            "operator_name": operator.name if operator else None,
            "operator_avatar": operator.avatar if operator else None,
            "session_number": session.number if session else None,
        }

    def flush(self, connection: Connection) -> None:
        if self.replace and self.chat_uuids:
            for start in range(0, len(self.chat_uuids), _CHUNK):
                chunk = self.chat_uuids[start : start + _CHUNK]
                connection.execute(sessions.delete().where(sessions.c.chat_uuid.in_(chunk)))
                connection.execute(handoffs.delete().where(handoffs.c.chat_uuid.in_(chunk)))
        for table, rows in (
            (timeline, self.timeline_new),
            (sessions, self.sessions),
            (handoffs, self.handoffs),
        ):
            if rows:
                connection.execute(table.insert(), rows)
        if self.timeline_moved:
            # The other keys of each row (kind, session_number, team) become the SET clause.
            move = timeline.update().where(timeline.c.position == bindparam("at_position"))
            connection.execute(move, self.timeline_moved)
        db.upsert(connection, chats, self.chats, key=["uuid"])
        self._reset()
