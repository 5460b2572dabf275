"""The reports projector: counts by the hour and customers' waits for a reply, kept from
where the conversations fold placed each event (cdp.conversations.projector).

It reads the chats projector's timeline, fed just before it in the same transaction,
and keeps its own copy of what it counted of each event of a known type (`report_events`:
kind, session, team, and the team in charge just before it; an event of a type not known
counts for nothing and places nothing). For each chat of a batch it walks the
timeline from the new events' reach (a new event changes nothing placed before it, see
cdp.conversations.fold.Rules.reach), row by row beside its copy, until past the chat's
latest new event a known event is placed as the copy has it, with the same team before
it: from there on the fold places everything as before. So what it reads follows what
the batch changed, as the fold's own work does, never the length of the chat.

Each row that moved is taken out of the counts as it was and put in as it is
(`report_counts`, by the local hour of the event and each scope, see cdp.reports.scopes);
the waits for a reply that begin between the boundaries (operator replies and openings)
around the changed rows are found anew (`report_replies`). A rebuild (`fresh`) reads
each chat whole, and derives the same rows with the same functions.
"""

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from sqlalchemy import Connection, Table, bindparam, func, literal_column, or_, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from cdp import db
from cdp.conversations.fold import Rules
from cdp.conversations.tables import chats, sessions, timeline, waits
from cdp.log.store import Recorded
from cdp.log.webhook import INT64_MAX
from cdp.reports import scopes
from cdp.reports.calendar import Calendar
from cdp.reports.records import Changes
from cdp.reports.tables import (
    report_counts,
    report_events,
    report_operator_sessions,
    report_replies,
    report_sessions,
    report_times,
    report_turns,
    report_waiting,
)
from cdp.settings import Settings

_CHUNK: Final = 64
PLATFORM_LENGTH: Final = 100
# What a row is compared on: where it falls, and the team before it.
_PLACED: Final = ("kind", "session_number", "team_id", "before_team_id")
_BOUNDARIES: Final = ("operator_reply", "session_opened")


def create(settings: Settings) -> "ReportsProjector":
    return ReportsProjector(
        Rules.of(settings.session_idle_timeout, settings.session_open_window),
        Calendar.of(settings.timezone),
    )


