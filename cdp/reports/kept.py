"""The records of waits and sessions the reports projector keeps (cdp.reports.records),
read back for a period as arrays, so that a report works them out in bulk."""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from sqlalchemy import Connection, bindparam, select

from cdp import db
from cdp.reports.records import BEGAN, ENDED, FLAG_BITS, HOW_MASK, KEY, TEAM, WIDTH
from cdp.reports.tables import report_times


@dataclass(frozen=True, slots=True)
class Kept:
    """Records as columns: one row each (see cdp.reports.records)."""

    began: Any
    ended: Any
    team: Any
    key: Any  # position * 8 + flags

    @classmethod
    def of(cls, blobs: Iterable[bytes]) -> "Kept":
        joined = b"".join(blobs)
        # A column each, laid out one after the other: what is worked out of them reads
        # them whole, many times over, faster than strided over the records.
        columns = np.ascontiguousarray(np.frombuffer(joined, dtype="<i8").reshape(-1, WIDTH).T)
        return cls(columns[BEGAN], columns[ENDED], columns[TEAM], columns[KEY])

    def __len__(self) -> int:
        return len(self.began)

    @property
    def flags(self) -> Any:
        return self.key & ((1 << FLAG_BITS) - 1)

    @property
    def how(self) -> Any:
        return self.key & HOW_MASK

    @property
    def position(self) -> Any:
        return self.key >> FLAG_BITS

    def where(self, mask: Any) -> "Kept":
        return Kept(self.began[mask], self.ended[mask], self.team[mask], self.key[mask])


def of_scope(
    connection: Connection, scope: str, metrics: Sequence[str], since: int, until: int
) -> dict[str, Kept]:
    """The records of each metric under `scope` begun in [since, until), in the order they
    began."""
    values = {"scope": scope, "metrics": sorted(metrics), "since": since, "until": until}
    blobs: dict[str, list[bytes]] = {metric: [] for metric in metrics}
    for row in _OF_SCOPE.rows(connection, values):
        blobs[row["metric"]].append(row["records"])
    return {metric: Kept.of(found) for metric, found in blobs.items()}


def under_prefix(
    connection: Connection, prefix: str, metrics: Sequence[str], since: int, until: int
) -> dict[tuple[str, str], Kept]:
    """The records of each metric under every scope that begins with `prefix`, begun in
    [since, until): by (the rest of the scope, metric)."""
    values = {
        "low": prefix,
        "high": prefix[:-1] + chr(ord(prefix[-1]) + 1),
        "metrics": sorted(metrics),
        "since": since,
        "until": until,
    }
    blobs: defaultdict[tuple[str, str], list[bytes]] = defaultdict(list)
    for row in _UNDER_PREFIX.rows(connection, values):
        blobs[(row["scope"][len(prefix) :], row["metric"])].append(row["records"])
    return {key: Kept.of(found) for key, found in blobs.items()}


# Read on the driver's own cursor: a month is some thousand rows, and SQLAlchemy's work
# per row cost more than reading them.
_IN_PERIOD: Final = (
    db.any_of(report_times.c.metric, "metrics"),
    report_times.c.hour >= bindparam("since"),
    report_times.c.hour < bindparam("until"),
)
_OF_SCOPE: Final = db.Prepared(
    select(report_times.c.metric, report_times.c.records)
    .where(report_times.c.scope == bindparam("scope"), *_IN_PERIOD)
    .order_by(report_times.c.metric, report_times.c.hour),
    binary=True,
)
_UNDER_PREFIX: Final = db.Prepared(
    select(report_times.c.scope, report_times.c.metric, report_times.c.records)
    .where(
        report_times.c.scope >= bindparam("low"),
        report_times.c.scope < bindparam("high"),
        *_IN_PERIOD,
    )
    .order_by(report_times.c.scope, report_times.c.metric, report_times.c.hour),
    binary=True,
)
