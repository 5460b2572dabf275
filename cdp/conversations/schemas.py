"""What the API answers about chats: a chat, its sessions, handoffs, turns and timeline."""

from typing import Literal

from pydantic import BaseModel, ConfigDict

from cdp.http.schemas import Instant, Kind, RawJSON, SessionState


class Team(BaseModel):
    id: int
    name: str | None


class Operator(BaseModel):
    uuid: str | None
    name: str | None
    avatar: str | None


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
