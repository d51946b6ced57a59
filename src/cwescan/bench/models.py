"""`cwescan bench models`: the quantization benchmark of the model detectors.

One *row* is one model at one precision / backend on one device. Each row runs in its own
freshly spawned process (so peak RSS is that row's alone) and measures, on the same records:

- accuracy: F1 and accuracy of record-level verdicts (record score = max over its units'
  P(vulnerable), flagged at the detector's own threshold), on the test part of the split;
- speed: units/s at every batch size of a sweep over a fixed sample of units (time-capped per
  batch), p50 / p95 latency per unit at batch 1, and the units/s of the whole accuracy pass;
- load time, size of the weights as used, peak RSS (or GPU memory);
- FLOP/s actually executed: every Linear-like module counts ``2 x in x out`` per row of input
  it multiplies (padding included, because it is computed), so the roofline share is measured
  work over the GEMM peak of the row's dtype (``bench.roofline``, measured in the same run).

Rows are built by a *scorer factory*: a picklable callable ``factory(precision, device)``
returning an object with ``score(units) -> list[float]``, an optional ``threshold`` and an
``nn.Module`` attribute (found by ``find_module``). ``detector_factory`` builds the real detectors
through the registry; tests pass a tiny model's factory.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import platform
import resource
import statistics
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import typer

# Prices used for "cost per 1,000 reviews" (a review = one unit scored); flags override them.
# CPU: about the on-demand price of one vCPU of a current x86 cloud instance; GPU: one H100.
DEFAULT_PRICE_CPU_CORE_HOUR = 0.05
DEFAULT_PRICE_GPU_HOUR = 2.50

# precisions a detector takes natively (``precision=``) on CPU: what `cwescan scan` can run
SCAN_PRECISIONS = ("fp32", "bf16", "int8", "int4")
CPU_ROWS = ("fp32", "bf16", "int8", "int4", "onnx-int8")
GPU_ROWS = ("fp32", "fp16", "bf16", "bf16-compiled", "bnb-int8", "bnb-nf4", "ao-int8", "ao-int8dyn", "ao-int4", "ao-fp8")
BENCH_ONLY = ("onnx-int8", "onnx-fp32", "bf16-compiled", "bnb-int8", "bnb-nf4", "ao-int8", "ao-int8dyn", "ao-int4",
              "ao-fp8")
F1_TOLERANCE = 0.01  # "loses at most one F1 point"


@dataclass(frozen=True)
class RowSpec:
    model: str
    precision: str
    device: str
    factory: Callable  # factory(precision, device) -> scorer


@dataclass
class BenchConfig:
    batches: tuple[int, ...] = (1, 4, 8, 16, 32)
    speed_units: int = 48  # units in the batch-sweep sample (each batch size scores all of them)
    threads: int = 2
    cores: int = 2  # cores paid for on CPU
    price_cpu_core_hour: float = DEFAULT_PRICE_CPU_CORE_HOUR
    price_gpu_hour: float = DEFAULT_PRICE_GPU_HOUR
    isolate: bool = True  # one spawned process per row
    row_timeout_s: float = 1800.0
    latency_units: int | None = None  # batch 1 (unit by unit, p50/p95) on the first N sweep units only
    time_budget_s: float | None = None  # rows that would start past it are reported as not run


# ------------------------------------------------------------------ scorers


def find_module(obj):
    """(attribute name, nn.Module) of the model inside a detector / scorer."""
    import torch

    if isinstance(getattr(obj, "model", None), torch.nn.Module):
        return "model", obj.model
    for name, value in vars(obj).items():
        if isinstance(value, torch.nn.Module):
            return name, value
    raise TypeError(f"{type(obj).__name__} holds no torch module to benchmark")


def _loaded_module(obj):
    """find_module, after ``load()`` for a detector that loads its model lazily (on first use)."""
    try:
        return find_module(obj)
    except TypeError:
        if callable(getattr(obj, "load", None)):
            obj.load()
            return find_module(obj)
        raise


def _linear_like(m) -> bool:
    return isinstance(getattr(m, "in_features", None), int) and isinstance(getattr(m, "out_features", None), int)


class Meter:
    """Counts the tokens a model is fed and the matmul FLOPs its Linear-like layers execute."""

    def __init__(self):
        self.tokens = 0
        self.flops = 0
        self.extra_flops_per_token = 0.0  # for modules whose insides cannot be hooked (ONNX)
        self._handles = []

    def attach(self, module, token_module=None, linears: bool = True) -> None:
        """Count tokens where they enter ``token_module`` (default: the input embedding, which
        sees every token whichever part of the model a detector calls; else ``module``) and
        FLOPs in every Linear-like layer of ``module`` (``linears=False``: none; FLOPs then
        come from ``extra_flops_per_token``, for insides that run compiled or in ONNX Runtime)."""
        import torch

        self.detach()
        if token_module is None:
            try:
                token_module = module.get_input_embeddings()
            except (AttributeError, NotImplementedError):
                token_module = None
            if not isinstance(token_module, torch.nn.Module):
                token_module = module
        self._handles.append(token_module.register_forward_pre_hook(self._count_tokens, with_kwargs=True))
        for m in module.modules() if linears else ():
            if _linear_like(m):
                self._handles.append(m.register_forward_pre_hook(self._count_linear))

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _count_tokens(self, _m, args, kwargs):
        import torch

        for t in list(args) + list(kwargs.values()):
            if isinstance(t, torch.Tensor) and t.dim() >= 2 and not t.is_floating_point():
                n = t.shape[0] * t.shape[1]
                self.tokens += n
                self.flops += int(self.extra_flops_per_token * n)
                return

    def _count_linear(self, m, args):
        x = args[0] if args else None
        if x is not None and hasattr(x, "numel") and x.numel():
            self.flops += 2 * m.in_features * m.out_features * (x.numel() // max(1, x.shape[-1]))

    def reset(self) -> None:
        self.tokens = self.flops = 0


def weights_bytes(module) -> int:
    """Bytes of the weights as held for inference: every tensor of the state dict once (tied
    weights counted once), quantized / packed tensors by their inner storage."""
    import torch

    seen: set[int] = set()

    def size(t) -> int:
        if isinstance(t, torch.Tensor):
            if type(t) not in (torch.Tensor, torch.nn.Parameter) and hasattr(t, "__tensor_flatten__"):
                names, _ = t.__tensor_flatten__()  # torchao quantized tensors: their inner tensors
                return sum(size(getattr(t, n)) for n in names)
            try:
                key = t.untyped_storage().data_ptr() if not t.is_quantized else id(t)
            except (RuntimeError, NotImplementedError):
                key = id(t)
            if key in seen and key != 0:
                return 0
            seen.add(key)
            return t.numel() * t.element_size()
        if isinstance(t, (tuple, list)):
            return sum(size(x) for x in t)
        if "PackedParams" in type(t).__name__ or "ScriptObject" in type(t).__name__:
            try:  # torch.ao dynamic Linear: (int8 weight, bias)
                w, b = torch.ops.quantized.linear_unpack(t)
                return size(w) + (size(b) if b is not None else 0)
            except Exception:  # noqa: BLE001 - unknown packing: not counted
                return 0
        return 0

    return sum(size(v) for v in module.state_dict(keep_vars=True).values())


def detector_factory(name: str, precision: str, device: str):
    """The registered detector ``name`` loaded at ``precision`` on ``device`` (``precision=`` is
    what `cwescan scan --precision` runs)."""
    from cwescan.detectors import create

    if name.startswith("slm-"):  # another shipped SLM adapter by short name, e.g. slm-qwen
        return create("slm", precision=precision, device=device, model=name.split("-", 1)[1])
    return create(name, precision=precision, device=device)


def make_factory(name: str) -> Callable:
    return functools.partial(detector_factory, name)


# ------------------------------------------------------------------ bench-only conversions


def _bnb_convert(module, precision: str, device: str):
    try:
        import bitsandbytes as bnb
    except ImportError as e:
        raise RuntimeError(f"bitsandbytes is not installed ({e})") from e
    import torch

    from cwescan.ml.precision import gpu_quant_filter

    if not device.startswith("cuda"):
        raise RuntimeError("bitsandbytes rows run on CUDA only")

    dtype = torch.float16 if precision == "bnb-int8" else torch.bfloat16

    def swap(parent):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear) and gpu_quant_filter(child, child_name) and child_name != "lm_head":
                bias = child.bias is not None
                if precision == "bnb-int8":
                    new = bnb.nn.Linear8bitLt(child.in_features, child.out_features, bias=bias, has_fp16_weights=False, threshold=6.0)
                    new.weight = bnb.nn.Int8Params(child.weight.data.cpu().half(), requires_grad=False, has_fp16_weights=False)
                else:
                    new = bnb.nn.Linear4bit(
                        child.in_features, child.out_features, bias=bias, compute_dtype=torch.bfloat16, quant_type="nf4"
                    )
                    new.weight = bnb.nn.Params4bit(child.weight.data.cpu().to(torch.bfloat16), requires_grad=False, quant_type="nf4")
                if bias:
                    new.bias = torch.nn.Parameter(child.bias.data.cpu().to(dtype), requires_grad=False)
                setattr(parent, child_name, new.to(device))
            else:
                swap(child)

    module = module.to(dtype)
    swap(module)
    return module.to(device)


def linear_flops_per_token(module) -> int:
    """Matmul FLOPs one token costs in ``module``'s Linear-like layers (each runs once a token)."""
    return sum(2 * m.in_features * m.out_features for m in module.modules() if _linear_like(m))


