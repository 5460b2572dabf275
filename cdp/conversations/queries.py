"""Reads of chats: one, a profile's or a team's, their sessions, handoffs, turns and timeline."""

from collections import defaultdict
from collections.abc import Sequence
from functools import partial
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    Select,
    and_,
    func,
    select,
)

from cdp.conversations import schemas
from cdp.conversations.tables import chats, handoffs, sessions, timeline, waits
from cdp.http import schemas as http_schemas
from cdp.log.webhook import OPERATOR_REPLIED
from cdp.paging import Clock, Listing, instant, paged
from cdp.privacy import personal
from cdp.privacy.keystore import Keystore
from cdp.times import utc


def chat(
    connection: Connection, uuid: str, clock: Clock, *, keystore: Keystore
) -> schemas.Chat | None:
    found = chats_of(connection, [uuid], clock, keystore=keystore)
    return found[0] if found else None


def chats_of(
    connection: Connection, uuids: Sequence[str], clock: Clock, *, keystore: Keystore
) -> list[schemas.Chat]:
    """The chats of `uuids`, in the order asked; unknown ones are left out."""
    found = connection.execute(chat_rows().where(chats.c.uuid.in_(uuids))).all()
    build = ChatAnswers(connection, keystore, clock)
    build.before(found)
    rows = {row.uuid: row for row in found}
    return [schemas.Chat.model_validate(build(rows[uuid])) for uuid in uuids if uuid in rows]


def chat_names(
    connection: Connection, uuids: Sequence[str], *, keystore: Keystore
) -> dict[str, str]:
    """The names the customers of `uuids` go by, opened, in one read of the chats and one
    of their keys: a page of many chats names them at once. Unknown chats, chats with no
    name and erased ones are left out."""
    wanted = set(uuids)
    if not wanted:
        return {}
    rows = connection.execute(
        select(chats.c.uuid, chats.c.name).where(
            chats.c.uuid.in_(wanted), chats.c.name.is_not(None)
        )
    ).all()
    sealers = keystore.sealers(connection, {row.uuid for row in rows})
    opened = {row.uuid: personal.opened(sealers.get(row.uuid), "name", row.name) for row in rows}
    return {uuid: name for uuid, name in opened.items() if name}


def team_chats(
    connection: Connection,
    team_id: int,
    state: http_schemas.SessionState | None,
    clock: Clock,
    listing: Listing,
    source: str | None = None,
    *,
    keystore: Keystore,
) -> http_schemas.Page[schemas.Chat]:
    """Chats whose active team is `team_id`, optionally only those whose session is open/idle
    or of one source, most recently active first."""
    query = chat_rows().where(chats.c.team_id == team_id)
    if source is not None:
        query = query.where(chats.c.source == source)
    fresh = sessions.c.last_activity_at > clock.idle_before
    if state == "open":
        # A session's last activity is never after its chat's last_seen_at: the scan of the
        # team's chats, newest first, can stop where they went quiet.
        query = query.where(fresh, chats.c.last_seen_at > clock.idle_before)
    elif state == "idle":
        query = query.where(~fresh)
    order = [chats.c.last_seen_at, chats.c.uuid]
    build = ChatAnswers(connection, keystore, clock)
    return paged(
        connection,
        [query],
        order,
        listing,
        build,
        schemas.Chat,
        descending=True,
        before=build.before,
    )


def chat_rows() -> Select[Any]:
    """Chats with their latest session, its columns named current_*."""
    current = sessions.c.chat_uuid == chats.c.uuid
    return select(
        chats, *(column.label(f"current_{column.name}") for column in sessions.c)
    ).outerjoin(sessions, and_(current, sessions.c.number == chats.c.session_number))


class ChatAnswers:
    """Builds chats (see _chat) of rows of chat_rows(): their keys fetched a page at a time."""

    def __init__(self, connection: Connection, keystore: Keystore, clock: Clock) -> None:
        self.connection, self.keystore, self.clock = connection, keystore, clock
        self.sealers: dict[str, personal.Sealer | None] = {}

    def before(self, rows: Sequence[Row[Any]]) -> None:
        self.sealers = self.keystore.sealers(self.connection, {row.uuid for row in rows})

    def __call__(self, row: Row[Any]) -> dict[str, Any]:
        return _chat(row, self.clock, self.sealers.get(row.uuid))


