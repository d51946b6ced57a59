"""Choose an SLM adapter's decision thresholds and calibration at realistic prevalence, from the
score file of ``cwescan eval-mix``, and measure it on the test mix.

    cwescan train calibrate --scores runs/neg100-a/scores.json --negatives-manifest \\
        data/negatives/MANIFEST.json --card src/cwescan/models/slm --repeat-scores runs/neg100-b/scores.json \\
        --baseline-scores runs/shipped/scores.json --write

Validation decides (thresholds, isotonic calibration); test only measures. With ``--write`` the
card gets ``thresholds``, ``thresholds_how``, ``calibration``, ``prevalence`` and
``evaluation_realistic`` (and ``threshold`` becomes the model-only threshold, or 1.0 when there
is none, so the detector's own flags follow the realistic decision).
"""

from __future__ import annotations

import json
from pathlib import Path

from cwescan.evaluate import prevalence as PV

EQUAL_RECALLS = (0.2, 0.4, 0.6)
NEVER = 1.01  # a policy threshold no probability reaches: the decision is never taken


def _family_right(row: dict) -> bool:
    from cwescan.evaluate.metrics import family

    return row["cwe"] is not None and family(row["cwe"]) in {family(c) for c in row["cwes"]}


def _labelled_metrics(part: str, rows: list[dict], threshold: float) -> dict:
    """F1/MCC and the rest of ``cwescan eval``'s record metrics at ``threshold`` on a labelled
    part, from the scores (records re-read from the split for ids and twins)."""
    from cwescan.data.split import load_part
    from cwescan.evaluate.runner import Prediction, compute_metrics

    recs = load_part(part)
    by_id = {r["id"]: r for r in rows}
    preds = []
    for r in recs:
        row = by_id[r.id]
        flagged = row["score"] >= threshold
        preds.append(Prediction(r.id, flagged, row["score"], row["cwe"] if flagged else None,
                                [row["line"]] if flagged and row["line"] else [], int(flagged)))
    m = compute_metrics(recs, preds)
    return {"threshold": threshold, "binary": m["binary"], "ranking": m["ranking"], "pairwise": m["pairwise"],
            "typed": m["typed"]}


def read_scores(path: Path) -> dict:
    """A score file of ``mix_scores``, plain or gzipped (``.gz``)."""
    import gzip

    path = Path(path)
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return json.loads(raw)


def split_scores(scores: dict, part: str) -> tuple[list[float], list[float]]:
    pos = [r["score"] for r in scores["labelled"][part] if r["vulnerable"]]
    neg = [r["score"] for r in scores["negatives"][part]]
    return pos, neg


