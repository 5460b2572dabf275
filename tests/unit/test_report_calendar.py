"""The reports' calendar: local units across the clocks' changes, and working time."""

from datetime import date, datetime

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp.reports.calendar import Calendar, Interval, Schedule, WorkingTime, problems

BERLIN = Calendar.of("Europe/Berlin")
KOLKATA = Calendar.of("Asia/Kolkata")


def ms(text: str) -> int:
    return round(datetime.fromisoformat(text).timestamp() * 1000)


def test_a_day_the_clocks_go_forward_has_23_hours_and_back_25():
    spring = BERLIN.units(
        "hour", BERLIN.midnight(date(2026, 3, 29)), BERLIN.midnight(date(2026, 3, 30))
    )
    autumn = BERLIN.units(
        "hour", BERLIN.midnight(date(2026, 10, 25)), BERLIN.midnight(date(2026, 10, 26))
    )
    assert len(spring) == 23
    assert len(autumn) == 25
    assert (
        BERLIN.after("day", BERLIN.midnight(date(2026, 3, 29))) - BERLIN.midnight(date(2026, 3, 29))
        == 23 * 3_600_000
    )


def test_the_hour_the_clocks_go_back_over_is_two_buckets():
    first = ms("2026-10-25T02:30:00+02:00")
    second = ms("2026-10-25T02:30:00+01:00")
    assert BERLIN.hour(first) == ms("2026-10-25T02:00:00+02:00")
    assert BERLIN.hour(second) == ms("2026-10-25T02:00:00+01:00")
    assert BERLIN.hour(second) - BERLIN.hour(first) == 3_600_000


def test_hours_of_a_zone_half_an_hour_off_begin_on_its_own_hour():
    at = ms("2026-05-01T10:45:00+05:30")
    assert KOLKATA.hour(at) == ms("2026-05-01T10:00:00+05:30")
    assert KOLKATA.start("day", at) == ms("2026-05-01T00:00:00+05:30")


def test_weeks_begin_on_monday_and_months_on_their_first():
    sunday = ms("2026-11-29T23:59:00+01:00")
    assert BERLIN.start("week", sunday) == ms("2026-11-23T00:00:00+01:00")
    assert BERLIN.after("week", BERLIN.start("week", sunday)) == ms("2026-11-30T00:00:00+01:00")
    assert BERLIN.start("month", sunday) == ms("2026-11-01T00:00:00+01:00")
    assert BERLIN.after("month", ms("2026-12-01T00:00:00+01:00")) == ms("2027-01-01T00:00:00+01:00")


def test_the_period_before_is_as_many_months_days_or_milliseconds():
    november = (ms("2026-11-01T00:00:00+01:00"), ms("2026-12-01T00:00:00+01:00"))
    assert BERLIN.earlier(*november) == (ms("2026-10-01T00:00:00+02:00"), november[0])
    week = (ms("2026-11-02T00:00:00+01:00"), ms("2026-11-09T00:00:00+01:00"))
    assert BERLIN.earlier(*week) == (ms("2026-10-26T00:00:00+01:00"), week[0])
    # Across the change: seven local days back, not 168 hours.
    across = (ms("2026-10-26T00:00:00+01:00"), ms("2026-11-02T00:00:00+01:00"))
    assert BERLIN.earlier(*across) == (ms("2026-10-19T00:00:00+02:00"), across[0])
    odd = (ms("2026-11-02T09:30:00+01:00"), ms("2026-11-02T10:00:00+01:00"))
    assert BERLIN.earlier(*odd) == (odd[0] - 1_800_000, odd[0])


WEEKDAYS_9_TO_18 = Schedule(
    week={day: (Interval(9 * 60, 18 * 60),) for day in range(5)},
    holidays=frozenset({date(2026, 11, 4)}),
)


def test_working_time_skips_nights_weekends_and_holidays():
    work = WorkingTime(WEEKDAYS_9_TO_18, BERLIN)
    friday_evening = ms("2026-10-30T17:00:00+01:00")
    monday_morning = ms("2026-11-02T10:00:00+01:00")
    assert work.between(friday_evening, monday_morning) == 2 * 3_600_000
    tuesday = ms("2026-11-03T17:30:00+01:00")
    thursday = ms("2026-11-05T09:15:00+01:00")  # Wednesday the 4th is a holiday
    assert work.between(tuesday, thursday) == 45 * 60_000
    assert work.between(thursday, thursday) == 0
    assert work.between(thursday, tuesday) == 0


def test_working_time_on_the_night_the_clocks_change_counts_real_time():
    night = Schedule(week={6: (Interval(0, 24 * 60),)})  # all of Sunday
    work = WorkingTime(night, BERLIN)
    sunday = BERLIN.midnight(date(2026, 3, 29))
    assert work.between(sunday, BERLIN.midnight(date(2026, 3, 30))) == 23 * 3_600_000


def test_a_week_with_overlapping_or_reversed_intervals_is_refused_in_words():
    found = problems({0: [Interval(540, 720), Interval(700, 800)], 2: [Interval(600, 500)]})
    assert found == [
        "monday: 09:00-12:00 and 11:40-13:20 overlap",
        "wednesday 10:00-08:20: an interval must begin before it ends, within the day "
        "(00:00 to 24:00)",
    ]
    assert problems({4: [Interval(0, 1440)]}) == []


