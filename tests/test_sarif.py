"""SARIF 2.1.0 output: valid against the official schema, GitHub's properties, and
fingerprints that survive lines shifting."""

import json
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from cwescan.cli import app
from cwescan.detectors import REGISTRY
from conftest import CallDetector

SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text())
VULNAPP = Path(__file__).resolve().parents[1] / "examples" / "vulnapp"


class TCalls(CallDetector):
    """Flags a few dangerous calls by name, like a static rule set would."""

    calls = {"eval": ("CWE-95", "critical", 0.75), "loads": ("CWE-502", "critical", 0.75),
             "md5": ("CWE-328", "medium", 0.75), "choice": ("CWE-330", "low", 0.75)}

    def rule_id(self, called, cwe):
        return f"TC-{called}"

    def message(self, called):
        return f"{called}() on possibly untrusted data"


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    monkeypatch.setitem(REGISTRY, "t_calls", f"{__name__}:TCalls")
    monkeypatch.setitem(REGISTRY, "t_model", "conftest:KeywordModel")


def sarif(*args) -> dict:
    r = CliRunner().invoke(app, ["scan", *map(str, args), "-f", "sarif", "-q", "--fail-on", "none"])
    assert r.exit_code == 0, (r.output, r.exception)
    return json.loads(r.stdout)


def validate(doc: dict) -> None:
    jsonschema.Draft4Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(doc)


def test_sarif_of_the_demo_app_is_valid_with_static_and_model_rules():
    doc = sarif(VULNAPP, "-d", "t_calls", "-d", "t_model")
    validate(doc)
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    ids = [r["id"] for r in rules]
    assert "SLM-CWE-20" in ids and "TC-eval" in ids
    for i, result in enumerate(run["results"]):
        rule = rules[result["ruleIndex"]]
        assert rule["id"] == result["ruleId"]
        loc = result["locations"][0]["physicalLocation"]
        assert loc["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
        assert not loc["artifactLocation"]["uri"].startswith("/")
        assert (VULNAPP.parents[1] / loc["artifactLocation"]["uri"]).is_file()
        assert result["partialFingerprints"]["primaryLocationLineHash"]
    by_id = {r["id"]: r for r in rules}
    assert by_id["TC-eval"]["properties"]["tags"] == ["security", "external/cwe/cwe-095"]
    assert by_id["TC-eval"]["properties"]["security-severity"] == "9.8"
    assert by_id["TC-eval"]["properties"]["precision"] == "high"
    assert by_id["TC-md5"]["properties"]["tags"][1] == "external/cwe/cwe-328"
    levels = {r["ruleId"]: r["level"] for r in run["results"]}
    assert levels["TC-eval"] == "error" and levels["TC-md5"] == "warning" and levels["TC-choice"] == "note"
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"].startswith("file://")
    assert run["invocations"][0]["executionSuccessful"] is True


def test_schema_rejects_a_broken_document():
    doc = sarif(VULNAPP, "-d", "t_calls")
    doc["runs"][0]["results"][0]["level"] = "fatal"
    with pytest.raises(jsonschema.ValidationError):
        validate(doc)


def hashes(root: Path) -> list[tuple[int, str]]:
    doc = sarif(root, "-d", "t_calls")
    return [(r["locations"][0]["physicalLocation"]["region"]["startLine"],
             r["partialFingerprints"]["primaryLocationLineHash"]) for r in doc["runs"][0]["results"]]


def test_line_hash_survives_lines_inserted_above(tmp_path):
    body = "def f(data):\n    return eval(data)\n\n\ndef g(data):\n    return eval(data)\n"
    (tmp_path / "a.py").write_text("import os\n\n" + body)
    before = hashes(tmp_path)
    (tmp_path / "a.py").write_text("import os\nimport sys\n\n# a comment\nX = 1\n\n" + body)
    after = hashes(tmp_path)
    assert [line for line, _ in after] == [line + 4 for line, _ in before]
    assert [h for _, h in after] == [h for _, h in before]
    # identical flagged code twice in a file: same content hash, told apart by the counter
    (h1, c1), (h2, c2) = (h.split(":") for _, h in before)
    assert h1 == h2 and (c1, c2) == ("1", "2")


def test_uris_are_percent_encoded(tmp_path):
    (tmp_path / "my app").mkdir()
    (tmp_path / "my app" / "vüe.py").write_text("eval(x)\n")
    doc = sarif(tmp_path, "-d", "t_calls")
    validate(doc)
    uri = doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "my%20app/v%C3%BCe.py"


def test_line_hash_changes_when_the_flagged_code_changes(tmp_path):
    (tmp_path / "a.py").write_text("x = eval(data)\n")
    before = hashes(tmp_path)
    (tmp_path / "a.py").write_text("x = eval(other)\n")
    changed = hashes(tmp_path)
    assert changed[0][1] != before[0][1]
    (tmp_path / "a.py").write_text("x  =  eval(other)   \n")  # whitespace only: same hash
    assert hashes(tmp_path) == changed


def check_demo_sarif(doc: dict) -> None:
    validate(doc)
    run = doc["runs"][0]
    assert len(run["results"]) >= 12
    rules = {r["id"]: r for r in run["tool"]["driver"]["rules"]}
    for result in run["results"]:
        rule = rules[result["ruleId"]]
        assert rule["properties"]["tags"][0] == "security"
        assert all(t.startswith("external/cwe/cwe-") and len(t.rsplit("-", 1)[1]) >= 3
                   for t in rule["properties"]["tags"][1:])
        assert rule["help"]["markdown"] and rule["fullDescription"]["text"]


def test_sarif_of_the_demo_app_with_the_static_rules():
    doc = sarif(VULNAPP, "-d", "static")
    check_demo_sarif(doc)
    rules = {r["id"]: r for r in doc["runs"][0]["tool"]["driver"]["rules"]}
    # static rules are documented by their docstrings
    from cwescan.detectors.static import RULES

    assert rules["CWS089"]["help"]["text"].startswith(RULES["CWS089"].doc)


@pytest.mark.slow
def test_sarif_of_the_demo_app_with_the_default_detectors():
    """Exactly the documented command: default detectors (static, plus the shipped SLM when
    it is installed)."""
    r = CliRunner().invoke(app, ["scan", str(VULNAPP), "--format", "sarif", "-q"])
    assert r.exit_code == 0, (r.output, r.exception)
    check_demo_sarif(json.loads(r.stdout))


def test_a_finding_resting_on_a_caller_points_at_it():
    """A helper's finding whose data a caller handed it (in another file, or the same one)
    lists the call as a related location, in the schema's shape GitHub shows."""
    fixtures = Path(__file__).parent / "fixtures" / "across_files" / "shop"
    doc = sarif(fixtures, "-d", "static", "--no-cache")
    validate(doc)
    results = [r for r in doc["runs"][0]["results"] if r["ruleId"] == "CWS078"]
    (related,) = [r["relatedLocations"] for r in results if "relatedLocations" in r]
    (where,) = related
    assert where["physicalLocation"]["artifactLocation"]["uri"].endswith("shop/views.py")
    assert where["physicalLocation"]["region"]["startLine"] == 13
    assert where["message"]["text"]