def analyse(scores: dict, manifest: dict, prevalence: float = PV.DEFAULT_PREVALENCE,
            skewed_threshold: float | None = None, safe_loss: float = PV.SAFE_RECALL_LOSS) -> dict:
    """Thresholds, calibration and every realistic-prevalence number of one score file."""
    from cwescan.data.negatives import part_packages

    val_pos, val_neg = split_scores(scores, "validation")
    test_pos, test_neg = split_scores(scores, "test")
    flagged_val = [r for r in scores["labelled"]["validation"] if r["vulnerable"] and r["cwe_confidence"] is not None]
    th, how = PV.choose_thresholds(val_pos, val_neg, [], prevalence, safe_loss)
    val_cwe = [(r["cwe_confidence"], _family_right(r)) for r in flagged_val if r["score"] >= th.second_opinion_vulnerable]
    th, how = PV.choose_thresholds(val_pos, val_neg, val_cwe, prevalence, safe_loss)
    w_pos, w_neg = PV.mix_weights(len(val_pos), len(val_neg), prevalence)
    iso = PV.fit_isotonic(val_pos + val_neg, [True] * len(val_pos) + [False] * len(val_neg),
                          [w_pos] * len(val_pos) + [w_neg] * len(val_neg))
    t_pos, t_neg = PV.mix_weights(len(test_pos), len(test_neg), prevalence)
    test_labels = [True] * len(test_pos) + [False] * len(test_neg)
    test_w = [t_pos] * len(test_pos) + [t_neg] * len(test_neg)
    raw = test_pos + test_neg
    test_lines = sum(p["source_lines"] for p in part_packages(manifest, "test"))
    model_only = th.model_only
    out = {
        "prevalence": prevalence,
        "thresholds": th.to_dict(),
        "thresholds_how": how,
        "calibration": {**iso.to_dict(), "fitted_on": f"validation mix at {prevalence:.0%} prevalence "
                        f"({len(val_pos)} vulnerable records, {len(val_neg)} realistic negatives, weighted)",
                        "ece_test_mix": PV.ece([iso(s) for s in raw], test_labels, test_w),
                        "ece_test_mix_raw_scores": PV.ece(raw, test_labels, test_w),
                        "ece_validation_mix": PV.ece([iso(s) for s in val_pos + val_neg],
                                                     [True] * len(val_pos) + [False] * len(val_neg),
                                                     [w_pos] * len(val_pos) + [w_neg] * len(val_neg))},
        "validation_mix": {"vulnerable_records": len(val_pos), "negative_units": len(val_neg),
                           "auc": auc(val_pos, val_neg)},
        "test_mix": {"vulnerable_records": len(test_pos), "negative_units": len(test_neg),
                     "held_out_packages": [f"{p['name']}=={p['version']}" for p in part_packages(manifest, "test")],
                     "auc": auc(test_pos, test_neg)},
        "held_out_model_only": PV.realistic_view(test_pos, test_neg, model_only, test_lines, prevalence),
        # what a scan shows by default: the model-only threshold and a calibrated probability at
        # or above the display confidence
        "held_out_model_only_shown": PV.realistic_view(test_pos, test_neg, _shown_from(iso, model_only),
                                                       test_lines, prevalence),
        "held_out_confident_vulnerable": PV.realistic_view(test_pos, test_neg, th.second_opinion_vulnerable,
                                                           test_lines, prevalence),
        "second_opinion_safe_effect": {
            "test_negatives_below": sum(s < th.second_opinion_safe for s in test_neg) / len(test_neg),
            "test_vulnerable_below": sum(s < th.second_opinion_safe for s in test_pos) / len(test_pos),
        },
        "equal_recall": [PV.fpr_at_recall(test_pos, test_neg, r) for r in EQUAL_RECALLS],
        "pr_curve_test_mix": [{k: round(v, 5) for k, v in row.items()}
                              for row in PV.pr_curve(test_pos, test_neg, prevalence, points=40)],
        "test_part_at_model_only": _labelled_metrics("test", scores["labelled"]["test"],
                                                     model_only if model_only is not None else 1.01),
    }
    if skewed_threshold is not None:
        out["test_part_at_best_f1_validation_threshold"] = _labelled_metrics("test", scores["labelled"]["test"],
                                                                             skewed_threshold)
    return out


def policy_section(main: dict, prevalence: float, safe_loss: float = PV.SAFE_RECALL_LOSS) -> dict:
    """The card's ``policy`` (what ``DecisionPolicy.from_card`` reads) from an :func:`analyse`."""
    th = main["thresholds"]
    return {
        "model_only": th["model_only"] if th["model_only"] is not None else NEVER,
        "safe": th["second_opinion_safe"],
        "vulnerable": th["second_opinion_vulnerable"],
        "cwe_head": th["cwe_head"] if th["cwe_head"] is not None else NEVER,
        "chosen": f"cwescan train calibrate on the validation mix at {prevalence:.0%} prevalence: "
                  f"model_only = precision >= 0.5, safe = <= {safe_loss:.0%} of vulnerable records below, vulnerable = "
                  "<= 1 % of realistic negatives at or above, cwe_head = >= 50 % of named CWEs right "
                  "(see thresholds_how); line keeps the policy default (no line confidence was scored)",
        "prevalence": prevalence,
        "metrics": {"held_out_model_only": main["held_out_model_only"],
                    "ece_test_mix": main["calibration"]["ece_test_mix"]},
    }


def _shown_from(iso, model_only: float | None) -> float | None:
    """The lowest raw score a scan shows as a model-only finding by default
    (``DecisionPolicy.shown_from`` at the default display confidence); None: none is shown."""
    import math

    from cwescan.core.config import DEFAULT_MIN_CONFIDENCE
    from cwescan.core.policy import DecisionPolicy

    if model_only is None:
        return None
    shown = DecisionPolicy(model_only=model_only, calibration=iso).shown_from(DEFAULT_MIN_CONFIDENCE)
    return None if math.isinf(shown) else shown


def auc(pos, neg) -> float:
    from cwescan.evaluate.metrics import roc_auc

    return roc_auc([True] * len(pos) + [False] * len(neg), list(pos) + list(neg))


