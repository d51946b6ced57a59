"""`cwescan bench scan` machinery on a small tree with a tiny random SLM: the cold run reviews,
the warm run is served from the cache, and the outputs are well-formed. Numbers are not
asserted (a benchmark is not a timed test)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

from typer.testing import CliRunner  # noqa: E402

from cwescan.cli import app  # noqa: E402

from slm_helpers import tiny_slm_artifact  # noqa: E402


@pytest.mark.slow  # heavy torch work (training, compile, ONNX export, a real tree)
def test_bench_scan_cold_then_warm(tmp_path, monkeypatch):
    adapter = tiny_slm_artifact(tmp_path / "model")
    monkeypatch.setattr("cwescan.detectors.slm.model_dir", lambda name: adapter)
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "a.py").write_text("import os\n\n\ndef run(c):\n    os.system(c)\n")
    (src / "pkg" / "b.py").write_text("def add(a, b):\n    return a + b\n")
    (src / "pkg" / "c.py").write_text("import pickle\n\n\ndef load(b):\n    return pickle.loads(b)\n")
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["bench", "scan", "--files", "2", "--path", str(src), "--out", str(out),
                                 "-d", "static,slm", "--precision", "fp32"])
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "scan.json").read_text())
    assert doc["files_copied"] == 2  # a.py, then pkg/b.py: sorted, files before folders
    assert sorted(p.relative_to(out / "tree").as_posix() for p in (out / "tree").rglob("*.py")) == ["a.py", "pkg/b.py"]
    cold, warm = doc["runs"]
    assert (cold["units"], cold["reviewed"], cold["cleared"], cold["cached"]) == (3, 1, 2, 0)
    assert (warm["units"], warm["reviewed"], warm["cleared"], warm["cached"]) == (3, 0, 2, 1)
    assert cold["model_units_per_s"] > 0 and warm["model_units_per_s"] is None
    assert cold["findings"] == warm["findings"] and cold["detectors"] == ["static", "slm"]
    md = (out / "scan.md").read_text()
    assert md.count("\n") == 8 and "| cold cache |" in md and "| warm cache |" in md
    # where the SLM's seconds went (timed on the CPU), and what its batches padded
    assert cold["forward_s"] > 0 and cold["padded_tokens"] >= cold["tokens"] > 0
    assert warm["forward_s"] == 0 and warm["decode_steps"] == 0
    assert "- cold cache, the SLM's seconds: partner" in md and "- warm cache, the SLM's" not in md
    # where memory peaked: resident now / peak so far at the stage marks, peaks never fall
    assert list(cold["memory"])[0] == "model stage start" and list(cold["memory"])[-1] == "end"
    peaks = [peak for _, peak in cold["memory"].values()]
    assert peaks == sorted(peaks) and peaks[-1] <= cold["peak_rss_mb"]
    assert "- cold cache, resident MB now / peak so far: model stage start" in md


@pytest.mark.slow  # heavy torch work (training, compile, ONNX export, a real tree)
def test_triage_cost_counts_with_a_tiny_slm(tmp_path):
    from cwescan.bench.scan import triage_cost
    from cwescan.data.records import Record
    from cwescan.detectors.slm import SLMDetector

    adapter = tiny_slm_artifact(tmp_path / "model")  # threshold 0: every scored unit flags
    records = [
        Record("v1", "t", "import os\n\ndef run(c):\n    os.system(c)\n", True, ["CWE-78"], [4]),
        Record("v2", "t", "def add(a, b):\n    return a + b\n", True, ["CWE-20"], [2]),
        Record("s1", "t", "def mul(a, b):\n    return a * b\n", False),
        Record("s2", "t", "def q(cur, x):\n    cur.execute('select 1 where a = ?', (x,))\n", False),
    ]
    result = triage_cost(records, SLMDetector(model=adapter, precision="fp32"), log=lambda *_: None)
    assert result["units"] == 5 and result["units_cleared"] == 3  # v1's module unit, add, mul
    assert result["records_all_cleared"] == {"vulnerable": 1, "safe": 1}
    assert {k: result["slm"]["without_triage"][k] for k in ("tp", "fp", "fn", "tn")} == {"tp": 2, "fp": 2, "fn": 0, "tn": 0}
    assert {k: result["slm"]["with_triage"][k] for k in ("tp", "fp", "fn", "tn")} == {"tp": 1, "fp": 1, "fn": 1, "tn": 1}
    assert result["lost_true_positives"] == 1 and result["removed_false_positives"] == 1
    assert result["slm"]["with_triage"]["recall"] == 0.5
    # static flags v1 (os.system of a parameter) with or without triage
    assert result["static_or_slm"]["with_triage"]["tp"] == 1


@pytest.mark.slow  # a one-file tree through the tiny SLM
def test_bench_scan_runs_the_adapter_it_is_given(tmp_path, monkeypatch):
    # no shipped SLM to fall back on: only the folder given with --slm-model can score
    monkeypatch.setattr("cwescan.detectors.slm.model_dir", lambda name: tmp_path / "no-such-model")
    adapter = tiny_slm_artifact(tmp_path / "candidate", prompt={"blank_lines": True})
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("import os\n\n\ndef run(c):\n    os.system(c)\n")
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["bench", "scan", "--files", "1", "--path", str(src), "--out", str(out),
                                 "-d", "static,slm", "--precision", "fp32", "--slm-model", str(adapter)])
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "scan.json").read_text())
    assert doc["slm_model"] == str(adapter)
    cold = doc["runs"][0]
    assert cold["detectors"] == ["static", "slm"] and cold["reviewed"] == 1 and cold["tokens"] > 0
    assert cold["blank_lines"] is True  # the prompt format its card records, unless asked otherwise


@pytest.mark.slow  # a real tree through the tiny SLM, three cold/warm runs
def test_bench_scan_compare_reports_tokens_and_cpu(tmp_path, monkeypatch):
    adapter = tiny_slm_artifact(tmp_path / "model")
    monkeypatch.setattr("cwescan.detectors.slm.model_dir", lambda name: adapter)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("import os\n\n\ndef run(c):\n    os.system(c)\n")
    (src / "b.py").write_text("import os\n\n\ndef run(c):\n    os.system(c)\n")  # a copy: scored once
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["bench", "scan", "--files", "2", "--path", str(src), "--out", str(out),
                                 "-d", "static,slm", "--precision", "fp32", "--compare", "--compare-gate"])
    assert r.exit_code == 0, r.output
    cold, before, gate, warm = json.loads((out / "scan.json").read_text())["runs"]
    # at --min-confidence 0 the gate sits at the threshold; without a pair there is no gate to move
    assert gate["name"] == "cold, gate at the threshold" and gate["reviewed"] == cold["reviewed"]
    assert [x["prefix_cache"] for x in (before, cold)] == [False, True]
    assert before["reviewed"] == cold["reviewed"] == 2 and before["findings"] == cold["findings"]
    assert (before["windows"], before["scored_windows"]) == (cold["windows"], cold["scored_windows"]) == (2, 1)
    # the prefix cache serves the instruction: the model reads fewer tokens for the same prompts
    assert before["prefix_tokens"] == 0 and cold["prefix_tokens"] > 0
    assert cold["tokens"] + cold["prefix_tokens"] == before["tokens"]
    assert cold["model_cpu_s"] > 0 and cold["cpu_s"] >= cold["model_cpu_s"] and warm["tokens"] == 0
    assert "| cold, no prefix cache |" in (out / "scan.md").read_text()


@pytest.mark.slow  # a real tree through the tiny SLM, twice
def test_bench_scan_reads_long_units_around_their_sinks(tmp_path, monkeypatch):
    adapter = tiny_slm_artifact(tmp_path / "model")
    monkeypatch.setattr("cwescan.detectors.slm.model_dir", lambda name: adapter)
    src = tmp_path / "src"
    src.mkdir()
    body = "".join(f"    total = total + {i} * (total % 7)\n" for i in range(300))
    (src / "long.py").write_text(f"import os\n\n\ndef build(cmd):\n    total = 0\n{body}    os.system(cmd)\n    return total\n")
    runs = {}
    for flag in ("--focus", "--no-focus"):
        out = tmp_path / flag
        r = CliRunner().invoke(app, ["bench", "scan", "--files", "1", "--path", str(src), "--out", str(out),
                                     "-d", "static,slm", "--precision", "fp32", flag])
        assert r.exit_code == 0, r.output
        doc = json.loads((out / "scan.json").read_text())
        assert doc["focus"] == (flag == "--focus")
        runs[flag] = doc["runs"][0]
    focused, whole = runs["--focus"], runs["--no-focus"]
    assert focused["reviewed"] == whole["reviewed"] == 1
    assert 1 <= focused["windows"] < whole["windows"] and focused["tokens"] < whole["tokens"]
    assert focused["focus"] and not whole["focus"]
