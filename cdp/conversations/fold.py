"""The session rules: one chat's events, in any order, folded into its conversation.

Pure code, no database: the chats projector feeds it a chat's facts, live or on rebuild.
Events are ordered by (occurred_at, rank, dedupe_key): rank puts a session_updated
before other events of the same millisecond (the opening pair can share one), and
the dedupe key, a hash of the body, settles what is left, so that the order never
depends on the order of delivery.

The fold has two halves. `place` walks the facts in order and says where each falls
(its kind, session, team and turn); all it carries from one fact to the next is a
small `State`, so it can start after any fact whose state is known, not only at the
chat's beginning. `summarize` then tells what a run of placed facts says about each
session, turn and the chat: counts, and the first or latest fact of each sort. The
chats projector combines the summary of the run a new event can change with what the
tables hold of the rest, so that the cost of an event follows that run, not its chat.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import islice
from typing import Any, Final

from cdp.log.store import Recorded
from cdp.log.webhook import (
    KNOWN_TYPES,
    MESSAGE_CREATED,
    MESSAGE_UPDATED,
    OPERATOR_REPLIED,
    SESSION_UPDATED,
    identifier,
    team_id,
)

KINDS: Final = {
    MESSAGE_CREATED: "message_in",
    OPERATOR_REPLIED: "operator_reply",
    MESSAGE_UPDATED: "message_updated",
}


@dataclass(frozen=True, slots=True)
class Rules:
    idle_timeout_ms: int
    open_window_ms: int

    @classmethod
    def of(cls, idle_timeout: timedelta, open_window: timedelta) -> "Rules":
        return cls(
            idle_timeout // timedelta(milliseconds=1), open_window // timedelta(milliseconds=1)
        )

    def reach(self, occurred_at: int) -> int:
        """The earliest time a new fact at `occurred_at` can change: its own, or the time of
        a session_updated it could pair with (one within the open window before it).

        No fact placed before this time is placed otherwise for it: a fold resumed from the
        state after the last known fact before it places the new fact as a fold of the
        whole chat would.
        """
        return occurred_at - self.open_window_ms


# Not frozen, though never changed: a frozen dataclass of this size takes four times as
# long to make, and a rebuild makes one per event.
@dataclass(slots=True)
class Fact:
    """What one event says about its chat."""

    position: int
    occurred_at: int
    rank: int
    dedupe_key: str
    event_type: str
    profile_uuid: str | None = None
    platform: str | None = None
    name: str | None = None
    phone: str | None = None
    avatar: str | None = None
    event_team_id: int | None = None
    event_team_name: str | None = None
    title: str | None = None
    context: str | None = None
    operator_uuid: str | None = None
    operator_name: str | None = None
    operator_avatar: str | None = None
    message: dict[str, Any] | None = None

    @property
    def order(self) -> tuple[int, int, str]:
        return (self.occurred_at, self.rank, self.dedupe_key)

    @property
    def known(self) -> bool:
        """Does the event count? Unknown types, and a session_updated without a team, do not."""
        if self.event_type == SESSION_UPDATED:
            return self.event_team_id is not None
        return self.event_type in KNOWN_TYPES


FACT_FIELDS: Final = tuple(Fact.__dataclass_fields__)


def fact_of(recorded: Recorded) -> Fact:
    """What a webhook says about its chat, read leniently: a field of the wrong type is absent.

    Live webhooks were checked already; a logged one is a fact whatever today's checks say.
    """
    position, dedupe_key = recorded.position, recorded.dedupe_key
    webhook = recorded.incoming.webhook
    rank = 0 if webhook.event_type == SESSION_UPDATED else 1
    if webhook.event_type not in KNOWN_TYPES or webhook.document is None:
        return Fact(position, webhook.timestamp, rank, dedupe_key, webhook.event_type)
    payload = _object(webhook.document.get("payload"))
    chat, session = _object(payload.get("chat")), _object(payload.get("session"))
    team, operator = _object(session.get("team")), _object(session.get("operator"))
    message = payload.get("message")
    return Fact(
        position=position,
        occurred_at=webhook.timestamp,
        rank=rank,
        dedupe_key=dedupe_key,
        event_type=webhook.event_type,
        profile_uuid=webhook.profile_uuid,
        platform=_text(chat.get("platform")),
        name=_text(chat.get("name")),
        phone=_text(chat.get("phone")),
        avatar=_text(chat.get("avatar")),
        event_team_id=team_id(team.get("id")),
        event_team_name=_text(team.get("name")),
        title=_text(session.get("title")),
        context=_text(session.get("context")),
        operator_uuid=identifier(operator.get("uuid")),
        operator_name=_text(operator.get("name")),
        operator_avatar=_text(operator.get("avatar")),
        message=message if isinstance(message, dict) else None,
    )


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str | None:
    """PostgreSQL text cannot hold NUL; the read models show U+FFFD, the log keeps the NUL."""
    if not isinstance(value, str):
        return None
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


@dataclass(slots=True)  # not frozen, for the same reason as Fact
class Placement:
    """Where an event falls in its chat: its kind, its session, the team then in charge."""

    kind: str
    session_number: int | None
    team_id: int | None
    team_name: str | None


PLACEMENT_FIELDS: Final = tuple(Placement.__dataclass_fields__)
# The kinds that begin a turn: a team's time with the chat (see Turn).
TURN_STARTS: Final = frozenset({"session_opened", "handoff"})


@dataclass(frozen=True, slots=True)
class State:
    """Where a chat's fold stands after a fact: all that places the facts after it."""

    session_number: int | None = None  # None: before the chat's first session
    team_id: int | None = None
    team_name: str | None = None
    last_known_at: int | None = None  # the time of the latest fact of a known type


