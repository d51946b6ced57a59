"""Static stage vs Bandit: both detectors on the same real Python files, in one run.

Files are read into memory first, so neither side pays for disk I/O. The static side's time
includes ``parse_source`` (the AST and units it needs); Bandit parses the text itself, so both
times cover parsing plus all rules.
"""

from __future__ import annotations

import os
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

from cwescan.units import parse_source

SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__", ".git", "node_modules"}


def stdlib_path() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def collect(root: Path, limit: int) -> list[tuple[str, str]]:
    """The first ``limit`` readable UTF-8 ``.py`` files under ``root`` in sorted order, as
    (relative path, text)."""
    out: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            path = Path(dirpath) / name
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError, ValueError):
                continue
            out.append((path.relative_to(root).as_posix(), text))
            if len(out) >= limit:
                return out
    return out


@dataclass
class Run:
    detector: str
    files: int
    seconds: float
    findings: int
    failed_files: int = 0  # files the detector could not analyse (syntax errors, crashes)

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds if self.seconds else float("inf")


def run_static(files: list[tuple[str, str]]) -> tuple[Run, dict]:
    from cwescan.detectors.static import StaticDetector

    det = StaticDetector()
    findings = failed = 0
    start = time.perf_counter()
    for rel, text in files:
        src = parse_source(rel, text)
        if src.tree is None:
            failed += 1
            continue
        findings += len(det.check_source(src))
    seconds = time.perf_counter() - start
    return Run("static", len(files), seconds, findings, failed), dict(det.errors)


def run_bandit(files: list[tuple[str, str]]) -> Run:
    from cwescan.detectors.bandit_detector import BanditDetector

    det = BanditDetector()  # plugin loading is set-up, outside the timed loop
    findings = failed = 0
    start = time.perf_counter()
    for rel, text in files:
        found = det.check_text(rel, text)
        failed += bool(det._manager.skipped)
        findings += len(found)
    seconds = time.perf_counter() - start
    return Run("bandit", len(files), seconds, findings, failed)
