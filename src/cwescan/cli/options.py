"""Command-line options that several commands declare alike (one definition, one help text)."""

from __future__ import annotations

import typer


def focus_option():
    """``--focus/--no-focus``: how the models read a unit longer than one window."""
    return typer.Option(True, "--focus/--no-focus",
                        help="The models read a long unit only in the windows around its sinks, sources "
                             "and rule findings, as the scan does (default), or all of it.")


def focus_tokens_option():
    """``--focus-tokens N``: the SLM's focus windows at most N tokens, centred on those lines."""
    return typer.Option(None, "--focus-tokens", min=0,
                        help="The SLM reads a long unit in windows of at most this many tokens centred "
                             "on its sinks, sources and rule findings (0: the fixed windows that hold "
                             "one; default: the detector's).")


def blank_lines_option():
    """``--blank-lines/--no-blank-lines``: the SLM reads a unit's blank lines too, or not;
    unset: as its card says (adapters record the format they were trained on)."""
    return typer.Option(None, "--blank-lines/--no-blank-lines",
                        help="The SLM reads the blank lines of a unit's numbered code too (those a "
                             "stripped docstring or comment leaves included), or leaves them out, each "
                             "line keeping its number; default: as its model card says.")