BEGINNING: Final = State()


@dataclass(slots=True)
class Step:
    """A fact where it falls, and the turn it falls in: the position of the opening or
    handoff that began that turn, or None for a turn begun before the run (or no session)."""

    fact: Fact
    placement: Placement
    turn: int | None


def place(facts: Sequence[Fact], rules: Rules, start: State = BEGINNING) -> list[Step]:
    """Place facts, given in order, after the facts before them left the fold in `start`.

    A session_updated is placed by the facts within the open window after it: the run
    must hold them, or reach the chat's last fact (see `decided`).
    """
    steps: list[Step] = []
    number, team_id, team_name = start.session_number, start.team_id, start.team_name
    previous_at = start.last_known_at
    turn: int | None = None
    for index, fact in enumerate(facts):
        kind = KINDS.get(fact.event_type, "other")
        if fact.known and fact.event_type == SESSION_UPDATED:
            idle = (
                previous_at is not None and fact.occurred_at - previous_at >= rules.idle_timeout_ms
            )
            if number is None or idle or _opens_pair(facts, index, rules):
                number = number + 1 if number is not None else 1
                kind, turn = "session_opened", fact.position
                team_id = fact.event_team_id
            elif fact.event_team_id != team_id:
                kind, turn = "handoff", fact.position
                team_id = fact.event_team_id
            else:
                kind = "session_updated"
            team_name = fact.event_team_name
        if fact.known:
            previous_at = fact.occurred_at
        steps.append(Step(fact, Placement(kind, number, team_id, team_name), turn))
    return steps


def decided(facts: Sequence[Fact], rules: Rules, *, whole: bool) -> int:
    """How many of `facts` (in order) `place` places for good: all if the run reaches the
    chat's last fact (`whole`); else those before the first session_updated whose open
    window the run may not hold to its end."""
    if whole or not facts:
        return len(facts)
    last = facts[-1].occurred_at
    for index, fact in enumerate(facts):
        if fact.event_type == SESSION_UPDATED and fact.occurred_at + rules.open_window_ms >= last:
            return index
    return len(facts)


def _opens_pair(ordered: Sequence[Fact], index: int, rules: Rules) -> bool:
    """Is this session_updated followed, within the window, by the opening message_created?"""
    start = ordered[index].occurred_at
    for later in islice(ordered, index + 1, None):
        if later.occurred_at - start > rules.open_window_ms:
            return False
        if not later.known:
            continue
        if later.event_type == SESSION_UPDATED:
            return False
        if later.event_type == MESSAGE_CREATED:
            return True
    return False


@dataclass(frozen=True, slots=True)
class Operator:
    uuid: str | None
    name: str | None
    avatar: str | None


def operator_of(event: "Fact | None") -> Operator | None:
    """The operator a session has after its latest opening, handoff or reply: the reply's
    sender; nobody after an opening or a handoff."""
    if event is None or event.event_type != OPERATOR_REPLIED:
        return None
    return Operator(event.operator_uuid, event.operator_name, event.operator_avatar)


