"""The evaluation runner and `cwescan eval`, with a small real detector defined here (the
project's static and bandit detectors are tested on their own)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cwescan.cli import app
from cwescan.data.records import Record
from cwescan.detectors import REGISTRY
from cwescan.detectors.base import Detector
from cwescan.evaluate.report import TABLE_END, TABLE_START
from cwescan.evaluate.runner import predict, run_detector, sample, twin_pairs
from cwescan.core.findings import Finding
from cwescan.core.units import Unit

RULES = [  # (pattern, cwe, confidence)
    (re.compile(r"execute\(.*%"), "CWE-89", 0.9),
    (re.compile(r"os\.system\("), "CWE-78", 0.8),
    (re.compile(r"pickle\.loads\("), "CWE-502", 0.6),
]


class KeywordDetector(Detector):
    """Flags lines matching a few patterns; counts its calls to check batching."""

    name = "keyword"

    def __init__(self) -> None:
        self.detect_calls = 0

    def detect(self, units: Sequence[Unit]) -> list[Finding]:
        self.detect_calls += 1
        out = []
        for u in units:
            for i, line in enumerate(u.code.splitlines(), 1):
                if "crash-me" in line:
                    raise RuntimeError("detector bug")
                for pattern, cwe, conf in RULES:
                    if pattern.search(line):
                        n = u.file_line(i)
                        out.append(Finding(u.path, n, n, cwe, "KW", "kw", "kw", conf, "high", self.name))
        return out


class ScoringDetector(KeywordDetector):
    """Has a native score: 0.3 for every unit without a finding."""

    def __init__(self) -> None:
        super().__init__()
        self.score_calls = 0

    def score(self, units: Sequence[Unit]) -> list[float]:
        self.score_calls += 1
        return [0.3 for _ in units]


class OnePassDetector(ScoringDetector):
    """A model-like detector that computes findings and scores in one pass."""

    def detect_and_score(self, units: Sequence[Unit]) -> tuple[list[Finding], list[float]]:
        findings = self.detect(units)
        return findings, [0.4 for _ in units]


SQL_VUL = 'def q(db, name):\n    db.execute("SELECT %s" % name)\n'
SQL_FIX = 'def q(db, name):\n    db.execute("SELECT ?", (name,))\n'
RECORDS = [
    Record("t:a#1:vul", "t", SQL_VUL, True, ["CWE-89"], [2]),
    Record("t:a#1:fix", "t", SQL_FIX, False, [], []),
    Record("u:shell", "u", "import os\n\n\nos.system(cmd)\n", True, ["CWE-77"], [1]),
    Record("u:pickle", "u", "import pickle\nx = pickle.loads(b)\n", False, [], []),
    Record("u:missed", "u", "def f(p):\n    return open(p).read()\n", True, ["CWE-22"], [2]),
    Record("u:broken", "u", "def (:\n  os.system(x)\n", True, ["CWE-78"], [2]),
]


def test_predictions_per_record():
    det = KeywordDetector()
    preds = predict(det, RECORDS, batch_size=4)
    assert det.detect_calls == 2  # once per batch, not per record or per unit
    by_id = {p.id: p for p in preds}
    assert by_id["t:a#1:vul"].flagged and by_id["t:a#1:vul"].cwe == "CWE-89" and by_id["t:a#1:vul"].lines == [2]
    assert by_id["t:a#1:vul"].score == 0.9
    assert not by_id["t:a#1:fix"].flagged and by_id["t:a#1:fix"].score == 0.0
    assert by_id["u:shell"].lines == [4]
    assert by_id["u:broken"].flagged  # a file that does not parse is still one module unit


def test_metrics_of_a_run():
    run = run_detector("keyword", KeywordDetector(), RECORDS)
    m = run.metrics
    # flagged: vul, shell, pickle (safe: false positive), broken; missed: open()
    assert (m["binary"]["tp"], m["binary"]["fp"], m["binary"]["fn"], m["binary"]["tn"]) == (3, 1, 1, 1)
    assert m["typed"]["hits"] == 3  # 89 = 89, 78 ~ 77 (same family), 78 = 78
    assert m["localisation"]["n"] == 3 and m["localisation"]["hits"] == 2  # shell: line 4 vs labelled 1
    assert m["pairwise"] == {"pairs": 1, "vuln_scores_higher": 1.0, "ties": 0, "both_right": 1.0}
    assert m["per_source"]["u"]["recall"] == pytest.approx(2 / 3)
    assert m["timing"]["records_per_s"] > 0


def test_native_score_is_used_and_detect_runs_once_per_batch():
    det = ScoringDetector()
    preds = predict(det, RECORDS, batch_size=100)
    assert det.detect_calls == 1 and det.score_calls == 1
    assert {p.id: p.score for p in preds}["t:a#1:fix"] == 0.3


def test_detect_and_score_is_one_call_per_batch():
    det = OnePassDetector()
    preds = predict(det, RECORDS, batch_size=100)
    assert det.detect_calls == 1 and det.score_calls == 0
    assert {p.id: p.score for p in preds}["t:a#1:fix"] == 0.4 and preds[0].flagged


def test_a_failing_record_costs_only_itself():
    recs = [*RECORDS, Record("u:crash", "u", "x = 1  # crash-me\n", True, [], [])]
    preds = predict(KeywordDetector(), recs, batch_size=100)
    assert [p.id for p in preds] == [r.id for r in recs]
    crash = preds[-1]
    assert crash.error and "detector bug" in crash.error and not crash.flagged
    assert sum(p.flagged for p in preds) == 4


def test_perturbation_flips():
    def hide_call(code: str) -> str | None:  # hides os.system from the keyword detector
        return code.replace("os.system(", "getattr(os, 'system')(") if "import os" in code else None

    def add_blank_line(code: str) -> str | None:
        return "\n" + code

    run = run_detector("keyword", KeywordDetector(), RECORDS, perturbations={"rename": hide_call, "blank": add_blank_line})
    p = run.perturbation
    assert p["rename"]["applicable"] == 1 and p["rename"]["flips"] == 1  # only u:shell imports os
    assert p["rename"]["caught_vulnerable"] == 1 and p["rename"]["vuln_to_safe_rate"] == 1.0
    assert p["blank"]["applicable"] == len(RECORDS) and p["blank"]["flip_rate"] == 0.0


def test_twin_pairs_and_sample():
    assert twin_pairs(RECORDS) == [(0, 1)]
    s = sample(RECORDS, 3)
    assert len(s) == 3 and s == sample(RECORDS, 3) and s == [r for r in RECORDS if r in s]


@pytest.fixture
def keyword_registry(monkeypatch):
    monkeypatch.setitem(REGISTRY, "keyword", f"{__name__}:KeywordDetector")
    monkeypatch.setitem(REGISTRY, "scoring", f"{__name__}:ScoringDetector")


def test_eval_command_writes_outputs(tmp_path, keyword_registry):
    data = tmp_path / "recs.jsonl"
    data.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in RECORDS))
    doc = tmp_path / "EVALUATION.md"
    doc.write_text(f"# Eval\n\n{TABLE_START}\n| detector | records |\n|---|---:|\n| slm | 5 |\n{TABLE_END}\n\nafter\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["eval", "--records", str(data), "--detector", "keyword", "--detector", "scoring",
         "--out", str(out), "--update-doc", str(doc)],
    )
    assert result.exit_code == 0, result.output
    for name in ("metrics.json", "report.md", "pr_curve.png", "reliability.png", "per_cwe_f1.png"):
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["detectors"]) == {"keyword", "scoring"}
    assert metrics["detectors"]["keyword"]["binary"]["tp"] == 3
    report = (out / "report.md").read_text()
    assert "| keyword | 6 |" in report and "Per CWE family" in report
    text = doc.read_text()
    assert "| keyword | 6 |" in text and "| slm | 5 |" in text and text.endswith("after\n")
    assert text.count(TABLE_START) == 1


def test_eval_command_errors_are_clear(tmp_path, keyword_registry):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "code": "y", "vulnerable": true}\nnot json\n')
    r = CliRunner().invoke(app, ["eval", "--records", str(bad), "--detector", "keyword", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "bad.jsonl:2" in r.output
    r = CliRunner().invoke(app, ["eval", "--records", str(bad), "--detector", "nope"])
    assert r.exit_code == 2 and "unknown detector" in r.output


@pytest.mark.skipif(not (Path(__file__).resolve().parents[2] / "shared" / "datasets").is_dir(), reason="no data")
def test_eval_on_a_sample_of_the_split(tmp_path, keyword_registry):
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["eval", "--split", "test", "--limit", "40", "--detector", "keyword", "--out", str(out)])
    assert r.exit_code == 0, r.output
    meta = json.loads((out / "metrics.json").read_text())["meta"]
    assert meta["records"] == 40 and meta["split"] == "test" and len(meta["manifest_hash"]) == 64
    assert meta["command"] == "cwescan eval --split test --detector keyword --limit 40"


def test_eval_command_with_perturbations(tmp_path, keyword_registry):
    from cwescan.evaluate.perturb import PERTURBATIONS

    data = tmp_path / "recs.jsonl"
    data.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in RECORDS))
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["eval", "--records", str(data), "--detector", "keyword", "--perturb", "--out", str(out)])
    assert r.exit_code == 0, r.output
    effects = json.loads((out / "metrics.json").read_text())["detectors"]["keyword"]["perturbation"]
    assert set(effects) == set(PERTURBATIONS)
    assert all(0 <= v["applicable"] <= len(RECORDS) and v["flips"] <= v["applicable"] for v in effects.values())
    assert "Robustness" in (out / "report.md").read_text()
