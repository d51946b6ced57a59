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
returning a ``ModelDetector`` (``score``, ``threshold``, ``model``, ``set_batch``,
``clear_cache``). ``detector_factory`` builds the real detectors
through the registry; tests pass a tiny model's factory.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import statistics
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cwescan.bench.convert import bench_convert, compile_called_part
from cwescan.bench.meter import Meter, weights_bytes
from cwescan.bench.models_report import render_markdown, write_outputs  # noqa: F401 - part of this benchmark's API
from cwescan.core.precisions import SCAN_PRECISIONS  # noqa: F401 - rows `cwescan scan` can run
from cwescan.core.process import peak_rss_mb
from cwescan.detectors.base import ModelDetector

# Prices used for "cost per 1,000 reviews" (a review = one unit scored); flags override them.
# CPU: about the on-demand price of one vCPU of a current x86 cloud instance; GPU: one H100.
DEFAULT_PRICE_CPU_CORE_HOUR = 0.05
DEFAULT_PRICE_GPU_HOUR = 2.50

# precisions a detector takes natively (``precision=``) on CPU: what `cwescan scan` can run
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


def _loaded_module(detector: ModelDetector):
    """The torch module of ``detector``, loaded."""
    import torch

    detector.load()
    if not isinstance(detector.model, torch.nn.Module):
        raise TypeError(f"{type(detector).__name__} holds no torch module to benchmark")
    return detector.model


def detector_factory(name: str, precision: str, device: str):
    """The registered detector ``name`` loaded at ``precision`` on ``device`` (``precision=`` is
    what `cwescan scan --precision` runs)."""
    from cwescan.detectors import create

    if name.startswith("slm-"):  # another shipped SLM adapter by short name, e.g. slm-qwen
        return create("slm", precision=precision, device=device, model=name.split("-", 1)[1])
    return create(name, precision=precision, device=device)


def make_factory(name: str) -> Callable:
    return functools.partial(detector_factory, name)


# ------------------------------------------------------------------ one row


def units_of(records):
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
        self.scorer.set_batch(b)

    def score(self, units) -> list[float]:
        # a detector's memo of already-scored prompts would turn repeated sweeps into lookups:
        # every timed call computes
        self.scorer.clear_cache()
        return list(self.scorer.score(units))


def _say(text: str) -> None:
    import sys

    print(text, file=sys.stderr, flush=True)


def _sync(device: str):
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def measure_row(spec: RowSpec, records: Sequence, config: BenchConfig) -> dict:
    """Measure one row in this process (see the module docstring)."""
    # Long on purpose: one benchmark row is one sequence (load, convert, attach meters, sweep
    # batches, time batch 1, score accuracy) whose steps share the meter and module state.
    import torch

    from cwescan.evaluate import metrics as M

    torch.set_num_threads(config.threads)
    out: dict = {"model": spec.model, "precision": spec.precision, "device": spec.device}
    out["load_average_start"] = os.getloadavg()[0]  # other work on the machine skews CPU rows
    units, owner = units_of(records)
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
    module = _loaded_module(scorer)
    meter = Meter()
    extra: dict = {}
    token_module = None
    if spec.precision.startswith("onnx"):
        from cwescan.bench.onnx_export import called_part, export_int8

        meter.attach(module)
        pair = sorted(sample, key=lambda u: len(u.code))[-2:] if len(sample) >= 2 else units[:2]
        scorer.set_batch(2)
        scorer.prefix_cache = False  # the exported graph reads whole prompts
        # the part of the model the detector calls (the SLM calls its decoder, not the LM head)
        part, call, swap = called_part(module, lambda: _Row(scorer, meter, module).score(pair))  # uncached
        meter.extra_flops_per_token = meter.flops / max(1, meter.tokens)
        meter.detach()
        new, extra = export_int8(part, call, threads=config.threads, quantize=spec.precision == "onnx-int8")
        token_module = new
        if swap is None:
            scorer.model = new
            module = new
        else:
            swap(new)
        scorer.device = "cpu"
    elif spec.precision.endswith("-compiled"):
        module = bench_convert(module, spec.precision.removesuffix("-compiled"), spec.device)
        module, token_module, meter.extra_flops_per_token = compile_called_part(module)
        scorer.model = module
        # compile now, for a batch of one and a large batch (dynamo specialises size 1): the
        # compile time is load time, not part of the first timed batch
        warm = _Row(scorer, meter, module)
        for b in sorted({1, max(config.batches)}):
            warm.set_batch(b)
            warm.score(sample[: max(2, min(b, len(sample)))])
        _sync(spec.device)
    elif not native and spec.precision != "fp32":
        module = bench_convert(module, spec.precision, spec.device)
        scorer.model = module
    out["load_s"] = time.perf_counter() - t0
    _say(f"  loaded in {out['load_s']:.1f} s; {len(units)} units, sweep over {len(sample)}")
    out["weights_bytes"] = extra.get("onnx_bytes") or weights_bytes(module)
    out.update({k: v for k, v in extra.items() if k != "onnx_bytes"})
    # hooks inside a compiled graph would run once, at tracing: count tokens where they enter
    meter.attach(module, token_module, linears=not spec.precision.endswith("-compiled"))
    row = _Row(scorer, meter, module)
    threshold = float(scorer.threshold)

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
