"""The text progress bar of ``medsegai-train``: iteration / total, loss, s/it, ETA, drawn in place."""

from __future__ import annotations

import io

from medsegai_training.progress import TrainingProgress, format_duration


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bar_shows_rate_and_eta_and_is_throttled():
    stream, clock = io.StringIO(), Clock()
    bar = TrainingProgress(stream, width=10, min_interval=0.5, clock=clock)
    bar(1, 10, 0.9)  # resumed runs start anywhere: rates are measured from the first call
    assert stream.getvalue() == "\r[#.........] 1/10 loss 0.9000"
    clock.now += 0.2
    bar(2, 10, 0.8)
    assert stream.getvalue().count("\r") == 1  # not redrawn within min_interval
    clock.now += 1.8
    bar(5, 10, 0.5)  # 4 iterations in 2 s
    line = "[#####.....] 5/10 loss 0.5000 0.50 s/it ETA 0:02"  # 5 more at 0.5 s/it
    assert stream.getvalue().endswith("\r" + line)
    bar.clear()
    assert stream.getvalue().endswith("\r" + " " * len(line) + "\r")
    clock.now += 0.1
    bar(10, 10, 0.1)  # the last iteration is always drawn, then the bar ends its line
    assert stream.getvalue().endswith("\r[##########] 10/10 loss 0.1000 0.23 s/it ETA 0:00\n")


def test_durations():
    assert [format_duration(s) for s in (0, 59.6, 61, 3600, 90061)] == ["0:00", "1:00", "1:01", "1:00:00", "25:01:01"]
