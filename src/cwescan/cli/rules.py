"""`cwescan rules`: the static rules, one line each, or their reference as Markdown."""

from __future__ import annotations

import sys

import typer


def rules(docs: bool = typer.Option(False, "--docs", help="Print the rule reference (docs/RULES.md) as Markdown.")) -> None:
    """List the static rules (id, CWE, severity, title), or print their documentation."""
    from cwescan.detectors.static.docs import listing, markdown

    sys.stdout.write(markdown() if docs else listing())


def register(app: typer.Typer) -> None:
    app.command("rules")(rules)
