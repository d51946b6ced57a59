"""Which units of the scanned files the model stage reads (``cwescan.scan.triage`` per unit).

Triage needs each file's units and its static findings. A file is triaged where it is scanned,
while its tree is at hand (:func:`start_triage`); from a worker process only the verdicts come
back, and the parent parses again just the files with a unit to review, instead of parsing and
triaging every file alone while the other cores idle. A file whose result carries no verdicts
(scanned on a cluster, or with ``--review all``) is parsed and triaged here.

The verdicts are the same wherever they are worked out (a worker, this process with ``--jobs
1``, the across-file recheck): a unit's surface is judged on the tree as parsed, before the
rules fold string constants in it (``surface_verdict``), and its static-finding verdict on the
findings of its own file, which are all of the scan's findings for that path
(:func:`units_to_review` checks that, else triages every file here).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cwescan.core.findings import Finding
from cwescan.core.units import SourceFile, Unit, parse_source
from cwescan.scan import triage as triage_mod
from cwescan.scan.model_budget import budget_notice, within_budget
from cwescan.scan.walk import Notice

if TYPE_CHECKING:
    from cwescan.scan.pipeline import FileResult


@dataclass
class FileTriage:
    """A file's triage, worked out where it was scanned: one verdict per unit the models may
    read (:func:`reviewable`, in order) and the units left out by the per-file model budget."""

    verdicts: list[triage_mod.Verdict]
    left_out: int
    # the file's imports and bindings (``triage.file_names``), when a unit is to be reviewed: the
    # parent parses such a file again, and its models' focus lines need them (two walks of the
    # whole file, ~6 s of the model stage on the 1,000-file benchmark tree before)
    names: triage_mod.FileNames | None = None

    @property
    def any_review(self) -> bool:
        return any(v.review for v in self.verdicts)


def reviewable(src: SourceFile) -> tuple[list[Unit], int]:
    """The units of ``src`` the models may read (those with code, within the per-file model
    budget) and how many the budget left out."""
    return within_budget([u for u in src.units if u.code.strip()])


def start_triage(src: SourceFile) -> Callable[[list[Finding]], FileTriage | None]:
    """Start triaging ``src`` before the rules run on it (its units' surfaces, from the tree
    as parsed); the returned function finishes it with the file's static findings. It gives
    None when the surfaces could not be worked out (the parent then triages the file itself)."""
    units, left_out = reviewable(src)
    try:
        surfaces: list[triage_mod.Verdict] | None = [triage_mod.surface_verdict(u) for u in units]
    except (RecursionError, MemoryError, ValueError):
        surfaces = None

    def finish(findings: list[Finding]) -> FileTriage | None:
        if surfaces is None:
            return None
        own = [f for f in findings if f.path == src.path]
        done = FileTriage([triage_mod.flagged_verdict(u, own) or s for u, s in zip(units, surfaces)], left_out)
        if done.any_review:
            done.names = triage_mod.file_names(src)
        return done

    return finish


def parse_for_review(result: FileResult) -> None:
    """Parse again, as soon as its result is in, a file its worker found units to review in
    (the model stage needs its tree): this process does it while the workers go on with the
    other files, instead of after them."""
    if result.triage is not None and result.triage.any_review and result.text is not None \
            and result.source is None:
        result.source = parse_source(result.relpath, result.text)


def units_to_review(results: list[FileResult], hints: dict[str, list[Finding]],
                    review: str, notices: list[Notice]) -> tuple[list[Unit], Counter, int, int, set[int]]:
    """The units a model must look at (triage, or all with ``review="all"``), the triage
    reasons counted, the number of units seen, the number left out by the per-file model
    budget (each such file gets a notice in ``notices``) and the ids of the units a first stage
    may clear (triage's ``FIRST_STAGE_KINDS``). Triage goes file by file, keeping only the
    units to review: the trees of files with nothing to review are freed at once (1,000 stdlib
    files held every tree: 5 GB), and a file its worker found nothing to review in is not
    parsed again at all."""
    todo: list[Unit] = []
    reasons: Counter = Counter()
    n_units = 0
    over_budget = 0  # units left out by the per-file model budget
    first_stage_ids: set[int] = set()
    # verdicts from the workers hold when each file's findings are all the scan has for its path
    trusted = review == "triage" and all(f.path == r.relpath for r in results for f in r.findings)
    for r in results:
        if r.text is None:
            continue
        done = r.triage if trusted else None
        r.triage = None
        units: list[Unit] = []
        if done is not None and not done.any_review:
            verdicts, left_out = done.verdicts, done.left_out
        else:
            src = r.source or parse_source(r.relpath, r.text)
            if done is not None and done.names is not None:
                triage_mod.keep_file_names(src, done.names)
            if not r.n_units:
                r.n_units = len(src.units)
            units, left_out = reviewable(src)
            if done is not None and len(done.verdicts) == len(units):
                verdicts = done.verdicts
            elif review == "all":
                verdicts = [triage_mod.Verdict(True, "forced")] * len(units)
            else:
                verdicts = triage_mod.triage(units, hints)
        r.source = None
        if left_out:
            over_budget += left_out
            notices.append(budget_notice(r.relpath, len(verdicts), len(verdicts) + left_out))
        n_units += len(verdicts)
        reasons.update(v.kind for v in verdicts)
        todo.extend(u for u, v in zip(units, verdicts) if v.review)
        first_stage_ids.update(id(u) for u, v in zip(units, verdicts)
                               if v.kind in triage_mod.FIRST_STAGE_KINDS)
    return todo, reasons, n_units, over_budget, first_stage_ids
