"""Inference with the SLM: ``score`` (one forward pass per window: P(vulnerable)) and
constrained ``generate`` (the JSON answer filled slot by slot, so it always parses).

score: the prompt is followed by the answer's first template piece ``{"vulnerability":``; the
next-token logits of `` true`` and `` false`` normalised over those two tokens give P(true).
Windows are tokenised in one call, sorted by length so each batch pads little, and batches are
right-padded (causal attention: no real token sees the padding after it, so no mask is needed);
the two verdict logits come from the last real position's hidden state and the head's two rows
in float32 (see ``score_and_decode``).

generate: after P(true) decides the verdict (against the threshold), a vulnerable answer is
continued with ``, "type": "CWE-`` and the CWE id is decoded greedily inside a token trie of the
known CWE ids (the ids seen in training), then the line number inside a trie of the window's
line numbers. Each trie path ends with the next template piece's first token, so "78" and "780"
are told apart by the model, not by us. The probability of the chosen CWE path (product of the
step probabilities renormalised over the allowed tokens) is reported as ``cwe_confidence``; a
full distribution over all ids would cost one extra pass per id and is not needed for a verdict.
Confidence in the answer is P(true) (or 1 - P(true) for a safe answer): the trained answer holds
no confidence text, see prompt.py.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cwescan.ml.attention import no_plan_attention
from cwescan.ml.slm import prompt as P


@dataclass
class TokenIds:
    open: list[int]
    true: int
    false: int
    type_: list[int]
    line: list[int]
    close: list[int]


def answer_token_ids(tokenizer) -> TokenIds:
    enc = lambda s: tokenizer.encode(s, add_special_tokens=False)  # noqa: E731
    t, f = enc(P.A_TRUE), enc(P.A_FALSE)
    if len(t) != 1 or len(f) != 1:
        raise ValueError("the tokenizer must encode ' true' and ' false' as one token each")
    return TokenIds(enc(P.A_OPEN), t[0], f[0], enc(P.A_TYPE), enc(P.A_LINE), enc(P.A_CLOSE))


def encode_prompts(tokenizer, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids of each prompt, the same as ``tokenizer.encode(p, add_special_tokens=False)``,
    in one call of the fast (Rust) tokenizer: the per-call overhead of the Python wrapper was a
    large share of the host time per window."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return [tokenizer.encode(p, add_special_tokens=False) for p in prompts]
    batch = getattr(backend, "encode_batch_fast", None) or backend.encode_batch  # fast: no offsets
    return [e.ids for e in batch(list(prompts), add_special_tokens=False)]


# transformers 5.24 renamed the forward pass's ``past_key_values`` to ``cache`` (the old name is
# still mapped there, with a warning, until 5.40); 5.23 and earlier take only the old name.
CACHE_KEYWORD_SINCE = "5.24.0"


@functools.lru_cache(maxsize=1)
def cache_keyword() -> str:
    """The keyword the installed transformers' forward pass takes its KV cache under."""
    import transformers
    from packaging.version import Version

    return "cache" if Version(transformers.__version__) >= Version(CACHE_KEYWORD_SINCE) else "past_key_values"


def with_cache(cache) -> dict:
    """The keyword argument that hands ``cache`` to a forward pass. Forward passes take
    ``**kwargs``, so the wrong name is swallowed without a word and the model reads the batch
    without the cached prefix: on the GPU machine's transformers 5.17 the first validation record
    scored 0.36 instead of 0.86 while the code passed ``cache``."""
    return {cache_keyword(): cache}


def _head_rows(head, rows: list[int]):
    """Rows of a head's weight as a float tensor. A plain weight is indexed; a quantized one
    (torch.ao's packed dynamic int8 ``weight()``, torchao / bitsandbytes tensor subclasses) is
    dequantized, or failing that read off the head itself: ``head(I)`` is the weight as the
    head applies it."""
    import torch

    w = head.weight() if callable(getattr(head, "weight", None)) else head.weight
    plain = type(w) in (torch.Tensor, torch.nn.Parameter)
    if plain and w.dtype.is_floating_point and not w.is_quantized:
        return w[rows]
    # torch.ao's quantized tensors, and torchao's subclasses (they report their float dtype);
    # integer storage (bitsandbytes' Int8Params / Params4bit) is not the weight's value
    try:
        if w.is_quantized or (not plain and w.dtype.is_floating_point):
            return w.dequantize()[rows]
    except Exception:  # noqa: BLE001 - a packing without dequantize(): ask the head
        pass
    p = next((t for t in head.parameters() if t.dtype.is_floating_point), None)
    dtype = p.dtype if p is not None else torch.float32
    eye = torch.eye(head.in_features, device=w.device, dtype=dtype)
    return head(eye)[:, rows].T


