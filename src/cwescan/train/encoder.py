"""Train the encoder baseline, as a recipe says: ``pretrain`` (byte-level BPE + masked-language
modelling on a corpus of Python files) and/or ``finetune`` (vulnerability classifier on the
train part of the split, epoch and threshold selected on validation).

`cwescan train encoder --recipe recipes/encoder-pretrain.yaml --out runs/enc-pt`
`cwescan train encoder --recipe recipes/encoder-finetune.yaml --out runs/enc-ft`

Outputs (in ``out``): pre-training writes tokenizer.json, encoder-*.safetensors (fp16 body),
pretrain_log.jsonl and pretrain_summary.json; fine-tuning writes a loadable classifier directory
``out/model`` (config.json, tokenizer.json, model-*.safetensors) plus finetune_log.jsonl and
finetune_summary.json."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import site
import sys
import time
from dataclasses import dataclass
from pathlib import Path


from cwescan.evaluate.metrics import best_f1_threshold, roc_auc
from cwescan.ml.device import resolve_device
from cwescan.ml.encoder.model import OTHER, EncoderShape

from cwescan.train.encoder_recipe import CorpusSpec, FinetuneSpec, PretrainSpec, Recipe, load_recipe  # noqa: F401


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(recipe_path: str | Path, out: str | Path, device: str = "auto", max_steps: int | None = None) -> dict:
    recipe = load_recipe(recipe_path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    results = {}
    for stage in recipe.stages:
        if stage == "pretrain":
            results["pretrain"] = pretrain(recipe.pretrain, out, dev, max_steps)
        else:
            spec = recipe.finetune
            if "pretrain" in recipe.stages:  # fine-tune what this run just pre-trained
                spec = dataclasses.replace(spec, init=str(out))
            results["finetune"] = finetune(spec, out, dev, max_steps)
    return results


# --- pre-training ---------------------------------------------------------------------------


def corpus_files(spec: CorpusSpec) -> tuple[list[Path], list[Path], dict]:
    """(train files, held-out files, stats). Held-out = whole top-level packages chosen by a
    hash of their name, so no file of a held-out package is seen in training."""
    roots = []
    for r in spec.roots:
        roots.extend(site.getsitepackages() if r == "site-packages" else [r])
    train, held = [], []
    seen_real = set()
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for fn in sorted(filenames):
                if not fn.endswith(".py"):
                    continue
                p = Path(dirpath) / fn
                try:
                    st = p.stat()
                    real = os.path.realpath(p)
                except OSError:
                    continue
                if real in seen_real or st.st_size == 0 or st.st_size > spec.max_file_kb * 1024:
                    continue
                seen_real.add(real)
                package = p.relative_to(root).parts[0].split(".")[0].split("-")[0].lower()
                h = int(hashlib.sha256(package.encode()).hexdigest(), 16) % 10000
                (held if h < spec.holdout_percent * 100 else train).append(p)
    rng = random.Random(0)
    rng.shuffle(train)
    rng.shuffle(held)
    return train, held, {"roots": [str(r) for r in roots], "train_files_found": len(train), "heldout_files_found": len(held)}


def read_texts(files: list[Path], max_mb: float) -> tuple[list[str], int]:
    texts, total = [], 0
    for p in files:
        if total >= max_mb * 1e6:
            break
        try:
            t = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        texts.append(t)
        total += len(t.encode("utf-8"))
    return texts, total


def pack_blocks(tok, texts: list[str], block_tokens: int):
    """Tokenize (in parallel) and pack into rows of <s> + block_tokens-2 tokens + </s>, files
    separated by </s> as in RoBERTa's full-sentence packing. Returns (int32 array, tokens)."""
    import numpy as np

    from cwescan.ml.encoder.tokenizer import BOS, EOS

    chunks, n = [], 0
    for start in range(0, len(texts), 2048):
        for enc in tok.encode_batch(texts[start : start + 2048], add_special_tokens=False):
            ids = np.asarray(enc.ids, dtype=np.int32)
            chunks.append(ids)
            chunks.append(np.asarray([EOS], dtype=np.int32))
            n += len(ids)
    stream = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int32)
    body = block_tokens - 2
    rows = len(stream) // body
    blocks = np.empty((rows, block_tokens), dtype=np.int32)
    blocks[:, 0] = BOS
    blocks[:, -1] = EOS
    blocks[:, 1:-1] = stream[: rows * body].reshape(rows, body)
    return blocks, n


