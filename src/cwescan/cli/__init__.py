"""The `cwescan` command. Each command lives in its own module, which adds itself to the app
through a ``register(app)`` function; this file only assembles them."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="cwescan",
    help="Find security weaknesses (CWEs) in Python code, offline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

COMMAND_MODULES = [
    "cwescan.cli.scan",  # cwescan scan
    "cwescan.cli.data",  # cwescan data split
    "cwescan.cli.eval",  # cwescan eval
    "cwescan.cli.train",  # cwescan train slm|encoder
    "cwescan.cli.bench",  # cwescan bench
    "cwescan.cli.fuzz",  # cwescan fuzz
    "cwescan.cli.rules",  # cwescan rules
]

for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    app()
