"""Install a trained SLM adapter (a run brought back from the device) as a shipped model.

    python3 tools/install_adapter.py RUN_DIR src/cwescan/models/slm [--repeat OTHER_RUN_DIR]

RUN_DIR is what `tools/device_train_slm.sh collect` brings back for one job: ``adapter/``
(adapter files + the training card) and ``eval-test/slm-summary.json`` (the test-part metrics).
The shipped card is the training card plus the test evaluation, the repeat run's numbers (the
reproduction check) and where the base weights came from; file hashes are recomputed.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from cwescan.ml.artifacts import write_card
from cwescan.ml.slm.base import BASE_MODELS

DEVICE_COMMAND = (
    "tools/device_train_slm.sh prepare (here); on the lent GPU: `bash tools/device_train_slm.sh stash cNN` for each "
    "carried folder .carry/slm/cNN, then `bash tools/device_train_slm.sh launch smol|qwen`, `poll`, `collect`; "
    "each job runs the command above and then `cwescan eval-slm --part test --device cuda --precision bf16`"
)


def summary(run: Path) -> dict:
    s = json.loads((run / "eval-test" / "slm-summary.json").read_text())
    s.pop("adapter", None)
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("dest", type=Path)
    ap.add_argument("--repeat", type=Path, help="a second run of the same recipe (reproduction check)")
    a = ap.parse_args()

    card = json.loads((a.run / "adapter" / "card.json").read_text())
    src = BASE_MODELS[card["base_model"]]
    card.pop("argv", None)
    card["command"] = f"cwescan train slm --recipe {card['recipe_file']} --out runs/{a.dest.name} --device cuda"
    card["device_command"] = DEVICE_COMMAND
    card["base_source"] = src.description
    card["adapter_dtype"] = "float16"
    card["evaluation"] = {**summary(a.run), "command": "cwescan eval-slm --part test --device cuda "
                          "--precision bf16 (same runner and metrics as cwescan eval --detector slm --split test)"}
    if a.repeat:
        rep = json.loads((a.repeat / "adapter" / "card.json").read_text())
        card["reproduction"] = {
            "note": "the same command run again on the same machine (seed 0); GPU kernels are not bitwise deterministic",
            "repeat_run_training_seconds": rep["training_seconds"],
            "repeat_run_validation": rep["validation"],
            "repeat_run_test": {k: summary(a.repeat)[k] for k in ("binary", "ranking", "pairwise")},
        }
    card["validation"].pop("_select", None)
    a.dest.mkdir(parents=True, exist_ok=True)
    for p in a.dest.iterdir():
        if p.name != "README.md":
            p.unlink()
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        shutil.copy2(a.run / "adapter" / name, a.dest / name)
    cfg = json.loads((a.dest / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = card["base_model"]  # not the device's cache path
    (a.dest / "adapter_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    write_card(a.dest, card)
    print(f"installed {a.run} -> {a.dest}: test F1 {card['evaluation']['binary']['f1']:.3f}")


if __name__ == "__main__":
    main()
