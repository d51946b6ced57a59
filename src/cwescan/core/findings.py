"""A finding: one weakness at one place, from one or more detectors."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from cwescan.core import cwe as cwe_catalog

SEVERITIES = ("low", "medium", "high", "critical")


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


@dataclass
class Finding:
    path: str  # posix path relative to the scan root
    start_line: int  # 1-based, inclusive
    end_line: int
    cwe: str  # normalised "CWE-89"
    rule_id: str  # stable id, e.g. "CWS101" for static rules, "SLM" for the model
    title: str
    message: str  # the explanation shown to the user
    confidence: float  # 0..1
    severity: str  # one of SEVERITIES
    detector: str  # "static", "bandit", "slm", "encoder", or "static+slm" once merged
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.cwe = cwe_catalog.normalize(self.cwe)
        self.confidence = float(min(1.0, max(0.0, self.confidence)))
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")

    @property
    def in_test(self) -> bool:
        """In test code: reported one severity lower and left out of ``--fail-on``
        (``cwescan.core.testcode``)."""
        return bool(self.extra.get("in_test"))

    @property
    def family(self) -> str:
        return cwe_catalog.family(self.cwe)

    def sort_key(self) -> tuple:
        return (self.path, self.start_line, self.end_line, self.cwe, self.rule_id, self.detector)

    def verdict(self) -> dict:
        """The structured verdict of the research papers, plus where and why (and ``in_test``
        for a finding in test code)."""
        d = {
            "vulnerability": True,
            "type": f"{self.cwe}: {cwe_catalog.name(self.cwe)}",
            "line_number": self.start_line,
            "confidence": round(self.confidence, 4),
            "path": self.path,
            "end_line": self.end_line,
            "cwe": self.cwe,
            "rule_id": self.rule_id,
            "title": self.title,
            "severity": self.severity,
            "detector": self.detector,
            "explanation": self.message,
        }
        if self.in_test:
            d["in_test"] = True
        if self.extra.get("related"):  # where the data was handed to the flagged function
            d["related"] = self.extra["related"]
        return d

    def to_dict(self) -> dict:
        return asdict(self)


def by_path(findings) -> dict[str, list[Finding]]:
    """``findings`` grouped by file, in their order: how triage and the model stage are handed
    the rule findings ("hints")."""
    out: dict[str, list[Finding]] = {}
    for f in findings:
        out.setdefault(f.path, []).append(f)
    return out


def in_unit(finding: Finding, unit, *, nested: bool = True) -> bool:
    """The one rule for "this finding lies in that unit": same file, and the finding's first
    line within the unit's lines (decorators and signature included). The module unit holds
    the top-level code; with ``nested=False`` a finding inside one of the file's functions
    belongs to that function, not to the module unit. ``unit``: a ``cwescan.core.units.Unit``."""
    if finding.path != unit.path or not unit.start_line <= finding.start_line <= unit.end_line:
        return False
    if nested or unit.kind != "module":
        return True
    return not any(o.kind == "function" and o.start_line <= finding.start_line <= o.end_line
                   for o in unit.file.units)
