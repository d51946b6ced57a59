"""``cwescan bench scan`` and ``cwescan bench triage``: options in, ``cwescan.bench.scan`` out
(registered in ``cwescan.cli.bench``)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cwescan.bench.scan import card_sha, scan_bench, scan_table, triage_cost
from cwescan.bench.static import stdlib_path
from cwescan.cli.options import blank_lines_option, focus_option, focus_tokens_option


def scan_command(
    files: int = typer.Option(1000, "--files", min=1, help="How many .py files the tree holds."),
    path: Path = typer.Option(None, "--path", help="Folder to take them from (default: the standard library)."),
    out: Path = typer.Option(Path("runs/bench-scan"), "--out", help="Tree, cache and results go here."),
    detector: list[str] = typer.Option(None, "--detector", "-d",
                                       help="Detectors (default: the scan's default set)."),
    precision: str = typer.Option(None, "--precision", help="Model precision (default: the measured one)."),
    review: str = typer.Option("triage", "--review", help="triage | all"),
    jobs: int = typer.Option(0, "--jobs", "-j", min=0, help="Static-stage workers (0 = automatic)."),
    device: str = typer.Option(None, "--device", help="Model detectors run on: cpu (default) | cuda."),
    compare: bool = typer.Option(False, "--compare",
                                 help="Also a cold scan without the SLM's prefix cache, after the first (before/after in one run)."),
    compare_first_stage: bool = typer.Option(False, "--compare-first-stage",
                                             help="Also a cold scan without the encoder's first stage (before/after in one run)."),
    first_stage: str = typer.Option("encoder", "--first-stage", help="The scan's --first-stage: encoder | none."),
    pair: str = typer.Option("encoder", "--pair", help="The scan's --pair: encoder | none."),
    compare_gate: bool = typer.Option(False, "--compare-gate",
                                      help="Also a cold scan at --min-confidence 0, where the pair's gate sits at the "
                                           "model-only threshold instead of the display confidence."),
    focus: bool = focus_option(),
    focus_tokens: int = focus_tokens_option(),
    blank_lines: bool | None = blank_lines_option(),
    settle: bool = typer.Option(True, "--settle/--no-settle",
                                help="Units whose rule findings the encoder settles are not read by the SLM (the "
                                     "scan's default), or the SLM reads every unit with a rule finding."),
    cluster: str = typer.Option(None, "--cluster",
                                help="Instead: scan the tree on this Ray cluster (local | auto | "
                                     "ray://HOST:PORT | HOST:PORT) with 1 and with 2 workers and print "
                                     "the ratio (default detector: static)."),
    slm_model: str = typer.Option(None, "--slm-model",
                                  help="The SLM: qwen, smollm2 or an adapter folder (default: the shipped one)."),
) -> None:
    """Scan a real N-file tree twice (cold, then warm result cache) and print the table."""
    root = path or stdlib_path()
    if not root.is_dir():
        raise typer.BadParameter(f"{root} is not a folder", param_hint="--path")
    if review not in ("triage", "all"):
        raise typer.BadParameter("triage or all", param_hint="--review")
    from cwescan.core.pair import CHOICES as PAIRS
    from cwescan.scan.first_stage import CHOICES as FIRST_STAGES

    if first_stage not in FIRST_STAGES:
        raise typer.BadParameter(" or ".join(FIRST_STAGES), param_hint="--first-stage")
    if pair not in PAIRS:
        raise typer.BadParameter(" or ".join(PAIRS), param_hint="--pair")
    names = [n.strip() for item in (detector or []) for n in item.split(",") if n.strip()] or None
    if cluster:
        from cwescan.bench.cluster import run_command

        run_command(cluster, files, root, out, names, precision, review, device, slm_model, typer.echo)
        return
    out.mkdir(parents=True, exist_ok=True)
    result = scan_bench(files, root, out, names, precision, review, jobs, device, compare, compare_first_stage,
                        first_stage, pair, focus=focus, compare_gate=compare_gate, settle=settle,
                        focus_tokens=focus_tokens, blank_lines=blank_lines, slm_model=slm_model)
    if result["files_copied"] < files:
        typer.echo(f"only {result['files_copied']} readable .py files under {root}")
    (out / "scan.json").write_text(json.dumps(result, indent=2) + "\n")
    table = scan_table(result)
    (out / "scan.md").write_text(table)
    typer.echo(f"{result['files_copied']} files ({result['bytes']:,} bytes) from {root}, "
               f"review={review}, device={result['device']}, {result['cpu_count']} CPUs, "
               f"Python {result['python']}")
    typer.echo(table)
    typer.echo(f"wrote {out / 'scan.json'} and {out / 'scan.md'}")


def triage_command(
    records: int = typer.Option(0, "--records", min=0,
                                help="Deterministic sample of the test part (0 = all records)."),
    precision: str = typer.Option(None, "--precision", help="SLM precision (default: the measured one)."),
    out: Path = typer.Option(Path("runs/bench-triage"), "--out", help="triage.json goes here."),
) -> None:
    """What triage costs the SLM: recall, precision and F1 with and without it, on the test part."""
    import random

    from cwescan.data.split import load_part, manifest_hash
    from cwescan.ml.precision import default_precision
    from cwescan.detectors import create_detectors
    from cwescan.scan.quiet import third_party_quiet

    part = load_part("test")
    chosen = part if not records or records >= len(part) else random.Random(0).sample(part, records)
    precision = precision or default_precision("slm")
    with third_party_quiet():
        [slm] = create_detectors(["slm"], precision)
        slm.load()  # loading is not part of the scoring time
    result = triage_cost(chosen, slm, log=typer.echo)
    result["split_manifest_hash"] = manifest_hash()
    result["sampled"] = len(chosen) < len(part)
    result["model_card_sha256"] = card_sha(slm)
    out.mkdir(parents=True, exist_ok=True)
    (out / "triage.json").write_text(json.dumps(result, indent=2) + "\n")
    typer.echo(json.dumps(result, indent=2))
