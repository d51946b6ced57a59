"""Shipping a trained encoder: copy it into the package with its card and README, plot its
pre-training logs, and choose its decision threshold on validation."""

from __future__ import annotations

import json
from pathlib import Path

from cwescan.evaluate.metrics import best_f1_threshold, roc_auc
from cwescan.train.encoder import record_scores

def ship(run_dir: str | Path, dest: str | Path, commands: list[str], metrics: dict | None = None, storage: str = "fp16") -> dict:
    """Copy a fine-tuned classifier (``run_dir/model``) into ``dest`` and write its card from the
    run's summaries: where the body came from (our MLM pre-training), what it was fine-tuned on,
    how to reproduce it, and the metrics measured so far."""
    import shutil

    from cwescan.ml.artifacts import write_card

    run_dir, dest = Path(run_dir), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("model-*.safetensors"):
        old.unlink()
    import torch

    from cwescan.ml.encoder.model import EncoderClassifier

    if storage not in ("fp16", "int8"):
        raise ValueError("storage must be fp16 or int8")
    # re-saved rather than copied: int8 storage halves the repository's weight files
    EncoderClassifier.load(run_dir / "model").save(dest, torch.int8 if storage == "int8" else torch.float16)
    shutil.copy2(run_dir / "model" / "tokenizer.json", dest / "tokenizer.json")
    fin = json.loads((run_dir / "finetune_summary.json").read_text())
    cfg = json.loads((dest / "config.json").read_text())
    if (run_dir / "pretrain_summary.json").is_file():
        pre = json.loads((run_dir / "pretrain_summary.json").read_text())
        parameters, pretraining = pre["parameters"], _pretraining_section(pre)
    else:  # fine-tuned on from a shipped classifier: its body's history is that classifier's
        from cwescan.ml.artifacts import read_card

        init_card = read_card(Path(fin["init"]))
        parameters, pretraining = init_card["architecture"]["parameters"], init_card["pretraining"]
    card = {
        "name": "cwescan-encoder",
        "kind": "encoder classifier (RoBERTa, CodeBERTa-small style)",
        "base_model": "none: the body was pre-trained from scratch by cwescan (no hub weights)",
        "architecture": {**cfg["shape"], "parameters": parameters, "output_heads": ["binary", "cwe_family", "line"],
                         "window_tokens": cfg["window_tokens"], "overlap_tokens": cfg["overlap_tokens"]},
        "weights_dtype": "int8 matrices with a float16 scale per row, float16 vectors" if storage == "int8" else "float16",
        "pretraining": pretraining,
        "finetuning": {
            "data": "train part of the cwescan split (selection on validation)" + (
                f", plus {fin['train_negative_units']} realistic negative units (presumed-safe functions of real "
                f"packages, corpus {fin['negatives_manifest_hash'][:16]}…; epoch selected on {fin.get('selected_on')})"
                if fin.get("train_negative_units") else ""),
            "init": fin.get("init"),
            "negatives_manifest_hash": fin.get("negatives_manifest_hash"),
            "split_manifest_hash": fin["split_manifest_hash"],
            "train_records": fin["train_records"], "train_windows": fin["train_windows"],
            "validation_records": fin["validation_records"], "steps": fin["steps"],
            "families": fin["families"], "selected": fin["selected"],
        },
        "threshold": cfg["threshold"],
        "recipe": "recipes/encoder-device.yaml (pretrain + finetune); also recipes/encoder-pretrain.yaml, recipes/encoder-finetune.yaml",
        "commands": commands,
        "metrics": metrics or {},
    }
    return write_card(dest, card)


def _pretraining_section(pre: dict) -> dict:
    return {
        "objective": "masked language modelling, 15 % of tokens (80/10/10), packed 512-token blocks",
        "corpus": pre["corpus"],
        "tokenizer": f"byte-level BPE, {pre['shape']['vocab_size']} tokens, no normalisation (case and whitespace kept)",
        "steps": pre["steps"], "batch_size": pre["batch_size"], "tokens_seen": pre["tokens_seen"],
        "train_seconds": pre["train_seconds"], "device": pre["device"],
        "final_train_loss_ema": pre["final_train_loss_ema"],
        "heldout_loss": pre["heldout_loss"], "heldout_masked_accuracy": pre["heldout_masked_accuracy"],
        "heldout_masked_tokens": pre["heldout_masked_tokens"],
    }


