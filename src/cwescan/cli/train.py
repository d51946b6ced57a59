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


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
