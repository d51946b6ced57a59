"""The fused CPU forward pass (``cwescan.ml.slm.fused``) computes what transformers' modules
compute: the same last-token hidden states and the same KV cache (so decoding continues from it
unchanged), with and without a cached prefix, for a Llama with grouped key/value heads and a
Qwen2 with q/k/v biases; the scores and decoded answers of ``score_and_decode`` are the same
either way. Tiny random models."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from cwescan.ml.slm import infer  # noqa: E402
from cwescan.ml.slm.fused import fuse, rms_norm, rotate  # noqa: E402


def tiny(family: str, vocab: int = 120):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config, cls = (LlamaConfig, LlamaForCausalLM) if family == "llama" else (Qwen2Config, Qwen2ForCausalLM)
    cfg = config(vocab_size=vocab, hidden_size=48, intermediate_size=96, num_hidden_layers=3,
                 num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.2)
    return cls(cfg).eval()


def reference(decoder, x, lens, pos=None, cache=None):
    out = decoder(input_ids=x, position_ids=pos, use_cache=True, **infer.with_cache(cache))
    return out.last_hidden_state[torch.arange(x.shape[0]), lens - 1], out.past_key_values


def cached_prefix(decoder, rows: int, length: int = 5):
    ids = torch.arange(3, 3 + length)[None]
    with torch.inference_mode():
        out = decoder(input_ids=ids, use_cache=True)
    cache = infer.empty_cache(decoder)
    for i, layer in enumerate(out.past_key_values.layers):
        cache.update(layer.keys.expand(rows, -1, -1, -1), layer.values.expand(rows, -1, -1, -1), i)
    return cache, length


@pytest.mark.parametrize("family", ["llama", "qwen2"])
@pytest.mark.parametrize("prefix", [False, True])
def test_fused_forward_matches_transformers_fp32(family, prefix):
    model = tiny(family)
    decoder = model.model
    x = torch.randint(10, 120, (3, 17))
    lens = torch.tensor([4, 11, 17])
    fused = fuse(decoder)
    assert fused is not None
    with torch.inference_mode():
        pos, ref_cache, own_cache = None, None, infer.empty_cache(decoder)
        if prefix:
            ref_cache, past = cached_prefix(decoder, 3)
            own_cache, _ = cached_prefix(decoder, 3)
            pos = torch.arange(past, past + 17)[None].expand(3, -1)
        want, want_cache = reference(decoder, x, lens, pos, ref_cache)
        got = fused(x, lens, pos, own_cache)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    for a, b in zip(own_cache.layers, want_cache.layers, strict=True):
        assert torch.allclose(a.keys, b.keys, atol=1e-5) and torch.allclose(a.values, b.values, atol=1e-5)


def test_fused_forward_bf16_within_rounding():
    model = tiny("llama").to(torch.bfloat16)
    x = torch.randint(10, 120, (2, 13))
    lens = torch.tensor([13, 9])
    with torch.inference_mode():
        want, _ = reference(model.model, x, lens)
        got = fuse(model.model)(x, lens)
    assert got.dtype == torch.bfloat16
    assert (got.float() - want.float()).abs().max() <= 0.05 * want.float().abs().max()


def test_the_modules_keep_their_weights_as_views_of_the_fused_ones():
    model = tiny("qwen2")
    x = torch.randint(10, 120, (2, 9))
    with torch.inference_mode():
        before = model(input_ids=x).logits
    fused = fuse(model.model)
    attn = model.model.layers[1].self_attn
    layer = fused.layers[1]
    assert attn.q_proj.weight.untyped_storage().data_ptr() == layer.qkv.untyped_storage().data_ptr()
    assert attn.v_proj.bias.untyped_storage().data_ptr() == layer.qkv_bias.untyped_storage().data_ptr()
    with torch.inference_mode():
        assert torch.equal(model(input_ids=x).logits, before)


def test_a_cast_model_is_fused_again():
    model = tiny("llama")
    first = fuse(model.model)
    assert fuse(model.model) is first
    model.to(torch.bfloat16)
    second = fuse(model.model)
    assert second is not first and second.layers[0].qkv.dtype == torch.bfloat16


def test_quantized_or_wrapped_decoders_are_not_fused():
    model = tiny("llama")
    q = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    assert fuse(q.model) is None
    assert fuse(torch.nn.Linear(2, 2)) is None


def test_rms_norm_and_rotate_are_transformers_arithmetic():
    from transformers.models.llama.modeling_llama import LlamaRMSNorm, apply_rotary_pos_emb

    torch.manual_seed(1)
    norm = LlamaRMSNorm(32, eps=1e-6)
    norm.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(3, 7, 32) * 4
    assert torch.allclose(rms_norm(x, norm.weight, 1e-6), norm(x), atol=1e-6)
    q = torch.randn(2, 5, 4, 16)
    freqs = torch.rand(2, 5, 8) * 3
    cos, sin = torch.cat([freqs, freqs], -1).cos(), torch.cat([freqs, freqs], -1).sin()
    want, _ = apply_rotary_pos_emb(q.transpose(1, 2), q.transpose(1, 2), cos, sin)
    assert torch.allclose(rotate(q, cos, sin), want.transpose(1, 2), atol=1e-6)


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    from cwescan.ml.slm.base import locate_gguf

    gguf = locate_gguf("smollm2-135m")
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def test_scores_and_decoded_answers_are_the_same_fused_or_not(tok):
    from transformers import LlamaConfig, LlamaForCausalLM

    from cwescan.core.units import parse_source
    from cwescan.ml.slm import prompt as P

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      tie_word_embeddings=True, initializer_range=0.2, pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(cfg).eval()
    codes = ["import os\n\ndef run(x):\n    os.system(x)\n", "def f(a):\n    return eval(a)\n\n\ndef g(b):\n    return b\n",
             "y = 1\n"]
    builder = P.PromptBuilder(tok, P.PromptOptions(max_tokens=160))
    windows = [w for i, c in enumerate(codes) for u in parse_source(f"f{i}.py", c).units for w in builder.unit_windows(u)]
    prompts = [w.prompt for w in windows]
    lines = [list(range(w.first_line, w.last_line + 1)) for w in windows]
    vocab = ["CWE-78", "CWE-95", "CWE-89"]
    for prefix in (False, True):
        runs = [infer.score_and_decode(model, tok, prompts, -1.0, vocab, lines, batch_size=2, prefix_cache=prefix,
                                       fused=f) for f in (False, True)]
        for (p0, d0), (p1, d1) in zip(*runs, strict=True):
            assert abs(p0 - p1) < 1e-5
            assert (d0["cwe"], d0["line"]) == (d1["cwe"], d1["line"])
