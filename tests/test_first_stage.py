"""The model stage's first stage with the shipped encoder: units with a rule finding always
reach the SLM, units the encoder scores below the threshold are cleared, a cleared unit is
remembered in the result cache (a warm scan does not load the encoder), and the scan reports
what the first stage did."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

from cwescan.core.units import parse_source  # noqa: E402
from cwescan.detectors.encoder import EncoderDetector  # noqa: E402
from cwescan.detectors.slm import SLMDetector  # noqa: E402
from cwescan.detectors.static import StaticDetector  # noqa: E402
from cwescan.scan.cache import ResultCache  # noqa: E402
from cwescan.scan.first_stage import FirstStage, create  # noqa: E402
from cwescan.scan.pipeline import ScanOptions, scan  # noqa: E402
from cwescan.scan.triage import FIRST_STAGE_KINDS, triage  # noqa: E402
from cwescan.train.first_stage import threshold_for_loss  # noqa: E402

from slm_helpers import SINK_APP as APP, tiny_slm_artifact  # noqa: E402


def _units_and_hints():
    """The units triage sends to the models (as the scan hands them over), the rule findings,
    and the ids of the units triage lets a first stage judge."""
    src = parse_source("app.py", APP)
    units = [u for u in src.units if u.code.strip()]
    hints = {}
    for f in StaticDetector().detect(units):
        hints.setdefault(f.path, []).append(f)
    verdicts = triage(units, hints)
    todo = [u for u, v in zip(units, verdicts) if v.review]
    return todo, hints, {id(u) for u, v in zip(units, verdicts) if v.kind in FIRST_STAGE_KINDS}


def _named(units, name):
    return next(u for u in units if u.qualname == name)


def test_threshold_for_loss_clears_at_most_the_allowed_share():
    scores = [i / 100 for i in range(100)]
    t = threshold_for_loss(scores, 0.02)
    assert sum(s < t for s in scores) == 2
    assert threshold_for_loss(scores, 0.0) == 0.0
    assert threshold_for_loss([], 0.02) == 0.0


def test_the_pair_gate_raises_the_threshold_only_where_it_is_higher():
    encoder = EncoderDetector(precision="fp32")
    own = encoder.card["first_stage"]["threshold"]
    assert FirstStage.from_card(encoder).threshold == own
    low = FirstStage.from_card(encoder, gate=own / 2)
    assert (low.threshold, low.chosen_by) == (own, "first stage")
    high = FirstStage.from_card(encoder, gate=own * 10)
    assert (high.threshold, high.chosen_by) == (own * 10, "pair gate")
    assert high.stats()["chosen_by"] == "pair gate"


def test_rule_findings_are_never_cleared_and_cleared_units_are_cached(tmp_path):
    units, hints, eligible = _units_and_hints()
    assert any(f.rule_id for f in hints["app.py"])  # os.system with a parameter: a rule finding
    cache = ResultCache(tmp_path / "cache")
    everything = FirstStage(EncoderDetector(precision="fp32"), threshold=1.01)  # clears all it may
    keep, cleared = everything.split(units, eligible, cache)
    assert _named(units, "run") in keep
    assert {u.qualname for u in cleared} >= {"listing", "version"}
    assert everything.scored == len(cleared) + 0 and everything.cleared == len(cleared)

    again = FirstStage(EncoderDetector(precision="fp32"), threshold=1.01)
    keep2, cleared2 = again.split(units, eligible, cache)
    assert [u.qualname for u in cleared2] == [u.qualname for u in cleared]
    assert again.scored == 0 and again.from_cache == len(cleared)
    assert again.detector.model is None, "cached verdicts must not load the encoder"

    nothing = FirstStage(EncoderDetector(precision="fp32"), threshold=0.0)
    keep3, cleared3 = nothing.split(units, eligible, None)
    assert cleared3 == [] and keep3 == units and nothing.scored == len(units) - 1


def test_shipped_encoder_has_a_first_stage_threshold():
    stage = create("encoder")
    assert stage is not None and 0.0 < stage.threshold < 0.5
    assert create("none") is None
    with pytest.raises(ValueError):
        create("bandit")


def test_scan_reports_the_first_stage(tmp_path):
    root = tmp_path / "tree"
    root.mkdir()
    (root / "app.py").write_text(APP)
    slm = SLMDetector(model=tiny_slm_artifact(tmp_path / "tiny"), precision="fp32")
    on = scan([root], ScanOptions(detectors=[]), detectors=[StaticDetector(), slm]).stats["model_stage"]
    first = on["first_stage"]
    assert first["detector"] == "encoder" and first["scored"] == 2  # listing, version; not run
    assert on["reviewed"] == 3 - first["cleared"]
    slm = SLMDetector(model=tiny_slm_artifact(tmp_path / "tiny2"), precision="fp32")
    off = scan([root], ScanOptions(detectors=[], first_stage="none"),
               detectors=[StaticDetector(), slm]).stats["model_stage"]
    assert "first_stage" not in off and off["reviewed"] == 3
    slm = SLMDetector(model=tiny_slm_artifact(tmp_path / "tiny3"), precision="fp32")
    every = scan([root], ScanOptions(detectors=[], review="all"),
                 detectors=[StaticDetector(), slm]).stats["model_stage"]
    assert "first_stage" not in every  # --review all: every unit goes to the model


def test_first_stage_loads_the_encoder_quietly(tmp_path):
    """The first stage loads the encoder before the SLM does; what torchao and torch print on
    import (their pytree deprecation lines, missing optional kernels) stays out of a scan's
    stderr. A fresh process, since an import that already happened prints nothing."""
    (tmp_path / "src").mkdir()
    # a sink unit the shipped encoder clears (scored ~0.0008), so the SLM never loads
    (tmp_path / "src" / "settings.py").write_text(
        "import json\n\n\ndef load_settings(path):\n    with open(path, encoding=\"utf-8\") as f:\n"
        "        return json.load(f)\n")
    env = {**os.environ, "CWESCAN_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "cwescan", "scan", str(tmp_path / "src"), "-f", "json", "-q"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    stage = json.loads(r.stdout)["stats"]["model_stage"]
    assert stage["first_stage"]["scored"] == 1  # the encoder was loaded and ran in this process
    assert r.stderr == ""


def test_a_warm_scan_does_not_load_the_first_stage(tmp_path, monkeypatch):
    """Units the first stage cleared in an earlier scan are answered from the result cache:
    the scan neither loads nor runs the encoder for them (counted on the real load)."""
    options = ScanOptions(detectors=[], cache=ResultCache(tmp_path / "cache"))
    loads = []
    real_load = EncoderDetector.load

    def counting_load(self):
        loads.append(self.model is None)
        return real_load(self)

    monkeypatch.setattr(EncoderDetector, "load", counting_load)
    root = tmp_path / "tree"
    root.mkdir()
    (root / "settings.py").write_text(  # one source unit, which the shipped encoder clears (~0.0004)
        "import os\n\n\ndef debug_enabled():\n    return os.getenv(\"APP_DEBUG\", \"0\") == \"1\"\n")
    artifact = tiny_slm_artifact(tmp_path / "tiny")
    cold = scan([root], options,
                detectors=[StaticDetector(), SLMDetector(model=artifact, precision="fp32")]).stats["model_stage"]
    assert cold["first_stage"]["cleared"] == 1 and any(loads)
    loads.clear()
    warm = scan([root], options,
                detectors=[StaticDetector(), SLMDetector(model=artifact, precision="fp32")]).stats["model_stage"]
    assert warm["first_stage"]["from_cache"] == 1 and warm["first_stage"]["scored"] == 0
    assert not any(loads), "a warm scan loaded the first stage's encoder"