def plot_pretrain_logs(runs: dict[str, str | Path], png_path: str | Path) -> None:
    """MLM loss curves, one colour per run: train loss per logged step (line), held-out loss
    where evaluated (dots), final held-out masked-token accuracy in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for (label, log_path), colour in zip(runs.items(), ["tab:blue", "tab:orange", "tab:green", "tab:red"]):
        rows = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
        held = [r for r in rows if "heldout_loss" in r]
        acc = f", held-out masked acc {held[-1]['heldout_masked_accuracy']:.1%}" if held else ""
        ax.plot([r["tokens_seen"] / 1e6 for r in rows], [r["loss"] for r in rows], lw=1, color=colour, label=f"{label}: train{acc}")
        ax.plot([r["tokens_seen"] / 1e6 for r in held], [r["heldout_loss"] for r in held], "o--", ms=3, color=colour, label=f"{label}: held-out packages")
    ax.set_xlabel("tokens seen (millions)")
    ax.set_ylabel("MLM cross-entropy (nats)")
    ax.set_title("cwescan encoder: masked-language-model pre-training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)


def write_readme(dest: str | Path) -> None:
    """The human model card, from card.json."""
    # Long on purpose: the README reads top to bottom as the list of its lines.
    dest = Path(dest)
    c = json.loads((dest / "card.json").read_text())
    a, p, f = c["architecture"], c["pretraining"], c["finetuning"]
    corpus = p["corpus"]
    sel = f["selected"]
    metrics = c.get("metrics") or {}
    lines = [
        "# cwescan encoder (CodeBERTa-small-style baseline)",
        "",
        "A small RoBERTa encoder **pre-trained from scratch by cwescan** on Python source, fine-tuned to say",
        "whether a Python unit (function, or a module's top-level code) is vulnerable, which CWE family it",
        "belongs to, and which line weighs most. No weights come from a model hub.",
        "",
        "## Model",
        f"- {a['layers']} layers, hidden {a['hidden']}, {a['heads']} heads, FFN {a['intermediate']}, "
        f"{a['max_positions'] - 2} positions, byte-level BPE vocabulary of {a['vocab_size']}; "
        f"{a['parameters'] / 1e6:.1f} M body parameters; weights stored as {c['weights_dtype']} (safetensors), "
        "computed in the precision the detector is asked for (fp32 by default).",
        f"- Heads: binary (vulnerable), CWE family ({', '.join(f['families'])}), per-token line.",
        f"- Units longer than {a['window_tokens']} tokens are cut into overlapping windows of whole lines "
        f"(overlap up to {a['overlap_tokens']} tokens); a unit's score is the max over its windows. Nothing is dropped.",
        *(
            [f"- Flags a unit on its own from a raw score of {c['policy']['model_only']:.4f} (precision >= 0.5 at "
             f"{c['policy']['prevalence']:.0%} prevalence on the validation mix, `cwescan train calibrate`); the "
             f"scan's second opinion and calibration come from the card's `policy` and `calibration`."]
            if c.get("policy") else
            [f"- Reported when P(vulnerable) >= {c['threshold']:.4f} (chosen by F1 on validation)."]
        ),
        *(
            [f"- First stage of the scan: a unit without a rule finding scoring below "
             f"{c['first_stage']['threshold']:.5f} is cleared before the SLM reads it (on the held-out test mix: "
             f"{c['first_stage']['test']['negatives_cleared']:.0%} of real package units cleared, "
             f"{c['first_stage']['test']['model_stage_recall_loss_points']:.2f} points of the SLM's recall lost)."]
            if c.get("first_stage") else []
        ),
        "",
        "## Where the weights came from",
        f"1. **Pre-training (MLM)** on {corpus['train_files_read']:,} `.py` files "
        f"({corpus['train_bytes'] / 1e6:.0f} MB, {corpus['train_tokens'] / 1e6:.0f} M tokens) of the site-packages of the "
        f"device machine's Python {corpus.get('python', '')} ({p['device']}); whole packages held out for evaluation "
        f"({corpus['heldout_files_read']:,} files, {corpus['heldout_tokens'] / 1e6:.1f} M tokens). "
        f"{p['steps']:,} steps of {p['batch_size']} x 512 tokens ({p['tokens_seen'] / 1e6:.0f} M tokens seen) in "
        f"{p['train_seconds']:.0f} s. Final train loss {p['final_train_loss_ema']:.3f}; held-out loss "
        f"{p['heldout_loss']:.3f}; **held-out masked-token accuracy {p['heldout_masked_accuracy']:.1%}** "
        f"({p['heldout_masked_tokens']:,} masked tokens).",
        f"2. **Fine-tuning** on the train part of the split (manifest hash `{f['split_manifest_hash'][:16]}…`, "
        f"{f['train_records']:,} records, {f['train_windows']:,} windows), {f['steps']:,} steps; epoch {sel['epoch']} "
        f"selected on validation ({f['validation_records']} records): F1 {sel['f1']:.3f}, precision "
        f"{sel['precision']:.3f}, recall {sel['recall']:.3f}, AUC {sel['val_auc']:.3f}.",
        *(
            [f"3. **Threshold re-selected** on validation when the detector began stripping comments and "
             f"docstrings before scoring: {f['threshold_reselected']['validation']['previous_threshold']} -> "
             f"{f['threshold_reselected']['validation']['threshold']} (validation F1 "
             f"{f['threshold_reselected']['validation']['f1']:.3f}, AUC {f['threshold_reselected']['validation']['val_auc']:.3f})."]
            if f.get("threshold_reselected") else []
        ),
        "",
        "Reproduce (the device run does both stages; see docs/ENCODER.md):",
        "",
        "```",
        *c["commands"],
        "```",
        "",
        "## Metrics",
    ]
    realistic = c.get("evaluation_realistic") or {}
    if realistic:
        held = realistic["held_out_model_only"]
        eq = ", ".join(f"{e['false_alarms_per_1k_units']:.1f} at recall {e['recall']:.2f}" for e in realistic["equal_recall"])
        lines += ["", f"- Realistic test mix (vulnerable test records vs units of {len(realistic['test_mix']['held_out_packages'])} "
                      f"held-out packages): ROC-AUC {realistic['test_mix']['auc']:.3f}; false alarms per 1,000 reviewed "
                      f"units: {eq}; at the model-only threshold recall {held['recall']:.3f}, "
                      f"{held['false_alarms_per_1k_lines']:.4f} false alarms per 1,000 lines (docs/EVALUATION.md)."]
    if metrics:
        lines += ["", "```", json.dumps(metrics, indent=2), "```"]
    elif not realistic:
        lines += ["", "Not measured yet."]
    lines += [
        "",
        "## Limits",
        "- The pre-trained body is weak: MLM stopped on the early plateau (see docs/ENCODER.md); a longer run should help.",
        "- Trained on ~2.7 k labelled records; it learns surface patterns of those sources and misses what they lack.",
        *(["- A second run of the same recipe (seed 1) ranks real code less well (test-mix AUC "
            f"{c['reproduction_realistic']['repeat']['test_mix']['auc']:.3f}) and chooses very different thresholds: "
            "use its scores for ranking and clearing, not as a calibrated verdict of its own."]
          if c.get("reproduction_realistic") else
          ["- Recall-heavy: many false positives, e.g. module units that import risky libraries (pickle, lxml, requests)"
           " and short harmless functions; on test its F1 is only a few points above flagging everything."]),
        "- The line head points at one line per unit; the CWE family is a guess among the frequent families.",
        "- card.json lists the SHA-256 of every file; the detector refuses files that do not match.",
        "",
    ]
    (dest / "README.md").write_text("\n".join(lines))


def select_threshold(model_dir: str | Path, data_dir: str | None = None) -> dict:
    """Re-choose a shipped classifier's threshold by F1 on the validation part, scoring exactly
    as the detector does now (e.g. after a change of input preprocessing), and store it in
    config.json. Returns the validation metrics at the new threshold."""
    import torch

    from cwescan.data.split import load_part
    from cwescan.ml.encoder.model import EncoderClassifier
    from cwescan.ml.encoder.tokenizer import load_tokenizer

    model_dir = Path(model_dir)
    torch.manual_seed(0)
    model = EncoderClassifier.load(model_dir)
    tok = load_tokenizer(model_dir / "tokenizer.json")
    val = load_part("validation", data_dir=data_dir)
    y = [int(r.vulnerable) for r in val]
    scores = record_scores(model, tok, val, "cpu")
    m = best_f1_threshold(y, scores)
    thr = m["threshold"]
    m["val_auc"] = roc_auc(y, scores)
    cfg = json.loads((model_dir / "config.json").read_text())
    m["previous_threshold"] = cfg["threshold"]
    cfg["threshold"] = float(thr)
    (model_dir / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return m
