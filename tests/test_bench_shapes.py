"""`cwescan bench shapes`: the products it times are the products the real models run, and the
command writes a well-formed table. Numbers are not asserted (a benchmark is not a timed test)."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from typer.testing import CliRunner  # noqa: E402

from cwescan.bench.shapes import Geometry, measure, render_markdown  # noqa: E402
from cwescan.cli import app  # noqa: E402


def linear_params(module) -> int:
    return sum(m.in_features * m.out_features for m in module.modules() if isinstance(m, torch.nn.Linear))


def test_decoder_products_are_the_llama_layers():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16)
    model = LlamaForCausalLM(config)
    g = Geometry.from_config("tiny", config.to_dict(), window=32)
    assert (g.heads, g.kv_heads, g.head_dim, g.gated, g.causal) == (4, 2, 16, True, True)
    assert g.matmul_params() == linear_params(model.model)  # the LM head reads scored positions only


def test_encoder_products_are_the_roberta_layers():
    from cwescan.ml.encoder.model import ClassifierConfig, EncoderClassifier, EncoderShape

    config = ClassifierConfig(shape=EncoderShape(vocab_size=300, hidden=32, layers=2, heads=4, intermediate=48,
                                                 max_positions=66), window_tokens=64)
    model = EncoderClassifier(config)
    g = Geometry.from_config("encoder", json.loads(config.to_json()), window=999)
    assert (g.window, g.gated, g.causal, g.kv_heads) == (64, False, False, 4)
    assert g.matmul_params() == linear_params(model.encoder)


def test_shipped_slm_geometry():
    smollm2 = {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
               "num_key_value_heads": 3, "head_dim": 64}
    # SmolLM2-135M without its embeddings: 106.2 M parameters inside matrix products
    assert Geometry.from_config("slm", smollm2, 384).matmul_params() == 106_168_320


def test_measure_rows_and_speedups():
    g = Geometry("tiny", hidden=32, intermediate=64, layers=2, heads=4, kv_heads=2, head_dim=8, gated=True,
                 causal=True, window=16)
    result = measure([g], "cpu", ["fp32", "bf16", "fp16"], [32, 64], reps=1, quick_peaks=True)
    rows = result["rows"]
    assert [(r["dtype"], r["tokens"]) for r in rows] == [("fp32", 32), ("fp32", 64), ("bf16", 32), ("bf16", 64)]
    for r in rows:
        assert r["products_s"] > 0 and r["attention_s"] > 0
        assert r["matmul_flops"] == 2 * g.matmul_params() * r["tokens"]
        assert r["share_with_attention"] < r["share_products"]
    assert [r["speedup_vs_fp32"] for r in rows[:2]] == [1.0, 1.0]
    assert "| tiny | bf16 | 64 |" in render_markdown(result)


def test_command_writes_the_table(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 1,
                                  "num_attention_heads": 2}))
    runner = CliRunner()
    args = ["bench", "shapes", "--models", "slm", "--config", f"slm={config}", "--dtypes", "fp32",
            "--tokens", "64", "--window", "32", "--out", str(tmp_path / "out")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "out" / "shapes.json").read_text())
    assert [r["model"] for r in written["rows"]] == ["slm"]
    assert written["geometries"][0]["kv_heads"] == 2
    bad = runner.invoke(app, args[:6] + ["--dtypes", "fp8"])
    assert bad.exit_code == 2 and "unknown dtype" in bad.output
    unnamed = runner.invoke(app, args[:4] + ["--config", str(config)] + args[6:])
    assert unnamed.exit_code == 2 and "MODEL=PATH" in unnamed.output
