"""Teams and their turns with chats: what team statistics are counted from.

A turn (a row of `waits`) is a team's time with a chat within a session: from the
session's opening, or from a handoff to the team, to the next handoff or the session's
end. The customer waits from its start to the first operator reply within it.

Turns are read off the timeline the chats projector has just written, in the same
transaction (it comes before this one in the registry), so they follow its session rules
whatever order the events arrived in. A new event can change the sessions from its own
on and the end of the one before (see conversation.fold): the turns of a chat are counted
again from the opening of the session before the earliest new event's, and only those.
"""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from sqlalchemy import Connection, Table, and_, bindparam, case, func, select

from cdp import db
from cdp.log import Recorded
from cdp.models import chats, sessions, teams, timeline, waits
from cdp.projectors.chats import ChatsProjector

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

# Whole chats, for a build.
_CHATS_WHOLE: Final = db.Prepared(
    select(*_COLUMNS).join(chats, _OF_CHAT).where(db.among(timeline.c.chat_uuid, "chats"))
)

# The events of the batch (by "positions"): each chat's earliest session among them (a row
# outside any session falls before the first), less one, but not below the first.
_FIRSTS: Final = (
    select(
        timeline.c.chat_uuid,
        func.min(func.coalesce(timeline.c.session_number, 1)).label("number"),
    )
    .where(db.among(timeline.c.position, "positions"))
    .group_by(timeline.c.chat_uuid)
    .cte("firsts")
)
_FROM: Final = case((_FIRSTS.c.number > 1, _FIRSTS.c.number - 1), else_=1)
_STARTS: Final = (
    select(_FIRSTS.c.chat_uuid, sessions.c.number, sessions.c.opened_at)
    .join(sessions, and_(sessions.c.chat_uuid == _FIRSTS.c.chat_uuid, sessions.c.number == _FROM))
    .cte("starts")
)
# Each such chat's rows from that session's opening on (a chat with no session yet has no
# turn: none), and where they start.
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
# The teams the batch's events name, and who names them.
_NAMING: Final = db.Prepared(
    select(*_COLUMNS)
    .join(chats, _OF_CHAT)
    .where(db.among(timeline.c.position, "positions"), timeline.c.event_team_id.is_not(None))
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

    def apply(self, connection: Connection, batch: Sequence[Recorded], *, fresh: bool) -> None:
        if fresh:
            named = {r.incoming.webhook.chat_uuid for r in batch} - {None}
            rows = _CHATS_WHOLE.rows(connection, {"chats": sorted(named)}) if named else []
            _name(connection, rows)
            db.insert(connection, waits, list(turns(rows)))
            return
        positions = [recorded.position for recorded in batch]
        values = {"positions": positions}
        _name(connection, _NAMING.rows(connection, values))
        rows = _SINCE.rows(connection, values)
        starts = {row["chat_uuid"]: row["from_number"] for row in rows}
        _GONE.run(connection, [{"chat": chat, "number": n} for chat, n in starts.items()])
        db.insert(connection, waits, list(turns(rows)))


def turns(rows: Iterable[Mapping[str, Any]]) -> Iterable[dict[str, Any]]:
    """The turns the timeline rows of whole sessions make, in any order."""
    ordered = sorted(
        (row for row in rows if row["session_number"] is not None),
        key=lambda row: (row["chat_uuid"], row["occurred_at"], row["rank"], row["dedupe_key"]),
    )
    turn: dict[str, Any] | None = None
    for row in ordered:
        kind = row["kind"]
        ongoing = (
            turn is not None
            and turn["chat_uuid"] == row["chat_uuid"]
            and turn["session_number"] == row["session_number"]
        )
        if kind in ("session_opened", "handoff"):
            if turn is not None:
                if ongoing and kind == "handoff":
                    turn["handed_off_at"] = row["occurred_at"]
                yield turn
            turn = {
                "position": row["position"],
                "chat_uuid": row["chat_uuid"],
                "session_number": row["session_number"],
                "source": row["source"],
                "team_id": row["team_id"],
                "started_at": row["occurred_at"],
                "started_by": "opening" if kind == "session_opened" else "handoff",
                "replied_at": None,
                "replied_by": None,
                "last_operator_uuid": None,
                "handed_off_at": None,
            }
        elif kind == "operator_reply" and turn is not None and ongoing:
            if turn["replied_at"] is None:
                turn["replied_at"], turn["replied_by"] = row["occurred_at"], row["operator_uuid"]
            turn["last_operator_uuid"] = row["operator_uuid"]
    if turn is not None:
        yield turn


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
