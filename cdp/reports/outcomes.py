"""The reply targets' outcomes of each hour, kept in memory while nothing they depend on
changes, so that the SLA report over a month reads the records of the hours that changed
alone.

An hour's outcomes (how many of its waits are within, breached, open, at risk or open
past their target) depend on its records, the targets, the working week and the moment
of asking; the last only while one of its waits is still open. So they are kept under
the records' version (a digest the projector writes with them, see
cdp.reports.records.version_of), the settings and the session rules, and only for an
hour none of whose waits is open: a later moment judges those the same. Each process
keeps its own, up to MOST hours, the least recently asked going first.
"""

import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Final

import numpy as np
from sqlalchemy import Connection, bindparam, select

from cdp import db
from cdp.reports import sla
from cdp.reports.kept import Kept
from cdp.reports.records import WIDTH, WITH_SESSION
from cdp.reports.tables import report_times

MOST: Final = 50_000  # hours kept, of every scope, metric and setting: some 15 MB
_LOCK: Final = threading.Lock()
_KEPT: Final[OrderedDict[Hashable, Any]] = OrderedDict()


def by_hour(
    connection: Connection,
    scope: str,
    metric: str,
    targets: Mapping[int, int],
    *,
    follows_reply: bool,
    length: sla.Spent,
    setting: Hashable,
    since: int,
    until: int,
    now: int,
    idle_ms: int,
) -> tuple[Any, Any]:
    """(hours, counts): each hour of [since, until) with records of `metric` under `scope`,
    and how many of its waits with a target are in each state (sla.STATES), one row an
    hour. `setting` names what else judging them depends on (the targets, the working
    week and its zone)."""
    listed = _VERSIONS.rows(
        connection, {"scope": scope, "metric": metric, "since": since, "until": until}
    )
    hours = np.array([row["hour"] for row in listed], dtype=np.int64)
    counts = np.zeros((len(listed), len(sla.STATES)), dtype=np.int64)
    # The version is a digest of the records: the same key, the same outcomes, in any
    # store, however its records came to be.
    keys = [
        (scope, metric, follows_reply, setting, idle_ms, row["hour"], row["version"])
        for row in listed
    ]
    missing = []
    with _LOCK:
        for index, key in enumerate(keys):
            found = _KEPT.get(key)
            if found is None:
                missing.append(index)
            else:
                _KEPT.move_to_end(key)
                counts[index] = found
    if not missing:
        return hours, counts
    wanted = {"scope": scope, "metric": metric, "hours": [int(hours[i]) for i in missing]}
    rows = _RECORDS.rows(connection, wanted)
    at = {int(hours[i]): i for i in missing}
    kept = Kept.of(row["records"] for row in rows)
    sizes = [len(row["records"]) // (WIDTH * 8) for row in rows]
    of_hour = np.repeat(np.array([at[row["hour"]] for row in rows], dtype=np.int64), sizes)
    target = sla.targets_for(kept, targets, follows_reply=follows_reply)
    states, _ = sla.judge_all(kept, target, length, now=now, idle_before=now - idle_ms)
    targeted = target > 0
    cells = (of_hour * len(sla.STATES) + states)[targeted]
    counted: Any = np.bincount(cells, minlength=len(listed) * len(sla.STATES))
    counted = counted.reshape(len(listed), len(sla.STATES))
    still = (kept.how == WITH_SESSION) & (kept.ended > now - idle_ms) & targeted
    open_in = np.bincount(of_hour[still], minlength=len(listed))
    fresh: dict[Hashable, Any] = {}
    # Kept under the version read with the records: one written between the two reads
    # is then only worked out again.
    read_as = {at[row["hour"]]: row["version"] for row in rows}
    for i in missing:
        counts[i] = counted[i]
        if not open_in[i] and i in read_as:  # judged alike at any later moment: kept
            fresh[(*keys[i][:-1], read_as[i])] = counted[i].copy()
    with _LOCK:
        _KEPT.update(fresh)
        while len(_KEPT) > MOST:
            _KEPT.popitem(last=False)
    return hours, counts


def setting_of(
    targets: Mapping[int, int], week: Sequence[Any], holidays: Sequence[Any], zone: str
) -> Hashable:
    return (tuple(sorted(targets.items())), tuple(week), tuple(holidays), zone)


_VERSIONS: Final = db.Prepared(
    select(report_times.c.hour, report_times.c.version).where(
        report_times.c.scope == bindparam("scope"),
        report_times.c.metric == bindparam("metric"),
        report_times.c.hour >= bindparam("since"),
        report_times.c.hour < bindparam("until"),
    )
)
_RECORDS: Final = db.Prepared(
    select(report_times.c.hour, report_times.c.records, report_times.c.version).where(
        report_times.c.scope == bindparam("scope"),
        report_times.c.metric == bindparam("metric"),
        db.any_of(report_times.c.hour, "hours"),
    ),
    binary=True,
)