def mask_tokens(x, mask_prob: float, vocab_size: int, generator=None):
    """BERT masking of the non-special tokens: 80 % <mask>, 10 % random, 10 % kept.
    Returns (inputs, labels with -100 where nothing is predicted)."""
    import torch

    from cwescan.ml.encoder.tokenizer import MASK, SPECIAL_TOKENS

    dev = x.device
    special = x < len(SPECIAL_TOKENS)
    pick = (torch.rand(x.shape, device=dev, generator=generator) < mask_prob) & ~special
    labels = torch.where(pick, x, torch.full_like(x, -100))
    r = torch.rand(x.shape, device=dev, generator=generator)
    inputs = x.clone()
    inputs[pick & (r < 0.8)] = MASK
    rand_ids = torch.randint(len(SPECIAL_TOKENS), vocab_size, x.shape, device=dev, generator=generator)
    swap = pick & (r >= 0.8) & (r < 0.9)
    inputs[swap] = rand_ids[swap]
    return inputs, labels


def mlm_loss(model, inputs, labels):
    """Cross-entropy on masked positions only: the vocabulary projection runs for the ~15 %
    of tokens that are predicted, not for all of them."""
    import torch.nn.functional as F

    hidden = model.roberta(input_ids=inputs).last_hidden_state
    sel = labels != -100
    logits = model.lm_head(hidden[sel]).float()
    target = labels[sel]
    return F.cross_entropy(logits, target), logits, target


