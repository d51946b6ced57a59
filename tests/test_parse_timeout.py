"""A file whose parse cannot finish in --file-timeout is skipped, not a stalled scan: files
whose worst-case parse could come near the bound are parsed in a forked child that is killed
at the bound (CPython 3.11 parses f-string placeholders in quadratic time inside C, where the
per-file alarm cannot reach). Real files, the real parser."""

from __future__ import annotations

import random
import time

from cwescan.fuzz import engine as fuzz
from cwescan.detectors.static import StaticDetector
from cwescan.scan.parse_guard import SMALL_FILE_CHARS, parse_finishes, parse_may_stall
from cwescan.scan.pipeline import ScanOptions, scan, scan_file
from cwescan.scan.walk import Candidate

SLOW = "x = f'" + "{a}" * 150_000 + "'\n"  # 450 KB: seconds to minutes in CPython 3.11's parser


def _fuzz_fstring_3mb() -> bytes:
    """The fuzz corpus's largest f-string case (gen_huge_literal, kind "fstring", 3 MB)."""
    for seed in range(10_000):
        rng = random.Random(seed)
        data = fuzz.gen_huge_literal(rng, [])
        if data.startswith(b"x = f'") and len(data) > 2_900_000:
            return data
    raise AssertionError("the fuzz generator no longer makes a 3 MB f-string")


def test_slow_parse_is_stopped_and_reported_as_skipped(tmp_path):
    (tmp_path / "slow.py").write_text(SLOW)
    big_ok = "import os\n\n" + "".join(f"def f{i}(a):\n    return f'{{a}} {i}'\n\n" for i in range(3000))
    big_ok += "def bad(cmd):\n    os.system('ls ' + cmd)\n"
    assert len(big_ok) > SMALL_FILE_CHARS
    (tmp_path / "big.py").write_text(big_ok)
    t0 = time.monotonic()
    report = scan([tmp_path], ScanOptions(detectors=[], file_timeout=4.0, base=tmp_path),
                  detectors=[StaticDetector()])
    assert time.monotonic() - t0 < 2 * (4.0 + 5)  # two files, each within its bound + 5 s
    assert len(report.notices) == 1, report.notices
    [notice] = report.notices
    assert notice.path == "slow.py" and notice.reason == "parse-timeout" and not notice.scanned
    assert "did not finish within 2 s, half of --file-timeout 4 s" in notice.message
    assert report.stats["files_skipped"] == 1 and report.stats["files_scanned"] == 1
    assert [r.finding.path for r in report.findings] == ["big.py"]  # the large file is still scanned


def test_fuzz_corpus_3mb_fstring_is_skipped_within_the_bound(tmp_path):
    data = _fuzz_fstring_3mb()
    path = tmp_path / "fstring3mb.py"
    path.write_bytes(data)
    timeout = 2.0
    t0 = time.monotonic()
    r = scan_file(Candidate(path, "fstring3mb.py"), [StaticDetector()], 5_000_000, timeout,
                  keep_source=True)
    elapsed = time.monotonic() - t0
    assert [n.reason for n in r.notices] == ["parse-timeout"] and not r.scanned
    assert elapsed < timeout + 5, elapsed


def test_ordinary_files_are_parsed_in_process():
    """The pre-check keeps ordinary files out of the child: no fork, no second parse."""
    assert not parse_may_stall("x = f'{a}'\n" * 5_000, 20.0)  # small: always in process
    plain = "def f(a):\n    return {'k': a}\n" * 5_000  # 150 KB, dict braces but no f-string
    assert not parse_may_stall(plain, 20.0)
    assert parse_may_stall(plain, 0.1)  # only its linear cost counts, against a tiny bound
    assert parse_may_stall(SLOW, 20.0)


def test_probe_answers_for_ordinary_text_and_gives_up_on_a_stalling_parse():
    # behaviour, not speed: ordinary text and a syntax error finish inside a generous bound
    # (a loaded CI machine may take seconds to fork), a quadratic f-string does not
    assert parse_finishes("x = 1\n" * 20_000, 30.0)
    assert parse_finishes("def f(:\n", 30.0)  # a syntax error also finishes
    assert not parse_finishes(SLOW, 0.5)
