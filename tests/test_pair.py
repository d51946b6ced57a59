"""The SLM's pair with a partner model: the fused score, the SLM score a unit needs, the card
section that says which partner the thresholds were fitted with, and fitting the weight."""

from __future__ import annotations

import math

import pytest

from hypothesis import given
from hypothesis import strategies as st

from cwescan.core.pair import EPS, Pairing, fuse, gate, model_files, slm_needed
from cwescan.train.pair import AUC_TIE, choose_weight, fuse_scores, gate_section

prob = st.floats(min_value=1e-5, max_value=1 - 1e-5)
weight = st.floats(min_value=0.1, max_value=0.9)


@given(prob, prob, weight)
def test_fuse_lies_between_the_two_models(a, b, w):
    lo, hi = min(a, b), max(a, b)
    assert lo - 1e-9 <= fuse(a, b, w) <= hi + 1e-9


@given(prob, prob, weight)
def test_the_needed_slm_score_is_exactly_where_the_pair_reaches_the_threshold(threshold, partner, w):
    need = slm_needed(threshold, partner, w)
    if math.isinf(need):  # the pair cannot reach it: not even a saturated SLM does
        assert fuse(1 - 1e-6, partner, w) < threshold + 1e-9
        return
    assert fuse(min(need + 1e-9, 1.0), partner, w) >= threshold - 1e-9
    below = need - 1e-4
    if below > 1e-6:
        assert fuse(below, partner, w) < threshold


@given(prob, st.floats(min_value=0.5, max_value=1 - 1e-5), weight, prob)
def test_under_the_gate_even_the_slm_ceiling_leaves_the_pair_under_its_threshold(threshold, ceiling, w, partner):
    g = gate(threshold, ceiling, w)
    if EPS < g < 1 - EPS:  # (probabilities are clipped to [EPS, 1 - EPS] before their log-odds)
        assert fuse(ceiling, g, w) == pytest.approx(threshold, rel=1e-6, abs=1e-9)
    if partner < g * (1 - 1e-6):
        assert fuse(ceiling, partner, w) < threshold
        assert slm_needed(threshold, partner, w) >= ceiling - 1e-9


def test_a_threshold_no_probability_reaches_needs_no_decode():
    assert math.isinf(slm_needed(1.01, 0.9, 0.5))


def _card(files: dict) -> dict:
    return {"pair": {"partner": "encoder", "weight": 0.4, "partner_files": model_files(files),
                     "policy": {"model_only": 0.6, "safe": 0.01, "vulnerable": 0.5, "cwe_head": 0.4},
                     "calibration": {"method": "isotonic", "x": [0.0, 0.5], "y": [0.001, 0.3]}}}


def test_the_pair_names_its_partner_by_weights_not_by_its_config():
    files = {"model-00001.safetensors": "aa", "tokenizer.json": "bb", "config.json": "cc"}
    pairing = Pairing.from_card(_card(files))
    assert pairing.threshold == 0.6 and pairing.weight == 0.4
    assert pairing.policy.probability(0.7) == 0.3  # the pair's own calibration
    assert pairing.accepts({"files": {**files, "config.json": "a new threshold"}})
    assert not pairing.accepts({"files": {**files, "model-00001.safetensors": "retrained"}})
    assert Pairing.from_card({}) is None
    assert pairing.gate == 0.0  # a card without a gate: the SLM reads every unit
    assert Pairing.from_card({"pair": {**_card(files)["pair"], "gate": {"threshold": 0.007}}}).gate == 0.007


def _scores(slm_pos, slm_neg, enc_pos, enc_neg) -> tuple[dict, dict]:
    def doc(pos, neg):
        lab = [{"id": f"p{i}", "vulnerable": True, "score": s, "cwe": None, "cwe_confidence": None}
               for i, s in enumerate(pos)]
        return {"labelled": {"validation": lab}, "negatives": {"validation": [{"id": f"n{i}", "score": s}
                                                                             for i, s in enumerate(neg)]}}
    return doc(slm_pos, slm_neg), doc(enc_pos, enc_neg)