def summary_rows(name: str, a: dict) -> list[str]:
    h = a["held_out_model_only"]
    t = a["test_part_at_model_only"]["binary"]
    eq = " ".join(f"r{e['recall']:.2f}:{e['false_alarms_per_1k_units']:.1f}" for e in a["equal_recall"])
    fmt = lambda v: "-" if v is None else f"{v:.3f}"
    return [(f"{name:10} mixAUC(val) {a['validation_mix']['auc']:.3f} mixAUC(test) {a['test_mix']['auc']:.3f} "
            f"model_only {fmt(a['thresholds']['model_only'])} recall {h['recall']:.3f} "
            f"P@{a['prevalence']:.0%} {fmt(h['precision_at_prevalence'])} FA/1k lines {fmt(h['false_alarms_per_1k_lines'])} "
            f"FA/1k units {fmt(h['false_alarms_per_1k_units'])} | test F1 {t['f1']:.3f} MCC {t['mcc']:.3f} | "
            f"ECE {a['calibration']['ece_test_mix']:.4f} (raw {a['calibration']['ece_test_mix_raw_scores']:.4f}) | "
            f"FA/1k units at equal recall {eq}")]


def run(scores_path: Path, manifest_path: Path, card_dir: Path | None = None, repeat_scores: Path | None = None,
        baseline_scores: Path | None = None, prevalence: float = PV.DEFAULT_PREVALENCE, write: bool = False,
        report: Path | None = None) -> dict:
    from cwescan.data.negatives import manifest_digest, read_manifest
    from cwescan.ml.artifacts import read_card, write_card

    manifest = read_manifest(manifest_path)
    card = read_card(card_dir) if card_dir else {}
    skewed = (card.get("validation") or {}).get("threshold") if card else None
    main = analyse(read_scores(scores_path), manifest, prevalence, skewed)
    result = {"main": main, "scores": str(scores_path)}
    lines = summary_rows("adapter", main)
    for key, path in (("repeat", repeat_scores), ("baseline", baseline_scores)):
        if path:
            other = read_scores(path)
            # the repeat run's best-F1 threshold is kept in the card's reproduction record
            other_th = ((card.get("reproduction") or {}).get("repeat_run_validation") or {}).get("threshold") \
                if key == "repeat" else None
            result[key] = analyse(other, manifest, prevalence, other_th)
            result[key]["scores"] = str(path)
            lines += summary_rows(key, result[key])
    if "repeat" in result:
        f1 = lambda a: a["test_part_at_model_only"]["binary"]["f1"]
        result["reproduction_f1_delta_points"] = 100 * abs(f1(main) - f1(result["repeat"]))
        if "test_part_at_best_f1_validation_threshold" in main and "test_part_at_best_f1_validation_threshold" in result["repeat"]:
            g = lambda a: a["test_part_at_best_f1_validation_threshold"]["binary"]["f1"]
            result["reproduction_f1_delta_points_best_f1_threshold"] = 100 * abs(g(main) - g(result["repeat"]))
    for line in lines:
        print(line)
    for k in ("reproduction_f1_delta_points", "reproduction_f1_delta_points_best_f1_threshold"):
        if k in result:
            print(f"{k}: {result[k]:.2f}")
    if report:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(result, indent=1) + "\n")
    if write and card_dir:
        th = main["thresholds"]
        card.update({
            "prevalence": prevalence,
            "thresholds": th,
            "thresholds_how": main["thresholds_how"],
            "threshold": th["model_only"] if th["model_only"] is not None else 1.0,
            "threshold_note": "the detector flags at thresholds.model_only (1.0 when none reaches the precision "
                              "target); validation.threshold is the best-F1 threshold of the ~60 % vulnerable "
                              "validation part, kept for reference only",
            "calibration": main["calibration"],
            "negatives_manifest_hash": manifest_digest(manifest),
            "evaluation_realistic": {k: v for k, v in main.items() if k not in ("thresholds", "thresholds_how",
                                                                                  "calibration")},
            "calibrate_command": "cwescan train calibrate --scores " + str(scores_path) + " --negatives-manifest "
                                 + str(manifest_path) + f" --card {card_dir}"
                                 + (f" --repeat-scores {repeat_scores}" if repeat_scores else "")
                                 + (f" --baseline-scores {baseline_scores}" if baseline_scores else "") + " --write",
        })
        # the scan's decision policy (cwescan.core.policy.DecisionPolicy.from_card) reads this section
        card["policy"] = policy_section(main, prevalence)
        if "repeat" in result:
            card["reproduction_realistic"] = {
                "f1_delta_points_at_model_only": result["reproduction_f1_delta_points"],
                "f1_delta_points_at_best_f1_threshold": result.get("reproduction_f1_delta_points_best_f1_threshold"),
                "repeat": {k: result["repeat"][k] for k in ("thresholds", "held_out_model_only", "test_part_at_model_only",
                                                             "validation_mix", "test_mix", "equal_recall")},
            }
        if "baseline" in result:
            card["baseline_realistic"] = {k: result["baseline"][k] for k in (
                "held_out_model_only", "equal_recall", "validation_mix", "test_mix", "test_part_at_model_only")}
        write_card(card_dir, card)
    return result
