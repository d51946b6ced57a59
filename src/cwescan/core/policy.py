"""How a model's opinion becomes what a scan shows: the thresholds of the decision policy.

The policy itself (second opinion on rule findings, model-only findings, CWE, severity and
line) is applied in ``cwescan.scan.combine``; the numbers come from each model's card."""

from __future__ import annotations

import bisect
import dataclasses
import math
from dataclasses import dataclass

from cwescan.core.config import DEFAULT_MIN_CONFIDENCE

MODEL_ONLY_MAX_SEVERITY = "medium"  # a model alone is a lead, never a CI failure at the default --fail-on


@dataclass
class Isotonic:
    """A non-decreasing step map from raw score to probability (pool-adjacent-violators fit):
    ``x`` holds the lower edge of each step, ``y`` its probability."""

    x: list[float]
    y: list[float]

    def __call__(self, score: float) -> float:
        i = bisect.bisect_right(self.x, score) - 1
        return self.y[max(i, 0)]

    def to_dict(self) -> dict:
        # step edges are kept exact: a rounded-up edge would move scores on it into the step below
        return {"method": "isotonic", "x": list(self.x), "y": [round(v, 6) for v in self.y]}

    @classmethod
    def from_dict(cls, d: dict) -> Isotonic:
        return cls(list(d["x"]), list(d["y"]))


@dataclass(frozen=True)
class DecisionPolicy:
    """How a model's opinion becomes what a user sees. Each threshold applies to the model's
    P(vulnerable) (or to its CWE / line confidences) and comes from the model card's
    ``policy`` section, where the card says how it was chosen (precision targets on a validation
    mix at realistic prevalence). The defaults are conservative for a card without one."""

    model_only: float = 0.97  # a finding with no rule evidence in its unit is shown from here
    safe: float = 0.05  # at or below: the model's "safe" lowers a rule finding below display
    vulnerable: float = 0.5  # at or above (same CWE family): the model's "vulnerable" raises it
    cwe_head: float = 0.8  # the model's CWE is reported only from this CWE confidence
    line: float = 0.6  # the model's line is pointed at only from this line confidence
    display: float = DEFAULT_MIN_CONFIDENCE
    calibration: Isotonic | None = None  # raw score -> probability at the card's prevalence
    chosen: str = "conservative defaults (the model card has no policy)"

    @classmethod
    def from_card(cls, card: dict) -> DecisionPolicy:
        section = card.get("policy") or {}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(section) - known - {"prevalence", "metrics"})
        if unknown:
            raise ValueError(f"model card policy: unknown keys {', '.join(unknown)}")
        calib = card.get("calibration") or {}
        calibration = Isotonic.from_dict(calib) if calib.get("method") == "isotonic" else None
        return cls(**{k: v for k, v in section.items() if k in known and k != "calibration"},
                   calibration=calibration)

    def shown_from(self, min_confidence: float) -> float:
        """The lowest raw score a model-only finding is shown from when findings under
        ``min_confidence`` are hidden: the model-only threshold, or higher where the calibrated
        probability is still under ``min_confidence`` (at 1 % prevalence a score just past the
        threshold may be a 9 % probability)."""
        if self.calibration is None:
            return max(self.model_only, min_confidence)
        edge = next((x for x, y in zip(self.calibration.x, self.calibration.y) if y >= min_confidence), math.inf)
        return max(self.model_only, edge)

    def probability(self, score: float) -> float:
        """The model's raw score as a calibrated probability (the raw score without a map).
        Thresholds apply to raw scores; confidences shown to users are probabilities."""
        return self.calibration(score) if self.calibration is not None else score
