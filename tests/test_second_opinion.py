"""The decision policy: how a model's opinion on a unit becomes what a scan shows."""

import pytest

from conftest import KeywordModel
from cwescan.core import cwe as cwe_catalog
from cwescan.core.findings import SEVERITIES, Finding
from cwescan.core.policy import DecisionPolicy
from cwescan.core.units import body_lines, code_span, parse_source
from cwescan.detectors.static import StaticDetector
from cwescan.scan.combine import SECOND_OPINION, apply_policy, merge, model_only, second_opinion
from cwescan.scan.pipeline import ScanOptions, scan

VULN = '''import os
from flask import request


def run():
    os.system("ping " + request.args["host"])
'''

POLICY = DecisionPolicy(model_only=0.9, safe=0.05, vulnerable=0.5, cwe_head=0.8, line=0.6)


class OpinionModel(KeywordModel):
    """A model-stage detector with a fixed P(vulnerable): it reviews every hint it gets."""

    name = "slm"
    policy = POLICY

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.seen_hints = 0

    def detect(self, units, hints=None):
        out = []
        for u in units:
            for f in (hints or {}).get(u.path, []):
                if u.kind == "function" and u.start_line <= f.start_line <= u.end_line:
                    self.seen_hints += 1
                    out.append(second_opinion(f, self.p, None, self.policy))
        return out


def _command_injection(tmp_path, model, min_confidence=0.0):
    (tmp_path / "app.py").write_text(VULN)
    report = scan([tmp_path], ScanOptions(detectors=[], min_confidence=min_confidence),
                  detectors=[StaticDetector(), model])
    cmd = [r.finding for r in report.findings if r.finding.cwe in ("CWE-78", "CWE-77")]
    assert len(cmd) <= 1, "the reviewed finding replaces the plain one, never duplicates it"
    return cmd[0] if cmd else None


def test_confident_model_raises_confident_safe_lowers_below_display_unsure_keeps(tmp_path):
    for d in "abcd":
        (tmp_path / d).mkdir()
    units = parse_source("app.py", VULN).units
    rule = max((f for f in StaticDetector().detect(units) if f.cwe == "CWE-78"), key=lambda f: f.confidence)
    agree_model, safe_model, unsure_model = OpinionModel(0.9), OpinionModel(0.01), OpinionModel(0.3)
    agree = _command_injection(tmp_path / "a", agree_model)
    safe = _command_injection(tmp_path / "b", safe_model)
    unsure = _command_injection(tmp_path / "c", unsure_model)
    assert agree_model.seen_hints == safe_model.seen_hints == 1
    assert agree.confidence > rule.confidence and agree.detector == "slm+static"
    assert agree.extra["detectors"] == {"slm": 0.9, "static": round(rule.confidence, 4)}
    assert "The model agrees (score 0.90)" in agree.message
    # a confident "safe" lowers the rule finding below what is shown by default, and says why
    assert safe.confidence < POLICY.display <= rule.confidence
    assert SEVERITIES.index(safe.severity) == SEVERITIES.index(rule.severity) - 1
    assert "The model judges this code safe (score 0.01" in safe.message
    assert safe.extra[SECOND_OPINION]["verdict"] == "disagrees" and safe.detector == "static"
    assert _command_injection(tmp_path / "d", OpinionModel(0.01), min_confidence=POLICY.display) is None
    # an unsure model is no evidence either way
    assert unsure.confidence == rule.confidence and unsure.severity == rule.severity


def _model_finding(p, cwe_conf, line_conf, line, unit_span=(10, 20), line_is_code=True):
    return Finding("a.py", line, line, "CWE-89", "SLM", "SQL Injection (model)", "raw", p, "critical", "slm",
                   extra={"cwe_confidence": cwe_conf, "line_confidence": line_conf, "line_is_code": line_is_code,
                          "unit_span": list(unit_span), "unit": "find",
                          "evidence": {"kind": "sink", "what": ".execute()", "line": 14}})


