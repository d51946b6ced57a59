"""The quantization benchmark's outputs: bench.md (tables), pareto.png, bench.json."""

from __future__ import annotations

import json
import math
from pathlib import Path

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
