"""How findings of several detectors become one list: the model's second opinion on each
static finding, and one finding per (path, line, CWE family) across detectors.

Data: static findings (``hints``, per path) and model findings come in; the model stage's
findings that carry a second opinion replace the plain static finding they review
(:func:`replace_reviewed`), then :func:`merge` folds agreeing detectors into one finding.
Whether a finding belongs to a unit is decided by ``cwescan.core.findings.in_unit`` alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from cwescan.core import cwe as cwe_catalog
from cwescan.core.findings import Finding, severity_rank

SECOND_OPINION = "slm_second_opinion"  # extra key of a static finding a model has reviewed


def second_opinion(static: Finding, p_slm: float, slm_cwe: str | None, threshold: float) -> Finding:
    """A static finding with the SLM's second opinion folded into its confidence.

    - the model agrees (p_slm >= threshold and its CWE, if any, is in the same family):
      noisy-OR, ``1 - (1 - p_static) * (1 - p_slm)`` -- two independent signals raise confidence;
    - otherwise: the plain average ``(p_static + p_slm) / 2`` -- a disagreeing model lowers it,
      but never drops a static finding (the merge keeps it, ranked lower).
    """
    agree = p_slm >= threshold and (slm_cwe is None or cwe_catalog.same_family(slm_cwe, static.cwe))
    ps = static.confidence
    combined = 1 - (1 - ps) * (1 - p_slm) if agree else (ps + p_slm) / 2
    extra = dict(static.extra)
    extra[SECOND_OPINION] = {
        "p_vulnerable": round(p_slm, 4),
        "cwe": slm_cwe,
        "agrees": agree,
        "static_confidence": round(ps, 4),
        "rule": "noisy-or" if agree else "average",
    }
    return dataclasses.replace(static, confidence=combined, extra=extra)


def finding_key(f: Finding) -> tuple:
    return (f.path, f.start_line, f.end_line, f.cwe, f.rule_id, f.detector)


def replace_reviewed(static: Sequence[Finding], model: Sequence[Finding]) -> list[Finding]:
    """Static findings a model gave its second opinion on are replaced by the reviewed copy,
    so a disagreeing model ranks them lower; the others stay as they are."""
    reviewed = {finding_key(f) for f in model if SECOND_OPINION in f.extra}
    return [f for f in static if finding_key(f) not in reviewed] + list(model)


def merge(findings: Sequence[Finding]) -> list[Finding]:
    """One finding per (path, start line, CWE family): the most confident one's fields, with
    ``detector`` naming every detector that agreed ("slm+static") and ``extra["detectors"]``
    keeping each one's confidence."""
    groups: dict[tuple, list[Finding]] = {}
    for f in findings:
        groups.setdefault((f.path, f.start_line, f.family), []).append(f)
    merged = []
    for group in groups.values():
        best = max(group, key=lambda f: (f.confidence, severity_rank(f.severity),
                                         f.detector, f.rule_id, -f.end_line))
        per_detector: dict[str, float] = {}
        for f in group:
            for name in f.detector.split("+"):
                per_detector[name] = max(per_detector.get(name, 0.0), round(f.confidence, 4))
        extra = dict(best.extra)
        extra["source_detector"] = best.detector  # whose rule and message are shown
        extra["detectors"] = dict(sorted(per_detector.items()))
        merged.append(Finding(
            path=best.path, start_line=best.start_line, end_line=best.end_line, cwe=best.cwe,
            rule_id=best.rule_id, title=best.title, message=best.message,
            confidence=best.confidence, severity=best.severity,
            detector="+".join(sorted(per_detector)), extra=extra))
    return sorted(merged, key=Finding.sort_key)
