"""The SLM pipeline on a tiny random Llama (SmolLM2's tokenizer, 2 layers, hidden 32): training
smoke run, adapter save/reload, score and constrained generate, refusal of a tampered adapter."""

from __future__ import annotations

import json
import shutil

import pytest

from cwescan.ml.artifacts import ArtifactError
from cwescan.data.records import Record
from cwescan.core.units import parse_source

VULN = [
    ("def q(db, name):\n    return db.execute(\"SELECT * FROM t WHERE n='%s'\" % name)\n", "CWE-89", 2),
    ("import os\n\ndef run(cmd):\n    os.system('ls ' + cmd)\n", "CWE-78", 4),
    ("import pickle\n\ndef load(data):\n    return pickle.loads(data)\n", "CWE-502", 4),
]
SAFE = [
    "def q(db, name):\n    return db.execute('SELECT * FROM t WHERE n=?', (name,))\n",
    "import subprocess\n\ndef run(cmd):\n    subprocess.run(['ls', cmd], check=True)\n",
    "import json\n\ndef load(data):\n    return json.loads(data)\n",
]


def records():
    # VULN[i] and SAFE[i] are twins (ids as in commit-derived sources), so the ranking loss runs
    out = [Record(f"t#{i}:vul", "t", c, True, [cwe], [line]) for i, (c, cwe, line) in enumerate(VULN)]
    out += [Record(f"t#{i}:fix", "t", c, False) for i, c in enumerate(SAFE)]
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from cwescan.ml.slm.base import locate_gguf
    from cwescan.train.slm import run

    root = tmp_path_factory.mktemp("slm")
    gguf = locate_gguf("smollm2-135m")
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      tie_word_embeddings=True, initializer_range=0.2, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    LlamaForCausalLM(cfg).save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    recipe = root / "tiny.yaml"
    recipe.write_text(
        f"name: tiny\nbase_dir: {root / 'base'}\nlora_r: 4\nlora_alpha: 8\nlora_dropout: 0.0\n"
        "target_modules: [q_proj, v_proj, o_proj, up_proj, down_proj]\nepochs: 8\nbatch_size: 8\n"
        "learning_rate: 0.05\nmax_tokens: 256\nverdict_weight: 3\npair_weight: 1.0\nseed: 0\n"
    )
    card = run(recipe, out=root / "adapter", device="cpu", train_records=records(), validation_records=records())
    return root, card


@pytest.mark.slow  # heavy torch work (training, compile, ONNX export, a real tree)
def test_training_lowers_the_loss_and_writes_a_card(trained):
    root, card = trained
    losses = json.loads((root / "adapter" / "logs" / "history.json").read_text())["losses"]
    assert len(losses) == card["steps"] == 16
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.05
    assert set(card["files"]) == {"adapter_model.safetensors", "adapter_config.json"}
    assert card["cwe_vocab"] == ["CWE-78", "CWE-89", "CWE-502"]
    assert 0.0 <= card["threshold"] <= 1.0 and card["recipe"]["name"] == "tiny"


def test_adapter_is_fp16_safetensors_and_reloads(trained):
    import torch

    from cwescan.ml.artifacts import load_safetensors

    root, _ = trained
    tensors = load_safetensors(root / "adapter" / "adapter_model.safetensors")
    assert tensors and all(t.dtype == torch.float16 for t in tensors.values())
    assert any("lora_B" in k and t.abs().sum() > 0 for k, t in tensors.items())  # trained, not the zero init


def units():
    return [u for i, c in enumerate([v[0] for v in VULN] + SAFE) for u in parse_source(f"f{i}.py", c).units]


def test_score_and_generate_always_parse(trained):
    from cwescan.detectors.slm import SLMDetector
    from cwescan.ml.slm.infer import parse_answer

    root, _ = trained
    det = SLMDetector(model=root / "adapter", mode="generate")
    us = units()
    scores = det.score(us)
    assert len(scores) == len(us) and all(0.0 <= s <= 1.0 for s in scores)
    answers = det.generate(us)
    assert [parse_answer(a)["vulnerability"] for a in answers] == [s > 0.5 for s in scores]
    assert det.stats["answers"] == det.stats["parsed"] == len(us)