def compile_called_part(module):
    """(module, compiled part, its FLOPs per token): bf16 ``module`` whose part a detector calls
    -- the SLM's decoder (``module.model``; the detector applies two head rows itself), or the
    whole encoder -- is replaced by ``torch.compile(part, dynamic=True)`` (inductor: fuses the
    norms, rotary embeddings and activations between the matmuls; dynamic, because every batch
    has another shape)."""
    import torch

    decoder = getattr(module, "model", None)
    is_lm = isinstance(decoder, torch.nn.Module) and getattr(module, "lm_head", None) is not None
    part = decoder if is_lm else module
    flops = linear_flops_per_token(part)
    compiled = torch.compile(part, dynamic=True)
    if is_lm:
        module.model = compiled
        return module, compiled, flops
    return compiled, compiled, flops


def bench_convert(module, precision: str, device: str):
    """Conversions for rows that `cwescan scan` does not offer (GPU backends)."""
    from cwescan.ml.precision import _quiet_torchao, apply_precision, gpu_quant_filter

    if precision in ("fp32", "bf16", "fp16", "int8", "int4"):
        return apply_precision(module, precision, device)
    if precision in ("ao-int8", "ao-int4"):
        return apply_precision(module, precision[3:], device)
    if precision.startswith("bnb-"):
        return _bnb_convert(module, precision, device)
    import torch

    q = _quiet_torchao()
    module = module.to(device=device, dtype=torch.bfloat16)
    if precision == "ao-int8dyn":
        q.quantize_(module, q.Int8DynamicActivationInt8WeightConfig(), filter_fn=gpu_quant_filter)
    elif precision == "ao-fp8":
        q.quantize_(module, q.Float8DynamicActivationFloat8WeightConfig(), filter_fn=gpu_quant_filter)
    else:
        raise ValueError(f"unknown bench precision {precision!r}")
    return module


