"""`cwescan data split` and `cwescan data export`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

data_app = typer.Typer(help="The labelled data and its train / validation / test split.", no_args_is_help=True)


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


@data_app.command("split")
def split_cmd(
    data_dir: Path = typer.Option(None, help="Folder of *.jsonl records (default: $CWESCAN_DATA or ../shared/datasets)."),
    out: Path = typer.Option(None, help="Where the manifests go (default: data/splits in the checkout)."),
    top_cwes: int = typer.Option(15, help="CWE families to list in the printed table."),
) -> None:
    """Build the leakage-free split and write its manifests; prints counts per source and CWE."""
    from cwescan.data.records import DataError
    from cwescan.data.split import PARTS, count_table, by_cwe, by_source, run_split, splits_dir

    try:
        result, summary = run_split(data_dir, out)
    except DataError as e:
        _fail(str(e))
    typer.echo(f"wrote {out or splits_dir()}  manifest_hash {summary['manifest_hash']}")
    typer.echo(
        f"dropped {summary['dropped_conflicting_duplicates']} records in duplicate groups with both labels, "
        f"{summary['dropped_duplicates']} duplicate copies; {summary['leakage_groups']} groups"
    )
    head = f"{'':34}" + "".join(f"{p:>11}" for p in PARTS)
    typer.echo(head)
    typer.echo(f"{'records':34}" + "".join(f"{summary['parts'][p]:>11}" for p in PARTS))
    for title, key, limit in (("source", by_source, None), ("CWE family", by_cwe, top_cwes)):
        typer.echo(f"-- per {title}")
        for k, v in count_table(result.parts, key)[:limit]:
            typer.echo(f"{k[:34]:34}" + "".join(f"{x:>11}" for x in v))


@data_app.command("export")
def export_cmd(
    part: str = typer.Option(..., help="train, validation or test"),
    out: Path = typer.Option(..., help="JSONL file to write (the full records of the part)."),
    data_dir: Path = typer.Option(None, help="Folder of *.jsonl records (default: $CWESCAN_DATA or ../shared/datasets)."),
) -> None:
    """Write the records of one part as JSONL (e.g. to carry them to a training machine)."""
    from cwescan.data.records import DataError
    from cwescan.data.split import load_part

    try:
        records = load_part(part, data_dir)
    except DataError as e:
        _fail(str(e))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
    tmp.replace(out)
    typer.echo(f"wrote {len(records)} {part} records to {out}")


@data_app.command("negatives")
def negatives_cmd(
    site_packages: Path = typer.Option(..., "--site-packages", help="A site-packages folder to read Python sources from."),
    out: Path = typer.Option(..., help="Folder for <part>.jsonl and MANIFEST.json."),
    data_dir: Path = typer.Option(None, help="Labelled records to de-duplicate against (default: $CWESCAN_DATA or ../shared/datasets)."),
    part: list[str] = typer.Option(None, "--part", help="Parts to write (repeatable; default all)."),
    packages_of: Path = typer.Option(None, "--packages-of", help="A MANIFEST.json: read only the packages it lists "
                                     "for the parts asked (to rebuild its held-out part here)."),
    workers: int = typer.Option(0, help="Worker processes (0: one per core, at most 32)."),
) -> None:
    """Build the realistic-negatives corpus: units of site-packages code that triage would send to
    the model, presumed safe, split by package, de-duplicated against the labelled data."""
    import shlex
    import sys

    from cwescan.data.negatives import PARTS, NegativesError, build_negatives, read_manifest
    from cwescan.data.records import DataError, default_data_dir, load_records

    parts = part or list(PARTS)
    try:
        labelled = load_records(data_dir or default_data_dir())
        only = None
        if packages_of:
            only = [p["name"] for p in read_manifest(packages_of)["packages"] if p["part"] in parts]
        command = shlex.join(["cwescan", "data", "negatives", *sys.argv[3:]]) if sys.argv[1:3] == ["data", "negatives"] \
            else shlex.join(["cwescan", "data", "negatives", "--site-packages", str(site_packages), "--out", str(out)])
        m = build_negatives(site_packages, out, labelled, only=only, parts=parts, workers=workers or None,
                            command=command)
    except (DataError, NegativesError) as e:
        _fail(str(e))
    typer.echo(f"wrote {out}  packages_sha256 {m['packages_sha256']}")
    typer.echo(f"{'':18}" + "".join(f"{p:>12}" for p in parts))
    for key in ("packages", "files", "source_lines", "reviewed_units", "dropped_labelled", "dropped_repeats", "kept_units"):
        typer.echo(f"{key:18}" + "".join(f"{m['parts'][p][key]:>12}" for p in parts))


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
