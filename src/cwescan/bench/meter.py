"""What a benchmark row measures inside the model: tokens fed, matmul FLOPs executed by the
Linear-like layers, and the bytes of the weights as used."""

from __future__ import annotations


def linear_like(m) -> bool:
    return isinstance(getattr(m, "in_features", None), int) and isinstance(getattr(m, "out_features", None), int)


class Meter:
    """Counts the tokens a model is fed and the matmul FLOPs its Linear-like layers execute."""

    def __init__(self):
        self.tokens = 0
        self.flops = 0
        self.extra_flops_per_token = 0.0  # for modules whose insides cannot be hooked (ONNX)
        self._handles = []

    def attach(self, module, token_module=None, linears: bool = True) -> None:
        """Count tokens where they enter ``token_module`` (default: the input embedding, which
        sees every token whichever part of the model a detector calls; else ``module``) and
        FLOPs in every Linear-like layer of ``module`` (``linears=False``: none; FLOPs then
        come from ``extra_flops_per_token``, for insides that run compiled or in ONNX Runtime)."""
        import torch

        self.detach()
        if token_module is None:
            try:
                token_module = module.get_input_embeddings()
            except (AttributeError, NotImplementedError):
                token_module = None
            if not isinstance(token_module, torch.nn.Module):
                token_module = module
        self._handles.append(token_module.register_forward_pre_hook(self._count_tokens, with_kwargs=True))
        for m in module.modules() if linears else ():
            if linear_like(m):
                self._handles.append(m.register_forward_pre_hook(self._count_linear))

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _count_tokens(self, _m, args, kwargs):
        import torch

        for t in list(args) + list(kwargs.values()):
            if isinstance(t, torch.Tensor) and t.dim() >= 2 and not t.is_floating_point():
                n = t.shape[0] * t.shape[1]
                self.tokens += n
                self.flops += int(self.extra_flops_per_token * n)
                return

    def _count_linear(self, m, args):
        x = args[0] if args else None
        if x is not None and hasattr(x, "numel") and x.numel():
            self.flops += 2 * m.in_features * m.out_features * (x.numel() // max(1, x.shape[-1]))

    def reset(self) -> None:
        self.tokens = self.flops = 0


def weights_bytes(module) -> int:
    """Bytes of the weights as held for inference: every tensor of the state dict once (tied
    weights counted once), quantized / packed tensors by their inner storage."""
    import torch

    seen: set[int] = set()

    def size(t) -> int:
        if isinstance(t, torch.Tensor):
            if type(t) not in (torch.Tensor, torch.nn.Parameter) and hasattr(t, "__tensor_flatten__"):
                names, _ = t.__tensor_flatten__()  # torchao quantized tensors: their inner tensors
                return sum(size(getattr(t, n)) for n in names)
            try:
                key = t.untyped_storage().data_ptr() if not t.is_quantized else id(t)
            except (RuntimeError, NotImplementedError):
                key = id(t)
            if key in seen and key != 0:
                return 0
            seen.add(key)
            return t.numel() * t.element_size()
        if isinstance(t, (tuple, list)):
            return sum(size(x) for x in t)
        if "PackedParams" in type(t).__name__ or "ScriptObject" in type(t).__name__:
            try:  # torch.ao dynamic Linear: (int8 weight, bias)
                w, b = torch.ops.quantized.linear_unpack(t)
                return size(w) + (size(b) if b is not None else 0)
            except Exception:  # noqa: BLE001 - unknown packing: not counted
                return 0
        return 0

    return sum(size(v) for v in module.state_dict(keep_vars=True).values())


def linear_flops_per_token(module) -> int:
    """Matmul FLOPs one token costs in ``module``'s Linear-like layers (each runs once a token)."""
    return sum(2 * m.in_features * m.out_features for m in module.modules() if linear_like(m))
