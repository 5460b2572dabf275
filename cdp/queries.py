"""The questions the API answers, each one a few set-based reads of the read models."""

import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, Text, and_, cast, func, or_, select, true

from cdp import log, models, schemas
from cdp.models import chats, handoffs, profile_chats, sessions, timeline
from cdp.phones import normalize
from cdp.projectors import positions
from cdp.schemas import utc


class Clock:
    """When a session counts as idle: `idle_timeout_ms` after its last activity."""

    def __init__(self, idle_timeout_ms: int) -> None:
        self.idle_timeout_ms = idle_timeout_ms

    def now(self) -> int:
        return time.time_ns() // 1_000_000

    def state(self, last_activity_at: int) -> schemas.SessionState:
        return "open" if self.now() - last_activity_at < self.idle_timeout_ms else "idle"


def profile(connection: Connection, uuid: str) -> schemas.Profile | None:
    found = profiles(connection, [uuid])
    return found[0] if found else None


def profiles(connection: Connection, uuids: Sequence[str]) -> list[schemas.Profile]:
    """Profiles in the order asked; unknown uuids are left out."""
    seen = (
        select(
            profile_chats.c.profile_uuid,
            func.min(profile_chats.c.first_seen_at),
            func.max(profile_chats.c.last_seen_at),
        )
        .where(profile_chats.c.profile_uuid.in_(uuids))
        .group_by(profile_chats.c.profile_uuid)
    )
    spans = {uuid: (first, last) for uuid, first, last in connection.execute(seen)}
    owned: dict[str, list[Row[Any]]] = defaultdict(list)
    query = select(chats).where(chats.c.profile_uuid.in_(uuids))
    for row in connection.execute(query.order_by(chats.c.first_seen_at, chats.c.uuid)):
        owned[row.profile_uuid].append(row)
    merged = _merged_into(connection, [uuid for uuid in spans if not owned[uuid]])
    return [
        schemas.Profile(
            uuid=uuid,
            chats=[
                schemas.ProfileChat(
                    uuid=row.uuid,
                    platform=row.platform,
                    name=row.name,
                    phone=row.phone,
                    avatar=row.avatar,
                    first_seen_at=utc(row.first_seen_at),
                    last_seen_at=utc(row.last_seen_at),
                )
                for row in owned[uuid]
            ],
            phones=sorted({row.phone for row in owned[uuid] if row.phone}),
            names=sorted({row.name for row in owned[uuid] if row.name}),
            first_seen_at=utc(spans[uuid][0]),
            last_seen_at=utc(spans[uuid][1]),
            merged_into=merged.get(uuid),
        )
        for uuid in uuids
        if uuid in spans
    ]


def _merged_into(connection: Connection, uuids: list[str]) -> dict[str, str]:
    """For profiles left with no chats: the profile that now holds each one's latest chat."""
    if not uuids:
        return {}
    latest = (
        select(
            profile_chats.c.profile_uuid,
            chats.c.profile_uuid.label("holder"),
            func.row_number()
            .over(
                partition_by=profile_chats.c.profile_uuid,
                order_by=(profile_chats.c.last_seen_at.desc(), profile_chats.c.chat_uuid.desc()),
            )
            .label("recency"),
        )
        .join(chats, chats.c.uuid == profile_chats.c.chat_uuid)
        .where(profile_chats.c.profile_uuid.in_(uuids))
        .subquery()
    )
    query = select(latest.c.profile_uuid, latest.c.holder).where(latest.c.recency == 1)
    return {uuid: holder for uuid, holder in connection.execute(query) if holder}


def profiles_by_phone(connection: Connection, phone: str, region: str) -> list[schemas.Profile]:
    """Profiles owning a chat with this number, however it is written. ValueError if not one."""
    number = normalize(phone, region)
    if number is None:
        raise ValueError(f"{phone!r} is not a phone number")
    query = (
        select(chats.c.profile_uuid)
        .where(chats.c.phone_e164 == number, chats.c.profile_uuid.is_not(None))
        .group_by(chats.c.profile_uuid)
        .order_by(chats.c.profile_uuid)
    )
    return profiles(connection, list(connection.scalars(query)))