def split_head(model, ids: TokenIds, device):
    """(decoder, (2, hidden) float32 head rows of `` true`` / `` false``) of a causal LM laid
    out as transformers' ``model.model`` + ``lm_head`` (a PEFT wrapper is seen through; the
    decoder may be a stand-in, e.g. the benchmark's ONNX Runtime session); None for anything
    else (then the full model's logits are used)."""
    import torch

    if callable(getattr(model, "get_base_model", None)):  # a PEFT wrapper (training): its model
        model = model.get_base_model()
    decoder = getattr(model, "model", None)
    head = getattr(model, "lm_head", None)  # get_output_embeddings() asks the decoder, which may be a stand-in
    if head is None and callable(getattr(model, "get_output_embeddings", None)):
        try:
            head = model.get_output_embeddings()
        except (AttributeError, NotImplementedError):
            head = None
    bias = getattr(head, "bias", None)
    if callable(bias):  # torch.ao's dynamic int8 Linear
        bias = bias()
    if not isinstance(decoder, torch.nn.Module) or getattr(decoder, "lm_head", None) is not None or head is None or bias is not None:
        return None
    with torch.inference_mode():
        rows = _head_rows(head, [ids.true, ids.false])
    return decoder, rows.detach().to(device=device, dtype=torch.float32).contiguous()


PAD_SLACK = 0.25  # a batch computes at most 25 % padding on top of its real tokens
# On the CPU a batch also holds at most this many tokens (rows x width). A batch's keys and
# values (kept for the prefix cache's continuation and for decoding) and its MLP activations grow
# with its tokens: 16 windows of 1,024 tokens raised the resident size by ~2 GB (fp32) inside one
# batch. Measured on 12 long stdlib functions (tools/slm_batch_memory.py, 2 cores, fp32): peak
# +1,981 MB and 194 CPU-s without a cap, +776 MB / 157 CPU-s at 4,096, +329-494 MB / 146-149
# CPU-s at 2,048 (smaller batches stay in cache; 2,048 rows are still plenty for 2 cores). On an
# accelerator the row count alone bounds a batch.
CPU_BATCH_TOKENS = 2048


class Packed:
    """Every sequence's tokens in one flat tensor on the device, sorted by length, so a padded
    batch of neighbours is a slice plus index arithmetic: no Python loop per row, no copy from
    the host per batch."""

    def __init__(self, seqs: Sequence[Sequence[int]], pad: int, device) -> None:
        import torch

        self.order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))  # sorted slot -> input index
        self.lengths = [len(seqs[i]) for i in self.order]
        lens = torch.tensor(self.lengths, dtype=torch.long)
        self.flat = torch.tensor([t for i in self.order for t in seqs[i]], dtype=torch.long).to(device)
        self.starts = (lens.cumsum(0) - lens).to(device)
        self.lens = lens.to(device)
        self.pad, self.device = pad, device

    def spans(self, batch_size: int, slack: float = PAD_SLACK,
              max_tokens: int | None = None) -> list[tuple[int, int]]:
        """Batches as (start, end) of sorted slots: at most ``batch_size`` rows, and a row joins
        only while the padded batch stays within ``1 + slack`` times its real tokens (a sample
        of mixed lengths cut only by count spent most of a batch on padding) and, given
        ``max_tokens``, within that many padded tokens (a longer row still gets a batch alone)."""
        out, n, start = [], len(self.lengths), 0
        while start < n:
            end, real = start + 1, self.lengths[start]
            while (end < n and end - start < batch_size
                   and (max_tokens is None or (end - start + 1) * self.lengths[end] <= max_tokens)
                   and (end - start + 1) * self.lengths[end] <= (1 + slack) * (real + self.lengths[end])):
                real += self.lengths[end]
                end += 1
            out.append((start, end))
            start = end
        return out

    def batch(self, start: int, end: int):
        """(input_ids, lengths, mask) of sorted slots ``start:end``, *right*-padded: with causal
        attention no real token sees the padding after it, so the forward pass needs no attention
        mask (attention keeps its causal fast path) and positions are the plain 0..n-1. ``mask``
        (1 = real token) is what a continuation from the KV cache must pass."""
        import torch

        width = self.lengths[end - 1]  # sorted: the last is the longest
        lens = self.lens[start:end]
        col = torch.arange(width, device=self.device)[None, :]
        real = col < lens[:, None]
        at = self.starts[start:end, None] + torch.minimum(col, lens[:, None] - 1)
        return torch.where(real, self.flat[at], self.pad), lens, real.long()


