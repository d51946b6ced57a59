"""Scan progress on stderr: a live bar on a terminal, a plain line every few seconds in CI.

The scan reports progress as ``(stage, done, total)`` calls (stages such as ``"files"`` and
``"slm units"``). On a terminal a rich progress bar draws them; without one (CI logs, pipes) a
bar would print nothing useful until the end, so :class:`ProgressLog` writes one line every
``interval`` seconds instead, e.g.::

    cwescan: progress: files 420/1,000 (42 %); slm units 0/0; 40 s elapsed, ETA 55 s
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

ProgressHook = Callable[[str, int, int], None]

LOG_INTERVAL_S = 10.0  # CI logs: often enough to show life, rarely enough to stay readable


def log_interval() -> float:
    """Seconds between progress lines; ``CWESCAN_PROGRESS_INTERVAL`` overrides (0: every update)."""
    value = os.environ.get("CWESCAN_PROGRESS_INTERVAL")
    try:
        return max(0.0, float(value)) if value else LOG_INTERVAL_S
    except ValueError:
        return LOG_INTERVAL_S


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class ProgressLog:
    """Plain progress lines for a stream that is not a terminal.

    Each stage keeps its own counts; the ETA extrapolates the stage being worked on from its
    own rate since it started (the file stage and the model stage run at very different rates).
    """

    def __init__(self, stream: TextIO | None = None, interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.stream = stream if stream is not None else sys.stderr
        self.interval = log_interval() if interval is None else interval
        self.clock = clock
        self.started = clock()
        self.last_line: float | None = None
        self.stages: dict[str, tuple[int, int, float]] = {}  # stage -> done, total, first seen
        self.current: str | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = self.clock()
        first_seen = self.stages.get(stage, (0, 0, now))[2]
        self.stages[stage] = (done, total, first_seen)
        self.current = stage
        if self.last_line is None:
            self.last_line = self.started  # the first line waits one interval: short scans stay quiet
        if now - self.last_line >= self.interval:
            self.last_line = now
            self.stream.write(self.line(now) + "\n")
            self.stream.flush()

    def line(self, now: float) -> str:
        parts = []
        for stage, (done, total, _) in self.stages.items():
            share = f" ({100 * done / total:.0f} %)" if total else ""
            parts.append(f"{stage} {done:,}/{total:,}{share}")
        text = f"cwescan: progress: {'; '.join(parts)}; {_duration(now - self.started)} elapsed"
        eta = self.eta(now)
        return text + (f", ETA {_duration(eta)} for {self.current}" if eta is not None else "")

    def eta(self, now: float) -> float | None:
        if self.current is None:
            return None
        done, total, first_seen = self.stages[self.current]
        spent = now - first_seen
        if not done or not total or spent <= 0 or done >= total:
            return None
        return (total - done) * spent / done


class ProgressBar:
    """A rich progress bar on stderr (per stage: done/total, rate, ETA)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn,
                                   TaskProgressColumn, TextColumn, TimeRemainingColumn)
        from rich.text import Text

        class RateColumn(ProgressColumn):
            def render(self, task):
                speed = task.finished_speed or task.speed
                return Text("" if speed is None else f"{speed:,.0f}/s", style="progress.data.speed")

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TaskProgressColumn(), RateColumn(), TimeRemainingColumn(),
                            console=Console(stderr=True), transient=True)
        self.tasks: dict[str, int] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(stage, total=total)
        self.bar.update(self.tasks[stage], completed=done, total=total)


class scan_progress:
    """Context manager giving the scan's progress hook: a bar on a terminal, lines otherwise,
    ``None`` when quiet."""

    def __init__(self, quiet: bool, stream: TextIO | None = None):
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.bar: ProgressBar | None = None

    def __enter__(self) -> ProgressHook | None:
        if self.quiet:
            return None
        if _is_terminal(self.stream):
            self.bar = ProgressBar()
            self.bar.bar.__enter__()
            return self.bar
        return ProgressLog(self.stream)

    def __exit__(self, *exc) -> bool:
        if self.bar is not None:
            self.bar.bar.__exit__(*exc)
        return False


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
