"""The one interface every detector implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from cwescan.core.findings import Finding
from cwescan.core.units import SourceFile, Unit


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


class FileDetector(Detector):
    """A detector that analyses whole files (AST rules, Bandit): ``detect`` runs
    ``check_source`` once per file and keeps the findings inside the units asked for."""

    @abstractmethod
    def check_source(self, src: SourceFile) -> list[Finding]: ...

    def detect(self, units: Sequence[Unit]) -> list[Finding]:
        files: dict[int, SourceFile] = {}
        wanted: dict[int, list[Unit]] = {}
        for u in units:
            files.setdefault(id(u.file), u.file)
            wanted.setdefault(id(u.file), []).append(u)
        out: list[Finding] = []
        for key, src in files.items():
            found = self.check_source(src)
            spans = wanted[key]
            if len(spans) != len(src.units) and src.tree is not None:  # only some units were asked for
                found = [f for f in found if any(u.start_line <= f.start_line <= u.end_line for u in spans)]
            out.extend(found)
        return sorted(out, key=Finding.sort_key)