def test_fused_scores_keep_the_slm_rows_and_only_ids_both_scored():
    slm, enc = _scores([0.9, 0.8], [0.1], [0.7], [0.2, 0.3])
    fused = fuse_scores(slm, enc, 0.5)
    assert [r["id"] for r in fused["labelled"]["validation"]] == ["p0"]
    assert [r["id"] for r in fused["negatives"]["validation"]] == ["n0"]
    assert fused["labelled"]["validation"][0]["score"] == fuse(0.9, 0.7, 0.5)


def test_the_weight_follows_the_model_that_separates_validation():
    # the SLM ranks every vulnerable record above every negative; the partner is noise
    pos = [0.6 + i / 100 for i in range(20)]
    neg = [0.1 + i / 100 for i in range(20)]
    noise_pos = [(i * 7 % 20) / 20 for i in range(20)]
    noise_neg = [(i * 3 % 20) / 20 for i in range(20)]
    w, aucs = choose_weight(*_scores(pos, neg, noise_pos, noise_neg))
    assert aucs[f"{w:.1f}"] >= max(aucs.values()) - AUC_TIE
    assert w >= 0.5
    w_rev, _ = choose_weight(*_scores(noise_pos, noise_neg, pos, neg))
    assert w_rev <= 0.5


def test_among_equal_weights_the_partner_decides_more():
    # both models rank every vulnerable record above every negative: every weight separates
    # validation perfectly, and the lowest SLM weight (the highest gate, the cheapest scan) wins
    pos = [0.6 + i / 100 for i in range(20)]
    neg = [0.1 + i / 100 for i in range(20)]
    w, aucs = choose_weight(*_scores(pos, neg, pos, neg))
    assert set(aucs.values()) == {1.0}
    assert w == 0.1


def test_the_line_threshold_is_where_half_of_the_flagged_lines_are_right():
    from cwescan.evaluate.prevalence import confidence_threshold, line_right
    from cwescan.train.pair import line_answers, line_view

    assert line_right(12, [10]) and not line_right(13, [10]) and not line_right(None, [10])
    # 40 flagged vulnerable records: confident lines are right, unsure ones wrong
    lab, lines = [], []
    for i in range(40):
        conf = i / 40
        lab.append({"id": f"r{i}", "vulnerable": True, "score": 0.9})
        lines.append({"id": f"r{i}", "lines": [20], "line": 20 if conf >= 0.5 else 5, "line_confidence": conf})
    lab.append({"id": "low", "vulnerable": True, "score": 0.1})  # not flagged: its line does not count
    lines.append({"id": "low", "lines": [20], "line": 20, "line_confidence": 0.99})
    answers = line_answers({"labelled": {"validation": lines}}, {"labelled": {"validation": lab}}, "validation", 0.5)
    assert len(answers) == 40
    t = confidence_threshold(answers, 0.5)
    assert t is not None and t <= 0.5  # from here at least half are right
    view = line_view(answers, t)
    assert view["pointed_right"] >= 0.5 and view["lines_right"] == 0.5
    assert confidence_threshold([(0.9, False)] * 30, 0.5) is None


def test_the_gate_clears_negatives_and_counts_the_pair_flags_it_would_lose():
    # 100 vulnerable records: the SLM says 0.5 .. 0.99 (ceiling at the 99 % quantile: 0.98);
    # the encoder scores them 0.001 .. 0.1; negatives score 0.0001 (encoder) and 0.9 (SLM)
    pos = [0.5 + i * 0.49 / 99 for i in range(100)]
    enc_pos = [0.001 + i * 0.099 / 99 for i in range(100)]
    slm, enc = _scores(pos, [0.9] * 10, enc_pos, [0.0001] * 10)
    for doc in (slm, enc):
        for r in doc["negatives"]["validation"]:
            r["code_lines"] = 10
        doc["labelled"]["test"], doc["negatives"]["test"] = doc["labelled"]["validation"], doc["negatives"]["validation"]
    section = gate_section(slm, enc, 0.5, model_only=0.5)
    assert section["slm_ceiling"] == pytest.approx(pos[98])
    assert section["threshold"] == pytest.approx(gate(0.5, pos[98], 0.5))
    v = section["validation"]
    assert v["negatives_cleared"] == 1.0 and v["negative_lines_cleared"] == 1.0
    flagged = [(p, q) for p, q in zip(pos, enc_pos) if fuse(p, q, 0.5) >= 0.5]
    assert v["pair_flags"] == len(flagged)
    # only a record whose SLM score is above the ceiling can be flagged under the gate
    assert v["pair_flags_lost"] == sum(q < section["threshold"] for _, q in flagged) <= 1


