"""The model stage's first stage: a cheap model clears units before the SLM reads them.

Triage sends the SLM every unit that touches a security surface; on real code that is mostly
ordinary functions calling ``open`` or ``subprocess.run`` with nothing wrong. The encoder
(17 M parameters, fine-tuned with realistic negatives) reads such a unit for a fraction of the
SLM's cost; when it scores the unit below its card's ``first_stage.threshold`` the unit is
cleared, as if triage had cleared it. Only units without a rule finding meet the first stage:
a rule finding always gets the SLM's second opinion. A unit of a file that does not parse is
kept too.

The threshold is chosen on validation (``cwescan train first-stage``): at most 2 % of the
vulnerable validation records fall below it; the card records what it cost on test (points of
the SLM's own recall) and what it clears of real code. When the encoder is also the SLM's pair
partner, the pair's gate (``cwescan.core.pair.gate``) may be higher: under it the pair cannot
report a unit whatever the SLM would say, so the SLM's answer is not worth computing there. The
stage then clears from the higher of the two. A cleared unit is remembered in the result cache
under the encoder's key (and threshold), so a warm scan neither loads nor runs the encoder.
"""

from __future__ import annotations

from collections.abc import Sequence

from cwescan.core.units import Unit
from cwescan.detectors.base import ModelDetector
from cwescan.scan.cache import ResultCache, model_key, unit_key
from cwescan.scan.quiet import third_party_quiet

CHOICES = ("encoder", "none")


class FirstStageUnavailable(RuntimeError):
    """The first-stage model has no first-stage threshold in its card."""


class FirstStage:
    """Clears units a cheap model confidently calls safe (see the module doc)."""

    def __init__(self, detector: ModelDetector, threshold: float, chosen_by: str = "first stage") -> None:
        self.detector = detector
        self.threshold = threshold
        self.chosen_by = chosen_by  # "first stage" (the encoder card) or "pair gate" (the SLM card)
        self.scored = self.cleared = self.from_cache = 0
        self._verdicts: dict[int, bool] = {}  # id(unit) -> cleared, for several model detectors

    @classmethod
    def from_card(cls, detector: ModelDetector, gate: float = 0.0) -> FirstStage:
        """The stage at the threshold of ``detector``'s card, or at ``gate`` (the pair's, see the
        module doc) where that is higher."""
        section = detector.card.get("first_stage") or {}
        if "threshold" not in section and gate <= 0:
            raise FirstStageUnavailable(f"the {detector.name} model card has no first_stage threshold "
                                        "(cwescan train first-stage --write)")
        own = float(section.get("threshold", 0.0))
        return cls(detector, gate, "pair gate") if gate > own else cls(detector, own)

    def stats(self) -> dict:
        return {"detector": self.detector.name, "threshold": self.threshold, "chosen_by": self.chosen_by,
                "scored": self.scored, "cleared": self.cleared, "from_cache": self.from_cache}

    def split(self, units: Sequence[Unit], eligible: set[int],
              cache: ResultCache | None = None, verbose: bool = False) -> tuple[list[Unit], list[Unit]]:
        """(units the SLM must still read, units cleared), each in the order given. Only units
        whose ``id`` is in ``eligible`` meet the first stage: triage's "sink" and "source" units
        (``cwescan.scan.triage.FIRST_STAGE_KINDS``), not those with a rule finding or no AST.
        The model is loaded only when some unit is not answered by the cache, with what the model
        libraries print on import held back unless ``verbose``."""
        mkey = model_key(self.detector) if cache is not None else None  # once: it hashes source files
        keys = {} if mkey is None else {id(u): unit_key(f"{mkey}:first-stage:{self.threshold!r}", u, ())
                                        for u in units if id(u) in eligible and id(u) not in self._verdicts}
        judge: list[Unit] = []
        for u in units:
            if id(u) in self._verdicts or id(u) not in eligible:
                continue
            if id(u) in keys and cache.get(keys[id(u)], u) is not None:  # cleared by an earlier scan
                self._verdicts[id(u)] = True
                self.from_cache += 1
                self.cleared += 1
            else:
                judge.append(u)
        if judge:
            with third_party_quiet(enabled=not verbose):
                self.detector.load()
            scores = self.detector.score(judge)
            self.scored += len(judge)
            for u, s in zip(judge, scores, strict=True):
                clear = s < self.threshold
                self._verdicts[id(u)] = clear
                if clear:
                    self.cleared += 1
                    if id(u) in keys:
                        cache.put(keys[id(u)], [])
        keep = [u for u in units if not self._verdicts.get(id(u), False)]
        return keep, [u for u in units if self._verdicts.get(id(u), False)]


def create(name: str, device: str | None = None) -> FirstStage | None:
    """The first stage ``name`` ("encoder") at its measured default precision, or None when its
    model cannot run here (no model extra, no artifact, no first-stage threshold in its card):
    the SLM then reads every unit triage sends, as before."""
    from cwescan import detectors as registry
    from cwescan.ml.artifacts import ArtifactError

    if name not in CHOICES:
        raise ValueError(f"first stage must be one of {', '.join(CHOICES)}, not {name!r}")
    if name == "none" or registry.missing_model_extra():
        return None
    try:
        (detector,) = registry.create_detectors([name], device=device)
        return FirstStage.from_card(detector)
    except (ArtifactError, FirstStageUnavailable, OSError):
        return None