@dataclass(frozen=True, slots=True)
class Handoff:
    position: int
    session_number: int
    at: int
    from_team_id: int
    from_team_name: str | None
    to_team_id: int
    to_team_name: str | None
    dedupe_key: str


# The chat's attributes: each is the latest non-null value its known events carry.
CHAT_ATTRIBUTES: Final = ("profile_uuid", "platform", "name", "phone", "avatar")


@dataclass(slots=True)
class SessionSummary:
    """What a run of placed facts says of one session."""

    opening: Fact | None = None
    messages_in: int = 0
    messages_out: int = 0
    handed_to: list[int] = field(default_factory=list)  # each handoff's team, in order
    last_known: Fact | None = None
    last_titled: Fact | None = None
    last_context: Fact | None = None
    # The latest opening, handoff or reply: who the session's operator is (see operator_of).
    last_turn_event: Fact | None = None


@dataclass(slots=True)
class TurnSummary:
    """What a run of placed facts says of one turn: a team's time with the chat, from a
    session's opening or a handoff to the next handoff or the session's end."""

    session_number: int
    start: Step | None = None  # None: begun before the run
    first_reply: Fact | None = None
    last_reply: Fact | None = None
    next: Step | None = None  # the opening or handoff after it, within the run

    @property
    def handed_off_at(self) -> int | None:
        """When a handoff ended it, if one did within the run."""
        after = self.next
        if after is None or after.placement.kind != "handoff":
            return None
        return after.fact.occurred_at


@dataclass(slots=True)
class ChatSummary:
    first_known_at: int | None = None
    last_known_at: int | None = None
    latest: dict[str, Fact] = field(default_factory=dict)  # per attribute (CHAT_ATTRIBUTES)


@dataclass(slots=True)
class Summary:
    """What a run of placed facts says: of each session, of each turn (by the position of
    its first fact; None for the one begun before the run), of the chat, and its handoffs."""

    sessions: dict[int, SessionSummary] = field(default_factory=dict)
    turns: dict[int | None, TurnSummary] = field(default_factory=dict)
    chat: ChatSummary = field(default_factory=ChatSummary)
    handoffs: list[Handoff] = field(default_factory=list)


def summarize(steps: Sequence[Step], start: State = BEGINNING) -> Summary:
    """What `steps`, placed after `start`, say of their sessions, turns and chat."""
    summary = Summary()
    sessions, turns, chat = summary.sessions, summary.turns, summary.chat
    before = start
    current: TurnSummary | None = None
    if start.session_number is not None:  # the turn the run begins in, however it ends
        current = turns[None] = TurnSummary(start.session_number)
    for step in steps:
        fact, placement = step.fact, step.placement
        number, kind = placement.session_number, placement.kind
        if fact.known:
            if chat.first_known_at is None:
                chat.first_known_at = fact.occurred_at
            chat.last_known_at = fact.occurred_at
            for name in CHAT_ATTRIBUTES:
                if getattr(fact, name) is not None:
                    chat.latest[name] = fact
        if number is not None:
            session = sessions.get(number)
            if session is None:
                session = sessions[number] = SessionSummary()
            if kind in TURN_STARTS:
                if current is not None:
                    current.next = step
                current = turns[fact.position] = TurnSummary(number, start=step)
                session.last_turn_event = fact
                if kind == "session_opened":
                    session.opening = fact
                else:
                    assert before.team_id is not None
                    assert placement.team_id is not None
                    session.handed_to.append(placement.team_id)
                    summary.handoffs.append(
                        Handoff(
                            position=fact.position,
                            session_number=number,
                            at=fact.occurred_at,
                            from_team_id=before.team_id,
                            from_team_name=before.team_name,
                            to_team_id=placement.team_id,
                            to_team_name=placement.team_name,
                            dedupe_key=fact.dedupe_key,
                        )
                    )
            elif current is None:
                current = turns[None] = TurnSummary(number)
            if kind == "message_in":
                session.messages_in += 1
            elif kind == "operator_reply":
                session.messages_out += 1
                session.last_turn_event = fact
                if current.first_reply is None:
                    current.first_reply = fact
                current.last_reply = fact
            if fact.known:
                session.last_known = fact
                if fact.title is not None:
                    session.last_titled = fact
                if fact.context is not None:
                    session.last_context = fact
        before = State(number, placement.team_id, placement.team_name)
    return summary