# ------------------------------------------------------------------ one row


def _units_of(records):
    from cwescan.core.units import parse_source

    units, owner = [], []
    for i, r in enumerate(records):
        for u in parse_source(r.id, r.code).units:
            units.append(u)
            owner.append(i)
    return units, owner


def _speed_sample(units, n: int):
    """A deterministic, length-mixed sample of ``n`` units (lowest sha256 of their code)."""
    order = sorted(range(len(units)), key=lambda i: hashlib.sha256(units[i].code.encode()).hexdigest())
    return [units[i] for i in order[:n]]


class _Row:
    def __init__(self, scorer, meter: Meter, module):
        self.scorer, self.meter, self.meter_module = scorer, meter, module

    def set_batch(self, b: int) -> None:
        """Make the detector's own batch ``b`` sequences: the model detectors sort a call's
        windows by length and batch them internally (as in a scan)."""
        if hasattr(self.scorer, "batch_size"):
            self.scorer.batch_size = b
        if hasattr(self.scorer, "batch_tokens"):  # the encoder batches by a token budget
            config = getattr(self.meter_module, "config", None)
            self.scorer.batch_tokens = b * int(getattr(config, "window_tokens", 512))

    def score(self, units) -> list[float]:
        # a detector's memo of already-scored prompts would turn repeated sweeps into lookups:
        # every timed call computes
        if callable(getattr(self.scorer, "clear_cache", None)):
            self.scorer.clear_cache()
        return list(self.scorer.score(units))


