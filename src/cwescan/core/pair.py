"""Two models' opinions as one: the SLM's P(vulnerable) of a unit averaged in log-odds with its
partner's (the encoder's), ``logit(p) = w * logit(p_slm) + (1 - w) * logit(p_partner)``.

Why: the two models are wrong about different code. On the realistic test mix (vulnerable test
records against units of held-out packages) the pair separates the two better than either alone,
so at the same false alarms per 1,000 lines it finds more. The weight ``w`` and every decision
threshold of the pair are chosen on validation (``cwescan train pair``)
and kept in the SLM card's ``pair`` section, with the partner's file hashes: a different
partner model makes the thresholds meaningless, so it is refused rather than used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from cwescan.core.policy import DecisionPolicy

CHOICES = ("encoder", "none")  # the scan's --pair: a partner model, or the SLM alone
# How the partner settled a unit's rule findings without the SLM (``Pairing.settle``)
SETTLED_KEPT = "settled"  # no SLM answer could change what is shown
SETTLED_SAFE = "settled-safe"  # only an answer the SLM rarely gives ordinary code could keep them
EPS = 1e-6  # probabilities are clipped here: a saturated model must not decide alone


def partner_name(choice: str) -> str | None:
    """The partner detector of a ``--pair`` choice (None: the SLM alone)."""
    return None if choice == "none" else choice


def logit(p: float) -> float:
    p = min(max(p, EPS), 1 - EPS)
    return math.log(p / (1 - p))


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))


def fuse(p_slm: float, p_partner: float, weight: float) -> float:
    """The pair's P(vulnerable): the weighted mean of the two log-odds."""
    return sigmoid(weight * logit(p_slm) + (1 - weight) * logit(p_partner))


def slm_needed(threshold: float, p_partner: float, weight: float) -> float:
    """The lowest SLM probability at which the pair reaches ``threshold`` given the partner's
    probability (above 1: the pair cannot reach it whatever the SLM says)."""
    if threshold > 1:
        return math.inf
    z = (logit(threshold) - (1 - weight) * logit(p_partner)) / weight
    if z > logit(1 - EPS):
        return math.inf
    return max(sigmoid(z) - 1e-9, 0.0)  # a hair under: the decode must cover every fused flag


def gate(threshold: float, slm_ceiling: float, weight: float) -> float:
    """The partner probability below which the pair stays under ``threshold`` even when the SLM
    says ``slm_ceiling``: under it the SLM's answer cannot make a finding, so it need not run."""
    return sigmoid((logit(threshold) - weight * logit(slm_ceiling)) / (1 - weight))


class PairUnavailable(ValueError):
    """The SLM card holds no pair fitted for the partner model given."""


@dataclass(frozen=True)
class Pairing:
    """The card's ``pair`` section: who the partner is, the weight, the pair's decision policy."""

    partner: str  # detector name of the partner model
    weight: float  # of the SLM's log-odds
    partner_files: dict  # the partner's weight and tokenizer hashes the policy was fitted with
    policy: DecisionPolicy
    # Partner score below which a unit without rule evidence is not worth the SLM's time (the
    # card's ``gate`` section; 0: every unit is read), at the model-only threshold
    gate: float = 0.0
    slm_ceiling: float = 0.0  # the SLM score the gate assumes at most (0: unknown)
    # the SLM scores a settled second opinion assumes it stays between on ordinary code (the
    # card's ``settle`` section; 0: unknown, so every unit with a rule finding is read)
    slm_floor: float = 0.0
    slm_ordinary: float = 0.0

    @property
    def threshold(self) -> float:
        return self.policy.model_only

    @classmethod
    def from_card(cls, card: dict) -> Pairing | None:
        section = card.get("pair")
        if not section:
            return None
        policy = DecisionPolicy.from_card({"policy": section["policy"], "calibration": section.get("calibration")})
        gated = section.get("gate") or {}
        settle = section.get("settle") or {}
        return cls(section["partner"], float(section["weight"]), dict(section["partner_files"]), policy,
                   float(gated.get("threshold", 0.0)), float(gated.get("slm_ceiling", 0.0)),
                   float(settle.get("slm_floor", 0.0)), float(settle.get("slm_ordinary", 0.0)))

    def gate_at(self, min_confidence: float) -> float:
        """The gate when findings under ``min_confidence`` are hidden: a model-only finding is
        shown only from ``policy.shown_from(min_confidence)``, so under the partner score where
        the pair stays below that even with the SLM at its ceiling, the SLM's answer cannot
        change the report (with the card's default display, about twice as many units cleared)."""
        if self.slm_ceiling <= 0:
            return self.gate
        return max(self.gate, gate(self.policy.shown_from(min_confidence), self.slm_ceiling, self.weight))

    def settle(self, p_partner: float, rule_confidences: Sequence[float], display: float) -> str | None:
        """Whether the partner's score alone decides the second opinion on a unit's rule findings
        (their confidences), so the SLM need not read the unit:

        - ``SETTLED_SAFE``: even with the SLM at ``slm_ordinary`` (a score it exceeds on 5 % of
          ordinary code) the pair is at or under its confident "safe": the findings are lowered
          as the pair would lower them, unless the SLM had said something it rarely says;
        - ``SETTLED_KEPT``: even at the SLM's floor the pair stays above "safe" (no finding would
          be lowered), and no finding hidden under ``display`` could be raised into view, because
          even at the SLM's ceiling the pair stays under its confident "vulnerable" (or none is
          hidden). A "vulnerable" on a finding already shown would only raise its confidence;
        - None: the SLM's answer could change what is shown; it reads the unit."""
        if not rule_confidences:
            return None
        if self.slm_ordinary > 0 and fuse(self.slm_ordinary, p_partner, self.weight) <= self.policy.safe:
            return SETTLED_SAFE
        if self.slm_floor <= 0 or self.slm_ceiling <= 0:
            return None
        if fuse(self.slm_floor, p_partner, self.weight) <= self.policy.safe:
            return None  # the SLM could still call it safe
        hidden = any(c < display for c in rule_confidences)
        if hidden and fuse(self.slm_ceiling, p_partner, self.weight) >= self.policy.vulnerable:
            return None  # and raise a hidden finding into view
        return SETTLED_KEPT

    def accepts(self, partner_card: dict) -> bool:
        """Whether ``partner_card`` is the model the pair's thresholds were fitted with (same
        weights and tokenizer; its own thresholds in config files may differ)."""
        return model_files(partner_card.get("files") or {}) == self.partner_files


def model_files(files: dict) -> dict:
    """Of an artifact's file hashes, those that decide its scores: weights and tokenizer."""
    return {k: v for k, v in sorted(files.items()) if k.endswith(".safetensors") or k == "tokenizer.json"}