@dataclass(slots=True)
class Session:
    number: int
    opened_at: int
    last_activity_at: int
    team_id: int
    team_name: str | None
    teams: list[int]
    title: str | None = None
    context: str | None = None
    handoffs: int = 0
    messages_in: int = 0
    messages_out: int = 0
    operator: Operator | None = None


@dataclass(slots=True)
class Turn:
    """A team's time with a chat within a session (a row of `waits`)."""

    position: int  # of the opening or handoff that began it
    session_number: int
    ordinal: int  # 1 for the session's first turn, 2 ...
    team_id: int
    started_at: int
    started_by: str  # opening, handoff
    replied_at: int | None  # the first operator reply within it, and who sent it
    replied_by: str | None
    last_operator_uuid: str | None  # who sent its latest reply
    handed_off_at: int | None  # when a handoff ended it


@dataclass(slots=True)
class Chat:
    uuid: str
    first_seen_at: int
    last_seen_at: int
    profile_uuid: str | None = None
    platform: str | None = None
    name: str | None = None
    phone: str | None = None
    avatar: str | None = None


@dataclass(slots=True)
class Conversation:
    """What a chat's facts fold into: where each falls, its sessions, turns and handoffs,
    and the chat attributes they carry (the latest non-null of each)."""

    chat: Chat | None
    placements: dict[int, Placement] = field(default_factory=dict)
    sessions: list[Session] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    handoffs: list[Handoff] = field(default_factory=list)

    @property
    def session(self) -> Session | None:
        """The chat's latest session: its team is the chat's team, its operator the chat's."""
        return self.sessions[-1] if self.sessions else None


def fold(chat_uuid: str, facts: Iterable[Fact], rules: Rules) -> Conversation:
    """Fold all of a chat's facts, in any order."""
    steps = place(sorted(facts, key=lambda fact: fact.order), rules)
    summary = summarize(steps)
    conversation = Conversation(chat=None, handoffs=summary.handoffs)
    conversation.placements = {step.fact.position: step.placement for step in steps}
    known = summary.chat
    if known.first_known_at is not None and known.last_known_at is not None:
        attributes = {name: getattr(fact, name) for name, fact in known.latest.items()}
        conversation.chat = Chat(chat_uuid, known.first_known_at, known.last_known_at, **attributes)
    teams: dict[int, int] = {}  # each session's team as it stands after its last fact
    for step in steps:
        number = step.placement.session_number
        if number is not None and step.placement.team_id is not None:
            teams[number] = step.placement.team_id
    names = {s.placement.session_number: s.placement.team_name for s in steps}
    for number, session in summary.sessions.items():
        opening, last = session.opening, session.last_known
        assert opening is not None
        assert last is not None
        assert opening.event_team_id is not None
        conversation.sessions.append(
            Session(
                number=number,
                opened_at=opening.occurred_at,
                last_activity_at=last.occurred_at,
                team_id=teams[number],
                team_name=names[number],
                teams=[opening.event_team_id, *session.handed_to],
                title=session.last_titled.title if session.last_titled else None,
                context=session.last_context.context if session.last_context else None,
                handoffs=len(session.handed_to),
                messages_in=session.messages_in,
                messages_out=session.messages_out,
                operator=operator_of(session.last_turn_event),
            )
        )
    ordinals: dict[int, int] = {}
    for position, turn in summary.turns.items():
        assert position is not None
        assert turn.start is not None
        ordinals[turn.session_number] = ordinals.get(turn.session_number, 0) + 1
        conversation.turns.append(turn_of(turn, ordinals[turn.session_number]))
    return conversation


def turn_of(turn: TurnSummary, ordinal: int) -> Turn:
    """A turn that began within a run and ends within it (or with the chat's last fact)."""
    assert turn.start is not None
    assert turn.start.placement.team_id is not None
    first, last = turn.first_reply, turn.last_reply
    return Turn(
        position=turn.start.fact.position,
        session_number=turn.session_number,
        ordinal=ordinal,
        team_id=turn.start.placement.team_id,
        started_at=turn.start.fact.occurred_at,
        started_by="opening" if turn.start.placement.kind == "session_opened" else "handoff",
        replied_at=first.occurred_at if first else None,
        replied_by=first.operator_uuid if first else None,
        last_operator_uuid=last.operator_uuid if last else None,
        handed_off_at=turn.handed_off_at,
    )
