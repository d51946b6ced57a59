"""Inference with the SLM: ``score`` (one forward pass per window: P(vulnerable)) and
constrained ``generate`` (the JSON answer filled slot by slot, so it always parses).

score: the prompt is followed by the answer's first template piece ``{"vulnerability":``; the
next-token logits of `` true`` and `` false`` normalised over those two tokens give P(true).
Batches are left-padded with explicit position ids (so padding never shifts positions) and
windows are sorted by length so each batch pads little.

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

from collections.abc import Sequence
from dataclasses import dataclass

from cwescan.slm import prompt as P


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


def _positions(mask):
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def score_prompts(model, tokenizer, prompts: Sequence[str], batch_size: int = 16, device: str = "cpu") -> list[float]:
    """P(vulnerable) per prompt, from one forward pass each."""
    return [p for p, _ in score_and_decode(model, tokenizer, prompts, batch_size=batch_size, device=device)]


def score_and_decode(
    model,
    tokenizer,
    prompts: Sequence[str],
    cut: float = float("inf"),
    cwe_vocab: Sequence[str] = (),
    lines: Sequence[Sequence[int]] | None = None,
    batch_size: int = 16,
    device: str = "cpu",
) -> list[tuple[float, dict | None]]:
    """(P(vulnerable), details) per prompt. Prompts whose P reaches ``cut`` are continued from
    the same forward pass's KV cache: the CWE id and the line (``lines[i]``: the allowed line
    numbers of prompt i) are decoded inside tries, batched over the flagged prompts."""
    import torch

    ids = answer_token_ids(tokenizer)
    seqs = [tokenizer.encode(p, add_special_tokens=False) + ids.open for p in prompts]
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    out: list[tuple[float, dict | None]] = [(0.0, None)] * len(seqs)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            width = max(len(seqs[i]) for i in idx)
            x = torch.full((len(idx), width), pad, dtype=torch.long)
            m = torch.zeros((len(idx), width), dtype=torch.long)
            for r, i in enumerate(idx):  # left padding: the last position is the answer slot
                x[r, width - len(seqs[i]) :] = torch.tensor(seqs[i])
                m[r, width - len(seqs[i]) :] = 1
            x, m = x.to(device), m.to(device)
            decode = cut <= 1.0
            res = model(input_ids=x, attention_mask=m, position_ids=_positions(m), logits_to_keep=1, use_cache=decode)
            logits = res.logits[:, -1]
            two = torch.stack([logits[:, ids.true], logits[:, ids.false]], -1).float()
            p = torch.softmax(two, -1)[:, 0].tolist()
            flagged = [r for r in range(len(idx)) if p[r] >= cut]
            details: dict[int, dict] = {}
            if flagged:
                cache = res.past_key_values
                if len(flagged) < len(idx):
                    cache.batch_select_indices(torch.tensor(flagged, device=device))
                rows = [idx[r] for r in flagged]
                found = _decode_slots(model, tokenizer, ids, cache, m[flagged], cwe_vocab,
                                      [list(lines[i]) if lines else [1] for i in rows], device)
                details = dict(zip(flagged, found, strict=True))
            for r, i in enumerate(idx):
                out[i] = (p[r], details.get(r))
    return out


class _Batch:
    """A batch of left-padded sequences continued from a KV cache; a row whose slot is already
    decoded feeds a masked dummy token, so its position does not move and nothing sees it."""

    def __init__(self, model, cache, mask, device):
        self.model, self.cache, self.mask, self.device = model, cache, mask, device
        self.pos = mask.long().sum(-1)  # next position id per row

    def feed(self, tokens, active):
        import torch

        t = torch.tensor(tokens, device=self.device)
        if t.dim() == 1:
            t = t[:, None]
        act = torch.tensor(active, device=self.device, dtype=torch.long)[:, None].expand(-1, t.shape[1])
        steps = torch.arange(t.shape[1], device=self.device)[None]
        self.mask = torch.cat([self.mask, act], -1)
        out = self.model(input_ids=t, attention_mask=self.mask, position_ids=self.pos[:, None] + steps,
                         past_key_values=self.cache, use_cache=True)
        self.cache = out.past_key_values
        self.pos = self.pos + act[:, 0] * t.shape[1]
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


def _decode_slots(model, tokenizer, ids: TokenIds, cache, mask, cwe_vocab, lines, device) -> list[dict]:
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
    ]


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
