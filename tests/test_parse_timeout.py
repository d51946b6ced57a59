"""A file whose parse cannot finish in --file-timeout is skipped, not a stalled scan: large
files are parsed first in a forked child that is killed at the bound (CPython 3.11 parses
f-string placeholders in quadratic time inside C, where the per-file alarm cannot reach)."""

from __future__ import annotations

import time

from cwescan.detectors.static import StaticDetector
from cwescan.scan.pipeline import PARSE_PROBE_CHARS, ScanOptions, parse_finishes, scan

SLOW = "x = f'" + "{a}" * 150_000 + "'\n"  # 450 KB: tens of seconds in CPython 3.11's parser


def test_slow_parse_is_stopped_and_reported_as_skipped(tmp_path):
    (tmp_path / "slow.py").write_text(SLOW)
    big_ok = "import os\n\n" + "".join(f"def f{i}(a):\n    return a + {i}\n\n" for i in range(3000))
    big_ok += "def bad(cmd):\n    os.system('ls ' + cmd)\n"
    assert len(big_ok) > PARSE_PROBE_CHARS
    (tmp_path / "big.py").write_text(big_ok)
    t0 = time.monotonic()
    report = scan([tmp_path], ScanOptions(detectors=[], file_timeout=1.0, base=tmp_path),
                  detectors=[StaticDetector()])
    assert time.monotonic() - t0 < 10
    [notice] = report.notices
    assert notice.path == "slow.py" and notice.reason == "parse-timeout" and not notice.scanned
    assert report.stats["files_skipped"] == 1 and report.stats["files_scanned"] == 1
    assert [r.finding.path for r in report.findings] == ["big.py"]  # the large file is still scanned


def test_probe_answers_quickly_for_ordinary_text():
    t0 = time.monotonic()
    assert parse_finishes("x = 1\n" * 20_000, 5.0)
    assert parse_finishes("def f(:\n", 5.0)  # a syntax error also finishes
    assert time.monotonic() - t0 < 3
    assert not parse_finishes(SLOW, 0.5)
