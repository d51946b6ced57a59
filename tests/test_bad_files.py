"""Bad input never stops a scan: each kind of bad file is reported with its reason in every
output format, and every good file is still scanned."""

import json
import os
import random
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cwescan.cli import app
from cwescan.detectors import REGISTRY
from conftest import CallDetector
from cwescan.detectors.base import Detector
from cwescan.scan.walk import read_source


class EvalCallDetector(CallDetector):
    """Flags every ``eval(...)`` call; sleeps on a unit holding ``SLOW_MARKER`` and fails on one
    holding ``BOOM_MARKER`` (conftest), to exercise the per-file time bound and detector errors."""

    name = "evalcall"
    calls = {"eval": ("CWE-95", "critical", 0.9)}

    def rule_id(self, called, cwe):
        return "TEST1"

    def message(self, called):
        return "eval() runs its argument as code"


GOOD = {
    "good1.py": "def f(x):\n    return eval(x)\n",
    "pkg/good2.py": "import os\n\n\ndef g(cmd):\n    return eval(cmd)\n",
    "pkg/sub/good3.py": "eval(input())\n",
}

# path -> expected reason
BAD = {
    "binary.py": "binary",
    "latin1.py": None,  # has a coding line: scanned normally
    "undecodable.py": "undecodable",
    "empty.py": "empty",
    "huge.py": "too-large",
    "deep.py": "too-deep",
    "nul.py": "nul-byte",
    "syntax.py": "syntax-error",
    "dangling.py": "broken-symlink",
    "pipe.py": "not-a-file",
    "slow.py": "timeout",
    "boom.py": "detector-error",
}


