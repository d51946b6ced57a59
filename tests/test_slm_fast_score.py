"""The fast SLM score path gives the same windows and scores as the plain one.

PromptBuilder counts tokens in batches (memoised) but must cut exactly the same windows as
counting every text with ``tokenizer.encode``; ``score_and_decode`` tokenises in one call,
right-pads, and applies only the two verdict rows of the head in float32, but must give the
scores of an unbatched, unpadded full forward pass. Tiny random Llama with SmolLM2's tokenizer.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from cwescan.ml.slm import infer  # noqa: E402
from cwescan.ml.slm import prompt as P  # noqa: E402
from cwescan.core.units import parse_source  # noqa: E402

CODES = [
    "def q(db, name):\n    return db.execute(\"SELECT * FROM t WHERE n='%s'\" % name)\n",
    "import os\n\ndef run(cmd):\n    os.system('ls ' + cmd)\n\ndef main(argv):\n    run(argv[1])\n",
    "\n".join(f"value_{i} = compute('{'x' * (i % 17)}', {i})  # step {i}" for i in range(1, 121)) + "\n",
    "a = 1\nb = '" + "z y " * 400 + "'\nc = 3\n",
    "class A:\n    def m(self, x):\n        return x * 2\n\n    def n(self, y):\n        return self.m(y) + eval(y)\n",
]


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    from cwescan.ml.slm.base import locate_gguf

    gguf = locate_gguf("smollm2-135m")
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


@pytest.fixture(scope="module")
def model(tok):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      tie_word_embeddings=True, initializer_range=0.2, pad_token_id=tok.pad_token_id)
    return LlamaForCausalLM(cfg).eval()


class SlowCounting(P.PromptBuilder):
    """The builder as it was: one ``tokenizer.encode`` per counted text."""

    def counts(self, texts):
        return [len(self.tok.encode(t, add_special_tokens=False)) for t in texts]


def windows(builder, hints=()):
    out = []
    for i, code in enumerate(CODES):
        for u in parse_source(f"f{i}.py", code).units:
            out.extend(builder.unit_windows(u, [P.Hint(1, "CWE-95", "eval")] if hints else []))
    return out


@pytest.mark.parametrize("max_tokens", [1024, 200, 120])
def test_batched_counting_cuts_the_same_windows(tok, max_tokens):
    opt = P.PromptOptions(max_tokens=max_tokens, caller_tokens=64)
    fast, slow = P.PromptBuilder(tok, opt), SlowCounting(tok, opt)
    for hints in (False, True):
        a, b = windows(fast, hints), windows(slow, hints)
        assert a == b and len(a) > len(CODES)
    # the cases the counts steer: callers fitted in (large budget), a line cut (small)
    assert any(w.callers for w in a) if max_tokens == 1024 else any(w.truncated for w in a)
    assert fast.counts(["   1| x = 1\n", "", "   1| x = 1\n"]) == slow.counts(["   1| x = 1\n", "", "   1| x = 1\n"])


def test_many_unit_windows_are_unit_windows(tok):
    units = [u for i, code in enumerate(CODES) for u in parse_source(f"f{i}.py", code).units]
    hints = [[P.Hint(1, "CWE-95", "eval")] if i % 2 else [] for i in range(len(units))]
    for strip in (False, True):
        opt = P.PromptOptions(max_tokens=200, strip_comments=strip)
        many = P.PromptBuilder(tok, opt).many_unit_windows(units, hints)
        assert many == [SlowCounting(tok, opt).unit_windows(u, h) for u, h in zip(units, hints)]


def prompts(tok):
    return [w.prompt for w in windows(P.PromptBuilder(tok, P.PromptOptions(max_tokens=200)))]


def test_encode_prompts_matches_encode(tok):
    ps = prompts(tok)
    assert infer.encode_prompts(tok, ps) == [tok.encode(p, add_special_tokens=False) for p in ps]


def reference_scores(model, tok, ps):
    """One prompt at a time, no padding, the full head: what a score means."""
    ids = infer.answer_token_ids(tok)
    out = []
    with torch.inference_mode():
        for p in ps:
            x = torch.tensor([tok.encode(p, add_special_tokens=False) + ids.open])
            logits = model(input_ids=x, logits_to_keep=1).logits[0, -1].float()
            out.append(torch.softmax(logits[[ids.true, ids.false]], -1)[0].item())
    return out


@pytest.fixture(scope="module")
def reference(tok, model):
    ps = prompts(tok)
    return ps, reference_scores(model, tok, ps)


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_scores_match_the_unbatched_reference(tok, model, reference, batch_size):
    ps, want = reference
    assert len({len(tok.encode(p)) for p in ps}) > 3  # lengths differ: batches are padded
    got = infer.score_prompts(model, tok, ps, batch_size=batch_size)
    assert got == pytest.approx(want, abs=2e-5)


def test_a_model_without_a_separate_head_scores_the_same(tok, model):
    class Opaque(torch.nn.Module):  # only the logits are reachable
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, **kw):
            return self.inner(**kw)

    ps = prompts(tok)[:6]
    assert infer.split_head(Opaque(model), infer.answer_token_ids(tok), "cpu") is None
    got = infer.score_prompts(Opaque(model), tok, ps, batch_size=4)
    assert got == pytest.approx(reference_scores(model, tok, ps), abs=2e-5)


def test_decoding_after_right_padded_batches_matches_one_by_one(tok, model):
    ps = prompts(tok)[:7]
    lines = [range(1, 4)] * len(ps)
    vocab = ["CWE-78", "CWE-89", "CWE-502"]
    together = infer.score_and_decode(model, tok, ps, 0.0, vocab, lines, batch_size=4)
    alone = infer.score_and_decode(model, tok, ps, 0.0, vocab, lines, batch_size=1)
    for (p, a), (q, b) in zip(together, alone, strict=True):
        assert p == pytest.approx(q, abs=2e-5)
        assert (a["cwe"], a["line"]) == (b["cwe"], b["line"])
        assert a["cwe_confidence"] == pytest.approx(b["cwe_confidence"], abs=1e-4)


@pytest.mark.parametrize("prefix_cache", [False, True])
def test_flagged_rows_of_several_batches_decode_together_as_they_would_alone(tok, model, monkeypatch, prefix_cache):
    """The decode pool right-pads caches of different widths into one batch: every row gets
    the CWE and line it gets when each batch decodes its own rows, in fewer steps."""
    ps = prompts(tok)[:9]
    assert len({len(tok.encode(p)) for p in ps}) > 2  # batches of different widths
    lines = [range(1, 2 + i % 3) for i in range(len(ps))]
    vocab = ["CWE-78", "CWE-89", "CWE-502"]
    pooled: dict = {}
    together = infer.score_and_decode(model, tok, ps, 0.0, vocab, lines, batch_size=2,
                                      prefix_cache=prefix_cache, counts=pooled)
    monkeypatch.setattr(infer, "DECODE_POOL_ROWS", 1)
    per_batch: dict = {}
    alone = infer.score_and_decode(model, tok, ps, 0.0, vocab, lines, batch_size=2,
                                   prefix_cache=prefix_cache, counts=per_batch)
    for (p, a), (q, b) in zip(together, alone, strict=True):
        assert p == q
        assert (a["cwe"], a["line"]) == (b["cwe"], b["line"])
        assert a["cwe_confidence"] == pytest.approx(b["cwe_confidence"], abs=1e-4)
        assert a["line_confidence"] == pytest.approx(b["line_confidence"], abs=1e-4)
    assert pooled["decode_steps"] < per_batch["decode_steps"]


def test_pooled_caches_are_right_padded_with_zeros_and_stacked_by_row():
    """The decode pool joins each layer's keys (rows, heads, length, dim) and the masks (rows,
    length) of batches of different widths: the same as zero-padding each to the widest and
    concatenating, and a single batch of full width is not copied."""
    import torch.nn.functional as F

    keys = [torch.randn(r, 3, n, 4) for r, n in ((2, 5), (1, 7), (3, 6))]
    masks = [torch.ones(r, n, dtype=torch.long) for r, n in ((2, 5), (1, 7), (3, 6))]
    want = torch.cat([F.pad(k, (0, 0, 0, 7 - k.shape[2])) for k in keys])
    assert torch.equal(infer._right_padded_cat(keys, 7), want)
    assert torch.equal(infer._right_padded_cat(masks, 7), torch.cat([F.pad(m, (0, 7 - m.shape[1])) for m in masks]))
    assert infer._right_padded_cat(keys[1:2], 7) is keys[1]


def test_bf16_verdicts_keep_float32_resolution(tok, model, reference):
    """bf16 logits near 10 are 0.06 apart, so near-twins tied; the fp32 head rows separate them."""
    import copy

    ps, want = reference
    half = copy.deepcopy(model).to(torch.bfloat16)
    got = infer.score_prompts(half, tok, ps, batch_size=4)
    assert got == pytest.approx(want, abs=0.05)
    assert len(set(got)) == len(set(ps))  # no ties between different prompts
    rows = infer.split_head(half, infer.answer_token_ids(tok), "cpu")[1]
    assert rows.dtype == torch.float32 and rows.shape == (2, 32)


def test_quantized_heads_give_float_rows(tok, model):
    import copy

    from cwescan.ml.precision import apply_precision

    ids = infer.answer_token_ids(tok)
    for precision in ("int8", "int4"):
        q = apply_precision(copy.deepcopy(model), precision)
        _, rows = infer.split_head(q, ids, "cpu")
        dense = model.get_output_embeddings().weight[[ids.true, ids.false]]
        assert rows.dtype == torch.float32 and (rows - dense).abs().max() < 0.1 * dense.abs().max()


def test_a_head_without_dequantize_is_read_through_its_forward():
    class Int8Head(torch.nn.Module):  # like bitsandbytes: int8 storage, no dequantize()
        def __init__(self, w):
            super().__init__()
            self.in_features = w.shape[1]
            self.scale = w.abs().max() / 127
            self.register_buffer("weight", torch.round(w / self.scale).to(torch.int8))

        def forward(self, x):
            return x @ (self.weight.float() * self.scale).T

    w = torch.randn(10, 8)
    head = Int8Head(w)
    rows = infer._head_rows(head, [3, 7])
    assert rows.shape == (2, 8) and rows.dtype == torch.float32
    assert torch.allclose(rows, head.weight[[3, 7]].float() * head.scale)


def test_batches_bound_their_padding():
    lengths = [5, 6, 6, 7, 40, 41, 44, 300, 5, 9]
    packed = infer.Packed([[1] * n for n in lengths], 0, "cpu")
    spans = packed.spans(4)
    assert [i for s, e in spans for i in packed.order[s:e]] == sorted(range(10), key=lambda i: lengths[i])
    for s, e in spans:
        widths = packed.lengths[s:e]
        assert e - s <= 4 and (e - s) * widths[-1] <= 1.25 * sum(widths)
    # cut by padding, not by count: 5-7 | 9 | 40-44 | 300
    assert [packed.lengths[s:e] for s, e in packed.spans(100)] == [[5, 5, 6, 6, 7], [9], [40, 41, 44], [300]]
    (s, e) = spans[0]
    x, lens, mask = packed.batch(s, e)
    assert x.shape == (e - s, packed.lengths[e - 1]) and int(mask.sum()) == int(lens.sum())


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, tok, model):
    """A LoRA adapter (B initialised to zero: the tiny model unchanged) with a card, loadable by
    SLMDetector."""
    from peft import LoraConfig, get_peft_model

    from cwescan.ml.artifacts import write_card

    root = tmp_path_factory.mktemp("slm-fast")
    model.save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    peft = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    peft.save_pretrained(root / "adapter")
    model = peft.unload()  # the module-scoped fixture model stays a plain Llama
    write_card(root / "adapter", {"base_dir": str(root / "base"), "threshold": 0.5, "cwe_vocab": ["CWE-78", "CWE-89"],
                                  "prompt": {"max_tokens": 200}})
    return root / "adapter"


def test_detector_public_api_loads_swaps_and_forgets(tok, model, adapter):
    from cwescan.detectors.slm import SLMDetector

    det = SLMDetector(model=adapter)
    assert det.model is None
    det.load()
    assert isinstance(det.model, torch.nn.Module)
    units = [u for i, code in enumerate(CODES) for u in parse_source(f"f{i}.py", code).units]
    first = det.score(units)
    assert det._cache and det.builder._counts
    det.clear_cache()
    assert not det._cache and len(det.builder._counts) <= 1  # only the fixed overhead: all else recomputed
    assert det.score(units) == pytest.approx(first, abs=1e-6)
    det.clear_cache()
    det.model = model  # a swapped-in model is the one that scores: the same tiny model (zero LoRA)
    assert det.score(units) == pytest.approx(first, abs=2e-5)
    det.clear_cache()
    det.model = torch.nn.Module()  # ... and truly the one used
    with pytest.raises(Exception):
        det.score(units)


def test_a_token_cap_bounds_each_batch_but_never_drops_a_long_row():
    packed = infer.Packed([[1] * n for n in (5, 5, 6, 6, 7, 9, 40, 41, 44, 300)], 0, "cpu")
    spans = packed.spans(100, slack=10.0, max_tokens=48)
    assert [s for s, _ in spans] == sorted(s for s, _ in spans) and spans[-1][1] == 10  # every row, once
    for s, e in spans:
        assert (e - s) * packed.lengths[e - 1] <= 48 or e - s == 1  # a row longer than the cap goes alone
    assert (9, 10) in spans and len(packed.spans(100, slack=10.0)) < len(spans)
