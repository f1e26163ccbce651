"""Progress of a long stage as one line per step: ``what n/N, elapsed, ETA``.

A run on a big export spends minutes in dbt builds, model fits and scoring; a person watching the
terminal or the Prefect logs should see how far along it is and when it will end, not a silence.
The lines go through the step's ``log`` callable, so they reach the terminal and Prefect alike.
The estimate assumes the remaining steps take as long on average as the finished ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``: short enough to read at a glance."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress:
    """Counts finished steps of a stage of ``total`` steps and logs each with an estimate."""

    def __init__(self, what: str, total: int, log: Callable[[str], None]) -> None:
        self.what, self.total, self.log = what, total, log
        self.done = 0
        self.started = time.monotonic()

    def update(self, done: int, detail: str = "") -> None:
        """``done`` steps are finished; log ``what done/total`` with the elapsed time and ETA."""
        self.done = done
        elapsed = time.monotonic() - self.started
        line = f"  {self.what} {self.done:,}/{self.total:,}, {duration(elapsed)}"
        if 0 < self.done < self.total:
            line += f", ETA {duration(elapsed / self.done * (self.total - self.done))}"
        self.log(f"{line}{': ' + detail if detail else ''}")
