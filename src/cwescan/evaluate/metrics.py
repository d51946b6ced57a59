"""Metric functions: pure, on plain lists/arrays, no detector or I/O inside.

Conventions (documented in docs/EVALUATION.md):
- A ratio whose denominator is zero is ``None`` ("n/a"), never a silent 0 or 1; MCC is 0 when
  any marginal is empty (the usual convention: no correlation measurable).
- CWE-typed hits: the predicted CWE is in the same family (``cwescan.core.cwe.same_family``) as one of
  the record's labelled CWEs. Labels that are not CWE ids only match themselves.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from cwescan.core import cwe as cwe_catalog


def ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall and F1 from counts (0 where undefined)."""
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def roc_auc(y_true: Sequence[bool], scores: Sequence[float]) -> float:
    """ROC-AUC as the probability that a positive outscores a negative (ties: half credit);
    NaN when only one class is present. Pure Python: training uses it without scikit-learn."""
    pos = sorted(s for s, y in zip(scores, y_true, strict=True) if y)
    neg = sorted(s for s, y in zip(scores, y_true, strict=True) if not y)
    if not pos or not neg:
        return float("nan")
    import bisect

    wins = sum(bisect.bisect_left(neg, p) + 0.5 * (bisect.bisect_right(neg, p) - bisect.bisect_left(neg, p))
               for p in pos)
    return wins / (len(pos) * len(neg))


def best_f1_threshold(y_true: Sequence[bool], scores: Sequence[float]) -> dict:
    """The decision threshold both shipped models are tuned with: the observed score (rounded to
    4 places) at which flagging ``score >= threshold`` has the best F1 on validation; ties go to
    the higher threshold (fewer false alarms). Returns threshold, f1, precision and recall."""
    pairs = list(zip(scores, y_true, strict=True))
    best = {"f1": -1.0, "threshold": 0.5, "precision": 0.0, "recall": 0.0}
    for t in sorted({round(s, 4) for s in scores}):
        tp = sum(1 for s, y in pairs if y and s >= t)
        fp = sum(1 for s, y in pairs if not y and s >= t)
        fn = sum(1 for s, y in pairs if y and s < t)
        p, r, f1 = prf(tp, fp, fn)
        if f1 >= best["f1"]:
            best = {"f1": f1, "threshold": t, "precision": p, "recall": r}
    if best["f1"] < 0:
        best["f1"] = 0.0
    return best


def family(label: str) -> str:
    """CWE family of a label; labels that are not CWE ids stand for themselves."""
    try:
        return cwe_catalog.family(label)
    except ValueError:
        return label


# ---------------------------------------------------------------- binary verdicts


def binary_metrics(y_true: Sequence[bool], y_pred: Sequence[bool]) -> dict:
    """Confusion counts, precision, recall, F1, accuracy and MCC of binary verdicts."""
    t = np.asarray(y_true, dtype=bool)
    p = np.asarray(y_pred, dtype=bool)
    if t.shape != p.shape:
        raise ValueError("y_true and y_pred differ in length")
    tp = int(np.sum(t & p))
    fp = int(np.sum(~t & p))
    fn = int(np.sum(t & ~p))
    tn = int(np.sum(~t & ~p))
    den = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return {
        "n": int(t.size),
        "positives": tp + fn,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": ratio(tp + tn, t.size),
        "mcc": (tp * tn - fp * fn) / den if den else 0.0,
    }


# ---------------------------------------------------------------- scores


