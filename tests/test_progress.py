"""Progress lines of long jobs: done/total, rate and ETA, after the first piece, at most every `every`
seconds, and at the end."""

import logging

import pytest

from medrobust.jobs.progress import ProgressLog, format_duration


def test_a_line_every_interval_and_at_the_end(caplog) -> None:
    now = [0.0]
    log = logging.getLogger("test.progress")
    with caplog.at_level(logging.INFO, logger="test.progress"):
        meter = ProgressLog(log, "construction", 100, every=30, clock=lambda: now[0])
        for _ in range(10):
            now[0] += 10
            meter.advance(10)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["construction: 10/100 images (10%) | 1.0 images/s | eta 00:01:30",  # the first piece
                     "construction: 40/100 images (40%) | 1.0 images/s | eta 00:01:00",
                     "construction: 70/100 images (70%) | 1.0 images/s | eta 00:00:30",
                     "construction: 100/100 images (100%) | 1.0 images/s | eta 00:00:00"]


@pytest.mark.parametrize("seconds, text", [(0, "00:00:00"), (59.6, "00:01:00"), (86399, "23:59:59"),
                                           (86400, "1d 00:00:00"), (2 * 86400 + 3 * 3600 + 14 * 60 + 5, "2d 03:14:05"),
                                           (30 * 86400, "30d 00:00:00"), (float("inf"), "unknown"),
                                           (float("nan"), "unknown")])
def test_durations_of_any_length(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_an_eta_over_a_day() -> None:
    meter = ProgressLog(logging.getLogger("test.progress"), "construction", 200_000, clock=lambda: 0.0)
    meter.done = 1
    assert meter.line(1.0) == "construction: 1/200000 images (0%) | 1.0 images/s | eta 2d 07:33:19"
