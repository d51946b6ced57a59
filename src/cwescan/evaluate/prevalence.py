"""Model decisions judged at realistic prevalence: thresholds, calibration and the realistic view.

The labelled parts are ~60 % vulnerable; real code reviewed by the model is not. A *mix* pairs
the vulnerable records of a labelled part (positives) with the units of the negatives corpus of
the same part (``cwescan data negatives``: real package code triage sends to the model, presumed
safe). Precision at prevalence pi follows from the two rates, whatever the mix's raw counts:

    precision(t) = pi TPR(t) / (pi TPR(t) + (1 - pi) FPR(t))

where TPR is measured on the positives and FPR on the corpus units. Calibration (isotonic,
pool-adjacent-violators) is fitted on the validation mix with the same weights, so a calibrated
probability means "this share of units scored like this is vulnerable when pi of the reviewed
units are". Everything here works from score files (``cwescan eval-mix``), so the
numbers can be recomputed on any machine from the file.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from cwescan.core.policy import Isotonic

DEFAULT_PREVALENCE = 0.01
MODEL_ONLY_PRECISION = 0.5  # a model-only finding is shown when at least half of such findings are real
SAFE_RECALL_LOSS = 0.05  # a confident "safe" may hide at most 5 % of vulnerable units
VULNERABLE_FPR = 0.01  # a confident "vulnerable" is a score only 1 % of realistic safe units reach
CWE_PRECISION = 0.5  # the model's CWE is shown when at least half of such CWEs are right
LINE_PRECISION = 0.5  # the model's line is pointed at when at least half of such lines are right
LINE_TOLERANCE = 2  # a line is right within this many lines of a labelled one (`lines ±2`)
MIN_SUPPORT = 10  # rates estimated from fewer positives than this are not trusted


def _rates(pos: Sequence[float], neg: Sequence[float], t: float) -> tuple[float, float]:
    tpr = sum(s >= t for s in pos) / len(pos) if pos else 0.0
    fpr = sum(s >= t for s in neg) / len(neg) if neg else 0.0
    return tpr, fpr


def precision_at(tpr: float, fpr: float, prevalence: float) -> float:
    den = prevalence * tpr + (1 - prevalence) * fpr
    return prevalence * tpr / den if den > 0 else 1.0


def pr_curve(pos: Sequence[float], neg: Sequence[float], prevalence: float, points: int = 0) -> list[dict]:
    """Precision (at ``prevalence``), recall and false-positive rate at every distinct score used
    as a threshold (flag when score >= t), highest threshold first; ``points`` > 0 thins the
    curve to about that many rows."""
    pos_s, neg_s = sorted(pos), sorted(neg)
    out = []
    for t in sorted(set(pos) | set(neg), reverse=True):
        tpr = (len(pos_s) - bisect.bisect_left(pos_s, t)) / len(pos_s) if pos_s else 0.0
        fpr = (len(neg_s) - bisect.bisect_left(neg_s, t)) / len(neg_s) if neg_s else 0.0
        out.append({"threshold": t, "recall": tpr, "fpr": fpr, "precision": precision_at(tpr, fpr, prevalence)})
    if points and len(out) > points:
        step = len(out) / points
        out = [out[int(i * step)] for i in range(points)] + [out[-1]]
    return out


def threshold_for_precision(pos: Sequence[float], neg: Sequence[float], prevalence: float, target: float,
                            min_support: int = MIN_SUPPORT) -> float | None:
    """The lowest threshold whose precision at ``prevalence`` reaches ``target`` with at least
    ``min_support`` positives flagged (fewer is noise); None when no threshold does."""
    best = None
    for row in pr_curve(pos, neg, prevalence):  # highest threshold first
        if row["recall"] * len(pos) >= min_support and row["precision"] >= target:
            best = row["threshold"]
    return best


def threshold_for_recall_loss(pos: Sequence[float], max_loss: float) -> float:
    """The highest threshold below which at most ``max_loss`` of the positives score."""
    s = sorted(pos)
    k = math.floor(max_loss * len(s))  # this many positives may fall below
    return s[k] if k < len(s) else s[-1]


def threshold_for_fpr(neg: Sequence[float], fpr: float) -> float:
    """The lowest threshold that at most ``fpr`` of the negatives reach (flag when >=)."""
    s = sorted(neg, reverse=True)
    k = math.floor(fpr * len(s))  # this many may reach it
    return math.nextafter(s[k], math.inf) if k < len(s) else 0.0


# ---------------------------------------------------------------- calibration


def fit_isotonic(scores: Sequence[float], labels: Sequence[bool], weights: Sequence[float]) -> Isotonic:
    """Weighted pool-adjacent-violators: the non-decreasing fit of the labels on the scores
    that minimises the weighted squared error."""
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    blocks: list[list[float]] = []  # [weighted label sum, weight, first score]
    for i in order:
        blocks.append([weights[i] * float(labels[i]), weights[i], scores[i]])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            s, w, _ = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += w
    return Isotonic([b[2] for b in blocks], [b[0] / b[1] for b in blocks])


def mix_weights(n_pos: int, n_neg: int, prevalence: float) -> tuple[float, float]:
    """Per-example weights that make positives ``prevalence`` of the total weight."""
    return prevalence / n_pos, (1 - prevalence) / n_neg


def ece(probs: Sequence[float], labels: Sequence[bool], weights: Sequence[float], bins: int = 10) -> float:
    """Weighted expected calibration error over equal-width probability bins."""
    total = sum(weights)
    err = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, p in enumerate(probs) if lo <= p < hi or (b == bins - 1 and p == 1.0)]
        w = sum(weights[i] for i in idx)
        if w == 0:
            continue
        conf = sum(weights[i] * probs[i] for i in idx) / w
        acc = sum(weights[i] * labels[i] for i in idx) / w
        err += w / total * abs(conf - acc)
    return err


# ---------------------------------------------------------------- the decision thresholds


@dataclass
class Thresholds:
    """Raw-score thresholds of the scan-time decisions (P(vulnerable) of a unit's most
    suspicious window, as the detector scores it). ``model_only`` is None when no threshold
    reaches the precision target: model-only findings are then not shown by default."""

    model_only: float | None
    second_opinion_safe: float
    second_opinion_vulnerable: float
    cwe_head: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def choose_thresholds(val_pos: Sequence[float], val_neg: Sequence[float], val_cwe: Sequence[tuple[float, bool]],
                      prevalence: float = DEFAULT_PREVALENCE, safe_loss: float = SAFE_RECALL_LOSS) -> tuple[Thresholds, dict]:
    """The thresholds and how each was chosen (``val_cwe``: (CWE confidence, CWE right) for the
    vulnerable validation records the model flags confidently)."""
    model_only = threshold_for_precision(val_pos, val_neg, prevalence, MODEL_ONLY_PRECISION)
    safe = threshold_for_recall_loss(val_pos, safe_loss)
    vulnerable = threshold_for_fpr(val_neg, VULNERABLE_FPR)
    cwe = _cwe_threshold(val_cwe)
    how = {
        "model_only": f"lowest raw score whose precision at {prevalence:.0%} prevalence on the validation mix "
                      f"(vulnerable validation records vs realistic validation negatives) is >= {MODEL_ONLY_PRECISION}, "
                      f"with >= {MIN_SUPPORT} vulnerable records flagged; null: none reaches it",
        "second_opinion_safe": f"a score below it is a confident 'safe': at most {safe_loss:.0%} of the vulnerable "
                               "validation records score below it",
        "second_opinion_vulnerable": f"a score at or above it is a confident 'vulnerable': at most {VULNERABLE_FPR:.0%} "
                                     "of the realistic validation negatives reach it",
        "cwe_head": f"lowest CWE-path probability at which >= {CWE_PRECISION:.0%} of the CWEs the model names are "
                    "right (record CWE labels), over the vulnerable validation records scoring at or above "
                    "second_opinion_vulnerable; null: none reaches it (show a generic weakness instead)",
    }
    return Thresholds(model_only, safe, vulnerable, cwe), how


def _cwe_threshold(val_cwe: Sequence[tuple[float, bool]]) -> float | None:
    return confidence_threshold(val_cwe, CWE_PRECISION)


def line_right(line: int | None, labelled: Sequence[int]) -> bool:
    """Whether the model's line is within ``LINE_TOLERANCE`` of a labelled line."""
    return line is not None and any(abs(line - x) <= LINE_TOLERANCE for x in labelled)