def score_prompts(model, tokenizer, prompts: Sequence[str], batch_size: int = 16, device: str = "cpu") -> list[float]:
    """P(vulnerable) per prompt, from one forward pass each."""
    return [p for p, _ in score_and_decode(model, tokenizer, prompts, batch_size=batch_size, device=device)]


def score_and_decode(
    model,
    tokenizer,
    prompts: Sequence[str],
    cut: float | Sequence[float] = float("inf"),
    cwe_vocab: Sequence[str] = (),
    lines: Sequence[Sequence[int]] | None = None,
    batch_size: int = 16,
    device: str = "cpu",
    prefix_cache: bool = True,
    counts: dict | None = None,
) -> list[tuple[float, dict | None]]:
    """(P(vulnerable), details) per prompt. Prompts whose P reaches ``cut`` (one value, or one
    per prompt) are continued from
    the same forward pass's KV cache: the CWE id and the line (``lines[i]``: the allowed line
    numbers of prompt i) are decoded inside tries, batched over the flagged prompts.

    Speed: prompts are tokenised in one batch call, sorted by length and cut into batches of at
    most ``batch_size`` with little padding, right-padded so no attention mask is needed
    (``Packed``).
    The score needs only the last position: the decoder's final hidden
    state there goes through the two head rows of `` true`` / `` false`` in float32 -- the full
    49,152-row head is never applied (torch turned that 3-D product into a batched copy of the
    whole head per batch, half the CPU time), and a bf16 model's verdict logits keep fp32
    resolution, so near-twins no longer tie. Without decoding, the probabilities stay on the
    device until the end (one host sync per call).

    ``prefix_cache``: the instruction every prompt starts with is computed once per model and
    each batch continues from its keys and values (``cwescan.ml.slm.prefix``). ``counts`` (a dict)
    gets ``tokens`` (prompt tokens the model read), ``padded_tokens`` (with batch padding),
    ``prefix_tokens`` (tokens served from the prefix cache) and ``decode_steps`` (forward passes
    of one token a row) added; on the CPU also ``forward_s`` and ``decode_s``, the seconds of
    the scoring passes and of the decoding (on a GPU those would time kernel launches only).

    Flagged prompts of several batches are decoded together (``_DecodePool``): a decoding step
    of a few rows costs about as much as one of many (it reads every weight once either way)."""
    # Long because scoring, the prefix continuation and the decode of flagged prompts share one
    # batch loop over the same tensors; split, each piece would re-pack the batch.
    import torch

    from cwescan.ml.precision import HEAP_BOUND_MB, release_free_memory

    ids = answer_token_ids(tokenizer)
    seqs = [s + ids.open for s in encode_prompts(tokenizer, prompts)]
    out: list[tuple[float, dict | None]] = [(0.0, None)] * len(seqs)
    if not seqs:
        return out
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    split = split_head(model, ids, device)
    prefix = _shared_prefix(model, split, tokenizer, seqs, device) if prefix_cache else None
    if prefix is not None:  # feed only what follows the cached instruction
        seqs = [s[prefix.length:] for s in seqs]
    packed = Packed(seqs, pad, device)
    cuts = [float(cut)] * len(seqs) if isinstance(cut, (int, float)) else [float(c) for c in cut]
    if len(cuts) != len(seqs):
        raise ValueError(f"{len(cuts)} cuts for {len(seqs)} prompts")
    decode = min(cuts) <= 1.0
    on_cpu = str(device) == "cpu"
    spans = packed.spans(batch_size, max_tokens=CPU_BATCH_TOKENS if on_cpu else None)
    if counts is not None:
        counts["tokens"] = counts.get("tokens", 0) + sum(packed.lengths)
        counts["padded_tokens"] = counts.get("padded_tokens", 0) + sum(
            (e - s) * packed.lengths[e - 1] for s, e in spans)
        counts["prefix_tokens"] = counts.get("prefix_tokens", 0) + (prefix.length * len(seqs) if prefix else 0)
    pending: list[torch.Tensor] = []
    timed = counts if on_cpu and counts is not None else {}  # where the stage's seconds go
    pool = _DecodePool(
        lambda cache, mask, rows: _decode_slots(model, tokenizer, ids, cache, mask, cwe_vocab,
                                                [list(lines[i]) if lines else [1] for i in rows], device),
        getattr(model, "config", None), counts, timed)
    with torch.inference_mode(), no_plan_attention(device):  # no cuDNN plan per batch width
        for s, e in spans:
            started = time.perf_counter()
            idx = packed.order[s:e]
            x, lens, m = packed.batch(s, e)
            last = (torch.arange(e - s, device=device), lens - 1)  # each row's answer slot
            if prefix is not None:
                width = x.shape[1]
                pos = torch.arange(prefix.length, prefix.length + width, device=device)[None].expand(e - s, -1)
                res = split[0](input_ids=x, position_ids=pos, use_cache=True, **with_cache(prefix.cache(e - s)))
                two = res.last_hidden_state[last].float() @ split[1].T
                if decode:  # the continuation's mask covers the cached prefix too
                    m = torch.cat([m.new_ones(e - s, prefix.length), m], -1)
            elif split is not None:
                res = split[0](input_ids=x, use_cache=decode)
                two = res.last_hidden_state[last].float() @ split[1].T
            else:  # a model that only gives logits (all positions': slow, but exact)
                res = model(input_ids=x, use_cache=decode)
                two = res.logits[last][:, [ids.true, ids.false]].float()
            p = torch.softmax(two, -1)[:, 0]
            if on_cpu:  # freed activations back to the OS once the heap passes the bound
                release_free_memory(HEAP_BOUND_MB)
            timed["forward_s"] = timed.get("forward_s", 0.0) + time.perf_counter() - started
            if not decode:
                pending.append(p)
                continue
            p = p.tolist()
            flagged = [r for r in range(len(idx)) if p[r] >= cuts[idx[r]]]
            for r, i in enumerate(idx):
                out[i] = (p[r], None)
            if flagged:
                cache = res.past_key_values
                if len(flagged) < len(idx):
                    cache.batch_select_indices(torch.tensor(flagged, device=device))
                pool.add(cache, m[flagged], [idx[r] for r in flagged])
            del res  # the batch's activations go; its flagged rows' cache waits in the pool
            if pool.full() or (s, e) == spans[-1]:
                pool.decode(out)
    if pending:  # one device-to-host copy for the whole call
        for i, p in zip(packed.order, torch.cat(pending).tolist(), strict=True):
            out[i] = (p, None)
    return out


