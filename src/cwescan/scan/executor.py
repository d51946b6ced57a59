"""Where the two heavy stages of a scan run: the file stage (read, parse, fast detectors per
file) and the model stage's batches (a model detector over a batch of units).

The pipeline does everything else itself, on the calling machine: discovery, triage, the
result cache, merging, suppressions, fingerprints and the report. So any executor that
returns the same per-file results and the same findings per batch yields a byte-identical
report. ``cwescan.scan.pipeline.LocalExecutor`` runs the stages in this process (and worker
processes); ``cwescan.cluster.executor.RayExecutor`` runs them on a Ray cluster.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cwescan.core.findings import Finding
    from cwescan.core.units import Unit
    from cwescan.detectors.base import Detector
    from cwescan.scan.pipeline import FileResult, ScanOptions
    from cwescan.scan.walk import Candidate

ProgressHook = Callable[[str, int, int], None]  # (stage, done, total)
BatchDone = Callable[[int], None]  # called with the number of units of each batch finished


class StageExecutor(ABC):
    """Runs the file stage and the model stage's batches of one scan."""

    @abstractmethod
    def run_files(self, candidates: Sequence[Candidate], fast: Sequence[Detector],
                  options: ScanOptions, keep_source: bool,
                  progress: ProgressHook | None) -> list[FileResult]:
        """One :class:`FileResult` per candidate, in the candidates' order; a file that cannot
        be scanned gets a result whose notices say why (never dropped). ``keep_source``: the
        model stage follows, so keep each file's text (and, where cheap, its parsed units)."""

    @abstractmethod
    def run_model(self, detector: Detector, batches: Sequence[Sequence[Unit]],
                  hints: dict[str, list[Finding]], verbose: bool,
                  batch_done: BatchDone) -> list[list[Finding] | Exception]:
        """``detector``'s findings for each batch, in the batches' order, or the error that
        stopped that batch (the pipeline reports it per file). ``hints``: static findings per
        path. ``batch_done`` is called as each batch finishes, for progress."""

    def close(self) -> None:
        """Release what the executor holds (workers, actors, connections)."""