class ReportsProjector:
    name = "reports"
    # 2: events before a chat's first session counted in no scope; 3: waits and sessions
    # kept as records (with how each ended), and operators' sessions
    version = 3
    tables: tuple[Table, ...] = (
        report_events,
        report_counts,
        report_replies,
        report_turns,
        report_sessions,
        report_times,
        report_operator_sessions,
        report_waiting,
    )
    reads: tuple[str, ...] = ("chats",)

    def __init__(self, rules: Rules, calendar: Calendar) -> None:
        self.rules, self.calendar = rules, calendar
        # The counts' hours are local hours; the rows it reads are the chats projector's,
        # which its session rules shape.
        self.shape = (
            f"timezone={calendar.zone.key} "
            f"session_idle_timeout={rules.idle_timeout_ms}ms "
            f"session_open_window={rules.open_window_ms}ms"
        )

    def apply(
        self, connection: Connection, batch: Sequence[Recorded], *, fresh: bool, tables: db.Tables
    ) -> None:
        new: dict[str, list[Recorded]] = defaultdict(list)
        for recorded in batch:
            chat_uuid = recorded.incoming.webhook.chat_uuid
            if chat_uuid is not None:
                new[chat_uuid].append(recorded)
        if not new:
            return
        counts: Counter[tuple[str, str, int]] = Counter()
        lengths = Changes(self.calendar)
        if fresh:
            self._whole(connection, tables, list(new), counts, lengths)
        else:
            for chat_uuid, of_chat in new.items():
                self._changed(connection, tables, chat_uuid, of_chat, counts, lengths)
        _count(connection, tables, counts)
        lengths.write(connection, tables)
        _wait_now(connection, tables, list(new))

    def forget(self, connection: Connection, chats: Sequence[str], tables: db.Tables) -> None:
        """Every row of the chats, and what they added to the counts."""
        counts: Counter[tuple[str, str, int]] = Counter()
        lengths = Changes(self.calendar)
        values = {"chats": list(chats)}
        events, copies, turns, replies, operators = db.read_together(
            connection,
            (_COPIES_OF_CHATS, values),
            (_SESSION_COPIES_OF_CHATS, values),
            (_TURN_COPIES_OF_CHATS, values),
            (_REPLIES_OF_CHATS, values),
            (_OPERATOR_SESSIONS_OF_CHATS, values),
            tables=tables,
        )
        for row in events:
            self._add(counts, row, -1)
        for row in copies:
            lengths.session(row, -1)
        for row in turns:
            lengths.turn(row, -1)
        for row in replies:
            lengths.reply(row, -1)
        for row in operators:
            self._add_session_of(counts, row, -1)
        _count(connection, tables, counts)
        lengths.write(connection, tables)
        for statement in _FORGET:
            statement.run(connection, [{"chats": list(chats)}], tables)

    # -- counts ------------------------------------------------------------------------

    def _add(
        self, counts: Counter[tuple[str, str, int]], row: Mapping[str, Any], sign: int
    ) -> None:
        """Count a placed event in (or, with sign -1, out of) `counts`."""
        hour = self.calendar.hour(row["occurred_at"])
        for metric, scope in scopes.counted(row):
            # An operator's within a team (the leaderboard's, of whole days): by the day.
            at = self.calendar.midnight_of(hour) if scopes.IN_TEAM in scope else hour
            counts[(scope, metric, at)] += sign

    def _add_session_of(
        self, counts: Counter[tuple[str, str, int]], row: Mapping[str, Any], sign: int
    ) -> None:
        """Count an operator's session in a team (see tables.OperatorSessionRow)."""
        scope = scopes.of_operator_in_team(row["team_id"], row["operator_uuid"])
        day = self.calendar.midnight_of(row["first_at"])
        counts[(scope, scopes.OPERATOR_SESSIONS, day)] += sign

    # -- a rebuild -----------------------------------------------------------------------

    def _whole(
        self,
        connection: Connection,
        tables: db.Tables,
        chat_uuids: list[str],
        counts: Counter[tuple[str, str, int]],
        lengths: Changes,
    ) -> None:
        values = {"chats": chat_uuids}
        lines, turns, found_sessions = db.read_together(
            connection,
            (_TIMELINE_OF_CHATS, values),
            (_TURNS_OF_CHATS, values),
            (_SESSIONS_OF_CHATS, values),
            tables=tables,
        )
        rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in lines:
            rows[row["chat_uuid"]].append(row)
        copies, replies = [], []
        for chat_rows in rows.values():
            placed = list(_placed(chat_rows, None))
            copies += placed
            for row in placed:
                self._add(counts, row, 1)
            replies += waits_for_reply(placed)
        by_position = {row["position"]: row for row in copies}
        openings = {
            (row["chat_uuid"], row["session_number"]): row
            for row in copies
            if row["kind"] == "session_opened"
        }
        ends = {
            (row["chat_uuid"], row["number"]): row["last_activity_at"] for row in found_sessions
        }
        turn_copies = [_turn_copy(row, by_position, ends) for row in turns]
        session_copies = [_session_copy(row, openings) for row in found_sessions]
        for reply in replies:
            if reply["replied_at"] is None:
                reply["closed_at"] = ends.get((reply["chat_uuid"], reply["session_number"]))
            lengths.reply(reply, 1)
        for turn in turn_copies:
            lengths.turn(turn, 1)
        for session in session_copies:
            lengths.session(session, 1)
        db.insert(connection, tables[report_events], copies)
        db.insert(connection, tables[report_replies], replies)
        db.insert(connection, tables[report_turns], turn_copies)
        db.insert(connection, tables[report_sessions], session_copies)
        firsts = _first_replies(copies)
        for row in firsts:
            self._add_session_of(counts, row, 1)
        db.insert(connection, tables[report_operator_sessions], firsts)

    # -- live ----------------------------------------------------------------------------

    def _changed(
        self,
        connection: Connection,
        tables: db.Tables,
        chat_uuid: str,
        batch: Sequence[Recorded],
        counts: Counter[tuple[str, str, int]],
        lengths: Changes,
    ) -> None:
        """Bring the chat's copy, counts, waits and lengths up to date with its timeline."""
        reach = self.rules.reach(min(r.incoming.webhook.timestamp for r in batch))
        latest = max(r.incoming.webhook.timestamp for r in batch)
        found = _LAST_BEFORE.rows(connection, {"chat": chat_uuid, "at": reach}, tables)
        before = found[0] if found else None
        changed: list[tuple[dict[str, Any] | None, dict[str, Any]]] = []
        after = (reach - 1, _HIGHEST_RANK, _HIGHEST_KEY)  # every row at or after the reach
        while True:
            values = {"chat": chat_uuid, **_bound(after), "most": _CHUNK}
            chunk = _TIMELINE_FROM.rows(connection, values, tables)
            if not chunk:
                break
            placed = list(_placed(chunk, before))
            positions = [row["position"] for row in placed]
            stored = {
                row["position"]: row
                for row in _COPIES.rows(connection, {"positions": positions}, tables)
            }
            done = False
            for row in placed:
                was = stored.get(row["position"])
                if was is None or any(was[name] != row[name] for name in _PLACED):
                    changed.append((was, row))
                elif row["occurred_at"] > latest:
                    done = True
                    break
            if done or len(chunk) < _CHUNK:
                break
            before, after = chunk[-1], _order(chunk[-1])
        if not changed:
            return
        for was, row in changed:
            if was is not None:
                self._add(counts, was, -1)
            self._add(counts, row, 1)
        db.upsert(connection, tables[report_events], [row for _, row in changed], key=["position"])
        low = min(_order(row) for _, row in changed)
        high = max(_order(row) for _, row in changed)
        waited, waits_now = _rewait(connection, tables, chat_uuid, low, high)
        for reply in waited:
            lengths.reply(reply, -1)
        for reply in waits_now:
            lengths.reply(reply, 1)
        numbers = {
            number
            for was, row in changed
            for number in (was["session_number"] if was else None, row["session_number"])
            if number is not None
        }
        numbers |= {reply["session_number"] for reply in (*waited, *waits_now)}
        # Each operator's first reply in a session and team, for those the changed rows
        # were or are replies of (their sessions are among `numbers`): an index probe each,
        # sent with the sessions' reads, and the stored ones to compare.
        wanted = sorted(
            {
                (row["session_number"], row["team_id"], row["operator_uuid"])
                for pair in changed
                for row in pair
                if row is not None and _of_operator_session(row)
            }
        )
        probes = [
            (_FIRST_REPLY, {"chat": chat_uuid, "number": n, "team": t, "operator": o})
            for n, t, o in wanted
        ]
        if wanted:
            of_sessions = {"chat": chat_uuid, "numbers": sorted({n for n, _, _ in wanted})}
            probes.append((_OPERATOR_SESSIONS_OF, of_sessions))
        if numbers:
            firsts = _recount_sessions(
                connection, tables, chat_uuid, sorted(numbers), lengths, probes
            )
            if wanted:
                self._recount_operator_sessions(
                    connection, tables, chat_uuid, wanted, firsts, counts
                )

    def _recount_operator_sessions(
        self,
        connection: Connection,
        tables: db.Tables,
        chat_uuid: str,
        wanted: Sequence[tuple[int, int, str]],
        found: Sequence[list[dict[str, Any]]],
        counts: Counter[tuple[str, str, int]],
    ) -> None:
        """Count the operators' sessions `wanted` (session, team, operator) anew from their
        first replies and the stored rows, as `found` (see _changed)."""
        stored = {(r["session_number"], r["team_id"], r["operator_uuid"]): r for r in found[-1]}
        upserts, gone = [], []
        for (number, team, operator), first in zip(wanted, found[:-1], strict=True):
            was = stored.get((number, team, operator))
            first_at = first[0]["first_at"] if first and first[0]["first_at"] is not None else None
            if was is not None and was["first_at"] == first_at:
                continue
            if was is not None:
                self._add_session_of(counts, was, -1)
            key = {"chat_uuid": chat_uuid, "session_number": number, "team_id": team}
            key["operator_uuid"] = operator
            if first_at is None:
                gone.append(key)
                continue
            row = {**key, "first_at": first_at}
            self._add_session_of(counts, row, 1)
            upserts.append(row)
        _OPERATOR_SESSION_GONE.run(connection, gone, tables)
        db.upsert(
            connection,
            tables[report_operator_sessions],
            upserts,
            key=["chat_uuid", "session_number", "team_id", "operator_uuid"],
        )


