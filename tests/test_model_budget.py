"""The model stage reads at most a per-file budget of each file (a tiny random SLM, the real
scanner): the units past it are not sent to the model, static rules still cover them, and the
report says so."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

from cwescan.scan import model_budget  # noqa: E402
from cwescan.detectors.slm import SLMDetector  # noqa: E402
from cwescan.detectors.static import StaticDetector  # noqa: E402
from cwescan.scan.pipeline import ScanOptions, scan  # noqa: E402
from cwescan.core.units import parse_source  # noqa: E402

from slm_helpers import tiny_slm_artifact  # noqa: E402

FUNC = "def f{i}(cmd):\n    import os\n    os.system('ls ' + cmd)\n    return {i}\n\n\n"


def test_units_in_file_order_until_the_budget():
    src = parse_source("a.py", "".join(FUNC.format(i=i) for i in range(10)))
    size = len(src.units[0].code)
    kept, left_out = model_budget.within_budget(src.units, budget=3 * size + 1)
    assert [u.qualname for u in kept] == ["f0", "f1", "f2"] and left_out == 7
    assert model_budget.within_budget(src.units, budget=10**9) == (src.units, 0)


def test_scan_reports_the_units_models_did_not_read(tmp_path, monkeypatch):
    monkeypatch.setattr(model_budget, "MODEL_FILE_BUDGET_CHARS", 300)
    root = tmp_path / "tree"
    root.mkdir()
    (root / "big.py").write_text("".join(FUNC.format(i=i) for i in range(12)))
    (root / "small.py").write_text(FUNC.format(i=0))
    adapter = tiny_slm_artifact(tmp_path / "slm")
    report = scan([root], ScanOptions(detectors=[], review="all", cache=None),
                  detectors=[StaticDetector(), SLMDetector(model=adapter, precision="fp32")])
    [notice] = report.notices
    assert notice.path == "big.py" and notice.reason == "model-budget" and notice.scanned
    assert "models read 4 of 12 units" in notice.message
    stage = report.stats["model_stage"]
    assert stage["over_budget"] == 8 and stage["reviewed"] == 5  # 4 of big.py, 1 of small.py
    static_lines = {r.finding.start_line for r in report.all_findings
                    if r.finding.path == "big.py" and "static" in r.finding.extra.get("detectors", {"static": 1})}
    assert len(static_lines) == 12  # static rules still flag every function
    assert report.stats["files_partial"] == 1
