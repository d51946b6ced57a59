"""A model file that does not match the SHA-256 in its card is refused, with a message that
names the file, and so is anything that is not safetensors."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from cwescan.ml import artifacts
from cwescan.ml.artifacts import ArtifactError, load_safetensors, verify, write_card

SHIPPED = sorted(p for p in artifacts.MODELS_DIR.glob("*") if (p / "card.json").is_file()) \
    if artifacts.MODELS_DIR.is_dir() else []


def _flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def small_artifact(tmp_path):
    d = tmp_path / "tiny"
    d.mkdir()
    save_file({"w": np.arange(64, dtype=np.float32).reshape(8, 8)}, str(d / "model.safetensors"))
    (d / "config.json").write_text(json.dumps({"hidden": 8}))
    write_card(d, {"name": "tiny", "base_model": "none"})
    return d


def test_untouched_artifact_verifies(small_artifact):
    card = verify(small_artifact)
    assert set(card["files"]) == {"model.safetensors", "config.json"}
    tensors = load_safetensors(small_artifact / "model.safetensors", card["files"]["model.safetensors"])
    assert tensors["w"].shape == (8, 8)


def test_flipped_byte_in_weights_is_refused(small_artifact):
    weights = small_artifact / "model.safetensors"
    _flip_byte(weights, offset=weights.stat().st_size - 3)  # inside the tensor data
    with pytest.raises(ArtifactError) as e:
        verify(small_artifact)
    msg = str(e.value)
    assert "model.safetensors" in msg and "SHA-256" in msg and "refusing to load" in msg
    card = json.loads((small_artifact / "card.json").read_text())
    with pytest.raises(ArtifactError, match="SHA-256"):
        load_safetensors(weights, card["files"]["model.safetensors"])


def test_edited_config_is_refused(small_artifact):
    (small_artifact / "config.json").write_text(json.dumps({"hidden": 8, "auto_map": "evil.Model"}))
    with pytest.raises(ArtifactError, match="config.json"):
        verify(small_artifact)


def test_missing_file_and_missing_card_are_refused(small_artifact):
    (small_artifact / "config.json").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        verify(small_artifact)
    (small_artifact / "card.json").unlink()
    with pytest.raises(ArtifactError, match="no card.json"):
        verify(small_artifact)


def test_only_safetensors_is_loaded(small_artifact, tmp_path):
    pickled = tmp_path / "pytorch_model.bin"
    pickled.write_bytes(b"\x80\x04\x95" + b"\0" * 32)  # the start of a pickle stream
    with pytest.raises(ArtifactError, match="only .safetensors"):
        load_safetensors(pickled)


@pytest.mark.slow
@pytest.mark.parametrize("shipped", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_artifact_verifies_and_tampered_copy_is_refused(shipped, tmp_path):
    card = verify(shipped)
    weights = [n for n in card["files"] if n.endswith(".safetensors")]
    assert weights, f"{shipped.name}: card lists no safetensors weights"
    assert not [n for n in card["files"] if n.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]
    copy = tmp_path / shipped.name
    shutil.copytree(shipped, copy)
    target = max(weights, key=lambda n: (copy / n).stat().st_size)
    _flip_byte(copy / target)
    with pytest.raises(ArtifactError, match=target.replace(".", r"\.")):
        verify(copy)