# Flagged rows are pooled across scoring batches until this many rows or this many cached
# tokens wait, then decoded in one batch. A scoring batch flags ~1-2 rows, and each decode of a
# pool takes ~8 steps whatever its size: the 1,000-file scan took 164 steps (~10 s on 2 AMX cores)
# decoding batch by batch. The token bound caps the pooled keys and values (~23 KB a token in
# bf16 across SmolLM2's 30 layers: 6,144 tokens ~140 MB). The pool joins them layer by layer,
# each batch's copy freed as it is joined: padding every batch first and then concatenating held
# the pool three times over at once (417 MB above the pool for 11 rows of ~6,900 tokens, against
# 29 MB joined layer by layer); in three cold 1,000-file scans the peak rose 60-175 MB past the
# first batch's, where the code that decoded batch by batch stayed at it.
DECODE_POOL_ROWS = 16
DECODE_POOL_TOKENS = 6144


@dataclass
class _Flagged:
    """The flagged rows of one scoring batch: each layer's (keys, values), the attention mask
    (1 = a real token, the cached prefix included) and the prompt index of each row."""

    layers: list
    mask: object
    rows: list[int]


def _right_padded_cat(parts: Sequence, width: int):
    """Tensors of (rows, ..., length[, dim]) with the length in dimension 2 (keys and values) or
    1 (masks), stacked along the rows into one tensor of ``width`` positions, each right-padded
    with zeros (masked out where it is read). One part that is already ``width`` long is returned
    as is."""
    first = parts[0]
    axis = 2 if first.dim() == 4 else 1
    if len(parts) == 1 and first.shape[axis] == width:
        return first
    shape = list(first.shape)
    shape[0], shape[axis] = sum(p.shape[0] for p in parts), width
    out = first.new_zeros(shape)
    row = 0
    for p in parts:
        out[row:row + p.shape[0]].narrow(axis, 0, p.shape[axis]).copy_(p)
        row += p.shape[0]
    return out