def test_model_only_findings_need_confidence_and_evidence_for_type_line_and_severity():
    # below the model-only threshold: withheld
    kept, withheld = apply_policy([_model_finding(0.8, 0.99, 0.99, 14)], {"slm": POLICY})
    assert kept == [] and withheld == 1
    # confident verdict, CWE head and line: the model's CWE and line, severity capped at medium
    f = model_only(_model_finding(0.95, 0.9, 0.9, 14), POLICY)
    assert (f.cwe, f.severity, f.start_line, f.end_line) == ("CWE-89", "medium", 14, 14)
    assert "calls .execute() at line 14" in f.message and "no rule confirms it" in f.message
    # unsure of the type: a possible weakness of unspecified type, low severity, no CWE guess shown
    f = model_only(_model_finding(0.95, 0.4, 0.9, 14), POLICY)
    assert (f.cwe, f.severity, f.title) == (cwe_catalog.UNSPECIFIED, "low", "Possible weakness (model)")
    assert f.extra["model_cwe_guess"] == "CWE-89"
    # unsure of the line, or a line that is no code of the body: the finding spans the unit
    for line_conf, is_code in ((0.3, True), (0.9, False)):
        f = model_only(_model_finding(0.95, 0.9, line_conf, 10, line_is_code=is_code), POLICY)
        assert (f.start_line, f.end_line) == (10, 20) and f.extra["located"] == "unit"


def test_one_weakness_one_finding_across_static_and_model_in_a_unit(tmp_path):
    class SameBugModel(OpinionModel):
        """Agrees with the rule and also reports the bug itself, a line above it."""

        def detect(self, units, hints=None):
            out = super().detect(units, hints)
            return out + [Finding(u.path, u.start_line, u.start_line, "CWE-78", "SLM", "x", "y", 0.95,
                                  "critical", self.name) for u in units if u.kind == "function"]

    (tmp_path / "app.py").write_text(VULN)
    # the real SLM detector folds its own finding into the rule finding of the same family
    # (detectors/slm.py); merge keeps one finding per line and family, listing both detectors
    report = scan([tmp_path], ScanOptions(detectors=[]), detectors=[StaticDetector(), OpinionModel(0.9)])
    assert [r.finding.detector for r in report.findings] == ["slm+static"]


def test_unit_geometry_skips_decorators_docstrings_and_blank_lines():
    src = parse_source("m.py", '"""Module doc."""\n\nimport os\n\n\n@app.route("/")\ndef f(x):\n'
                               '    """Doc."""\n\n    # why\n    return os.system(x)\n')
    module, func = src.units
    assert body_lines(func) == {11} and code_span(func) == (6, 11)
    assert body_lines(module) == {3} and code_span(module) == (3, 3)


def test_policy_from_card_reads_known_keys_only():
    assert DecisionPolicy.from_card({}) == DecisionPolicy()
    p = DecisionPolicy.from_card({"policy": {"model_only": 0.99, "safe": 0.01, "prevalence": 0.01}})
    assert (p.model_only, p.safe) == (0.99, 0.01)
    import pytest

    with pytest.raises(ValueError, match="unknown keys"):
        DecisionPolicy.from_card({"policy": {"modle_only": 0.9}})


def test_merge_lists_an_agreeing_model_of_a_second_opinion():
    rule = Finding("a.py", 3, 3, "CWE-89", "CWS089", "t", "m", 0.8, "critical", "static")
    reviewed = second_opinion(rule, 0.7, "CWE-89", POLICY)
    [merged] = merge([reviewed])
    assert merged.detector == "slm+static" and merged.extra["detectors"]["slm"] == 0.7


def test_thresholds_read_raw_scores_and_confidences_are_calibrated_probabilities():
    card = {"policy": {"model_only": 0.9, "vulnerable": 0.6},
            "calibration": {"method": "isotonic", "x": [0.0, 0.5, 0.9], "y": [0.001, 0.02, 0.6]}}
    policy = DecisionPolicy.from_card(card)
    assert policy.probability(0.95) == 0.6 and policy.probability(0.3) == 0.001
    rule = Finding("a.py", 3, 3, "CWE-89", "CWS089", "t", "m", 0.8, "critical", "static")
    agreed = second_opinion(rule, 0.95, "CWE-89", policy)
    assert agreed.confidence == pytest.approx(1 - 0.2 * 0.4) and agreed.extra[SECOND_OPINION]["score"] == 0.95
    f = _model_finding(0.6, 0.9, 0.9, 14)  # a calibrated confidence of 0.6 ...
    f.extra["score"] = 0.95  # ... from a raw score above the model-only threshold: shown
    assert model_only(f, policy) is not None
    f.extra["score"] = 0.85
    assert model_only(f, policy) is None
