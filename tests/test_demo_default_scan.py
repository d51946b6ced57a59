"""The demo app scanned as a user runs it: default detectors (static + the shipped SLM), and the
fast scan (static + the shipped encoder), each under its decision policy and the default display
confidence. Loads the real models: marked slow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cwescan.cli import app
from cwescan.core.cwe import same_family
from cwescan.core.units import body_lines, parse_source

VULNAPP = Path(__file__).resolve().parents[1] / "examples" / "vulnapp"


def scan_demo(*args: str) -> dict:
    r = CliRunner().invoke(app, ["scan", str(VULNAPP), "-f", "json", "-q", "--no-cache", *args])
    assert r.exit_code == 0, (r.output, r.exception)
    return json.loads(r.stdout)


@pytest.mark.slow
def test_default_scan_of_the_demo_finds_every_weakness_once_and_points_at_it():
    doc = scan_demo()
    assert doc["stats"]["detectors"] == ["static", "slm"]
    check_answers(doc, model="slm")


@pytest.mark.slow
def test_fast_scan_of_the_demo_finds_every_weakness_once_and_points_at_it():
    doc = scan_demo("--detector", "static,encoder")
    assert doc["stats"]["detectors"] == ["static", "encoder"]
    check_answers(doc, model="encoder")


def check_answers(doc: dict, model: str) -> None:
    """Every weakness of the answer key found once, in its function, at a statement of it; at
    most one finding in the safe functions; nothing the model alone supports above medium."""
    key = json.loads((VULNAPP / "ANSWERS.json").read_text())
    prefix = "examples/vulnapp/"
    findings = [{**f, "path": f["path"].removeprefix(prefix)} for f in doc["findings"]]
    # every weakness in the answer key is found
    missed = [v for v in key["vulnerable"]
              if not any(f["path"] == v["path"] and f["line_number"] <= v["line"] <= f["end_line"]
                         and same_family(f["cwe"], v["cwe"]) for f in findings)]
    assert not missed, missed
    # at most one finding in the functions that hold none
    false_alarms = [f for f in findings for s in key["safe"]
                    if f["path"] == s["path"] and s["start_line"] <= f["line_number"] <= s["end_line"]]
    assert len(false_alarms) <= 1, false_alarms
    # no weakness reported twice: one finding per weakness in its function and CWE family
    from cwescan.core.cwe import family

    for v in key["vulnerable"]:
        src = parse_source(v["path"], (VULNAPP / v["path"]).read_text())
        [unit] = [u for u in src.units if (u.kind == "module" if v["function"] == "<module>"
                                           else u.qualname.split(".")[-1] == v["function"])]
        same = [f for f in findings if f["path"] == v["path"] and family(f["cwe"]) == family(v["cwe"])
                and unit.start_line <= f["line_number"] <= unit.end_line]
        assert len(same) == 1, (v, same)
    # every finding points at a statement of its unit's body, or spans a whole unit
    for f in findings:
        src = parse_source(f["path"], (VULNAPP / f["path"]).read_text())
        lines = set().union(*(body_lines(u) for u in src.units))
        spans = {(u.start_line, u.end_line) for u in src.units}
        assert (f["line_number"] in lines) or ((f["line_number"], f["end_line"]) in spans), f
    # a finding the model alone supports is never above medium
    assert all(f["severity"] in ("low", "medium") for f in findings if f["detector"] == model)
    # where a rule saw the weakness, the finding is the rule's (its sink line, the model's opinion
    # folded in), never a model finding claiming that no rule confirms it
    assert not [f for f in findings if "static" in f["detector"].split("+") and "no rule confirms" in f["explanation"]]