def chat(connection: Connection, uuid: str, clock: Clock) -> schemas.Chat | None:
    found = _chats(connection, chats.c.uuid == uuid, clock)
    return found[0] if found else None


def team_chats(
    connection: Connection, team_id: int, state: schemas.SessionState | None, clock: Clock
) -> list[schemas.Chat]:
    """Chats whose active team is `team_id`, optionally only those whose session is open/idle."""
    condition = chats.c.team_id == team_id
    if state is not None:
        fresh = sessions.c.last_activity_at > clock.now() - clock.idle_timeout_ms
        condition = and_(condition, fresh if state == "open" else ~fresh)
    return _chats(connection, condition, clock)


def _chats(connection: Connection, condition: Any, clock: Clock) -> list[schemas.Chat]:
    current = sessions.c.chat_uuid == chats.c.uuid
    query = (
        select(chats, *(column.label(f"current_{column.name}") for column in sessions.c))
        .outerjoin(sessions, and_(current, sessions.c.number == chats.c.session_number))
        .where(condition)
        .order_by(chats.c.last_seen_at.desc(), chats.c.uuid)
    )
    return [_chat(row, clock) for row in connection.execute(query)]


def _chat(row: Row[Any], clock: Clock) -> schemas.Chat:
    team = session = None
    if row.team_id is not None:
        team = schemas.Team(id=row.team_id, name=row.team_name)
    operator = _operator(row)
    if row.current_number is not None:
        session = schemas.CurrentSession(
            number=row.current_number,
            opened_at=utc(row.current_opened_at),
            last_activity_at=utc(row.current_last_activity_at),
            title=row.current_title,
            context=row.current_context,
            state=clock.state(row.current_last_activity_at),
        )
    return schemas.Chat(
        uuid=row.uuid,
        profile_uuid=row.profile_uuid,
        platform=row.platform,
        name=row.name,
        phone=row.phone,
        avatar=row.avatar,
        team=team,
        operator=operator,
        session=session,
        first_seen_at=utc(row.first_seen_at),
        last_seen_at=utc(row.last_seen_at),
    )


def _operator(row: Any) -> schemas.Operator | None:
    """The operator a row names, or None if it names none (a reply without session.operator)."""
    if row.operator_uuid is None and row.operator_name is None and row.operator_avatar is None:
        return None
    return schemas.Operator(
        uuid=row.operator_uuid, name=row.operator_name, avatar=row.operator_avatar
    )


def chat_known(connection: Connection, uuid: str) -> bool:
    """Has any logged event named this chat (of a known type or not)?"""
    return (
        connection.scalar(select(timeline.c.position).where(timeline.c.chat_uuid == uuid).limit(1))
        is not None
    )


def chat_sessions(connection: Connection, uuid: str, clock: Clock) -> list[schemas.Session]:
    query = select(sessions).where(sessions.c.chat_uuid == uuid).order_by(sessions.c.number)
    return [
        schemas.Session(
            number=row.number,
            opened_at=utc(row.opened_at),
            last_activity_at=utc(row.last_activity_at),
            state=clock.state(row.last_activity_at),
            teams=row.teams,
            handoffs=row.handoffs,
            messages_in=row.messages_in,
            messages_out=row.messages_out,
        )
        for row in connection.execute(query)
    ]


def chat_handoffs(connection: Connection, uuid: str) -> list[schemas.Handoff]:
    return _handoffs(connection, handoffs.c.chat_uuid == uuid)