def pretrain(spec: PretrainSpec, out: Path, device: str, max_steps: int | None) -> dict:
    # Long on purpose: a training loop reads top to bottom (data, model, optimiser, steps, save).
    import numpy as np
    import torch
    from transformers import RobertaForMaskedLM

    from cwescan.ml.encoder.model import save_sharded
    from cwescan.ml.encoder.tokenizer import train_bpe

    t0 = time.time()
    torch.manual_seed(spec.seed)
    train_files, held_files, stats = corpus_files(spec.corpus)
    if not train_files or not held_files:
        raise SystemExit(f"corpus too small: {len(train_files)} train / {len(held_files)} held-out .py files under {stats['roots']}")
    texts, nbytes = read_texts(train_files, spec.corpus.max_mb)
    held_texts, held_bytes = read_texts(held_files, spec.corpus.holdout_max_mb)
    _log(f"corpus: {len(texts)} train files ({nbytes / 1e6:.1f} MB), {len(held_texts)} held-out files ({held_bytes / 1e6:.1f} MB) in {time.time() - t0:.0f}s")

    sample, sb = [], 0
    for t in texts:
        if sb >= spec.corpus.tokenizer_sample_mb * 1e6:
            break
        sample.append(t)
        sb += len(t)
    tok = train_bpe(sample, vocab_size=spec.shape.vocab_size)
    tok.save(str(out / "tokenizer.json"))
    _log(f"tokenizer: {tok.get_vocab_size()} tokens trained on {sb / 1e6:.1f} MB in {time.time() - t0:.0f}s")

    blocks, ntok = pack_blocks(tok, texts, spec.block_tokens)
    held_blocks, held_ntok = pack_blocks(tok, held_texts, spec.block_tokens)
    n_train_files, n_held_files = len(texts), len(held_texts)
    del texts, held_texts
    rng = np.random.default_rng(spec.seed)
    held_blocks = held_blocks[rng.permutation(len(held_blocks))[: spec.eval_blocks]]
    _log(f"packed: {len(blocks)} train blocks ({ntok / 1e6:.1f} M tokens, {nbytes / max(ntok, 1):.2f} bytes/token), {len(held_blocks)} held-out blocks, {time.time() - t0:.0f}s")
    if len(blocks) == 0 or len(held_blocks) == 0:
        raise SystemExit("corpus yields no full block; lower block_tokens or add files")

    shape = dataclasses.replace(spec.shape, vocab_size=tok.get_vocab_size())
    config = shape.roberta_config()
    config._attn_implementation = "sdpa"
    model = RobertaForMaskedLM(config).to(device)
    data = torch.from_numpy(blocks).to(device)
    held = torch.from_numpy(held_blocks).to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=spec.lr, betas=(0.9, 0.98), eps=1e-6, **({"fused": True} if device == "cuda" else {}),
    )
    amp = device == "cuda"
    steps_cap = min(spec.max_steps, max_steps or spec.max_steps)
    log_path = out / "pretrain_log.jsonl"
    log = log_path.open("w")

    def evaluate() -> dict:
        model.eval()
        g = torch.Generator(device=device).manual_seed(1234)
        loss_sum, correct, count = 0.0, 0, 0
        with torch.no_grad():
            for i in range(0, len(held), 64):
                x = held[i : i + 64].long()
                inp, lab = mask_tokens(x, spec.mask_prob, shape.vocab_size, g)
                with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=amp):
                    loss, logits, target = mlm_loss(model, inp, lab)
                loss_sum += loss.item() * len(target)
                correct += (logits.argmax(-1) == target).sum().item()
                count += len(target)
        model.train()
        return {"heldout_loss": loss_sum / max(count, 1), "heldout_masked_accuracy": correct / max(count, 1), "heldout_masked_tokens": count}

    model.train()
    t_train = time.time()
    step, tokens_seen, progress = 0, 0, 0.0
    ema = None
    while progress < 1.0 and step < steps_cap:
        progress = max(step / steps_cap, (time.time() - t_train) / spec.train_seconds)
        w = spec.warmup_fraction
        lr = spec.lr * (progress / w if progress < w else max(0.0, (1 - progress) / (1 - w)))
        for g_ in opt.param_groups:
            g_["lr"] = lr
        idx = torch.randint(0, len(data), (spec.batch_size,), device=device)
        x = data[idx].long()
        inp, lab = mask_tokens(x, spec.mask_prob, shape.vocab_size)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=amp):
            loss, _, _ = mlm_loss(model, inp, lab)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens_seen += x.numel()
        if step % spec.log_every == 0 or step == 1:
            lv = loss.item()
            if not math.isfinite(lv):
                raise SystemExit(f"MLM loss is {lv} at step {step}; lower the learning rate")
            ema = lv if ema is None else 0.9 * ema + 0.1 * lv
            rec = {"step": step, "loss": lv, "lr": lr, "tokens_seen": tokens_seen, "seconds": round(time.time() - t_train, 1)}
            if step % spec.eval_every == 0:
                rec.update(evaluate())
            log.write(json.dumps(rec) + "\n")
            log.flush()
            if step % (spec.log_every * 4) == 0 or step == 1:
                _log(f"step {step} loss {lv:.3f} lr {lr:.2e} tokens {tokens_seen / 1e6:.0f}M {time.time() - t_train:.0f}s")
    train_seconds = time.time() - t_train
    final = evaluate()
    log.write(json.dumps({"step": step, "loss": loss.item(), "tokens_seen": tokens_seen, "seconds": round(train_seconds, 1), **final}) + "\n")
    log.close()
    shards = save_sharded(model.roberta.state_dict(), out, "encoder", torch.float16)
    summary = {
        "corpus": {**stats, "train_files_read": n_train_files, "heldout_files_read": n_held_files, "train_bytes": nbytes, "train_tokens": ntok,
                   "heldout_bytes": held_bytes, "heldout_tokens": held_ntok, "bytes_per_token": nbytes / max(ntok, 1),
                   "python": sys.version.split()[0]},
        "shape": dataclasses.asdict(shape),
        "parameters": sum(p.numel() for p in model.roberta.parameters()),
        "steps": step,
        "batch_size": spec.batch_size,
        "block_tokens": spec.block_tokens,
        "tokens_seen": tokens_seen,
        "train_seconds": round(train_seconds, 1),
        "final_train_loss_ema": ema,
        **final,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "files": shards + ["tokenizer.json"],
        "spec": dataclasses.asdict(spec),
    }
    (out / "pretrain_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _log(f"pretrain done: {step} steps, {tokens_seen / 1e6:.0f}M tokens, held-out loss {final['heldout_loss']:.3f}, masked acc {final['heldout_masked_accuracy']:.3f}")
    return summary


# --- fine-tuning ----------------------------------------------------------------------------


@dataclass
class Item:
    """One record, as the detector will see it: the windows of all its units."""

    id: str
    label: int
    family: int  # index into families, -1 when not vulnerable or unlabelled
    windows: list  # list[Window] with lines mapped to record (file) lines
    vuln_lines: set[int]


def family_classes(records, min_count: int) -> list[str]:
    from collections import Counter

    from cwescan.core.cwe import family

    counts = Counter()
    for r in records:
        if r.vulnerable and r.cwes:
            try:
                counts[family(r.cwes[0])] += 1
            except ValueError:
                continue
    return sorted(f for f, c in counts.items() if c >= min_count) + [OTHER]


def record_family(r, families: list[str]) -> int:
    from cwescan.core.cwe import family

    if not (r.vulnerable and r.cwes):
        return -1
    try:
        f = family(r.cwes[0])
    except ValueError:
        return families.index(OTHER)
    return families.index(f) if f in families else families.index(OTHER)


def record_items(records, tok, families, window_tokens, overlap_tokens) -> list[Item]:
    from cwescan.ml.codeprep import strip_comments
    from cwescan.ml.encoder.windows import Window, make_windows
    from cwescan.core.units import model_code, parse_source

    items = []
    for r in records:
        wins = []
        for u in parse_source(r.id, r.code).units:
            code = strip_comments(model_code(u))  # what the detector feeds the model
            if not code.strip():
                continue
            for w in make_windows(tok, code, window_tokens, overlap_tokens):
                lines = [u.file_line(ln) if ln else 0 for ln in w.lines]
                wins.append(Window(w.ids, lines, u.file_line(w.first_line), u.file_line(w.last_line)))
        if wins:
            items.append(Item(r.id, int(r.vulnerable), record_family(r, families), wins, set(r.lines) if r.vulnerable else set()))
    return items


def record_scores(model, tok, records, device) -> list[float]:
    """P(vulnerable) per record exactly as the evaluation computes it from the detector:
    the max over the record's units of the unit score."""
    import torch

    from cwescan.ml.codeprep import strip_comments
    from cwescan.ml.encoder.infer import score_texts
    from cwescan.core.units import model_code, parse_source

    files = [parse_source(r.id, r.code) for r in records]
    texts = [strip_comments(model_code(u)) for f in files for u in f.units]  # as the detector does
    amp = torch.bfloat16 if device == "cuda" else None
    scores = score_texts(model, tok, texts, device=device, autocast_dtype=amp)
    out, k = [], 0
    for f in files:
        out.append(max((s.prob for s in scores[k : k + len(f.units)]), default=0.0))
        k += len(f.units)
    return out


def finetune(spec: FinetuneSpec, out: Path, device: str, max_steps: int | None) -> dict:
    # Long on purpose: a fine-tuning loop reads top to bottom (data, model, epochs, threshold, save).
    import torch
    import torch.nn.functional as F

    from cwescan.data.split import load_part, manifest_hash
    from cwescan.ml.encoder.infer import collate
    from cwescan.ml.encoder.model import ClassifierConfig, EncoderClassifier
    from cwescan.ml.encoder.tokenizer import load_tokenizer

    t0 = time.time()
    random.seed(spec.seed)
    torch.manual_seed(spec.seed)
    if spec.init:
        init = Path(spec.init)
        if not (init / "tokenizer.json").is_file():
            raise SystemExit(
                f"finetune: {init} holds no pre-trained encoder (tokenizer.json); run the pretrain recipe first "
                "or set finetune.init to a classifier directory such as src/cwescan/models/encoder"
            )
        tok = load_tokenizer(init / "tokenizer.json")
        summary_path = init / "pretrain_summary.json"
        shape = EncoderShape(**json.loads(summary_path.read_text())["shape"]) if summary_path.is_file() else _shape_from_config(init)
    else:
        if not spec.tokenizer:
            raise SystemExit("finetune: give init (pre-trained dir) or tokenizer (for a random body)")
        tok = load_tokenizer(spec.tokenizer)
        shape = dataclasses.replace(spec.shape, vocab_size=tok.get_vocab_size())
    if spec.window_tokens > shape.max_tokens:
        raise SystemExit(f"window_tokens {spec.window_tokens} exceeds the model's {shape.max_tokens} positions")

    train_recs = load_part("train", data_dir=spec.data_dir)
    val_recs = load_part("validation", data_dir=spec.data_dir)
    if spec.limit_records:
        train_recs = sorted(train_recs, key=lambda r: hashlib.sha256(r.id.encode()).hexdigest())[: spec.limit_records]
        val_recs = sorted(val_recs, key=lambda r: hashlib.sha256(r.id.encode()).hexdigest())[: max(8, spec.limit_records // 4)]
    families = family_classes(train_recs, spec.min_family_count)
    cfg = ClassifierConfig(shape=shape, families=families, window_tokens=spec.window_tokens, overlap_tokens=spec.overlap_tokens)
    model = EncoderClassifier(cfg)
    if spec.init:
        model.load_encoder(pretrained_body(Path(spec.init)))
    model.to(device)
    items = record_items(train_recs, tok, families, spec.window_tokens, spec.overlap_tokens)
    negatives = {"train": [], "validation": [], "manifest_hash": None}
    if spec.negatives_dir:
        from cwescan.data.negatives import sample_negatives

        negatives = sample_negatives(spec.negatives_dir, spec.negatives_ratio, len(items), spec.seed,
                                     spec.max_validation_negatives)
        items += record_items(negatives["train"], tok, families, spec.window_tokens, spec.overlap_tokens)
    n_windows = sum(len(it.windows) for it in items)
    _log(f"finetune: {len(items)} train records with code ({len(negatives['train'])} realistic negatives, "
         f"{n_windows} windows), {len(val_recs)} validation records (+{len(negatives['validation'])} realistic "
         f"negatives), families {families}")

    steps_per_epoch = math.ceil(len(items) / spec.batch_records)
    total = spec.epochs * steps_per_epoch
    if max_steps:
        total = min(total, max_steps)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    warm = max(1, int(spec.warmup_fraction * total))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm))))
    amp = device == "cuda"
    log = (out / "finetune_log.jsonl").open("w")
    val_y = [int(r.vulnerable) for r in val_recs]
    best = {"f1": -1.0}
    best_state = None
    step = 0
    rng = random.Random(spec.seed)
    for epoch in range(1, spec.epochs + 1):
        model.train()
        order = list(range(len(items)))
        rng.shuffle(order)
        losses = []
        for b in range(0, len(order), spec.batch_records):
            if step >= total:
                break
            batch = [items[i] for i in order[b : b + spec.batch_records]]
            wins, owner = [], []
            for j, it in enumerate(batch):
                ws = it.windows
                if len(ws) > spec.max_windows_per_record:
                    hit = [w for w in ws if it.vuln_lines & set(w.lines)]
                    rest = [w for w in ws if not (it.vuln_lines & set(w.lines))]
                    rng.shuffle(hit)
                    rng.shuffle(rest)
                    ws = (hit + rest)[: spec.max_windows_per_record]
                wins.extend(ws)
                owner.extend([j] * len(ws))
            ids, mask = collate(wins, device)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=amp):
                o = model(ids, mask)
            logit = o["binary"].float()
            owner_t = torch.tensor(owner, device=device)
            # multiple-instance: a record's logit is the max over its windows (as in scoring)
            rec_logit = torch.full((len(batch),), -1e4, device=device).scatter_reduce(0, owner_t, logit, reduce="amax")
            y = torch.tensor([it.label for it in batch], dtype=torch.float, device=device)
            loss = F.binary_cross_entropy_with_logits(rec_logit, y)
            # family head: on each vulnerable record's top window
            fam_idx, fam_y = [], []
            for j, it in enumerate(batch):
                if it.family >= 0:
                    w_of = (owner_t == j).nonzero().squeeze(-1)
                    fam_idx.append(w_of[logit[w_of].argmax()])
                    fam_y.append(it.family)
            if fam_idx:
                fl = o["family"].float()[torch.stack(fam_idx)]
                loss = loss + spec.family_loss * F.cross_entropy(fl, torch.tensor(fam_y, device=device))
            # line head: tokens of windows of vulnerable records with labelled lines
            tgt = torch.zeros_like(ids, dtype=torch.float)
            use = torch.zeros_like(ids, dtype=torch.bool)
            for k, (w, j) in enumerate(zip(wins, owner, strict=True)):
                vl = batch[j].vuln_lines
                if vl:
                    tgt[k, : len(w.lines)] = torch.tensor([float(ln in vl) for ln in w.lines])
                    use[k, 1 : len(w.lines) - 1] = True
            if use.any():
                loss = loss + spec.line_loss * F.binary_cross_entropy_with_logits(o["line"].float()[use], tgt[use])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            losses.append(loss.item())
        model.eval()
        scores = record_scores(model, tok, val_recs, device)
        m = best_f1_threshold(val_y, scores)
        thr = m["threshold"]
        m.update({"epoch": epoch, "step": step, "train_loss": sum(losses) / max(1, len(losses)), "val_auc": roc_auc(val_y, scores), "seconds": round(time.time() - t0, 1)})
        if negatives["validation"]:
            neg = record_scores(model, tok, negatives["validation"], device)
            pos = [s for s, y in zip(scores, val_y) if y]
            m["negatives_auc"] = roc_auc([1] * len(pos) + [0] * len(neg), pos + neg)
            m["mix_auc"] = (m["val_auc"] + m["negatives_auc"]) / 2
        log.write(json.dumps(m) + "\n")
        log.flush()
        _log(f"epoch {epoch}: train loss {m['train_loss']:.4f} val F1 {m['f1']:.4f} (P {m['precision']:.3f} R {m['recall']:.3f} @ {thr:.3f}) AUC {m['val_auc']:.4f}"
             + (f" mix AUC {m['mix_auc']:.4f}" if "mix_auc" in m else ""))
        key = "mix_auc" if spec.select_on == "mix_auc" else "f1"
        if m[key] > best.get(key, -1.0):
            best = m
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        if step >= total:
            break
    log.close()
    model.load_state_dict(best_state)
    model.config.threshold = float(best["threshold"])
    model_dir = out / "model"
    model.save(model_dir, torch.float16)
    tok.save(str(model_dir / "tokenizer.json"))
    summary = {
        "selected": best,
        "families": families,
        "train_records": len(items),
        "train_windows": n_windows,
        "validation_records": len(val_recs),
        "steps": step,
        "seconds": round(time.time() - t0, 1),
        "split_manifest_hash": manifest_hash(),
        "negatives_manifest_hash": negatives["manifest_hash"],
        "train_negative_units": len(negatives["train"]),
        "selected_on": spec.select_on,
        "init": spec.init,
        "spec": dataclasses.asdict(spec),
    }
    (out / "finetune_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _log(f"finetune done: epoch {best['epoch']} val F1 {best['f1']:.4f} threshold {best['threshold']}")
    return summary


def pretrained_body(directory: Path) -> dict:
    """Body weights from a pre-training output (encoder-*.safetensors) or from a fine-tuned
    classifier directory (model-*.safetensors, keys under "encoder.")."""
    from cwescan.ml.encoder.model import load_sharded

    if list(directory.glob("encoder-*.safetensors")):
        return load_sharded(directory, "encoder")
    state = load_sharded(directory, "model")
    return {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}


def _shape_from_config(directory: Path) -> EncoderShape:
    cfg = json.loads((directory / "config.json").read_text())
    return EncoderShape(**cfg["shape"])
