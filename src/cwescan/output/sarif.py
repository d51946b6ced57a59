"""SARIF 2.1.0 as GitHub code scanning reads it.

One rule per static rule id, and one per (model detector, CWE) for model findings
("SLM-CWE-89"), since a model has no fixed rules. Tags carry the zero-padded CWE
("external/cwe/cwe-089") and ``security-severity`` the CVSS-like score GitHub uses to rank
alerts. ``partialFingerprints.primaryLocationLineHash`` hashes the flagged code plus a per-file
occurrence counter, so alerts survive edits that move lines.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from cwescan import __version__
from cwescan.core import cwe as cwe_catalog
from cwescan.core.findings import Finding
from cwescan.core.report import Report, Reported
from cwescan.core.repositories import repository_of

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/cwescan/cwescan"
LEVELS = {"critical": "error", "high": "error", "medium": "warning", "low": "note"}
PROBLEM_SEVERITY = {"error": "error", "warning": "warning", "note": "recommendation"}
SRCROOT = "%SRCROOT%"


def precision(confidence: float) -> str:
    if confidence >= 0.9:
        return "very-high"
    if confidence >= 0.7:
        return "high"
    if confidence >= 0.4:
        return "medium"
    return "low"


def rule_id(f: Finding, models: frozenset[str]) -> str:
    source = f.extra.get("source_detector", f.detector)
    if source in models:
        return f"{source.upper()}-{f.cwe}"
    return f.rule_id


def _cwe_tag(cwe: str) -> str:
    return f"external/cwe/cwe-{int(cwe.split('-')[1]):03d}"


def _rule(rid: str, results: list[Reported], report: Report) -> dict:
    f = results[0].finding
    cwes = sorted({r.finding.cwe for r in results if cwe_catalog.is_cwe(r.finding.cwe)},
                  key=lambda c: int(c.split("-")[1]))
    cwe_name = cwe_catalog.name(f.cwe)
    url = (f"https://cwe.mitre.org/data/definitions/{f.cwe.split('-')[1]}.html" if cwe_catalog.is_cwe(f.cwe)
           else "https://nvd.nist.gov/vuln/categories")
    source = f.extra.get("source_detector", f.detector)
    if source in report.model_detectors:
        name = f"{source} {cwe_name}"
        short = f"{cwe_name} ({f.cwe}), found by the {source} model"
        full = (f"The {source} model judged this code to contain {f.cwe}: {cwe_name}. "
                "Model findings carry a confidence; review the flagged lines.")
    else:
        name = f.title or cwe_name
        short = f"{f.title} ({f.cwe})" if f.title else f"{cwe_name} ({f.cwe})"
        full = f"{f.title}. {f.cwe}: {cwe_name}." if f.title else f"{f.cwe}: {cwe_name}."
    body = full
    doc = report.rule_docs.get(rid)
    if doc and doc[1]:  # a static rule's docstring is its documentation
        full, body = doc[0] or full, doc[1]
    suppress = ("Suppress a reviewed finding with `# cwescan: ignore"
                + (f"[{f.cwe}]" if cwe_catalog.is_cwe(f.cwe) else "") + "` on the flagged statement.")
    return {
        "id": rid,
        "name": "".join(w.capitalize() for w in "".join(c if c.isalnum() else " " for c in name).split()) or rid,
        "shortDescription": {"text": short},
        "fullDescription": {"text": full},
        "helpUri": url,
        "help": {"text": f"{body}\n\n{f.cwe}: {cwe_name} ({url})\n\n{suppress}",
                 "markdown": f"{body}\n\n[{f.cwe}: {cwe_name}]({url})\n\n{suppress}"},
        "defaultConfiguration": {"level": LEVELS[f.severity]},
        "properties": {
            "tags": ["security", *(_cwe_tag(c) for c in cwes)],
            "security-severity": f"{max(cwe_catalog.security_severity(r.finding.cwe) for r in results):.1f}",
            "precision": precision(max(r.finding.confidence for r in results)),
            "problem.severity": PROBLEM_SEVERITY[LEVELS[f.severity]],
        },
    }


def _location(path: str, start: int | None = None, end: int | None = None) -> dict:
    # a relative URI reference: spaces and the like percent-encoded, slashes kept
    loc: dict = {"artifactLocation": {"uri": quote(path, safe="/"), "uriBaseId": SRCROOT}}
    if start is not None:
        start = max(1, start)
        loc["region"] = {"startLine": start, "endLine": max(start, end or start)}
    return {"physicalLocation": loc}


def sarif_dict(report: Report) -> dict:
    """One run for the scan; with several repositories in one scan, one run per repository
    (GitHub code scanning takes a single run per tool and category, so each run gets its own
    category, ``automationDetails.id`` "cwescan/<repository>/", its own root and, for a git
    work tree with a remote, ``versionControlProvenance``)."""
    if not report.repositories:
        runs = [_run(report, report.findings, report.notices, report.unused_suppressions,
                     report.base.as_uri().rstrip("/") + "/", lambda path: path)]
    else:
        def of(path: str) -> str | None:
            repo = repository_of(path, report.repositories)
            return repo.name if repo else None

        runs = []
        for repo in report.repositories:
            run = _run(report, [r for r in report.findings if r.repository == repo.name],
                       [n for n in report.notices if of(n.path) == repo.name],
                       [u for u in report.unused_suppressions if of(u.get("path", "")) == repo.name],
                       repo.root_uri, repo.relative)
            run["automationDetails"] = {"id": f"cwescan/{repo.name}/"}
            if repo.remote:
                vcs = {"repositoryUri": repo.remote, "mappedTo": {"uriBaseId": SRCROOT}}
                if repo.revision:
                    vcs["revisionId"] = repo.revision
                if repo.branch:
                    vcs["branch"] = repo.branch
                run["versionControlProvenance"] = [vcs]
            run["properties"]["repository"] = repo.name
            runs.append(run)
    return {"$schema": SCHEMA, "version": "2.1.0", "runs": runs}


def _run(report: Report, findings: list[Reported], notices: list, unused: list[dict],
         root_uri: str, relative) -> dict:
    """One SARIF run over ``findings`` and ``notices``, their paths made relative to
    ``root_uri`` by ``relative``."""
    by_rule: dict[str, list[Reported]] = {}
    for r in findings:
        by_rule.setdefault(rule_id(r.finding, report.model_detectors), []).append(r)
    rule_ids = sorted(by_rule)
    index = {rid: i for i, rid in enumerate(rule_ids)}
    results = []
    for r in findings:
        f = r.finding
        rid = rule_id(f, report.model_detectors)
        results.append({
            "ruleId": rid,
            "ruleIndex": index[rid],
            "level": LEVELS[f.severity],
            "message": {"text": f"{f.title}: {f.message}" if f.title else f.message},
            "locations": [_location(relative(f.path), f.start_line, f.end_line)],
            **({"relatedLocations": [
                {"id": i, **_location(relative(rel["path"]), rel["line"], rel["line"]),
                 "message": {"text": "the untrusted data is passed on here"}}
                for i, rel in enumerate(f.extra["related"], 1)]} if f.extra.get("related") else {}),
            "partialFingerprints": {"primaryLocationLineHash": r.line_hash},
            "properties": {
                "cwe": f.cwe,
                "confidence": round(f.confidence, 4),
                "severity": f.severity,
                "detectors": f.extra.get("detectors", {f.detector: round(f.confidence, 4)}),
                "fingerprint": r.fingerprint,
                **({"in_test": True} if f.in_test else {}),
            },
        })
    notifications = [{
        "level": "note" if n.scanned else "warning",
        "message": {"text": f"{relative(n.path)}: {_state(n)} "
                            f"({n.reason}): {n.message}"},
        "descriptor": {"id": n.reason},
        "locations": [_location(relative(n.path))],
        "properties": {"reason": n.reason, "scanned": n.scanned},
    } for n in notices]
    return {
        "tool": {"driver": {
            "name": "cwescan",
            "version": __version__,
            "semanticVersion": __version__,
            "informationUri": INFORMATION_URI,
            "rules": [_rule(rid, by_rule[rid], report) for rid in rule_ids],
        }},
        "invocations": [{
            "executionSuccessful": True,
            "toolExecutionNotifications": notifications,
        }],
        "originalUriBaseIds": {SRCROOT: {"uri": root_uri}},
        "results": results,
        "columnKind": "unicodeCodePoints",
        "properties": {"stats": report.stats, "unusedSuppressions": unused},
    }


def render_sarif(report: Report) -> str:
    return json.dumps(sarif_dict(report), indent=2, ensure_ascii=False) + "\n"


def _state(n) -> str:
    return ("scanned" if n.complete else "partly scanned") if n.scanned else "skipped"
