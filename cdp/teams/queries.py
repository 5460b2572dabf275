"""Reads of teams and operators: the teams known, their figures over a period."""

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Connection,
    func,
    select,
)

from cdp.conversations import schemas as conversations_schemas
from cdp.conversations.tables import chats, handoffs, timeline, waits
from cdp.paging import instant
from cdp.teams import schemas
from cdp.teams.tables import teams
from cdp.times import utc


def known_teams(connection: Connection, source: str | None = None) -> list[schemas.KnownTeam]:
    """Every team the events named (of one source, or of every one), by id."""
    query = select(teams).order_by(teams.c.id, teams.c.source)
    if source is not None:
        query = query.where(teams.c.source == source)
    return [
        schemas.KnownTeam(
            id=row.id,
            name=row.name,
            source=row.source,
            first_seen_at=utc(row.first_seen_at),
            last_seen_at=utc(row.last_seen_at),
        )
        for row in connection.execute(query)
    ]


def last_seen(connection: Connection, team_id: int, source: str | None = None) -> datetime | None:
    """When an event last named the team (of one source, or of any): its latest activity;
    None if none did."""
    query = select(func.max(teams.c.last_seen_at)).where(teams.c.id == team_id)
    if source is not None:
        query = query.where(teams.c.source == source)
    found = connection.scalar(query)
    return None if found is None else utc(found)


@dataclass(frozen=True, slots=True)
class Period:
    """At or after `since`, before `until` (ms), of one source or of any: what statistics count."""

    since: int | None = None
    until: int | None = None
    source: str | None = None

    def of(self, at: ColumnElement[Any], source: ColumnElement[Any]) -> list[ColumnElement[bool]]:
        """The conditions that keep what happened (`at`, of `source`) in the period."""
        found = []
        if self.since is not None:
            found.append(at >= self.since)
        if self.until is not None:
            found.append(at < self.until)
        if self.source is not None:
            found.append(source == self.source)
        return found


_IN_CHATS: Final = timeline.join(chats, chats.c.uuid == timeline.c.chat_uuid)


def _timeline(period: "Period") -> Any:
    """The timeline, joined to its chats when `period` keeps one source: a row's is its chat's."""
    return timeline if period.source is None else _IN_CHATS


def _count(*conditions: ColumnElement[bool], table: Any) -> Any:
    return select(func.count()).select_from(table).where(*conditions).scalar_subquery()


def team_stats(connection: Connection, team_id: int, period: Period) -> schemas.TeamStats | None:
    """A team's figures for `period` (see schemas.TeamStats); None if no event named it."""
    named = select(teams).where(teams.c.id == team_id).order_by(teams.c.named_at.desc())
    if period.source is not None:
        named = named.where(teams.c.source == period.source)
    team = connection.execute(named.limit(1)).first()
    if team is None:
        return None
    turns = _turns(team_id, period)

    def said(kind: str) -> Any:
        kept = period.of(timeline.c.occurred_at, chats.c.source)
        conditions = (timeline.c.team_id == team_id, timeline.c.kind == kind, *kept)
        return _count(*conditions, table=_timeline(period))

    # The team's turns, read once (the index holds what is counted).
    counted = (
        select(
            func.count().filter(waits.c.started_by == "opening").label("opened"),
            func.count().filter(waits.c.started_by == "handoff").label("handed_in"),
            func.count().filter(waits.c.replied_at.is_(None)).label("unanswered"),
        )
        .where(*turns)
        .subquery()
    )
    figures = connection.execute(
        select(
            counted.c.opened,
            counted.c.handed_in,
            counted.c.unanswered,
            _count(
                handoffs.c.from_team_id == team_id,
                *period.of(handoffs.c.at, handoffs.c.source),
                table=handoffs,
            ).label("handed_out"),
            said("message_in").label("messages"),
            said("operator_reply").label("replies"),
        )
    ).one()
    return schemas.TeamStats(
        team=conversations_schemas.Team(id=team.id, name=team.name),
        since=instant(period.since),
        until=instant(period.until),
        sessions_opened=figures.opened,
        handoffs_in=figures.handed_in,
        handoffs_out=figures.handed_out,
        customer_messages=figures.messages,
        operator_replies=figures.replies,
        first_response=_first_responses(connection, turns),
        unanswered=figures.unanswered,
    )


def _turns(team_id: int, period: Period) -> list[ColumnElement[bool]]:
    """The team's turns that began in `period`: the waits its statistics count."""
    return [waits.c.team_id == team_id, *period.of(waits.c.started_at, waits.c.source)]


