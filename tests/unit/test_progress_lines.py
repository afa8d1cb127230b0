"""Progress off a terminal: a line at most every interval, a closing line only after one was printed."""

import io

from acards.generate import progress


def test_a_short_step_prints_nothing():
    stream = io.StringIO()
    with progress._Lines(100, "generating", stream, interval=3600) as lines:
        lines.update(100)
    assert stream.getvalue() == ""


def test_a_long_step_prints_lines_and_how_it_ended():
    stream = io.StringIO()
    with progress._Lines(1000, "generating", stream, interval=0.0) as lines:
        lines.update(250)
        lines.update(750)
    printed = stream.getvalue().splitlines()
    assert len(printed) == 3  # after each update (interval 0), then the closing line
    assert printed[0].startswith("generating: 250/1,000 (25%)")
    assert printed[-1].startswith("generating: 1,000/1,000 (100%)")


def test_disabled_and_empty_bars_are_silent():
    assert isinstance(progress.bar(10, "x", enabled=False), progress._Silent)
    assert isinstance(progress.bar(0, "x"), progress._Silent)
