"""Fine-tune the SLM detector with LoRA (or QLoRA on a GPU) on the train part of the split and
select the epoch and the decision threshold on the validation part.

Training examples are *units* (what the detector sees at scan time), built from records:

- a unit of a vulnerable record that holds a labelled line is a positive with the record's first
  CWE and its first labelled line inside the unit (1-based within the unit);
- the other units of that record are negatives (the weakness is elsewhere);
- a vulnerable record without labelled lines makes its function units (or, when it has none,
  its module unit) positives whose line slot is left out of the loss (no line to learn);
- every unit of a safe record is a negative.

Long units are windowed exactly as at inference (prompt.py); a window of a positive unit that
does not hold the labelled line is a negative. The loss covers the answer tokens only, plus
(``pair_weight``) a ranking loss over commit twins: the vulnerable unit's verdict margin must
exceed its fixed twin's (``twin_pairs``, ``pair_ranking_loss``).

Selection: after each epoch the validation records are scored (record score = max over its
windows, as ``cwescan eval`` does); the epoch with the best validation AUC (``select_on: auc``)
or F1 wins, and the threshold with the best validation F1 is stored in the card. Seeds fix
shuffling, LoRA init and dropout.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import random
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cwescan.evaluate.metrics import best_f1_threshold, roc_auc
from cwescan.ml.device import resolve_device
from cwescan.ml.slm import prompt as P
from cwescan.ml.slm.infer import answer_token_ids

DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class RecipeError(ValueError):
    pass


@dataclass
class SLMRecipe:
    name: str
    base_model: str = "smollm2-135m"  # key of cwescan.ml.slm.base.BASE_MODELS
    base_dir: str | None = None  # a plain transformers checkpoint instead (tests: tiny model)
    # the first N decoder layers of the base only (0: all): a shallower model costs the scan
    # proportionally less per token; the card's ``base_layers`` makes every load cut it alike
    layers: int = 0
    method: str = "lora"  # "lora" or "qlora" (4-bit NF4 base via bitsandbytes, GPU only)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    epochs: int = 3
    learning_rate: float = 2e-4
    batch_size: int = 16
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_tokens: int = 1024  # window budget (prompt + answer)
    callers: bool = True
    strip_comments: bool = True  # the model reads code without comments/docstrings (prompt.py)
    pair_weight: float = 0.0  # weight of the twin ranking loss (vulnerable unit above its fixed twin)
    seed: int = 0
    bf16: bool = True  # bf16 base weights + autocast on cuda
    verdict_weight: float = 1.0  # loss weight of the true/false token relative to the other answer tokens
    select_on: str = "auc"  # epoch selection on validation: "auc" (ranking), "f1" (at its best threshold) or
    # "mix_auc" (mean of the labelled AUC and the AUC of vulnerable records against realistic negatives)
    negatives_dir: str | None = None  # corpus of `cwescan data negatives` (train.jsonl, validation.jsonl)
    negatives_ratio: float = 0.0  # realistic negative units added per labelled training example
    max_validation_negatives: int | None = 2000  # sample of validation negatives scored after each epoch
    max_train_examples: int | None = None  # cap (smoke tests)
    max_validation_records: int | None = None
    description: str = ""

    @classmethod
    def from_dict(cls, d: dict) -> SLMRecipe:
        if not isinstance(d, dict):
            raise RecipeError("a recipe is a YAML mapping")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise RecipeError(f"unknown recipe keys: {', '.join(unknown)}")
        if "name" not in d:
            raise RecipeError("a recipe needs a name")
        r = cls(**d)
        checks = [
            (r.method in ("lora", "qlora"), "method must be lora or qlora"),
            (r.lora_r > 0 and r.lora_alpha > 0, "lora_r and lora_alpha must be positive"),
            (0 <= r.lora_dropout < 1, "lora_dropout must be in [0, 1)"),
            (r.epochs > 0 and r.batch_size > 0, "epochs and batch_size must be positive"),
            (0 < r.learning_rate < 1, "learning_rate must be in (0, 1)"),
            (r.max_tokens >= 128, "max_tokens must be at least 128"),
            (isinstance(r.layers, int) and r.layers >= 0, "layers must be 0 (all) or a positive count"),
            (r.verdict_weight > 0, "verdict_weight must be positive"),
            (r.pair_weight >= 0, "pair_weight must be non-negative"),
            (r.select_on in ("auc", "f1", "mix_auc"), "select_on must be auc, f1 or mix_auc"),
            (r.negatives_ratio >= 0, "negatives_ratio must be non-negative"),
            (r.select_on != "mix_auc" or bool(r.negatives_dir), "select_on: mix_auc needs negatives_dir"),
            (isinstance(r.target_modules, list) and all(isinstance(t, str) for t in r.target_modules),
             "target_modules must be a list of names"),
        ]
        for ok, msg in checks:
            if not ok:
                raise RecipeError(msg)
        return r


def load_recipe(path: str | os.PathLike) -> SLMRecipe:
    from cwescan.train.recipe_file import read_yaml

    data = read_yaml(path, RecipeError)
    try:
        return SLMRecipe.from_dict(data)
    except TypeError as e:
        raise RecipeError(f"{path}: {e}") from None


# ---------------------------------------------------------------- examples


def record_units(record):
    """(unit, is_positive, cwe, unit-relative line or None) for the units of one record."""
    from cwescan.core.units import parse_source

    f = parse_source(record.id, record.code)
    funcs = [u for u in f.units if u.kind == "function"]
    cwe = record.cwes[0] if record.cwes else None
    out = []
    for u in f.units:
        if not record.vulnerable:
            out.append((u, False, None, None))
            continue
        if record.lines:
            inside = [
                ln for ln in sorted(record.lines)
                if u.start_line <= ln <= u.end_line
                and not (u.kind == "module" and any(g.start_line <= ln <= g.end_line for g in funcs))
            ]
            out.append((u, bool(inside), cwe, (inside[0] - u.start_line + 1) if inside else None))
        else:
            pos = u.kind == "function" or not funcs
            out.append((u, pos, cwe, None))
    return out


def examples(records, tokenizer, builder: P.PromptBuilder) -> list[P.Encoded]:
    out = []
    for rec in records:
        for unit, positive, cwe, line in record_units(rec):
            for k, w in enumerate(builder.unit_windows(unit)):
                if positive and line is not None and not (w.first_line <= line <= w.last_line):
                    pos_w = False
                else:
                    pos_w = positive
                enc = P.encode_example(tokenizer, w.prompt, pos_w, cwe, line if pos_w else None)
                enc.meta = {"record": rec.id, "positive": pos_w, "unit": unit.qualname, "window": k}
                out.append(enc)
    return out


def _prompt_ids(e: P.Encoded) -> list[int]:
    return [t for t, label in zip(e.input_ids, e.labels, strict=True) if label == -100]


def twin_pairs(items: list[P.Encoded]) -> list[tuple[int, int]]:
    """(vulnerable, fixed) example indices of the same unit and window in the two records of a
    commit twin pair (ids ending :vul/:fix and alike), where the prompts differ. The ranking loss
    asks the model to score the vulnerable side higher: the evaluation's twin metric, and the
    thing a reviewer needs (the fix must lower the score)."""
    from cwescan.data.split import pair_key

    by_key: dict[tuple, dict[bool, int]] = {}
    for i, e in enumerate(items):
        key = pair_key(e.meta["record"])
        if key is not None:
            by_key.setdefault((key, e.meta["unit"], e.meta["window"]), {}).setdefault(e.meta["positive"], i)
    pairs = []
    for sides in by_key.values():
        if True in sides and False in sides:
            v, f = sides[True], sides[False]
            if items[v].meta["record"] != items[f].meta["record"] and _prompt_ids(items[v]) != _prompt_ids(items[f]):
                pairs.append((v, f))
    return pairs


def load_negatives(recipe: SLMRecipe, train_records=()) -> dict:
    """The realistic negatives of a recipe: ``negatives_ratio`` x (units of the labelled train
    records) units sampled from the corpus' train part, and a sample of its
    validation part; both deterministic in the seed. Empty without ``negatives_dir``."""
    from cwescan.core.units import parse_source
    from cwescan.data.negatives import sample_negatives

    if not recipe.negatives_dir:
        return {"train": [], "validation": [], "manifest_hash": None}
    labelled_units = sum(len(parse_source(r.id, r.code).units) for r in train_records)
    return sample_negatives(recipe.negatives_dir, recipe.negatives_ratio, labelled_units, recipe.seed,
                            recipe.max_validation_negatives)


# ---------------------------------------------------------------- validation


def record_scores(model, tokenizer, builder, records, device, batch_size=32) -> list[float]:
    from cwescan.ml.slm.infer import score_prompts
    from cwescan.core.units import parse_source

    prompts, owner = [], []
    for i, rec in enumerate(records):
        for u in parse_source(rec.id, rec.code).units:
            for w in builder.unit_windows(u):
                prompts.append(w.prompt)
                owner.append(i)
    scores = score_prompts(model, tokenizer, prompts, batch_size=batch_size, device=device)
    best = [0.0] * len(records)
    for i, s in zip(owner, scores, strict=True):
        best[i] = max(best[i], s)
    return best


# ---------------------------------------------------------------- training


def _seed_all(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def load_model_for_training(recipe: SLMRecipe, device: str):
    import torch
    from transformers import AutoTokenizer

    from cwescan.ml.slm import base

    if recipe.base_dir:
        d = Path(recipe.base_dir).resolve()
        info = {"base_model": str(d), "base_dir": str(d), "source": f"plain checkpoint {d}"}
    else:
        d, digest = base.converted_dir(recipe.base_model)
        src = base.BASE_MODELS[recipe.base_model]
        info = {"base_model": recipe.base_model, "source": src.description, "gguf_file": src.gguf_file,
                "gguf_sha256": digest, "base_weights": src.weights}
    tokenizer = AutoTokenizer.from_pretrained(str(d))
    if recipe.layers:
        info["base_layers"] = recipe.layers
    if recipe.method == "qlora":
        if device != "cuda":
            raise RuntimeError("QLoRA (4-bit NF4 base via bitsandbytes) runs on a GPU only; use method: lora on CPU")
        try:
            from transformers import BitsAndBytesConfig
        except ImportError as e:
            raise RuntimeError(f"QLoRA needs bitsandbytes: {e}") from None
        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
        model = base.load_checkpoint(d, recipe.layers, quantization_config=q, device_map={"": 0})
        from peft import prepare_model_for_kbit_training

        # no gradient checkpointing (LoRA trains without it too): a 0.5B model's activations fit
        # the GPU many times over, and with the recompute a step took ~0.5 s on an H200 against
        # 0.33 s for LoRA
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    else:
        # bf16 base on the GPU (peft keeps the adapter in fp32); fp32 on CPU
        dtype = torch.bfloat16 if device == "cuda" and recipe.bf16 else torch.float32
        model = base.load_checkpoint(d, recipe.layers, dtype=dtype).to(device)
    return model, tokenizer, info


def _batches(items, batch_size, rng, pairs=()):
    """Shuffled batches of example indices, bucketed by length inside chunks of 50 batches
    (little padding, still shuffled). The two sides of a twin pair stay in one batch."""
    paired = {i for p in pairs for i in p}
    groups = [list(p) for p in pairs] + [[i] for i in range(len(items)) if i not in paired]
    rng.shuffle(groups)
    chunk = batch_size * 50
    batches = []
    for c in range(0, len(groups), chunk):
        part = sorted(groups[c : c + chunk], key=lambda g: max(len(items[i].input_ids) for i in g))
        batch: list[int] = []
        for g in part:
            if batch and len(batch) + len(g) > batch_size:
                batches.append(batch)
                batch = []
            batch.extend(g)
        if batch:
            batches.append(batch)
    rng.shuffle(batches)
    return batches


def _collate(items, pad_id, device, open_len: int, verdict_weight: float):
    """Right-padded batch: ids, labels (-100 outside answers), mask, per-label loss weights (the
    verdict token, right after the answer's opening piece, weighs ``verdict_weight``) and the
    position of each row's verdict token."""
    import torch

    width = max(len(e.input_ids) for e in items)
    x = torch.full((len(items), width), pad_id, dtype=torch.long)
    y = torch.full((len(items), width), -100, dtype=torch.long)
    m = torch.zeros((len(items), width), dtype=torch.long)
    w = torch.zeros((len(items), width), dtype=torch.float32)
    verdict = torch.zeros(len(items), dtype=torch.long)
    for r, e in enumerate(items):
        n = len(e.input_ids)
        x[r, :n] = torch.tensor(e.input_ids)
        y[r, :n] = torch.tensor(e.labels)
        m[r, :n] = 1
        w[r, :n] = (y[r, :n] != -100).float()
        first = next(i for i, t in enumerate(e.labels) if t != -100)
        w[r, first + open_len] = verdict_weight
        verdict[r] = first + open_len
    return x.to(device), y.to(device), m.to(device), w.to(device), verdict.to(device)


def answer_loss(model, x, m, y, w, verdict, true_id: int, false_id: int, pair_weight: float = 0.0,
                twin_rows: list[tuple[int, int]] = ()):
    """Weighted token cross-entropy over the answer (normalised by the weight sum), plus
    ``pair_weight`` x the twin ranking loss. The output head runs on the answer positions only:
    a full (batch, length, vocabulary) logits tensor is 10 GB for Qwen's 152k vocabulary at
    batch 32 x 1024 and is almost all thrown away."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    h = base.model(input_ids=x, attention_mask=m).last_hidden_state
    keep = y[:, 1:] != -100
    logits = base.lm_head(h[:, :-1][keep])
    ce = torch.nn.functional.cross_entropy(logits.float(), y[:, 1:][keep], reduction="none")
    weights = w[:, 1:][keep]
    loss = (ce * weights).sum() / weights.sum()
    if twin_rows and pair_weight > 0:
        at = base.lm_head(h[torch.arange(h.shape[0], device=h.device), verdict - 1])
        loss = loss + pair_weight * pair_ranking_loss(at, true_id, false_id, twin_rows)
    return loss


def pair_ranking_loss(verdict_logits, true_id: int, false_id: int, rows: list[tuple[int, int]]):
    """Mean softplus(-(z_v - z_f)) over twin rows (v, f), where z is the verdict logit margin
    logit(" true") - logit(" false") at the verdict slot: a logistic ranking loss."""
    import torch

    z = verdict_logits[:, true_id].float() - verdict_logits[:, false_id].float()
    v = torch.tensor([a for a, _ in rows], device=z.device)
    f = torch.tensor([b for _, b in rows], device=z.device)
    return torch.nn.functional.softplus(-(z[v] - z[f])).mean()


def save_adapter(model, out: Path) -> None:
    """adapter_model.safetensors (fp16) + adapter_config.json."""
    import torch
    from safetensors.torch import load_file, save_file

    model.save_pretrained(str(out), safe_serialization=True)
    f = out / "adapter_model.safetensors"
    tensors = {k: v.to(torch.float16).contiguous() for k, v in load_file(str(f)).items()}
    save_file(tensors, str(f), metadata={"format": "pt"})


def run(recipe_path, out="runs/slm", device: str = "auto", max_steps: int | None = None,
        train_records=None, validation_records=None) -> dict:
    # Long on purpose: a training run reads top to bottom (recipe, data, model, train, threshold, card).
    import torch
    from peft import LoraConfig, get_peft_model

    from cwescan.ml.artifacts import write_card
    from cwescan.data.split import load_part, manifest_hash

    t0 = time.time()
    recipe = load_recipe(recipe_path)
    device = resolve_device(device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    log_f = open(logs / "train.log", "a", encoding="utf-8")

    def log(msg: str) -> None:
        line = f"[{time.time() - t0:7.1f}s] {msg}"
        print(line, flush=True)
        log_f.write(line + "\n")
        log_f.flush()

    _seed_all(recipe.seed)
    train_records = train_records if train_records is not None else load_part("train")
    validation_records = validation_records if validation_records is not None else load_part("validation")
    if recipe.max_validation_records:
        validation_records = validation_records[: recipe.max_validation_records]
    model, tokenizer, base_info = load_model_for_training(recipe, device)
    builder = P.PromptBuilder(tokenizer, P.PromptOptions(max_tokens=recipe.max_tokens, callers=recipe.callers,
                                                         strip_comments=recipe.strip_comments))
    train = examples(train_records, tokenizer, builder)
    negatives = load_negatives(recipe, train_records)
    if negatives["train"]:
        train += examples(negatives["train"], tokenizer, builder)
    if recipe.max_train_examples:
        train = random.Random(recipe.seed).sample(train, min(len(train), recipe.max_train_examples))
    n_pos = sum(e.meta["positive"] for e in train)
    pairs = twin_pairs(train) if recipe.pair_weight > 0 else []
    pair_of = {v: f for v, f in pairs}
    log(f"device={device} train examples={len(train)} (positive {n_pos}, twin pairs {len(pairs)}) "
        f"validation records={len(validation_records)} (+{len(negatives['validation'])} realistic negatives; "
        f"{len(negatives['train'])} realistic negative units in train)")
    cwe_vocab = sorted({c for r in train_records if r.vulnerable for c in r.cwes[:1]}, key=lambda c: int(c.split("-")[1]))

    lora = LoraConfig(r=recipe.lora_r, lora_alpha=recipe.lora_alpha, lora_dropout=recipe.lora_dropout,
                      target_modules=recipe.target_modules, task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    rng = random.Random(recipe.seed)
    steps_per_epoch = (len(train) + recipe.batch_size - 1) // recipe.batch_size
    total = steps_per_epoch * recipe.epochs if not max_steps else min(max_steps, steps_per_epoch * recipe.epochs)
    warm = max(1, int(total * recipe.warmup_ratio))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (total - s) / max(1, total - warm)) if s >= warm else (s + 1) / warm
    )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    open_len = len(tokenizer.encode(P.A_OPEN, add_special_tokens=False))
    tf_ids = answer_token_ids(tokenizer)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda" and recipe.bf16)
    history, losses, step, best, skipped = [], [], 0, None, 0
    best_state = None
    for epoch in range(recipe.epochs):
        model.train()
        for batch in _batches(train, recipe.batch_size, rng, pairs):
            if step >= total:
                break
            x, y, m, w, verdict = _collate([train[i] for i in batch], pad, device, open_len, recipe.verdict_weight)
            row = {i: r for r, i in enumerate(batch)}
            twin_rows = [(row[v], row[pair_of[v]]) for v in batch if v in pair_of and pair_of[v] in row]
            with autocast:
                loss = answer_loss(model, x, m, y, w, verdict, tf_ids.true, tf_ids.false, recipe.pair_weight, twin_rows)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
            if not (torch.isfinite(loss) and torch.isfinite(norm)):
                # one overflowing batch must not turn every adapter weight into NaN: skip it
                opt.zero_grad(set_to_none=True)
                sched.step()
                step += 1
                skipped += 1
                log(f"epoch {epoch} step {step}: non-finite loss or gradient, batch skipped ({skipped} so far)")
                continue
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            step += 1
            if step % 20 == 0 or step == 1:
                log(f"epoch {epoch} step {step}/{total} loss {sum(losses[-20:]) / len(losses[-20:]):.4f}")
        model.eval()
        with autocast:
            s = record_scores(model, tokenizer, builder, validation_records, device)
        yv = [r.vulnerable for r in validation_records]
        th = best_f1_threshold(yv, s)
        entry = {"epoch": epoch, "step": step, "train_loss": sum(losses[-50:]) / max(1, len(losses[-50:])),
                 "validation_f1": th["f1"], "threshold": th["threshold"], "validation_precision": th["precision"],
                 "validation_recall": th["recall"], "validation_auc": roc_auc(yv, s)}
        if negatives["validation"]:
            with autocast:
                sn = record_scores(model, tokenizer, builder, negatives["validation"], device)
            entry["negatives_auc"] = roc_auc([True] * sum(yv) + [False] * len(sn), [v for v, t in zip(s, yv) if t] + sn)
            entry["validation_mix_auc"] = (entry["validation_auc"] + entry["negatives_auc"]) / 2
        history.append(entry)
        log(f"validation: {json.dumps(entry)}")
        key = {"auc": "validation_auc", "f1": "validation_f1", "mix_auc": "validation_mix_auc"}[recipe.select_on]
        value = entry[key] if entry[key] == entry[key] else -1.0  # NaN (one class only) ranks last
        if best is None or value > best["_select"]:
            entry["_select"] = value
            best = entry
            best_state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items() if "lora_" in k}
        if step >= total:
            break
    if best_state is not None:
        model.load_state_dict(best_state, strict=False)
    for p in out.iterdir():  # the artifact folder holds only this run's files
        if p.is_file():
            p.unlink()
    save_adapter(model, out)
    (logs / "history.json").write_text(json.dumps({"history": history, "losses": losses}, indent=1) + "\n")
    try:
        mhash = manifest_hash()
    except Exception:  # noqa: BLE001 - tests train on records outside the split
        mhash = None
    card = {
        "name": "slm",
        "kind": "lora-adapter",
        **base_info,
        "split_manifest_hash": mhash,
        "negatives_manifest_hash": negatives["manifest_hash"],
        "train_negative_units": len(negatives["train"]),
        "recipe": dataclasses.asdict(recipe),
        "recipe_file": str(recipe_path),
        "command": "cwescan train slm --recipe " + shlex.quote(str(recipe_path)) + f" --out {out} --device {device}"
        + (f" --max-steps {max_steps}" if max_steps else ""),
        "argv": " ".join(shlex.quote(a) for a in sys.argv),
        "training_seconds": round(time.time() - t0, 1),
        "hardware": _hardware(device),
        "train_examples": len(train),
        "train_positive_examples": n_pos,
        "steps": step,
        "skipped_steps": skipped,
        "selected_epoch": best["epoch"] if best else None,
        "threshold": best["threshold"] if best else 0.5,
        "validation": best,
        "history": history,
        "cwe_vocab": cwe_vocab,
        "prompt": {"max_tokens": recipe.max_tokens, "callers": recipe.callers, "strip_comments": recipe.strip_comments,
                   "blank_lines": builder.opt.blank_lines,
                   "number_width": builder.opt.number_width, "instruction": P.INSTRUCTION},
        "precision_note": "base weights are dequantized from 4-bit GGUF; 'fp32' means dequantized 4-bit held in float32",
    }
    card = write_card(out, card)
    log(f"done: {json.dumps({k: card[k] for k in ('steps', 'selected_epoch', 'threshold', 'training_seconds')})}")
    log_f.close()
    return card


def _hardware(device: str) -> str:
    import torch

    if device == "cuda":
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return f"{platform.processor() or platform.machine()} CPU x{os.cpu_count()}, torch {torch.__version__}"