def test_the_fit_shows_what_each_weight_would_leave_the_gate():
    from cwescan.evaluate.prevalence import choose_thresholds
    from cwescan.train.pair import WEIGHTS, gate_by_weight, slm_ceiling

    # the SLM separates validation well, the encoder less so; negatives spread over both scales
    pos = [0.5 + i * 0.49 / 99 for i in range(100)]
    enc_pos = [0.05 + i * 0.9 / 99 for i in range(100)]
    neg = [0.01 + i * 0.6 / 199 for i in range(200)]
    enc_neg = [0.001 + i * 0.5 / 199 for i in range(200)]
    slm, enc = _scores(pos, neg, enc_pos, enc_neg)
    by_weight = gate_by_weight(slm, enc, prevalence=0.01)
    assert list(by_weight) == [f"{w:.1f}" for w in WEIGHTS]
    for w in WEIGHTS:
        row = by_weight[f"{w:.1f}"]
        fused = fuse_scores(slm, enc, w)
        fused_pos, fused_neg = fused["labelled"]["validation"], fused["negatives"]["validation"]
        model_only = choose_thresholds([r["score"] for r in fused_pos], [r["score"] for r in fused_neg], [],
                                       0.01)[0].model_only
        expected = gate(model_only if model_only is not None else 1.01, slm_ceiling(slm), w)
        assert row["threshold"] == pytest.approx(expected)
        assert row["validation_negatives_cleared"] == sum(q < expected for q in enc_neg) / len(enc_neg)
    # the more say the partner has, the higher the gate: the cheap end clears more than the other
    cleared = [by_weight[f"{w:.1f}"]["validation_negatives_cleared"] for w in WEIGHTS]
    assert cleared[0] > cleared[-1]


def test_the_gate_follows_what_the_scan_shows():
    from cwescan.core.pair import Pairing, fuse, gate
    from cwescan.core.policy import DecisionPolicy, Isotonic

    # at 1 % prevalence a raw score of 0.6 is a 10 % probability: shown only from 0.8 on
    policy = DecisionPolicy(model_only=0.5, calibration=Isotonic([0.0, 0.5, 0.8], [0.0, 0.1, 0.6]))
    assert policy.shown_from(0.0) == 0.5 and policy.shown_from(0.3) == 0.8 and policy.shown_from(0.9) == float("inf")
    pairing = Pairing("encoder", 0.4, {}, policy, gate=gate(0.5, 0.999, 0.4), slm_ceiling=0.999)
    assert pairing.gate_at(0.0) == pytest.approx(pairing.gate)
    higher = pairing.gate_at(0.3)
    assert higher > pairing.gate
    # just under the higher gate, even the SLM at its ceiling leaves the pair under what is shown
    assert fuse(0.999, higher * 0.99, 0.4) < 0.8 <= fuse(0.999, higher * 1.01, 0.4)
    assert Pairing("encoder", 0.4, {}, policy, gate=0.01).gate_at(0.3) == 0.01  # no ceiling known


@given(prob, st.floats(min_value=1e-5, max_value=0.2), st.floats(min_value=0.5, max_value=1 - 1e-5), weight,
       st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=4))
