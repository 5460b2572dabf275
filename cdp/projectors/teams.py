"""Teams and their turns with chats: what team statistics are counted from.

A turn (a row of `waits`) is a team's time with a chat within a session: from the
session's opening, or from a handoff to the team, to the next handoff or the session's
end. The customer waits from its start to the first operator reply within it.

Turns are read off the timeline the chats projector has just written, in the same
transaction (it comes before this one in the registry), so they follow its session rules
whatever order the events arrived in. As there, most events fall after every stored one
of their chat, beyond the open window: they change no stored placement, and go on from
the chat's latest turn alone. Any other can change what falls after its reach (see
Rules.reach): that chat's turns are counted again from the last session opened before
it, and only those.
"""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from sqlalchemy import Connection, Table, and_, bindparam, func, or_, select

from cdp import db
from cdp.log import Recorded
from cdp.models import chats, sessions, teams, timeline, waits
from cdp.projectors.chats import ChatsProjector
from cdp.webhook import INT64_MAX

# What a turn is counted from, of each timeline row.
_COLUMNS: Final = (
    timeline.c.position,
    timeline.c.chat_uuid,
    timeline.c.occurred_at,
    timeline.c.rank,
    timeline.c.dedupe_key,
    timeline.c.kind,
    timeline.c.session_number,
    timeline.c.team_id,
    timeline.c.operator_uuid,
    timeline.c.event_team_id,
    timeline.c.event_team_name,
    chats.c.source,
)
_OF_CHAT: Final = chats.c.uuid == timeline.c.chat_uuid
_WAIT_COLUMNS: Final = tuple(column.name for column in waits.c)

# Whole chats, for a build.
_CHATS_WHOLE: Final = db.Prepared(
    select(*_COLUMNS).join(chats, _OF_CHAT).where(db.among(timeline.c.chat_uuid, "chats"))
)
# The batch's events (by "positions"), each with what its chat held before the batch: when
# its latest event occurred, and its latest turn (columns named turn_*). Both are index
# probes, however long the chat; one statement, one round trip.
_TURN: Final = waits.alias("turn")
_BEFORE: Final = timeline.alias("before")
_NEW: Final = db.Prepared(
    select(
        *_COLUMNS,
        select(_BEFORE.c.occurred_at)
        .where(
            _BEFORE.c.chat_uuid == chats.c.uuid,
            # A batch is a run of the log: every position from its lowest to its highest.
            or_(
                _BEFORE.c.position < bindparam("lowest"), _BEFORE.c.position > bindparam("highest")
            ),
        )
        .order_by(_BEFORE.c.occurred_at.desc())
        .limit(1)
        .scalar_subquery()
        .label("last_before"),
        *(column.label(f"turn_{column.name}") for column in _TURN.c),
    )
    .select_from(
        timeline.join(chats, _OF_CHAT).outerjoin(
            _TURN,
            _TURN.c.position
            == select(waits.c.position)
            .where(waits.c.chat_uuid == chats.c.uuid)
            .order_by(waits.c.session_number.desc(), waits.c.ordinal.desc())
            .limit(1)
            .scalar_subquery(),
        )
    )
    .where(db.among(timeline.c.position, "positions"))
)

# The chats of a batch's events (by "positions") that may change stored ones: each one's
# rows from the opening of its last session opened before the events' reach (see
# Rules.reach: no such opening moves), or from its first session if none did; and the
# number of the session they start in.
_REACH: Final = (
    select(
        timeline.c.chat_uuid,
        (func.min(timeline.c.occurred_at) - bindparam("open_window")).label("reach"),
    )
    .where(db.among(timeline.c.position, "positions"))
    .group_by(timeline.c.chat_uuid)
    .cte("reach")
)
_ANCHORED: Final = select(
    _REACH.c.chat_uuid,
    select(sessions.c.number)
    .where(sessions.c.chat_uuid == _REACH.c.chat_uuid, sessions.c.opened_at < _REACH.c.reach)
    .order_by(sessions.c.number.desc())
    .limit(1)
    .scalar_subquery()
    .label("number"),
).cte("anchored")
_STARTS: Final = (
    select(
        _ANCHORED.c.chat_uuid,
        func.coalesce(_ANCHORED.c.number, 1).label("number"),
        func.coalesce(sessions.c.opened_at, -INT64_MAX).label("opened_at"),
    )
    .select_from(
        _ANCHORED.outerjoin(
            sessions,
            and_(
                sessions.c.chat_uuid == _ANCHORED.c.chat_uuid,
                sessions.c.number == _ANCHORED.c.number,
            ),
        )
    )
    .cte("starts")
    .prefix_with("MATERIALIZED")  # a few rows, each read once: then a range of the index
)
_SINCE: Final = db.Prepared(
    select(*_COLUMNS, _STARTS.c.number.label("from_number"))
    .join(
        _STARTS,
        and_(
            timeline.c.chat_uuid == _STARTS.c.chat_uuid,
            timeline.c.occurred_at >= _STARTS.c.opened_at,
            timeline.c.session_number >= _STARTS.c.number,
        ),
    )
    .join(chats, _OF_CHAT)
)
_GONE: Final = db.Prepared(
    waits.delete().where(
        waits.c.chat_uuid == bindparam("chat"), waits.c.session_number >= bindparam("number")
    )
)