def test_flagged_units_get_a_known_cwe_and_a_line_inside_the_unit(trained):
    from cwescan.detectors.slm import SLMDetector

    root, card = trained
    det = SLMDetector(model=root / "adapter", threshold=0.0)  # flag everything: exercise the decoding
    us = units()
    findings = det.detect(us)
    assert len(findings) == len(us)
    for f in findings:
        u = next(u for u in us if u.path == f.path and u.start_line <= f.start_line <= u.end_line)
        assert f.detector == "slm" and f.rule_id == "SLM" and f.cwe in card["cwe_vocab"]
        assert f.extra["windows"] == 1 and f.extra["truncated"] is False
    assert det.stats["units"] == len(us)


def test_batched_decoding_matches_one_by_one(trained):
    from cwescan.detectors.slm import SLMDetector
    from cwescan.ml.slm.infer import score_and_decode

    root, card = trained
    det = SLMDetector(model=root / "adapter")
    det._load()
    ws = [w for u in units() for w in det.builder.unit_windows(u)]
    lines = [range(w.first_line, w.last_line + 1) for w in ws]
    prompts = [w.prompt for w in ws]
    together = score_and_decode(det._model, det.tokenizer, prompts, 0.0, card["cwe_vocab"], lines, batch_size=8)
    alone = score_and_decode(det._model, det.tokenizer, prompts, 0.0, card["cwe_vocab"], lines, batch_size=1)
    for (p, a), (q, b) in zip(together, alone):
        assert p == pytest.approx(q, abs=1e-4)
        assert (a["cwe"], a["line"]) == (b["cwe"], b["line"])


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_lower_precisions_score_close_to_fp32(trained, precision):
    from cwescan.detectors.slm import SLMDetector

    root, _ = trained
    us = units()
    ref = SLMDetector(model=root / "adapter").score(us)
    got = SLMDetector(model=root / "adapter", precision=precision).score(us)
    assert max(abs(a - b) for a, b in zip(ref, got)) < 0.1


