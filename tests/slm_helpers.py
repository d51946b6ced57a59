"""A tiny random SLM artifact (2-layer Llama with SmolLM2's tokenizer and an untrained LoRA
adapter, verified card) that SLMDetector loads like the shipped one, in about a second."""

from __future__ import annotations

from pathlib import Path

# Three functions the model stage meets: one with a rule finding (run: a command built from a
# parameter) and two that only call a sink (what a first stage or a pair judges).
SINK_APP = '''import os
import subprocess


def run(cmd):
    os.system("ls " + cmd)


def listing(path):
    return subprocess.check_output(["ls", path])


def version(tool):
    return subprocess.check_output([tool, "--version"])
'''


def tiny_base(folder: Path):
    """A tiny random Llama with SmolLM2's tokenizer, saved to ``folder``; returns the model."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from cwescan.ml.slm.base import locate_gguf

    gguf = locate_gguf("smollm2-135m")
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      tie_word_embeddings=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    base = LlamaForCausalLM(cfg)
    base.save_pretrained(folder)
    tok.save_pretrained(folder)
    return base


def tiny_slm_artifact(root: Path, threshold: float = 0.0, prompt: dict | None = None) -> Path:
    """Write base/ and adapter/ under ``root``; returns the adapter folder. ``threshold`` 0
    makes the model flag every unit, so its findings (and their decoding) are exercised;
    ``prompt``: more of the card's prompt format (e.g. ``{"blank_lines": True}``)."""
    from peft import LoraConfig, get_peft_model

    from cwescan.ml.artifacts import write_card

    base = tiny_base(root / "base")
    adapter = root / "adapter"
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(adapter)
    write_card(adapter, {
        "name": "slm", "kind": "lora-adapter", "base_dir": "../base", "threshold": threshold,
        "cwe_vocab": ["CWE-78", "CWE-89", "CWE-502"], "prompt": {"max_tokens": 256, "callers": True, **(prompt or {})},
        # a random model: scans show what it flags, as it flags it
        "policy": {"model_only": threshold, "cwe_head": 0.0, "line": 0.0},
    })
    return adapter
