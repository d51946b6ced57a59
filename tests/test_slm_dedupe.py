"""Identical units are scored once per scan and the answer fanned out: every copy keeps its own
file, lines and unit name. Tiny random SLM (threshold 0: every unit is flagged)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

from cwescan.core.units import parse_source  # noqa: E402

from slm_helpers import tiny_slm_artifact  # noqa: E402

FUNC = "def run(cmd):\n    # run it\n    return os.system(cmd)\n"


def test_identical_units_are_scored_once_and_fanned_out(tmp_path):
    from cwescan.detectors.slm import SLMDetector

    det = SLMDetector(model=tiny_slm_artifact(tmp_path / "model"), precision="fp32")
    a = parse_source("a.py", "import os\n\n\n" + FUNC)
    b = parse_source("pkg/b.py", "import os\nX = 1\n\n\n\n\n" + FUNC)
    units = [u for s in (a, b) for u in s.units if u.kind == "function"]
    assert [u.start_line for u in units] == [4, 7]
    found = det.detect(units)
    assert det.stats["windows"] == 2 and det.stats["scored_windows"] == 1  # one model pass for both
    assert det.stats["tokens"] > 0 and det.stats["prefix_tokens"] > 0
    slm = sorted((f.path, f.start_line, f.extra["unit"], f.extra["window"]) for f in found)
    assert [s[0] for s in slm] == ["a.py", "pkg/b.py"]
    for (path, line, unit, window), u in zip(slm, units, strict=True):
        assert unit == "run" and u.start_line <= line <= u.end_line
        assert window == [u.start_line, u.end_line]
    # the same line of the function in each file
    assert slm[0][1] - units[0].start_line == slm[1][1] - units[1].start_line
    same = {f.confidence for f in found}
    assert len(same) == 1
    # a later call answers the copy from memory as well
    det.detect([units[1]])
    assert det.stats["scored_windows"] == 1 and det.stats["windows"] == 3
