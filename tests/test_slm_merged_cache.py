"""The merged SLM (base + adapter at one precision) is cached after its first load and read back
bit for bit; a cache entry with another key or a broken one is never used."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

from cwescan.core.units import parse_source  # noqa: E402
from cwescan.ml.slm import merged  # noqa: E402

CODE = "import os\n\n\ndef run(cmd):\n    os.system('ls ' + cmd)\n\n\ndef add(a, b):\n    return a + b\n"


@pytest.mark.slow  # loads the shipped SmolLM2 adapter three times
def test_merged_model_is_cached_and_read_back_the_same(tmp_path, monkeypatch):
    import torch

    from cwescan.detectors.slm import SLMDetector

    real_dir = merged.cache_dir
    monkeypatch.setattr(merged, "cache_dir", lambda key: tmp_path / real_dir(key).name)
    units = [u for u in parse_source("m.py", CODE).units if u.code.strip()]

    first = SLMDetector(precision="fp32")
    scores = first.score(units)
    [entry] = list(tmp_path.iterdir())
    key = json.loads((entry / "merged.json").read_text())
    assert key == merged.cache_key(first.card["gguf_sha256"], first.card["files"], "fp32")
    assert (entry / "model.safetensors").is_file() and not list(entry.glob("*.bin"))

    second = SLMDetector(precision="fp32")
    assert second.score(units) == scores
    for (name, a), (_, b) in zip(first.model.state_dict().items(), second.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name

    # an entry whose key does not match is rebuilt, not read
    (entry / "merged.json").write_text(json.dumps({**key, "precision": "bf16"}))
    assert SLMDetector(precision="fp32").score(units) == scores
    third = SLMDetector(precision="fp32")
    assert third.score(units) == scores
    assert json.loads((entry / "merged.json").read_text()) == key


@pytest.mark.slow  # loads the shipped SmolLM2 adapter twice
def test_a_cache_that_cannot_be_written_does_not_stop_the_load(tmp_path, monkeypatch):
    from cwescan.detectors.slm import SLMDetector

    units = [u for u in parse_source("m.py", CODE).units if u.code.strip()]
    expected = SLMDetector(precision="fp32").score(units)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")  # the cache's parent is a file: nothing can be written under it
    monkeypatch.setattr(merged, "cache_dir", lambda key: blocker / "entry")
    assert SLMDetector(precision="fp32").score(units) == expected
    assert blocker.is_file() and not list(tmp_path.glob("*.tmp-*"))
