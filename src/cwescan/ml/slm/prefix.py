"""Prefix caching: the instruction every prompt starts with is run through the decoder once per
model (device and precision), and each batch continues from its keys and values instead of
recomputing them.

Every SLM prompt begins with the same ChatML header and instruction (``prompt.INSTRUCTION``),
59 tokens with SmolLM2's tokenizer: 8-15 % of the tokens of a scan. A causal model's keys and
values at those positions do not depend on what follows, so they are computed once
(``PrefixKV``) and a batch feeds only each prompt's rest, with positions starting after the
prefix; the cached tensors are broadcast to the batch without a copy.

Attention without a mask. A batch continued from a cache has more keys than queries, and
transformers then hands SDPA an explicit causal mask (its ``is_causal`` aligns the triangle to
the top left, which would be wrong), which takes the CPU off its fused kernel: that cost more
than the prefix saved. So the model's attention is switched to ``PREFIX_ATTENTION``, the same as
transformers' SDPA except that *no mask* means causal aligned to the bottom right (query i of
q sees keys 0 .. kv - q + i). On the CPU that is one fused flash-attention call whose queries
are padded at the front to the keys' length, so that its top-left causal triangle is the
bottom-right one, and whose outputs at the padding are dropped; elsewhere torch's lower-right
``CausalBias``, which CUDA's flash kernel takes. Calls with a padding mask (the decoding
continuation) get transformers' own mask and SDPA unchanged.

Why one padded call on the CPU: two flash calls (the rest over its own keys, every query over
the prefix's) merged by their log-sum-exps took 102 ms where the padded call took 74, summed
over six of a scan's batch shapes (bf16, 2 AMX cores; ``tools/slm_attention_probe.py``).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

PREFIX_ATTENTION = "cwescan_prefix_sdpa"

_REGISTERED = False
# model -> {(prefix ids, device, dtype): PrefixKV}; weak, so a dropped model frees its prefix
_STORE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def lower_right_attention(query, key, value, scale=None):
    """Causal attention of ``q`` queries over ``kv >= q`` keys, aligned to the bottom right
    (the queries are the last ``q`` positions), without materialising a mask. Shapes
    (batch, heads, len, dim), keys already repeated to the query heads."""
    import torch
    import torch.nn.functional as F

    q_len, kv_len = query.shape[2], key.shape[2]
    if kv_len == q_len:
        return F.scaled_dot_product_attention(query, key, value, is_causal=True, scale=scale)
    if query.device.type != "cpu":
        from torch.nn.attention.bias import causal_lower_right

        return F.scaled_dot_product_attention(query, key, value, attn_mask=causal_lower_right(q_len, kv_len),
                                              scale=scale)
    # zero queries in front: each sees only keys before the real ones, and its output is dropped
    past = kv_len - q_len
    padded = torch.cat([query.new_zeros(*query.shape[:2], past, query.shape[3]), query], 2)
    return F.scaled_dot_product_attention(padded, key, value, is_causal=True, scale=scale)[:, :, past:]


def _attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """transformers' attention interface: SDPA, except that a multi-token query over a longer
    key set without a mask is causal aligned to the bottom right (see the module docstring)."""
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    q_len, kv_len = query.shape[2], key.shape[2]
    if attention_mask is not None or q_len <= 1 or kv_len <= q_len or dropout or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    out = lower_right_attention(query, key, value, scaling)
    return out.transpose(1, 2).contiguous(), None


def _mask(*args, attention_mask=None, **kwargs):
    """No padding mask: none at all (the attention above aligns causality itself); else the
    mask transformers builds for SDPA."""
    from transformers.masking_utils import sdpa_mask

    if attention_mask is None:
        return None
    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def register() -> None:
    global _REGISTERED
    if _REGISTERED:
        return
    from transformers import AttentionInterface, AttentionMaskInterface

    AttentionInterface.register(PREFIX_ATTENTION, _attention)
    AttentionMaskInterface.register(PREFIX_ATTENTION, _mask)
    _REGISTERED = True


def use_prefix_attention(model) -> bool:
    """Switch a model that attends with SDPA to ``PREFIX_ATTENTION`` (a strict extension of
    it: every call SDPA handled gives the same result). True when the model attends that way
    now; False for other attention (eager, flash-attention packages), which then continues
    from a prefix with transformers' explicit mask."""
    config = getattr(model, "config", None)
    impl = getattr(config, "_attn_implementation", None)
    if impl == PREFIX_ATTENTION:
        return True
    if impl != "sdpa":
        return False
    register()
    config._attn_implementation = PREFIX_ATTENTION
    return config._attn_implementation == PREFIX_ATTENTION


class PrefixKV:
    """The keys and values of ``ids`` (one sequence) in every layer of ``decoder``."""

    def __init__(self, decoder, ids: Sequence[int], device) -> None:
        import torch

        self.ids = list(ids)
        self.length = len(self.ids)
        with torch.inference_mode():
            out = decoder(input_ids=torch.tensor([self.ids], device=device), use_cache=True)
        self.layers = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        self.config = getattr(decoder, "config", None)

    def cache(self, batch: int):
        """A DynamicCache holding the prefix for ``batch`` rows (broadcast views: no copy; the
        first update of each layer concatenates the batch's own keys into new tensors)."""
        from transformers import DynamicCache

        cache = DynamicCache(config=self.config) if self.config is not None else DynamicCache()
        for i, (k, v) in enumerate(self.layers):
            cache.update(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1), i)
        return cache


def prefix_kv(model, decoder, ids: Sequence[int], device) -> PrefixKV:
    """The ``PrefixKV`` of ``ids`` for ``model`` on ``device`` at its current precision,
    computed on first use and kept with the model."""
    p = next(iter(model.parameters()), None)
    key = (tuple(ids), str(device), str(p.dtype) if p is not None else None)
    per_model = _STORE.setdefault(model, {})
    found = per_model.get(key)
    if found is None:
        found = per_model[key] = PrefixKV(decoder, ids, device)
    return found


def common_prefix(seqs: Sequence[Sequence[int]], prefix: Sequence[int]) -> bool:
    """Whether every sequence starts with ``prefix`` and has at least one token after it."""
    n = len(prefix)
    return bool(n) and all(len(s) > n and list(s[:n]) == list(prefix) for s in seqs)
