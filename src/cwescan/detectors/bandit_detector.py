"""Bandit as a peer detector: Bandit's own manager and tests, run as a library on each file's text.

One ``BanditManager`` is built once (loading Bandit's plugins is the slow part) and fed every
file through its per-file path (``_parse_file``) from memory, so it also works on snippets
made by ``parse_source(record_id, code)`` that exist on no disk. Each Bandit issue becomes a
``Finding`` with detector "bandit", the test id as ``rule_id`` (e.g. "B608"), Bandit's CWE, and
Bandit's confidence word as a probability: LOW 0.4, MEDIUM 0.6, HIGH 0.8 (UNDEFINED 0.3).
Bandit's severity maps LOW->low, MEDIUM->medium, HIGH->high.

By default B101 (``assert`` used) is skipped, as most projects configure Bandit: it is about
``python -O`` stripping asserts, not about a weakness in the code's data handling.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence

from cwescan.detectors.base import FileDetector
from cwescan.core.findings import Finding
from cwescan.core.units import SourceFile

CONFIDENCE = {"LOW": 0.4, "MEDIUM": 0.6, "HIGH": 0.8, "UNDEFINED": 0.3}
SEVERITY = {"LOW": "low", "MEDIUM": "medium", "HIGH": "high", "UNDEFINED": "low"}
DEFAULT_SKIPS = ("B101",)
# Bandit reports a few tests without a CWE (0); these are the weaknesses they are about.
FALLBACK_CWE = {"B105": "CWE-259", "B106": "CWE-259", "B107": "CWE-259"}
# Bandit files these under CWE-94, the consequence; the catalogue names the weakness, as the
# static rules covering them do (CWS489, CWS079C/D), so both detectors report one finding.
CWE_OVERRIDE = {"B201": "CWE-489", "B701": "CWE-79", "B702": "CWE-79"}


class BanditDetector(FileDetector):
    """Options: ``tests`` (only these Bandit test ids), ``skips`` (test ids to leave out;
    default ``("B101",)``)."""

    name = "bandit"

    def __init__(self, tests: Sequence[str] | None = None, skips: Sequence[str] = DEFAULT_SKIPS) -> None:
        from bandit.core import config as b_config
        from bandit.core import manager as b_manager

        # Bandit logs parse failures and unknown module paths as errors; the scanner reports those.
        logging.getLogger("bandit").setLevel(logging.CRITICAL)
        conf = b_config.BanditConfig()
        self._manager = b_manager.BanditManager(
            conf, "file", profile={"include": set(tests or ()), "exclude": set(skips)})

    @property
    def skipped_files(self) -> list:
        """Files Bandit skipped in the last check (it could not parse them)."""
        return self._manager.skipped

    def check_text(self, path: str, text: str) -> list[Finding]:
        from bandit.core import metrics as b_metrics

        m = self._manager
        m.results = []
        m.scores = []
        m.skipped = []
        m.metrics = b_metrics.Metrics()  # per-file counters would otherwise pile up
        # Bandit's only entry point for one in-memory file is this private method (its public
        # API reads files from disk); pinned by tests/test_bandit_detector.py.
        m._parse_file(path, io.BytesIO(text.encode("utf-8", "surrogatepass")), [path])
        out = []
        for issue in m.results:
            cwe_id = getattr(issue.cwe, "id", 0) or 0
            cwe = CWE_OVERRIDE.get(issue.test_id) or (
                f"CWE-{cwe_id}" if cwe_id else FALLBACK_CWE.get(issue.test_id, "CWE-703"))
            lines = [n for n in (issue.linerange or []) if isinstance(n, int) and n > 0]
            start = int(issue.lineno or (lines[0] if lines else 1))
            end = max([start, *lines])
            out.append(Finding(
                path=path, start_line=start, end_line=end, cwe=cwe, rule_id=issue.test_id,
                title=f"Bandit {issue.test_id}: {issue.test}", message=issue.text,
                confidence=CONFIDENCE.get(str(issue.confidence), 0.3),
                severity=SEVERITY.get(str(issue.severity), "low"), detector="bandit"))
        return out

    def check_source(self, src: SourceFile) -> list[Finding]:
        if src.tree is None:
            return []
        # a file with syntax errors: Bandit reads the repaired lines (same numbering)
        return self.check_text(src.path, src.repair.text if src.repair else src.text)

