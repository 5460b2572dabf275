"""What the API answers about teams and operators: who they are, their figures."""

from pydantic import BaseModel

from cdp.conversations.schemas import Operator, Team
from cdp.http.schemas import Instant


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
