"""Progress lines for long commands: a line every ~10% (and at the end), fit for logs and terminals."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("deeploc.progress")


class Progress:
    def __init__(self, what: str, total: int, every: float = 0.1):
        self.what, self.total, self.done_n = what, max(total, 0), 0
        self.step_every = max(1, int(self.total * every))
        self.start = time.monotonic()

    def step(self, n: int = 1) -> None:
        before = self.done_n // self.step_every
        self.done_n += n
        if self.done_n // self.step_every != before and self.done_n < self.total:
            self._report()

    def done(self) -> None:
        self._report()

    def _report(self) -> None:
        elapsed = time.monotonic() - self.start
        pct = 100.0 * self.done_n / self.total if self.total else 100.0
        log.info("%s: %d/%d (%.0f%%) in %.1f s", self.what, self.done_n, self.total, pct, elapsed)
