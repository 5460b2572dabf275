"""The waits and sessions the reports measure, kept per metric, scope and local hour as
records of five 64-bit integers, so that a report over any units reads a few rows and
works out medians, working time and targets' outcomes from them in bulk, without the
rows of each wait (see tables.ReportTimesRow).

A record is four 64-bit integers, (began, ended, team, position * 8 + flags):

- `first_response`: a team's turn (cdp.conversations.tables.waits), begun at its start;
- `reply_time`: a customer's wait for a reply (tables.ReportReplyRow);
- `session_duration`: a session, from its opening.

`ended` is when it ended and `flags` how (HOW_MASK): REPLIED (a reply came then),
HANDED_OFF (handed on to another team then, unanswered) or WITH_SESSION (no reply: it
ends when its session does, which is over once `ended`, the session's last event, is
further back than the idle timeout; a session's own record is one such). FOLLOWS_REPLY
marks a wait for a reply that follows an operator reply (a next reply, with its target).
`team` is the team in charge when it began (NO_TEAM for none), and `position` the log
position of the event that began it (a session's: its number); positions are far below
2**60, so flags take the low three bits of the last.

The reports projector hands this module each turn, wait and session it adds or takes
away (rows of `report_turns`, `report_replies` and `report_sessions`): each is counted
under its scopes, in the local hour it began; under an operator within a team (the
leaderboard's, which counts whole days), in the local day. The records of a key are kept
sorted, so that a rebuild writes them byte for byte as the live projector did.
"""

import sys
from array import array
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from hashlib import blake2b
from typing import Any, Final

from sqlalchemy import BigInteger, Connection, String, bindparam, select, tuple_

from cdp import db
from cdp.reports import scopes
from cdp.reports.calendar import Calendar
from cdp.reports.tables import report_times

_LITTLE: Final = sys.byteorder == "little"

WIDTH: Final = 4  # integers a record
BEGAN, ENDED, TEAM, KEY = range(WIDTH)
FLAG_BITS: Final = 3
REPLIED: Final = 0
HANDED_OFF: Final = 1
WITH_SESSION: Final = 2
HOW_MASK: Final = 3
FOLLOWS_REPLY: Final = 4
NO_TEAM: Final = -(2**63)

Key = tuple[str, str, int]  # scope, metric, hour
Record = tuple[int, int, int, int]


def unpacked(data: bytes) -> list[Record]:
    found = array("q")
    found.frombytes(data)
    if not _LITTLE:  # pragma: no cover
        found.byteswap()
    values = iter(found)
    return list(zip(values, values, values, values, strict=True))


def _team(team: int | None) -> int:
    return NO_TEAM if team is None else team


def turn_record(row: Mapping[str, Any]) -> Record:
    """A team's turn as a record (see the module)."""
    began = row["started_at"]
    if row["replied_at"] is not None:
        ended, how = row["replied_at"], REPLIED
    elif row["handed_off_at"] is not None:
        ended, how = row["handed_off_at"], HANDED_OFF
    else:
        ended, how = row["closed_at"] if row["closed_at"] is not None else began, WITH_SESSION
    return (began, ended, _team(row["team_id"]), row["position"] << FLAG_BITS | how)


def reply_record(row: Mapping[str, Any]) -> Record:
    """A customer's wait for a reply as a record."""
    began = row["occurred_at"]
    if row["replied_at"] is not None:
        ended, how = row["replied_at"], REPLIED
    else:
        ended, how = row["closed_at"] if row["closed_at"] is not None else began, WITH_SESSION
    flags = how | (FOLLOWS_REPLY if row["follows_reply"] else 0)
    return (began, ended, _team(row["team_id"]), row["position"] << FLAG_BITS | flags)


def session_record(row: Mapping[str, Any]) -> Record:
    """A session as a record: from its opening to its last event."""
    return (
        row["opened_at"],
        row["last_activity_at"],
        _team(row["team_id"]),
        row["number"] << FLAG_BITS | WITH_SESSION,
    )


