"""Static stage vs Bandit: both detectors on the same real Python files, in one run.

Files are read into memory first, so neither side pays for disk I/O. The static side's time
includes ``parse_source`` (the AST and units it needs); Bandit parses the text itself, so both
times cover parsing plus all rules. The two detectors take turns file by file, so a change in
machine load during the run affects both alike. Set-up (importing, loading Bandit's plugins)
is outside the timed loop.
"""

from __future__ import annotations

import os
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

from cwescan.core.units import parse_source

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
    seconds: float = 0.0
    findings: int = 0
    failed_files: int = 0  # files the detector could not analyse (syntax errors)
    parse_seconds: float = 0.0  # static only: the part spent in parse_source

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds if self.seconds else float("inf")


def run_both(files: list[tuple[str, str]]) -> tuple[Run, Run, dict]:
    """Static and Bandit on every file, alternating; returns both runs and the static rule
    errors caught."""
    from cwescan.detectors.bandit_detector import BanditDetector
    from cwescan.detectors.static import StaticDetector

    static_det, bandit_det = StaticDetector(), BanditDetector()
    static, bandit = Run("static", len(files)), Run("bandit", len(files))
    clock = time.perf_counter
    for rel, text in files:
        t0 = clock()
        src = parse_source(rel, text)
        tp = clock()
        found = static_det.check_source(src)
        t1 = clock()
        static.parse_seconds += tp - t0
        b_found = bandit_det.check_text(rel, text)
        t2 = clock()
        static.seconds += t1 - t0
        bandit.seconds += t2 - t1
        static.findings += len(found)
        bandit.findings += len(b_found)
        static.failed_files += src.tree is None
        bandit.failed_files += bool(bandit_det.skipped_files)
    return static, bandit, dict(static_det.errors)
