"""Prefix caching (``cwescan.ml.slm.prefix``): scores and decoded answers continued from the cached
instruction equal those of full prompts. Tiny random Llama with SmolLM2's tokenizer, fp32
(tight tolerance) and bf16 (its rounding)."""

from __future__ import annotations

import copy
import inspect
import math

import pytest

torch = pytest.importorskip("torch")

from cwescan.ml.slm import infer  # noqa: E402
from cwescan.ml.slm import prefix as prefix_mod  # noqa: E402
from cwescan.ml.slm import prompt as P  # noqa: E402
from cwescan.core.units import parse_source  # noqa: E402

CODES = [
    "def q(db, name):\n    return db.execute(\"SELECT * FROM t WHERE n='%s'\" % name)\n",
    "import os\n\ndef run(cmd):\n    os.system('ls ' + cmd)\n\ndef main(argv):\n    run(argv[1])\n",
    "\n".join(f"value_{i} = compute('{'x' * (i % 17)}', {i})" for i in range(1, 60)) + "\n",
    "class A:\n    def m(self, x):\n        return x * 2\n\n    def n(self, y):\n        return self.m(y) + eval(y)\n",
]


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    from cwescan.ml.slm.base import locate_gguf

    gguf = locate_gguf("smollm2-135m")
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def tiny(tok, attn="sdpa"):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      tie_word_embeddings=True, initializer_range=0.2, pad_token_id=tok.pad_token_id)
    cfg._attn_implementation = attn
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def prompts(tok):
    b = P.PromptBuilder(tok, P.PromptOptions(max_tokens=160))
    return [w.prompt for i, c in enumerate(CODES) for u in parse_source(f"f{i}.py", c).units
            for w in b.unit_windows(u)]


def margins(scored):
    """Verdict-logit margins log(P / (1 - P)) = logit(true) - logit(false)."""
    return [math.log(p / (1 - p)) for p, _ in scored]


def test_every_prompt_starts_with_the_cached_prefix(tok, prompts):
    head = infer.encode_prompts(tok, [P.PROMPT_PREFIX])[0]
    assert len(head) > 40
    assert prefix_mod.common_prefix(infer.encode_prompts(tok, prompts), head)
    assert not prefix_mod.common_prefix([head], head)  # nothing after it: nothing to score


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_prefix_cache_gives_the_same_margins_fp32(tok, prompts, attn):
    model = tiny(tok, attn)
    assert len({len(tok.encode(p)) for p in prompts}) > 3  # batches are right-padded
    want = infer.score_and_decode(model, tok, prompts, batch_size=5, prefix_cache=False)
    got = infer.score_and_decode(model, tok, prompts, batch_size=5, prefix_cache=True)
    assert margins(got) == pytest.approx(margins(want), abs=1e-4)
    assert model.config._attn_implementation == (prefix_mod.PREFIX_ATTENTION if attn == "sdpa" else "eager")
    # the prefix was computed once for this model, precision and device
    [(key, kv)] = prefix_mod._STORE[model].items()
    assert kv.length == len(infer.encode_prompts(tok, [P.PROMPT_PREFIX])[0]) and key[1] == "cpu"
    again = infer.score_and_decode(model, tok, prompts[:3], batch_size=2)
    assert len(prefix_mod._STORE[model]) == 1
    assert margins(again) == pytest.approx(margins(want[:3]), abs=1e-4)


def test_prefix_cache_decodes_the_same_answers(tok, prompts):
    model = tiny(tok)
    lines = [range(1, 5)] * len(prompts)
    vocab = ["CWE-78", "CWE-89", "CWE-502"]
    want = infer.score_and_decode(model, tok, prompts, 0.0, vocab, lines, batch_size=4, prefix_cache=False)
    got = infer.score_and_decode(model, tok, prompts, 0.0, vocab, lines, batch_size=4, prefix_cache=True)
    for (p, a), (q, b) in zip(got, want, strict=True):
        assert p == pytest.approx(q, abs=2e-5)
        assert (a["cwe"], a["line"]) == (b["cwe"], b["line"])
        assert a["cwe_confidence"] == pytest.approx(b["cwe_confidence"], abs=1e-4)
        assert a["line_confidence"] == pytest.approx(b["line_confidence"], abs=1e-4)


def test_prefix_cache_bf16_within_rounding(tok, prompts):
    model = tiny(tok).to(torch.bfloat16)
    want = infer.score_and_decode(model, tok, prompts, batch_size=5, prefix_cache=False)
    got = infer.score_and_decode(model, tok, prompts, batch_size=5, prefix_cache=True)
    # bf16 keeps 8 mantissa bits: a margin near 2.5 moves in steps of 0.016, and where the CPU has
    # no native bf16 (AVX2 only) the cached and the full path round at different points (0.053
    # seen on one of 65 margins); a wrong prefix moves margins by whole units
    assert margins(got) == pytest.approx(margins(want), abs=0.1)
    fp32 = tiny(tok)  # and a new precision of the same weights gets its own prefix
    assert prefix_mod.prefix_kv(fp32, fp32.model, [1, 2, 3], "cpu") is not prefix_mod.prefix_kv(
        model, model.model, [1, 2, 3], "cpu")


@pytest.mark.parametrize("q_len,kv_len", [(7, 7), (7, 12), (1, 5), (30, 95), (200, 259)])
@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_lower_right_attention_is_masked_sdpa(q_len, kv_len, dtype, atol):
    import torch.nn.functional as F

    torch.manual_seed(1)
    q = torch.randn(3, 4, q_len, 16)
    k, v = torch.randn(3, 4, kv_len, 16), torch.randn(3, 4, kv_len, 16)
    mask = torch.ones(q_len, kv_len, dtype=torch.bool).tril(kv_len - q_len)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # float32 reference
    got = prefix_mod.lower_right_attention(q.to(dtype), k.to(dtype), v.to(dtype))
    assert got.dtype == dtype and got.shape == want.shape
    assert torch.allclose(got.float(), want, atol=atol)


def test_a_stand_in_decoder_is_not_continued_from_a_cache(tok, prompts):
    """A decoder that is not a transformers model (the benchmark's ONNX Runtime or compiled
    stand-ins) takes whole prompts, as before."""

    class StandIn(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, **kw):
            assert "cache" not in kw and "past_key_values" not in kw
            return self.inner(**kw)

    model = copy.deepcopy(tiny(tok))
    want = infer.score_prompts(model, tok, prompts, batch_size=4)
    model.model = StandIn(model.model)
    assert infer.score_prompts(model, tok, prompts, batch_size=4) == pytest.approx(want, abs=2e-5)


def test_the_cache_goes_in_under_the_name_the_forward_pass_takes(tok, monkeypatch):
    """transformers 5.24 renamed ``past_key_values`` to ``cache``; a forward pass that takes
    ``**kwargs`` swallows a name it does not know silently (the model then reads a batch without
    its prefix), so the keyword follows the installed version."""
    import transformers

    marker = object()
    for version, name in (("5.17.0", "past_key_values"), ("5.23.0", "past_key_values"),
                          ("5.24.0", "cache"), ("5.39.1", "cache")):
        monkeypatch.setattr(transformers, "__version__", version)
        infer.cache_keyword.cache_clear()
        assert infer.with_cache(marker) == {name: marker}
    monkeypatch.undo()
    infer.cache_keyword.cache_clear()
    model = tiny(tok)
    for module in (model, model.model):  # the installed transformers' forward passes take that name
        assert infer.cache_keyword() in inspect.signature(type(module).forward).parameters
