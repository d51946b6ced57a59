"""`cwescan scan --review/--no-cache`: the summary line, JSON stats and cache use through the
command line, with a tiny random SLM standing in for the shipped one."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

from typer.testing import CliRunner  # noqa: E402

from cwescan.cli import app  # noqa: E402

from slm_helpers import tiny_slm_artifact  # noqa: E402

CODE = '''import os


def run(cmd):
    os.system("ls " + cmd)


def add(a, b):
    return a + b
'''


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    return tiny_slm_artifact(tmp_path_factory.mktemp("tiny-slm"))


def _invoke(root, *args):
    return CliRunner().invoke(app, ["scan", str(root), "-d", "static,slm", "--precision", "fp32",
                                    "-f", "json", "--fail-on", "none", *args])


def test_summary_counts_and_cache_through_the_cli(tmp_path, adapter, monkeypatch):
    monkeypatch.setattr("cwescan.detectors.slm.model_dir", lambda name: adapter)
    monkeypatch.setenv("CWESCAN_CACHE", str(tmp_path / "cache"))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text(CODE)
    root = tmp_path / "src"

    cold = _invoke(root)
    assert cold.exit_code == 0, cold.output
    # the only unit reviewed holds a rule finding: the encoder's first stage has nothing to judge
    assert "units: 3; model reviewed 1, triage cleared 2, encoder cleared 0, from cache 0" in cold.stderr
    stage = json.loads(cold.stdout)["stats"]["model_stage"]
    assert stage == {"review": "triage", "units": 3, "reviewed": 1, "cleared": 2, "cached": 0,
                     "reasons": {"no-surface": 2, "static-finding": 1}, "model_only_withheld": 0, "settled": 0,
                     "first_stage": {"detector": "encoder", "threshold": stage["first_stage"]["threshold"],
                                     "chosen_by": "first stage", "scored": 0, "cleared": 0, "from_cache": 0}}

    warm = _invoke(root)
    assert "model reviewed 0, triage cleared 2, encoder cleared 0, from cache 1" in warm.stderr
    assert json.loads(warm.stdout)["findings"] == json.loads(cold.stdout)["findings"]

    uncached = _invoke(root, "--no-cache", "--review", "all")
    assert "units: 3; model reviewed 3, triage cleared 0, from cache 0 (--review all)" in uncached.stderr

    sarif = _invoke(root, "-f", "sarif", "-q")
    assert sarif.stderr == ""  # --quiet: no notes, and the model libraries' noise is held back
    props = json.loads(sarif.stdout)["runs"][0]["properties"]["stats"]["model_stage"]
    assert props["cached"] == 1 and props["reviewed"] == 0


def test_bad_review_value_is_a_usage_error(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    r = CliRunner().invoke(app, ["scan", str(tmp_path), "-d", "static", "--review", "some"])
    assert r.exit_code == 2 and "--review" in r.output


def test_device_reaches_the_model_detectors_and_bad_values_are_usage_errors(tmp_path, adapter, monkeypatch):
    from cwescan.detectors import create_detectors

    monkeypatch.setattr("cwescan.detectors.slm.model_dir", lambda name: adapter)
    static, slm = create_detectors(["static", "slm"], "fp32", device="cpu")
    assert slm.device == "cpu" and not hasattr(static, "device")
    (tmp_path / "a.py").write_text("x = 1\n")
    r = CliRunner().invoke(app, ["scan", str(tmp_path), "-d", "static", "--device", "tpu"])
    assert r.exit_code == 2 and "--device" in r.output
