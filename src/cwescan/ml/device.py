"""Which torch device a command runs on."""

from __future__ import annotations


def resolve_device(device: str) -> str:
    """``auto``: CUDA when torch sees a GPU, else the CPU; ``cuda`` without a GPU is an error
    that says so; anything else is passed through."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but torch sees no GPU")
    return device
