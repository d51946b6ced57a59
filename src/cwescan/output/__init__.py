"""Report writers: text (rich), json, jsonl and SARIF 2.1.0. Every format carries the same
findings, skipped files and unused suppressions, in the same deterministic order."""

from __future__ import annotations

from typing import TextIO

from cwescan.output.json_format import render_json, render_jsonl
from cwescan.output.sarif import render_sarif
from cwescan.output.text import write_text
from cwescan.core.report import Report

FORMATS = ("text", "json", "jsonl", "sarif")


def write(report: Report, fmt: str, stream: TextIO, color: bool | None = None) -> None:
    """Write ``report`` in ``fmt`` to ``stream``. ``color`` only matters for text: None lets
    rich decide from the stream."""
    if fmt == "text":
        write_text(report, stream, color=color)
    elif fmt == "json":
        stream.write(render_json(report))
    elif fmt == "jsonl":
        stream.write(render_jsonl(report))
    elif fmt == "sarif":
        stream.write(render_sarif(report))
    else:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")


__all__ = ["FORMATS", "write"]
