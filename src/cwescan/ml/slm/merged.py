"""The SLM as a scan runs it: the base model with the LoRA adapter merged in, at one float
precision, cached on disk after the first load.

Why: merging in fp32 and then casting holds the fp32 base (mapped from its safetensors file), the
merged fp32 weights and the cast copy at once. Loading the shipped SmolLM2 adapter at bf16 that
way peaked at 1,212 MB resident against 404 MB after the imports, for a 0.27 GB model; reading
the same weights from a bf16 checkpoint adds ~190 MB and peaks there. The merged, cast weights are
the same every time for the same base GGUF, adapter files and precision, so the first load writes
them (``save_pretrained``: safetensors) under ``$CWESCAN_CACHE/merged/`` and later loads map that
file: bit for bit the same weights, so the same scores.

The key is the installed GGUF's SHA-256 (checked against the card's, as before), the adapter's
file hashes from its verified card, the precision and ``FORMAT``; a directory is used only when
its ``merged.json`` holds that key, and it is written to a temporary name and renamed, so a
crashed or concurrent first load never leaves a half-written model behind. Quantized precisions
(int8, int4) are built from the fp32 merge every time, as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

FORMAT = 1  # bump when what is saved changes
FLOAT_DTYPES = {"fp32": "float32", "bf16": "bfloat16"}


def merge(base_model, adapter_dir: Path):
    """``base_model`` with the LoRA adapter of ``adapter_dir`` merged into its weights."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(base_model, str(adapter_dir), is_trainable=False)
    model = model.merge_and_unload()
    model.eval()
    return model


def cache_key(gguf_sha256: str, adapter_files: dict, precision: str, layers: int = 0) -> dict:
    key = {"format": FORMAT, "gguf_sha256": gguf_sha256, "adapter_files": dict(sorted(adapter_files.items())),
           "precision": precision}
    return {**key, "layers": layers} if layers else key  # the keys of full-depth merges stay as they were


def cache_dir(key: dict) -> Path:
    from cwescan.ml.slm.base import cache_root

    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return cache_root() / "merged" / digest[:24]


def _cached(directory: Path, key: dict) -> bool:
    try:
        return json.loads((directory / "merged.json").read_text()) == key
    except (OSError, ValueError):
        return False


def _store(model, tokenizer, key: dict, out: Path) -> bool:
    """Write the merged model to ``out`` (via a temporary name); False when it is not there with
    ``key`` afterwards."""
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "merged.json").write_text(json.dumps(key, indent=1) + "\n")
        os.replace(tmp, out)
    except OSError:  # another process cached it first, a stale directory, or no room to write
        shutil.rmtree(tmp, ignore_errors=True)
        if not _cached(out, key):
            shutil.rmtree(out, ignore_errors=True)
            return False
    return True


def load(name: str, adapter_dir: Path, card: dict, precision: str):
    """(model, tokenizer) of the shipped base ``name`` with the adapter merged, at ``precision``
    for fp32 / bf16 (from the cache when it holds them, else built and cached) and in fp32 for the
    others (the caller quantizes). Raises ArtifactError when the installed base GGUF is not the
    one the card names."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cwescan.ml.artifacts import ArtifactError, sha256_file
    from cwescan.ml.slm import base

    gguf = base.locate_gguf(name)
    digest = sha256_file(gguf)
    want = card.get("gguf_sha256")
    if want and digest != want:
        raise ArtifactError(f"base GGUF sha256 {digest[:16]}… is not the one the adapter was trained on ({want[:16]}…)")
    dtype_name = FLOAT_DTYPES.get(precision)
    files = card.get("files") or {}
    layers = base.card_layers(card)
    if dtype_name is None or not files:  # quantized precisions, or an adapter without hashes: no cache
        model, tok, _ = base.load_base(name, gguf, gguf_sha256=digest, layers=layers)
        return merge(model, adapter_dir), tok
    key = cache_key(digest, files, precision, layers)
    out = cache_dir(key)
    if not _cached(out, key):
        model, tok, _ = base.load_base(name, gguf, gguf_sha256=digest, layers=layers)
        model = merge(model, adapter_dir).to(getattr(torch, dtype_name))
        if not _store(model, tok, key, out):
            return model, tok  # not cached (a full or read-only disk, a race): use it as built
        del model
    tok = AutoTokenizer.from_pretrained(str(out))
    model = AutoModelForCausalLM.from_pretrained(str(out), dtype=getattr(torch, dtype_name))
    model.eval()
    return model, tok
