"""Thresholds, calibration and the realistic view at stated prevalence."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cwescan.evaluate import prevalence as PV


def test_precision_at_prevalence_follows_the_rates():
    assert PV.precision_at(0.5, 0.0, 0.01) == 1.0
    # TPR 0.5, FPR 0.01 at 1 %: 0.005 / (0.005 + 0.0099)
    assert PV.precision_at(0.5, 0.01, 0.01) == pytest.approx(0.005 / 0.0149)
    assert PV.precision_at(0.5, 0.01, 0.5) > PV.precision_at(0.5, 0.01, 0.01)


def test_model_only_threshold_meets_the_precision_target_with_support():
    rng = random.Random(0)
    pos = [rng.betavariate(5, 2) for _ in range(400)]
    neg = [rng.betavariate(1, 8) for _ in range(4000)]
    t = PV.threshold_for_precision(pos, neg, 0.01, 0.5)
    assert t is not None
    tpr = sum(s >= t for s in pos) / len(pos)
    fpr = sum(s >= t for s in neg) / len(neg)
    assert PV.precision_at(tpr, fpr, 0.01) >= 0.5 and tpr * len(pos) >= PV.MIN_SUPPORT
    # a lower threshold (one step down the curve) would miss the target
    lower = max(s for s in pos + neg if s < t)
    tpr2 = sum(s >= lower for s in pos) / len(pos)
    fpr2 = sum(s >= lower for s in neg) / len(neg)
    assert PV.precision_at(tpr2, fpr2, 0.01) < 0.5 or tpr2 * len(pos) < PV.MIN_SUPPORT
    # negatives that score as high as the positives: no threshold reaches it
    assert PV.threshold_for_precision(pos, pos * 10, 0.01, 0.5) is None


def test_safe_and_vulnerable_thresholds():
    pos = [i / 100 for i in range(100)]
    t = PV.threshold_for_recall_loss(pos, 0.05)
    assert sum(s < t for s in pos) <= 5 and sum(s < t for s in pos) == 5
    neg = [i / 1000 for i in range(1000)]
    v = PV.threshold_for_fpr(neg, 0.01)
    assert sum(s >= v for s in neg) == 10


def test_cwe_threshold_needs_support_and_precision():
    rows = [(0.9, True)] * 12 + [(0.5, False)] * 30 + [(0.4, True)] * 5
    assert PV._cwe_threshold(rows) == 0.9
    assert PV._cwe_threshold([(0.9, True)] * 3) is None


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.booleans(), st.floats(0.01, 5)), min_size=1, max_size=60))
def test_isotonic_fit_is_monotone_and_within_the_label_range(rows):
    scores, labels, weights = zip(*rows, strict=True)
    iso = PV.fit_isotonic(list(scores), list(labels), list(weights))
    probs = [iso(s) for s in sorted(scores)]
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(probs))
    assert all(0.0 <= p <= 1.0 for p in probs)
    assert PV.Isotonic.from_dict(iso.to_dict())(scores[0]) == pytest.approx(iso(scores[0]), abs=1e-6)


def test_isotonic_calibration_lowers_ece_at_realistic_prevalence():
    rng = random.Random(1)
    pos = [rng.betavariate(6, 2) for _ in range(300)]
    neg = [rng.betavariate(2, 3) for _ in range(3000)]
    wp, wn = PV.mix_weights(len(pos), len(neg), 0.01)
    labels = [True] * len(pos) + [False] * len(neg)
    weights = [wp] * len(pos) + [wn] * len(neg)
    iso = PV.fit_isotonic(pos + neg, labels, weights)
    raw = PV.ece(pos + neg, labels, weights)
    cal = PV.ece([iso(s) for s in pos + neg], labels, weights)
    assert cal < raw / 5
    assert sum(weights) == pytest.approx(1.0)
    # a perfectly calibrated constant: ECE 0
    assert PV.ece([0.01] * 100, [True] + [False] * 99, [1.0] * 100) == pytest.approx(0.0)


def test_realistic_view_counts_false_alarms_per_lines_and_units():
    v = PV.realistic_view([0.9, 0.8, 0.1], [0.95, 0.2, 0.1, 0.05], 0.85, source_lines=2000)
    assert v["recall"] == pytest.approx(1 / 3) and v["false_alarms"] == 1
    assert v["false_alarms_per_1k_lines"] == pytest.approx(0.5)
    assert v["false_alarms_per_1k_units"] == pytest.approx(250)
    off = PV.realistic_view([0.9], [0.95], None, source_lines=10)
    assert off["false_alarms"] == 0 and off["recall"] == 0.0
    eq = PV.fpr_at_recall([0.9, 0.8, 0.1], [0.95, 0.2, 0.1, 0.05], 0.6)
    assert eq["threshold"] == 0.8 and eq["fpr"] == pytest.approx(0.25)


def test_choose_thresholds_orders_safe_below_vulnerable():
    rng = random.Random(2)
    pos = [rng.betavariate(5, 2) for _ in range(300)]
    neg = [rng.betavariate(1, 6) for _ in range(3000)]
    th, how = PV.choose_thresholds(pos, neg, [(0.8, True)] * 20 + [(0.3, False)] * 25, 0.01)
    assert th.second_opinion_safe < th.second_opinion_vulnerable
    assert th.model_only is not None and th.model_only > th.second_opinion_safe
    assert th.cwe_head == 0.8 and set(how) == set(th.to_dict())
