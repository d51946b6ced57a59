"""How much of one file the model detectors read.

Model detectors cover every line of a unit with windows, so their cost grows with the text: a
3 MB generated file would hold the SLM for many minutes on a CPU, and their batches mix files,
so no per-file timer can stop them. The budget is therefore counted in characters, before any
model runs: a file's units (in file order) go to the models while their code adds up to at
most ``MODEL_FILE_BUDGET_CHARS``; the rest of the file keeps its static findings and the report
says how much the models read.
"""

from __future__ import annotations

from collections.abc import Sequence

from cwescan.core.units import Unit
from cwescan.scan.walk import Notice

# 256 KB: ordinary source files fit whole (Python 3.11's whole standard library has 3 files
# above it); at the measured cold-scan rate of the development CPU (17 MB in 924 s,
# about 18 KB/s) it is ~15 s of model time, in line with the default --file-timeout (20 s).
MODEL_FILE_BUDGET_CHARS = 256_000


def within_budget(units: Sequence[Unit], budget: int | None = None) -> tuple[list[Unit], int]:
    """The units of one file the models read, and how many were left out."""
    budget = MODEL_FILE_BUDGET_CHARS if budget is None else budget
    kept, used = [], 0
    for u in units:
        if used + len(u.code) > budget:
            continue  # a smaller unit further down may still fit
        kept.append(u)
        used += len(u.code)
    return kept, len(units) - len(kept)


def budget_notice(relpath: str, kept: int, total: int, budget: int | None = None) -> Notice:
    budget = MODEL_FILE_BUDGET_CHARS if budget is None else budget
    return Notice(relpath, "model-budget",
                  f"models read {kept} of {total} units: the file is over the per-file model budget "
                  f"of {budget:,} characters; static rules covered all of it")
