"""JSON (one document) and JSON Lines (one record per line, each with a ``kind``).

No timestamps or timings: two scans of the same tree give byte-identical output."""

from __future__ import annotations

import json

from cwescan import __version__
from cwescan.core.report import Report


def report_dict(report: Report) -> dict:
    doc = {
        "version": __version__,
        "findings": [r.to_dict() for r in report.findings],
        "skipped": [n.to_dict() for n in report.notices],
        "unused_suppressions": report.unused_suppressions,
        "stats": report.stats,
    }
    if report.repositories:  # several repositories in one scan: each finding names its own
        doc["repositories"] = [r.to_dict() for r in report.repositories]
    return doc


def render_json(report: Report) -> str:
    return json.dumps(report_dict(report), indent=2, ensure_ascii=False) + "\n"


def render_jsonl(report: Report) -> str:
    doc = report_dict(report)
    records = [{"kind": "finding", **f} for f in doc["findings"]]
    records += [{"kind": "skipped", **s} for s in doc["skipped"]]
    records += [{"kind": "unused_suppression", **u} for u in doc["unused_suppressions"]]
    records.append({"kind": "stats", "version": doc["version"], **doc["stats"]})
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
