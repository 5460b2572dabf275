"""What the API answers: read models as pydantic schemas, times as UTC datetimes."""

import json
from datetime import datetime
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, PlainSerializer

from cdp.times import iso

T = TypeVar("T")
SessionState = Literal["open", "idle"]
Kind = Literal[
    "session_opened",
    "handoff",
    "session_updated",
    "message_in",
    "operator_reply",
    "message_updated",
    "other",
]


Instant = Annotated[datetime, PlainSerializer(iso, return_type=str)]


class RawJSON:
    """JSON text answered as it is, never parsed again: a logged body, however deep."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RawJSON) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"RawJSON({self.text!r})"

    @classmethod
    def of(cls, text: str) -> "RawJSON":
        """`text`, if it is JSON; text that is not (only ever written around cdp) as a string."""
        try:
            json.loads(text, parse_constant=_not_json)
        except (ValueError, RecursionError):
            return cls(json.dumps(text))
        return cls(text)


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


class Team(BaseModel):
    id: int
    name: str | None


class Operator(BaseModel):
    uuid: str | None
    name: str | None
    avatar: str | None


class ProfileChat(BaseModel):
    uuid: str
    platform: str | None
    name: str | None
    phone: str | None
    avatar: str | None
    first_seen_at: Instant
    last_seen_at: Instant


class Profile(BaseModel):
    """A customer's own fields, then the first page of their chats: `chats_next` is the
    `after` of the next (GET /profiles/{uuid}/chats), null if there is none."""

    uuid: str
    phones: list[str]
    names: list[str]
    first_seen_at: Instant
    last_seen_at: Instant
    merged_into: str | None
    chats: list[ProfileChat]
    chats_next: str | None


class CurrentSession(BaseModel):
    number: int
    opened_at: Instant
    last_activity_at: Instant
    title: str | None
    context: str | None
    state: SessionState


class Chat(BaseModel):
    uuid: str
    profile_uuid: str | None
    platform: str | None
    name: str | None
    phone: str | None
    avatar: str | None
    team: Team | None
    operator: Operator | None
    session: CurrentSession | None
    first_seen_at: Instant
    last_seen_at: Instant
    source: str  # the source its webhooks come from


class Session(BaseModel):
    number: int
    opened_at: Instant
    last_activity_at: Instant
    state: SessionState
    teams: list[int]
    handoffs: int
    messages_in: int
    messages_out: int


class Handoff(BaseModel):
    chat_uuid: str
    at: Instant
    session_number: int
    from_team: Team
    to_team: Team
    position: int
    source: str


class Turn(BaseModel):
    """A team's turn with a chat: from a session's opening (`ordinal` 1) or a handoff to
    the team, at `position` in the log, until the next; the first reply under the team."""

    position: int
    session_number: int
    ordinal: int
    team_id: int
    started_at: Instant
    started_by: Literal["opening", "handoff"]
    replied_at: Instant | None
    replied_by: str | None


class TimelineItem(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    position: int
    occurred_at: Instant
    event_type: str
    kind: Kind
    session_number: int | None
    team: Team | None
    operator: Operator | None
    message: RawJSON | None


class Event(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    position: int
    event_type: str
    occurred_at: Instant
    received_at: Instant
    chat_uuid: str | None
    profile_uuid: str | None
    source: str
    body: RawJSON
    # The body's personal data was erased: `body` holds only its other fields.
    erased: bool
    # Why the body could not be opened, though not erased (then `body` holds only the
    # fields that are no personal data): its key is missing from the keystore (the wrong
    # keystore, or one restored from before the event), or the sealed copy was changed.
    unreadable: str | None = None
    # Chained over the event before it (cdp verify); None only if the row was tampered with.
    hash: str | None


class Refusal(BaseModel):
    """A delivery refused as bad input, without its body."""

    id: int
    received_at: Instant
    source: str
    status: int
    reason: str
    size: int


class Rejected(Refusal):
    """A delivery refused as bad input: `body` is its text if it is UTF-8, else
    `body_base64` its bytes."""

    headers: dict[str, str]
    body: str | None
    body_base64: str | None


class RejectedPage(BaseModel):
    items: list[Rejected]
    next_after: int | None


class KnownTeam(BaseModel):
    """A team the events named, by the latest name they gave it."""

    id: int
    name: str | None
    source: str
    first_seen_at: Instant
    last_seen_at: Instant


class Band(BaseModel):
    """Waits answered in a band of time: at or after the band before's bound (or at once),
    before `below_seconds` (None: no bound, the last band)."""

    below_seconds: int | None
    answered: int


class FirstResponses(BaseModel):
    """How long customers waited for a first reply: over the waits that got one, from a
    session's opening or a handoff to the first operator reply under the team; how many
    within 1, 5 and 15 minutes, 1 and 4 hours, and beyond (`bands`)."""

    answered: int
    median_seconds: float | None  # None when no wait got a reply
    p90_seconds: float | None
    bands: list[Band]


class TeamStats(BaseModel):
    """A team's figures for a period: what began or happened at or after `since`, before
    `until` (a wait counts in the period it began in)."""

    team: Team
    since: Instant | None
    until: Instant | None
    sessions_opened: int  # sessions that opened with the team
    handoffs_in: int
    handoffs_out: int
    customer_messages: int  # written while the chat was the team's
    operator_replies: int
    first_response: FirstResponses
    unanswered: int  # waits with no reply under the team (yet)


class OperatorStats(BaseModel):
    """An operator's figures for a period. Webhooks name an operator only in their replies
    (assigning one sends none), so what counts is what they did: the sessions they replied
    in, their replies, the waits their reply ended first, and the handoffs of chats whose
    latest reply under the team handing off was theirs."""

    operator: Operator
    since: Instant | None
    until: Instant | None
    sessions: int
    operator_replies: int
    handoffs_out: int
    first_response: FirstResponses


class Build(BaseModel):
    """The latest build of a projection beside the live one (see `cdp rebuild`)."""

    state: Literal["running", "done", "failed", "interrupted"]
    owner: str  # host:pid of the process that runs it
    started_at: Instant
    heartbeat_at: Instant  # when it last told its progress: a running build, every batch
    finished_at: Instant | None
    done: int  # events projected so far
    total: int  # events to project: the log head when last told
    error: str | None


class Projection(BaseModel):
    """A read model: how far it has got, and whether what built it is what runs now.

    `status`: `live` (built by this version and settings, following the log), `stale`
    (built by another version or under other settings: it still answers, and is built
    anew beside itself), `new` (never built: it answers nothing yet), or `rebuilding`
    (a build beside it is running, see `build`)."""

    name: str
    status: Literal["live", "stale", "new", "rebuilding"]
    version: int
    built_version: int | None
    shape: str
    built_shape: str | None
    position: int
    head: int
    lag: int
    lag_seconds: float
    build: Build | None


class Items(BaseModel, Generic[T]):
    items: list[T]


class Source(BaseModel):
    """A sender of webhooks; its secret is never shown again after `cdp source add`."""

    name: str
    created_at: Instant
    signed: bool
    previous_valid_until: Instant | None  # a rotated secret's grace period


class Erasure(BaseModel):
    """A profile erased: the chats folded again without its personal data, the keys
    destroyed this time, and whether its later webhooks are refused."""

    profile_uuid: str
    erased_at: Instant
    chats: list[str]
    keys_destroyed: int
    suppressed: bool


class Page(BaseModel, Generic[T]):
    """One page of a list; ask again with `after=<next>` until `next` is null."""

    items: list[T]
    next: str | None


class EventPage(BaseModel):
    items: list[Event]
    next_after: int | None


class Health(BaseModel):
    status: Literal["ok"]
    database: str
    # Where the keys that seal personal data are: `main` (the main database), or the kind
    # of a database of their own (`sqlite`, `postgresql`).
    keystore: str
    head: int


class FieldError(BaseModel):
    path: str
    message: str


class Problem(BaseModel):
    detail: str
    errors: list[FieldError] | None = None
