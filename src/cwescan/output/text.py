"""The human report: findings grouped by file, then skipped files, unused suppressions and a
summary. User text goes through rich ``Text`` objects, never markup, so code like
``x[0]`` prints as written."""

from __future__ import annotations

from itertools import groupby
from typing import TextIO

from rich.console import Console
from rich.text import Text

from cwescan.core import cwe as cwe_catalog
from cwescan.core.report import Report

SEVERITY_STYLE = {"critical": "bold white on red", "high": "bold red", "medium": "yellow",
                  "low": "cyan"}


def write_text(report: Report, stream: TextIO, color: bool | None = None) -> None:
    style: dict = {}
    if color is False:
        style = {"color_system": None, "force_terminal": False}
    elif color:
        style = {"force_terminal": True}
    console = Console(file=stream, highlight=False, soft_wrap=True, **style)
    for path, group in groupby(report.findings, key=lambda r: r.finding.path):
        console.print(Text(path, style="bold underline"))
        for r in group:
            f = r.finding
            head = Text.assemble(
                (f"  {f.start_line:>5}  ", "dim"),
                (f"{f.severity.upper():<8}", SEVERITY_STYLE[f.severity]),
                f"  {f.cwe} {cwe_catalog.name(f.cwe)}",
                (f"  [{f.rule_id}, {f.detector} {f.confidence:.2f}"
                 + (", test code" if f.in_test else "") + "]", "dim"),
            )
            console.print(head)
            console.print(Text(f"         {f.title}: {f.message}" if f.title else f"         {f.message}"))
            if r.snippet:
                console.print(Text(f"         > {r.snippet}", style="dim"))
        console.print()

    if report.notices:
        console.print(Text(f"Skipped or partly scanned files ({len(report.notices)})", style="bold"))
        for n in report.notices:
            state = ("scanned" if n.complete else "partly scanned") if n.scanned else "skipped"
            console.print(Text.assemble(f"  {n.path}  ", (f"{n.reason}", "magenta"),
                                        (f" ({state}): {n.message}", "dim")))
        console.print()

    if report.unused_suppressions:
        console.print(Text(f"Unused suppressions ({len(report.unused_suppressions)})", style="bold"))
        for u in report.unused_suppressions:
            codes = ", ".join(u["unused"])
            console.print(Text(f"  {u['path']}:{u['line']}  {u['directive']}  (nothing hidden for {codes})"))
        console.print()

    s = report.stats
    sev = ", ".join(f"{n} {name}" for name, n in s["by_severity"].items())
    summary = (f"{s['findings']} finding{'s' if s['findings'] != 1 else ''}"
               + (f" ({sev})" if sev else "")
               + f" in {s['files_scanned']} file{'s' if s['files_scanned'] != 1 else ''} scanned"
               + f" ({s['units']} unit{'s' if s['units'] != 1 else ''})"
               + f"; {s['files_skipped']} skipped, {s['files_partial']} partly scanned"
               + f"; detectors: {', '.join(s['detectors'])}")
    hidden = [f"{s[k]} {label}" for k, label in (("suppressed", "suppressed inline"),
                                                 ("baselined", "in baseline"),
                                                 ("below_min_confidence", "below --min-confidence"))
              if s[k]]
    if s.get("in_test"):
        summary += f"; {s['in_test']} in test code (one severity lower, never fail --fail-on)"
    if s.get("test_files_not_scanned"):
        summary += f"; {s['test_files_not_scanned']} test files not scanned (tests = skip)"
    if hidden:
        summary += f"; hidden: {', '.join(hidden)}"
    console.print(Text(summary, style="bold"))
