"""The one interface every detector implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from cwescan.findings import Finding
from cwescan.units import Unit


class Detector(ABC):
    """A detector receives units (of one or many files) and returns findings.

    Batching many units in one call lets model detectors fill their batches; static detectors
    group units back by ``unit.file``.
    """

    name: str = "detector"

    @abstractmethod
    def detect(self, units: Sequence[Unit]) -> list[Finding]: ...

    def score(self, units: Sequence[Unit]) -> list[float]:
        """P(vulnerable) per unit, for ranking and evaluation. Detectors without a native
        score use their most confident finding inside the unit (0 when none)."""
        findings = self.detect(units)
        out = []
        for u in units:
            inside = [
                f.confidence
                for f in findings
                if f.path == u.path and u.start_line <= f.start_line <= u.end_line
            ]
            out.append(max(inside, default=0.0))
        return out
