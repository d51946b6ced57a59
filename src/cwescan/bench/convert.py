"""Conversions for benchmark rows that `cwescan scan` does not offer (GPU backends, compiled
graphs): bitsandbytes, torchao, torch.compile."""

from __future__ import annotations

from cwescan.bench.meter import linear_flops_per_token
from cwescan.core.precisions import PRECISIONS

def _bnb_convert(module, precision: str, device: str):
    try:
        import bitsandbytes as bnb
    except ImportError as e:
        raise RuntimeError(f"bitsandbytes is not installed ({e})") from e
    import torch

    from cwescan.ml.precision import gpu_quant_filter

    if not device.startswith("cuda"):
        raise RuntimeError("bitsandbytes rows run on CUDA only")

    dtype = torch.float16 if precision == "bnb-int8" else torch.bfloat16

    def swap(parent):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear) and gpu_quant_filter(child, child_name) and child_name != "lm_head":
                bias = child.bias is not None
                if precision == "bnb-int8":
                    new = bnb.nn.Linear8bitLt(child.in_features, child.out_features, bias=bias, has_fp16_weights=False, threshold=6.0)
                    new.weight = bnb.nn.Int8Params(child.weight.data.cpu().half(), requires_grad=False, has_fp16_weights=False)
                else:
                    new = bnb.nn.Linear4bit(
                        child.in_features, child.out_features, bias=bias, compute_dtype=torch.bfloat16, quant_type="nf4"
                    )
                    new.weight = bnb.nn.Params4bit(child.weight.data.cpu().to(torch.bfloat16), requires_grad=False, quant_type="nf4")
                if bias:
                    new.bias = torch.nn.Parameter(child.bias.data.cpu().to(dtype), requires_grad=False)
                setattr(parent, child_name, new.to(device))
            else:
                swap(child)

    module = module.to(dtype)
    swap(module)
    return module.to(device)


def compile_called_part(module):
    """(module, compiled part, its FLOPs per token): bf16 ``module`` whose part a detector calls
    -- the SLM's decoder (``module.model``; the detector applies two head rows itself), or the
    whole encoder -- is replaced by ``torch.compile(part, dynamic=True)`` (inductor: fuses the
    norms, rotary embeddings and activations between the matmuls; dynamic, because every batch
    has another shape)."""
    import torch

    decoder = getattr(module, "model", None)
    is_lm = isinstance(decoder, torch.nn.Module) and getattr(module, "lm_head", None) is not None
    part = decoder if is_lm else module
    flops = linear_flops_per_token(part)
    compiled = torch.compile(part, dynamic=True)
    if is_lm:
        module.model = compiled
        return module, compiled, flops
    return compiled, compiled, flops


def bench_convert(module, precision: str, device: str):
    """Conversions for rows that `cwescan scan` does not offer (GPU backends)."""
    from cwescan.ml.precision import quiet_torchao, apply_precision, gpu_quant_filter

    if precision in PRECISIONS:
        return apply_precision(module, precision, device)
    if precision in ("ao-int8", "ao-int4"):
        return apply_precision(module, precision[3:], device)
    if precision.startswith("bnb-"):
        return _bnb_convert(module, precision, device)
    import torch

    q = quiet_torchao()
    module = module.to(device=device, dtype=torch.bfloat16)
    if precision == "ao-int8dyn":
        q.quantize_(module, q.Int8DynamicActivationInt8WeightConfig(), filter_fn=gpu_quant_filter)
    elif precision == "ao-fp8":
        q.quantize_(module, q.Float8DynamicActivationFloat8WeightConfig(), filter_fn=gpu_quant_filter)
    else:
        raise ValueError(f"unknown bench precision {precision!r}")
    return module
