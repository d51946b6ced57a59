"""The Bandit peer detector: Bandit's own manager run as a library on in-memory text."""

from __future__ import annotations

import pytest

from cwescan.detectors import create
from cwescan.detectors.bandit_detector import CONFIDENCE, BanditDetector
from cwescan.core.units import parse_source

CODE = '''import hashlib
import pickle
import subprocess

import requests
import yaml


def run(cmd):
    return subprocess.call(cmd, shell=True)


def load(blob):
    return pickle.loads(blob)


def digest(data):
    return hashlib.md5(data).hexdigest()


def fetch(url):
    return requests.get(url, verify=False, timeout=5)


def config(text):
    assert text
    return yaml.load(text)


def query(cur, name):
    cur.execute("SELECT * FROM users WHERE name = '%s'" % name)
'''


@pytest.fixture(scope="module")
def detector():
    return BanditDetector()


def test_maps_bandit_issues_to_findings(detector):
    src = parse_source("snippet-1", CODE)  # a dataset record: no file on disk
    findings = detector.detect(src.units)
    by_rule = {f.rule_id: f for f in findings}
    assert {"B602", "B301", "B324", "B501", "B506", "B608"} <= set(by_rule)
    assert "B101" not in by_rule  # assert_used is skipped by default
    assert by_rule["B602"].start_line == 10 and by_rule["B602"].cwe == "CWE-78"
    assert by_rule["B608"].cwe == "CWE-89" and by_rule["B608"].start_line == 31
    assert by_rule["B301"].cwe == "CWE-502"
    for f in findings:
        assert f.detector == "bandit" and f.path == "snippet-1"
        assert f.confidence in CONFIDENCE.values() and f.message
        assert f.start_line <= f.end_line


def test_results_do_not_leak_between_files(detector):
    first = detector.check_text("a.py", "import pickle\npickle.loads(b'')\n")
    second = detector.check_text("b.py", "x = 1\n")
    assert {f.rule_id for f in first} == {"B301", "B403"} and second == []


def test_test_selection_and_skips():
    only_pickle = BanditDetector(tests=["B301"])
    found = only_pickle.check_text("c.py", CODE)
    assert {f.rule_id for f in found} == {"B301"}
    with_asserts = BanditDetector(skips=())
    assert "B101" in {f.rule_id for f in with_asserts.check_text("c.py", CODE)}


def test_registry_and_unparsable_text(detector):
    assert isinstance(create("bandit"), BanditDetector)
    broken = parse_source("bad.py", "def f(:\n")
    assert detector.detect(broken.units) == []
    assert detector.check_text("bad2.py", "def f(:\n") == []  # Bandit's own skip, not a crash


def test_only_requested_units(detector):
    src = parse_source("u.py", CODE)
    load_unit = [u for u in src.units if u.qualname == "load"]
    assert [f.rule_id for f in detector.detect(load_unit)] == ["B301"]


def test_indented_snippet(detector):
    src = parse_source("record-9", "    def load(self, blob):\n        import pickle\n        return pickle.loads(blob)\n")
    assert src.parser == "recovered"  # Bandit reads the repaired (dedented) lines
    assert ("B301", 3) in {(f.rule_id, f.start_line) for f in detector.detect(src.units)}


def test_python2_file_read_through_its_repaired_lines(detector):
    src = parse_source("py2.py", "import pickle\nprint 'loading'\ndef load(b):\n    return pickle.loads(b)\n")
    assert src.parser == "recovered"
    assert ("B301", 4) in {(f.rule_id, f.start_line) for f in detector.detect(src.units)}


def test_debugger_and_autoescape_share_the_static_rules_cwes():
    """Bandit files B201 and B701 under CWE-94; reported under the static rules' CWEs, the
    two detectors agree on one weakness per line."""
    from cwescan.detectors.static import StaticDetector

    code = ("import jinja2\nfrom flask import Flask\napp = Flask(__name__)\n"
            "env = jinja2.Environment(autoescape=False)\n"
            "app.run(host='0.0.0.0', debug=True)\n")
    units = parse_source("app.py", code).units
    bandit = {(f.start_line, f.rule_id): f.cwe for f in BanditDetector().detect(units)}
    static = {(f.start_line, f.rule_id): f.cwe for f in StaticDetector().detect(units)}
    assert bandit[(4, "B701")] == static[(4, "CWS079C")] == "CWE-79"
    assert bandit[(5, "B201")] == static[(5, "CWS489")] == "CWE-489"
