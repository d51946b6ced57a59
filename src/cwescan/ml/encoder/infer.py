"""Score units with an EncoderClassifier: window, batch by length, take the max per unit.

Shared by the detector and by fine-tuning's validation, so the threshold chosen in training is
applied to exactly the scores the detector produces."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import torch

from cwescan.ml.attention import no_plan_attention
from cwescan.core.process import rss_mb
from cwescan.ml.precision import HEAP_BOUND_MB, HEAP_SLACK_MB, release_free_memory
from cwescan.ml.focus import focused
from cwescan.ml.encoder.model import EncoderClassifier
from cwescan.ml.encoder.tokenizer import PAD, SPECIAL_TOKENS
from cwescan.ml.encoder.windows import Window, make_windows


# Tokens a batch holds (rows x width). On the CPU smaller batches stay in cache: scoring the
# 336 sink and source units of 300 stdlib files (2 cores, fp32, development machine) took
# 16.5-18.6 s at 2,048 tokens against 21.9-23.0 s at 8,192 (4,096: 19.6 s; 1,024: 21.1 s), the
# scores equal within 6e-7. The SLM's scoring batches are capped at 2,048 for the same reason.
CPU_BATCH_TOKENS = 2048
BATCH_TOKENS = 8192  # an accelerator's


def batch_tokens_for(device) -> int:
    """Tokens a batch holds on ``device`` (see ``CPU_BATCH_TOKENS``)."""
    return CPU_BATCH_TOKENS if torch.device(device).type == "cpu" else BATCH_TOKENS


@dataclass
class UnitScore:
    prob: float = 0.0  # P(vulnerable): max over windows
    family_probs: list[float] = field(default_factory=list)  # of the highest-scoring window
    line: int = 0  # 1-based line of the unit's code the line head points at (0: none)
    windows: int = 0


def collate(windows: Sequence[Window], device: str | torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(w.ids) for w in windows)
    ids = torch.full((len(windows), width), PAD, dtype=torch.long)
    for i, w in enumerate(windows):
        ids[i, : len(w.ids)] = torch.tensor(w.ids)
    ids = ids.to(device)
    return ids, (ids != PAD).long()


@torch.inference_mode()
def score_texts(
    model: EncoderClassifier,
    tok,
    texts: Sequence[str],
    device: str | torch.device = "cpu",
    batch_tokens: int = BATCH_TOKENS,
    autocast_dtype: torch.dtype | None = None,
    focus: Sequence[Collection[int]] | None = None,
) -> list[UnitScore]:
    """One score per text. ``focus``: per text, the lines (1-based) a text longer than one
    window is read around (``cwescan.ml.focus``); None reads every window."""
    cfg = model.config
    focus = focus if focus is not None else [()] * len(texts)
    per_text = [focused(make_windows(tok, t, cfg.window_tokens, cfg.overlap_tokens), f) if t.strip() else []
                for t, f in zip(texts, focus, strict=True)]
    flat = [(i, w) for i, ws in enumerate(per_text) for w in ws]
    # longest first, so each batch pads little and the token budget holds
    order = sorted(range(len(flat)), key=lambda k: -len(flat[k][1].ids))
    out = [UnitScore(windows=len(ws)) for ws in per_text]
    best = [-1.0] * len(texts)
    on_cpu = torch.device(device).type == "cpu"
    bound = (rss_mb() or 0.0) + HEAP_SLACK_MB if on_cpu else None  # see ml/precision.HEAP_SLACK_MB
    k = 0
    while k < len(order):
        width = len(flat[order[k]][1].ids)
        n = max(1, batch_tokens // width)
        batch = [flat[j] for j in order[k : k + n]]
        k += n
        ids, mask = collate([w for _, w in batch], device)
        with (torch.autocast(device_type=torch.device(device).type, dtype=autocast_dtype, enabled=autocast_dtype is not None),
              no_plan_attention(device)):  # no cuDNN plan per batch width
            o = model(ids, mask)
        probs = torch.sigmoid(o["binary"].float()).cpu().tolist()
        fam = torch.softmax(o["family"].float(), -1).cpu().tolist()
        # specials (<s>, </s>, <pad>) point at no line
        line_logits = o["line"].float().masked_fill(ids < len(SPECIAL_TOKENS), float("-inf"))
        top_tok = line_logits.argmax(-1).cpu().tolist()
        for (i, w), p, f, t in zip(batch, probs, fam, top_tok, strict=True):
            if p > best[i]:
                best[i] = p
                out[i].prob, out[i].family_probs = p, f
                out[i].line = w.lines[t] if 0 < t < len(w.lines) - 1 else w.first_line
        if bound is not None:
            del o, line_logits
            release_free_memory(min(bound, HEAP_BOUND_MB))
    return out
