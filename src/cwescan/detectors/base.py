"""The one interface every detector implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from cwescan.core.findings import Finding, in_unit
from cwescan.core.handoffs import Handoff
from cwescan.core.policy import DecisionPolicy
from cwescan.core.units import SourceFile, Unit


class Detector(ABC):
    """A detector receives units (of one or many files) and returns findings.

    Batching many units in one call lets model detectors fill their batches; static detectors
    group units back by ``unit.file``.
    """

    name: str = "detector"

    @abstractmethod
    def detect(self, units: Sequence[Unit]) -> list[Finding]: ...

    def detect_and_score(self, units: Sequence[Unit]) -> tuple[list[Finding], list[float] | None]:
        """Findings and native per-unit scores (None for a detector without a native score) in
        one call, so that a model can compute both in one pass (the evaluation uses it)."""
        findings = self.detect(units)
        return findings, (self.score(units) if self.has_native_score() else None)

    def has_native_score(self) -> bool:
        return type(self).score is not Detector.score

    def rule_docs(self) -> dict[str, tuple[str, str]]:
        """rule id -> (summary, documentation) for the reports; empty for detectors whose rules
        are not documented one by one."""
        return {}

    def score(self, units: Sequence[Unit]) -> list[float]:
        """P(vulnerable) per unit, for ranking and evaluation. Detectors without a native
        score use their most confident finding inside the unit (0 when none)."""
        findings = self.detect(units)
        out = []
        for u in units:
            inside = [f.confidence for f in findings if in_unit(f, u)]
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
                found = [f for f in found if any(in_unit(f, u) for u in spans)]
            out.extend(found)
        return sorted(out, key=Finding.sort_key)


@dataclass
class FileCheck:
    """What a :class:`ProjectDetector` found in one file, and what the file hands on."""

    findings: list[Finding]
    handoffs: list[Handoff] = field(default_factory=list)


class ProjectDetector(FileDetector):
    """A file detector whose findings in one file may rest on what the scan's other files hand
    its functions (``cwescan.core.handoffs``): the scan lists each file's handoffs, then checks
    again the files whose functions receive outside data."""

    @abstractmethod
    def check_file(self, src: SourceFile, passed: dict[str, list[Handoff]] | None = None,
                   handoffs: bool = True) -> FileCheck:
        """Findings in ``src`` with its module-level functions' parameters bound to ``passed``
        (function name -> handoffs), and, with ``handoffs``, what the file hands on."""

    def check_source(self, src: SourceFile) -> list[Finding]:
        return self.check_file(src, handoffs=False).findings


class ModelDetector(Detector):
    """A detector backed by a trained model. The scan's model stage batches its units across
    files, loads it only when the cache cannot answer, and keys cached answers by
    :meth:`cache_identity`; ``cwescan eval`` and the benchmarks use the same methods.

    ``precision`` (one of ``cwescan.ml.precision.PRECISIONS``) and ``device`` ("cpu", "cuda")
    are set by the constructor and say how the weights run."""

    precision: str = "fp32"
    device: str = "cpu"
    card: dict  # the model card (card.json) its weights were verified against
    threshold: float = 0.5  # P(vulnerable) at or above which a unit is reported
    # continue every prompt from the cached keys and values of the shared instruction (the
    # SLM); exported graphs (ONNX) read whole prompts, so the benchmark turns it off for them
    prefix_cache: bool = False
    policy: DecisionPolicy = DecisionPolicy()  # how its opinion becomes what a scan shows (from its card)
    model = None  # the loaded torch module (None before load()); the benchmark swaps in converted ones
    display: float = 0.0  # the scan hides findings under this confidence (set_display)

    def set_batch(self, sequences: int) -> None:
        """Batch ``sequences`` windows per forward pass (benchmarks sweep it)."""

    def clear_cache(self) -> None:
        """Forget memoised results, so the next call computes everything (benchmarks)."""

    def set_focus(self, on: bool, tokens: int | None = None) -> None:
        """Read a unit longer than one window only around its sinks, sources and rule findings
        (``cwescan.ml.focus``; the default) or, with ``on=False``, every window of it
        (benchmarks and evaluations compare the two); ``tokens``: windows of at most that many
        tokens centred on those lines (the SLM's ``PromptOptions.focus_tokens``; None: the
        model's default). Models without windows ignore it."""

    def set_display(self, min_confidence: float) -> None:
        """The scan hides findings under ``min_confidence``: a detector may skip work whose answer
        could not change what is shown (the SLM's settled second opinions)."""
        self.display = min_confidence

    def set_settle(self, on: bool) -> None:
        """Skip (the default) or do the work ``set_display`` lets a detector skip (benchmarks and
        evaluations compare the two). Models without such work ignore it."""

    def pair_with(self, partner: ModelDetector) -> None:
        """Decide together with ``partner`` from now on (the SLM and the encoder,
        ``cwescan.core.pair``); raises ``PairUnavailable`` when this model has no pair fitted
        for that partner, and then decides alone as before."""
        from cwescan.core.pair import PairUnavailable

        raise PairUnavailable(f"the {self.name} detector has no pair with the {partner.name}")

    def companions(self) -> list[ModelDetector]:
        """Other model detectors this one consults for its answers (the SLM's partner); the scan
        may reuse them (the first stage) instead of loading a second copy."""
        return []

    def gate(self) -> float:
        """The companion's score under which this detector cannot report a unit that has no
        rule finding (the pair's gate, ``cwescan.core.pair.gate``): the first stage may clear
        such units before this detector reads them. 0.0: no such bound."""
        return 0.0

    @abstractmethod
    def load(self) -> None:
        """Load the weights (idempotent). Construction stays cheap so that a scan the cache
        answers never loads a model."""

    @abstractmethod
    def detect(self, units: Sequence[Unit],
               hints: dict[str, list[Finding]] | None = None) -> list[Finding]:
        """Findings for ``units``; ``hints``: static findings per path, which the detector may
        combine with its own opinion (``cwescan.scan.combine``)."""

    @abstractmethod
    def score(self, units: Sequence[Unit]) -> list[float]: ...

    def score_around(self, units: Sequence[Unit], focus: Sequence[Collection[int]]) -> list[float]:
        """``score``, with each long unit read around the given unit-relative ``focus`` lines
        instead of the model's own (a pair partner reads a unit where the SLM does: its sinks,
        sources and rule findings). Models without windows score as ``score``."""
        return self.score(units)

    @abstractmethod
    def cache_identity(self) -> dict | None:
        """Everything besides the unit that decides this detector's answers (model card,
        precision, device, threshold, options), JSON-serialisable; None when it has no trusted
        identity, so its answers are never cached."""
