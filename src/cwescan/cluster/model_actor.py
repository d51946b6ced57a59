"""The model stage in Ray actors: each actor builds one model detector, loads its weights
once, and scores batches of units for the whole run (every repository of it).

Units do not travel as objects (they hold parse trees): a batch travels as the text of its
files plus (path, unit index) picks, and the actor parses the files again with the same
``parse_source``, which gives the same units, callers and line numbers as on the driver."""

from __future__ import annotations

import os
from dataclasses import dataclass

import ray

from cwescan.core.findings import Finding
from cwescan.core.units import Unit, parse_source

# An actor whose process dies is started again (weights loaded again) and the call retried.
ACTOR_RESTARTS = 2
CALL_RETRIES = 2


@dataclass(frozen=True)
class DetectorSpec:
    """How to build a model detector the same way on every machine: the arguments the scan
    gives ``create_detectors``."""

    name: str
    precision: str | None = None
    slm_model: str | None = None
    device: str | None = None
    slm_partner: str | None = None
    display: float = 0.0  # the scan's --min-confidence (ModelDetector.set_display)


@dataclass
class UnitBatch:
    """One batch of units as it travels to an actor."""

    texts: dict[str, str]  # path -> file text
    picks: list[tuple[str, int]]  # (path, index into parse_source(path, text).units)
    hints: dict[str, list[Finding]]  # static findings of those files

    @classmethod
    def of(cls, units: list[Unit], hints: dict[str, list[Finding]]) -> UnitBatch:
        texts: dict[str, str] = {}
        picks = []
        for u in units:
            texts.setdefault(u.path, u.file.text)
            index = next(i for i, other in enumerate(u.file.units) if other is u)
            picks.append((u.path, index))
        return cls(texts, picks, {p: hints[p] for p in texts if p in hints})

    def units(self) -> list[Unit]:
        sources = {path: parse_source(path, text) for path, text in self.texts.items()}
        return [sources[path].units[i] for path, i in self.picks]


@ray.remote(max_restarts=ACTOR_RESTARTS, max_task_retries=CALL_RETRIES)
class ModelWorker:
    def __init__(self, spec: DetectorSpec, verbose: bool = False, threads: int | None = None) -> None:
        self.spec, self.verbose = spec, verbose
        self.detector = None
        if threads:  # Ray gives a process that reserves no CPU one thread; the model gets the node's
            os.environ["OMP_NUM_THREADS"] = str(threads)
            import torch

            torch.set_num_threads(threads)

    def where(self) -> dict:
        return {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid(),
                "gpus": ray.get_gpu_ids()}

    def load(self) -> None:
        self._load()

    def _load(self):
        if self.detector is None:
            from cwescan.detectors import create_detectors
            from cwescan.scan.quiet import third_party_quiet

            with third_party_quiet(enabled=not self.verbose):
                det = create_detectors([self.spec.name], self.spec.precision, self.spec.slm_model,
                                       self.spec.device, self.spec.slm_partner)[0]
                det.set_display(self.spec.display)
                det.load()
            self.detector = det
        return self.detector

    def detect(self, batch: UnitBatch) -> list[Finding]:
        from cwescan.scan.quiet import third_party_quiet

        det = self._load()
        units = batch.units()
        with third_party_quiet(enabled=not self.verbose, streams=False):
            return det.detect(units, hints=batch.hints)