def _minutes_worked(schedule: Schedule, calendar: Calendar, since: int, until: int) -> int:
    """A recount a minute at a time (the instants are whole minutes)."""
    count = 0
    at = since
    while at < until:
        local = calendar.local(at)
        minute = local.hour * 60 + local.minute
        if any(i.starts <= minute < i.ends for i in schedule.intervals(local.date())):
            count += 1
        at += 60_000
    return count * 60_000


intervals = st.lists(
    st.tuples(st.integers(0, 47), st.integers(1, 48))
    .map(lambda t: (min(t), max(t)))
    .filter(lambda t: t[0] < t[1]),
    max_size=3,
)


def _merged(week: dict[int, list[tuple[int, int]]]) -> dict[int, tuple[Interval, ...]]:
    """Half hours, overlaps merged: a good week."""
    merged = {}
    for day, spans in week.items():
        kept: list[Interval] = []
        for low, high in sorted(spans):
            if kept and low * 30 <= kept[-1].ends:
                kept[-1] = Interval(kept[-1].starts, max(kept[-1].ends, high * 30))
            else:
                kept.append(Interval(low * 30, high * 30))
        merged[day] = tuple(kept)
    return merged


@settings(max_examples=60, deadline=None)
@given(
    week=st.dictionaries(st.integers(0, 6), intervals, max_size=7),
    start=st.integers(0, 60 * 24 * 20),
    length=st.integers(0, 60 * 24 * 9),
    zone=st.sampled_from(["Europe/Berlin", "Asia/Kolkata", "America/Santiago", "UTC"]),
)
def test_working_time_equals_a_minute_by_minute_recount(week, start, length, zone):
    calendar = Calendar.of(zone)
    schedule = Schedule(week=_merged(week), holidays=frozenset({date(2026, 10, 26)}))
    since = ms("2026-10-15T00:00:00+00:00") + start * 60_000
    until = since + length * 60_000
    expected = _minutes_worked(schedule, calendar, since, until)
    assert WorkingTime(schedule, calendar).between(since, until) == expected


@settings(max_examples=60, deadline=None)
@given(
    week=st.dictionaries(st.integers(0, 6), intervals, max_size=7),
    pairs=st.lists(
        st.tuples(st.integers(-60 * 24 * 3, 60 * 24 * 20), st.integers(-60 * 24 * 3, 60 * 24 * 9)),
        min_size=1,
        max_size=20,
    ),
    zone=st.sampled_from(["Europe/Berlin", "Asia/Kolkata", "America/Santiago", "UTC"]),
)
def test_working_time_of_many_waits_at_once_is_each_one_s(week, pairs, zone):
    """WorkingTime.spent, as the reports use it, against `between` wait by wait: waits
    that end before they begin count nothing, and those before the first working span
    nothing before it."""
    calendar = Calendar.of(zone)
    schedule = Schedule(week=_merged(week), holidays=frozenset({date(2026, 10, 19)}))
    base = ms("2026-10-15T00:00:00+00:00")
    since = np.array([base + start * 60_000 for start, _ in pairs], dtype=np.int64)
    until = np.array([base + (start + length) * 60_000 for start, length in pairs], dtype=np.int64)
    expected = [
        WorkingTime(schedule, calendar).between(int(a), int(b))
        for a, b in zip(since, until, strict=True)
    ]
    assert WorkingTime(schedule, calendar).spent(since, until).tolist() == expected


def test_units_cover_a_period_whatever_the_zone():
    for calendar in (BERLIN, KOLKATA, Calendar.of("America/Santiago")):
        since = calendar.midnight(date(2026, 1, 1))
        until = calendar.midnight(date(2027, 1, 1))
        days = calendar.units("day", since, until)
        assert len(days) == 365
        assert [datetime.fromtimestamp(d / 1000, calendar.zone).time().hour for d in days].count(
            0
        ) >= 364
        assert len(calendar.units("month", since, until)) == 12
        assert calendar.units("week", since, until)[0] == calendar.midnight(date(2025, 12, 29))


@settings(max_examples=60, deadline=None)
@given(start=st.integers(0, 60 * 24 * 14), amount=st.integers(0, 60 * 24 * 3))
def test_the_instant_a_working_time_is_reached_is_the_first_with_that_much_behind_it(start, amount):
    work = WorkingTime(WEEKDAYS_9_TO_18, BERLIN)
    since = ms("2026-10-20T00:00:00+02:00") + start * 60_000
    at = work.reach(since, amount * 60_000)
    assert at is not None
    assert work.between(since, at) == amount * 60_000
    if amount:
        assert work.between(since, at - 60_000) < amount * 60_000


def test_no_working_time_ahead_is_never_reached():
    assert WorkingTime(Schedule(), BERLIN).reach(0, 1, within=30 * 86_400_000) is None


@settings(max_examples=200, deadline=None)
@given(
    at=st.integers(ms("1971-01-01T00:00:00+00:00"), ms("2040-01-01T00:00:00+00:00")),
    zone=st.sampled_from(
        ["Europe/Berlin", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe"]
    ),
)
def test_an_instant_s_hour_is_its_local_hour_however_the_zone_is_offset(at, zone):
    calendar = Calendar.of(zone)
    local = calendar.local(at)
    start = calendar.hour(at)
    assert start <= at < start + 3_600_000
    assert calendar.local(start).replace(tzinfo=None) == local.replace(
        minute=0, second=0, microsecond=0, tzinfo=None
    )
