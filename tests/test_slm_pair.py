"""The SLM deciding as a pair with an encoder (tiny random models, real weights and cards): the
unit's score is the fused one, findings carry both models' scores, a different partner is
refused, and the scan loads the partner once for the pair and the first stage."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

from cwescan.core.pair import PairUnavailable, fuse, model_files  # noqa: E402
from cwescan.core.units import parse_source  # noqa: E402
from cwescan.detectors import create_detectors  # noqa: E402
from cwescan.detectors.encoder import EncoderDetector  # noqa: E402
from cwescan.detectors.slm import SLMDetector  # noqa: E402
from cwescan.detectors.static import StaticDetector  # noqa: E402
from cwescan.ml.artifacts import read_card, write_card  # noqa: E402
from cwescan.scan.pipeline import ScanOptions, scan  # noqa: E402

from encoder_helpers import tiny_artifact  # noqa: E402
from slm_helpers import SINK_APP as CODE, tiny_slm_artifact  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    adapter = tiny_slm_artifact(root / "slm", threshold=1.0)
    encoder_dir = tiny_artifact(root / "encoder")
    encoder = EncoderDetector(model_path=encoder_dir)
    card = read_card(adapter)
    card["pair"] = {"partner": "encoder", "weight": 0.5, "partner_files": model_files(encoder.card["files"]),
                    # the pair flags from 0 on: every unit's CWE and line get decoded
                    "policy": {"model_only": 0.0, "safe": 0.0, "vulnerable": 1.0, "cwe_head": 0.0, "line": 0.0}}
    write_card(adapter, card)
    return adapter, encoder_dir


def _units():
    return [u for u in parse_source("app.py", CODE).units if u.kind == "function"]


def test_a_paired_slm_scores_and_flags_with_the_fused_score(models):
    adapter, encoder_dir = models
    encoder = EncoderDetector(model_path=encoder_dir)
    alone = SLMDetector(model=adapter)
    paired = SLMDetector(model=adapter, partner=encoder)
    assert alone.threshold == 1.0 and paired.threshold == 0.0  # the pair's policy, not the card's own
    units = _units()
    own, theirs = alone.score(units), encoder.score(units)
    assert paired.score(units) == pytest.approx([fuse(a, b, 0.5) for a, b in zip(own, theirs)])
    findings = paired.detect(units)
    assert len(findings) == len(units)  # every unit reaches the pair's threshold 0
    for f, a, b in zip(findings, own, theirs):
        assert f.extra["partner"] == "encoder"
        assert f.extra["slm_score"] == pytest.approx(a, abs=1e-6)
        assert f.extra["partner_score"] == pytest.approx(b, abs=1e-6)
        assert f.extra["score"] == pytest.approx(fuse(a, b, 0.5), abs=1e-6)
        assert f.cwe in ("CWE-78", "CWE-89", "CWE-502")  # decoded, as for a flag of the SLM alone
    assert paired.cache_identity() != alone.cache_identity()
    assert paired.companions() == [encoder] and alone.companions() == []


def test_a_partner_the_pair_was_not_fitted_with_is_refused(models, tmp_path):
    adapter, _ = models
    other = EncoderDetector(model_path=tiny_artifact(tmp_path / "other", window_tokens=24))
    other.card = {**other.card, "files": {**other.card["files"], "model-00001.safetensors": "retrained"}}
    with pytest.raises(PairUnavailable):
        SLMDetector(model=adapter, partner=other)


def test_without_a_pair_in_its_card_the_slm_decides_alone(tmp_path):
    adapter = tiny_slm_artifact(tmp_path / "slm", threshold=0.5)
    (slm,) = create_detectors(["slm"], precision="fp32", slm_model=str(adapter), slm_partner="encoder")
    assert slm.partner is None and slm.threshold == 0.5


def test_the_scan_reports_the_pair_and_uses_the_partner_as_first_stage(models, tmp_path):
    adapter, encoder_dir = models
    card = read_card(encoder_dir)
    card["first_stage"] = {"threshold": 1.01}  # clears every unit it may judge
    write_card(encoder_dir, card)
    encoder = EncoderDetector(model_path=encoder_dir)
    paired = SLMDetector(model=adapter, partner=encoder)
    (tmp_path / "app.py").write_text(CODE)
    report = scan([tmp_path], ScanOptions(detectors=["static", "slm"]), detectors=[StaticDetector(), paired])
    stage = report.stats["model_stage"]
    assert stage["pair"] == {"slm": "encoder"}
    assert stage["first_stage"]["detector"] == "encoder" and stage["first_stage"]["cleared"] > 0
    # the pair itself read only the unit with a rule finding; the partner also judged the units
    # it cleared, so the first stage ran on the partner (one encoder, loaded once)
    [run] = [u for u in parse_source("app.py", CODE).units if u.qualname == "run"]
    alone = EncoderDetector(model_path=encoder_dir)
    alone.score([run])
    assert encoder.windows_scored > alone.windows_scored


def test_the_pair_gate_is_the_first_stage_when_the_encoder_card_has_none(tmp_path):
    adapter = tiny_slm_artifact(tmp_path / "slm", threshold=1.0)
    encoder_dir = tiny_artifact(tmp_path / "encoder")  # its card has no first-stage threshold
    card = read_card(adapter)
    card["pair"] = {"partner": "encoder", "weight": 0.5,
                    "partner_files": model_files(EncoderDetector(model_path=encoder_dir).card["files"]),
                    "policy": {"model_only": 0.5, "safe": 0.0, "vulnerable": 1.0, "cwe_head": 0.0, "line": 0.0},
                    "gate": {"threshold": 1.01}}  # the pair can flag no unit without a rule finding
    write_card(adapter, card)
    paired = SLMDetector(model=adapter, partner=EncoderDetector(model_path=encoder_dir))
    assert paired.gate() == 1.01 and SLMDetector(model=adapter).gate() == 0.0
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text(CODE)
    report = scan([tmp_path / "src"], ScanOptions(detectors=["static", "slm"]), detectors=[StaticDetector(), paired])
    first = report.stats["model_stage"]["first_stage"]
    assert first["chosen_by"] == "pair gate" and first["threshold"] == 1.01 and first["cleared"] > 0
    # what the gate cleared had no rule finding: the units the SLM read are exactly those with one
    stage = report.stats["model_stage"]
    assert stage["reviewed"] == stage["reasons"]["static-finding"] > 0


def test_rule_findings_the_partner_settles_are_not_read_by_the_slm(tmp_path):
    adapter = tiny_slm_artifact(tmp_path / "slm", threshold=1.0)
    encoder_dir = tiny_artifact(tmp_path / "encoder")
    card = read_card(adapter)
    # the pair's "safe" is 0: no SLM answer at or above the floor can lower a rule finding, so a
    # unit whose rule findings are all shown is settled by whatever the encoder says
    card["pair"] = {"partner": "encoder", "weight": 0.5,
                    "partner_files": model_files(EncoderDetector(model_path=encoder_dir).card["files"]),
                    "policy": {"model_only": 1.0, "safe": 0.0, "vulnerable": 0.001, "cwe_head": 0.0, "line": 0.0},
                    "gate": {"threshold": 0.0, "slm_ceiling": 0.99}, "settle": {"slm_floor": 0.01}}
    write_card(adapter, card)
    units = _units()
    rules = [f for f in StaticDetector().detect(units) if f.confidence >= 0.3]
    ruled = {u.qualname for u in units if any(f.start_line in range(u.start_line, u.end_line + 1) for f in rules)}
    assert ruled and ruled != {u.qualname for u in units}
    paired = SLMDetector(model=adapter, partner=EncoderDetector(model_path=encoder_dir))
    found = paired.detect(units, hints={"app.py": rules})
    assert paired.stats["settled_units"] == len(ruled)
    assert paired.stats["units"] == len(units) - len(ruled)  # the SLM read the others only
    settled = [f for f in found if f.extra.get("slm_second_opinion", {}).get("verdict") == "settled"]
    assert len(settled) == len(rules)
    for f, rule in zip(sorted(settled, key=lambda f: f.start_line), sorted(rules, key=lambda f: f.start_line)):
        assert (f.confidence, f.severity, f.cwe) == (rule.confidence, rule.severity, rule.cwe)
        assert 0.0 <= f.extra["slm_second_opinion"]["partner_score"] <= 1.0
    # a finding the scan hides could be raised into view by a confident "vulnerable": read
    paired.set_display(max(f.confidence for f in rules) + 0.01)
    paired.stats["settled_units"] = 0
    paired.detect(units, hints={"app.py": rules})
    assert paired.stats["settled_units"] == 0
    # and the benchmark's switch reads every unit
    paired.set_display(0.0)
    paired.set_settle(False)
    identity = paired.cache_identity()
    paired.detect(units, hints={"app.py": rules})
    assert paired.stats["settled_units"] == 0
    paired.set_settle(True)
    assert paired.cache_identity() != identity  # a settled answer is not the SLM's: cached apart
