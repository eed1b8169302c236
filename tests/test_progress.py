"""Progress lines of long jobs: done/total, rate and ETA, at most every `every` seconds, and at the end."""

import logging

from medrobust.progress import ProgressLog


def test_a_line_every_interval_and_at_the_end(caplog) -> None:
    now = [0.0]
    log = logging.getLogger("test.progress")
    with caplog.at_level(logging.INFO, logger="test.progress"):
        meter = ProgressLog(log, "construction", 100, every=30, clock=lambda: now[0])
        for _ in range(10):
            now[0] += 10
            meter.advance(10)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["construction: 30/100 images (30%) | 1.0 images/s | eta 00:01:10",
                     "construction: 60/100 images (60%) | 1.0 images/s | eta 00:00:40",
                     "construction: 90/100 images (90%) | 1.0 images/s | eta 00:00:10",
                     "construction: 100/100 images (100%) | 1.0 images/s | eta 00:00:00"]
