"""The `cwescan` command. Each command lives in its own module, which adds itself to the app
through a ``register(app)`` function; this file only assembles them."""

from __future__ import annotations

import importlib

import typer

from cwescan import __version__

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


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"cwescan {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Find security weaknesses (CWEs) in Python code, offline."""


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    app()
