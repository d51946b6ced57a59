"""Score a SAST tool's results on the OWASP Benchmark for Python (github.com/OWASP-Benchmark/
BenchmarkPython): one file per test case, each a real or a false weakness of one category,
listed in its ``expectedresults-<version>.csv``.

A test counts as flagged when the tool reports, anywhere in the test's file, a CWE of the
category's family (``cwescan.core.cwe.same_family``: eval injection CWE-95 counts for code
injection CWE-94, CWE-338 for weak randomness CWE-330). Per category: the true positive rate
(real weaknesses flagged), the false positive rate (false ones flagged) and the benchmark's
score, their difference (Youden's J: 0 for a tool that flags at random or flags everything).
The results may be a ``cwescan scan -f json`` report, SARIF (any tool that names CWEs in its
rules' tags, properties or help links) or Bandit's JSON (``issue_cwe``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cwescan.core.cwe import normalize, same_family

_CWE = re.compile(r"(?i)\bCWE[-_ /:]?(\d+)")


class BenchmarkError(ValueError):
    """An expected-results or results file this scorer cannot read."""


@dataclass(frozen=True)
class BenchmarkCase:
    name: str  # BenchmarkTest00001: the file's stem
    category: str  # pathtraver, sqli, ...
    real: bool  # a real weakness (True) or a look-alike that is safe (False)
    cwe: str


def read_expected(path: Path) -> list[BenchmarkCase]:
    """The benchmark's ``expectedresults-*.csv``: ``# comment`` lines, then
    ``name,category,real,cwe`` per test."""
    cases = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4 or parts[2].lower() not in ("true", "false") or not parts[3].isdigit():
            raise BenchmarkError(f"{path}:{n}: expected 'name,category,true|false,cwe', got {line!r}")
        cases.append(BenchmarkCase(parts[0], parts[1], parts[2].lower() == "true", normalize(parts[3])))
    if not cases:
        raise BenchmarkError(f"{path}: no test cases")
    return cases


def read_results(path: Path, min_confidence: float = 0.0) -> dict[str, set[str]]:
    """Test name (a file's stem) -> the CWEs the tool reported in that file."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise BenchmarkError(f"{path}: not a JSON results file ({e})") from None
    if isinstance(doc, dict) and "runs" in doc:
        pairs = _sarif(doc)
    elif isinstance(doc, dict) and "results" in doc and "findings" not in doc:
        pairs = ((r.get("filename", ""), f"CWE-{(r.get('issue_cwe') or {}).get('id', 0)}") for r in doc["results"])
    elif isinstance(doc, dict) and "findings" in doc:
        pairs = ((f.get("path", ""), f.get("cwe") or "") for f in doc["findings"]
                 if f.get("confidence", 1.0) >= min_confidence)
    else:
        raise BenchmarkError(f"{path}: neither a cwescan report, SARIF nor Bandit JSON")
    reported: dict[str, set[str]] = {}
    for file, cwe in pairs:
        if file and (m := _CWE.search(cwe or "")):
            reported.setdefault(Path(file).stem, set()).add(normalize(m.group(1)))
    return reported


def _sarif(doc: dict) -> Iterable[tuple[str, str]]:
    for run in doc.get("runs", []):
        rules = {r.get("id"): json.dumps(r) for r in run.get("tool", {}).get("driver", {}).get("rules", [])}
        for res in run.get("results", []):
            locations = res.get("locations") or [{}]
            uri = locations[0].get("physicalLocation", {}).get("artifactLocation", {}).get("uri", "")
            text = json.dumps(res.get("properties", {})) + json.dumps(res.get("taxa", [])) + rules.get(
                res.get("ruleId"), "")
            for m in _CWE.finditer(text):
                yield uri, f"CWE-{m.group(1)}"


def score(cases: list[BenchmarkCase], reported: dict[str, set[str]]) -> dict:
    """Per category and on average: tp, fn, fp, tn, tpr, fpr and score (tpr - fpr)."""
    per: dict[str, dict] = {}
    for case in cases:
        row = per.setdefault(case.category, {"cwe": case.cwe, "tp": 0, "fn": 0, "fp": 0, "tn": 0})
        flagged = any(same_family(c, case.cwe) for c in reported.get(case.name, ()))
        row[("tp" if flagged else "fn") if case.real else ("fp" if flagged else "tn")] += 1
    for row in per.values():
        row["tpr"] = row["tp"] / (row["tp"] + row["fn"]) if row["tp"] + row["fn"] else 0.0
        row["fpr"] = row["fp"] / (row["fp"] + row["tn"]) if row["fp"] + row["tn"] else 0.0
        row["score"] = row["tpr"] - row["fpr"]
    rows = list(per.values())
    average = {k: sum(r[k] for r in rows) / len(rows) for k in ("tpr", "fpr", "score")}
    missing = sum(1 for c in cases if c.name not in reported)
    return {"categories": dict(sorted(per.items())), "average": average, "tests": len(cases),
            "tests_without_findings": missing}


def table(result: dict) -> str:
    lines = ["| category | CWE | TP | FN | FP | TN | TPR | FPR | score |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for cat, r in result["categories"].items():
        lines.append(f"| {cat} | {r['cwe']} | {r['tp']} | {r['fn']} | {r['fp']} | {r['tn']} | "
                     f"{r['tpr']:.2f} | {r['fpr']:.2f} | {r['score']:.2f} |")
    a = result["average"]
    lines.append(f"| **average** | | | | | | {a['tpr']:.2f} | {a['fpr']:.2f} | **{a['score']:.2f}** |")
    return "\n".join(lines)
