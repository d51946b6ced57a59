"""EncoderDetector on a tiny random artifact: scores, findings, precisions, and refusal of a
tampered weight file."""

import json

import pytest

from cwescan.ml.artifacts import ArtifactError
from cwescan.detectors import create
from cwescan.core.units import parse_source
from encoder_helpers import tiny_artifact

CODE = '''import os


def run(user):
    os.system("ls " + user)


def add(a, b):
    return a + b
''' + "\n".join(f"X{i} = {i} * 2 + {i}" for i in range(40)) + "\n"


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return tiny_artifact(tmp_path_factory.mktemp("enc"))


@pytest.fixture(scope="module")
def units():
    return parse_source("app.py", CODE).units


def test_scores_are_probabilities_per_unit(artifact, units):
    det = create("encoder", model_path=artifact)
    scores = det.score(units)
    assert len(scores) == len(units)
    assert all(0.0 <= s <= 1.0 for s in scores)
    # the module unit is longer than one 32-token window: it was windowed, not cut
    assert det.windows_scored > len(units)
    assert det.score([]) == []


def test_threshold_zero_reports_every_unit_inside_its_span(artifact, units):
    det = create("encoder", model_path=artifact, threshold=0.0)
    findings = det.detect(units)
    assert len(findings) == len(units)
    for f, u in zip(findings, units):
        assert f.detector == "encoder" and f.path == "app.py"
        assert u.start_line <= f.start_line <= u.end_line
        assert f.cwe in ("CWE-78", "CWE-89")  # "other" is never reported as a CWE
    assert create("encoder", model_path=artifact, threshold=1.01).detect(units) == []


def test_detect_then_score_runs_the_model_once(artifact, units):
    det = create("encoder", model_path=artifact, threshold=0.0)
    findings = det.detect(units)
    once = det.windows_scored
    scores = det.score(units)
    assert det.windows_scored == once
    assert [f.confidence for f in findings] == pytest.approx(scores)
    det.score(units[:1])  # remembered per unit text
    assert det.windows_scored == once
    det.clear_cache()
    det.score(units[:1])
    assert det.windows_scored > once


def test_blank_units_score_zero(artifact):
    src = parse_source("blank.py", "\n\n   \n")
    det = create("encoder", model_path=artifact, threshold=0.0)
    assert det.score(src.units) == [0.0] * len(src.units)
    assert det.detect(src.units) == []


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_lower_precisions_stay_close_to_fp32(artifact, units, precision):
    ref = create("encoder", model_path=artifact).score(units)
    got = create("encoder", model_path=artifact, precision=precision).score(units)
    assert max(abs(a - b) for a, b in zip(ref, got)) < 0.05


def test_threshold_comes_from_config_when_the_card_has_none(tmp_path):
    d = tiny_artifact(tmp_path, threshold=0.37)
    assert create("encoder", model_path=d).threshold == pytest.approx(0.37)


def test_the_cards_calibrated_threshold_decides_over_configs(tmp_path):
    from cwescan.ml.artifacts import read_card, write_card

    d = tiny_artifact(tmp_path, threshold=0.37)  # training's best-F1 threshold in config.json
    write_card(d, {**read_card(d), "threshold": 0.81})  # `cwescan train calibrate --write`
    assert create("encoder", model_path=d).threshold == pytest.approx(0.81)


def test_tampered_weights_are_refused(tmp_path):
    d = tiny_artifact(tmp_path)
    weights = sorted(d.glob("model-*.safetensors"))[0]
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match"):
        create("encoder", model_path=d)


def test_unlisted_artifact_is_refused(tmp_path):
    d = tiny_artifact(tmp_path)
    card = json.loads((d / "card.json").read_text())
    card["files"] = {}
    (d / "card.json").write_text(json.dumps(card))
    with pytest.raises(ArtifactError):
        create("encoder", model_path=d)
    with pytest.raises(ArtifactError):
        create("encoder", model_path=tmp_path / "missing")


def test_a_long_unit_is_read_only_where_it_touches_a_sink(artifact):
    from cwescan.ml.encoder.windows import make_windows
    from cwescan.ml.focus import focused

    body = "".join(f"    total = total + {i}\n" for i in range(30))
    code = f"import os\n\n\ndef build(cmd):\n    total = 0\n{body}    os.system('make ' + cmd)\n    return total\n"
    [unit] = [u for u in parse_source("long.py", code).units if u.qualname == "build"]
    near, whole = create("encoder", model_path=artifact), create("encoder", model_path=artifact)
    whole.set_focus(False)
    [p_near], [p_whole] = near.score([unit]), whole.score([unit])
    cfg = near.model.config
    every = make_windows(near.tokenizer, unit.code, cfg.window_tokens, cfg.overlap_tokens)
    sink = next(i + 1 for i, line in enumerate(unit.code.split("\n")) if "os.system" in line)
    kept = focused(every, [sink])
    assert len(every) > 2 and 1 <= len(kept) < len(every)
    assert near.windows_scored == len(kept) and whole.windows_scored == len(every)
    assert p_near <= p_whole + 1e-6  # fewer windows: the most suspicious one can only be milder
    # focus is part of what a cached answer depends on
    assert near.cache_identity() != whole.cache_identity()


def test_as_a_partner_it_reads_where_it_is_told(artifact):
    # a hard-coded secret far from the sink: a rule finding on a line that is no sink call
    body = "".join(f"    total = total + {i}\n" for i in range(30))
    code = (f"import os\n\n\ndef build(cmd):\n    password = 'hunter2'\n    total = 0\n{body}"
            "    os.system('make ' + cmd)\n    return total\n")
    [unit] = [u for u in parse_source("long.py", code).units if u.qualname == "build"]
    lines = unit.code.split("\n")
    secret = next(i + 1 for i, line in enumerate(lines) if "hunter2" in line)
    sink = next(i + 1 for i, line in enumerate(lines) if "os.system" in line)
    det = create("encoder", model_path=artifact)
    det.score([unit])
    own = det.windows_scored
    det.clear_cache()
    det.score_around([unit], [{sink, secret}])
    assert det.windows_scored > own  # the secret's window too
    det.clear_cache()
    assert det.score_around([unit], [{sink}]) == det.score([unit])  # the same focus: the same answer


def test_a_rule_finding_gets_the_encoders_second_opinion_instead_of_a_second_finding(artifact, units):
    from cwescan.detectors.static import StaticDetector
    from cwescan.scan.combine import SECOND_OPINION

    rule = [f for f in StaticDetector().detect(units) if f.cwe == "CWE-78"]
    assert rule, "the rules see os.system(\"ls \" + user)"
    det = create("encoder", model_path=artifact, threshold=0.0)
    findings = det.detect(units, hints={"app.py": rule})
    run = next(u for u in units if u.qualname == "run")
    in_run = [f for f in findings if run.start_line <= f.start_line <= run.end_line]
    # one finding for the weakness: the rule's, at its sink line, with the encoder's opinion
    assert [(f.rule_id, f.start_line) for f in in_run] == [(rule[0].rule_id, rule[0].start_line)]
    assert in_run[0].extra[SECOND_OPINION]["model"] == "encoder"
    assert in_run[0].extra[SECOND_OPINION]["score"] == pytest.approx(det.score([run])[0], abs=1e-4)
    # the units without a rule finding are still judged alone
    assert {f.start_line for f in findings} - {rule[0].start_line}