def confidence_threshold(answers: Sequence[tuple[float, bool]], target: float) -> float | None:
    """The lowest confidence at which the share of right answers among those at or above it
    reaches ``target`` with at least ``MIN_SUPPORT`` right ones, or None (plain counts: a CWE or
    a line is judged on flagged vulnerable records only, no prevalence enters)."""
    best = None
    rows = sorted(answers, reverse=True)
    right = 0
    for k, (c, ok) in enumerate(rows, 1):
        right += ok
        if k < len(rows) and rows[k][0] == c:
            continue  # ties: decide once the whole group is counted
        if right >= MIN_SUPPORT and right / k >= target:
            best = c
    return best


# ---------------------------------------------------------------- the realistic view


def realistic_view(pos: Sequence[float], neg: Sequence[float], threshold: float | None, source_lines: int,
                   prevalence: float = DEFAULT_PREVALENCE) -> dict:
    """What a user sees at ``threshold`` (None: nothing is flagged): recall on the vulnerable
    records, precision at ``prevalence``, and false alarms on the held-out packages per 1,000
    source lines and per 1,000 reviewed units."""
    if threshold is None:
        tpr = fpr = 0.0
        flagged = 0
    else:
        tpr, fpr = _rates(pos, neg, threshold)
        flagged = sum(s >= threshold for s in neg)
    return {
        "threshold": threshold,
        "recall": tpr,
        "precision_at_prevalence": precision_at(tpr, fpr, prevalence) if flagged or tpr else None,
        "prevalence": prevalence,
        "false_alarms": flagged,
        "reviewed_units": len(neg),
        "source_lines": source_lines,
        "false_alarms_per_1k_lines": 1000 * flagged / source_lines if source_lines else None,
        "false_alarms_per_1k_units": 1000 * flagged / len(neg) if neg else None,
    }


