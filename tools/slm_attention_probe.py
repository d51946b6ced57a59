"""How SmolLM2's attention is best computed on this CPU at a scan's batch shapes: a batch of
right-padded windows continuing from the cached 59-token instruction (causal aligned to the
bottom right), 9 heads of 64, keys already repeated to the query heads. Random tensors; each
variant timed as the best of a few rounds, and its largest difference from the current way.

    python tools/slm_attention_probe.py [--dtype bf16] [--threads 2]

Variants:
- two-calls: how the scan did it before: the window's own keys causally, the prefix's keys
  without a mask (two fused flash calls), merged by their log-sum-exps;
- padded-queries: what the scan does now (``prefix.lower_right_attention``): one causal flash
  call, the queries padded at the front to the keys' length (so top-left and bottom-right
  causality agree) and the padding's outputs dropped;
- padded-fp32: the same in float32;
- masked: SDPA with a materialised lower-right boolean mask (one call);
- bmm: the products as batched bf16 matrix products (the CPU's matrix units), the softmax in
  float32 (the scores rounded to bf16 first: an inexact reference, for speed only);
- whole-causal: no prefix at all, one causal call over prefix + window (the cost of recomputing
  the prefix's attention, for scale).

Also the element-wise work around it at the batch's hidden states: transformers' RMSNorm against
``torch.nn.functional.rms_norm``.
"""

from __future__ import annotations

import argparse
import time

SHAPES = [(16, 120), (8, 250), (5, 384), (3, 650), (2, 1000), (1, 1900)]
PREFIX, HEADS, DIM, HIDDEN = 59, 9, 64, 576


def best_ms(fn, rounds: int = 5) -> float:
    fn()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F

    from cwescan.ml.slm.prefix import lower_right_attention

    torch.set_num_threads(args.threads)
    dt = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    print(f"torch {torch.__version__}, {args.threads} threads, {args.dtype}; ms per call (one layer)")
    print("| rows x width | two-calls | padded-queries | padded-fp32 | masked | bmm | whole-causal | padded vs two-calls, max diff |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    totals = [0.0] * 6
    for b, n in SHAPES:
        g = torch.Generator().manual_seed(0)
        q = torch.randn(b, HEADS, n, DIM, generator=g).to(dt)
        k = torch.randn(b, HEADS, PREFIX + n, DIM, generator=g).to(dt)
        v = torch.randn(b, HEADS, PREFIX + n, DIM, generator=g).to(dt)
        mask = torch.ones(n, PREFIX + n, dtype=torch.bool).tril(PREFIX)

        def two_calls():
            own, own_lse = flash(q, k[:, :, PREFIX:], v[:, :, PREFIX:], 0.0, True)[:2]
            pre, pre_lse = flash(q, k[:, :, :PREFIX], v[:, :, :PREFIX], 0.0, False)[:2]
            lse = torch.logaddexp(own_lse, pre_lse)
            return (own * torch.exp(own_lse - lse).unsqueeze(-1) + pre * torch.exp(pre_lse - lse).unsqueeze(-1)).to(dt)

        def padded():
            return lower_right_attention(q, k, v)

        def padded32():
            return lower_right_attention(q.float(), k.float(), v.float()).to(dt)

        def bmm():
            s = (q @ k.transpose(-1, -2)).float().mul_(DIM ** -0.5).masked_fill_(~mask, float("-inf"))
            return s.softmax(-1).to(dt) @ v

        variants = [two_calls, padded, padded32,
                    lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask), bmm,
                    lambda: F.scaled_dot_product_attention(torch.cat([k[:, :, :PREFIX], q], 2), k, v, is_causal=True)]
        ms = [best_ms(f) for f in variants]
        totals = [t + m for t, m in zip(totals, ms)]
        diff = (padded().float() - two_calls().float()).abs().max().item()
        print(f"| {b} x {n} | " + " | ".join(f"{m:.2f}" for m in ms) + f" | {diff:.2e} |")
    print("| all shapes | " + " | ".join(f"{t:.2f}" for t in totals) + " | |")

    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    norm = LlamaRMSNorm(HIDDEN, eps=1e-5).to(dt)
    x = torch.randn(2048, HIDDEN).to(dt)
    with torch.inference_mode():
        ours = best_ms(lambda: norm(x), 20)
        fused = best_ms(lambda: F.rms_norm(x, (HIDDEN,), norm.weight, 1e-5), 20)
        diff = (norm(x).float() - F.rms_norm(x, (HIDDEN,), norm.weight, 1e-5).float()).abs().max().item()
    print(f"RMSNorm of 2,048 x {HIDDEN}: transformers {ours:.3f} ms, F.rms_norm {fused:.3f} ms (max diff {diff:.1e})")


if __name__ == "__main__":
    main()
