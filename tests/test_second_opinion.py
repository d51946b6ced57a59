"""The scanner hands static findings to a model detector and reports its second opinion."""

from conftest import KeywordModel
from cwescan.scan.combine import second_opinion
from cwescan.detectors.static import StaticDetector
from cwescan.scan.pipeline import ScanOptions, scan
from cwescan.core.units import parse_source

VULN = '''import os
from flask import request


def run():
    os.system("ping " + request.args["host"])
'''


class OpinionModel(KeywordModel):
    """A model-stage detector with a fixed P(vulnerable): it reviews every hint it gets."""

    name = "slm"

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
                    out.append(second_opinion(f, self.p, None, threshold=0.5))
        return out


def _static_confidence(tmp_path, model):
    (tmp_path / "app.py").write_text(VULN)
    report = scan([tmp_path], ScanOptions(detectors=[]), detectors=[StaticDetector(), model])
    cmd = [r.finding for r in report.findings if r.finding.cwe in ("CWE-78", "CWE-77")]
    assert len(cmd) == 1, "the reviewed finding replaces the plain one, never duplicates it"
    return cmd[0]


def test_agreeing_model_raises_and_disagreeing_model_lowers_confidence(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    units = parse_source("app.py", VULN).units
    p_static = max(f.confidence for f in StaticDetector().detect(units) if f.cwe == "CWE-78")
    agree_model, disagree_model = OpinionModel(0.9), OpinionModel(0.0)
    agree = _static_confidence(tmp_path / "a", agree_model)
    disagree = _static_confidence(tmp_path / "b", disagree_model)
    assert agree_model.seen_hints == 1 and disagree_model.seen_hints == 1
    assert agree.confidence > p_static > disagree.confidence
    assert agree.extra["slm_second_opinion"]["rule"] == "noisy-or"
    assert disagree.extra["slm_second_opinion"]["rule"] == "average"