class TeamsProjector:
    """Teams by their latest name, and every team's turns with chats (see the module)."""

    name = "teams"
    version = 1
    tables: tuple[Table, ...] = (waits, teams)

    def __init__(self, chats: ChatsProjector) -> None:
        # Turns follow the sessions the chats projector makes: built anew when they change.
        self.reads: tuple[str, ...] = (chats.name,)
        self.shape = f"chats=v{chats.version} {chats.shape}"
        self.open_window_ms = chats.rules.open_window_ms

    def apply(self, connection: Connection, batch: Sequence[Recorded], *, fresh: bool) -> None:
        if fresh:
            named = {r.incoming.webhook.chat_uuid for r in batch} - {None}
            rows = _CHATS_WHOLE.rows(connection, {"chats": sorted(named)}) if named else []
            _name(connection, rows)
            db.insert(connection, waits, turns(rows))
            return
        positions = [recorded.position for recorded in batch]
        if not positions:
            return
        bounds = {"lowest": min(positions), "highest": max(positions)}
        new = _NEW.rows(connection, {"positions": positions, **bounds})
        _name(connection, new)
        by_chat: dict[str, list[dict[str, Any]]] = {}
        for row in new:
            by_chat.setdefault(row["chat_uuid"], []).append(row)
        written: list[dict[str, Any]] = []
        late: list[int] = []  # positions of events that may change stored ones
        for rows in by_chat.values():
            prior = rows[0]  # what the chat held before: on each of its rows alike
            reach = min(row["occurred_at"] for row in rows) - self.open_window_ms
            if prior["last_before"] is not None and prior["last_before"] >= reach:
                late += [row["position"] for row in rows]
                continue
            stored = None
            if prior["turn_position"] is not None:
                stored = {name: prior[f"turn_{name}"] for name in _WAIT_COLUMNS}
            written += [turn for turn in turns(rows, stored) if turn != stored]
        if late:
            window = self.open_window_ms
            again = _SINCE.rows(connection, {"positions": late, "open_window": window})
            starts = {row["chat_uuid"]: row["from_number"] for row in again}
            _GONE.run(connection, [{"chat": chat, "number": n} for chat, n in starts.items()])
            written += turns(again)
        db.upsert(connection, waits, written, key=["position"])


def turns(
    rows: Iterable[Mapping[str, Any]], ongoing: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The turns timeline rows make: rows of whole sessions, or rows of one chat that all
    come after every stored one, beyond the open window, from its latest turn (`ongoing`,
    as stored) on. That turn comes first, as the rows leave it."""
    ordered = sorted(
        (row for row in rows if row["session_number"] is not None),
        key=lambda row: (row["chat_uuid"], row["occurred_at"], row["rank"], row["dedupe_key"]),
    )
    found: list[dict[str, Any]] = []
    turn = None if ongoing is None else dict(ongoing)
    if turn is not None:
        found.append(turn)
    for row in ordered:
        kind = row["kind"]
        within = (
            turn is not None
            and turn["chat_uuid"] == row["chat_uuid"]
            and turn["session_number"] == row["session_number"]
        )
        if kind in ("session_opened", "handoff"):
            if turn is not None and within and kind == "handoff":
                turn["handed_off_at"] = row["occurred_at"]
            turn = {
                "position": row["position"],
                "chat_uuid": row["chat_uuid"],
                "session_number": row["session_number"],
                "ordinal": turn["ordinal"] + 1 if turn is not None and within else 1,
                "source": row["source"],
                "team_id": row["team_id"],
                "started_at": row["occurred_at"],
                "started_by": "opening" if kind == "session_opened" else "handoff",
                "replied_at": None,
                "replied_by": None,
                "last_operator_uuid": None,
                "handed_off_at": None,
            }
            found.append(turn)
        elif kind == "operator_reply" and turn is not None and within:
            if turn["replied_at"] is None:
                turn["replied_at"], turn["replied_by"] = row["occurred_at"], row["operator_uuid"]
            turn["last_operator_uuid"] = row["operator_uuid"]
    return found


def _name(connection: Connection, rows: Iterable[Mapping[str, Any]]) -> None:
    """Record the teams `rows` name, each by the latest name they give it."""
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for row in rows:
        if row["event_team_id"] is None:
            continue
        named = {
            "source": row["source"],
            "id": row["event_team_id"],
            "name": row["event_team_name"],
            "named_at": row["occurred_at"],
            "named_rank": row["rank"],
            "named_key": row["dedupe_key"],
            "first_seen_at": row["occurred_at"],
            "last_seen_at": row["occurred_at"],
        }
        before = found.get((named["source"], named["id"]))
        if before is None:
            found[(named["source"], named["id"])] = named
            continue
        if _order(named) > _order(before):
            before |= {k: named[k] for k in ("name", "named_at", "named_rank", "named_key")}
        before["first_seen_at"] = min(before["first_seen_at"], named["first_seen_at"])
        before["last_seen_at"] = max(before["last_seen_at"], named["last_seen_at"])
    db.upsert(
        connection,
        teams,
        list(found.values()),
        key=["source", "id"],
        latest=["named_at", "named_rank", "named_key"],
        least=["first_seen_at"],
        greatest=["last_seen_at"],
    )


def _order(team: Mapping[str, Any]) -> tuple[int, int, str]:
    return (team["named_at"], team["named_rank"], team["named_key"])
