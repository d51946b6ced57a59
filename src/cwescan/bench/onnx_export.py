"""ONNX Runtime int8 path: export a detector's torch model to ONNX, quantize it dynamically
(onnxruntime.quantization.quantize_dynamic: int8 weights, int8 activations per batch) and put an
ONNX Runtime session in the model's place, so the detector's own tokenisation, windowing and
post-processing run unchanged around it.

The export is traced from one real call of the detector (``capture_call``): the tensors it
passes become the graph inputs (batch and sequence dims dynamic), the non-tensor arguments
(e.g. ``logits_to_keep=1``) are fixed, and only tensor outputs are kept (a causal LM is
exported with ``use_cache=False``, so the score path's single forward pass is what runs).
``torch.onnx.export(dynamo=True)`` needs the ``onnxscript`` package and the quantizer needs
``onnx``; both are in the ``bench`` extra.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


class OnnxUnavailable(RuntimeError):
    """The ONNX path cannot run here (missing package, export failure)."""


@dataclass
class CapturedCall:
    args: tuple
    kwargs: dict
    output: Any


def capture_call(module: torch.nn.Module, run) -> CapturedCall:
    """Run ``run()`` (which calls ``module`` somewhere inside) and record the first call's
    arguments and output."""
    seen: list[CapturedCall] = []

    def hook(_m, args, kwargs, output):
        if not seen:
            seen.append(CapturedCall(args, dict(kwargs), output))

    handle = module.register_forward_hook(hook, with_kwargs=True)
    try:
        run()
    finally:
        handle.remove()
    if not seen:
        raise OnnxUnavailable("the detector never called its model on the sample units")
    return seen[0]


def called_part(module: torch.nn.Module, run):
    """(the part of ``module`` that ``run()`` calls, its CapturedCall, a function that puts a
    stand-in in that part's place, or None when the part is ``module`` itself). A causal LM
    whose detector calls only its decoder (``module.model``, then its own head rows) has the
    decoder exported and swapped."""
    try:
        return module, capture_call(module, run), None
    except OnnxUnavailable:
        inner = getattr(module, "model", None)
        if not isinstance(inner, torch.nn.Module):
            raise
    return inner, capture_call(inner, run), lambda new: setattr(module, "model", new)


def _tensor_outputs(output) -> tuple[type | None, list[str]]:
    """(container class, names of tensor fields) of a model output: a ModelOutput / dict, or a
    plain tensor (container None, names ["output"])."""
    if isinstance(output, torch.Tensor):
        return None, ["output"]
    if isinstance(output, dict):  # transformers' ModelOutput is an OrderedDict
        return type(output), [k for k, v in output.items() if isinstance(v, torch.Tensor)]
    raise OnnxUnavailable(f"model output of type {type(output).__name__} is not supported for ONNX export")


class _ExportWrapper(torch.nn.Module):
    """Tensor inputs in, tensor outputs out: the graph ONNX sees."""

    def __init__(self, module, arg_slots, kw_names, fixed_args, fixed_kwargs, out_names):
        super().__init__()
        self.module = module
        self.arg_slots, self.kw_names = arg_slots, kw_names
        self.fixed_args, self.fixed_kwargs = fixed_args, fixed_kwargs
        self.out_names = out_names

    def forward(self, *tensors):
        args = list(self.fixed_args)
        for slot, t in zip(self.arg_slots, tensors[: len(self.arg_slots)], strict=True):
            args[slot] = t
        kwargs = dict(self.fixed_kwargs)
        kwargs.update(zip(self.kw_names, tensors[len(self.arg_slots) :], strict=True))
        out = self.module(*args, **kwargs)
        if self.out_names == ["output"]:
            return (out,)
        return tuple(out[k] for k in self.out_names)


class OrtModule(torch.nn.Module):
    """Stands in for the torch model: same call signature, ONNX Runtime does the work."""

    def __init__(self, session, arg_slots, kw_names, out_cls, out_names, config=None):
        super().__init__()
        self.session = session
        self.arg_slots, self.kw_names = arg_slots, kw_names
        self.out_cls, self.out_names = out_cls, out_names
        self.input_names = [i.name for i in session.get_inputs()]
        if config is not None:
            self.config = config

    def forward(self, *args, **kwargs):
        tensors = [args[s] for s in self.arg_slots] + [kwargs[k] for k in self.kw_names]
        device = tensors[0].device
        feed = {name: t.detach().cpu().numpy() for name, t in zip(self.input_names, tensors, strict=True)}
        outs = [torch.from_numpy(o).to(device) for o in self.session.run(None, feed)]
        if self.out_cls is None:
            return outs[0]
        return self.out_cls(**dict(zip(self.out_names, outs, strict=True)))


def _cache_dir() -> Path:
    from cwescan.ml.slm.base import cache_root

    return cache_root() / "onnx"


def _fingerprint(module: torch.nn.Module, call: CapturedCall) -> str:
    """Key of an export: the weights plus the call's fixed arguments, so a changed model or
    call never reuses a stale file."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        if isinstance(t, torch.Tensor):
            h.update(name.encode())
            h.update(t.detach().float().cpu().contiguous().numpy().tobytes()[:4096])
            h.update(str(tuple(t.shape)).encode())
    h.update(repr({k: v for k, v in call.kwargs.items() if not isinstance(v, torch.Tensor)}).encode())
    return h.hexdigest()[:20]


def export_int8(
    module: torch.nn.Module,
    call: CapturedCall,
    threads: int = 2,
    out_dir: str | os.PathLike | None = None,
    quantize: bool = True,
) -> tuple[OrtModule, dict]:
    """Export ``module`` as it was called in ``call`` to ONNX, quantize it to int8 (unless
    ``quantize`` is False) and return (drop-in OrtModule, info with file sizes and timings)."""
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as e:
        raise OnnxUnavailable(f"onnxruntime quantization is not importable ({e}); pip install 'cwescan[bench]'") from e

    module = module.float().eval()
    if getattr(getattr(module, "config", None), "use_cache", None):
        module.config.use_cache = False
    kwargs = dict(call.kwargs)
    if "use_cache" in kwargs:
        kwargs["use_cache"] = False
    arg_slots = [i for i, a in enumerate(call.args) if isinstance(a, torch.Tensor)]
    kw_names = [k for k, v in kwargs.items() if isinstance(v, torch.Tensor)]
    fixed_args = [None if isinstance(a, torch.Tensor) else a for a in call.args]
    fixed_kwargs = {k: v for k, v in kwargs.items() if not isinstance(v, torch.Tensor)}
    out_cls, out_names = _tensor_outputs(call.output)
    if out_cls is not None and "past_key_values" in out_names:
        out_names.remove("past_key_values")
    inputs = tuple(call.args[s].cpu() for s in arg_slots) + tuple(kwargs[k].cpu() for k in kw_names)
    if any(t.dim() >= 2 and t.shape[0] < 2 for t in inputs):
        raise OnnxUnavailable("export sample needs a batch of at least 2 so the batch dimension stays dynamic")

    key = _fingerprint(module, call)
    out_dir = Path(out_dir) if out_dir else _cache_dir() / key
    out_dir.mkdir(parents=True, exist_ok=True)
    fp32_path, int8_path = out_dir / "model.onnx", out_dir / "model.int8.onnx"
    info: dict = {"onnx_dir": str(out_dir), "export_s": 0.0, "quantize_s": 0.0}
    wrapper = _ExportWrapper(module.cpu(), arg_slots, kw_names, fixed_args, fixed_kwargs, out_names).eval()
    if not fp32_path.is_file():
        dyn = torch.export.Dim.DYNAMIC
        shapes = tuple({d: dyn for d in range(min(t.dim(), 2))} for t in inputs)
        t0 = time.perf_counter()
        try:
            with torch.inference_mode(False), torch.no_grad():
                torch.onnx.export(
                    wrapper,
                    inputs,
                    str(fp32_path),
                    dynamo=True,
                    dynamic_shapes=(shapes,),  # forward(*tensors): one varargs entry
                    input_names=[f"in{i}" for i in range(len(inputs))],
                    output_names=list(out_names),
                    external_data=False,
                )
        except Exception as e:  # noqa: BLE001 - exporter errors are many and varied
            fp32_path.unlink(missing_ok=True)
            raise OnnxUnavailable(f"torch.onnx.export failed: {type(e).__name__}: {str(e)[:400]}") from e
        info["export_s"] = time.perf_counter() - t0
    path = fp32_path
    if quantize:
        if not int8_path.is_file():
            t0 = time.perf_counter()
            quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)
            info["quantize_s"] = time.perf_counter() - t0
        path = int8_path
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    # like OMP_WAIT_POLICY=PASSIVE for torch: spinning workers collapse on a shared CPU
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    info["onnx_bytes"] = path.stat().st_size
    info["onnx_file"] = path.name
    return OrtModule(session, arg_slots, kw_names, out_cls, out_names, getattr(module, "config", None)), info
