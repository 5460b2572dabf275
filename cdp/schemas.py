"""What the API answers: read models as pydantic schemas, times as UTC datetimes."""

from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel

T = TypeVar("T")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
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


def utc(milliseconds: int) -> datetime:
    return EPOCH + timedelta(milliseconds=milliseconds)


def milliseconds(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(milliseconds=1)


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
    first_seen_at: datetime
    last_seen_at: datetime


class Profile(BaseModel):
    uuid: str
    chats: list[ProfileChat]
    phones: list[str]
    names: list[str]
    first_seen_at: datetime
    last_seen_at: datetime
    merged_into: str | None


class CurrentSession(BaseModel):
    number: int
    opened_at: datetime
    last_activity_at: datetime
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
    first_seen_at: datetime
    last_seen_at: datetime


class Session(BaseModel):
    number: int
    opened_at: datetime
    last_activity_at: datetime
    state: SessionState
    teams: list[int]
    handoffs: int
    messages_in: int
    messages_out: int


class Handoff(BaseModel):
    chat_uuid: str
    at: datetime
    session_number: int
    from_team: Team
    to_team: Team
    position: int


class TimelineItem(BaseModel):
    position: int
    occurred_at: datetime
    event_type: str
    kind: Kind
    session_number: int | None
    team: Team | None
    operator: Operator | None
    message: dict[str, Any] | None


class Event(BaseModel):
    position: int
    event_type: str
    occurred_at: datetime
    received_at: datetime
    chat_uuid: str | None
    profile_uuid: str | None
    body: dict[str, Any]


class Projection(BaseModel):
    name: str
    position: int
    head: int
    lag: int


class Items(BaseModel, Generic[T]):
    items: list[T]


class EventPage(BaseModel):
    items: list[Event]
    next_after: int | None


class Receipt(BaseModel):
    position: int
    duplicate: bool


class Health(BaseModel):
    status: Literal["ok"]
    database: str
    head: int


class FieldError(BaseModel):
    path: str
    message: str


class Problem(BaseModel):
    detail: str
    errors: list[FieldError] | None = None