def test_a_settled_second_opinion_is_one_no_slm_answer_in_its_range_could_change(partner, floor, ceiling, w,
                                                                                  confidences):
    from cwescan.core.pair import SETTLED_KEPT, SETTLED_SAFE
    from cwescan.core.policy import DecisionPolicy

    policy = DecisionPolicy(model_only=0.6, safe=0.01, vulnerable=0.5)
    ordinary = (floor + ceiling) / 4
    pairing = Pairing("encoder", w, {}, policy, slm_ceiling=ceiling, slm_floor=floor, slm_ordinary=ordinary)
    verdict = pairing.settle(partner, confidences, display=0.3)
    if verdict == SETTLED_SAFE:  # the pair says "safe" unless the SLM says more than ordinary code
        assert fuse(ordinary, partner, w) <= policy.safe
        assert fuse(floor, partner, w) <= policy.safe
    elif verdict == SETTLED_KEPT:
        for slm in (floor, (floor + ceiling) / 2, ceiling):  # the pair is monotone in the SLM's score
            p = fuse(slm, partner, w)
            assert p > policy.safe  # no finding would be lowered
            if any(c < 0.3 for c in confidences):
                assert p < policy.vulnerable  # and no hidden one raised into view
    else:
        assert verdict is None


def test_without_bounds_or_rule_findings_nothing_is_settled():
    from cwescan.core.pair import SETTLED_KEPT, SETTLED_SAFE
    from cwescan.core.policy import DecisionPolicy

    policy = DecisionPolicy(model_only=0.6, safe=0.01, vulnerable=0.5)
    assert Pairing("encoder", 0.4, {}, policy, slm_ceiling=0.99).settle(0.9, [0.8], 0.3) is None
    known = Pairing("encoder", 0.4, {}, policy, slm_ceiling=0.99, slm_floor=0.001, slm_ordinary=0.2)
    assert known.settle(0.9, [], 0.3) is None
    assert known.settle(0.9, [0.8], 0.3) == SETTLED_KEPT  # a suspicious unit: the SLM could not call it safe
    assert known.settle(1e-5, [0.8], 0.3) == SETTLED_SAFE  # the pair calls it safe unless the SLM objects
    assert known.settle(0.01, [0.8], 0.3) is None  # in between: the SLM decides
    assert known.settle(0.9, [0.8, 0.27], 0.3) is None  # and a hidden finding could be raised into view
    assert known.settle(0.9, [0.8, 0.27], 0.25) == SETTLED_KEPT  # unless the scan shows it anyway


def test_the_settle_floor_is_a_quantile_of_the_negatives_and_its_cost_is_counted():
    from cwescan.core.policy import DecisionPolicy
    from cwescan.train.pair import FLOOR_QUANTILE, ORDINARY_QUANTILE, settle_bounds, settle_section

    # the SLM scores 100 negatives 0.0001 .. 0.0100 and vulnerable records 0.9; the encoder 0.5
    # on negatives but the first (whose SLM score is the lowest) and 0.9 on vulnerable records
    neg = [(i + 1) / 10_000 for i in range(100)]
    slm, enc = _scores([0.9] * 10, neg, [0.9] * 10, [0.001] + [0.5] * 99)
    for doc in (slm, enc):
        doc["labelled"]["test"], doc["negatives"]["test"] = doc["labelled"]["validation"], doc["negatives"]["validation"]
    floor, ordinary = settle_bounds(slm)
    pairing = Pairing("encoder", 0.4, {}, DecisionPolicy(safe=0.01), slm_ceiling=0.99, slm_floor=floor,
                      slm_ordinary=ordinary)
    section = settle_section(slm, enc, pairing)
    assert section["slm_floor"] == neg[int(FLOOR_QUANTILE * 100)]
    assert section["slm_ordinary"] == neg[int(ORDINARY_QUANTILE * 100)]
    v = section["validation"]
    assert v["vulnerable_settled"] == 1.0 and v["vulnerable_safe_forgone"] == 0
    settled = [(p, q) for p, q in zip(neg, [0.001] + [0.5] * 99) if fuse(section["slm_floor"], q, 0.4) > 0.01]
    assert v["negatives_settled"] == len(settled) / 100 < 1.0
    assert v["negatives_safe_forgone"] == sum(fuse(p, q, 0.4) <= 0.01 for p, q in settled)