def _chat(row: Row[Any], clock: Clock, sealer: personal.Sealer | None) -> dict[str, Any]:
    """A chat as plain data, for schemas.Chat."""
    team = session = None
    if row.team_id is not None:
        team = dict(id=row.team_id, name=row.team_name)
    operator = _operator(row)
    if row.current_number is not None:
        session = dict(
            number=row.current_number,
            opened_at=utc(row.current_opened_at),
            last_activity_at=utc(row.current_last_activity_at),
            title=personal.opened(sealer, "title", row.current_title),
            context=personal.opened(sealer, "context", row.current_context),
            state=clock.state(row.current_last_activity_at),
        )
    return dict(
        uuid=row.uuid,
        profile_uuid=row.profile_uuid,
        platform=row.platform,
        name=personal.opened(sealer, "name", row.name),
        phone=personal.opened(sealer, "phone", row.phone),
        avatar=personal.opened(sealer, "avatar", row.avatar),
        team=team,
        operator=operator,
        session=session,
        first_seen_at=utc(row.first_seen_at),
        last_seen_at=utc(row.last_seen_at),
        source=row.source,
    )


def _operator(row: Any) -> dict[str, Any] | None:
    """The operator a row names, or None if it names none (a reply without session.operator)."""
    if row.operator_uuid is None and row.operator_name is None and row.operator_avatar is None:
        return None
    return dict(uuid=row.operator_uuid, name=row.operator_name, avatar=row.operator_avatar)


def chat_known(connection: Connection, uuid: str) -> bool:
    """Has any logged event named this chat (of a known type or not)?"""
    return (
        connection.scalar(select(timeline.c.position).where(timeline.c.chat_uuid == uuid).limit(1))
        is not None
    )


def chat_sessions(
    connection: Connection, uuid: str, clock: Clock, listing: Listing
) -> http_schemas.Page[schemas.Session] | None:
    """A chat's sessions in order; None if no logged event named the chat."""
    if not chat_known(connection, uuid):
        return None
    query = select(sessions).where(sessions.c.chat_uuid == uuid)
    build = partial(_session, clock=clock)
    return paged(connection, [query], [sessions.c.number], listing, build, schemas.Session)


def _session(row: Any, clock: Clock) -> dict[str, Any]:
    return dict(
        number=row.number,
        opened_at=utc(row.opened_at),
        last_activity_at=utc(row.last_activity_at),
        state=clock.state(row.last_activity_at),
        teams=row.teams,
        handoffs=row.handoffs,
        messages_in=row.messages_in,
        messages_out=row.messages_out,
    )


def chat_handoffs(
    connection: Connection, uuid: str, listing: Listing
) -> http_schemas.Page[schemas.Handoff] | None:
    """A chat's handoffs in time order; None if no logged event named the chat."""
    if not chat_known(connection, uuid):
        return None
    return _handoffs(connection, [select(handoffs).where(handoffs.c.chat_uuid == uuid)], listing)


def team_handoffs(
    connection: Connection,
    listing: Listing,
    team_id: int | None = None,
    since: int | None = None,
    until: int | None = None,
    source: str | None = None,
) -> http_schemas.Page[schemas.Handoff]:
    """Handoffs across chats, from or to a team, at or after `since` and before `until` (ms),
    of one source or any."""
    query = select(handoffs)
    if source is not None:
        query = query.where(handoffs.c.source == source)
    if since is not None:
        query = query.where(handoffs.c.at >= since)
    if until is not None:
        query = query.where(handoffs.c.at < until)
    if team_id is None:
        return _handoffs(connection, [query], listing)
    # From and to a team are disjoint (a handoff changes team): two index scans, merged.
    sides = [handoffs.c.from_team_id, handoffs.c.to_team_id]
    return _handoffs(connection, [query.where(side == team_id) for side in sides], listing)


def _handoffs(
    connection: Connection, queries: Sequence[Select[Any]], listing: Listing
) -> http_schemas.Page[schemas.Handoff]:
    order = [handoffs.c.at, handoffs.c.dedupe_key]
    return paged(connection, queries, order, listing, _handoff, schemas.Handoff)


def _handoff(row: Any) -> dict[str, Any]:
    return dict(
        chat_uuid=row.chat_uuid,
        at=utc(row.at),
        session_number=row.session_number,
        from_team=dict(id=row.from_team_id, name=row.from_team_name),
        to_team=dict(id=row.to_team_id, name=row.to_team_name),
        position=row.position,
        source=row.source,
    )


