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



# `cwescan bench models`: the quantization benchmark; its command lives with its code
from cwescan.bench.models import models_command  # noqa: E402

bench_app.command("models")(models_command)

# `cwescan bench scan` / `bench triage`: end-to-end scan speed and triage's cost (scan engineer)
from cwescan.bench.scan import scan_command, triage_command  # noqa: E402

bench_app.command("scan")(scan_command)
bench_app.command("triage")(triage_command)
