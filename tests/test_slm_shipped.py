"""End to end with the shipped SLM adapter (loads the real base model: marked slow)."""

from __future__ import annotations

import pytest

from cwescan.core.units import parse_source

VULNERABLE = (
    "def find(cursor, name):\n"
    "    cursor.execute(\"SELECT * FROM users WHERE name = '\" + name + \"'\")\n"
    "    return cursor.fetchall()\n"
)
SAFE = (
    "def find(cursor, name):\n"
    "    cursor.execute('SELECT * FROM users WHERE name = %s', (name,))\n"
    "    return cursor.fetchall()\n"
)


@pytest.mark.slow
def test_shipped_adapter_ranks_the_injection_above_its_fix():
    from cwescan.ml.artifacts import model_dir, verify
    from cwescan.detectors import create

    card = verify(model_dir("slm"))
    assert card["base_model"] == "smollm2-135m" and card["split_manifest_hash"]
    det = create("slm")
    [vul] = [u for u in parse_source("app.py", VULNERABLE).units if u.kind == "function"]
    [safe] = [u for u in parse_source("app.py", SAFE).units if u.kind == "function"]
    p_vul, p_safe = det.score([vul, safe])
    assert p_vul > p_safe
    findings = det.detect([vul])
    assert findings and all(f.detector == "slm" and 1 <= f.start_line <= 3 for f in findings)
    assert findings[0].cwe in card["cwe_vocab"]


def test_shipped_adapters_are_chosen_by_short_name_and_checked(tmp_path):
    """`--slm-model qwen` / `slm-model = "qwen"` pick the Qwen adapter; its card is verified
    and records the six-package base. (Loading its 0.5B base is left to a manual run.)"""
    from cwescan.core.config import from_mapping
    from cwescan.detectors.slm import SLMDetector

    qwen = SLMDetector(model="qwen")
    assert qwen.adapter_dir.name == "slm-qwen" and qwen.card["base_model"] == "qwen2.5-coder-0.5b"
    assert qwen.card["gguf_sha256"].startswith("1d9614638d18") and qwen.options.strip_comments
    assert SLMDetector(model="smollm2").adapter_dir.name == "slm" == SLMDetector().adapter_dir.name
    from cwescan.bench.models import detector_factory  # `cwescan bench models --models slm,slm-qwen`

    assert detector_factory("slm-qwen", "bf16", "cpu").adapter_dir.name == "slm-qwen"
    cfg = from_mapping({"slm-model": "qwen"}, tmp_path / "pyproject.toml")
    assert cfg.slm_model == "qwen"
    assert from_mapping({"slm_model": "adapters/mine"}, tmp_path / "pyproject.toml").slm_model == str(tmp_path / "adapters/mine")
