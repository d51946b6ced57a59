"""Run a torch model at a chosen numeric precision, and the default precision per detector.

``apply_precision(model, precision, device)`` converts an already loaded float model (after any
LoRA merge) in place and returns it:

- ``fp32``: float32 weights and compute (the reference).
- ``bf16``: bfloat16 weights and compute. On CPUs with AMX / AVX512-BF16 this is the fast path
  (a 2048² bf16 GEMM ran ~14x faster than fp32 on the development machine).
- ``fp16``: float16 (GPU only; CPU float16 matmuls are slow).
- ``int8``: on CPU, ``torch.ao`` dynamic quantization of every ``nn.Linear`` (int8 weights, int8
  activations quantized per batch, fbgemm kernels), compute otherwise fp32. Measured on SmolLM2-135M
  (2 cores, batch 8 x 256 tokens): torch.ao dynamic 1,169 tok/s vs torchao
  Int8DynamicActivationInt8Weight 807 tok/s and torchao Int8WeightOnly (bf16) 2,393 tok/s, so
  torch.ao dynamic is the int8 (weights *and* activations) path kept here. On CUDA: torchao
  Int8WeightOnly on bf16.
- ``int4``: 4-bit weight-only, group size 32, bf16 compute. torchao 0.18's ``Int4WeightOnlyConfig``
  has no CPU kernel (needs the ``mslk`` package or CUDA), so on CPU this uses torchao's
  ``IntxWeightOnlyConfig(weight_dtype=torch.int4)``: weights hold int4 values (stored one per
  int8 byte, with bf16 group scales) and are dequantized inside the matmul. On CUDA it uses
  ``Int4WeightOnlyConfig`` (tile-packed layout, torch's tinygemm kernel).

A precision that cannot run where it was asked raises ``PrecisionUnavailable`` saying why.

``tune_cpu_allocator()`` (called by ``apply_precision`` for CPU models): glibc hands every
allocation over 128 KiB-32 MiB back to the kernel when freed, so each activation tensor of a
forward pass was mapped and page-faulted afresh (430,000 minor faults per SLM batch of 16 x 300
tokens); raising the mmap and trim thresholds keeps that memory in the heap for reuse:
bf16 forward 2,400 -> 3,250 tokens/s, no more faults after the first batch.

``bound_kernel_cache()`` (also for CPU models): oneDNN, which runs the CPU matmuls of bf16 models
on AMX and the encoder's, keeps the kernel it compiled for every matrix shape it meets, 1,024 by
default. Batches are as wide as their longest window, so a scan meets new shapes all the time,
and those kernels were what grew the SLM stage's resident set by ~450 MB over a 1,000-file scan.

``default_precision(detector)`` reads ``models/precision.json``, written by ``cwescan bench
models`` from measurements: the fastest precision that lost at most one F1 point against fp32.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from cwescan.core.precisions import PRECISIONS
from cwescan.core.process import rss_mb

PRECISION_FILE = Path(__file__).parents[1] / "models" / "precision.json"
INT4_GROUP_SIZE = 32


def check_precision(precision: str) -> str:
    """``precision`` itself when it is one of PRECISIONS; else a ValueError naming the choices."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    return precision


class PrecisionUnavailable(RuntimeError):
    """The requested precision has no working kernel on this device / software stack."""


def quiet_torchao():
    """Import torchao's quantization API without its noise about optional CUDA extensions."""
    import logging

    logging.getLogger("torchao").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import torchao.quantization as q
        except Exception as e:  # noqa: BLE001 - missing or broken install: say so
            raise PrecisionUnavailable(f"torchao is not importable ({type(e).__name__}: {e})") from e
    return q


def _float_only(model) -> None:
    import torch

    for name, p in model.named_parameters():
        if not p.dtype.is_floating_point:
            raise PrecisionUnavailable(f"parameter {name} is {p.dtype}; apply_precision needs a float model")
    del torch


_ALLOCATOR_TUNED = False


def tune_cpu_allocator(mmap_threshold: int = 32 * 2**20, trim_threshold: int = 2**30) -> bool:
    """Keep freed tensor memory in the process heap for reuse (glibc ``mallopt``; see the
    module docstring). Process-wide, once; False where the C library is not glibc."""
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    # the trim threshold first: setting the mmap threshold turns glibc's dynamic tuning off
    _ALLOCATOR_TUNED = bool(mallopt(m_trim_threshold, trim_threshold)) and bool(mallopt(m_mmap_threshold, mmap_threshold))
    return _ALLOCATOR_TUNED


# oneDNN kernels kept (ONEDNN_PRIMITIVE_CACHE_CAPACITY). Cold scan of 1,000 files, 2 AMX cores,
# bf16, four variants side by side: 1,024 (oneDNN's default) peak 2,544 MB in 302 s; 16: 2,233 MB
# in 302 s, the same findings; 0 (no cache): 2,219 MB but 354 s (every kernel compiled again).
KERNEL_CACHE_CAPACITY = 16


def bound_kernel_cache(capacity: int = KERNEL_CACHE_CAPACITY) -> None:
    """Keep at most ``capacity`` compiled oneDNN kernels (see the module docstring) unless the
    user set ``ONEDNN_PRIMITIVE_CACHE_CAPACITY``. oneDNN reads it once, when it compiles its
    first kernel, so this must run before a model's first forward pass."""
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(capacity))