# -- reading -----------------------------------------------------------------------------

# Bounds past every row's order: ranks are small, dedupe keys hex digits.
_LOWEST: Final = (-INT64_MAX, -1, "")
_HIGHEST: Final = (INT64_MAX, 2**31 - 1, "~")
_HIGHEST_RANK: Final = 2**31 - 1
_HIGHEST_KEY: Final = "~"


def _order(row: Mapping[str, Any]) -> tuple[int, int, str]:
    return (row["occurred_at"], row["rank"], row["dedupe_key"])


def _bound(at: tuple[int, int, str], prefix: str = "") -> dict[str, Any]:
    return {f"{prefix}at": at[0], f"{prefix}rank": at[1], f"{prefix}key": at[2]}


def _after_bound(table: Table, prefix: str = "", inclusive: bool = False) -> list[Any]:
    """Rows after the bound named by `prefix` in the chat's order (or at it): the time
    compared alone too, a bound each database's planner takes its index for."""
    order = tuple_(*(table.c[name] for name in _ORDER_NAMES))
    at = tuple_(*(bindparam(f"{prefix}{n}") for n in ("at", "rank", "key")))
    return [
        table.c.occurred_at >= bindparam(f"{prefix}at"),
        order >= at if inclusive else order > at,
    ]


def _before_bound(table: Table, prefix: str = "", inclusive: bool = False) -> list[Any]:
    order = tuple_(*(table.c[name] for name in _ORDER_NAMES))
    at = tuple_(*(bindparam(f"{prefix}{n}") for n in ("at", "rank", "key")))
    return [
        table.c.occurred_at <= bindparam(f"{prefix}at"),
        order <= at if inclusive else order < at,
    ]


