"""What `cdp bench` is doing between two figures, on standard error: how far it is in
making and loading its data, and the time that is left; a note before a timed step.

Never inside what is timed: a bar moves between the chunks of work a figure times, or
around untimed work, so that no figure changes with it. On a terminal, a bar (with the
time left) and a note last until the next figure is printed; elsewhere (a log file, CI),
a line as a step begins and ends, and one at each tenth done, at most every 5 seconds.
"""

import sys
from collections.abc import Iterable, Iterator
from time import monotonic
from typing import IO, Final, NoReturn, TypeVar

from tqdm import tqdm

T = TypeVar("T")

# Elsewhere than on a terminal: a line at each tenth done, at most one in this many seconds.
TENTHS: Final = 10
LINE_EVERY: Final = 5.0
_CLEAR: Final = "\r\x1b[K"


class Progress:
    """How far one step is: `advance(n)` as its work is done, `close()` at its end."""

    def __init__(self, what: str, total: int, unit: str = "events") -> None:
        self.what, self.total, self.unit = what, max(total, 1), unit
        self.done = 0
        self._started = self._said_at = monotonic()
        self._tenth = 1  # the next tenth a line is said at
        self._stream = _stream()
        self._bar: tqdm[NoReturn] | None = None
        clear()
        if self._stream.isatty():
            self._bar = tqdm(
                total=total,
                desc=what,
                unit=f" {unit}",
                unit_scale=True,
                file=self._stream,
                leave=False,
                mininterval=0.5,
            )
        else:
            self._stream.write(f"{what}\n")

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        if self.done * TENTHS < self._tenth * self.total or self.done >= self.total:
            return
        self._tenth = self.done * TENTHS // self.total + 1
        now = monotonic()
        if now - self._said_at >= LINE_EVERY:
            self._said_at = now
            self._stream.write(f"{self.what}: {self._said(now)}\n")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        else:
            took = monotonic() - self._started
            self._stream.write(f"{self.what}: done in {_length(took)}\n")
        self._stream.flush()

    def _said(self, now: float) -> str:
        share = self.done / self.total
        elapsed = now - self._started
        left = elapsed / share - elapsed
        return (
            f"{share:.0%} ({self.done:,} of {self.total:,} {self.unit}), about {_length(left)} left"
        )


def counted(items: Iterable[T], what: str, total: int, unit: str = "events") -> Iterator[T]:
    """`items`, advancing a Progress of `total` with each one taken."""
    progress = Progress(what, total, unit)
    try:
        for item in items:
            yield item
            progress.advance()
    finally:
        progress.close()


_noted = False


def note(text: str) -> None:
    """Say which step begins, before it is timed: on a terminal until the next figure."""
    global _noted
    stream = _stream()
    if stream.isatty():
        stream.write(f"{_CLEAR}{text}")
        _noted = True
    else:
        stream.write(f"{text}\n")
    stream.flush()


def clear() -> None:
    """Take a note off the terminal: a figure, or a bar, takes its line."""
    global _noted
    if _noted:
        _stream().write(_CLEAR)
        _noted = False


def _stream() -> IO[str]:
    return sys.stderr  # as it is now: a test may have put another in its place


def _length(seconds: float) -> str:
    """A length of time as a person reads it: "45 s", "3 min 5 s", "1 h 12 min"."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole // 60 % 60} min"
