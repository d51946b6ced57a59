"""`cwescan train slm|encoder --recipe recipes/<name>.yaml`."""

from __future__ import annotations

from pathlib import Path

import typer

train_app = typer.Typer(help="Train the shipped models from the data.", no_args_is_help=True)


@train_app.command("slm")
def train_slm(
    recipe: Path = typer.Option(..., exists=True, dir_okay=False, help="recipes/<name>.yaml"),
    out: Path = typer.Option(Path("runs/slm"), help="Where the adapter, card and logs go."),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    max_steps: int = typer.Option(0, help="Stop after N optimiser steps (0: as the recipe says)."),
) -> None:
    """Fine-tune the SLM detector (LoRA or QLoRA) on the train part of the split."""
    from cwescan.train import slm

    slm.run(recipe, out=out, device=device, max_steps=max_steps or None)


@train_app.command("encoder")
def train_encoder(
    recipe: Path = typer.Option(..., exists=True, dir_okay=False, help="recipes/<name>.yaml"),
    out: Path = typer.Option(Path("runs/encoder"), help="Where the weights, card and logs go."),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    max_steps: int = typer.Option(0, help="Stop after N optimiser steps (0: as the recipe says)."),
) -> None:
    """Pre-train (MLM) and/or fine-tune the encoder classifier, as the recipe says."""
    from cwescan.train import encoder

    encoder.run(recipe, out=out, device=device, max_steps=max_steps or None)


@train_app.command("encoder-threshold")
def encoder_threshold(
    model_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="A shipped encoder folder."),
) -> None:
    """Choose the encoder's decision threshold on the validation part and write it to its
    config and card."""
    from cwescan.train import encoder_ship

    encoder_ship.select_threshold(model_dir)


@train_app.command("encoder-ship")
def encoder_ship(
    run_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="The training run's folder."),
    dest: Path = typer.Argument(..., help="Where the shipped model goes (src/cwescan/models/encoder)."),
    command: list[str] = typer.Option([], help="A command that reproduces the run, for the card; repeatable."),
    storage: str = typer.Option("fp16", help="Storage precision of the weights: fp16 or int8."),
) -> None:
    """Copy a fine-tuned encoder into the package and write its card and README."""
    from cwescan.train import encoder_ship

    encoder_ship.ship(run_dir, dest, command, storage=storage)
    encoder_ship.write_readme(dest)


@train_app.command("calibrate")
def calibrate(
    scores: Path = typer.Option(..., exists=True, dir_okay=False, help="Score file of `cwescan eval-mix`."),
    negatives_manifest: Path = typer.Option(..., exists=True, help="MANIFEST.json of the negatives corpus scored."),
    card: Path = typer.Option(None, file_okay=False, help="Adapter folder whose card gets the thresholds (with --write)."),
    repeat_scores: Path = typer.Option(None, exists=True, dir_okay=False, help="Score file of a second training run."),
    baseline_scores: Path = typer.Option(None, exists=True, dir_okay=False, help="Score file of the adapter to beat."),
    prevalence: float = typer.Option(0.01, help="Share of reviewed units that are vulnerable in real code."),
    write: bool = typer.Option(False, help="Write thresholds, calibration and realistic metrics into the card."),
    report: Path = typer.Option(None, help="Also write the whole analysis as JSON here."),
) -> None:
    """Choose the SLM's thresholds and calibration on the validation mix at realistic prevalence,
    and measure them on the test mix (held-out packages)."""
    from cwescan.train.calibrate import run

    if not 0 < prevalence < 1:
        typer.echo("error: --prevalence must be in (0, 1)", err=True)
        raise typer.Exit(2)
    run(scores, negatives_manifest, card, repeat_scores, baseline_scores, prevalence, write, report)


@train_app.command("pair")
def pair(
    scores: Path = typer.Option(..., exists=True, dir_okay=False, help="`cwescan eval-mix` scores of the SLM."),
    partner_scores: Path = typer.Option(..., exists=True, dir_okay=False,
                                        help="`cwescan eval-mix --detector encoder` scores of the partner."),
    negatives_manifest: Path = typer.Option(..., exists=True, help="MANIFEST.json of the negatives corpus scored."),
    card: Path = typer.Option(None, file_okay=False, help="SLM adapter folder whose card gets the pair (with --write)."),
    partner_card: Path = typer.Option(Path("src/cwescan/models/encoder"), file_okay=False,
                                      help="The partner model's folder (its weights' hashes go into the pair)."),
    repeat_scores: Path = typer.Option(None, exists=True, dir_okay=False, help="SLM scores of a second training run."),
    partner_repeat_scores: Path = typer.Option(None, exists=True, dir_okay=False,
                                               help="Partner scores of its second training run."),
    line_scores: Path = typer.Option(None, exists=True, dir_okay=False,
                                     help="`cwescan eval-mix --labelled-only` answers of the SLM (lines and their "
                                          "confidence): the pair's line threshold."),
    prevalence: float = typer.Option(0.01, help="Share of reviewed units that are vulnerable in real code."),
    write: bool = typer.Option(False, help="Write the pair section into the SLM card."),
    report: Path = typer.Option(None, help="Also write the whole analysis as JSON here."),
) -> None:
    """Fit the SLM's pair with the encoder (weight and decision thresholds) on the validation mix
    at realistic prevalence; measure it on the test mix and on the test part as a scan."""
    from cwescan.train.pair import run

    if not 0 < prevalence < 1:
        typer.echo("error: --prevalence must be in (0, 1)", err=True)
        raise typer.Exit(2)
    run(scores, partner_scores, negatives_manifest, card, partner_card, repeat_scores, partner_repeat_scores,
        prevalence, write, report, line_scores)


@train_app.command("first-stage")
def first_stage(
    encoder_scores: Path = typer.Option(..., exists=True, dir_okay=False, help="`cwescan eval-mix --detector encoder` scores."),
    slm_scores: Path = typer.Option(..., exists=True, dir_okay=False, help="`cwescan eval-mix` scores of the SLM."),
    card: Path = typer.Option(None, file_okay=False, help="Encoder folder whose card gets the threshold (with --write)."),
    slm_card: Path = typer.Option(Path("src/cwescan/models/slm"), file_okay=False, help="SLM folder (its model-only threshold)."),
    loss: float = typer.Option(0.02, help="Largest share of vulnerable validation records the first stage may clear."),
    write: bool = typer.Option(False, help="Write the threshold and its measurements into the card."),
) -> None:
    """Choose the encoder's first-stage threshold (units it clears never reach the SLM) on
    validation, and measure its cost and savings on test."""
    from cwescan.train.first_stage import run

    if not 0 <= loss < 1:
        typer.echo("error: --loss must be in [0, 1)", err=True)
        raise typer.Exit(2)
    run(encoder_scores, slm_scores, card, slm_card, write, loss)


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