class Changes:
    """Records to add and take away, per key: one added and taken away in the same batch
    comes to nothing."""

    def __init__(self, calendar: Calendar) -> None:
        self.calendar = calendar
        self.delta: defaultdict[Key, Counter[Record]] = defaultdict(Counter)

    def turn(self, row: Mapping[str, Any], sign: int) -> None:
        record = turn_record(row)
        shared = [*_shared(row), scopes.of("team", row["team_id"])]
        self._count("first_response", record, shared, row["replied_by"], sign, row["team_id"])

    def reply(self, row: Mapping[str, Any], sign: int) -> None:
        record = reply_record(row)
        shared = _shared(row)
        if row["team_id"] is not None:
            shared.append(scopes.of("team", row["team_id"]))
        self._count("reply_time", record, shared, row["replied_by"], sign, row["team_id"])

    def session(self, row: Mapping[str, Any], sign: int) -> None:
        shared = _shared(row)
        if row["team_id"] is not None:
            shared.append(scopes.of("team", row["team_id"]))
        self._count("session_duration", session_record(row), shared, None, sign)

    def _count(
        self,
        metric: str,
        record: Record,
        shared: Iterable[str],
        operator: str | None,
        sign: int,
        team: int | None = None,
    ) -> None:
        hour = self.calendar.hour(record[BEGAN])
        keys = [(scope, metric, hour) for scope in shared]
        if operator is not None and record[KEY] & HOW_MASK == REPLIED:  # those they ended
            keys.append((scopes.of("operator", operator), metric, hour))
            if team is not None:  # within the team (the leaderboard's): by the day
                day = self.calendar.midnight_of(record[BEGAN])
                keys.append((scopes.of_operator_in_team(team, operator), metric, day))
        for key in keys:
            self.delta[key][record] += sign

    def write(self, connection: Connection, tables: db.Tables) -> None:
        """Bring the stored rows of every key changed up to date."""
        keys = sorted(key for key, delta in self.delta.items() if any(delta.values()))
        if not keys:
            return
        stored: dict[Key, bytes] = {}
        for chunk in _chunks(keys, 200):
            values = {"keys": [{"scope": s, "metric": m, "hour": h} for s, m, h in chunk]}
            for found in _STORED.rows(connection, values, tables):
                stored[(found["scope"], found["metric"], found["hour"])] = found["records"]
        upserts, gone = [], []
        for key in keys:
            held = _Held(stored.get(key, b""))
            for record, n in self.delta[key].items():
                for _ in range(abs(n)):
                    if n > 0:
                        held.add(record)
                    else:
                        held.remove(record)  # one not held: none, so a read never fails
            scope, metric, hour = key
            if len(held):
                data = held.packed()
                upserts.append(
                    {
                        "scope": scope,
                        "metric": metric,
                        "hour": hour,
                        "records": data,
                        "version": version_of(data),
                    }
                )
            elif key in stored:
                gone.append({"scope": scope, "metric": metric, "hour": hour})
        db.upsert(connection, tables[report_times], upserts, key=["scope", "metric", "hour"])
        _GONE.run(connection, gone, tables)


def version_of(data: bytes) -> int:
    """The records' digest (64 bits, signed): the same records, the same version."""
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "little", signed=True)


class _Held:
    """The sorted records of a key, as one array of integers: each added or taken away in
    place, found by binary search, so that a change costs a search and a move of memory,
    not a pass over every record in Python."""

    def __init__(self, data: bytes) -> None:
        self.data = array("q")
        self.data.frombytes(data)
        if not _LITTLE:  # pragma: no cover
            self.data.byteswap()

    def __len__(self) -> int:
        return len(self.data) // WIDTH

    def __getitem__(self, index: int) -> Record:
        at = index * WIDTH
        found = self.data[at : at + WIDTH]
        return (found[0], found[1], found[2], found[3])

    def add(self, record: Record) -> None:
        at = bisect_left(self, record) * WIDTH
        self.data[at:at] = array("q", record)

    def remove(self, record: Record) -> None:
        index = bisect_left(self, record)
        if index < len(self) and self[index] == record:
            del self.data[index * WIDTH : (index + 1) * WIDTH]

    def packed(self) -> bytes:
        if not _LITTLE:  # pragma: no cover
            swapped = array("q", self.data)
            swapped.byteswap()
            return swapped.tobytes()
        return self.data.tobytes()


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
    return select(report_times).join(
        wanted,
        tuple_(report_times.c.scope, report_times.c.metric, report_times.c.hour)
        == tuple_(wanted.c.scope, wanted.c.metric, wanted.c.hour),
    )


_STORED: Final = db.Prepared(_stored)
_GONE: Final = db.Prepared(
    report_times.delete().where(
        report_times.c.scope == bindparam("scope"),
        report_times.c.metric == bindparam("metric"),
        report_times.c.hour == bindparam("hour"),
    )
)
