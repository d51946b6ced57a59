"""``cwescan bench``: benchmark commands. Each benchmark adds one command to ``bench_app``."""

from __future__ import annotations

from pathlib import Path

import typer

bench_app = typer.Typer(help="Benchmarks (they print tables; they are not tests).",
                        no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")


@bench_app.command("static")
def static(
    files: int = typer.Option(1000, "--files", min=1, help="How many .py files to scan."),
    path: Path = typer.Option(None, "--path", help="Folder of Python files (default: the standard library)."),
) -> None:
    """Scan the same real Python files with the static detector and with Bandit; print speed."""
    from rich.console import Console
    from rich.table import Table

    from cwescan.bench import static as bench

    root = path or bench.stdlib_path()
    if not root.is_dir():
        raise typer.BadParameter(f"{root} is not a folder", param_hint="--path")
    sources = bench.collect(root, files)
    if not sources:
        raise typer.BadParameter(f"no readable .py files under {root}", param_hint="--path")
    lines = sum(t.count("\n") for _, t in sources)
    console = Console()
    console.print(f"{len(sources)} files, {lines:,} lines from {root}")
    static_run, bandit_run, errors = bench.run_both(sources)
    table = Table(title="Static stage vs Bandit (same files, same process)")
    for col in ("detector", "files", "seconds", "files/s", "lines/s", "findings", "not analysed"):
        table.add_column(col, justify="left" if col == "detector" else "right")
    for r in (static_run, bandit_run):
        table.add_row(r.detector, str(r.files), f"{r.seconds:.2f}", f"{r.files_per_s:.1f}",
                      f"{lines / r.seconds:,.0f}", str(r.findings), str(r.failed_files))
    console.print(table)
    console.print(f"static/bandit files/s ratio: {bandit_run.seconds / static_run.seconds:.2f}x "
                  "(static includes parse_source; the two take turns file by file)")
    console.print(f"static time split: parse_source {static_run.parse_seconds:.2f} s, rules "
                  f"{static_run.seconds - static_run.parse_seconds:.2f} s")
    if errors:
        console.print(f"static rule errors (caught): {errors}")



@bench_app.command("shapes")
def shapes(
    model_names: str = typer.Option("slm,encoder", "--models", help="Comma-separated: slm, encoder."),
    config: list[Path] = typer.Option(
        None, "--config", help="A model's config.json, as MODEL=PATH (default: the installed model's)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    dtypes: str = typer.Option(None, "--dtypes", help="Comma-separated (default: fp32,bf16; CUDA adds fp16)."),
    tokens: str = typer.Option(None, "--tokens", help="Tokens a batch holds (default CPU 2048,8192; CUDA 16384,131072)."),
    window: int = typer.Option(384, "--window", min=8, help="Tokens a SLM sequence holds (a scan's mean is ~380); "
                               "the encoder uses its own window."),
    threads: int = typer.Option(2, "--threads", min=1, help="torch threads (CPU)."),
    out: Path = typer.Option(None, "--out", help="Folder for shapes.json and shapes.md."),
) -> None:
    """How fast each model's own matrix products and attention run here: the ceiling under the
    roofline share that `bench models` reports, and the speed-up over fp32 at those shapes."""
    import json

    import torch

    from cwescan.bench import shapes as bench
    from cwescan.ml.artifacts import ArtifactError

    if device not in ("cpu", "cuda"):
        raise typer.BadParameter("choose cpu or cuda", param_hint="--device")
    torch.set_num_threads(threads)
    pairs = [str(c) for c in config or []]
    if any("=" not in c for c in pairs):
        raise typer.BadParameter("give each config as MODEL=PATH", param_hint="--config")
    given = dict(c.split("=", 1) for c in pairs)
    geometries = []
    for name in _csv(model_names):
        try:
            path = Path(given[name]) if name in given else bench.default_config(name)
            geometries.append(bench.Geometry.from_config(name, json.loads(path.read_text()), window))
        except (OSError, ValueError, KeyError, ArtifactError) as e:
            raise typer.BadParameter(f"{name}: {e}", param_hint="--config") from e
    chosen = _csv(dtypes) if dtypes else (["fp32", "bf16"] + (["fp16"] if device == "cuda" else []))
    bad = [d for d in chosen if d not in bench.DTYPES]
    if bad:
        raise typer.BadParameter(f"unknown dtype(s) {bad}; known: {sorted(bench.DTYPES)}", param_hint="--dtypes")
    counts = [int(t) for t in _csv(tokens)] if tokens else ([2048, 8192] if device == "cpu" else [16384, 131072])
    result = bench.measure(geometries, device, chosen, counts, progress=typer.echo)
    typer.echo(bench.render_markdown(result))
    if out is not None:
        bench.write(result, out)
        typer.echo(f"wrote {out}/shapes.json, shapes.md")


# `cwescan bench models`: the quantization benchmark (cwescan.bench.models)
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
    # Long because of its typer options (half of its lines); the body only builds a BenchConfig.
    import json

    from cwescan.bench import models as B
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


bench_app.command("models")(models_command)

# `cwescan bench scan` / `bench triage`: end-to-end scan speed and triage's cost (scan engineer)
from cwescan.cli.bench_scan import scan_command, triage_command  # noqa: E402

bench_app.command("scan")(scan_command)
bench_app.command("triage")(triage_command)
