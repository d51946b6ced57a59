"""The scoring forward pass of a Llama-family decoder (SmolLM2, Qwen2.5-Coder) with fewer
kernels than transformers' modules run.

Why: on a CPU with bf16 matrix units (AMX) the matrix products of SmolLM2-135M run ~5x faster than
in fp32, but the rest of each layer does not: RMSNorm casts to fp32 and back in seven passes over
the hidden states, rotary embeddings take five passes each for queries and keys (``rotate_half``
concatenates a copy), keys and values are repeated to the query heads before attention, and q / k
/ v and gate / up are five separate matrix products of one input. On 2 cores those passes were
the larger share of a bf16 forward pass. Here, with the same weights and the same arithmetic up
to rounding:

- q, k and v are one matrix product, gate and up another (``FusedLayer``). The transformers
  modules' weights become views into the fused matrices, so memory does not grow and the
  transformers model (which decodes CWE and line from the same cache) keeps working unchanged.
- RMSNorm is one fp32 reduction of the bf16 input, one product with the fp32 scale, one cast and
  the weight, as transformers computes it but without materialising the fp32 copy and its square.
- Rotary embedding is applied to queries and keys together, in place, without ``rotate_half``'s
  concatenation: ``x * cos`` then each half gets the other half times ``sin`` added (``addcmul_``).
- Attention gets the key / value heads as they are (``enable_gqa``) and, after a cached prefix,
  an explicit causal mask aligned to the bottom right.
- The last layer computes its attention output and MLP only at the positions that are scored
  (each row's last real token): the other positions' keys and values are all a later decode
  needs from it.

Only plain float weights of the layouts transformers gives ``LlamaForCausalLM`` and
``Qwen2ForCausalLM`` are fused (``fuse`` returns None for anything else: quantized linears, other
families, biases on the MLP or the output projection); those models keep transformers' forward.
"""

from __future__ import annotations

import weakref

FAMILIES = ("llama", "qwen2")

_FUSED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # decoder -> FusedDecoder | None


def _plain(linear) -> bool:
    import torch

    w = getattr(linear, "weight", None)
    return type(linear) is torch.nn.Linear and type(w) is torch.nn.Parameter and w.dtype.is_floating_point


def rms_norm(x, weight, eps: float):
    """transformers' ``LlamaRMSNorm``: ``weight * (x / rms(x))`` with the normalisation in fp32
    and the result cast back before the weight, in four passes over ``x`` instead of seven."""
    import torch

    ms = torch.linalg.vector_norm(x, 2, dim=-1, keepdim=True, dtype=torch.float32).square_().div_(x.shape[-1])
    return (x * ms.add_(eps).rsqrt_()).to(x.dtype).mul_(weight)


def rotate(x, cos, sin):
    """Rotary embedding of ``x`` (batch, tokens, heads, dim) with ``cos`` / ``sin`` (batch, tokens,
    dim) as transformers builds them (each the same table twice along ``dim``): ``x * cos +
    rotate_half(x) * sin``, in three passes and no copy of ``x``."""
    half = x.shape[-1] // 2
    cos, sin = cos[:, :, None], sin[:, :, None, :half]
    out = x * cos
    out[..., :half].addcmul_(x[..., half:], sin, value=-1)
    out[..., half:].addcmul_(x[..., :half], sin)
    return out


class FusedLayer:
    """One decoder layer's weights: ``qkv`` (q, k, v stacked), ``gate_up`` (gate, up stacked)."""

    def __init__(self, layer) -> None:
        import torch

        attn, mlp = layer.self_attn, layer.mlp
        parts = (attn.q_proj, attn.k_proj, attn.v_proj)
        self.qkv = torch.cat([p.weight.detach() for p in parts])
        self.qkv_bias = (torch.cat([p.bias.detach() for p in parts]) if attn.q_proj.bias is not None else None)
        self.gate_up = torch.cat([mlp.gate_proj.weight.detach(), mlp.up_proj.weight.detach()])
        self.o, self.down = attn.o_proj.weight, mlp.down_proj.weight
        self.norm1, self.eps1 = layer.input_layernorm.weight, layer.input_layernorm.variance_epsilon
        self.norm2, self.eps2 = layer.post_attention_layernorm.weight, layer.post_attention_layernorm.variance_epsilon
        self.inter = mlp.gate_proj.weight.shape[0]
        # the modules' own weights become views of the fused ones: no second copy in memory
        start = 0
        for p, b in zip(parts, self._bias_parts(parts), strict=True):
            n = p.weight.shape[0]
            p.weight = torch.nn.Parameter(self.qkv[start:start + n], requires_grad=False)
            if b is not None:
                p.bias = torch.nn.Parameter(b, requires_grad=False)
            start += n
        mlp.gate_proj.weight = torch.nn.Parameter(self.gate_up[:self.inter], requires_grad=False)
        mlp.up_proj.weight = torch.nn.Parameter(self.gate_up[self.inter:], requires_grad=False)

    def _bias_parts(self, parts):
        if self.qkv_bias is None:
            return [None] * len(parts)
        out, start = [], 0
        for p in parts:
            n = p.weight.shape[0]
            out.append(self.qkv_bias[start:start + n])
            start += n
        return out