class _DecodePool:
    """Flagged rows of several scoring batches (``_Flagged``), decoded together in one batch:
    each batch's cache right-padded to the longest, the padding masked out, so every row keeps
    its positions. ``counts`` gets the decoding steps, ``timed`` the decoding seconds."""

    def __init__(self, decode, config, counts: dict | None, timed: dict) -> None:
        self.decode_rows, self.config, self.counts, self.timed = decode, config, counts, timed
        self.waiting: list[_Flagged] = []

    def add(self, cache, mask, rows: list[int]) -> None:
        self.waiting.append(_Flagged([(layer.keys, layer.values) for layer in cache.layers], mask, rows))

    def full(self) -> bool:
        rows = sum(len(f.rows) for f in self.waiting)
        tokens = sum(f.mask.numel() for f in self.waiting)
        return rows >= DECODE_POOL_ROWS or tokens >= DECODE_POOL_TOKENS

    def decode(self, out: list) -> None:
        """Decode every waiting row and put its details into ``out`` (index: the prompt)."""
        from transformers import DynamicCache

        if not self.waiting:
            return
        started = time.perf_counter()
        waiting, self.waiting = self.waiting, []
        width = max(f.mask.shape[1] for f in waiting)
        cache = DynamicCache(config=self.config) if self.config is not None else DynamicCache()
        for i in range(len(waiting[0].layers)):
            parts = [f.layers[i] for f in waiting]
            for f in waiting:  # each batch's copy of the layer goes once joined: the pool is not held twice
                f.layers[i] = None
            cache.update(_right_padded_cat([k for k, _ in parts], width),
                         _right_padded_cat([v for _, v in parts], width), i)
            del parts
        mask = _right_padded_cat([f.mask for f in waiting], width)
        rows = [r for f in waiting for r in f.rows]
        del waiting
        found, steps = self.decode_rows(cache, mask, rows)
        for r, d in zip(rows, found, strict=True):
            out[r] = (out[r][0], d)
        if self.counts is not None:
            self.counts["decode_steps"] = self.counts.get("decode_steps", 0) + steps
        self.timed["decode_s"] = self.timed.get("decode_s", 0.0) + time.perf_counter() - started


def _shared_prefix(model, split, tokenizer, seqs, device):
    """The cached instruction prefix (``prefix.PrefixKV``) when every sequence starts with it
    and the decoder is a transformers model that can continue from a cache (not a stand-in such
    as the benchmark's ONNX Runtime session or a compiled graph); else None."""
    from transformers import PreTrainedModel

    from cwescan.ml.slm import prefix as prefix_mod

    if split is None or not isinstance(split[0], PreTrainedModel):
        return None
    head = encode_prompts(tokenizer, [P.PROMPT_PREFIX])[0]
    if not prefix_mod.common_prefix(seqs, head):
        return None
    prefix_mod.use_prefix_attention(model)
    return prefix_mod.prefix_kv(model, split[0], head, device)


class _Batch:
    """A batch of padded sequences (``mask``: 1 = real token) continued from a KV cache; a row
    whose slot is already decoded feeds a masked dummy token, so its position does not move and
    nothing sees it."""

    def __init__(self, model, cache, mask, device):
        self.model, self.cache, self.mask, self.device = model, cache, mask, device
        self.pos = mask.long().sum(-1)  # next position id per row
        self.steps = 0  # forward passes fed

    def feed(self, tokens, active):
        import torch

        t = torch.tensor(tokens, device=self.device)
        if t.dim() == 1:
            t = t[:, None]
        act = torch.tensor(active, device=self.device, dtype=torch.long)[:, None].expand(-1, t.shape[1])
        steps = torch.arange(t.shape[1], device=self.device)[None]
        self.mask = torch.cat([self.mask, act], -1)
        out = self.model(input_ids=t, attention_mask=self.mask, position_ids=self.pos[:, None] + steps,
                         use_cache=True, **with_cache(self.cache))
        self.cache = out.past_key_values
        self.pos = self.pos + act[:, 0] * t.shape[1]
        self.steps += 1
        return out.logits[:, -1]