def operator_stats(
    connection: Connection, uuid: str, period: Period
) -> schemas.OperatorStats | None:
    """An operator's figures for `period` (see schemas.OperatorStats); None if no reply of
    theirs was logged."""
    replies = [timeline.c.operator_uuid == uuid, timeline.c.kind == "operator_reply"]
    latest = (
        select(timeline.c.operator_name, timeline.c.operator_avatar)
        .select_from(_IN_CHATS)
        .where(*replies, *Period(source=period.source).of(timeline.c.occurred_at, chats.c.source))
        .order_by(timeline.c.occurred_at.desc(), timeline.c.position.desc())
        .limit(1)
    )
    operator = connection.execute(latest).first()
    if operator is None:
        return None
    kept = period.of(timeline.c.occurred_at, chats.c.source)
    table = _timeline(period)
    sessions_replied = (
        select(timeline.c.chat_uuid, timeline.c.session_number)
        .select_from(table)
        .where(*replies, *kept)
        .distinct()
        .subquery()
    )
    answered = [waits.c.replied_by == uuid, *period.of(waits.c.started_at, waits.c.source)]
    figures = connection.execute(
        select(
            select(func.count()).select_from(sessions_replied).scalar_subquery().label("sessions"),
            _count(*replies, *kept, table=table).label("replies"),
            _count(
                waits.c.last_operator_uuid == uuid,
                waits.c.handed_off_at.is_not(None),
                *period.of(waits.c.handed_off_at, waits.c.source),
                table=waits,
            ).label("handed_out"),
        )
    ).one()
    return schemas.OperatorStats(
        operator=conversations_schemas.Operator(
            uuid=uuid, name=operator.operator_name, avatar=operator.operator_avatar
        ),
        since=instant(period.since),
        until=instant(period.until),
        sessions=figures.sessions,
        operator_replies=figures.replies,
        handoffs_out=figures.handed_out,
        first_response=_first_responses(connection, answered),
    )


# The bands of first responses (see schemas.Band), in seconds.
BANDS: Final = (60, 300, 900, 3600, 14400)


def _first_responses(
    connection: Connection, conditions: Sequence[ColumnElement[bool]]
) -> schemas.FirstResponses:
    """The waits kept by `conditions` that got a reply: how many, the median and 90th
    percentile of their length, interpolated between the two nearest (percentile_cont),
    and how many fell in each band."""
    waited = waits.c.replied_at - waits.c.started_at
    answered = [*conditions, waits.c.replied_at.is_not(None)]
    if connection.dialect.name == "postgresql":
        found = connection.execute(
            select(
                func.count(),
                func.percentile_cont(0.5).within_group(waited),
                func.percentile_cont(0.9).within_group(waited),
                *(func.count().filter(waited < bound * 1000) for bound in BANDS),
            ).where(*answered)
        ).one()
        count, median, p90, *below = found
    else:  # SQLite has no percentile_cont: the lengths, in one pass, sorted here
        lengths = sorted(connection.scalars(select(waited).where(*answered)))
        count, median, p90 = len(lengths), percentile(lengths, 0.5), percentile(lengths, 0.9)
        below = [bisect_left(lengths, bound * 1000) for bound in BANDS]
    within = [*below, count]
    return schemas.FirstResponses(
        answered=count,
        median_seconds=None if median is None else round(median / 1000, 3),
        p90_seconds=None if p90 is None else round(p90 / 1000, 3),
        bands=[
            schemas.Band(below_seconds=bound, answered=within[n] - (within[n - 1] if n else 0))
            for n, bound in enumerate([*BANDS, None])
        ],
    )


def percentile(ordered: Sequence[int], fraction: float) -> float | None:
    """As PostgreSQL's percentile_cont: interpolated between the two nearest of `ordered`."""
    if not len(ordered):  # a list, or an array (whose truth is not its length)
        return None
    at = fraction * (len(ordered) - 1)
    below = int(at)
    above = min(below + 1, len(ordered) - 1)
    return float(ordered[below] + (ordered[above] - ordered[below]) * (at - below))


def team_names(connection: Connection, ids: Sequence[int]) -> dict[int, str | None]:
    """The latest name of each team of `ids` that the events named, in any source."""
    if not ids:
        return {}
    query = select(teams.c.id, teams.c.name).where(teams.c.id.in_(ids)).order_by(teams.c.named_at)
    return {row.id: row.name for row in connection.execute(query)}