_ORDER_NAMES: Final = ("occurred_at", "rank", "dedupe_key")


def _ordered(table: Table, descending: bool = False) -> list[Any]:
    columns = [table.c[name] for name in _ORDER_NAMES]
    return [column.desc() for column in columns] if descending else columns


_LINE: Final = timeline.join(chats, chats.c.uuid == timeline.c.chat_uuid)
_READ: Final = (
    timeline.c.position,
    timeline.c.chat_uuid,
    timeline.c.occurred_at,
    timeline.c.rank,
    timeline.c.dedupe_key,
    timeline.c.kind,
    timeline.c.session_number,
    timeline.c.team_id,
    timeline.c.operator_uuid,
    timeline.c.platform,
    chats.c.source,
)
# Events of a type not known count for nothing, and place nothing (see cdp.conversations.
# fold): the copy leaves them out.
_KNOWN: Final = timeline.c.kind != "other"
_TIMELINE_OF_CHATS: Final = db.Prepared(
    select(*_READ)
    .select_from(_LINE)
    .where(db.any_of(timeline.c.chat_uuid, "chats"), _KNOWN)
    .order_by(timeline.c.chat_uuid, *_ordered(timeline))
)
_TIMELINE_FROM: Final = db.Prepared(
    select(*_READ)
    .select_from(_LINE)
    .where(timeline.c.chat_uuid == bindparam("chat"), _KNOWN, *_after_bound(timeline))
    .order_by(*_ordered(timeline))
    .limit(bindparam("most"))
)
# The chat's last row before a time: its place is what the next row's team before it is.
_LAST_BEFORE: Final = db.Prepared(
    select(timeline.c.session_number, timeline.c.team_id)
    .where(
        timeline.c.chat_uuid == bindparam("chat"),
        _KNOWN,
        timeline.c.occurred_at < bindparam("at"),
    )
    .order_by(*_ordered(timeline, descending=True))
    .limit(1)
)
_COPIES: Final = db.Prepared(
    select(report_events).where(db.any_of(report_events.c.position, "positions"))
)
_COPIES_OF_CHATS: Final = db.Prepared(
    select(report_events).where(db.any_of(report_events.c.chat_uuid, "chats"))
)
_FORGET: Final = tuple(
    db.Prepared(table.delete().where(db.any_of(table.c.chat_uuid, "chats")))
    for table in (
        report_events,
        report_replies,
        report_turns,
        report_sessions,
        report_waiting,
        report_operator_sessions,
    )
)


# -- operators' sessions -----------------------------------------------------------------


def _of_operator_session(row: Mapping[str, Any]) -> bool:
    return (
        row["kind"] == "operator_reply"
        and row["session_number"] is not None
        and row["team_id"] is not None
        and row["operator_uuid"] is not None
    )