def _trie_step_decode(batch: _Batch, logits, candidates: list[dict[str, list[int]]], pad: int):
    """Greedy decoding of one slot per row, restricted to that row's candidate token paths
    (each path ends with the next template piece's first token). Returns [(key, prob)] and
    the logits after the slot."""
    import torch

    n = len(candidates)
    prefix: list[list[int]] = [[] for _ in range(n)]
    prob = [1.0] * n
    chosen: list[str | None] = [None] * n
    alive = [dict(c) for c in candidates]
    while any(c is None for c in chosen):
        tokens, active = [], []
        for r in range(n):
            if chosen[r] is not None:
                tokens.append(pad)
                active.append(0)
                continue
            k = len(prefix[r])
            allowed = sorted({path[k] for path in alive[r].values() if len(path) > k})
            sub = torch.softmax(logits[r, allowed].float(), -1)
            j = int(sub.argmax())
            prob[r] *= float(sub[j])
            prefix[r].append(allowed[j])
            alive[r] = {key: path for key, path in alive[r].items() if path[: k + 1] == prefix[r]}
            tokens.append(allowed[j])
            active.append(1)
        new = batch.feed(tokens, active)
        for r in range(n):
            if active[r]:
                logits[r] = new[r]
                done = [key for key, path in alive[r].items() if path == prefix[r]]
                if done:
                    chosen[r] = done[0]
    return list(zip(chosen, prob, strict=True)), logits


def _decode_slots(model, tokenizer, ids: TokenIds, cache, mask, cwe_vocab, lines, device) -> tuple[list[dict], int]:
    """(CWE and line of each row, forward passes it took)."""
    enc = lambda s: tokenizer.encode(s, add_special_tokens=False)  # noqa: E731
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    n = len(lines)
    batch = _Batch(model, cache, mask, device)
    logits = batch.feed([[ids.true] + ids.type_] * n, [1] * n).clone()
    cwe_paths = {c: enc(c.split("-", 1)[1]) + ids.line[:1] for c in cwe_vocab or ["CWE-20"]}
    cwes, logits = _trie_step_decode(batch, logits, [cwe_paths] * n, pad)
    if len(ids.line) > 1:
        logits = batch.feed([ids.line[1:]] * n, [1] * n).clone()
    line_paths = [{str(k): enc(str(k)) + ids.close[:1] for k in ls} for ls in lines]
    found, _ = _trie_step_decode(batch, logits, line_paths, pad)
    return [
        {"cwe": c, "cwe_confidence": pc, "line": int(ln), "line_confidence": pl}
        for (c, pc), (ln, pl) in zip(cwes, found, strict=True)
    ], batch.steps


def generate_details(
    model, tokenizer, prompt: str, cwe_vocab: Sequence[str], lines: Sequence[int], device: str = "cpu"
) -> dict:
    """CWE id and line of one window, decoded as if it were judged vulnerable."""
    [(_, d)] = score_and_decode(model, tokenizer, [prompt], -1.0, cwe_vocab, [list(lines)], 1, device)
    return d


def parse_answer(text: str) -> dict:
    """Parse a JSON answer and check its shape (used to count the parse rate)."""
    import json

    d = json.loads(text)
    if set(d) != {"vulnerability", "type", "line_number", "confidence"}:
        raise ValueError(f"unexpected keys {sorted(d)}")
    if not isinstance(d["vulnerability"], bool):
        raise ValueError("vulnerability is not a bool")
    if d["vulnerability"]:
        if not (isinstance(d["type"], str) and d["type"].startswith("CWE-")):
            raise ValueError("type is not a CWE id")
        if not isinstance(d["line_number"], int):
            raise ValueError("line_number is not an int")
    if not 0.0 <= float(d["confidence"]) <= 1.0:
        raise ValueError("confidence out of range")
    return d