def make_tree(root: Path) -> None:
    for rel, text in GOOD.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    rng = random.Random(0)
    (root / "binary.py").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(rng.randrange(256) for _ in range(4000)))
    (root / "latin1.py").write_bytes(b"# -*- coding: latin-1 -*-\nname = '\xe9t\xe9'\neval(name)\n")
    (root / "undecodable.py").write_bytes(b"name = '\xe9t\xe9'\neval(name)\n")
    (root / "empty.py").write_bytes(b"")
    with open(root / "huge.py", "w") as f:
        line = "x = 1  # padding padding padding padding padding\n"
        f.write(line * (10 * 1024 * 1024 // len(line) + 1))
    (root / "deep.py").write_text("x = " + "-" * 100_000 + "1\n")
    (root / "nul.py").write_bytes(b"x = 1\n\0\neval(x)\n")
    (root / "syntax.py").write_text("def f(:\n    return eval(x)\n")
    os.symlink(root / "does-not-exist.py", root / "dangling.py")
    os.mkfifo(root / "pipe.py")
    (root / "slow.py").write_text("SLOW_MARKER = 1\n")
    (root / "boom.py").write_text("BOOM_MARKER = 1\n")


@pytest.fixture
def tree(tmp_path, monkeypatch):
    monkeypatch.setitem(REGISTRY, "evalcall", f"{__name__}:EvalCallDetector")
    root = tmp_path / "tree"
    root.mkdir()
    make_tree(root)
    return root


def scan(root: Path, fmt: str):
    args = ["scan", str(root), "-d", "evalcall", "--format", fmt, "--file-timeout", "0.5", "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    return result.stdout


def expected_reasons():
    return {path: reason for path, reason in BAD.items() if reason}


def test_json_lists_every_bad_file_and_scans_every_good_one(tree):
    doc = json.loads(scan(tree, "json"))
    reasons = {s["path"]: s["reason"] for s in doc["skipped"]}
    assert reasons == expected_reasons()
    for s in doc["skipped"]:
        assert s["message"]
    flagged = {f["path"] for f in doc["findings"]}
    assert flagged == set(GOOD) | {"latin1.py"}
    good_count = len(GOOD) + 1  # + latin1.py
    partial = {"empty.py", "deep.py", "syntax.py", "slow.py", "boom.py"}
    assert doc["stats"]["files_scanned"] == good_count + len(partial)
    assert doc["stats"]["files_skipped"] == len(expected_reasons()) - len(partial)


def test_text_names_each_bad_file_with_its_reason(tree):
    text = scan(tree, "text")
    section = text.split("Skipped or partly scanned files")[1]
    for path, reason in expected_reasons().items():
        line = next(ln for ln in section.splitlines() if ln.strip().startswith(path + " "))
        assert reason in line


def test_jsonl_has_a_skipped_record_per_bad_file(tree):
    records = [json.loads(line) for line in scan(tree, "jsonl").splitlines()]
    skipped = {r["path"]: r["reason"] for r in records if r["kind"] == "skipped"}
    assert skipped == expected_reasons()
    assert {r["path"] for r in records if r["kind"] == "finding"} == set(GOOD) | {"latin1.py"}
    assert records[-1]["kind"] == "stats"


def test_sarif_reports_bad_files_as_notifications(tree):
    doc = json.loads(scan(tree, "sarif"))
    invocation = doc["runs"][0]["invocations"][0]
    assert invocation["executionSuccessful"] is True
    notes = {n["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]: n
             for n in invocation["toolExecutionNotifications"]}
    assert {uri: n["descriptor"]["id"] for uri, n in notes.items()} == expected_reasons()
    assert notes["binary.py"]["level"] == "warning" and notes["syntax.py"]["level"] == "note"


def test_unreadable_file(tmp_path):
    p = tmp_path / "locked.py"
    p.write_text("x = 1\n")
    if os.geteuid() != 0:
        p.chmod(0)
        r = read_source(p, "locked.py")
    else:
        # root reads through chmod 000; /proc/self/mem is a regular file whose read fails
        r = read_source(Path("/proc/self/mem"), "mem.py")
    assert r.text is None and r.notice.reason == "unreadable"


def test_form_feeds_crlf_and_line_separators_keep_line_numbers(tmp_path, monkeypatch):
    monkeypatch.setitem(REGISTRY, "evalcall", f"{__name__}:EvalCallDetector")
    (tmp_path / "odd.py").write_bytes("import os\r\n\x0c\r\ns = 'a\u2028b\x85c'\r\n\r\n\r\ndef f(x):\r\n    return eval(x)\r\n".encode())
    r = CliRunner().invoke(app, ["scan", str(tmp_path), "-d", "evalcall", "-f", "json", "-q"])
    doc = json.loads(r.stdout)
    assert [(f["path"], f["line_number"]) for f in doc["findings"]] == [("odd.py", 7)]
    assert doc["skipped"] == []
    from cwescan.core.units import parse_source

    text = read_source(tmp_path / "odd.py", "odd.py").text
    f = next(u for u in parse_source("odd.py", text).units if u.qualname == "f")
    assert f.code.split("\n") == ["def f(x):", "    return eval(x)"]


def test_alarm_inside_the_parser_is_a_timeout_not_a_crash(tmp_path, monkeypatch):
    """The per-file alarm can go off inside CPython's parser, which may turn it into another
    error (`cwescan fuzz` saw "SystemError: AST constructor recursion depth mismatch"). Either
    way the file is reported as timed out, never as a crash."""
    from cwescan.scan import pipeline as scanner
    from cwescan.scan.walk import Candidate

    p = tmp_path / "many.py"
    p.write_text("x = [1, 2, 3]\n" * 30_000)  # parses in about 0.3 s
    # its worst case is near the bound: the parse is tried in a child first, stopped: skipped
    r = scanner.scan_file(Candidate(p, "many.py"), [], 5_000_000, 0.01, keep_source=False)
    assert [n.reason for n in r.notices] == ["parse-timeout"], r.notices
    monkeypatch.setattr(scanner, "parse_may_stall", lambda text, timeout: False)  # in process
    r = scanner.scan_file(Candidate(p, "many.py"), [], 5_000_000, 0.01, keep_source=False)
    assert [n.reason for n in r.notices] == ["timeout"], r.notices

    def parser_that_converts_the_alarm(path, text):
        try:
            time.sleep(5)
        except scanner.FileTimeout:
            raise SystemError("AST constructor recursion depth mismatch (before=156, after=177)")

    monkeypatch.setattr(scanner, "parse_source", parser_that_converts_the_alarm)
    r = scanner.scan_file(Candidate(p, "many.py"), [], 5_000_000, 0.05, keep_source=False)
    assert [n.reason for n in r.notices] == ["timeout"], r.notices


class AlarmConvertingDetector(Detector):
    """Like a detector calling into C code that turns the alarm into another exception."""

    name = "converting"

    def detect(self, units):
        from cwescan.scan.pipeline import FileTimeout

        try:
            time.sleep(5)
        except FileTimeout:
            raise SystemError("converted") from None
        return []


def test_alarm_converted_inside_a_detector_is_a_timeout(tmp_path):
    from cwescan.scan.pipeline import scan_file
    from cwescan.scan.walk import Candidate

    p = tmp_path / "a.py"
    p.write_text("x = 1\n")
    r = scan_file(Candidate(p, "a.py"), [AlarmConvertingDetector()], 5_000_000, 0.05, keep_source=False)
    assert [(n.reason, n.message) for n in r.notices] == [
        ("timeout", "converting: over 0.05 s on this file (--file-timeout)")]
