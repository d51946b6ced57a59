"""`cwescan bench shapes`: how fast a model's own products can run here.

`cwescan bench models` reports a row's *roofline share*: the FLOP/s of its matrix products over
the best square GEMM of its dtype (``bench.roofline``). A narrow model never multiplies square
matrices. SmolLM2-135M multiplies tokens x 576 by 576 x {576, 192, 1536} and tokens x 1536 by
1536 x 576, and its attention reads windows of a few hundred tokens through 64-wide heads. This
benchmark times exactly those products, and that attention, at a scan's batch sizes, with
nothing else running between them. So it gives the share that a perfect implementation of the
model could show, before any element-wise work: the *ceiling* a roofline target for the model
must sit under. Per dtype it also gives the speed-up over fp32 at the same shapes, the most a
precision change buys these products.

The numerator is counted as ``bench models`` counts it (2 x matmul parameters x tokens), so the
two shares compare directly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from cwescan.bench.roofline import measure_peaks


@dataclass(frozen=True)
class Geometry:
    """What a transformer's per-token work depends on."""

    name: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    gated: bool  # a SwiGLU MLP (gate, up, down) rather than a GELU one (up, down)
    causal: bool  # a decoder's attention (causal) or an encoder's (every token sees every token)
    window: int  # tokens one sequence holds in a scan

    def products(self) -> list[tuple[int, int, int]]:
        """One layer's matrix products as (in, out, how many): tokens x in times in x out."""
        q = self.heads * self.head_dim
        kv = self.kv_heads * self.head_dim
        attention = [(self.hidden, q, 1), (self.hidden, kv, 2), (q, self.hidden, 1)]
        mlp = [(self.hidden, self.intermediate, 2 if self.gated else 1), (self.intermediate, self.hidden, 1)]
        return attention + mlp

    def matmul_params(self) -> int:
        return self.layers * sum(k * n * c for k, n, c in self.products())

    @classmethod
    def from_config(cls, name: str, config: dict, window: int) -> Geometry:
        """From a transformers config.json (Llama, Qwen2, ...) or the encoder's own config.json
        (its ``shape`` section, a RoBERTa body)."""
        if "shape" in config:  # cwescan's encoder
            s = config["shape"]
            return cls(name, s["hidden"], s["intermediate"], s["layers"], s["heads"], s["heads"],
                       s["hidden"] // s["heads"], gated=False, causal=False,
                       window=int(config.get("window_tokens", window)))
        heads = int(config["num_attention_heads"])
        hidden = int(config["hidden_size"])
        return cls(name, hidden, int(config["intermediate_size"]), int(config["num_hidden_layers"]), heads,
                   int(config.get("num_key_value_heads", heads)), int(config.get("head_dim") or hidden // heads),
                   gated=True, causal=True, window=window)


def default_config(model: str) -> Path:
    """The config.json the detector ``model`` runs with: the encoder artifact's, or that of the
    base model the shipped SLM's card names (its converted checkpoint, converted here on first
    use as a scan would)."""
    from cwescan.ml.artifacts import model_dir

    if model == "encoder":
        return model_dir("encoder") / "config.json"
    if model == "slm":
        from cwescan.ml.slm.base import BASE_MODELS, converted_dir

        name = json.loads((model_dir("slm") / "card.json").read_text()).get("base_model", "smollm2-135m")
        directory, _ = converted_dir(name, gguf_sha256=BASE_MODELS[name].sha256)
        return directory / "config.json"
    raise ValueError(f"no default config for {model!r}: pass --config")


def _timer(device: str) -> Callable[[Callable[[], object], int], float]:
    from cwescan.bench.roofline import time_best

    import torch

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    return lambda fn, reps: time_best(fn, reps, sync)


def product_seconds(geometry: Geometry, tokens: int, dtype, device: str, reps: int) -> float:
    """Seconds the model's matrix products over ``tokens`` tokens take, all layers, measured
    product by product (best of ``reps``) in the layout ``nn.Linear`` uses (weights out x in)."""
    import torch
    import torch.nn.functional as F

    timer = _timer(device)
    total = 0.0
    for k, n, count in geometry.products():
        x = torch.randn(tokens, k, device=device, dtype=dtype)
        w = torch.randn(n, k, device=device, dtype=dtype)
        total += count * timer(lambda x=x, w=w: F.linear(x, w), reps)
    return total * geometry.layers


def attention_seconds(geometry: Geometry, tokens: int, dtype, device: str, reps: int) -> float:
    """Seconds scaled-dot-product attention over ``tokens`` tokens takes, as sequences of
    ``geometry.window`` tokens, all layers (grouped-query heads shared as the model shares them)."""
    import torch
    import torch.nn.functional as F

    sequences = max(1, tokens // geometry.window)
    shape = (sequences, geometry.heads, geometry.window, geometry.head_dim)
    q = torch.randn(shape, device=device, dtype=dtype)
    kv_shape = (sequences, geometry.kv_heads, geometry.window, geometry.head_dim)
    k = torch.randn(kv_shape, device=device, dtype=dtype)
    v = torch.randn(kv_shape, device=device, dtype=dtype)
    gqa = geometry.kv_heads != geometry.heads
    seconds = _timer(device)(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=geometry.causal,
                                                                    enable_gqa=gqa), reps)
    return seconds * geometry.layers


@dataclass
class CeilingRow:
    model: str
    device: str
    dtype: str
    tokens: int
    products_s: float
    attention_s: float
    matmul_flops: float  # 2 x matmul parameters x tokens: the roofline share's numerator
    products_flops_per_s: float
    peak_flops_per_s: float | None  # the square-GEMM peak of this dtype, same run
    share_products: float | None  # products alone over the peak
    share_with_attention: float | None  # the ceiling: products and attention, nothing else
    speedup_vs_fp32: float | None = None  # fp32's (products + attention) time over this dtype's


DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def measure(geometries: Sequence[Geometry], device: str, dtypes: Sequence[str], token_counts: Sequence[int],
            reps: int = 5, quick_peaks: bool = False,
            progress: Callable[[str], None] = lambda s: None) -> dict:
    """Every (model, dtype, tokens) ceiling on ``device``, with the square peaks of the same run
    (``quick_peaks``: one small square, for smoke runs)."""
    import torch

    progress(f"measuring the square GEMM peaks on {device} ...")
    peaks = measure_peaks(device, quick=quick_peaks, dtypes=dtypes)
    rows: list[CeilingRow] = []
    for g in geometries:
        for dtype in dtypes:
            if dtype == "fp16" and not device.startswith("cuda"):
                continue
            for tokens in token_counts:
                progress(f"{g.name} {dtype} {tokens} tokens ...")
                dt = getattr(torch, DTYPES[dtype])
                prod = product_seconds(g, tokens, dt, device, reps)
                attn = attention_seconds(g, tokens, dt, device, reps)
                flops = 2.0 * g.matmul_params() * tokens
                peak = peaks.get(dtype)
                rows.append(CeilingRow(g.name, device, dtype, tokens, prod, attn, flops, flops / prod, peak,
                                       flops / prod / peak if peak else None,
                                       flops / (prod + attn) / peak if peak else None))
    by_key = {(r.model, r.dtype, r.tokens): r for r in rows}
    for r in rows:
        base = by_key.get((r.model, "fp32", r.tokens))
        if base is not None:
            r.speedup_vs_fp32 = (base.products_s + base.attention_s) / (r.products_s + r.attention_s)
    return {"device": device, "threads": torch.get_num_threads(), "peaks": peaks,
            "geometries": [asdict(g) for g in geometries], "rows": [asdict(r) for r in rows]}


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f} %"


def render_markdown(result: dict) -> str:
    lines = [f"Device {result['device']}, {result['threads']} threads. Square GEMM peaks (FLOP/s): "
             + ", ".join(f"{d} {p / 1e12:.2f} T" for d, p in result["peaks"].items() if p) + ".", "",
             "| model | dtype | tokens | products s | attention s | products TFLOP/s | share, products | "
             "ceiling share (products + attention) | speed-up vs fp32 |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        speedup = "" if r["speedup_vs_fp32"] is None else f"{r['speedup_vs_fp32']:.2f}x"
        lines.append(f"| {r['model']} | {r['dtype']} | {r['tokens']:,} | {r['products_s']:.4f} | "
                     f"{r['attention_s']:.4f} | {r['products_flops_per_s'] / 1e12:.3f} | "
                     f"{_pct(r['share_products'])} | {_pct(r['share_with_attention'])} | {speedup} |")
    return "\n".join(lines) + "\n"


def write(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "shapes.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "shapes.md").write_text(render_markdown(result))
