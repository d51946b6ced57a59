"""Shipped model artifacts: safetensors files whose SHA-256 is recorded in a card and checked
before anything is loaded. Nothing here unpickles: safetensors holds raw tensors only.

Layout of one artifact, ``src/cwescan/models/<name>/``::

    card.json    machine-readable card: base model and its source, data hash, recipe,
                 training command, metrics, and {"files": {filename: sha256}}
    README.md    the human model card
    *.safetensors, *.json (configs, tokenizer)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

MODELS_DIR = Path(__file__).parents[1] / "models"


class ArtifactError(RuntimeError):
    """An artifact is missing, unlisted or does not match its recorded hash."""


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_dir(name: str) -> Path:
    return MODELS_DIR / name


def read_card(directory: str | Path) -> dict:
    card_path = Path(directory) / "card.json"
    if not card_path.is_file():
        raise ArtifactError(f"{directory}: no card.json; refusing to load an artifact without provenance")
    return json.loads(card_path.read_text())


def verify(directory: str | Path) -> dict:
    """Check every file the card lists against its SHA-256 and return the card.

    Raises ArtifactError naming the first file that is missing or altered."""
    directory = Path(directory)
    card = read_card(directory)
    files = card.get("files") or {}
    if not files:
        raise ArtifactError(f"{directory}/card.json lists no files")
    for name, expected in sorted(files.items()):
        p = directory / name
        if not p.is_file():
            raise ArtifactError(f"{p}: listed in card.json but missing")
        actual = sha256_file(p)
        if actual != expected:
            raise ArtifactError(
                f"{p}: SHA-256 {actual[:16]}… does not match card.json ({expected[:16]}…); "
                "the file was altered or corrupted, refusing to load it"
            )
    return card


def load_safetensors(path: str | Path, expected_sha256: str | None = None, device: str = "cpu") -> dict:
    """Load tensors from a safetensors file, refusing any other format."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ArtifactError(f"{path}: only .safetensors weights are loaded")
    if expected_sha256 is not None and sha256_file(path) != expected_sha256:
        raise ArtifactError(f"{path}: SHA-256 does not match the expected value; refusing to load it")
    from safetensors.torch import load_file

    return load_file(str(path), device=device)


def write_card(directory: str | Path, card: dict) -> dict:
    """Record the SHA-256 of every artifact file in ``card['files']`` and write card.json."""
    directory = Path(directory)
    card = dict(card)
    card["files"] = {
        p.name: sha256_file(p)
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name not in ("card.json", "README.md")
    }
    (directory / "card.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return card
