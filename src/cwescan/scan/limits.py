"""Per-file limits of the file stage: a wall-clock bound on parsing and static analysis
(SIGALRM, main thread only), and fewer garbage-collector passes while many files' trees live."""

from __future__ import annotations

import gc
import signal
import threading
from contextlib import contextmanager


class FileTimeout(BaseException):
    """Raised by the alarm; a BaseException so detectors' ``except Exception`` cannot eat it."""


@contextmanager
def fewer_gc_passes():
    """Parsing allocates millions of AST nodes that die with their file; with the default
    thresholds the cyclic GC runs thousands of times and walks every live object (detector
    tables, results) each time. Freeze what exists and collect less often, as mypy does; what
    is garbage already (an earlier scan's trees, in a process that scans twice) is collected
    first, else it would be frozen with the rest and outlive the block."""
    old = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(200_000, 20, 20)
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


class Alarm:
    """Whether a :func:`time_limit` went off. The alarm can land inside C code (the parser),
    which may turn the FileTimeout into another error, e.g. SystemError; this tells them apart."""

    fired = False


@contextmanager
def time_limit(seconds: float):
    """Interrupt the block after ``seconds`` (main thread on POSIX only; else no bound).
    Yields an :class:`Alarm`."""
    alarm = Alarm()
    if (not seconds or not hasattr(signal, "setitimer")
            or threading.current_thread() is not threading.main_thread()):
        yield alarm
        return

    def on_alarm(signum, frame):
        alarm.fired = True
        raise FileTimeout

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield alarm
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
