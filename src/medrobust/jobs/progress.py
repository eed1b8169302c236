"""Progress lines for long jobs (done/total, rate, ETA), at most every `every` seconds, so a
user watching a job's log (a SLURM output file) sees that it is alive and when it will end."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable


def format_duration(seconds: float) -> str:
    """"03:14:05" under a day, "2d 03:14:05" from a day on, to the nearest second; "unknown" for
    inf or nan (no rate yet). time.strftime of a gmtime would wrap at 24 h."""
    if not math.isfinite(seconds):
        return "unknown"
    days, rest = divmod(math.floor(max(seconds, 0.0) + 0.5), 86400)
    clock = f"{rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}"
    return f"{days}d {clock}" if days else clock


class ProgressLog:
    """`advance(n)` after each piece of work; a line is logged after the first piece (an early
    rate and ETA), when `every` seconds have passed since the last one, and when the total is
    reached."""

    def __init__(self, log: logging.Logger, what: str, total: int, unit: str = "images", every: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log, self.what, self.total, self.unit, self.every, self.clock = log, what, total, unit, every, clock
        self.done = 0
        self.start = self.last = clock()

    def advance(self, n: int = 1) -> None:
        first = self.done == 0
        self.done += n
        now = self.clock()
        if first or now - self.last >= self.every or self.done >= self.total:
            self.last = now
            self.log.info("%s", self.line(now))

    def line(self, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        return (f"{self.what}: {self.done}/{self.total} {self.unit} ({100 * self.done / max(self.total, 1):.0f}%)"
                f" | {rate:.1f} {self.unit}/s | eta {format_duration(eta)}")
