"""The scan as users run it, judged on labelled records: static rules, the model's second
opinion and its model-only findings under the decision policy, the default display confidence.

As in a scan, a record gets a model-only finding only if triage sends one of its units to the
model (a record whose units all touch no surface never reaches it) and the finding's calibrated
probability reaches the display confidence (the policy's model-only threshold reads the raw
score; below the display a scan withholds the finding unless asked with ``--min-confidence``).

The model's answers come from a score file of ``cwescan eval-mix`` (one P(vulnerable) per
record: its most suspicious unit, scored once on whatever machine ran the model), so the view
re-runs in seconds on a CPU. The second opinion uses that record-level score for every rule
finding of the record; for single-function records (most of the split) it is exactly the unit's.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from cwescan.core.findings import by_path
from cwescan.core.policy import DecisionPolicy
from cwescan.core.units import parse_source
from cwescan.data.records import Record
from cwescan.evaluate.metrics import binary_metrics
from cwescan.scan.combine import second_opinion, settled as settled_finding


# (record id, rule confidences) -> how the partner settled them (``Pairing.settle``) and its score
Settles = Callable[[str, list[float]], tuple[str | None, float]]


def record_verdicts(records: Sequence[Record], scores: dict[str, float], policy: DecisionPolicy,
                    gated: Collection[str] = (), settled: Settles | None = None) -> dict[str, list[bool]]:
    """Per record: flagged by the rules alone, by the scan (rules after the second opinion, or
    a model-only finding), and whether a rule finding was hidden by the model's 'safe'.
    ``gated``: ids of records the scan clears before the SLM reads them (the pair's gate), so
    they get no model-only finding. ``settled``: how the partner's score settles a record's
    rule findings (``cwescan.core.pair.Pairing.settle``), if it does: the scan then gives them
    no second opinion of the SLM."""
    from cwescan.detectors.static import StaticDetector
    from cwescan.scan.triage import triage

    static = StaticDetector()
    display = policy.display  # what a scan shows by default
    out: dict[str, list[bool]] = {"static": [], "scan": [], "hidden_by_model": [], "model_only": [], "settled": []}
    for r in records:
        units = parse_source(f"{r.id}.py", r.code).units
        every = static.detect(units)
        findings = [f for f in every if f.confidence >= display]
        p = scores[r.id]
        # as in a scan, every rule finding gets the second opinion, also one under the display
        # confidence (a parameter-only lead), which a confident "vulnerable" can raise into view
        verdict, q = settled(r.id, [f.confidence for f in every]) if settled is not None else (None, 0.0)
        out["settled"].append(verdict is not None)
        if verdict is not None:
            shown = [settled_finding(f, verdict, q, "partner", policy) for f in every]
        else:
            shown = [second_opinion(f, p, None, policy) for f in every]
        shown_static = any(f.confidence >= display for f in shown)
        reviewed = any(v.review for v in triage(units, by_path(every)))  # else the scan never asks the model
        # a model-only finding is withheld under the policy's threshold (raw score) and hidden
        # under the display confidence (its calibrated probability), as a scan does; where a rule
        # found anything, at any confidence, the model's verdict is that finding's second opinion
        model_only = (not every and p >= policy.model_only and policy.probability(p) >= display
                      and r.id not in gated and reviewed)
        out["static"].append(bool(findings))
        out["scan"].append(shown_static or model_only)
        out["hidden_by_model"].append(bool(findings) and not shown_static)
        out["model_only"].append(model_only)
    return out


def pipeline_view(records: Sequence[Record], scores: dict[str, float], policy: DecisionPolicy,
                  gated: Collection[str] = (), settled: Settles | None = None) -> dict:
    """Binary metrics of the rules alone and of the scan, and what the second opinion cost."""
    v = record_verdicts(records, scores, policy, gated, settled)
    truth = [r.vulnerable for r in records]
    static_tp = sum(t and s for t, s in zip(truth, v["static"]))
    lost = sum(t and h for t, h in zip(truth, v["hidden_by_model"]))
    static_fp = sum((not t) and s for t, s in zip(truth, v["static"]))
    removed_fp = sum((not t) and h for t, h in zip(truth, v["hidden_by_model"]))
    return {
        "records": len(records),
        "static": binary_metrics(truth, v["static"]),
        "scan": binary_metrics(truth, v["scan"]),
        "model_only_flags": sum(v["model_only"]),
        "settled_records": sum(v["settled"]),  # rule findings the SLM did not read (the partner settled them)
        "second_opinion": {
            "static_true_positives": static_tp,
            "true_positives_hidden": lost,
            "share_of_true_positives_lost": lost / static_tp if static_tp else 0.0,
            "static_false_positives": static_fp,
            "false_positives_hidden": removed_fp,
        },
        "policy": {"model_only": policy.model_only, "safe": policy.safe, "vulnerable": policy.vulnerable,
                   "display": policy.display},
    }


def pipeline_table(view: dict) -> str:
    rows = ["| configuration | precision | recall | F1 | MCC |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, key in (("static rules alone", "static"), ("scan (rules + model, its decision policy)", "scan")):
        m = view[key]
        rows.append(f"| {name} | {m['precision'] or 0:.3f} | {m['recall'] or 0:.3f} | {m['f1'] or 0:.3f} | {m['mcc']:.3f} |")
    so = view["second_opinion"]
    rows.append("")
    rows.append(f"Second opinion: {so['true_positives_hidden']} of {so['static_true_positives']} rule true positives "
                f"hidden ({100 * so['share_of_true_positives_lost']:.1f} %), {so['false_positives_hidden']} of "
                f"{so['static_false_positives']} rule false positives hidden; model-only flags: {view['model_only_flags']}.")
    return "\n".join(rows)
