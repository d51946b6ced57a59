"""Measured GEMM peak per dtype: the roofline the benchmark rows are compared against.

The peak is measured, not taken from a datasheet, in the same run as the rows: the best
throughput of square matrix products (several sizes, a few repetitions each) with the same
thread count the rows use. int8 uses ``torch._int_mm`` (int8 x int8 -> int32), the kernel an
int8 GEMM can at best reach.

A row's *achieved* FLOP/s is ``2 x (parameters inside matmuls) x tokens / second``: attention
score products and element-wise work are not counted, so the share is a slight under-estimate
for long sequences.
"""

from __future__ import annotations

import time

# row precision/backend -> dtype whose GEMM does its matmuls
ROOFLINE_DTYPE = {
    "fp32": "fp32",
    "bf16": "bf16",
    "fp16": "fp16",
    "int8": "int8",  # CPU: fbgemm int8 GEMM (weights and activations int8)
    "int4": "bf16",  # weight-only: weights are dequantized, the product runs in bf16
    "onnx-fp32": "fp32",
    "onnx-int8": "int8",
    "bnb-int8": "int8",
    "bnb-nf4": "bf16",
    "ao-int8": "bf16",  # weight-only int8, bf16 products
    "ao-int8dyn": "int8",
    "ao-int4": "bf16",
    "ao-fp8": "fp8",
    "bf16-compiled": "bf16",
}


def time_best(fn, reps: int, sync) -> float:
    fn()  # warm-up: first call allocates / selects kernels
    sync()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t)
    return best


def gemm_peak(dtype: str, device: str = "cpu", sizes=(1024, 2048), reps: int = 3) -> float | None:
    """Best measured FLOP/s (int8: OP/s) over products of ``sizes`` in ``dtype`` (a size is n:
    n x n x n, or (m, k, n)); None when this dtype has no GEMM here."""
    import torch

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    best = 0.0
    for size in sizes:
        m, k, n = (size, size, size) if isinstance(size, int) else size
        try:
            if dtype == "int8":
                a = torch.randint(-128, 127, (m, k), dtype=torch.int8, device=device)
                b = torch.randint(-128, 127, (k, n), dtype=torch.int8, device=device)
                seconds = time_best(lambda: torch._int_mm(a, b), reps, sync)
            elif dtype == "fp8":
                if not device.startswith("cuda"):
                    return None
                a = torch.randn(m, k, device=device).to(torch.float8_e4m3fn)
                b = torch.randn(n, k, device=device).to(torch.float8_e4m3fn).t()
                one = torch.ones((), device=device)
                seconds = time_best(
                    lambda: torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16), reps, sync
                )
            else:
                dt = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
                if dtype == "fp16" and not device.startswith("cuda"):
                    return None
                a = torch.randn(m, k, device=device, dtype=dt)
                b = torch.randn(k, n, device=device, dtype=dt)
                seconds = time_best(lambda: a @ b, reps, sync)
        except (RuntimeError, NotImplementedError, AttributeError):
            return None
        best = max(best, 2 * m * k * n / seconds)
    return best


def measure_peaks(device: str = "cpu", quick: bool = False, dtypes=None) -> dict[str, float | None]:
    """GEMM peak per dtype on ``device`` (default: every dtype a row may use there), FLOP/s
    (None: not available)."""
    # a tall product too: on this AMX CPU a bf16 8192 x 1024 x 1024 runs ~1.25x a 2048 cube, and
    # a peak below what the model's own products reach would overstate every roofline share
    sizes = (1024,) if quick else ((1024, 2048, (8192, 1024, 1024)) if device == "cpu" else (4096, 8192))
    if dtypes is None:
        dtypes = ("fp32", "bf16", "int8") if device == "cpu" else ("fp32", "bf16", "fp16", "int8", "fp8")
    return {d: gemm_peak(d, device, sizes=sizes, reps=2 if quick else 3) for d in dtypes}


def roofline_share(achieved_flops: float | None, precision: str, peaks: dict) -> float | None:
    peak = peaks.get(ROOFLINE_DTYPE.get(precision, "fp32"))
    if not peak or achieved_flops is None:
        return None
    return achieved_flops / peak
