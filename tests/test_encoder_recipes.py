"""Encoder recipes are data checked against dataclasses; a tiny pre-training run works on CPU."""

import json
from pathlib import Path

import pytest

from cwescan.evaluate.metrics import best_f1_threshold
from cwescan.train.encoder import Recipe, load_recipe, run

RECIPES = sorted(Path(__file__).resolve().parents[1].glob("recipes/encoder-*.yaml"))


def test_there_are_encoder_recipes():
    assert {p.name for p in RECIPES} >= {"encoder-pretrain.yaml", "encoder-finetune.yaml"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_recipe_parses(path):
    r = load_recipe(path)
    assert isinstance(r, Recipe) and r.stages
    assert r.finetune.window_tokens <= r.pretrain.shape.max_tokens
    assert r.pretrain.shape.hidden % r.pretrain.shape.heads == 0


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: x\nstages: [pretrain]\nbogus: 1\n", "unknown keys"),
        ("name: x\nstages: [pretrain]\npretrain: {batch_size: big}\n", "expected int"),
        ("name: x\nstages: [train]\n", "stages"),
        ("name: x\nstages: [finetune]\nfinetune: {shape: {layers: 2, colour: red}}\n", "unknown keys"),
        ("- just\n- a list\n", "expected a mapping"),
        ("name: [unclosed\n", "cannot read"),
    ],
)
def test_bad_recipes_are_refused(tmp_path, text, message):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_recipe(p)


def test_best_threshold_maximises_f1():
    m = best_f1_threshold([1, 1, 0, 0, 1], [0.9, 0.8, 0.7, 0.1, 0.2])
    thr = m["threshold"]
    assert thr == 0.2 and m["f1"] == pytest.approx(2 * 0.75 * 1.0 / 1.75)
    m = best_f1_threshold([1, 1, 0, 0], [0.9, 0.8, 0.3, 0.1])
    thr = m["threshold"]
    assert thr == 0.8 and m["f1"] == 1.0


def test_tiny_pretraining_on_cpu(tmp_path):
    from encoder_helpers import corpus

    root = tmp_path / "site"
    for i, text in enumerate(corpus(40)):
        pkg = root / f"pkg{i % 8}"
        pkg.mkdir(parents=True, exist_ok=True)
        (pkg / f"m{i}.py").write_text(text)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"name: tiny\nstages: [pretrain]\npretrain:\n  corpus: {{roots: [{root}], max_mb: 1, holdout_percent: 40, tokenizer_sample_mb: 1}}\n"
        "  shape: {vocab_size: 400, hidden: 32, layers: 1, heads: 2, intermediate: 64, max_positions: 66}\n"
        "  block_tokens: 64\n  batch_size: 4\n  max_steps: 3\n  log_every: 1\n  eval_every: 2\n  eval_blocks: 4\n"
    )
    out = tmp_path / "out"
    summary = run(recipe, out, device="cpu")["pretrain"]
    assert summary["steps"] == 3 and summary["tokens_seen"] == 3 * 4 * 64
    assert 0.0 <= summary["heldout_masked_accuracy"] <= 1.0 and summary["heldout_masked_tokens"] > 0
    assert (out / "tokenizer.json").is_file() and list(out.glob("encoder-*.safetensors"))
    log = [json.loads(line) for line in (out / "pretrain_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log][:3] == [1, 2, 3] and "heldout_loss" in log[-1]


DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.mark.skipif(not DATA.is_dir(), reason="labelled data not present")
def test_tiny_pretrain_finetune_ship_and_detect(tmp_path):
    """Both stages on CPU with a tiny body and a few records, then ship() and load the result
    through the detector: the whole path that produced the shipped model."""
    from encoder_helpers import corpus

    from cwescan.ml.artifacts import verify
    from cwescan.detectors import create
    from cwescan.train.encoder_ship import ship, write_readme
    from cwescan.core.units import parse_source

    root = tmp_path / "site"
    for i, text in enumerate(corpus(40)):
        (root / f"pkg{i % 8}").mkdir(parents=True, exist_ok=True)
        (root / f"pkg{i % 8}" / f"m{i}.py").write_text(text)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"name: tiny\nstages: [pretrain, finetune]\npretrain:\n  corpus: {{roots: [{root}], max_mb: 1, holdout_percent: 40, tokenizer_sample_mb: 1}}\n"
        "  shape: {vocab_size: 400, hidden: 32, layers: 1, heads: 2, intermediate: 64, max_positions: 66}\n"
        "  block_tokens: 64\n  batch_size: 4\n  max_steps: 2\n  eval_blocks: 4\n"
        "finetune:\n  window_tokens: 64\n  overlap_tokens: 8\n  epochs: 1\n  limit_records: 24\n  batch_records: 8\n"
    )
    out = tmp_path / "run"
    result = run(recipe, out, device="cpu")
    sel = result["finetune"]["selected"]
    assert 0.0 <= sel["f1"] <= 1.0 and result["finetune"]["steps"] == 3
    dest = tmp_path / "shipped"
    ship(out, dest, ["cwescan train encoder --recipe r.yaml"], storage="int8")
    write_readme(dest)
    card = verify(dest)
    assert card["threshold"] == pytest.approx(sel["threshold"])
    assert "pre-trained from scratch" in card["base_model"] and (dest / "README.md").is_file()
    det = create("encoder", model_path=dest)
    units = parse_source("a.py", "import os\n\ndef f(x):\n    os.system(x)\n").units
    assert len(det.score(units)) == len(units)
