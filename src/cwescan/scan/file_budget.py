"""One time budget per file, shared by all of its stages.

``--file-timeout`` bounds the whole time a file may take (reading aside): parsing, each fast
detector and, in the fuzz harness, the models' pre-processing draw on the same budget, so a
file that is slow in several stages still finishes near the bound instead of at a multiple.
"""

from __future__ import annotations

import time

MIN_STAGE_SECONDS = 0.001  # a stage reached with the budget spent times out at once


class FileBudget:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds  # 0: no bound
        self.deadline = time.monotonic() + seconds if seconds else None

    def left(self) -> float:
        """Seconds left for the next stage (0 when there is no bound, as time_limit takes it)."""
        if self.deadline is None:
            return 0.0
        return max(MIN_STAGE_SECONDS, self.deadline - time.monotonic())

    def spent(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline
