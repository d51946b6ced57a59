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
from cwescan.core.findings import SEVERITIES, Finding, in_unit, severity_rank
from cwescan.core.pair import SETTLED_KEPT, SETTLED_SAFE
from cwescan.core.policy import MODEL_ONLY_MAX_SEVERITY, DecisionPolicy

SECOND_OPINION = "slm_second_opinion"  # extra key of a static finding a model has reviewed

def _lower(severity: str) -> str:
    return SEVERITIES[max(0, severity_rank(severity) - 1)]


def second_opinion(static: Finding, p_model: float, model_cwe: str | None, policy: DecisionPolicy,
                   model: str = "slm") -> Finding:
    """A rule finding with a model's second opinion on its unit folded in.

    - confident "vulnerable" (``p >= policy.vulnerable``, the model's CWE, if any, in the same
      family): noisy-OR, ``1 - (1 - p_rule) * (1 - p_model)``; the model is listed as a detector;
    - confident "safe" (``p <= policy.safe``): confidence lowered below the default display
      confidence and severity one step down, with the reason in the explanation -- this is how
      the model removes rule false alarms without deleting them;
    - anything between: the rule finding as it was (an unsure model is no evidence either way).
    """
    ps = static.confidence
    p_cal = policy.probability(p_model)  # thresholds read the raw score; confidence a probability
    agree = p_model >= policy.vulnerable and (model_cwe is None or not cwe_catalog.is_cwe(model_cwe)
                                              or cwe_catalog.same_family(model_cwe, static.cwe))
    safe = p_model <= policy.safe
    confidence, severity, message = ps, static.severity, static.message
    if agree:
        confidence = 1 - (1 - ps) * (1 - p_cal)
        message += f" The model agrees (score {p_model:.2f})."
    elif safe:
        confidence = min(ps, round(policy.display * 0.9, 4))
        severity = _lower(static.severity)
        message += (f" The model judges this code safe (score {p_model:.2f}), so this "
                    f"is shown only with --min-confidence {confidence:g} or lower.")
    extra = dict(static.extra)
    extra[SECOND_OPINION] = {
        "model": model,
        "score": round(p_model, 4),
        "p_vulnerable": round(p_cal, 4),
        "cwe": model_cwe,
        "verdict": "agrees" if agree else "disagrees" if safe else "unsure",
        "static_confidence": round(ps, 4),
    }
    return dataclasses.replace(static, confidence=confidence, severity=severity, message=message,
                               extra=extra)


def review_unit(unit, hints: dict[str, list[Finding]], p_model: float, model_cwe: str | None,
                policy: DecisionPolicy, model: str) -> list[Finding]:
    """The rule findings of ``unit`` (``hints``: per path; a finding in one of a module's
    functions belongs to that function) with a model's second opinion on the unit folded in. A
    model detector reports a unit on its own only when this is empty: where a rule already
    explains what is wrong, the model's verdict is that finding's second opinion, not a second
    finding (one weakness, one finding)."""
    return [second_opinion(f, p_model, model_cwe, policy, model)
            for f in hints.get(unit.path, ()) if in_unit(f, unit, nested=False)]


def settled(static: Finding, verdict: str, p_partner: float, partner: str, policy: DecisionPolicy,
            model: str = "slm") -> Finding:
    """A rule finding whose second opinion the partner's score settled without the SLM
    (``cwescan.core.pair.Pairing.settle``): with ``SETTLED_KEPT`` the rule's confidence and
    severity stay; with ``SETTLED_SAFE`` it is lowered as a confident "safe" lowers it, and the
    explanation says who judged."""
    confidence, severity, message = static.confidence, static.severity, static.message
    if verdict == SETTLED_SAFE:
        confidence = min(confidence, round(policy.display * 0.9, 4))
        severity = _lower(static.severity)
        message += (f" The {partner} judges this code safe (score {p_partner:.4f}), beyond what the language "
                    f"model says of ordinary code, so this is shown only with --min-confidence {confidence:g} "
                    "or lower.")
    elif verdict != SETTLED_KEPT:
        raise ValueError(f"not a settled verdict: {verdict!r}")
    extra = dict(static.extra)
    extra[SECOND_OPINION] = {"model": model, "verdict": verdict, "partner": partner,
                             "partner_score": round(p_partner, 6), "static_confidence": round(static.confidence, 4)}
    return dataclasses.replace(static, confidence=confidence, severity=severity, message=message, extra=extra)


def is_settled(f: Finding) -> bool:
    """Whether ``f`` is a rule finding whose second opinion its SLM's partner settled."""
    return (f.extra.get(SECOND_OPINION) or {}).get("verdict") in (SETTLED_KEPT, SETTLED_SAFE)


def raw_score(f: Finding) -> float:
    """A model finding's raw score (what policy thresholds read); its confidence otherwise."""
    return f.extra.get("score", f.confidence)


def model_only(f: Finding, policy: DecisionPolicy) -> Finding | None:
    """A model finding with no rule finding of its family in its unit, as the user sees it, or
    None when the policy withholds it (not confident enough to stand alone).

    The model's CWE is kept only when its CWE head is confident, else the finding is a
    possible weakness of unspecified type at low severity; severity never exceeds
    ``MODEL_ONLY_MAX_SEVERITY``; the finding points at the model's line only when the line head
    is confident and the line is code of the unit's body, else it spans the unit."""
    if raw_score(f) < policy.model_only:
        return None
    x = dict(f.extra)
    typed = x.get("cwe_confidence", 0.0) >= policy.cwe_head and cwe_catalog.is_cwe(f.cwe)
    cwe = f.cwe if typed else cwe_catalog.UNSPECIFIED
    if typed:
        severity = min(cwe_catalog.severity(cwe), MODEL_ONLY_MAX_SEVERITY, key=severity_rank)
    else:
        severity = "low"
        x["model_cwe_guess"] = f.cwe
    start, end = f.start_line, f.end_line
    pointed = x.get("line_confidence", 0.0) >= policy.line and x.get("line_is_code", False)
    if not pointed and "unit_span" in x:
        start, end = x["unit_span"]
    x["located"] = "line" if pointed else "unit"
    what = f"{f.cwe} ({cwe_catalog.name(f.cwe)})" if typed else "a weakness (type uncertain)"
    where = f"at line {start}" if pointed else f"in lines {start}-{end}"
    if "unit" not in x:  # a detector that wrote its own explanation keeps it
        title = f.title if typed else "Possible weakness (model)"
        return dataclasses.replace(f, cwe=cwe, severity=severity, start_line=start, end_line=end,
                                   title=title, extra=x)
    evidence = x.get("evidence")
    because = (f"; it {'calls' if evidence['kind'] == 'sink' else 'reads'} {evidence['what']} at line "
               f"{evidence['line']}" if evidence else "")
    message = (f"The model flags {x.get('unit', 'this code')} as likely {what} {where} "
               f"(score {raw_score(f):.2f}, no rule confirms it){because}.")
    title = f"{cwe_catalog.name(cwe)} (model)" if typed else "Possible weakness (model)"
    return dataclasses.replace(f, cwe=cwe, severity=severity, start_line=start, end_line=end,
                               title=title, message=message, extra=x)


def apply_policy(findings: Sequence[Finding], policies: dict[str, DecisionPolicy]) -> tuple[list[Finding], int]:
    """Findings after the decision policy of the model that made each (``policies``: model
    detector name -> policy), and how many model-only findings it withheld. Rule findings and
    rule findings with a second opinion pass unchanged."""
    out, withheld = [], 0
    for f in findings:
        policy = policies.get(f.detector)
        if policy is None or SECOND_OPINION in f.extra:
            out.append(f)
            continue
        shown = model_only(f, policy)
        if shown is None:
            withheld += 1
        else:
            out.append(shown)
    return out, withheld


def finding_key(f: Finding) -> tuple:
    return (f.path, f.start_line, f.end_line, f.cwe, f.rule_id, f.detector)


def replace_reviewed(static: Sequence[Finding], model: Sequence[Finding]) -> list[Finding]:
    """Static findings a model gave its second opinion on are replaced by the reviewed copy,
    so a disagreeing model ranks them lower; the others stay as they are."""
    reviewed = {finding_key(f) for f in model if SECOND_OPINION in f.extra}
    return [f for f in static if finding_key(f) not in reviewed] + list(model)


def merge(findings: Sequence[Finding],
          function_spans: dict[str, list[tuple[int, int]]] | None = None) -> list[Finding]:
    """One finding per weakness: per (path, function, CWE family) for findings inside a function
    of ``function_spans`` (path -> (start, end) of each function unit), else per (path, start
    line, CWE family). The most confident finding's fields win (its line is where the strongest evidence
    points, the rule's sink line when a rule saw it; the other lines are kept in
    ``extra["merged_lines"]``), the highest severity in the group stands, ``detector`` names
    every detector that saw it ("slm+static", a model that agreed in its second opinion
    included) and ``extra["detectors"]`` keeps each one's confidence."""
    spans = function_spans or {}

    def where(f: Finding) -> tuple:
        inside = [s for s in spans.get(f.path, ()) if s[0] <= f.start_line <= s[1]]
        if inside:  # the innermost function holding the finding
            return min(inside, key=lambda s: s[1] - s[0])
        # top-level code is no one unit of behaviour: there, one finding per line and family
        return (f.start_line,)

    groups: dict[tuple, list[Finding]] = {}
    for f in findings:
        groups.setdefault((f.path, where(f), f.family), []).append(f)
    merged = []
    for group in groups.values():
        best = max(group, key=lambda f: (f.confidence, severity_rank(f.severity),
                                         f.detector, f.rule_id, -f.end_line))
        per_detector: dict[str, float] = {}
        for f in group:
            opinion = f.extra.get(SECOND_OPINION)
            own = opinion["static_confidence"] if opinion else round(f.confidence, 4)  # before the opinion
            for name in f.detector.split("+"):
                per_detector[name] = max(per_detector.get(name, 0.0), own)
            if opinion and opinion["verdict"] == "agrees":  # the model saw the same weakness
                name = opinion["model"]
                per_detector[name] = max(per_detector.get(name, 0.0), opinion["p_vulnerable"])
        extra = dict(best.extra)
        extra["source_detector"] = best.detector  # whose rule and message are shown
        others = sorted({f.start_line for f in group} - {best.start_line})
        if others:
            extra["merged_lines"] = others
        extra["detectors"] = dict(sorted(per_detector.items()))
        merged.append(Finding(
            path=best.path, start_line=best.start_line, end_line=best.end_line, cwe=best.cwe,
            rule_id=best.rule_id, title=best.title, message=best.message,
            # the strongest evidence in the group decides how bad it is
            confidence=best.confidence, severity=max((f.severity for f in group), key=severity_rank),
            detector="+".join(sorted(per_detector)), extra=extra))
    return sorted(merged, key=Finding.sort_key)
