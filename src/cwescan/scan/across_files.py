"""The scan's second look at files whose functions other files hand outside data.

The fast stage checks every file on its own and lists, per file, the outside data it hands to
functions it imports (``cwescan.core.handoffs``). Those handoffs are matched to the files of
the scan that define the functions called; each such file is checked once more, its functions'
parameters bound to what was handed, and its result replaces the first one. One step: what a
re-checked file hands on is not followed again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from cwescan.core.handoffs import CallIndex, Handoff
from cwescan.scan.walk import Candidate

if TYPE_CHECKING:
    from cwescan.scan.pipeline import FileResult

Rescan = Callable[[Candidate, dict[str, list[Handoff]]], "FileResult"]


def recheck_handed(results: list[FileResult], candidates: Sequence[Candidate], rescan: Rescan) -> list[str]:
    """Re-check (in place) the files whose functions receive outside data from other files;
    the paths re-checked."""
    index = CallIndex(r.relpath for r in results if r.scanned)
    for r in results:
        if r.handoffs:
            index.add(r.relpath, r.handoffs)
    incoming = index.incoming()
    if not incoming:
        return []
    where = {r.relpath: i for i, r in enumerate(results)}
    cands = {c.relpath: c for c in candidates}
    done = []
    for relpath, passed in sorted(incoming.items()):
        if relpath in where and relpath in cands:
            results[where[relpath]] = rescan(cands[relpath], passed)
            done.append(relpath)
    return done
