"""What `cdp bench` says on stderr while it makes and loads its data."""

import io

import pytest

from cdp.bench import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The monotonic clock the progress reads, moved by hand."""
    now = [1000.0]
    monkeypatch.setattr(progress, "monotonic", lambda: now[0])
    return now


def test_elsewhere_than_a_terminal_a_line_at_each_tenth_says_the_time_left(
    monkeypatch: pytest.MonkeyPatch, clock: list[float]
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(progress.sys, "stderr", stream)
    loading = progress.Progress("loading 1,000,000 events", 1_000_000)
    for _ in range(20):
        clock[0] += 6  # 6 s a twentieth: 2 min in all
        loading.advance(50_000)
    loading.close()
    said = stream.getvalue().splitlines()
    assert said[0] == "loading 1,000,000 events"
    assert (
        said[1]
        == "loading 1,000,000 events: 10% (100,000 of 1,000,000 events), about 1 min 48 s left"
    )
    assert (
        said[5]
        == "loading 1,000,000 events: 50% (500,000 of 1,000,000 events), about 1 min 0 s left"
    )
    assert said[-1] == "loading 1,000,000 events: done in 2 min 0 s"
    assert len(said) == 1 + 9 + 1  # 10% to 90%, and the end


def test_a_quick_step_says_only_that_it_began_and_ended(
    monkeypatch: pytest.MonkeyPatch, clock: list[float]
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(progress.sys, "stderr", stream)
    list(progress.counted(range(100), "loading 100 events", 100))
    assert stream.getvalue() == "loading 100 events\nloading 100 events: done in 0 s\n"


def test_on_a_terminal_a_bar_shows_the_time_left_and_a_note_gives_way_to_the_next_figure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = Terminal()
    monkeypatch.setattr(progress.sys, "stderr", stream)
    loading = progress.Progress("loading 1,000 events", 1000)
    loading.advance(500)
    loading.close()
    assert "loading 1,000 events" in stream.getvalue()
    assert "<" in stream.getvalue()  # tqdm's elapsed<remaining
    progress.note("timing cdp import of 1,020 webhooks")
    assert stream.getvalue().endswith("\r\x1b[Ktiming cdp import of 1,020 webhooks")
    progress.clear()
    assert stream.getvalue().endswith("timing cdp import of 1,020 webhooks\r\x1b[K")
    progress.clear()  # said once
    assert stream.getvalue().endswith("webhooks\r\x1b[K")