def _say(text: str) -> None:
    import sys

    print(text, file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    """This process's peak resident set. VmHWM belongs to the current address space; getrusage's
    ru_maxrss is not used first because a spawned child inherits the parent's high-water mark
    across fork + exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sync(device: str):
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def measure_row(spec: RowSpec, records: Sequence, config: BenchConfig) -> dict:
    """Measure one row in this process (see the module docstring)."""
    import torch

    from cwescan.evaluate import metrics as M

    torch.set_num_threads(config.threads)
    out: dict = {"model": spec.model, "precision": spec.precision, "device": spec.device}
    out["load_average_start"] = os.getloadavg()[0]  # other work on the machine skews CPU rows
    units, owner = _units_of(records)
    sample = _speed_sample(units, config.speed_units)
    on_gpu = spec.device.startswith("cuda")
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()

    t0 = time.perf_counter()
    # precisions `cwescan scan` offers load natively; every other row loads fp32 and is
    # converted here (GPU backends, ONNX)
    native = spec.device == "cpu" and spec.precision in SCAN_PRECISIONS
    scorer = spec.factory(
        spec.precision if native else "fp32", "cpu" if spec.precision.startswith("onnx") else spec.device
    )
    attr, module = _loaded_module(scorer)
    meter = Meter()
    extra: dict = {}
    token_module = None
    if spec.precision.startswith("onnx"):
        from cwescan.bench.onnx_export import called_part, export_int8

        meter.attach(module)
        pair = sorted(sample, key=lambda u: len(u.code))[-2:] if len(sample) >= 2 else units[:2]
        if hasattr(scorer, "batch_size"):
            scorer.batch_size = 2
        # the part of the model the detector calls (the SLM calls its decoder, not the LM head)
        part, call, swap = called_part(module, lambda: _Row(scorer, meter, module).score(pair))  # uncached
        meter.extra_flops_per_token = meter.flops / max(1, meter.tokens)
        meter.detach()
        new, extra = export_int8(part, call, threads=config.threads, quantize=spec.precision == "onnx-int8")
        token_module = new
        if swap is None:
            setattr(scorer, attr, new)
            module = new
        else:
            swap(new)
        if hasattr(scorer, "device"):
            scorer.device = "cpu"
    elif spec.precision.endswith("-compiled"):
        module = bench_convert(module, spec.precision.removesuffix("-compiled"), spec.device)
        module, token_module, meter.extra_flops_per_token = compile_called_part(module)
        setattr(scorer, attr, module)
        # compile now, for a batch of one and a large batch (dynamo specialises size 1): the
        # compile time is load time, not part of the first timed batch
        warm = _Row(scorer, meter, module)
        for b in sorted({1, max(config.batches)}):
            warm.set_batch(b)
            warm.score(sample[: max(2, min(b, len(sample)))])
        _sync(spec.device)
    elif not native and spec.precision != "fp32":
        module = bench_convert(module, spec.precision, spec.device)
        setattr(scorer, attr, module)
    out["load_s"] = time.perf_counter() - t0
    _say(f"  loaded in {out['load_s']:.1f} s; {len(units)} units, sweep over {len(sample)}")
    out["weights_bytes"] = extra.get("onnx_bytes") or weights_bytes(module)
    out.update({k: v for k, v in extra.items() if k != "onnx_bytes"})
    # hooks inside a compiled graph would run once, at tracing: count tokens where they enter
    meter.attach(module, token_module, linears=not spec.precision.endswith("-compiled"))
    row = _Row(scorer, meter, module)
    threshold = float(getattr(scorer, "threshold", 0.5))

    # batch sweep: the same sample at every batch size, handed over in one call (the detector
    # sorts by length and batches, as a scan does); batch 1 goes unit by unit for latencies
    sweep = []
    latencies: list[float] = []
    for b in config.batches:
        row.set_batch(b)
        row.score(sample[: min(b, 2)])  # warm-up: first call's lazy initialisation, kernel choice
        _sync(spec.device)
        meter.reset()
        cpu0 = time.process_time()
        start = time.perf_counter()
        timed = sample
        if b == 1:
            timed = sample[: config.latency_units] if config.latency_units else sample
            for u in timed:
                t = time.perf_counter()
                row.score([u])
                _sync(spec.device)
                latencies.append(time.perf_counter() - t)
        else:
            row.score(sample)
            _sync(spec.device)
        seconds = time.perf_counter() - start
        cpu_seconds = time.process_time() - cpu0
        _say(
            f"  batch {b}: {len(timed) / seconds:.2f} units/s ({meter.tokens / seconds:.0f} tokens/s, "
            f"{len(timed) / max(cpu_seconds, 1e-9):.2f} units per CPU-second)"
        )
        sweep.append(
            {
                "batch": b,
                "units": len(timed),
                "seconds": seconds,
                "units_per_s": len(timed) / seconds,
                "cpu_seconds": cpu_seconds,
                # work per core-second: robust to other processes sharing the cores
                "units_per_cpu_s": len(timed) / cpu_seconds if cpu_seconds > 0 else None,
                "tokens_per_s": meter.tokens / seconds,
                "flops_per_s": meter.flops / seconds,
            }
        )
    best = max(sweep, key=lambda s: s["units_per_s"])
    out["sweep"] = sweep
    out["best_batch"] = best["batch"]
    out["best_units_per_s"] = best["units_per_s"]
    out["best_flops_per_s"] = best["flops_per_s"]
    out["best_units_per_cpu_s"] = max((s["units_per_cpu_s"] or 0.0) for s in sweep)
    one = next((s for s in sweep if s["batch"] == 1), None)
    out["batch1_units_per_s"] = one["units_per_s"] if one else None
    if latencies:
        qs = statistics.quantiles(latencies, n=20) if len(latencies) >= 2 else [latencies[0]] * 19
        out["p50_ms"] = 1000 * statistics.median(latencies)
        out["p95_ms"] = 1000 * qs[18]

    # accuracy pass over every unit, at the best batch
    row.set_batch(best["batch"])
    meter.reset()
    cpu0 = time.process_time()
    start = time.perf_counter()
    scores: list[float] = []
    step = max(256, best["batch"])  # calls of many units, batched inside the detector
    for i in range(0, len(units), step):
        scores.extend(row.score(units[i : i + step]))
    _sync(spec.device)
    seconds = time.perf_counter() - start
    out["full_pass"] = {
        "units": len(units),
        "seconds": seconds,
        "units_per_s": len(units) / seconds if seconds else None,
        "tokens": meter.tokens,
        "cpu_seconds": time.process_time() - cpu0,
    }
    record_score = [0.0] * len(records)
    for s, i in zip(scores, owner, strict=True):
        record_score[i] = max(record_score[i], float(s))
    y = [bool(r.vulnerable) for r in records]
    binary = M.binary_metrics(y, [s >= threshold for s in record_score])
    out["threshold"] = threshold
    out["records"] = len(records)
    out["f1"] = binary["f1"] or 0.0
    out["accuracy"] = binary["accuracy"] or 0.0
    out["precision_"] = binary["precision"]
    out["recall"] = binary["recall"]
    try:
        out["roc_auc"] = M.ranking_metrics(y, record_score).get("roc_auc")
    except Exception:  # noqa: BLE001 - one class only in a tiny sample
        out["roc_auc"] = None
    out["peak_rss_mb"] = peak_rss_mb()
    out["load_average_end"] = os.getloadavg()[0]
    if on_gpu:
        out["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    meter.detach()
    return out


def _row_process(spec: RowSpec, records, config: BenchConfig) -> dict:
    try:
        return measure_row(spec, records, config)
    except Exception as e:  # noqa: BLE001 - a row that cannot run is reported, not fatal
        from cwescan.ml.precision import PrecisionUnavailable

        return {
            "model": spec.model,
            "precision": spec.precision,
            "device": spec.device,
            "error": f"{type(e).__name__}: {e}",
            "unavailable": isinstance(e, PrecisionUnavailable),
            "traceback": traceback.format_exc(limit=6),
        }


def run_row(spec: RowSpec, records, config: BenchConfig) -> dict:
    """One row, in a fresh spawned process when ``config.isolate`` (per-row peak RSS)."""
    if not config.isolate:
        row = _row_process(spec, records, config)
        import gc

        gc.collect()  # free this row's model before the next one loads
        if spec.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
        return row
    import concurrent.futures as cf
    import multiprocessing as mp

    with cf.ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        future = pool.submit(_row_process, spec, list(records), config)
        try:
            return future.result(timeout=config.row_timeout_s)
        except Exception as e:  # noqa: BLE001 - crashed / killed / timed out worker
            return {
                "model": spec.model,
                "precision": spec.precision,
                "device": spec.device,
                "error": f"row process failed: {type(e).__name__}: {e}",
            }


# ------------------------------------------------------------------ the whole matrix


def machine_info() -> dict:
    import torch

    info = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    try:
        text = Path("/proc/cpuinfo").read_text()
        names = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")]
        flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
        info["cpu"] = names[0] if names else info["cpu"]
        info["amx"] = "amx_tile" in flags
        info["avx512_bf16"] = "avx512_bf16" in flags
    except OSError:
        pass
    for pkg in ("torchao", "onnxruntime", "transformers", "bitsandbytes"):
        try:
            info[pkg] = __import__(pkg).__version__
        except Exception:  # noqa: BLE001 - absent or broken: left out
            pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cost_per_1k(row: dict, config: BenchConfig) -> float | None:
    ups = row.get("best_units_per_s")
    if not ups:
        return None
    seconds = 1000 / ups
    if row["device"].startswith("cuda"):
        return seconds * config.price_gpu_hour / 3600
    return seconds * config.cores * config.price_cpu_core_hour / 3600


def derive(rows: list[dict], peaks_by_device: dict[str, dict], config: BenchConfig) -> None:
    """Per row: change from the same model's fp32 (same device, else CPU), speed-up, roofline
    share, cost."""
    from cwescan.bench.roofline import roofline_share

    def ref(row):
        for dev in (row["device"], "cpu"):
            for r in rows:
                if r["model"] == row["model"] and r["precision"] == "fp32" and r["device"] == dev and "f1" in r:
                    return r
        return None

    for r in rows:
        if "f1" not in r:
            continue
        base = ref(r)
        if base is not None:
            r["delta_f1"] = r["f1"] - base["f1"]
            r["delta_accuracy"] = r["accuracy"] - base["accuracy"]
            same_device = base["device"] == r["device"]
            r["speedup_vs_fp32"] = r["best_units_per_s"] / base["best_units_per_s"] if same_device else None
            if same_device and r.get("best_units_per_cpu_s") and base.get("best_units_per_cpu_s"):
                r["speedup_vs_fp32_cpu_time"] = r["best_units_per_cpu_s"] / base["best_units_per_cpu_s"]
        r["roofline_share"] = roofline_share(r.get("best_flops_per_s"), r["precision"], peaks_by_device.get(r["device"], {}))
        r["cost_per_1k_usd"] = _cost_per_1k(r, config)


def choose_defaults(rows: list[dict]) -> dict:
    """Per model: the fastest CPU precision `cwescan scan` can run that loses at most one F1
    point against fp32 (fp32 itself qualifies)."""
    out = {}
    for model in sorted({r["model"] for r in rows}):
        cands = [
            r
            for r in rows
            if r["model"] == model
            and r["device"] == "cpu"
            and r["precision"] in SCAN_PRECISIONS
            and "f1" in r
            and r.get("delta_f1", 0.0) >= -F1_TOLERANCE - 1e-9
        ]
        if not any(r["precision"] == "fp32" for r in cands):
            continue
        fp32 = next(r for r in cands if r["precision"] == "fp32")
        # rank by work per CPU-second when every candidate has it: on a machine shared with
        # other jobs wall-clock units/s mostly measures the neighbours
        key = "best_units_per_cpu_s" if all(r.get("best_units_per_cpu_s") for r in cands) else "best_units_per_s"
        best = max(cands, key=lambda r: r[key])
        out[model] = {
            "precision": best["precision"],
            "f1": round(best["f1"], 4),
            "f1_fp32": round(fp32["f1"], 4),
            "units_per_s": round(best["best_units_per_s"], 2),
            "units_per_s_fp32": round(fp32["best_units_per_s"], 2),
            "speedup": round(best["best_units_per_s"] / fp32["best_units_per_s"], 2),
            "ranked_by": key,
            "speedup_ranked": round(best[key] / fp32[key], 2),
        }
    return out


def write_precision_file(defaults: dict, path: Path, source: str) -> dict:
    """``{"slm": "bf16", "encoder": ..., "measured": {...}}``: the detectors' defaults."""
    data = {m: d["precision"] for m, d in defaults.items()}
    data["measured"] = defaults
    data["rule"] = f"fastest CPU precision losing <= {F1_TOLERANCE * 100:.0f} F1 point vs fp32"
    data["source"] = source
    old = {}
    if path.is_file():  # keep models this run did not measure
        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = {}
    merged = {**old, **data, "measured": {**old.get("measured", {}), **defaults}}
    for m in old:
        if m not in data and m in old.get("measured", {}):
            merged[m] = old[m]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
    return merged


@dataclass
class BenchResult:
    machine: dict
    config: dict
    peaks: dict  # device -> dtype -> FLOP/s
    rows: list[dict] = field(default_factory=list)
    defaults: dict = field(default_factory=dict)
    records: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


# OpenMP threads that spin while waiting collapse when other processes share the cores (2
# threads ran a bf16 forward pass 6x slower than 1 thread on the busy 2-core development
# machine; passive waiting brought it back). Spawned row processes inherit this.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def run_bench(
    specs: Sequence[RowSpec],
    records: Sequence,
    config: BenchConfig,
    quick: bool = False,
    progress: Callable[[str], None] = lambda s: None,
    records_info: dict | None = None,
    on_row: Callable[[BenchResult], None] | None = None,
) -> BenchResult:
    from cwescan.bench.roofline import measure_peaks

    import torch

    torch.set_num_threads(config.threads)
    devices = sorted({s.device for s in specs})
    peaks = {}
    for d in devices:
        progress(f"measuring the GEMM peak per dtype on {d} ...")
        peaks[d] = measure_peaks(d, quick=quick)
    result = BenchResult(machine_info(), asdict(config), peaks, records=records_info or {"n": len(records)})
    started, walls = time.perf_counter(), []
    for spec in specs:
        progress(f"row {spec.model} / {spec.precision} / {spec.device} ...")
        t = time.perf_counter()
        elapsed = t - started
        expected = max(walls) if walls else 0.0  # the slowest row so far
        if config.time_budget_s is not None and elapsed + expected > config.time_budget_s:
            row = {"model": spec.model, "precision": spec.precision, "device": spec.device,
                   "error": f"time budget {config.time_budget_s:.0f} s ({elapsed:.0f} s spent, "
                            f"slowest row {expected:.0f} s)", "skipped": True}
        else:
            row = run_row(spec, records, config)
            walls.append(time.perf_counter() - t)
        row["row_wall_s"] = time.perf_counter() - t
        result.rows.append(row)
        if on_row is not None:  # partial results survive a run cut short
            on_row(result)
        progress(
            f"  -> {row['error']}" if "error" in row else
            f"  -> F1 {row['f1']:.3f}  {row['best_units_per_s']:.1f} units/s (batch {row['best_batch']})"
        )
    derive(result.rows, peaks, config)
    result.defaults = choose_defaults(result.rows)
    return result