HEAP_BOUND_MB = 1536  # resident size above which a scoring call hands free heap memory back
# A call that starts well under that bound still grows by the freed blocks of its batches (the
# encoder's first stage: up to 57 batches of 8,192 tokens in a cold 1,000-file scan), so the
# encoder also hands memory back after a batch once the process holds this many MB more than when
# the call began. On 200 stdlib files (fp32, development machine) the first stage's peak fell
# from 1,015 to 966 MB and the scan's from 1,586 to 1,578 MB, the time within noise.
HEAP_SLACK_MB = 192


def release_free_memory(above_mb: float | None = None) -> bool:
    """Hand the heap's free memory back to the kernel (glibc ``malloc_trim``); with
    ``above_mb``, only when the process is resident above that many MB. The thresholds above keep
    freed activations for reuse, but the heap only grew (batches of new shapes fit no freed
    block): the SLM stage of a cold 1,000-file scan peaked at 5.7 GB RSS. Called after each
    forward batch with a bound, it costs page faults only when the bound is crossed. False where
    nothing was released or the C library is not glibc."""
    import ctypes
    import ctypes.util

    if above_mb is not None:
        rss = rss_mb()
        if rss is None or rss <= above_mb:
            return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):
        return False


def apply_precision(model, precision: str, device: str = "cpu"):
    """Convert ``model`` (a float ``nn.Module`` in eval mode) to ``precision`` on ``device``.

    The model is modified in place and returned (the dynamic-int8 path returns a new module)."""
    import torch

    precision = (precision or "fp32").lower()
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    device = str(device)
    on_cuda = device.startswith("cuda")
    if on_cuda and not torch.cuda.is_available():
        raise PrecisionUnavailable(f"device {device!r} requested but torch sees no CUDA device")
    _float_only(model)
    model.eval()
    if not on_cuda:
        tune_cpu_allocator()
        bound_kernel_cache()

    if precision == "fp32":
        return model.to(device=device, dtype=torch.float32)
    if precision == "bf16":
        return model.to(device=device, dtype=torch.bfloat16)
    if precision == "fp16":
        if not on_cuda:
            raise PrecisionUnavailable("fp16 is GPU-only here: CPU float16 matmuls have no fast kernel; use bf16")
        return model.to(device=device, dtype=torch.float16)

    if precision == "int8":
        if on_cuda:
            q = quiet_torchao()
            model = model.to(device=device, dtype=torch.bfloat16)
            q.quantize_(model, q.Int8WeightOnlyConfig(), filter_fn=gpu_quant_filter)
            return model
        model = model.to(device="cpu", dtype=torch.float32)
        if "fbgemm" in torch.backends.quantized.supported_engines:
            torch.backends.quantized.engine = "fbgemm"
        with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=False)

    # int4
    q = quiet_torchao()
    model = model.to(device=device, dtype=torch.bfloat16)
    if on_cuda:
        # tile_packed_to_4d runs torch's own tinygemm kernel; torchao's default int4 layout
        # needs the separate mslk package
        config = q.Int4WeightOnlyConfig(group_size=INT4_GROUP_SIZE, int4_packing_format="tile_packed_to_4d")
        q.quantize_(model, config, filter_fn=gpu_quant_filter)
        return model
    try:
        from torchao.quantization.granularity import PerGroup

        config = q.IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(INT4_GROUP_SIZE))
    except Exception as e:  # noqa: BLE001 - an older/newer torchao without the config
        raise PrecisionUnavailable(
            "int4 on CPU needs torchao's IntxWeightOnlyConfig (torchao >= 0.12); "
            f"Int4WeightOnlyConfig has no CPU kernel in this torchao ({type(e).__name__}: {e})"
        ) from e
    # the tied input embedding is not a Linear and stays bf16; every Linear (incl. an untied
    # lm_head) whose in_features the group size divides gets int4 weights
    q.quantize_(model, config, filter_fn=_int4_filter)
    return model


def gpu_quant_filter(module, fqn: str) -> bool:
    """Linear layers the CUDA kernels take: tiny classifier heads (fewer than 64 outputs) and
    odd shapes stay in bf16."""
    import torch

    return (
        isinstance(module, torch.nn.Linear)
        and module.out_features >= 64
        and module.out_features % 16 == 0
        and module.in_features % 64 == 0
    )


def _int4_filter(module, fqn: str) -> bool:
    import torch

    return isinstance(module, torch.nn.Linear) and module.in_features % INT4_GROUP_SIZE == 0


def read_precision_file(path: str | Path | None = None) -> dict:
    p = Path(path) if path is not None else PRECISION_FILE
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# CPU flags of a native bf16 matrix path (oneDNN uses AMX tiles or AVX512-BF16 dot products);
# without either, torch computes bf16 products through fp32 conversions
NATIVE_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def cpu_has_native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool | None:
    """Whether this CPU multiplies bf16 natively; None when the flags cannot be read (not Linux)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return bool(NATIVE_BF16_FLAGS & set(line.partition(":")[2].split()))
    return None


def default_precision(detector: str, path: str | Path | None = None, device: str | None = None,
                      cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The measured default precision of a model detector ("slm", "encoder"); "fp32" when the
    benchmark has not written one (or wrote something unusable). The benchmark ran on a CPU with
    AMX, where bf16 is the fastest; on a CPU without native bf16 (e.g. AVX2 only) the same bf16
    model ran 5.7x slower than fp32 (the encoder, 300 units, one run), so there the default is fp32."""
    entry = read_precision_file(path).get(detector)
    if isinstance(entry, dict):
        entry = entry.get("precision")
    chosen = entry if isinstance(entry, str) and entry in PRECISIONS else "fp32"
    if chosen == "bf16" and (device in (None, "cpu")) and cpu_has_native_bf16(cpuinfo) is False:
        return "fp32"
    return chosen
