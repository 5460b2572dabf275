"""Charts the server draws as SVG: a trend's points as bars (a count) or lines (a time: the
median, and the 90th percentile dashed), the period before as a lighter line, on axes in
readable units; and how a report's periods and cells are named in a table.

Only geometry and words are worked out here; the templates write the SVG, so that what is
drawn and its text equivalent (the table below it, the `<desc>`) come from one place.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from cdp.reports import schemas
from cdp.reports.queries import TIMES

# The drawing's own units: the SVG scales to its box (see .chart in console.css).
WIDTH: Final = 720
HEIGHT: Final = 280
LEFT: Final = 72  # room for the values on the axis
RIGHT: Final = 12
TOP: Final = 14
BASE: Final = 236  # the axis the bars stand on
MOST_LABELS: Final = 8  # along the bottom
MOST_TICKS: Final = 5  # up the side
MOST_DOTS: Final = 62  # beyond this many points, lines have no dots
# Steps of an axis of times, in seconds: each reads as a round length of time.
_TIME_STEPS: Final = (
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86400,
    2 * 86400,
    7 * 86400,
    14 * 86400,
    28 * 86400,
)


@dataclass(frozen=True, slots=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True, slots=True)
class Label:
    x: float
    text: str


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True, slots=True)
class Dot:
    x: float
    y: float
    title: str


@dataclass(frozen=True, slots=True)
class Line:
    """A series drawn as a line: `kind` is its CSS class (current, p90, previous); `path`
    breaks where a point has no value."""

    kind: str
    path: str
    dots: list[Dot]


@dataclass(frozen=True, slots=True)
class Chart:
    bars: list[Bar] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    base: int = BASE


def trend_chart(
    trend: schemas.Trend,
    shown: Callable[[float], str],
    seconds: Callable[[float | None], str],
) -> Chart:
    """The trend drawn: bars of the counts, or lines of the median and p90 of the times;
    the period before (if asked for) as a line, point for point. `shown` writes a count,
    `seconds` a length of time."""
    current = trend.current.points
    previous = trend.previous.points if trend.previous is not None else []
    slots = max(len(current), len(previous), 1)
    step = (WIDTH - RIGHT - LEFT) / slots
    timed = trend.metric in TIMES

    def value(point: schemas.Point, of: str) -> float | None:
        if not timed:
            return float(point.count)
        return point.median_seconds if of == "median" else point.p90_seconds

    drawn: list[tuple[str, list[float | None], Sequence[schemas.Point]]] = []
    if timed:
        drawn.append(("current", [value(p, "median") for p in current], current))
        drawn.append(("p90", [value(p, "p90") for p in current], current))
    if previous:
        drawn.append(("previous", [value(p, "median") for p in previous], previous))
    counts = [float(p.count) for p in current] if not timed else []
    top = max([v for _, values, _ in drawn for v in values if v is not None] + counts + [0.0])
    ticks, ceiling = _ticks(top, timed, shown, seconds)

    def y(v: float) -> float:
        return round(BASE - (BASE - TOP) * v / ceiling, 1)

    def centre(index: int) -> float:
        return round(LEFT + step * (index + 0.5), 1)

    words = seconds if timed else shown
    bars = []
    if not timed:
        width = max(round(step * 0.7, 1), 1.0)
        for index, point in enumerate(current):
            height = round((BASE - TOP) * point.count / ceiling, 1)
            bars.append(
                Bar(
                    round(centre(index) - width / 2, 1),
                    round(BASE - height, 1),
                    width,
                    height,
                    f"{point_label(point.start, trend.group)}: {shown(point.count)}",
                )
            )
    lines = []
    for kind, values, points in drawn:
        parts: list[str] = []
        dots: list[Dot] = []
        before: float | None = None
        for index, v in enumerate(values):
            if v is None:
                before = None
                continue
            x, at = centre(index), y(v)
            parts.append(f"{'M' if before is None else 'L'}{x} {at}")
            alone = (index == 0 or values[index - 1] is None) and (
                index + 1 == len(values) or values[index + 1] is None
            )
            if len(values) <= MOST_DOTS or alone:
                title = f"{point_label(points[index].start, trend.group)}: {words(v)}"
                dots.append(Dot(x, at, title))
            before = v
        lines.append(Line(kind, " ".join(parts), dots))
    every = max(1, math.ceil(len(current) / MOST_LABELS))
    labels = [
        Label(centre(index), short_label(point.start, trend.group))
        for index, point in enumerate(current)
        if index % every == 0
    ]
    return Chart(bars=bars, lines=lines, ticks=ticks, labels=labels)


def _ticks(
    top: float,
    timed: bool,
    shown: Callable[[float], str],
    seconds: Callable[[float | None], str],
) -> tuple[list[Tick], float]:
    """The values marked up the side, round numbers (or lengths of time), and the top of
    the axis: at least `top`, at least one step."""
    if timed:
        step = next((s for s in _TIME_STEPS if top / s <= MOST_TICKS), None)
        if step is None:
            step = _TIME_STEPS[-1] * math.ceil(top / _TIME_STEPS[-1] / MOST_TICKS)
    else:
        step = 1
        while top / step > MOST_TICKS:
            for factor in (2, 2.5, 2):
                step = round(step * factor)
                if top / step <= MOST_TICKS:
                    break
    count = max(1, math.ceil(top / step))
    ceiling = float(step * count)
    write = seconds if timed else shown
    ticks = [
        Tick(round(BASE - (BASE - TOP) * n * step / ceiling, 1), write(n * step))
        for n in range(count + 1)
    ]
    return ticks, ceiling


def short_label(start: datetime, group: str) -> str:
    """A unit as the chart's axis names it."""
    if group == "hour":
        return start.strftime("%m-%d %H:%M")
    if group == "month":
        return start.strftime("%Y-%m")
    return start.strftime("%m-%d")


def point_label(start: datetime, group: str) -> str:
    """A unit as a table names it: its hour, day, week (first and last day) or month."""
    if group == "hour":
        return start.strftime("%Y-%m-%d %H:%M")
    if group == "week":
        last = start.date() + timedelta(days=6)
        return f"{start.date().isoformat()} \u2013 {last.isoformat()}"
    if group == "month":
        return start.strftime("%Y-%m")
    return start.date().isoformat()


def span(series: schemas.Series) -> str:
    """The days a series covers, both ends included: one day, or the first and the last."""
    first = series.since.date()
    last = (series.until - timedelta(milliseconds=1)).date()
    return first.isoformat() if first == last else f"{first.isoformat()} \u2013 {last.isoformat()}"


# -- the heat map's shades -----------------------------------------------------------------

LEVELS: Final = 6  # shades of a cell with something in it; 0 is an empty cell


def level(n: int, most: int) -> int:
    """The shade of a cell of `n` in a grid whose fullest holds `most`: 0 for none, else 1
    to LEVELS in proportion."""
    if n <= 0 or most <= 0:
        return 0
    return max(1, math.ceil(LEVELS * n / most))