def chat_timeline(
    connection: Connection, uuid: str, listing: Listing, *, keystore: Keystore
) -> http_schemas.Page[schemas.TimelineItem] | None:
    """A chat's events in time order, where each falls; None if no logged event named it."""
    if not chat_known(connection, uuid):
        return None
    query = select(timeline).where(timeline.c.chat_uuid == uuid)
    order = [timeline.c.occurred_at, timeline.c.rank, timeline.c.dedupe_key]
    sealer: personal.Sealer | None = None

    def before(rows: Sequence[Row[Any]]) -> None:
        nonlocal sealer
        if any(row.message is not None for row in rows):
            sealer = keystore.sealers(connection, [uuid])[uuid]

    def build(row: Row[Any]) -> dict[str, Any]:
        # The message as the JSON text it was kept as: served as it is, whatever its depth.
        text = personal.opened(sealer, "message", row.message)
        return dict(
            position=row.position,
            occurred_at=utc(row.occurred_at),
            event_type=row.event_type,
            kind=row.kind,
            session_number=row.session_number,
            team=None if row.team_id is None else dict(id=row.team_id, name=row.team_name),
            operator=_operator(row) if row.event_type == OPERATOR_REPLIED else None,
            message=None if text is None else http_schemas.RawJSON.of(text),
        )

    return paged(connection, [query], order, listing, build, schemas.TimelineItem, before=before)


def latest_sessions(
    connection: Connection, uuids: Sequence[str], clock: Clock, count: int
) -> dict[str, list[schemas.Session]]:
    """The `count` latest sessions of each chat, newest first."""
    recency = (
        func.row_number()
        .over(partition_by=sessions.c.chat_uuid, order_by=sessions.c.number.desc())
        .label("recency")
    )
    ranked = select(sessions, recency).where(sessions.c.chat_uuid.in_(uuids)).subquery()
    query = (
        select(ranked)
        .where(ranked.c.recency <= count)
        .order_by(ranked.c.chat_uuid, ranked.c.number.desc())
    )
    found: dict[str, list[schemas.Session]] = {uuid: [] for uuid in uuids}
    for row in connection.execute(query):
        found[row.chat_uuid].append(schemas.Session.model_validate(_session(row, clock)))
    return found


def session_operators(
    connection: Connection, uuid: str, numbers: Sequence[int]
) -> dict[int, list[schemas.Operator]]:
    """Who replied in each of a chat's sessions `numbers`, in the order of their first
    reply: the operators the webhooks named (assigning one sends none)."""
    if not numbers:
        return {}
    opened = select(func.min(sessions.c.opened_at)).where(
        sessions.c.chat_uuid == uuid, sessions.c.number.in_(numbers)
    )
    query = (
        select(
            timeline.c.session_number,
            timeline.c.operator_uuid,
            timeline.c.operator_name,
            timeline.c.operator_avatar,
        )
        .where(
            timeline.c.chat_uuid == uuid,
            timeline.c.occurred_at >= opened.scalar_subquery(),
            timeline.c.kind == "operator_reply",
            timeline.c.session_number.in_(numbers),
        )
        .order_by(timeline.c.occurred_at, timeline.c.rank, timeline.c.dedupe_key)
    )
    found: dict[int, dict[str | None, schemas.Operator]] = defaultdict(dict)
    for row in connection.execute(query):
        operator = _operator(row)
        if operator is not None:
            found[row.session_number].setdefault(
                row.operator_uuid or row.operator_name, schemas.Operator(**operator)
            )
    return {number: list(operators.values()) for number, operators in found.items()}


def chat_turns(connection: Connection, uuid: str, numbers: Sequence[int]) -> list[schemas.Turn]:
    """A chat's turns in its sessions `numbers`, in order: each team's wait for a first reply."""
    if not numbers:
        return []
    query = (
        select(waits)
        .where(waits.c.chat_uuid == uuid, waits.c.session_number.in_(numbers))
        .order_by(waits.c.session_number, waits.c.ordinal)
    )
    return [
        schemas.Turn(
            position=row.position,
            session_number=row.session_number,
            ordinal=row.ordinal,
            team_id=row.team_id,
            started_at=utc(row.started_at),
            started_by=row.started_by,
            replied_at=instant(row.replied_at),
            replied_by=row.replied_by,
        )
        for row in connection.execute(query)
    ]


def handoffs_at(connection: Connection, positions: Sequence[int]) -> dict[int, schemas.Handoff]:
    """The handoffs logged at `positions`, by position."""
    if not positions:
        return {}
    rows = connection.execute(select(handoffs).where(handoffs.c.position.in_(positions)))
    return {row.position: schemas.Handoff.model_validate(_handoff(row)) for row in rows}