class FusedDecoder:
    """The decoder's forward pass for scoring (see the module docstring)."""

    def __init__(self, decoder) -> None:
        c = decoder.config
        self.decoder = decoder
        self.heads, self.kv_heads = c.num_attention_heads, c.num_key_value_heads
        self.head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        self.scale = self.head_dim ** -0.5
        self.layers = [FusedLayer(layer) for layer in decoder.layers]
        self.embed = decoder.embed_tokens
        self.norm, self.eps = decoder.norm.weight, decoder.norm.variance_epsilon

    def current(self) -> bool:
        """Whether the decoder still holds the weights fused here (a precision change or a
        device move replaces a module's weights; its fused copy is then stale)."""
        probe = self.decoder.layers[0].self_attn.q_proj.weight
        return probe.data_ptr() == self.layers[0].qkv.data_ptr() and probe.dtype == self.layers[0].qkv.dtype

    def __call__(self, input_ids, lengths, position_ids=None, cache=None):
        """Final hidden state (after the last norm) at each row's last real token of a
        right-padded batch: (rows, hidden). ``position_ids`` continue a cached prefix held by
        ``cache`` (a transformers ``DynamicCache``, updated with every layer's keys and values,
        as transformers' forward pass would); without ``cache`` nothing is kept."""
        import torch
        import torch.nn.functional as F

        rows, width = input_ids.shape
        if position_ids is None:
            position_ids = torch.arange(width, device=input_ids.device)[None].expand(rows, -1)
        x = self.embed(input_ids)  # the module: what hooks on it (the benchmark's token count) see
        cos, sin = self.decoder.rotary_emb(x, position_ids)
        past = int(position_ids[0, 0]) if cache is not None else 0
        mask = None
        if past:  # queries after a cached prefix: causal, aligned to the bottom right
            mask = torch.ones(width, past + width, dtype=torch.bool, device=x.device).tril_(past)
        last = (torch.arange(rows, device=x.device), lengths - 1)
        h, kv = self.heads, self.kv_heads
        for i, layer in enumerate(self.layers):
            final = i == len(self.layers) - 1
            y = rms_norm(x, layer.norm1, layer.eps1)
            qkv = F.linear(y, layer.qkv, layer.qkv_bias).view(rows, width, h + 2 * kv, self.head_dim)
            qk = rotate(qkv[:, :, :h + kv], cos, sin)
            q, k = qk[:, :, :h].transpose(1, 2), qk[:, :, h:].transpose(1, 2)
            v = qkv[:, :, h + kv:].transpose(1, 2)
            if cache is not None:
                k, v = cache.update(k, v, i)
            if final:  # only the scored positions go on
                x = x[last][:, None]
                q = q[last[0], :, last[1]][:, :, None]
                attend = self._key_mask(lengths, past, k.shape[2], x.device)
            else:
                attend = mask
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=attend, is_causal=attend is None,
                                               scale=self.scale, enable_gqa=kv != h)
            x = x + F.linear(a.transpose(1, 2).reshape(x.shape[0], x.shape[1], h * self.head_dim), layer.o)
            gu = F.linear(rms_norm(x, layer.norm2, layer.eps2), layer.gate_up)
            x = x + F.linear(F.silu(gu[..., :layer.inter]).mul_(gu[..., layer.inter:]), layer.down)
        return rms_norm(x[:, 0], self.norm, self.eps)

    @staticmethod
    def _key_mask(lengths, past: int, keys: int, device):
        """(rows, 1, 1, keys): the keys each row's last real token sees (its prefix and its own
        real tokens, not the padding after them)."""
        import torch

        return (torch.arange(keys, device=device)[None] < (lengths + past)[:, None])[:, None, None]


def fuse(decoder):
    """The ``FusedDecoder`` of a causal LM's decoder (transformers' ``LlamaModel`` /
    ``Qwen2Model`` with plain float weights), built once per decoder; None when it does not
    qualify."""
    found = _FUSED.get(decoder)
    if found is not None and found.current() or decoder in _FUSED and found is None:
        return found
    import torch

    # plain tensors even when called under inference mode: the modules' weights become views of
    # them, and a model whose weights are inference tensors can no longer be cast or moved
    with torch.inference_mode(False), torch.no_grad():
        _FUSED[decoder] = found = FusedDecoder(decoder) if _qualifies(decoder) else None
    return found


def _qualifies(decoder) -> bool:
    import torch

    c = getattr(decoder, "config", None)
    if not isinstance(getattr(decoder, "layers", None), torch.nn.ModuleList) or c is None or getattr(c, "model_type", None) not in FAMILIES or getattr(c, "hidden_act", None) != "silu":
        return False
    for layer in decoder.layers:
        attn, mlp = layer.self_attn, layer.mlp
        linears = (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj)
        if not all(_plain(m) for m in linears) or attn.o_proj.bias is not None:
            return False
        if any(m.bias is not None for m in (mlp.gate_proj, mlp.up_proj, mlp.down_proj)):
            return False
    return True
