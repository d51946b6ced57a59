"""Which attention kernel the models use on a GPU.

On an H100, torch picks cuDNN's fused attention for bf16 / fp16 first. cuDNN builds an execution
plan for every new input shape, and a scan gives it one new shape per batch (each batch is as
wide as its longest window): measured on the H100 at batch 1, the first window of each length
took a p50 of 92 ms against 30 ms once the plan existed (fp32, which cuDNN attention does not
serve, 31–38 ms throughout). Flash and memory-efficient attention have no per-shape plan, so the
scorers run their forward passes inside :func:`no_plan_attention`.
"""

from __future__ import annotations

import contextlib


def no_plan_attention(device):
    """A context in which scaled-dot-product attention on ``device`` may use flash,
    memory-efficient or plain attention but not cuDNN's (nothing changes off CUDA)."""
    if not str(device).startswith("cuda"):
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])
