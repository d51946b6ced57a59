"""Test code: scanned, reported one severity lower, never failing --fail-on (by default), and
test idioms (test clients, localhost servers, pickle round trips) not flagged at all.

The fixture is a small real project (tests/fixtures/testcode/shop): an app with one real
weakness and a pytest suite using Flask's test client. It is copied out of this repository
before scanning, so its own root decides which files are test code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cwescan.cli import app
from cwescan.core.testcode import TestPaths, is_test_path

FIXTURE = Path(__file__).parent / "fixtures" / "testcode" / "shop"


@pytest.fixture()
def shop(tmp_path) -> Path:
    root = tmp_path / "shop"
    shutil.copytree(FIXTURE, root)
    return root


def scan(root: Path, *args: str):
    r = CliRunner().invoke(app, ["scan", str(root), "-d", "static", "-f", "json", "-q", *args])
    assert r.exit_code in (0, 1), (r.output, r.exception)
    return r.exit_code, json.loads(r.stdout)


def marks(root: Path) -> tuple[set, set]:
    """(path, line, rule) marked ``# expect:`` and ``# ok:`` in the project's files."""
    expect, ok = set(), set()
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).as_posix()
        for n, line in enumerate(path.read_text().split("\n"), 1):
            for kind, into in (("# expect: ", expect), ("# ok: ", ok)):
                if kind in line:
                    into.add((rel, n, line.split(kind)[1].strip()))
    return expect, ok


@pytest.mark.parametrize("path, is_test", [
    ("tests/test_views.py", True), ("src/pkg/tests/helpers.py", True), ("test_app.py", True),
    ("app_test.py", True), ("pkg/conftest.py", True), ("numpy/testing/utils.py", True),
    ("blog/tests.py", True), ("src/flask/testing.py", False), ("src/latest.py", False),
    ("contest.py", False), ("attest/x.py", False), ("vulnapp/app.py", False),
])
def test_default_test_paths(path, is_test):
    assert is_test_path(path) is is_test


def test_test_paths_can_be_replaced():
    custom = TestPaths(["spec/"])
    assert custom.match("spec/a.py") and not custom.match("tests/test_a.py")
    assert not TestPaths([]).match("tests/test_a.py")


def test_test_findings_are_lower_marked_and_never_fail(shop):
    code, doc = scan(shop, "--fail-on", "low")
    found = {(f["path"], f["line_number"], f["rule_id"]): f for f in doc["findings"]}
    expect, ok = marks(shop)
    assert expect <= set(found), sorted(expect - set(found))
    assert not (ok & set(found)), sorted(ok & set(found))  # test clients, localhost, round trips

    app_finding = found[("app.py", 9, "CWS918")]
    assert "in_test" not in app_finding and app_finding["severity"] == "high"  # unchanged output
    tests = [f for f in doc["findings"] if f["path"].startswith("tests/")]
    assert tests and all(f["in_test"] is True for f in tests)
    assert doc["stats"]["in_test"] == len(tests)
    assert code == 1  # the app's own finding fails the scan

    _, normal = scan(shop, "--tests", "normal")
    as_normal = {(f["path"], f["line_number"]): f["severity"] for f in normal["findings"]}
    order = ["low", "medium", "high", "critical"]
    for f in tests:
        assert order.index(f["severity"]) == order.index(as_normal[(f["path"], f["line_number"])]) - 1
    assert not any("in_test" in f for f in normal["findings"]) and "in_test" not in normal["stats"]


def test_only_test_findings_do_not_fail_the_scan(shop):
    (shop / "app.py").unlink()
    code, doc = scan(shop, "--fail-on", "low")
    assert doc["findings"] and code == 0
    code, _ = scan(shop, "--fail-on", "low", "--tests", "normal")
    assert code == 1


def test_skip_leaves_test_files_unscanned(shop):
    _, doc = scan(shop, "--tests", "skip")
    assert [f["path"] for f in doc["findings"]] == ["app.py"]
    assert doc["stats"]["files_scanned"] == 1 and doc["stats"]["test_files_not_scanned"] == 2


def test_config_sets_the_mode_and_the_paths(shop):
    pyproject = shop / "pyproject.toml"
    base = pyproject.read_text()
    pyproject.write_text(base + '\n[tool.cwescan]\ntests = "skip"\n')
    _, doc = scan(shop)
    assert doc["stats"]["files_scanned"] == 1
    pyproject.write_text(base + '\n[tool.cwescan]\ntest-paths = ["app.py"]\n')
    _, doc = scan(shop)
    by_path = {f["path"]: f.get("in_test", False) for f in doc["findings"]}
    assert by_path["app.py"] is True and by_path["tests/test_views.py"] is False
    pyproject.write_text(base + '\n[tool.cwescan]\ntests = "ignore"\n')
    r = CliRunner().invoke(app, ["scan", str(shop), "-d", "static", "-q"])
    assert r.exit_code == 2 and "tests" in r.output


def test_text_and_sarif_show_test_code(shop):
    r = CliRunner().invoke(app, ["scan", str(shop), "-d", "static", "--fail-on", "none"])
    lines = r.stdout.splitlines()
    app_line = next(line for line in lines if "CWS918" in line and "0.90" in line)
    assert "test code" not in app_line
    assert any("CWS798" in line and "test code" in line for line in lines)
    assert "in test code" in lines[-1]
    r = CliRunner().invoke(app, ["scan", str(shop), "-d", "static", "-f", "sarif", "-q", "--fail-on", "none"])
    results = json.loads(r.stdout)["runs"][0]["results"]
    in_test = {res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]: res["properties"].get("in_test")
               for res in results}
    assert in_test["app.py"] is None and in_test["tests/test_views.py"] is True


def test_test_and_fixture_parameters_are_test_data():
    """pytest hands tests and fixtures their fixtures and parametrized values: not a taint
    source in test files; a helper's parameter still is (weakly), as outside tests."""
    from cwescan.core.units import parse_source
    from cwescan.detectors.static import StaticDetector

    # (URLs built from the parameter: a parameter passed as the whole URL is its caller's
    # choice anywhere)
    code = ("import pytest, requests\n"
            "def test_get(host):\n    requests.get('https://' + host)\n"
            "@pytest.fixture\ndef page(base):\n    return requests.get('https://' + base)\n"
            "def fetch(host):\n    return requests.get('https://' + host)\n")

    def lines(path):
        found = StaticDetector(select=["CWS918"]).detect(parse_source(path, code).units)
        return sorted(f.start_line for f in found)

    assert lines("tests/test_api.py") == [8]
    assert lines("api.py") == [3, 6, 8]
