"""The lengths of waits and sessions, kept sorted per metric, scope and local hour, so that
a median over any units is read from a few rows, not from every wait (see
tables.ReportLengthRow).

The reports projector hands this module each wait or session it adds or takes away (a
turn, a wait for a reply, a session: what the rows of `report_turns`, `report_replies`
and `report_sessions` say); each is counted under its scopes, in the local hour it began.
"""

import sys
from array import array
from bisect import bisect_left, insort
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from sqlalchemy import BigInteger, Connection, String, bindparam, select, tuple_

from cdp import db
from cdp.reports import scopes
from cdp.reports.calendar import Calendar
from cdp.reports.tables import report_lengths

_LITTLE: Final = sys.byteorder == "little"

Key = tuple[str, str, int]  # scope, metric, hour


def packed(lengths: Sequence[int]) -> bytes:
    found = array("q", lengths)
    if not _LITTLE:  # pragma: no cover - every machine this runs on is little-endian
        found.byteswap()
    return found.tobytes()


def unpacked(data: bytes) -> "array[int]":
    found = array("q")
    found.frombytes(data)
    if not _LITTLE:  # pragma: no cover
        found.byteswap()
    return found


class Changes:
    """Lengths to add and take away, and unanswered waits, per key."""

    def __init__(self, calendar: Calendar) -> None:
        self.calendar = calendar
        self.added: defaultdict[Key, list[int]] = defaultdict(list)
        self.removed: defaultdict[Key, list[int]] = defaultdict(list)
        self.unanswered: defaultdict[Key, int] = defaultdict(int)

    def turn(self, row: Mapping[str, Any], sign: int) -> None:
        """A team's turn: a first-response wait, begun at `started_at`."""
        length = None if row["replied_at"] is None else row["replied_at"] - row["started_at"]
        shared = [*_shared(row), scopes.of("team", row["team_id"])]
        self._count(
            "first_response",
            row["started_at"],
            shared,
            row["replied_by"],
            length,
            sign,
            row["team_id"],
        )

    def reply(self, row: Mapping[str, Any], sign: int) -> None:
        """A customer's wait for a reply, begun at `occurred_at`."""
        begun = row["occurred_at"]
        length = None if row["replied_at"] is None else row["replied_at"] - begun
        shared = _shared(row)
        if row["team_id"] is not None:
            shared.append(scopes.of("team", row["team_id"]))
        self._count("reply_time", begun, shared, row["replied_by"], length, sign, row["team_id"])

    def session(self, row: Mapping[str, Any], sign: int) -> None:
        """A session, from its opening to its last event (counted once it has ended: the
        queries take out those still open)."""
        shared = _shared(row)
        if row["team_id"] is not None:
            shared.append(scopes.of("team", row["team_id"]))
        length = row["last_activity_at"] - row["opened_at"]
        self._count("session_duration", row["opened_at"], shared, None, length, sign)

    def _count(
        self,
        metric: str,
        begun: int,
        shared: Iterable[str],
        operator: str | None,
        length: int | None,
        sign: int,
        team: int | None = None,
    ) -> None:
        hour = self.calendar.hour(begun)
        keys = [(scope, metric, hour) for scope in shared]
        if operator is not None and length is not None:  # an operator's: those they ended
            keys.append((scopes.of("operator", operator), metric, hour))
            if team is not None:  # within the team (the leaderboard's)
                keys.append((scopes.of_operator_in_team(team, operator), metric, hour))
        for key in keys:
            if length is None:
                self.unanswered[key] += sign
            elif sign > 0:
                self.added[key].append(length)
            else:
                self.removed[key].append(length)

    def write(self, connection: Connection, tables: db.Tables) -> None:
        """Bring the stored rows of every key changed up to date."""
        keys = sorted({*self.added, *self.removed, *self.unanswered})
        if not keys:
            return
        stored: dict[Key, dict[str, Any]] = {}
        for chunk in _chunks(keys, 200):
            values = {"keys": [{"scope": s, "metric": m, "hour": h} for s, m, h in chunk]}
            for found in _STORED.rows(connection, values, tables):
                stored[(found["scope"], found["metric"], found["hour"])] = found
        upserts, gone = [], []
        for key in keys:
            row = stored.get(key)
            lengths = list(unpacked(row["lengths"])) if row is not None else []
            unanswered = (row["unanswered"] if row is not None else 0) + self.unanswered.get(key, 0)
            for length in self.removed.get(key, ()):
                index = bisect_left(lengths, length)
                if index < len(lengths) and lengths[index] == length:
                    del lengths[index]
            for length in self.added.get(key, ()):
                insort(lengths, length)
            scope, metric, hour = key
            if lengths or unanswered:
                upserts.append(
                    {
                        "scope": scope,
                        "metric": metric,
                        "hour": hour,
                        "lengths": packed(lengths),
                        "unanswered": unanswered,
                    }
                )
            elif row is not None:
                gone.append({"scope": scope, "metric": metric, "hour": hour})
        db.upsert(connection, tables[report_lengths], upserts, key=["scope", "metric", "hour"])
        _GONE.run(connection, gone, tables)


def _shared(row: Mapping[str, Any]) -> list[str]:
    found = [scopes.ALL, scopes.of("source", row["source"])]
    if row["platform"] is not None:
        found.append(scopes.of("platform", row["platform"]))
    return found


def _chunks(items: Sequence[Key], size: int) -> Iterable[Sequence[Key]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _stored(dialect: str) -> Any:
    columns = {"scope": String(), "metric": String(), "hour": BigInteger()}
    wanted = db.records("keys", dialect, columns)
    return select(report_lengths).join(
        wanted,
        tuple_(report_lengths.c.scope, report_lengths.c.metric, report_lengths.c.hour)
        == tuple_(wanted.c.scope, wanted.c.metric, wanted.c.hour),
    )


_STORED: Final = db.Prepared(_stored)
_GONE: Final = db.Prepared(
    report_lengths.delete().where(
        report_lengths.c.scope == bindparam("scope"),
        report_lengths.c.metric == bindparam("metric"),
        report_lengths.c.hour == bindparam("hour"),
    )
)
