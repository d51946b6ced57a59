"""Which windows of a long unit a model reads.

A unit longer than one model window is cut into overlapping windows of whole lines, and its
score is the most suspicious window's. Given the unit's *focus* lines (where it calls a sink,
reads a source, or a rule fired), a model reads only the windows that hold one of them: a window
without any is code that triage would not have sent to a model had it been a unit of its own,
and such windows of long functions were most of the models' tokens in a scan. The SLM and the
encoder apply the same rule (``docs/SCANNING.md``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol, TypeVar


class Spanned(Protocol):
    first_line: int  # unit-relative, 1-based, inclusive
    last_line: int


W = TypeVar("W", bound=Spanned)


def focused(windows: Sequence[W], focus: Collection[int]) -> list[W]:
    """The windows holding a focus line (unit-relative); all of them when the unit fits one
    window, when no focus is given, or when no window holds a focus line."""
    if len(windows) < 2 or not focus:
        return list(windows)
    kept = [w for w in windows if any(w.first_line <= line <= w.last_line for line in focus)]
    return kept or list(windows)
