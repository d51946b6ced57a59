"""Inline suppressions (any line of the flagged statement, CWE families, # nosec), unused
suppressions, and the count-aware baseline."""

import json

from typer.testing import CliRunner

from cwescan.cli import app
from cwescan.detectors import REGISTRY
from conftest import CallDetector
from cwescan.scan.suppress import FileSuppressions, apply_baseline, parse_directives


class SuppressCalls(CallDetector):
    """Flags calls to ``eval`` (CWE-95) and ``system`` (CWE-78): enough real findings to
    suppress and baseline."""

    name = "calls"
    calls = {"eval": ("CWE-95", "critical", 0.8), "system": ("CWE-78", "critical", 0.8)}

    def rule_id(self, called, cwe):
        return "T" + cwe[4:]

    def message(self, called):
        return "dangerous call"


def findings_of(text: str, path: str = "a.py"):
    from cwescan.core.units import parse_source

    src = parse_source(path, text)
    return src, SuppressCalls().detect(src.units)


def hidden(text: str) -> list[bool]:
    src, found = findings_of(text)
    sups = FileSuppressions.build("a.py", text, src.tree)
    return [sups.hide(f) is not None for f in found]


def test_directive_parsing():
    ds = parse_directives("x = 1  # cwescan: ignore[CWE-89, cwe-078]\ny = 2  # nosec B602\n"
                          "s = '# cwescan: ignore'\n")
    assert [(d.line, d.kind, d.codes) for d in ds] == [
        (1, "cwescan", ("CWE-89", "CWE-78")), (2, "nosec", ("B602",))]


def test_suppression_on_any_line_of_the_statement():
    text = ("import os\n"
            "os.system(\n"
            "    'ls'  # cwescan: ignore[CWE-78]\n"
            ")\n"
            "os.system('ls')\n")
    assert hidden(text) == [True, False]


def test_suppression_matches_cwe_family_only():
    text = ("import os\n"
            "os.system('a')  # cwescan: ignore[CWE-77]\n"  # same family as CWE-78
            "os.system('b')  # cwescan: ignore[CWE-89]\n"
            "eval('c')  # cwescan: ignore\n"
            "eval('d')  # nosec\n")
    assert hidden(text) == [True, False, True, True]


def test_comment_in_a_body_does_not_reach_the_header():
    text = ("if eval('x'):\n"
            "    y = 1  # cwescan: ignore\n")
    assert hidden(text) == [False]


def test_unused_suppressions_are_reported():
    text = ("eval('a')  # cwescan: ignore[CWE-95, CWE-89]\n"
            "x = 1  # cwescan: ignore\n"
            "y = 2  # nosec\n")
    src, found = findings_of(text)
    sups = FileSuppressions.build("a.py", text, src.tree)
    for f in found:
        sups.hide(f)
    assert sups.unused() == [
        {"path": "a.py", "line": 1, "directive": "# cwescan: ignore[CWE-95, CWE-89]", "unused": ["CWE-89"]},
        {"path": "a.py", "line": 2, "directive": "# cwescan: ignore", "unused": ["*"]},
    ]


def test_apply_baseline_is_count_aware():
    from collections import Counter

    assert apply_baseline(["a", "a", "b", "a"], Counter({"a": 2})) == [True, True, False, False]


def run(args, monkeypatch):
    monkeypatch.setitem(REGISTRY, "calls", f"{__name__}:SuppressCalls")
    result = CliRunner().invoke(app, ["scan", *args, "-d", "calls", "-q"])
    return result


def test_baseline_hides_exactly_one_copy_per_entry(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("import os\nos.system('ls')\neval('1')\n")
    baseline = tmp_path / "baseline.json"
    r = run([str(src), "--write-baseline", str(baseline), "-f", "json"], monkeypatch)
    assert r.exit_code == 1, r.output
    assert len(json.loads(baseline.read_text())["findings"]) == 2

    r = run([str(src), "--baseline", str(baseline), "-f", "json"], monkeypatch)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["findings"] == [] and doc["stats"]["baselined"] == 2

    # Code moved down and a second identical os.system('ls') added: one copy stays hidden,
    # the new one shows.
    (src / "a.py").write_text("import os\n\n\nos.system('ls')\neval('1')\nos.system('ls')\n")
    r = run([str(src), "--baseline", str(baseline), "-f", "json"], monkeypatch)
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert [(f["line_number"], f["cwe"]) for f in doc["findings"]] == [(6, "CWE-78")]
    assert doc["stats"]["baselined"] == 2


def test_inline_suppression_and_unused_report_through_the_cli(tmp_path, monkeypatch):
    (tmp_path / "a.py").write_text("eval('1')  # cwescan: ignore[CWE-95]\nx = 1  # cwescan: ignore[CWE-89]\n")
    r = run([str(tmp_path), "-f", "json"], monkeypatch)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["findings"] == [] and doc["stats"]["suppressed"] == 1
    assert doc["unused_suppressions"] == [
        {"path": "a.py", "line": 2, "directive": "# cwescan: ignore[CWE-89]", "unused": ["CWE-89"]}]


def test_bad_baseline_file_exits_2(tmp_path, monkeypatch):
    (tmp_path / "a.py").write_text("x = 1\n")
    bad = tmp_path / "baseline.json"
    bad.write_text("not json")
    r = run([str(tmp_path / "a.py"), "--baseline", str(bad)], monkeypatch)
    assert r.exit_code == 2 and "baseline" in r.stderr
