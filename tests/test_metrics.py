"""Metric functions against values computed by hand."""

from __future__ import annotations

import pytest

from cwescan.evaluate import metrics as M

approx = pytest.approx


def test_binary_mixed():
    # tp=2 (idx 0, 4), fp=1 (idx 2), fn=1 (idx 1), tn=1 (idx 3)
    m = M.binary_metrics([1, 1, 0, 0, 1], [1, 0, 1, 0, 1])
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 1)
    assert m["precision"] == approx(2 / 3) and m["recall"] == approx(2 / 3) and m["f1"] == approx(2 / 3)
    assert m["accuracy"] == approx(3 / 5)
    assert m["mcc"] == approx((2 * 1 - 1 * 1) / (3 * 3 * 2 * 2) ** 0.5)  # 1/6


def test_binary_no_positives():
    m = M.binary_metrics([False, False, False], [False, True, False])
    assert m["positives"] == 0 and m["recall"] is None  # undefined, not 0 or 1
    assert m["precision"] == 0.0 and m["f1"] == 0.0
    assert m["accuracy"] == approx(2 / 3) and m["mcc"] == 0.0
    quiet = M.binary_metrics([False, False], [False, False])
    assert quiet["precision"] is None and quiet["f1"] is None and quiet["accuracy"] == 1.0


def test_binary_everything_flagged():
    m = M.binary_metrics([1, 0, 1, 0], [1, 1, 1, 1])
    assert m["precision"] == 0.5 and m["recall"] == 1.0 and m["f1"] == approx(2 / 3)
    assert m["accuracy"] == 0.5 and m["mcc"] == 0.0  # no negative verdicts: no correlation measurable


def test_binary_perfect_and_inverted():
    assert M.binary_metrics([1, 0, 1], [1, 0, 1])["mcc"] == approx(1.0)
    assert M.binary_metrics([1, 0, 1], [0, 1, 0])["mcc"] == approx(-1.0)
    with pytest.raises(ValueError):
        M.binary_metrics([1, 0], [1])


def test_ranking_with_tied_scores():
    all_tied = M.ranking_metrics([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5])
    assert all_tied["roc_auc"] == approx(0.5) and all_tied["pr_auc"] == approx(0.5)
    # positives {0.9, 0.8} vs negatives {0.9, 0.1}: (0.5 + 1 + 0 + 1) / 4
    m = M.ranking_metrics([1, 0, 1, 0], [0.9, 0.9, 0.8, 0.1])
    assert m["roc_auc"] == approx(0.625)
    # thresholds 0.9: P=1/2 at R=1/2; 0.8: P=2/3 at R=1 -> AP = 0.5*0.5 + 0.5*(2/3)
    assert m["pr_auc"] == approx(0.25 + 1 / 3)


def test_ranking_undefined_with_one_class():
    assert M.ranking_metrics([0, 0], [0.1, 0.9]) == {"roc_auc": None, "pr_auc": None}
    assert M.ranking_metrics([1, 1], [0.1, 0.9]) == {"roc_auc": None, "pr_auc": None}
    assert M.ranking_metrics([], []) == {"roc_auc": None, "pr_auc": None}


def test_calibration_ece():
    c = M.calibration([1, 0, 1, 1], [0.95, 0.05, 0.85, 0.15])
    # bins 9, 0, 8, 1 each hold one record: |1-.95| + |0-.05| + |1-.85| + |1-.15|, over 4
    assert c["ece"] == approx((0.05 + 0.05 + 0.15 + 0.85) / 4)
    assert [b["count"] for b in c["bins"]] == [1, 1, 0, 0, 0, 0, 0, 0, 1, 1]
    perfect = M.calibration([1, 0], [1.0, 0.0])  # 1.0 falls in the last bin
    assert perfect["ece"] == 0.0 and perfect["bins"][9]["count"] == 1
    # everything scored 0.5, half vulnerable: calibrated
    assert M.calibration([1, 0, 1, 0], [0.5] * 4)["ece"] == approx(0.0)
    assert M.calibration([], [])["ece"] is None


def test_typed_metrics_use_families():
    y = [True, True, True, False, True]
    cwes = [["CWE-89"], ["CWE-22"], [], [], ["CWE-78"]]
    flag = [True, True, True, True, False]
    pred = ["CWE-564", "CWE-79", "CWE-89", "CWE-89", None]
    m = M.typed_metrics(y, cwes, flag, pred)
    # hit: 564 is in 89's family. Judged flags: 0, 1, 3 (2 is vulnerable without a label).
    assert (m["hits"], m["judged_flags"], m["labelled_vulnerable"]) == (1, 3, 3)
    assert m["precision"] == approx(1 / 3) and m["recall"] == approx(1 / 3) and m["f1"] == approx(1 / 3)
    # labels that are not CWE ids only match themselves
    assert M.typed_metrics([True], [["Other"]], [True], ["CWE-89"])["hits"] == 0


def test_per_cwe_and_confusion():
    y = [True, True, True, False]
    cwes = [["CWE-89"], ["CWE-564"], ["CWE-78"], []]
    flag = [True, False, True, True]
    pred = ["CWE-89", None, "CWE-89", "CWE-77"]
    per = M.per_cwe(y, cwes, flag, pred)
    assert set(per) == {"CWE-89", "CWE-78"}
    # CWE-89 family: 2 labelled, 1 flagged at all, predicted twice, 1 hit
    assert per["CWE-89"]["n"] == 2 and per["CWE-89"]["detected"] == 0.5
    assert per["CWE-89"]["precision"] == 0.5 and per["CWE-89"]["recall"] == 0.5 and per["CWE-89"]["f1"] == 0.5
    # CWE-78 (77 is its family): 1 labelled, flagged as 89 (miss), predicted once (the safe record)
    assert per["CWE-78"]["detected"] == 1.0 and per["CWE-78"]["predicted"] == 1
    assert per["CWE-78"]["precision"] == 0.0 and per["CWE-78"]["recall"] == 0.0 and per["CWE-78"]["f1"] == 0.0
    conf = M.family_confusion(y, cwes, flag, pred)
    assert conf == {
        "CWE-89": {"CWE-89": 1, "(not flagged)": 1},
        "CWE-78": {"CWE-89": 1},
        "(safe)": {"CWE-78": 1},
    }


def test_localisation_within_two_lines():
    m = M.localisation([True, True, True, False], [True, True, False, True], [[10], [5], [3], [1]], [[12], [8], [3], [1]])
    # record 0: |10-12| = 2 hit; record 1: 3 lines off; record 2 not flagged; record 3 safe
    assert (m["n"], m["hits"], m["share"]) == (2, 1, 0.5)
    assert M.localisation([True], [True], [[]], [[1]])["share"] is None  # no labelled lines


def test_pairwise_ties_count_half():
    pairs = [(0, 1), (2, 3), (4, 5)]
    scores = [0.9, 0.2, 0.5, 0.5, 0.1, 0.3]
    flag = [True, False, True, True, False, False]
    m = M.pairwise(pairs, scores, flag)
    assert m["vuln_scores_higher"] == approx((1 + 0.5 + 0) / 3) and m["ties"] == 1
    assert m["both_right"] == approx(1 / 3)
    assert M.pairwise([], [], [])["vuln_scores_higher"] is None


def test_breakdown():
    b = M.breakdown(["a", "b", "a"], [1, 0, 1], [1, 1, 0])
    assert b["a"]["recall"] == 0.5 and b["b"]["precision"] == 0.0 and b["b"]["recall"] is None