def team_handoffs(
    connection: Connection,
    team_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[schemas.Handoff]:
    """Handoffs across chats, from or to a team, at or after `since` and before `until`."""
    conditions = []
    if team_id is not None:
        conditions.append(or_(handoffs.c.from_team_id == team_id, handoffs.c.to_team_id == team_id))
    if since is not None:
        conditions.append(handoffs.c.at >= schemas.milliseconds(since))
    if until is not None:
        conditions.append(handoffs.c.at < schemas.milliseconds(until))
    return _handoffs(connection, and_(true(), *conditions))


def _handoffs(connection: Connection, condition: Any) -> list[schemas.Handoff]:
    query = select(handoffs).where(condition).order_by(handoffs.c.at, handoffs.c.dedupe_key)
    return [
        schemas.Handoff(
            chat_uuid=row.chat_uuid,
            at=utc(row.at),
            session_number=row.session_number,
            from_team=schemas.Team(id=row.from_team_id, name=row.from_team_name),
            to_team=schemas.Team(id=row.to_team_id, name=row.to_team_name),
            position=row.position,
        )
        for row in connection.execute(query)
    ]


def chat_timeline(connection: Connection, uuid: str) -> list[schemas.TimelineItem]:
    # The message as the JSON text it is stored as: served as it is, whatever its depth.
    message = cast(timeline.c.message, Text).label("message_text")
    query = (
        select(*(column for column in timeline.c if column is not timeline.c.message), message)
        .where(timeline.c.chat_uuid == uuid)
        .order_by(timeline.c.occurred_at, timeline.c.rank, timeline.c.dedupe_key)
    )
    items = []
    for row in connection.execute(query):
        operator = None
        if row.event_type == "operator_replied":
            operator = _operator(row)
        team = None if row.team_id is None else schemas.Team(id=row.team_id, name=row.team_name)
        items.append(
            schemas.TimelineItem(
                position=row.position,
                occurred_at=utc(row.occurred_at),
                event_type=row.event_type,
                kind=row.kind,
                session_number=row.session_number,
                team=team,
                operator=operator,
                message=None if row.message_text is None else schemas.RawJSON.of(row.message_text),
            )
        )
    return items


def events(
    connection: Connection,
    *,
    after: int,
    limit: int,
    event_type: str | None = None,
    chat_uuid: str | None = None,
    profile_uuid: str | None = None,
) -> schemas.EventPage:
    rows = log.read(
        connection,
        after=after,
        limit=limit + 1,
        event_type=event_type,
        chat_uuid=chat_uuid,
        profile_uuid=profile_uuid,
    )
    items = [_event(row) for row in rows[:limit]]
    return schemas.EventPage(
        items=items, next_after=items[-1].position if len(rows) > limit else None
    )


def event(connection: Connection, position: int) -> schemas.Event | None:
    rows = log.read(connection, after=position - 1, limit=1)
    return _event(rows[0]) if rows and rows[0].position == position else None


def _event(row: Row[Any]) -> schemas.Event:
    return schemas.Event(
        position=row.position,
        event_type=row.event_type,
        occurred_at=utc(row.occurred_at),
        received_at=utc(row.received_at),
        chat_uuid=row.chat_uuid,
        profile_uuid=row.profile_uuid,
        body=schemas.RawJSON.of(row.body),
    )


def projections(connection: Connection, names: Sequence[str]) -> list[schemas.Projection]:
    head, marks = log.head(connection), positions(connection)
    return [
        schemas.Projection(name=name, position=mark, head=head, lag=head - mark)
        for name, mark in ((name, marks.get(name, 0)) for name in names)
    ]


def counts(connection: Connection) -> dict[str, int]:
    """How many rows the log and each read model hold."""
    statements = {
        "events": select(func.count()).select_from(models.events),
        "profiles": select(func.count(func.distinct(profile_chats.c.profile_uuid))),
        "chats": select(func.count()).select_from(chats),
        "sessions": select(func.count()).select_from(sessions),
        "handoffs": select(func.count()).select_from(handoffs),
    }
    return {name: connection.scalar(statement) or 0 for name, statement in statements.items()}