def test_tampered_adapter_is_refused(trained, tmp_path):
    from cwescan.detectors.slm import SLMDetector

    root, _ = trained
    bad = tmp_path / "adapter"
    shutil.copytree(root / "adapter", bad)
    blob = bytearray((bad / "adapter_model.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (bad / "adapter_model.safetensors").write_bytes(bytes(blob))
    with pytest.raises(ArtifactError, match="does not match"):
        SLMDetector(model=bad)


def test_second_opinion_raises_agreeing_and_lowers_disagreeing_findings():
    from cwescan.core.findings import Finding
    from cwescan.core.policy import DecisionPolicy
    from cwescan.scan.combine import second_opinion

    policy = DecisionPolicy(safe=0.05, vulnerable=0.5)
    f = Finding("a.py", 3, 3, "CWE-89", "CWS101", "SQL", "m", 0.6, "high", "static")
    up = second_opinion(f, 0.8, "CWE-89", policy)
    down = second_opinion(f, 0.01, None, policy)
    unsure = second_opinion(f, 0.3, None, policy)
    assert up.confidence == pytest.approx(1 - 0.4 * 0.2) and up.extra["slm_second_opinion"]["verdict"] == "agrees"
    assert down.confidence < policy.display and down.severity == "medium"
    assert down.extra["slm_second_opinion"]["verdict"] == "disagrees"
    assert unsure.confidence == 0.6 and unsure.extra["slm_second_opinion"]["verdict"] == "unsure"
    # a model sure of another CWE family does not agree with the rule
    assert second_opinion(f, 0.9, "CWE-79", policy).extra["slm_second_opinion"]["verdict"] == "unsure"


def test_joined_gguf_chunks_are_hash_checked(tmp_path):
    import hashlib

    from cwescan.ml.slm.base import BASE_MODELS, join_chunks

    parts = []
    for i, data in enumerate([b"GGUF" + b"a" * 100, b"b" * 50]):
        parts.append(tmp_path / f"part{i}.bin")
        parts[-1].write_bytes(data)
    want = hashlib.sha256(b"GGUF" + b"a" * 100 + b"b" * 50).hexdigest()
    out = join_chunks(parts, tmp_path / "joined.gguf", want)
    assert out.read_bytes() == b"GGUF" + b"a" * 100 + b"b" * 50
    parts[1].write_bytes(b"c" * 50)  # a changed chunk
    with pytest.raises(ArtifactError, match="sha256"):
        join_chunks(parts, tmp_path / "other.gguf", want)
    assert not list(tmp_path.glob("other.gguf*"))
    qwen = BASE_MODELS["qwen2.5-coder-0.5b"]
    assert len(qwen.parts) == 6 and qwen.sha256.startswith("1d9614638d18")


def test_twin_pairs_link_changed_units_and_the_ranking_loss_orders_them(trained):
    import torch
    from transformers import AutoTokenizer

    from cwescan.ml.slm import prompt as P
    from cwescan.train.slm import examples, pair_ranking_loss, twin_pairs

    root, _ = trained
    tok = AutoTokenizer.from_pretrained(str(root / "base"))
    vul, fix = VULN[0], SAFE[0]
    recs = [Record("sven:x#1:vul", "sven", vul[0], True, [vul[1]], [vul[2]]),
            Record("sven:x#1:fix", "sven", fix, False),
            Record("sven:y#2:vul", "sven", VULN[1][0], True, ["CWE-78"], [4]),  # twin missing
            Record("other", "t", SAFE[2], False)]
    items = examples(recs, tok, P.PromptBuilder(tok, P.PromptOptions(max_tokens=256)))
    pairs = twin_pairs(items)
    assert len(pairs) == 1
    v, f = pairs[0]
    assert items[v].meta["record"].endswith(":vul") and items[v].meta["positive"]
    assert items[f].meta["record"].endswith(":fix") and not items[f].meta["positive"]
    # the loss is small when the vulnerable side's verdict margin is higher, large otherwise
    logits = torch.zeros(2, 10)  # verdict-slot logits of two rows
    logits[0, 3], logits[1, 3] = 4.0, -4.0  # token 3 = " true", token 4 = " false"
    good = pair_ranking_loss(logits, 3, 4, [(0, 1)])
    bad = pair_ranking_loss(logits, 3, 4, [(1, 0)])
    assert float(good) < 0.01 < 7.0 < float(bad)


def test_prompts_built_by_worker_processes_score_the_same(trained):
    """Off the CPU the detector strips comments in a process pool (prep_workers); the scores
    must not depend on where the prompts were built. Forced on here (the CPU default is 0)."""
    from cwescan.detectors.slm import PREP_POOL_MIN_UNITS, SLMDetector

    root, _ = trained
    us = units() * (PREP_POOL_MIN_UNITS // len(units()) + 1)
    pooled = SLMDetector(model=root / "adapter", prep_workers=2)
    got = pooled.score(us)
    assert pooled._pool is not None and pooled.prep_workers == 2  # the pool ran, no fallback
    assert got == SLMDetector(model=root / "adapter", prep_workers=0).score(us)


def test_a_long_unit_is_read_only_where_it_touches_a_sink(trained):
    from cwescan.detectors.slm import SLMDetector

    root, _ = trained
    body = "".join(f"    total = total + {i} * (total % 7)\n" for i in range(120))
    code = f"import os\n\n\ndef build(cmd):\n    total = 0\n{body}    os.system('make ' + cmd)\n    return total\n"
    [unit] = [u for u in parse_source("long.py", code).units if u.qualname == "build"]
    focused, whole = SLMDetector(model=root / "adapter"), SLMDetector(model=root / "adapter", focus=False)
    [p_focused], [p_whole] = focused.score([unit]), whole.score([unit])
    focused._load()
    every = focused.builder.unit_windows(unit)
    sink = next(i + 1 for i, line in enumerate(unit.code.split("\n")) if "os.system" in line)
    near = [w for w in every if w.first_line <= sink <= w.last_line]
    assert len(every) > 2 and 1 <= len(near) < len(every)
    assert focused.stats["scored_windows"] == len(near) and whole.stats["scored_windows"] == len(every)
    per_window = dict(zip([w.prompt for w in every], whole._score_windows([every])[0], strict=True))
    assert p_focused == pytest.approx(max(per_window[w.prompt][0] for w in near), abs=1e-6)
    assert p_focused <= p_whole + 1e-6  # fewer windows: the most suspicious one can only be milder


def test_a_shallower_base_is_cut_alike_in_training_and_in_the_scan(tmp_path):
    """``layers: 1`` trains on the base's first decoder layer only; the card says so, and the
    detector (merge, cache, scoring) runs the same one-layer model, not the full base."""
    import torch

    from cwescan.detectors.slm import SLMDetector
    from cwescan.ml.slm.base import load_base
    from cwescan.ml.slm.merged import merge
    from cwescan.train.slm import run
    from slm_helpers import tiny_base

    tiny_base(tmp_path / "base")
    recipe = tmp_path / "cut.yaml"
    recipe.write_text(f"name: cut\nbase_dir: {tmp_path / 'base'}\nlayers: 1\nlora_r: 4\nlora_alpha: 8\n"
                      "lora_dropout: 0.0\nepochs: 1\nbatch_size: 4\nmax_tokens: 256\nseed: 0\n")
    card = run(recipe, out=tmp_path / "adapter", device="cpu", train_records=records(), validation_records=records())
    assert card["base_layers"] == 1
    det = SLMDetector(model=str(tmp_path / "adapter"), precision="fp32", threshold=0.0)
    det.load()
    assert det.model.config.num_hidden_layers == 1 and len(det.model.model.layers) == 1
    expected = merge(load_base(directory=tmp_path / "base", layers=1)[0], tmp_path / "adapter")
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        assert torch.allclose(det.model(ids).logits, expected(ids).logits, atol=1e-5)
        deeper = merge(load_base(directory=tmp_path / "base")[0], tmp_path / "adapter")
        assert not torch.allclose(det.model(ids).logits, deeper(ids).logits, atol=1e-3)
    [unit] = [u for u in parse_source("m.py", VULN[1][0]).units if u.kind == "function"]
    assert 0.0 <= det.score([unit])[0] <= 1.0


def test_the_detector_reads_prompts_in_the_format_its_card_records(tmp_path):
    from slm_helpers import tiny_slm_artifact

    from cwescan.detectors.slm import SLMDetector
    from cwescan.ml.slm.prompt import PromptOptions

    recorded = SLMDetector(model=tiny_slm_artifact(tmp_path / "a", prompt={"blank_lines": True, "number_width": 2}))
    assert (recorded.options.blank_lines, recorded.options.number_width) == (True, 2)
    older = SLMDetector(model=tiny_slm_artifact(tmp_path / "b"))  # a card from before the fields
    assert (older.options.blank_lines, older.options.number_width) == (PromptOptions.blank_lines,
                                                                       PromptOptions.number_width)


def test_a_shallower_base_loads_without_a_report_and_refuses_keys_that_do_not_fit(tmp_path, capfd):
    from safetensors.torch import load_file, save_file

    from cwescan.ml.slm.base import load_base
    from slm_helpers import tiny_base

    tiny_base(tmp_path / "base")
    capfd.readouterr()
    model = load_base(directory=tmp_path / "base", layers=1)[0]
    assert len(model.model.layers) == 1
    assert "UNEXPECTED" not in "".join(capfd.readouterr())  # the cut layers are expected, not news
    weights = next((tmp_path / "base").glob("*.safetensors"))
    state = load_file(weights)
    state["model.stray.weight"] = next(iter(state.values())).clone()  # a key no layer cut explains
    save_file(state, weights, metadata={"format": "pt"})
    with pytest.raises(ValueError, match="do not fit"):
        load_base(directory=tmp_path / "base", layers=1)