def fpr_at_recall(pos: Sequence[float], neg: Sequence[float], recall: float) -> dict:
    """The highest threshold reaching ``recall`` on the positives and the negatives' false-alarm
    rate there: the comparison of two models at equal recall."""
    s = sorted(pos, reverse=True)
    k = max(1, math.ceil(recall * len(s)))
    t = s[k - 1]
    tpr, fpr = _rates(pos, neg, t)
    return {"recall": tpr, "threshold": t, "fpr": fpr, "false_alarms_per_1k_units": 1000 * fpr}


# ---------------------------------------------------------------- `cwescan eval --negatives`


def negatives_view(runs: dict, records: Sequence, negatives_dir, limit: int = 0, batch_size: int = 64,
                   detectors: dict | None = None, prevalence: float = DEFAULT_PREVALENCE) -> dict:
    """Run each detector of ``detectors`` (label -> detector, as in ``runs``) over the test part
    of a negatives corpus and put what it flags next to its recall on the vulnerable labelled
    records of ``runs``: precision at ``prevalence``, false alarms per 1,000 source lines of the
    held-out packages and per 1,000 reviewed units, and the PR curve of its scores over the mix.
    ``limit`` > 0 scores a deterministic sample of the corpus units; the per-line rate is then
    scaled by the share sampled."""
    from pathlib import Path

    from cwescan.data.negatives import part_packages, read_manifest
    from cwescan.data.records import load_records
    from cwescan.evaluate.runner import predict, sample

    negatives_dir = Path(negatives_dir)
    manifest = read_manifest(negatives_dir)
    units = load_records(negatives_dir / "test.jsonl")
    sampled = sample(units, limit or None)
    share = len(sampled) / len(units) if units else 0.0
    lines = sum(p["source_lines"] for p in part_packages(manifest, "test"))
    out = {"negatives": str(negatives_dir), "packages": [f"{p['name']}=={p['version']}" for p in
                                                          part_packages(manifest, "test")],
           "source_lines": lines, "corpus_units": len(units), "scored_units": len(sampled),
           "prevalence": prevalence, "detectors": {}}
    for label, det in (detectors or {}).items():
        run = runs[label]
        preds = predict(det, sampled, batch_size)
        pos = [p.score for p, r in zip(run.predictions, records, strict=True) if r.vulnerable]
        pos_flag = [p.flagged for p, r in zip(run.predictions, records, strict=True) if r.vulnerable]
        neg = [p.score for p in preds]
        flagged = sum(p.flagged for p in preds)
        tpr = sum(pos_flag) / len(pos_flag) if pos_flag else 0.0
        fpr = flagged / len(preds) if preds else 0.0
        out["detectors"][label] = {
            "recall": tpr,
            "precision_at_prevalence": precision_at(tpr, fpr, prevalence) if tpr or fpr else None,
            "false_alarms": flagged,
            "false_alarms_per_1k_units": 1000 * fpr,
            "false_alarms_per_1k_lines": 1000 * flagged / (share * lines) if lines and share else None,
            "errors": sum(p.error is not None for p in preds),
            "pr_curve": [{k: round(v, 5) for k, v in row.items()} for row in pr_curve(pos, neg, prevalence, points=40)],
        }
    return out


def negatives_table(view: dict) -> str:
    rows = [(f"realistic mix: {view['scored_units']} of {view['corpus_units']} units of {len(view['packages'])} "
             f"held-out packages ({view['source_lines']} lines), precision at {view['prevalence']:.0%} prevalence"),
            f"{'detector':16}{'recall':>8}{'P@prev':>8}{'alarms':>8}{'/1k lines':>11}{'/1k units':>11}"]
    for label, d in view["detectors"].items():
        p = "-" if d["precision_at_prevalence"] is None else f"{d['precision_at_prevalence']:.3f}"
        per_line = "-" if d["false_alarms_per_1k_lines"] is None else f"{d['false_alarms_per_1k_lines']:.4f}"
        rows.append(f"{label:16}{d['recall']:>8.3f}{p:>8}{d['false_alarms']:>8}{per_line:>11}"
                    f"{d['false_alarms_per_1k_units']:>11.1f}")
    return "\n".join(rows)


def write_pr_plot(view: dict, path) -> None:
    """The PR curve of each detector over the realistic mix (precision at the view's prevalence)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, d in view["detectors"].items():
        curve = d["pr_curve"]
        if len(curve) > 2:
            ax.plot([r["recall"] for r in curve], [r["precision"] for r in curve], label=label)
        ax.scatter([d["recall"]], [d["precision_at_prevalence"] or 0.0], marker="o", s=18)
    ax.set_xlabel("recall (vulnerable test records)")
    ax.set_ylabel(f"precision at {view['prevalence']:.0%} prevalence")
    ax.set_title(f"{len(view['packages'])} held-out packages, {view['scored_units']} reviewed units", fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