def ranking_metrics(y_true: Sequence[bool], scores: Sequence[float]) -> dict:
    """ROC-AUC and PR-AUC (average precision) of P(vulnerable) scores; None when only one class
    is present. Tied scores are handled as sklearn does (ROC: half credit; AP: one threshold)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    t = np.asarray(y_true, dtype=bool)
    s = np.asarray(scores, dtype=float)
    if t.size == 0 or t.all() or not t.any():
        return {"roc_auc": None, "pr_auc": None}
    return {"roc_auc": float(roc_auc_score(t, s)), "pr_auc": float(average_precision_score(t, s))}


def calibration(y_true: Sequence[bool], scores: Sequence[float], bins: int = 10) -> dict:
    """Expected calibration error over equal-width score bins: sum over bins of
    (bin size / n) * |share vulnerable in bin - mean score in bin|; plus the per-bin data of
    the reliability diagram."""
    t = np.asarray(y_true, dtype=float)
    s = np.clip(np.asarray(scores, dtype=float), 0.0, 1.0)
    if t.size == 0:
        return {"ece": None, "bins": []}
    idx = np.minimum((s * bins).astype(int), bins - 1)  # a score of 1.0 falls in the last bin
    ece = 0.0
    table = []
    for b in range(bins):
        m = idx == b
        count = int(m.sum())
        if count:
            conf, acc = float(s[m].mean()), float(t[m].mean())
            ece += count / t.size * abs(acc - conf)
        else:
            conf = acc = None
        table.append({"lo": b / bins, "hi": (b + 1) / bins, "count": count, "mean_score": conf, "share_vulnerable": acc})
    return {"ece": float(ece), "bins": table}


# ---------------------------------------------------------------- CWE types


def typed_metrics(
    y_true: Sequence[bool],
    true_cwes: Sequence[Sequence[str]],
    y_pred: Sequence[bool],
    pred_cwe: Sequence[str | None],
) -> dict:
    """CWE-typed precision and recall. A hit: the record is vulnerable, flagged, and its
    predicted CWE is in the family of one of its labelled CWEs.
    precision = hits / flagged records that can be judged (vulnerable records without any CWE
    label are left out: their type is unknown); recall = hits / vulnerable records with a label."""
    hits = judged_flags = labelled = 0
    for t, cwes, p, c in zip(y_true, true_cwes, y_pred, pred_cwe, strict=True):
        if t and cwes:
            labelled += 1
        if not p:
            continue
        if t and not cwes:
            continue
        judged_flags += 1
        if t and c is not None and family(c) in {family(x) for x in cwes}:
            hits += 1
    precision = ratio(hits, judged_flags)
    recall = ratio(hits, labelled)
    return {
        "hits": hits,
        "judged_flags": judged_flags,
        "labelled_vulnerable": labelled,
        "precision": precision,
        "recall": recall,
        "f1": ratio(2 * hits, judged_flags + labelled),
    }


def per_cwe(
    y_true: Sequence[bool],
    true_cwes: Sequence[Sequence[str]],
    y_pred: Sequence[bool],
    pred_cwe: Sequence[str | None],
) -> dict[str, dict]:
    """One-vs-rest per labelled CWE family: ``n`` vulnerable records labelled with the family,
    ``detected`` the share of them flagged at all (binary recall), and typed precision / recall /
    F1 where a prediction of family F counts for F."""
    true_fams = [{family(c) for c in cwes} if t else set() for t, cwes in zip(y_true, true_cwes, strict=True)]
    pred_fams = [family(c) if p and c else None for p, c in zip(y_pred, pred_cwe, strict=True)]
    out = {}
    for fam in sorted(set().union(*true_fams) if true_fams else set()):
        n = sum(fam in tf for tf in true_fams)
        detected = sum(fam in tf and p for tf, p in zip(true_fams, y_pred, strict=True))
        predicted = sum(pf == fam for pf in pred_fams)
        hits = sum(pf == fam and fam in tf for tf, pf in zip(true_fams, pred_fams, strict=True))
        out[fam] = {
            "n": n,
            "detected": ratio(detected, n),
            "predicted": predicted,
            "precision": ratio(hits, predicted),
            "recall": ratio(hits, n),
            "f1": ratio(2 * hits, predicted + n),
        }
    return out


def family_confusion(
    y_true: Sequence[bool],
    true_cwes: Sequence[Sequence[str]],
    y_pred: Sequence[bool],
    pred_cwe: Sequence[str | None],
) -> dict[str, dict[str, int]]:
    """Rows: labelled family (first label's family; "(safe)" for safe records, "(no label)" for
    vulnerable ones without CWE); columns: predicted family, "(not flagged)" when no finding."""
    table: dict[str, Counter] = defaultdict(Counter)
    for t, cwes, p, c in zip(y_true, true_cwes, y_pred, pred_cwe, strict=True):
        row = (family(cwes[0]) if cwes else "(no label)") if t else "(safe)"
        col = (family(c) if c else "(no CWE)") if p else "(not flagged)"
        table[row][col] += 1
    return {r: dict(sorted(cols.items())) for r, cols in sorted(table.items())}


# ---------------------------------------------------------------- lines and pairs


def localisation(
    y_true: Sequence[bool],
    y_pred: Sequence[bool],
    true_lines: Sequence[Sequence[int]],
    pred_lines: Sequence[Sequence[int]],
    tolerance: int = 2,
) -> dict:
    """Among true-positive records that have labelled lines: the share with a finding line
    within +-tolerance of a labelled line."""
    n = hit = 0
    for t, p, tl, pl in zip(y_true, y_pred, true_lines, pred_lines, strict=True):
        if not (t and p and tl):
            continue
        n += 1
        if any(abs(a - b) <= tolerance for a in tl for b in pl):
            hit += 1
    return {"n": n, "hits": hit, "share": ratio(hit, n), "tolerance": tolerance}


def pairwise(pairs: Sequence[tuple[int, int]], scores: Sequence[float], y_pred: Sequence[bool]) -> dict:
    """On vulnerable/fixed twins (index of vulnerable, index of fixed): ``vuln_scores_higher`` is
    the share of pairs where the vulnerable version scores higher, a tie counting one half (as in
    ROC-AUC, so a detector that scores both the same gets 0.5, chance); ``ties`` counts them;
    ``both_right`` the share where the vulnerable version is flagged and the fixed one is not."""
    n = len(pairs)
    higher = sum(1.0 if scores[v] > scores[f] else 0.5 if scores[v] == scores[f] else 0.0 for v, f in pairs)
    ties = sum(scores[v] == scores[f] for v, f in pairs)
    both = sum(bool(y_pred[v]) and not y_pred[f] for v, f in pairs)
    return {"pairs": n, "vuln_scores_higher": ratio(higher, n), "ties": ties, "both_right": ratio(both, n)}


def breakdown(keys: Sequence[str], y_true: Sequence[bool], y_pred: Sequence[bool]) -> dict[str, dict]:
    """binary_metrics per key (e.g. per source)."""
    idx: dict[str, list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        idx[k].append(i)
    t, p = list(y_true), list(y_pred)
    return {k: binary_metrics([t[i] for i in ix], [p[i] for i in ix]) for k, ix in sorted(idx.items())}
