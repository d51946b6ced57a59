"""The quick quantization benchmark, end to end on a tiny randomly initialised Llama: every row
runs in its own spawned process, and the outputs (bench.json, bench.md, pareto.png,
precision.json) come out well-formed. Numbers are not asserted (a benchmark is not a timed test)."""

from __future__ import annotations

import functools
import json

import pytest

from cwescan.ml.precision import cpu_has_native_bf16

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from cwescan.bench import models as B  # noqa: E402
from cwescan.data.records import Record  # noqa: E402

from slm_helpers import tiny_slm_artifact  # noqa: E402

CODE = [
    "import os\n\ndef run(cmd):\n    os.system(cmd)\n",
    "def add(a, b):\n    return a + b\n",
    "import sqlite3\n\ndef q(db, name):\n    return db.execute('select * from t where n = ' + name)\n",
    "def greet(name):\n    print(f'hello {name}')\n\nclass A:\n    def m(self, x):\n        return x * 2\n",
]


from cwescan.detectors.base import ModelDetector  # noqa: E402

class TinyLlamaScorer(ModelDetector):
    """A model detector around a 2-layer random Llama: bytes as tokens, P(vulnerable)
    from the logits of two answer tokens at the last position (like the SLM's score mode)."""

    threshold = 0.5

    def __init__(self, precision: str, device: str, seed: int = 0):
        from transformers import LlamaConfig, LlamaForCausalLM

        from cwescan.ml.precision import apply_precision

        torch.manual_seed(seed)
        cfg = LlamaConfig(
            vocab_size=258, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        )
        self.model = apply_precision(LlamaForCausalLM(cfg).eval(), precision, device)
        self.device, self.precision = device, precision
        self.batch_size = 8
        self.card = {}

    def load(self) -> None:
        pass  # built loaded

    def cache_identity(self):
        return None

    def set_batch(self, sequences: int) -> None:
        self.batch_size = sequences

    def detect(self, units, hints=None):
        return []

    def score(self, units):
        out = []
        for s in range(0, len(units), self.batch_size):
            seqs = [list(u.code.encode()[:120]) + [256] for u in units[s : s + self.batch_size]]
            width = max(len(q) for q in seqs)
            ids = torch.full((len(seqs), width), 257, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, q in enumerate(seqs):
                ids[r, width - len(q):] = torch.tensor(q)
                mask[r, width - len(q):] = 1
            with torch.inference_mode():
                logits = self.model(input_ids=ids, attention_mask=mask, logits_to_keep=1).logits[:, -1].float()
            out.extend(torch.softmax(logits[:, [1, 2]], -1)[:, 0].tolist())
        return out


def tiny_factory(precision, device):
    return TinyLlamaScorer(precision, device)


def _records(n=12):
    return [Record(f"r{i}", "test", CODE[i % len(CODE)] + f"\nX = {i}\n", i % 2 == 0, ["CWE-78"] if i % 2 == 0 else [])
            for i in range(n)]


def test_quick_bench_outputs(tmp_path):
    # rows in this process to keep the test fast; test_row_in_own_process covers the isolation
    config = B.BenchConfig(batches=(1, 4), speed_units=8, threads=1, cores=1, isolate=False)
    specs = [B.RowSpec("tiny", p, "cpu", functools.partial(tiny_factory)) for p in ("fp32", "bf16", "int8", "int4", "onnx-int8")]
    result = B.run_bench(specs, _records(), config, quick=True).to_json()
    B.write_outputs(result, tmp_path)

    data = json.loads((tmp_path / "bench.json").read_text())
    assert set(data["peaks"]["cpu"]) == {"fp32", "bf16", "int8"} and data["peaks"]["cpu"]["fp32"] > 0
    rows = {r["precision"]: r for r in data["rows"]}
    assert set(rows) == {"fp32", "bf16", "int8", "int4", "onnx-int8"}
    for p, r in rows.items():
        assert "error" not in r, (p, r.get("error"), r.get("traceback"))
        assert 0.0 <= r["f1"] <= 1.0 and 0.0 <= r["accuracy"] <= 1.0
        assert r["records"] == 12 and r["full_pass"]["units"] >= 12
        assert [s["batch"] for s in r["sweep"]] == [1, 4] and r["best_units_per_s"] > 0
        assert r["p50_ms"] > 0 and r["p95_ms"] >= r["p50_ms"]
        assert r["peak_rss_mb"] > 50 and r["weights_bytes"] > 0 and r["load_s"] > 0
        assert r["best_flops_per_s"] > 0 and r["roofline_share"] > 0
        if p == "fp32" or cpu_has_native_bf16() is not False:
            # on a CPU without AVX512-BF16/AMX (AVX2 only) the bf16 and int8 GEMM peaks are
            # measured on emulated or narrow paths, which the model's own products can exceed
            # (5.0x and 17x seen): only fp32 has a ceiling to check against there
            assert r["roofline_share"] < 5
        assert r["cost_per_1k_usd"] > 0
        assert "delta_f1" in r and "speedup_vs_fp32" in r
    assert rows["fp32"]["delta_f1"] == 0.0
    # weights as used shrink with precision (tiny model: the embedding stays unquantized)
    assert rows["bf16"]["weights_bytes"] < rows["fp32"]["weights_bytes"]
    assert rows["int8"]["weights_bytes"] < rows["fp32"]["weights_bytes"]
    assert rows["int4"]["weights_bytes"] < rows["bf16"]["weights_bytes"]
    md = (tmp_path / "bench.md").read_text()
    assert md.count("| tiny |") == 5 and "Measured GEMM peaks" in md
    png = (tmp_path / "pareto.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert data["defaults"]["tiny"]["precision"] in B.SCAN_PRECISIONS

    pfile = tmp_path / "precision.json"
    B.write_precision_file(data["defaults"], pfile, source="test")
    from cwescan.ml.precision import default_precision

    assert default_precision("tiny", pfile) == data["defaults"]["tiny"]["precision"]
    assert default_precision("nothing-measured", pfile) == "fp32"


@pytest.mark.slow  # heavy torch work (training, compile, ONNX export, a real tree)
def test_row_in_own_process():
    config = B.BenchConfig(batches=(1, 4), speed_units=8, threads=1)
    ballast = bytearray(400 * 2**20)  # the parent's peak grows; the child's must not include it
    ballast[:: 4096] = b"x" * len(ballast[:: 4096])
    parent = B.peak_rss_mb()
    row = B.run_row(B.RowSpec("tiny", "int8", "cpu", functools.partial(tiny_factory)), _records(6), config)
    assert "error" not in row, row.get("traceback")
    assert row["records"] == 6 and row["best_units_per_s"] > 0
    assert 50 < row["peak_rss_mb"] < parent - 300  # the child's own peak
    del ballast


def test_unavailable_row_is_reported_not_fatal():
    config = B.BenchConfig(batches=(1,), speed_units=4, threads=1, isolate=False)
    spec = B.RowSpec("tiny", "fp16", "cpu", functools.partial(tiny_factory))
    row = B.run_row(spec, _records(4), config)
    assert row["unavailable"] is True and "GPU-only" in row["error"]


def test_merge_later_rows_win():
    config = B.BenchConfig()
    a = {"machine": {}, "config": B.asdict(config), "peaks": {"cpu": {"fp32": 1e11}}, "rows": [
        {"model": "m", "precision": "fp32", "device": "cpu", "f1": 0.5, "accuracy": 0.5, "best_units_per_s": 10.0}]}
    b = {"machine": {"gpu": "x"}, "config": B.asdict(config), "peaks": {"cuda": {"bf16": 1e15}}, "rows": [
        {"model": "m", "precision": "bf16", "device": "cuda", "f1": 0.49, "accuracy": 0.5, "best_units_per_s": 1000.0}]}
    merged = B.merge_results([a, b])
    rows = {(r["precision"], r["device"]): r for r in merged["rows"]}
    assert set(merged["peaks"]) == {"cpu", "cuda"}
    assert rows[("bf16", "cuda")]["delta_f1"] == pytest.approx(-0.01)
    assert rows[("bf16", "cuda")]["speedup_vs_fp32"] is None  # other device: no speed-up claimed
    assert merged["defaults"]["m"]["precision"] == "fp32"  # GPU rows never become the CPU default


def test_time_budget_skips_rows_and_latency_units_cap_batch_one():
    config = B.BenchConfig(batches=(1, 4), speed_units=8, threads=1, isolate=False, latency_units=3, time_budget_s=0.5)
    specs = [B.RowSpec("tiny", p, "cpu", functools.partial(tiny_factory)) for p in ("fp32", "bf16")]
    result = B.run_bench(specs, _records(6), config, quick=True).to_json()
    first, second = result["rows"]
    assert "error" not in first and [s["units"] for s in first["sweep"]] == [3, 8]
    assert second["skipped"] and second["error"].startswith("time budget")
    assert "not run: time budget" in B.render_markdown(result)


@pytest.mark.slow  # heavy torch work (training, compile, ONNX export, a real tree)
def test_slm_detector_rows_through_its_public_api_onnx_included(tmp_path):
    """The real SLMDetector on a tiny Llama: loaded through load(), cache cleared through
    clear_cache(), and for ONNX its decoder (the part the score path calls) exported and put in
    place of the torch decoder."""
    config = B.BenchConfig(batches=(1, 4), speed_units=6, threads=1, isolate=False)
    factory = functools.partial(slm_factory, tiny_slm_artifact(tmp_path, threshold=0.5))
    # quick GEMM peaks: the test reads FLOPs per token, not roofline shares (the full peaks of a
    # CPU without bf16 instructions took ~5 min: its bf16 products run at ~1 GFLOP/s)
    result = B.run_bench([B.RowSpec("tinyslm", p, "cpu", factory) for p in ("fp32", "onnx-int8")], _records(6), config,
                         quick=True).to_json()
    fp32, onnx = result["rows"]
    for r in (fp32, onnx):
        assert "error" not in r, (r.get("error"), r.get("traceback"))
        assert r["best_units_per_s"] > 0 and r["sweep"][-1]["tokens_per_s"] > 0
    # the same FLOPs per token either way (ONNX: counted at export), not a full LM head per token
    per_token = [r["sweep"][-1]["flops_per_s"] / r["sweep"][-1]["tokens_per_s"] for r in (fp32, onnx)]
    assert per_token[1] == pytest.approx(per_token[0], rel=0.05)
    assert onnx["onnx_file"] == "model.int8.onnx"


@pytest.mark.slow  # heavy torch work (training, compile, ONNX export, a real tree)
def test_compiled_row_counts_flops_outside_the_graph(tmp_path):
    """bf16-compiled: the SLM's decoder runs under torch.compile; the meter's hooks stay outside
    the graph (tokens at the compiled decoder, FLOPs from its Linear shapes), so FLOPs per token
    match the eager row's hooked count."""
    config = B.BenchConfig(batches=(1, 4), speed_units=6, threads=2, isolate=False)
    factory = functools.partial(slm_factory, tiny_slm_artifact(tmp_path, threshold=0.5))
    rows = B.run_bench([B.RowSpec("tinyslm", p, "cpu", factory) for p in ("bf16", "bf16-compiled")],
                       _records(6), config, quick=True).to_json()["rows"]
    for r in rows:
        assert "error" not in r, (r.get("error"), r.get("traceback"))
    per_token = [r["sweep"][-1]["flops_per_s"] / r["sweep"][-1]["tokens_per_s"] for r in rows]
    assert per_token[1] == pytest.approx(per_token[0], rel=0.05)
    assert rows[1]["f1"] == pytest.approx(rows[0]["f1"], abs=0.2)


def slm_factory(adapter, precision, device):
    from cwescan.detectors.slm import SLMDetector

    return SLMDetector(model=adapter, precision=precision, device=device)
