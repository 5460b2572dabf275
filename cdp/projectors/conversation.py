"""The session rules: one chat's events, in any order, folded into its conversation.

Pure code, no database: the chats projector feeds it a chat's facts, live or on rebuild.
Events are ordered by (occurred_at, rank, dedupe_key): rank puts a session_updated
before other events of the same millisecond (the opening pair can share one), and
the dedupe key, a hash of the body, settles what is left, so that the order never
depends on the order of delivery.

A fold can start at a session's opening instead of the chat's first event: nothing
before an opening shapes what comes after it, so a late event is folded with the
facts from the opening before it (see `Rules.reach`), not with the whole chat. Events
that fall after every fact folded so far, beyond the open window, change none of
them: they are folded on from the state those facts left (a `Tail`), alone.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import islice
from typing import Any, Final

from cdp.log import Recorded
from cdp.webhook import (
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

        A session opened strictly before this time opens whatever is added at or after
        `occurred_at`, so a fold resumed at that opening places the new fact as a fold of
        the whole chat would.
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


@dataclass(frozen=True, slots=True)
class Operator:
    uuid: str | None
    name: str | None
    avatar: str | None


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


@dataclass(frozen=True, slots=True)
class Tail:
    """The state a chat's folded facts leave: its latest session as it stands (None before
    the first), and the time of its last event of a known type."""

    session: Session | None
    last_known_at: int


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
    """What a run of a chat's facts folds into: where each falls, its sessions and handoffs,
    and the chat attributes those facts carry (the latest non-null of each)."""

    chat: Chat | None
    placements: dict[int, Placement] = field(default_factory=dict)
    sessions: list[Session] = field(default_factory=list)
    handoffs: list[Handoff] = field(default_factory=list)

    @property
    def session(self) -> Session | None:
        """The chat's latest session: its team is the chat's team, its operator the chat's."""
        return self.sessions[-1] if self.sessions else None


def fold(
    chat_uuid: str,
    facts: Iterable[Fact],
    rules: Rules,
    *,
    sessions_before: int = 0,
    after: Tail | None = None,
) -> Conversation:
    """Fold a chat's facts: all of them; or those from the opening of session
    `sessions_before + 1` on (that opening is then the first fact, and opens again); or
    facts that all fall later than the open window after every fact folded before, on from
    the `Tail` those left (its session is updated in place and is the conversation's first)."""
    ordered = sorted(facts, key=lambda fact: fact.order)
    conversation = Conversation(chat=None)
    session: Session | None = None
    previous_at: int | None = None  # the chat's previous event of a known type
    if after is not None:
        session, previous_at = after.session, after.last_known_at
        if session is not None:
            conversation.sessions.append(session)
            sessions_before = session.number - 1
    for index, fact in enumerate(ordered):
        if fact.known and fact.event_type == SESSION_UPDATED:
            assert fact.event_team_id is not None
            idle = (
                previous_at is not None and fact.occurred_at - previous_at >= rules.idle_timeout_ms
            )
            if session is None or idle or _opens_pair(ordered, index, rules):
                session = Session(
                    number=sessions_before + len(conversation.sessions) + 1,
                    opened_at=fact.occurred_at,
                    last_activity_at=fact.occurred_at,
                    team_id=fact.event_team_id,
                    team_name=fact.event_team_name,
                    teams=[fact.event_team_id],
                )
                conversation.sessions.append(session)
                kind = "session_opened"
            elif fact.event_team_id != session.team_id:
                conversation.handoffs.append(
                    Handoff(
                        position=fact.position,
                        session_number=session.number,
                        at=fact.occurred_at,
                        from_team_id=session.team_id,
                        from_team_name=session.team_name,
                        to_team_id=fact.event_team_id,
                        to_team_name=fact.event_team_name,
                        dedupe_key=fact.dedupe_key,
                    )
                )
                session.team_id, session.team_name = fact.event_team_id, fact.event_team_name
                session.teams.append(fact.event_team_id)
                session.handoffs += 1
                session.operator = None
                kind = "handoff"
            else:
                session.team_name = fact.event_team_name
                kind = "session_updated"
        else:
            kind = KINDS.get(fact.event_type, "other")
            if session is not None and fact.event_type == MESSAGE_CREATED:
                session.messages_in += 1
            elif session is not None and fact.event_type == OPERATOR_REPLIED:
                session.messages_out += 1
                session.operator = Operator(
                    fact.operator_uuid, fact.operator_name, fact.operator_avatar
                )
        if fact.known:
            previous_at = fact.occurred_at
            _observe(conversation, chat_uuid, fact)
            if session is not None:
                session.last_activity_at = fact.occurred_at
                session.title = fact.title if fact.title is not None else session.title
                session.context = fact.context if fact.context is not None else session.context
        conversation.placements[fact.position] = Placement(
            kind=kind,
            session_number=session.number if session else None,
            team_id=session.team_id if session else None,
            team_name=session.team_name if session else None,
        )
    return conversation


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


def _observe(conversation: Conversation, chat_uuid: str, fact: Fact) -> None:
    """Chat attributes are the latest non-null values; the profile the latest one named."""
    chat = conversation.chat
    if chat is None:
        chat = conversation.chat = Chat(chat_uuid, fact.occurred_at, fact.occurred_at)
    chat.last_seen_at = fact.occurred_at
    for name in ("profile_uuid", "platform", "name", "phone", "avatar"):
        value = getattr(fact, name)
        if value is not None:
            setattr(chat, name, value)
