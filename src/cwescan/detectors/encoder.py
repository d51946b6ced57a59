"""The encoder baseline as a detector: our pre-trained RoBERTa-style classifier
(`src/cwescan/models/encoder/`), run over windows of each unit.

``score`` is native (P(vulnerable) per unit = max over the unit's windows). ``detect`` gives
each rule finding in a unit the encoder's second opinion (``cwescan.scan.combine``, the card's
policy), as the SLM does, and reports a unit without one at or above its card's threshold
(chosen on the validation mix at realistic prevalence; config.json's for an artifact whose card
has none), at the line the line head points at, typed by the family head."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from pathlib import Path

from cwescan.core.policy import DecisionPolicy
from cwescan.core.units import body_lines, code_span, model_code
from cwescan.scan.triage import focus_lines, unit_surface
from cwescan.core import cwe as cwe_catalog
from cwescan.ml.artifacts import ArtifactError, model_dir, verify
from cwescan.ml.codeprep import strip_comments
from cwescan.detectors.base import ModelDetector
from cwescan.core.findings import Finding
from cwescan.scan.combine import review_unit
from cwescan.core.units import Unit


MEMO_UNITS = 50_000  # remembered unit scores (a few hundred bytes each)


class EncoderDetector(ModelDetector):
    name = "encoder"

    def __init__(
        self,
        precision: str = "fp32",
        device: str = "cpu",
        threshold: float | None = None,
        model_path: str | Path | None = None,
        batch_tokens: int | None = None,
        focus: bool = True,
    ) -> None:
        from cwescan.ml.precision import check_precision

        directory = Path(model_path) if model_path else model_dir("encoder")
        if not directory.is_dir():
            raise ArtifactError(f"{directory}: no encoder model; train one with `cwescan train encoder`")
        self.card = verify(directory)  # hashes first: nothing unverified is read
        self.directory = directory
        self.device = device
        self.precision = check_precision(precision)
        self.model = None  # loaded by load(), so that a scan the cache answers never reads the weights
        self.tokenizer = None
        config = json.loads((directory / "config.json").read_text())
        self.families: list[str] = config["families"]
        # the card holds the decision (its model-only threshold, `cwescan train calibrate`), as the
        # SLM's does; config.json's is the best-F1 threshold training left, for artifacts without one
        self.threshold = float(threshold if threshold is not None
                               else self.card.get("threshold", config.get("threshold", 0.5)))
        self.policy = DecisionPolicy.from_card(self.card)
        self.batch_tokens = batch_tokens  # None: the device's (ml/encoder/infer.batch_tokens_for)
        # a unit longer than one window is read only around its sinks and sources (ml/focus.py)
        self.focus = focus
        self.windows_scored = 0  # total windows run through the model, for benchmarks and reports
        # scores by (unit text, focus lines): the first stage and the SLM's pair ask about the same units,
        # and the evaluation runs detect() then score() on one batch
        self._memo: dict[tuple[str, tuple[int, ...]], object] = {}

    def load(self) -> None:
        if self.model is not None:
            return
        from cwescan.ml.encoder.model import EncoderClassifier
        from cwescan.ml.encoder.tokenizer import load_tokenizer
        from cwescan.ml.precision import apply_precision

        self.tokenizer = load_tokenizer(self.directory / "tokenizer.json")
        # fp32 / bf16 / fp16 (GPU) / int8 / int4 conversion is shared with the other models
        self.model = apply_precision(EncoderClassifier.load(self.directory), self.precision, self.device).eval()

    def set_batch(self, sequences: int) -> None:
        # the encoder batches by a token budget: ``sequences`` full windows
        self.load()
        self.batch_tokens = sequences * int(self.model.config.window_tokens)

    def clear_cache(self) -> None:
        self._memo.clear()

    def set_focus(self, on: bool, tokens: int | None = None) -> None:
        self.focus = on  # its windows are its own: ``tokens`` is the SLM's

    def cache_identity(self) -> dict | None:
        if not self.card.get("files"):
            return None
        return {"detector": self.name, "card": self.card, "precision": self.precision,
                "device": str(self.device), "threshold": self.threshold,
                "options": {"focus": True} if self.focus else None}

    def _scores(self, units: Sequence[Unit], focus: Sequence[Collection[int]] | None = None):
        from cwescan.ml.encoder.infer import batch_tokens_for, score_texts

        self.load()

        # Comments and docstrings are attacker-written prose: without them "# safe: validated"
        # cannot flip a verdict (docs/ROBUSTNESS.md). Line numbers are kept.
        if focus is None or not self.focus:
            focus = [self._focus(u) for u in units]
        keys = [(strip_comments(model_code(u)), tuple(sorted(f))) for u, f in zip(units, focus, strict=True)]
        todo = sorted({k for k in keys if k not in self._memo})
        if todo:
            scores = score_texts(self.model, self.tokenizer, [t for t, _ in todo], device=self.device,
                                 batch_tokens=self.batch_tokens or batch_tokens_for(self.device),
                                 focus=[f for _, f in todo])
            self.windows_scored += sum(s.windows for s in scores)
            if str(self.device) == "cpu":
                # the call's activations back to the OS, as the SLM does after each call: the
                # allocator kept ~440 MB of the first stage's batches free on the 1,000-file tree
                from cwescan.ml.precision import release_free_memory

                release_free_memory()
            if len(self._memo) + len(todo) > MEMO_UNITS:
                self._memo.clear()
            self._memo.update(zip(todo, scores, strict=True))
        return [self._memo[k] for k in keys]

    def _focus(self, unit: Unit) -> frozenset[int]:
        """Unit-relative lines of the unit's sink calls and source reads (empty with focus off);
        as the SLM's partner it is given the SLM's focus lines instead (``score_around``), which
        add the lines of rule findings."""
        return focus_lines(unit) if self.focus else frozenset()

    def score(self, units: Sequence[Unit]) -> list[float]:
        return [s.prob for s in self._scores(units)]

    def score_around(self, units: Sequence[Unit], focus: Sequence[Collection[int]]) -> list[float]:
        return [s.prob for s in self._scores(units, focus)]

    def detect(self, units: Sequence[Unit],
               hints: dict[str, list[Finding]] | None = None) -> list[Finding]:
        """Each rule finding in a unit (``hints``) comes back with the encoder's second opinion
        folded in (``cwescan.scan.combine.review_unit``, under the card's policy), as the SLM
        gives its own; a unit without one is reported on its own at or above the threshold."""
        families = self.families
        findings = []
        for u, s in zip(units, self._scores(units), strict=True):
            if s.windows == 0:
                continue
            # "other" is a training class, not a CWE: report the most likely named family
            ranked = sorted(range(len(families)), key=lambda i: -s.family_probs[i])
            named = [i for i in ranked if families[i] != "other"]
            cwe = families[named[0]] if named else "CWE-20"
            cwe_confidence = round(s.family_probs[named[0]], 4) if named else 0.0
            typed = bool(named) and cwe_confidence >= self.policy.cwe_head
            reviewed = review_unit(u, hints or {}, s.prob, cwe if typed else None, self.policy, self.name)
            findings += reviewed
            if reviewed or s.prob < self.threshold:
                continue
            line = u.file_line(s.line) if s.line else u.start_line
            findings.append(
                Finding(
                    path=u.path,
                    start_line=line,
                    end_line=line,
                    cwe=cwe,
                    rule_id="ENC",
                    title=cwe_catalog.name(cwe),
                    message=(
                        f"The encoder classifier rates {u.kind} {u.qualname!r} as vulnerable "
                        f"(P={s.prob:.2f}); most likely weakness family {cwe} ({cwe_catalog.name(cwe)}), "
                        f"line {line} weighs most."
                    ),
                    confidence=self.policy.probability(s.prob),
                    severity=cwe_catalog.severity(cwe),
                    detector=self.name,
                    extra={"score": round(s.prob, 6),  # raw: what the card's thresholds read
                           "family_probability": cwe_confidence if named else None,
                           "cwe_confidence": cwe_confidence,
                           "line_is_code": line in body_lines(u), "unit_span": list(code_span(u)),
                           "evidence": (ev.as_dict() if (ev := unit_surface(u)) else None),
                           "unit": u.qualname, "windows": s.windows},
                )
            )
        return findings
