"""What the API answers about reports, and what an admin sends to set them."""

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cdp.http.schemas import Instant

Metric = Literal[
    "sessions_opened",
    "customer_messages",
    "operator_replies",
    "handoffs_in",
    "handoffs_out",
    "first_response",
    "reply_time",
    "session_duration",
]


class Holiday(BaseModel):
    """A local day with no working time."""

    model_config = ConfigDict(extra="forbid")

    day: date
    name: str | None = Field(default=None, max_length=200)


class WorkingHours(BaseModel):
    """The working week (each weekday's intervals, local `HH:MM-HH:MM`, 24:00 the day's
    end) and the holidays, in `timezone` (CDP_TIMEZONE)."""

    timezone: str
    week: dict[str, list[str]]
    holidays: list[Holiday]


class NewWorkingHours(BaseModel):
    """The working week and holidays to set, replacing the ones there are: a weekday left
    out has no working time. An empty week sets no schedule: `business_hours` is then
    refused."""

    model_config = ConfigDict(extra="forbid")

    week: dict[str, list[str]] = Field(
        examples=[{"monday": ["09:00-13:00", "14:00-18:00"], "saturday": ["10:00-14:00"]}]
    )
    holidays: list[Holiday] = Field(default_factory=list, max_length=1000)


class Targets(BaseModel):
    """A team's reply targets, in seconds (of working time, when a schedule is set): its
    first reply of each turn, and each next reply. None: no target."""

    team_id: int
    first_reply_seconds: float | None
    next_reply_seconds: float | None


class NewTargets(BaseModel):
    """Reply targets to set for a team, in seconds; both None remove them."""

    model_config = ConfigDict(extra="forbid")

    first_reply_seconds: float | None = Field(default=None, examples=[300])
    next_reply_seconds: float | None = Field(default=None, examples=[900])


class SettingChange(BaseModel):
    """A change of a report setting: who made it (a token's name, or `cli:` and the
    account that ran the command), when, and the setting before and after."""

    at: Instant
    actor: str
    setting: str
    before: object
    after: object


class Point(BaseModel):
    """A metric over one hour, day, week or month (beginning at `start`, local time with
    its offset), or over the whole period. A count is `count` alone; a time (a wait, a
    session's length) also has the median and 90th percentile of the lengths counted,
    in seconds (None when none was), and, for waits, how many got no reply (yet)."""

    start: datetime
    count: int
    median_seconds: float | None = None
    p90_seconds: float | None = None
    unanswered: int | None = None


class Series(BaseModel):
    """A metric over a period, at or after `since` and before `until`: a point per unit,
    in order, every unit there (zeros where nothing happened), and the whole period."""

    since: datetime
    until: datetime
    points: list[Point]
    total: Point


class Trend(BaseModel):
    """A metric as a series by hour, day, ISO week or month in the store's zone, for a
    scope (the store, a team, an operator, a source or a messenger), and with
    `compare=previous` the period just before, as long, beside it (point for point)."""

    metric: Metric
    group: Literal["hour", "day", "week", "month"]
    timezone: str
    scope: dict[str, str | int]
    business_hours: bool
    current: Series
    previous: Series | None


class SlaPoint(BaseModel):
    """Waits with a target begun in a unit (or the whole period), by their state as of
    the moment of asking (see docs/reports.md): answered `within` the target,
    `breached`, still `open` within it, or `open_breached`."""

    start: datetime
    within: int
    breached: int
    open: int
    open_breached: int


class SlaSeries(BaseModel):
    points: list[SlaPoint]
    total: SlaPoint


class Sla(BaseModel):
    """The first-reply and next-reply targets' outcomes by unit, for one team (or every
    team with targets). `working_time`: waits measured in working hours (they are set)."""

    group: Literal["hour", "day", "week", "month"]
    timezone: str
    team: int | None
    working_time: bool
    since: datetime
    until: datetime
    first_reply: SlaSeries
    next_reply: SlaSeries


class Breach(BaseModel):
    """A wait that passed its target: answered late, ended without a reply after it, or
    still open past it (`open`)."""

    kind: Literal["first_reply", "next_reply"]
    chat_uuid: str
    session_number: int
    team_id: int
    team_name: str | None
    started_at: Instant
    replied_at: Instant | None
    operator_uuid: str | None  # whose reply came late, if one came
    wait_seconds: float
    target_seconds: float
    open: bool


class Heatmap(BaseModel):
    """How many by local weekday (Monday first) and hour of the day: `cells[d][h]`."""

    metric: Literal["sessions_opened", "customer_messages"]
    timezone: str
    scope: dict[str, str | int]
    since: datetime
    until: datetime
    weekdays: list[str]
    cells: list[list[int]]


class Leader(BaseModel):
    """An operator's figures in a team's chats over the period (see docs/reports.md)."""

    operator_uuid: str
    operator_name: str | None
    sessions: int
    replies: int
    first_response_median_seconds: float | None
    reply_time_median_seconds: float | None
    breaches: int


class Leaderboard(BaseModel):
    team_id: int
    team_name: str | None
    timezone: str
    since: datetime
    until: datetime
    operators: list[Leader]


class WaitingChat(BaseModel):
    """A chat whose customer waits for a reply now."""

    chat_uuid: str
    session_number: int
    platform: str | None
    team_id: int | None
    team_name: str | None
    since: Instant  # the wait's first message
    waiting_seconds: float
    target: Literal["first_reply", "next_reply"] | None  # the one that applies, if set
    target_seconds: float | None
    state: Literal["open", "at_risk", "open_breached"] | None
    last_activity_at: Instant


class TeamWaiting(BaseModel):
    team_id: int | None
    team_name: str | None
    waiting: int
    at_risk: int
    breached: int


class Waiting(BaseModel):
    """Who waits for a reply now (`at`), longest first; per team; and when the list will
    next change with time alone (a session going idle, a wait passing 80% or all of its
    target), if it will."""

    at: Instant
    changes_at: Instant | None
    teams: list[TeamWaiting]
    chats: list[WaitingChat]
