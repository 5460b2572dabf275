"""Reply targets judged for many waits at once (cdp.reports.sla.judge_all), as the SLA
report, the breaches and the leaderboard judge them, against `judge`, one wait at a time,
as the waiting list judges them: the same state and the same length for every wait."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp.reports import sla
from cdp.reports.kept import Kept
from cdp.reports.records import FLAG_BITS, HANDED_OFF, REPLIED, WITH_SESSION

MINUTE = 60_000
NOW = 1_777_000_000_000
IDLE = 30 * MINUTE

waits = st.lists(
    st.tuples(
        st.integers(-3 * 60, 0),  # began, minutes before now
        st.integers(-10, 90),  # how long until it ended (less than nothing: hostile)
        st.sampled_from([REPLIED, HANDED_OFF, WITH_SESSION]),
        st.integers(1, 60),  # target, minutes
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=80, deadline=None)
@given(waits=waits)
def test_judging_many_waits_at_once_is_judging_each(waits):
    began = np.array([NOW + b * MINUTE for b, _, _, _ in waits], dtype=np.int64)
    ended = np.array([NOW + (b + e) * MINUTE for b, e, _, _ in waits], dtype=np.int64)
    keys = np.array([n << FLAG_BITS | how for n, (_, _, how, _) in enumerate(waits)])
    target = np.array([t * MINUTE for _, _, _, t in waits], dtype=np.int64)
    kept = Kept(began, ended, np.zeros(len(waits), dtype=np.int64), keys)

    def clock(since, until):
        return max(0, until - since)

    states, took = sla.judge_all(
        kept,
        target,
        lambda since, until: np.maximum(0, until - since),
        now=NOW,
        idle_before=NOW - IDLE,
    )
    for n, (_, _, how, _) in enumerate(waits):
        at, end = int(began[n]), int(ended[n])
        closed = None if how == REPLIED else end
        if how == WITH_SESSION and end > NOW - IDLE:
            closed = None  # its session is still open
        wait = sla.Wait(
            "first_reply",
            n,
            "c",
            1,
            1,
            at,
            end if how == REPLIED else None,
            None,
            closed,
        )
        one = sla.judge(wait, int(target[n]), clock, NOW)
        assert (sla.STATES[states[n]], int(took[n])) == (one.state, one.length_ms), waits[n]
