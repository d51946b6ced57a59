"""apply_precision on a small real model: each precision runs, keeps outputs close to fp32 and
holds the weights in the promised form; unavailable precisions fail with a clear error."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from cwescan.ml.precision import PrecisionUnavailable, apply_precision, default_precision  # noqa: E402


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(128, 256), torch.nn.GELU(), torch.nn.Linear(256, 64)).eval()


def _rel_err(model, ref_model, x):
    with torch.inference_mode():
        y = model(x).float()
        r = ref_model(x).float()
    return float((y - r).norm() / r.norm())


@pytest.fixture
def x():
    torch.manual_seed(1)
    return torch.randn(16, 128)


def test_fp32_and_bf16(x):
    ref = _model()
    assert apply_precision(_model(), "fp32")[0].weight.dtype == torch.float32
    m = apply_precision(_model(), "bf16")
    assert m[0].weight.dtype == torch.bfloat16
    with torch.inference_mode():
        y = m(x.bfloat16()).float()
        r = ref(x)
    assert float((y - r).norm() / r.norm()) < 0.02


def test_int8_is_dynamic_quantized_linear(x):
    ref = _model()
    m = apply_precision(_model(), "int8")
    assert all("quantized" in type(layer).__module__ for layer in (m[0], m[2]))
    assert _rel_err(m, ref, x) < 0.05


def test_int4_weights_hold_4bit_values(x):
    ref = _model()
    m = apply_precision(_model(), "int4")
    w = m[0].weight
    assert type(w).__name__ != "Parameter" and hasattr(w, "qdata")
    assert int(w.qdata.min()) >= -8 and int(w.qdata.max()) <= 7  # int4 range
    with torch.inference_mode():
        y = m(x.bfloat16()).float()
        r = ref(x)
    err = float((y - r).norm() / r.norm())
    assert 0.005 < err < 0.25  # really quantized, still the same function


def test_unavailable_and_bad_requests():
    with pytest.raises(PrecisionUnavailable, match="GPU-only"):
        apply_precision(_model(), "fp16", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(PrecisionUnavailable, match="no CUDA"):
            apply_precision(_model(), "bf16", "cuda")
    with pytest.raises(ValueError, match="unknown precision"):
        apply_precision(_model(), "int3")
    ints = torch.nn.Linear(4, 4)
    ints.weight = torch.nn.Parameter(torch.zeros(4, 4, dtype=torch.int32), requires_grad=False)
    with pytest.raises(PrecisionUnavailable, match="needs a float model"):
        apply_precision(ints, "bf16")


def test_default_precision_reads_the_bench_file(tmp_path):
    p = tmp_path / "precision.json"
    assert default_precision("slm", p) == "fp32"  # no file yet
    p.write_text(json.dumps({"slm": "bf16", "encoder": {"precision": "int8"}, "measured": {}}))
    amx = tmp_path / "cpuinfo"  # the CPU the benchmark ran on (bf16 defaults need native bf16)
    amx.write_text("flags\t\t: avx512f avx512_bf16 amx_bf16 amx_tile\n")
    assert default_precision("slm", p, cpuinfo=amx) == "bf16"
    assert default_precision("encoder", p) == "int8"
    assert default_precision("other", p) == "fp32"
    p.write_text(json.dumps({"slm": "int3"}))
    assert default_precision("slm", p) == "fp32"  # unknown value: safe default
    p.write_text("{not json")
    assert default_precision("slm", p) == "fp32"


def test_no_plan_attention_turns_off_cudnn_attention_on_cuda_only():
    import torch

    from cwescan.ml.attention import no_plan_attention

    before = torch.backends.cuda.cudnn_sdp_enabled()
    with no_plan_attention("cpu"):
        assert torch.backends.cuda.cudnn_sdp_enabled() == before
    with no_plan_attention("cuda:0"):
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.mem_efficient_sdp_enabled()
    assert torch.backends.cuda.cudnn_sdp_enabled() == before


def test_bf16_default_only_where_the_cpu_has_native_bf16(tmp_path):
    import json

    from cwescan.ml.precision import cpu_has_native_bf16, default_precision

    measured = tmp_path / "precision.json"
    measured.write_text(json.dumps({"slm": "bf16", "encoder": "int8"}))
    amx = tmp_path / "amx"
    amx.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
    avx2 = tmp_path / "avx2"
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse avx avx2 fma\n")
    assert cpu_has_native_bf16(amx) is True and cpu_has_native_bf16(avx2) is False
    assert cpu_has_native_bf16(tmp_path / "missing") is None
    assert default_precision("slm", measured, cpuinfo=amx) == "bf16"
    assert default_precision("slm", measured, cpuinfo=avx2) == "fp32"
    assert default_precision("slm", measured, cpuinfo=tmp_path / "missing") == "bf16"  # unknown: trust the benchmark
    assert default_precision("slm", measured, device="cuda", cpuinfo=avx2) == "bf16"
    assert default_precision("encoder", measured, cpuinfo=avx2) == "int8"  # only bf16 depends on the CPU