def merge_results(results: Sequence[dict]) -> dict:
    """Combine bench.json files (e.g. the CPU run and the GPU run): rows of later files replace
    same (model, precision, device) rows of earlier ones."""
    if not results:
        raise ValueError("nothing to merge")
    base = json.loads(json.dumps(results[0]))
    key = lambda r: (r["model"], r["precision"], r["device"])  # noqa: E731
    rows = {key(r): r for r in base["rows"]}
    for other in results[1:]:
        base["peaks"].update(other.get("peaks", {}))
        for r in other.get("rows", []):
            rows[key(r)] = r
        base.setdefault("machines", [base["machine"]])
        base["machines"].append(other.get("machine", {}))
    base["rows"] = list(rows.values())
    config = BenchConfig(**{k: tuple(v) if k == "batches" else v for k, v in base["config"].items()})
    derive(base["rows"], base["peaks"], config)
    base["defaults"] = choose_defaults(base["rows"])
    return base


# ------------------------------------------------------------------ rendering


def _fmt(v, spec: str = ".1f", none: str = "—") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return none
    return format(v, spec)


def render_markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "| model | precision | device | records | F1 | ΔF1 | acc | Δacc | units/s b=1 | units/s best (b) | speed-up | units per CPU-s "
        "(speed-up) | p50 / p95 ms (b=1) | peak mem MB | weights MB | load s | roofline | $ / 1k units | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        if "error" in r:
            why = r["error"].splitlines()[0][:140].replace("|", "/")
            lines.append(f"| {r['model']} | {r['precision']} | {r['device']} | not run: {why} |" + " |" * 15)
            continue
        mem = r.get("gpu_peak_mb") or r.get("peak_rss_mb")
        lines.append(
            "| "
            + " | ".join(
                [
                    r["model"],
                    r["precision"],
                    r["device"],
                    str(r.get("records", "—")),
                    _fmt(r["f1"], ".3f"),
                    _fmt(r.get("delta_f1") and 100 * r["delta_f1"], "+.1f") if r.get("delta_f1") is not None else "—",
                    _fmt(r["accuracy"], ".3f"),
                    _fmt(100 * r["delta_accuracy"], "+.1f") if r.get("delta_accuracy") is not None else "—",
                    _fmt(r.get("batch1_units_per_s")),
                    f"{_fmt(r['best_units_per_s'])} ({r['best_batch']})",
                    _fmt(r.get("speedup_vs_fp32"), ".2f") + ("×" if r.get("speedup_vs_fp32") else ""),
                    f"{_fmt(r.get('best_units_per_cpu_s'), '.2f')} ({_fmt(r.get('speedup_vs_fp32_cpu_time'), '.2f')}×)"
                    if not r["device"].startswith("cuda") else "—",
                    f"{_fmt(r.get('p50_ms'), '.0f')} / {_fmt(r.get('p95_ms'), '.0f')}",
                    _fmt(mem, ".0f"),
                    _fmt(r["weights_bytes"] / 1e6, ".1f"),
                    _fmt(r["load_s"], ".1f"),
                    _fmt(r.get("roofline_share") and 100 * r["roofline_share"], ".1f") + ("%" if r.get("roofline_share") else ""),
                    _fmt(r.get("cost_per_1k_usd"), ".4f"),
                    _fmt(r.get("load_average_start"), ".1f"),
                ]
            )
            + " |"
        )
    peaks = "; ".join(
        f"{dev}: " + ", ".join(f"{k} {v / 1e12:.2f} T" for k, v in p.items() if v) for dev, p in result["peaks"].items()
    )
    cfg = result["config"]
    head = [
        f"Machine: {m.get('cpu')} ({m.get('cores')} cores visible, {cfg['threads']} threads used, "
        f"AMX {'yes' if m.get('amx') else 'no'}), torch {m.get('torch')}, torchao {m.get('torchao', '—')}, "
        f"onnxruntime {m.get('onnxruntime', '—')}" + (f", GPU {m['gpu']}" if m.get("gpu") else ""),
        f"Records (first run merged): {result.get('records', {})}",
        f"Measured GEMM peaks (FLOP/s, int8 OP/s): {peaks}",
        f"Prices: CPU ${cfg['price_cpu_core_hour']}/core-hour × {cfg['cores']} cores, GPU ${cfg['price_gpu_hour']}/GPU-hour; "
        "a unit = one function or module body scored once. ΔF1 / Δacc in points vs the same model's fp32.",
        "",
    ]
    defaults = result.get("defaults") or {}
    tail = [""] + [
        f"Default for `{k}`: **{d['precision']}** — {d.get('speedup_ranked', d['speedup'])}× fp32 by "
        f"{d.get('ranked_by', 'best_units_per_s')} ({d['speedup']}× wall-clock units/s), F1 {d['f1']} vs {d['f1_fp32']} at fp32."
        for k, d in defaults.items()
    ]
    return "\n".join(head + lines + tail) + "\n"


