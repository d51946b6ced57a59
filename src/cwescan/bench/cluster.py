"""``cwescan bench scan --cluster ADDRESS``: the same tree scanned on a Ray cluster with 1
worker and with 2 (or the ``--workers`` counts), in one run, so the ratio is measured on one
machine state.

"Workers" caps the cluster executor: at most that many file tasks at once and that many model
actors per model detector (``RayExecutor(workers=n)``); with ``--device cuda`` each actor
holds one GPU, so 1 vs 2 workers is one GPU vs two. ``--cluster local`` starts a head node and
one worker node on this machine (1 CPU each, loopback only) and stops them afterwards.

Before the timed runs, one untimed scan with the most workers starts every worker process
and imports the detectors there, and the model actors load their weights
(``RayExecutor.load_models``), so each timed run measures scanning, not start-up. The result
cache is off. Every run's JSON report must be byte-identical to the first one's.
"""

from __future__ import annotations

import io
import json
import os
import platform
import time
from contextlib import contextmanager
from pathlib import Path

from cwescan.bench.scan import build_tree
from cwescan.bench.static import stdlib_path


@contextmanager
def _attached(address: str, cpus_per_node: int, device: str | None = None):
    """This process connected to the cluster at ``address`` (``local``: one started here; with
    ``device`` cuda a single node holding every GPU of this machine, as Ray finds them)."""
    from cwescan.cluster import runtime

    if address == "local" and device == "cuda":
        runtime.connect("local")
        try:
            yield f"local: 1 node with this machine's GPUs on {runtime.LOOPBACK}"
        finally:
            runtime.disconnect()
    elif address == "local":
        with runtime.LocalCluster(workers=1, cpus_per_node=cpus_per_node) as cluster:
            cluster.connect()
            try:
                yield f"local: 2 nodes x {cpus_per_node} CPU on {runtime.LOOPBACK}"
            finally:
                runtime.disconnect()
    else:
        runtime.connect(address)
        try:
            yield address
        finally:
            runtime.disconnect()


def cluster_bench(address: str, files: int, source: Path | None, out: Path,
                  detector_names: list[str] | None, precision: str | None, review: str,
                  device: str | None, slm_model: str | None = None,
                  worker_counts: tuple[int, ...] = (1, 2), cpus_per_node: int = 1) -> dict:
    from cwescan import output
    from cwescan.cluster.executor import RayExecutor
    from cwescan.detectors import create_detectors, is_model
    from cwescan.scan.pipeline import ScanOptions, scan, third_party_quiet

    source = source or stdlib_path()
    tree = out / "tree"
    copied = build_tree(source, files, tree)
    names = detector_names or ["static"]
    models = [n for n in names if is_model(n)]

    def one_scan(executor) -> tuple[dict, str]:
        with third_party_quiet():
            detectors = create_detectors(names, precision, slm_model, device)
        options = ScanOptions(detectors=names, precision=precision, device=device, review=review)
        marks: dict[str, float] = {}

        def progress(stage: str, done: int, total: int) -> None:
            marks.setdefault(stage, time.perf_counter())
            marks[stage + " end"] = time.perf_counter()

        started = time.perf_counter()
        report = scan([tree], options, detectors=detectors, progress=progress, executor=executor)
        wall = time.perf_counter() - started
        model_start = min((marks[s] for s in marks if s.endswith("units")), default=None)
        buffer = io.StringIO()
        output.write(report, "json", buffer)
        stage = report.stats.get("model_stage", {})
        run = {
            "wall_s": round(wall, 3),
            "files": report.stats["files_scanned"],
            "files_per_s": round(report.stats["files_scanned"] / wall, 3),
            "file_stage_s": round((model_start or started + wall) - started, 3),
            "findings": report.stats["findings"],
        }
        if model_start is not None:
            model_s = started + wall - model_start
            run.update(model_s=round(model_s, 3), units_reviewed=stage.get("reviewed", 0),
                       units_per_s=round(stage.get("reviewed", 0) / model_s, 3) if model_s else None)
        return run, buffer.getvalue()

    runs = []
    with _attached(address, cpus_per_node, device) as where:
        import ray

        resources = ray.cluster_resources()
        warm = RayExecutor(precision, slm_model, device, workers=max(worker_counts))
        try:
            warm.load_models(models)
            _, reference = one_scan(warm)  # untimed: starts and warms every worker
        finally:
            warm.close()
        for n in worker_counts:
            executor = RayExecutor(precision, slm_model, device, workers=n)
            try:
                executor.load_models(models)
                run, report = one_scan(executor)
            finally:
                executor.close()
            run["workers"] = n
            run["identical_report"] = report == reference
            runs.append(run)
    base = runs[0]
    for run in runs:
        run["speedup"] = round(base["wall_s"] / run["wall_s"], 3)
        if run.get("units_per_s") and base.get("units_per_s"):
            run["model_speedup"] = round(run["units_per_s"] / base["units_per_s"], 3)
    return {
        "cluster": where,
        "cluster_cpus": resources.get("CPU", 0),
        "cluster_gpus": resources.get("GPU", 0),
        "files_copied": len(copied),
        "source": str(source),
        "detectors": names,
        "review": review,
        "device": device or "cpu",
        "machine_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "runs": runs,
    }


def cluster_table(result: dict) -> str:
    head = ["workers", "wall s", "files/s", "file stage s", "model s", "units", "units/s",
            "speed-up (wall)", "speed-up (units/s)", "same report"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["runs"]:
        cells = [r["workers"], f"{r['wall_s']:.2f}", f"{r['files_per_s']:.1f}", f"{r['file_stage_s']:.2f}",
                 f"{r['model_s']:.2f}" if "model_s" in r else "-", r.get("units_reviewed", "-"),
                 f"{r['units_per_s']:.1f}" if r.get("units_per_s") else "-",
                 f"{r['speedup']:.2f}x", f"{r['model_speedup']:.2f}x" if "model_speedup" in r else "-",
                 "yes" if r["identical_report"] else "NO"]
        rows.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(rows) + "\n"


def run_command(address: str, files: int, path: Path | None, out: Path, names, precision, review,
                device, slm_model, echo) -> None:
    out.mkdir(parents=True, exist_ok=True)
    result = cluster_bench(address, files, path, out, names, precision, review, device, slm_model)
    (out / "cluster.json").write_text(json.dumps(result, indent=2) + "\n")
    table = cluster_table(result)
    (out / "cluster.md").write_text(table)
    echo(f"{result['files_copied']} files from {result['source']} on {result['cluster']} "
         f"({result['cluster_cpus']:g} CPUs, {result['cluster_gpus']:g} GPUs; this machine has "
         f"{result['machine_cpus']} CPUs), detectors {', '.join(result['detectors'])}, "
         f"review={result['review']}, device={result['device']}")
    echo(table)
    two = [r for r in result["runs"] if r["workers"] == 2]
    if two:
        r = two[0]
        echo(f"2 vs 1 workers: {r['speedup']:.2f}x wall"
             + (f", {r['model_speedup']:.2f}x model units/s" if "model_speedup" in r else ""))
    echo(f"wrote {out / 'cluster.json'} and {out / 'cluster.md'}")
