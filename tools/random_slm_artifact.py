"""Write an SLM artifact of SmolLM2-135M's exact shape with random weights (base/ and
adapter/ under OUT, verified card), for measuring throughput where the real base cannot
travel (the GPU machine). Units/s depend on the shape and the prompts, not on the weight
values; the card copies the shipped adapter's prompt settings and threshold.

    python3 tools/random_slm_artifact.py TOKENIZER_DIR OUT
TOKENIZER_DIR: SmolLM2's tokenizer saved with save_pretrained (here: from the GGUF).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(tokenizer_dir: Path, out: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from cwescan.ml.artifacts import write_card

    shipped = json.loads((Path(__file__).resolve().parents[1] / "src/cwescan/models/slm/card.json").read_text()) \
        if (Path(__file__).resolve().parents[1] / "src/cwescan/models/slm/card.json").is_file() else {}
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                      num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                      rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    base = LlamaForCausalLM(cfg)
    base.save_pretrained(out / "base")
    tok.save_pretrained(out / "base")
    adapter = out / "adapter"
    lora = LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                           "gate_proj", "up_proj", "down_proj"])
    get_peft_model(base, lora).save_pretrained(adapter)
    write_card(adapter, {
        "name": "slm", "kind": "lora-adapter", "base_dir": "../base",
        "note": "random weights of SmolLM2-135M's shape, for throughput only",
        "threshold": shipped.get("threshold", 0.5),
        "cwe_vocab": shipped.get("cwe_vocab", ["CWE-78", "CWE-89"]),
        "prompt": shipped.get("prompt", {"max_tokens": 1024, "callers": True}),
    })
    return adapter


if __name__ == "__main__":
    print(main(Path(sys.argv[1]), Path(sys.argv[2])))