def render_pareto(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if "f1" in r and r.get("best_units_per_s")]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    markers = {"cpu": "o", "cuda": "s"}
    for model in sorted({r["model"] for r in rows}):
        pts = [r for r in rows if r["model"] == model]
        for dev in sorted({r["device"] for r in pts}):
            sel = [r for r in pts if r["device"] == dev]
            ax.scatter([r["best_units_per_s"] for r in sel], [r["f1"] for r in sel], marker=markers.get(dev, "^"), label=f"{model} ({dev})")
            for r in sel:
                ax.annotate(r["precision"], (r["best_units_per_s"], r["f1"]), textcoords="offset points", xytext=(4, 3), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("units / s at best batch (log)")
    ax.set_ylabel("F1 (test part)")
    ax.set_title("Quantization: throughput vs F1, one point per model × precision × device")
    ax.grid(True, which="both", alpha=0.3)
    if rows:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
    (out / "bench.md").write_text(render_markdown(result))
    render_pareto(result, out / "pareto.png")


# ------------------------------------------------------------------ command

def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def models_command(
    quick: bool = typer.Option(False, "--quick", help="Reduced matrix (few records, batches 1 and 8) for CI smoke use."),
    model_names: str = typer.Option("slm,encoder", "--models", help="Comma-separated model detectors (slm-qwen: the SLM with the Qwen adapter)."),
    precisions: str = typer.Option(
        None, "--precisions", help="Comma-separated rows. CPU: fp32,bf16,int8,int4,onnx-int8; "
        "CUDA: fp32,fp16,bf16,bf16-compiled,bnb-int8,bnb-nf4,ao-int8,ao-int8dyn,ao-int4,ao-fp8."
    ),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    out: Path = typer.Option(Path("bench-out"), "--out", help="Folder for bench.json, bench.md, pareto.png."),
    records: int = typer.Option(0, "--records", min=0, help="Use this many test records (deterministic sample; 0 = all)."),
    part: str = typer.Option("test", "--part", help="Split part the accuracy is measured on."),
    batches: str = typer.Option(None, "--batches", help="Batch sizes of the sweep, e.g. 1,4,8,16,32."),
    speed_units: int = typer.Option(None, "--speed-units", min=2, help="Units in the batch-sweep sample."),
    threads: int = typer.Option(2, "--threads", min=1, help="torch / ONNX Runtime threads (= cores paid for)."),
    price_cpu: float = typer.Option(None, "--price-per-hour-cpu", help="USD per core-hour (default 0.05)."),
    price_gpu: float = typer.Option(None, "--price-per-hour-gpu", help="USD per GPU-hour (default 2.50)."),
    write_default: bool = typer.Option(
        None, "--write-default/--no-write-default",
        help="Write the measured default precision per model to models/precision.json "
        "(default: yes for a full CPU run that includes fp32).",
    ),
    isolate: bool = typer.Option(
        None, "--isolate/--no-isolate",
        help="One fresh process per row (default on CPU, so peak RSS is per row; GPU rows report "
        "max_memory_allocated per row instead and run in one process).",
    ),
    merge: list[Path] = typer.Option(
        None, "--merge", help="Do not measure: merge these bench.json files (later rows win) and render into --out."
    ),
    latency_units: int = typer.Option(None, "--latency-units", min=1, help="Batch 1 (p50/p95) on the first N sweep units only."),
    time_budget: float = typer.Option(
        None, "--time-budget", min=1, help="Seconds: a row that would start past it (by the slowest row so far) is reported as not run."
    ),
    order: str = typer.Option(
        "model", "--order", help="Row order: 'model' (each model's precisions in turn) or 'precision' (each precision for every "
        "model: the backends listed last, the likeliest to fail or be cut by --time-budget, go last for all models)."
    ),
) -> None:
    """Quantization benchmark of the model detectors: accuracy, speed, memory, roofline, cost."""
    import json

    import sys

    B = sys.modules[__name__]
    from cwescan.ml.precision import PRECISION_FILE

    if merge:
        try:
            merged = B.merge_results([json.loads(p.read_text()) for p in merge])
        except (OSError, ValueError, KeyError) as e:
            raise typer.BadParameter(f"cannot merge: {e}", param_hint="--merge") from e
        B.write_outputs(merged, out)
        typer.echo(B.render_markdown(merged))
        if write_default and merged["defaults"]:  # only when asked: merged files may be partial
            B.write_precision_file(merged["defaults"], PRECISION_FILE, source=f"cwescan bench models --merge {' '.join(map(str, merge))}")
            typer.echo(f"wrote {PRECISION_FILE}")
        typer.echo(f"wrote {out}/bench.json, bench.md, pareto.png")
        return
    if device not in ("cpu", "cuda"):
        raise typer.BadParameter("choose cpu or cuda", param_hint="--device")
    rows = _csv(precisions) if precisions else list(
        ("fp32", "bf16", "int8") if quick else (B.CPU_ROWS if device == "cpu" else B.GPU_ROWS)
    )
    known = set(B.CPU_ROWS) | set(B.GPU_ROWS) | {"onnx-fp32"}
    bad = [p for p in rows if p not in known]
    if bad:
        raise typer.BadParameter(f"unknown precision(s) {bad}; known: {sorted(known)}", param_hint="--precisions")
    config = B.BenchConfig(threads=threads, cores=threads, isolate=device == "cpu" if isolate is None else isolate)
    if quick:
        config.batches, config.speed_units = (1, 8), 8
        records = records or 12
    if batches:
        config.batches = tuple(int(b) for b in _csv(batches))
    if speed_units:
        config.speed_units = speed_units
    config.latency_units = latency_units
    config.time_budget_s = time_budget
    if order not in ("model", "precision"):
        raise typer.BadParameter("choose model or precision", param_hint="--order")
    if price_cpu is not None:
        config.price_cpu_core_hour = price_cpu
    if price_gpu is not None:
        config.price_gpu_hour = price_gpu

    from cwescan.data.split import load_part, manifest_hash
    from cwescan.evaluate.runner import sample

    try:
        recs = load_part(part)
        info = {"part": part, "manifest_hash": manifest_hash()}
    except Exception as e:  # noqa: BLE001 - no split here: say so rather than guess data
        raise typer.BadParameter(f"cannot load the {part} part of the split: {e}", param_hint="--part") from e
    recs = sample(recs, records or None)
    info.update({"n": len(recs), "vulnerable": sum(r.vulnerable for r in recs), "sampled_from_part": bool(records)})
    pairs = [(m, p) for m in _csv(model_names) for p in rows]
    if order == "precision":
        pairs.sort(key=lambda mp: rows.index(mp[1]))  # stable: models keep their order within a precision
    specs = [B.RowSpec(m, p, device, B.make_factory(m)) for m, p in pairs]
    out.mkdir(parents=True, exist_ok=True)

    def partial(res):
        (out / "bench.partial.json").write_text(json.dumps(res.to_json(), indent=2, default=str) + "\n")

    result = B.run_bench(specs, recs, config, quick=quick, progress=typer.echo, records_info=info, on_row=partial).to_json()
    (out / "bench.partial.json").unlink(missing_ok=True)
    B.write_outputs(result, out)
    typer.echo(B.render_markdown(result))
    if write_default is None:
        write_default = not quick and device == "cpu" and "fp32" in rows
    if write_default and result["defaults"]:
        B.write_precision_file(result["defaults"], PRECISION_FILE, source=f"cwescan bench models ({len(recs)} {part} records)")
        typer.echo(f"wrote {PRECISION_FILE}")
    typer.echo(f"wrote {out}/bench.json, bench.md, pareto.png")
