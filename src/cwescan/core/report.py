"""What a scan returns and every output format reads: the findings as reported, the files
skipped, unused suppressions and statistics. Output writers import this module and nothing
of the scan, so writing a report never loads a detector."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cwescan.core.findings import Finding, severity_rank
from cwescan.core.repositories import Repository

if TYPE_CHECKING:
    from cwescan.scan.walk import Notice


@dataclass
class Reported:
    """A finding as reported, with its identities across edits."""

    finding: Finding
    fingerprint: str  # baseline identity: path, CWE family, flagged code
    line_hash: str  # SARIF primaryLocationLineHash: content hash + per-file occurrence
    snippet: str = ""  # the first flagged line, for the text report
    repository: str | None = None  # its repository's name, when the scan covers several

    def to_dict(self) -> dict:
        d = self.finding.verdict()
        d["fingerprint"] = self.fingerprint
        d["detectors"] = self.finding.extra.get("detectors", {self.finding.detector: d["confidence"]})
        if self.repository is not None:
            d["repository"] = self.repository
        return d


@dataclass
class Report:
    base: Path  # paths are relative to this folder
    detectors: list[str]
    findings: list[Reported]  # what remains after confidence, suppression and baseline
    notices: list[Notice]
    unused_suppressions: list[dict]
    stats: dict
    all_findings: list[Reported] = field(default_factory=list)  # before the baseline
    model_detectors: frozenset[str] = frozenset()  # which of ``detectors`` are models
    rule_docs: dict[str, tuple[str, str]] = field(default_factory=dict)  # rule id -> (summary, doc)
    excludes_used: set[str] = field(default_factory=set)  # exclude patterns that left something out
    repositories: list[Repository] = field(default_factory=list)  # empty: the scan covers one

    def failing(self, fail_on: str) -> list[Reported]:
        """Findings at or above ``fail_on``; those in test code never fail a scan."""
        if fail_on == "none":
            return []
        threshold = severity_rank(fail_on)
        return [r for r in self.findings
                if severity_rank(r.finding.severity) >= threshold and not r.finding.in_test]
