"""Scoring SAST results on the OWASP Benchmark for Python (its layout, on a synthetic copy: the
owasp_copy itself is not part of the repository)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cwescan.evaluate.owasp import BenchmarkError, read_expected, read_results, score

EXPECTED = """\
# test name, category, real vulnerability, cwe, Benchmark version: 0.1, 2025-11-5
BenchmarkTest00001,sqli,true,89
BenchmarkTest00002,sqli,false,89
BenchmarkTest00003,codeinj,true,94
BenchmarkTest00004,codeinj,false,94
"""

# a real SQL injection, its safe twin (a parameterised query), an eval of request data, a
# constant eval: what the rules see decides the score
TESTS = {
    "BenchmarkTest00001": 'cur.execute("SELECT * FROM t WHERE id = " + request.args["id"])',
    "BenchmarkTest00002": 'cur.execute("SELECT * FROM t WHERE id = ?", (request.args["id"],))',
    "BenchmarkTest00003": 'eval(request.args["expr"])',
    "BenchmarkTest00004": 'eval("1 + 1")',
}


@pytest.fixture()
def owasp_copy(tmp_path: Path) -> Path:
    (tmp_path / "expectedresults-0.1.csv").write_text(EXPECTED)
    code = tmp_path / "testcode"
    code.mkdir()
    for name, line in TESTS.items():
        (code / f"{name}.py").write_text(
            "import sqlite3\nfrom flask import Flask, request\napp = Flask(__name__)\n"
            f"@app.route('/{name}')\ndef view():\n    cur = sqlite3.connect('db').cursor()\n    {line}\n"
            "    return 'done'\n")
    return tmp_path


def test_a_cwescan_scan_of_the_benchmark_is_scored_per_category(owasp_copy: Path):
    report = owasp_copy / "scan.json"
    subprocess.run([sys.executable, "-m", "cwescan", "scan", str(owasp_copy / "testcode"), "-d", "static",
                    "-f", "json", "-o", str(report)], check=False, capture_output=True)
    result = score(read_expected(owasp_copy / "expectedresults-0.1.csv"), read_results(report))
    assert result["categories"]["sqli"] == {"cwe": "CWE-89", "tp": 1, "fn": 0, "fp": 0, "tn": 1,
                                            "tpr": 1.0, "fpr": 0.0, "score": 1.0}
    # eval injection (CWE-95) counts for the code-injection category (CWE-94): same family
    assert result["categories"]["codeinj"]["score"] == 1.0
    assert result["average"]["score"] == 1.0


def test_sarif_and_bandit_results_are_read(tmp_path: Path, owasp_copy: Path):
    sarif = {"runs": [{"tool": {"driver": {"rules": [{"id": "B608", "properties": {"tags": ["CWE-89"]}}]}},
                       "results": [{"ruleId": "B608", "locations": [{"physicalLocation": {
                           "artifactLocation": {"uri": "testcode/BenchmarkTest00002.py"}}}]}]}]}
    bandit = {"results": [{"filename": "testcode/BenchmarkTest00001.py", "issue_cwe": {"id": 89}}], "errors": []}
    (tmp_path / "r.sarif").write_text(json.dumps(sarif))
    (tmp_path / "b.json").write_text(json.dumps(bandit))
    cases = read_expected(owasp_copy / "expectedresults-0.1.csv")
    flagged_safe = score(cases, read_results(tmp_path / "r.sarif"))["categories"]["sqli"]
    assert (flagged_safe["tp"], flagged_safe["fp"], flagged_safe["score"]) == (0, 1, -1.0)
    assert score(cases, read_results(tmp_path / "b.json"))["categories"]["sqli"]["score"] == 1.0


def test_findings_below_the_confidence_asked_for_do_not_count(tmp_path: Path):
    report = {"findings": [{"path": "BenchmarkTest00001.py", "cwe": "CWE-89", "confidence": 0.25}]}
    (tmp_path / "r.json").write_text(json.dumps(report))
    assert read_results(tmp_path / "r.json", 0.3) == {}
    assert read_results(tmp_path / "r.json", 0.0) == {"BenchmarkTest00001": {"CWE-89"}}


def test_unreadable_inputs_are_clear_errors(tmp_path: Path):
    (tmp_path / "bad.csv").write_text("BenchmarkTest00001,sqli,maybe,89\n")
    with pytest.raises(BenchmarkError, match="true|false"):
        read_expected(tmp_path / "bad.csv")
    (tmp_path / "r.json").write_text("[1, 2]")
    with pytest.raises(BenchmarkError, match="neither"):
        read_results(tmp_path / "r.json")