def _first_replies(copies: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each operator's first reply in each session and team among a chat's placed rows."""
    first: dict[tuple[str, int, int, str], int] = {}
    for row in copies:
        if _of_operator_session(row):
            key = (row["chat_uuid"], row["session_number"], row["team_id"], row["operator_uuid"])
            if key not in first or row["occurred_at"] < first[key]:
                first[key] = row["occurred_at"]
    return [
        {
            "chat_uuid": chat,
            "session_number": number,
            "team_id": team,
            "operator_uuid": operator,
            "first_at": at,
        }
        for (chat, number, team, operator), at in sorted(first.items())
    ]


_FIRST_REPLY: Final = db.Prepared(
    select(func.min(report_events.c.occurred_at).label("first_at")).where(
        report_events.c.chat_uuid == bindparam("chat"),
        report_events.c.session_number == bindparam("number"),
        report_events.c.team_id == bindparam("team"),
        report_events.c.operator_uuid == bindparam("operator"),
        # Written out, not bound: what lets each database take the partial index.
        report_events.c.kind == literal_column("'operator_reply'"),
    )
)
_OPERATOR_SESSIONS_OF: Final = db.Prepared(
    select(report_operator_sessions).where(
        report_operator_sessions.c.chat_uuid == bindparam("chat"),
        db.any_of(report_operator_sessions.c.session_number, "numbers"),
    )
)
_OPERATOR_SESSIONS_OF_CHATS: Final = db.Prepared(
    select(report_operator_sessions).where(db.any_of(report_operator_sessions.c.chat_uuid, "chats"))
)
_OPERATOR_SESSION_GONE: Final = db.Prepared(
    report_operator_sessions.delete().where(
        report_operator_sessions.c.chat_uuid == bindparam("chat_uuid"),
        report_operator_sessions.c.session_number == bindparam("session_number"),
        report_operator_sessions.c.team_id == bindparam("team_id"),
        report_operator_sessions.c.operator_uuid == bindparam("operator_uuid"),
    )
)


def _placed(
    rows: Iterable[Mapping[str, Any]], before: Mapping[str, Any] | None
) -> Iterable[dict[str, Any]]:
    """Timeline rows, in order, as the copy keeps them: with the team in charge before
    each in its session (`before`: the row before the first)."""
    for row in rows:
        same = before is not None and before["session_number"] == row["session_number"]
        platform = row["platform"]
        yield {
            "position": row["position"],
            "chat_uuid": row["chat_uuid"],
            "occurred_at": row["occurred_at"],
            "rank": row["rank"],
            "dedupe_key": row["dedupe_key"],
            "kind": row["kind"],
            "session_number": row["session_number"],
            "team_id": row["team_id"],
            "before_team_id": before["team_id"] if same and before is not None else None,
            "operator_uuid": row["operator_uuid"],
            "platform": platform[:PLATFORM_LENGTH] if isinstance(platform, str) else None,
            "source": row["source"],
        }
        before = row


# -- waits for a reply -----------------------------------------------------------------


def waits_for_reply(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The waits for a reply among a chat's placed rows, given in order from a boundary
    (an operator reply or an opening) or the chat's start, with every boundary between
    and the first customer message after each: a wait begins at the first customer
    message after a boundary, in the boundary's session, and ends at the next operator
    reply of that session, if one comes before the next opening."""
    found: list[dict[str, Any]] = []
    waiting: dict[str, Any] | None = None
    boundary: Mapping[str, Any] | None = None
    expecting = True  # no customer message yet since the boundary
    for row in rows:
        kind = row["kind"]
        if kind in _BOUNDARIES:
            if (
                waiting is not None
                and kind == "operator_reply"
                and row["session_number"] == waiting["session_number"]
            ):
                waiting["replied_at"] = row["occurred_at"]
                waiting["replied_by"] = row["operator_uuid"]
            waiting, boundary, expecting = None, row, True
        elif kind == "message_in" and expecting:
            expecting = False
            number = row["session_number"]
            if number is not None and boundary is not None and boundary["session_number"] == number:
                waiting = _wait(row, follows_reply=boundary["kind"] == "operator_reply")
                found.append(waiting)
    return found


def _wait(row: Mapping[str, Any], follows_reply: bool) -> dict[str, Any]:
    return {
        "position": row["position"],
        "chat_uuid": row["chat_uuid"],
        "occurred_at": row["occurred_at"],
        "rank": row["rank"],
        "dedupe_key": row["dedupe_key"],
        "session_number": row["session_number"],
        "team_id": row["team_id"],
        "platform": row["platform"],
        "source": row["source"],
        "follows_reply": follows_reply,
        "replied_at": None,
        "replied_by": None,
        "closed_at": None,
    }


_EVENTS: Final = report_events
_BOUNDARY: Final = or_(*(_EVENTS.c.kind == kind for kind in _BOUNDARIES))
_OF_CHAT: Final = _EVENTS.c.chat_uuid == bindparam("chat")
# The chat's last boundary before a point, and its first after one.
_BOUNDARY_BEFORE: Final = db.Prepared(
    select(_EVENTS)
    .where(_OF_CHAT, _BOUNDARY, *_before_bound(_EVENTS))
    .order_by(*_ordered(_EVENTS, descending=True))
    .limit(1)
)
_BOUNDARY_AFTER: Final = db.Prepared(
    select(_EVENTS)
    .where(_OF_CHAT, _BOUNDARY, *_after_bound(_EVENTS))
    .order_by(*_ordered(_EVENTS))
    .limit(1)
)
_BOUNDARIES_WITHIN: Final = db.Prepared(
    select(_EVENTS)
    .where(
        _OF_CHAT,
        _BOUNDARY,
        *_after_bound(_EVENTS, "low_", inclusive=True),
        *_before_bound(_EVENTS, "high_", inclusive=True),
    )
    .order_by(*_ordered(_EVENTS))
)
# The first customer message after a point and before another.
_MESSAGE_BETWEEN: Final = db.Prepared(
    select(_EVENTS)
    .where(
        _OF_CHAT,
        _EVENTS.c.kind == "message_in",
        *_after_bound(_EVENTS, "low_"),
        *_before_bound(_EVENTS, "high_"),
    )
    .order_by(*_ordered(_EVENTS))
    .limit(1)
)
_WAITS_WITHIN: Final = db.Prepared(
    select(report_replies).where(
        report_replies.c.chat_uuid == bindparam("chat"),
        *_after_bound(report_replies, "low_"),
        *_before_bound(report_replies, "high_"),
    )
)
_WAITS_GONE: Final = db.Prepared(
    report_replies.delete().where(
        report_replies.c.chat_uuid == bindparam("chat"),
        *_after_bound(report_replies, "low_"),
        *_before_bound(report_replies, "high_"),
    )
)


def _rewait(
    connection: Connection,
    tables: db.Tables,
    chat_uuid: str,
    low: tuple[int, int, str],
    high: tuple[int, int, str],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Find anew the chat's waits that begin between the last boundary before `low` and
    the first after `high` (the rows changed lie between), from the copy as it is now:
    no wait beginning outside them changed (see the module). Each an index probe, but
    for the boundaries among the rows changed. The waits there were, and are now."""
    chat = {"chat": chat_uuid}
    first, last, inside = db.read_together(
        connection,
        (_BOUNDARY_BEFORE, chat | _bound(low)),
        (_BOUNDARY_AFTER, chat | _bound(high)),
        (_BOUNDARIES_WITHIN, chat | _bound(low, "low_") | _bound(high, "high_")),
        tables=tables,
    )
    start = first[0] if first else None
    end = last[0] if last else None
    boundaries: list[dict[str, Any] | None] = [start, *inside]
    # The first customer message after each boundary, before the next one.
    probes = []
    for index, boundary in enumerate(boundaries):
        upto = boundaries[index + 1] if index + 1 < len(boundaries) else end
        values = chat | _bound(_order(boundary) if boundary else _LOWEST, "low_")
        probes.append(
            (_MESSAGE_BETWEEN, values | _bound(_order(upto) if upto else _HIGHEST, "high_"))
        )
    messages = db.read_together(connection, *probes, tables=tables)
    rows: list[dict[str, Any]] = []
    for boundary, message in zip(boundaries, messages, strict=True):
        if boundary is not None:
            rows.append(boundary)
        rows += message
    if end is not None:
        rows.append(end)
    gone = chat | _bound(_order(start) if start else _LOWEST, "low_")
    gone |= _bound(_order(end) if end else _HIGHEST, "high_")
    before = _WAITS_WITHIN.rows(connection, gone, tables)
    _WAITS_GONE.run(connection, [gone], tables)
    after = waits_for_reply(rows)
    db.insert(connection, tables[report_replies], after)
    return before, after


# -- turns and sessions -------------------------------------------------------------------

_TURNS_OF_CHATS: Final = db.Prepared(select(waits).where(db.any_of(waits.c.chat_uuid, "chats")))
_SESSIONS_OF_CHATS: Final = db.Prepared(
    select(
        sessions.c.chat_uuid,
        sessions.c.number,
        sessions.c.opened_at,
        sessions.c.last_activity_at,
        sessions.c.teams,
    ).where(db.any_of(sessions.c.chat_uuid, "chats"))
)
_TURN_COPIES_OF_CHATS: Final = db.Prepared(
    select(report_turns).where(db.any_of(report_turns.c.chat_uuid, "chats"))
)
_SESSION_COPIES_OF_CHATS: Final = db.Prepared(
    select(report_sessions).where(db.any_of(report_sessions.c.chat_uuid, "chats"))
)
_REPLIES_OF_CHATS: Final = db.Prepared(
    select(report_replies).where(db.any_of(report_replies.c.chat_uuid, "chats"))
)
# With the messenger of the event that began each (as the copy placed it).
_TURNS_OF: Final = db.Prepared(
    select(waits, report_events.c.platform.label("start_platform"))
    .select_from(waits.outerjoin(report_events, report_events.c.position == waits.c.position))
    .where(waits.c.chat_uuid == bindparam("chat"), db.any_of(waits.c.session_number, "numbers"))
)
_SESSIONS_OF: Final = db.Prepared(
    select(
        sessions.c.chat_uuid,
        sessions.c.number,
        sessions.c.opened_at,
        sessions.c.last_activity_at,
        sessions.c.teams,
    ).where(sessions.c.chat_uuid == bindparam("chat"), db.any_of(sessions.c.number, "numbers"))
)
_TURN_COPIES_OF: Final = db.Prepared(
    select(report_turns).where(
        report_turns.c.chat_uuid == bindparam("chat"),
        db.any_of(report_turns.c.session_number, "numbers"),
    )
)
_SESSION_COPIES_OF: Final = db.Prepared(
    select(report_sessions).where(
        report_sessions.c.chat_uuid == bindparam("chat"),
        db.any_of(report_sessions.c.number, "numbers"),
    )
)
_OPENINGS_OF: Final = db.Prepared(
    select(report_events).where(
        report_events.c.chat_uuid == bindparam("chat"),
        report_events.c.kind == "session_opened",
        db.any_of(report_events.c.session_number, "numbers"),
    )
)
_UNANSWERED_OF: Final = db.Prepared(
    select(report_replies).where(
        report_replies.c.chat_uuid == bindparam("chat"),
        db.any_of(report_replies.c.session_number, "numbers"),
        report_replies.c.replied_at.is_(None),
    )
)
_TURN_COPIES_GONE: Final = db.Prepared(
    report_turns.delete().where(db.any_of(report_turns.c.position, "positions"))
)
_SESSION_COPY_GONE: Final = db.Prepared(
    report_sessions.delete().where(
        report_sessions.c.chat_uuid == bindparam("chat_uuid"),
        report_sessions.c.number == bindparam("number"),
    )
)


def _turn_copy(
    turn: Mapping[str, Any],
    copies: Mapping[int, Mapping[str, Any]],
    ends: Mapping[tuple[str, int], int],
) -> dict[str, Any]:
    """A turn as the reports keep it: with the messenger of the event that began it, and
    for one unanswered and not handed on, when its session last saw an event (`ends`)."""
    start = copies.get(turn["position"])
    open_ended = turn["replied_at"] is None and turn["handed_off_at"] is None
    return {
        "position": turn["position"],
        "chat_uuid": turn["chat_uuid"],
        "session_number": turn["session_number"],
        "team_id": turn["team_id"],
        "started_at": turn["started_at"],
        "replied_at": turn["replied_at"],
        "replied_by": turn["replied_by"],
        "handed_off_at": turn["handed_off_at"],
        "closed_at": ends.get((turn["chat_uuid"], turn["session_number"])) if open_ended else None,
        "platform": start["platform"] if start is not None else None,
        "source": turn["source"],
    }


def _session_copy(
    session: Mapping[str, Any], openings: Mapping[tuple[str, int], Mapping[str, Any]]
) -> dict[str, Any]:
    """A session as the reports keep it: the team and messenger its opening names."""
    opening = openings.get((session["chat_uuid"], session["number"]))
    teams = session["teams"]
    return {
        "chat_uuid": session["chat_uuid"],
        "number": session["number"],
        "opened_at": session["opened_at"],
        "last_activity_at": session["last_activity_at"],
        "team_id": teams[0] if teams else None,
        "platform": opening["platform"] if opening is not None else None,
        "source": opening["source"] if opening is not None else "",
    }


def _recount_sessions(
    connection: Connection,
    tables: db.Tables,
    chat_uuid: str,
    numbers: Sequence[int],
    lengths: Changes,
    also: Sequence[tuple[db.Prepared, Mapping[str, Any]]] = (),
) -> list[list[dict[str, Any]]]:
    """Bring the copies of the sessions `numbers` of a chat, and of their turns, up to date
    (their rows changed, or their numbers did), with the records they count; the rows of
    the queries `also`, sent with its own reads."""
    values = {"chat": chat_uuid, "numbers": list(numbers)}
    turns, found, old_turns, old_sessions, openings, unanswered, *others = db.read_together(
        connection,
        (_TURNS_OF, values),
        (_SESSIONS_OF, values),
        (_TURN_COPIES_OF, values),
        (_SESSION_COPIES_OF, values),
        (_OPENINGS_OF, values),
        (_UNANSWERED_OF, values),
        *also,
        tables=tables,
    )
    by_position = {t["position"]: {"platform": t["start_platform"]} for t in turns}
    opened = {(row["chat_uuid"], row["session_number"]): row for row in openings}
    ends = {(row["chat_uuid"], row["number"]): row["last_activity_at"] for row in found}
    # A wait with no reply ends with its session: when that session last saw an event.
    closed = []
    for reply in unanswered:
        closed_at = ends.get((reply["chat_uuid"], reply["session_number"]))
        if reply["closed_at"] != closed_at:
            lengths.reply(reply, -1)
            closed.append({**reply, "closed_at": closed_at})
            lengths.reply(closed[-1], 1)
    db.upsert(connection, tables[report_replies], closed, key=["position"])
    new_turns = {t["position"]: _turn_copy(t, by_position, ends) for t in turns}
    was_turns = {t["position"]: t for t in old_turns}
    changed_turns = [t for p, t in new_turns.items() if was_turns.get(p) != t]
    for position, turn in was_turns.items():
        if new_turns.get(position) != turn:
            lengths.turn(turn, -1)
    for turn in changed_turns:
        lengths.turn(turn, 1)
    gone = [p for p in was_turns if p not in new_turns]
    if gone:
        _TURN_COPIES_GONE.run(connection, [{"positions": gone}], tables)
    db.upsert(connection, tables[report_turns], changed_turns, key=["position"])
    new_sessions = {(s["chat_uuid"], s["number"]): _session_copy(s, opened) for s in found}
    was_sessions = {(s["chat_uuid"], s["number"]): s for s in old_sessions}
    changed_sessions = [s for k, s in new_sessions.items() if was_sessions.get(k) != s]
    for key, session in was_sessions.items():
        if new_sessions.get(key) != session:
            lengths.session(session, -1)
    for session in changed_sessions:
        lengths.session(session, 1)
    ended = [
        {"chat_uuid": chat, "number": number}
        for chat, number in was_sessions
        if (chat, number) not in new_sessions
    ]
    _SESSION_COPY_GONE.run(connection, ended, tables)
    db.upsert(connection, tables[report_sessions], changed_sessions, key=["chat_uuid", "number"])
    return others


# -- who waits now ---------------------------------------------------------------------

_CHAT_NOW: Final = db.Prepared(
    select(chats.c.session_number, chats.c.team_id, chats.c.source, chats.c.platform).where(
        chats.c.uuid == bindparam("chat")
    )
)
_SESSION_NOW: Final = db.Prepared(
    select(sessions.c.number, sessions.c.last_activity_at)
    .where(sessions.c.chat_uuid == bindparam("chat"))
    .order_by(sessions.c.number.desc())
    .limit(1)
)
_TURN_NOW: Final = db.Prepared(
    select(waits.c.session_number, waits.c.started_at, waits.c.replied_at)
    .where(waits.c.chat_uuid == bindparam("chat"))
    .order_by(waits.c.session_number.desc(), waits.c.ordinal.desc())
    .limit(1)
)
_WAIT_NOW: Final = db.Prepared(
    select(report_replies)
    .where(report_replies.c.chat_uuid == bindparam("chat"))
    .order_by(*_ordered(report_replies, descending=True))
    .limit(1)
)
_NOT_WAITING: Final = db.Prepared(
    report_waiting.delete().where(report_waiting.c.chat_uuid == bindparam("chat"))
)


def _wait_now(connection: Connection, tables: db.Tables, chat_uuids: Sequence[str]) -> None:
    """Whether each chat's customer waits now (see tables.WaitingRow), from the chat, its
    latest session and turn, and its latest wait: four probes a chat, sent together."""
    probes = [
        (query, {"chat": chat_uuid})
        for chat_uuid in chat_uuids
        for query in (_CHAT_NOW, _SESSION_NOW, _TURN_NOW, _WAIT_NOW)
    ]
    found = db.read_together(connection, *probes, tables=tables)
    waiting: list[dict[str, Any]] = []
    done: list[dict[str, Any]] = []
    for index, chat_uuid in enumerate(chat_uuids):
        chat, session, turn, wait = (
            rows[0] if rows else None for rows in found[4 * index : 4 * index + 4]
        )
        row = _waiting(chat_uuid, chat, session, turn, wait)
        (waiting if row is not None else done).append(row or {"chat": chat_uuid})
    db.upsert(connection, tables[report_waiting], waiting, key=["chat_uuid"])
    _NOT_WAITING.run(connection, done, tables)


def _waiting(
    chat_uuid: str,
    chat: Mapping[str, Any] | None,
    session: Mapping[str, Any] | None,
    turn: Mapping[str, Any] | None,
    wait: Mapping[str, Any] | None,
) -> dict[str, Any] | None:
    if chat is None or session is None or wait is None or wait["replied_at"] is not None:
        return None
    if wait["session_number"] != session["number"]:
        return None  # the latest session has no customer message yet
    current = turn is not None and turn["session_number"] == session["number"]
    platform = chat["platform"]
    return {
        "chat_uuid": chat_uuid,
        "session_number": session["number"],
        "position": wait["position"],
        "since": wait["occurred_at"],
        "follows_reply": wait["follows_reply"],
        "last_activity_at": session["last_activity_at"],
        "team_id": chat["team_id"],
        "turn_started_at": turn["started_at"] if current and turn is not None else None,
        "turn_answered": bool(current and turn is not None and turn["replied_at"] is not None),
        "source": chat["source"],
        "platform": platform[:PLATFORM_LENGTH] if isinstance(platform, str) else None,
    }


# -- writing the counts ----------------------------------------------------------------


def _adding(dialect: str) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(report_counts).values(
        scope=bindparam("scope", type_=report_counts.c.scope.type),
        metric=bindparam("metric", type_=report_counts.c.metric.type),
        hour=bindparam("hour", type_=report_counts.c.hour.type),
        n=bindparam("n", type_=report_counts.c.n.type),
    )
    return statement.on_conflict_do_update(
        index_elements=["scope", "metric", "hour"],
        set_={"n": report_counts.c.n + statement.excluded.n},
    )


_ADD: Final = db.Prepared(_adding)
_EMPTIED: Final = db.Prepared(
    report_counts.delete().where(
        report_counts.c.scope == bindparam("scope"),
        report_counts.c.metric == bindparam("metric"),
        report_counts.c.hour == bindparam("hour"),
        report_counts.c.n == 0,
    )
)


def _count(
    connection: Connection, tables: db.Tables, counts: Counter[tuple[str, str, int]]
) -> None:
    """Add `counts` to the stored ones; a count that falls to nothing goes."""
    rows: list[dict[str, Any]] = [
        {"scope": scope, "metric": metric, "hour": hour, "n": n}
        for (scope, metric, hour), n in sorted(counts.items())
        if n
    ]
    if not rows:
        return
    _ADD.run(connection, rows, tables)
    fallen = [row for row in rows if row["n"] < 0]
    if fallen:
        _EMPTIED.run(connection, fallen, tables)
