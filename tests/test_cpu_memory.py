"""The model stage's memory stays bounded: after a scoring call the heap's free memory goes back
to the kernel (``release_free_memory``), although ``tune_cpu_allocator`` keeps freed tensors in
the heap during a call."""

from __future__ import annotations

import sys

import pytest

torch = pytest.importorskip("torch")

from cwescan.ml.precision import release_free_memory, tune_cpu_allocator  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc")
def test_free_tensor_memory_is_returned_after_a_call():
    if not tune_cpu_allocator():
        pytest.skip("not glibc")
    before = rss_mb()
    # activations of many shapes, each under the 32 MiB mmap threshold: they land in the heap
    blocks = [torch.ones(1_000_000 + 4096 * i, dtype=torch.float32) for i in range(100)]  # ~0.4 GB
    held = rss_mb()
    assert held - before > 300
    del blocks
    kept = rss_mb()
    assert kept - before > 200  # freed, but the tuned heap keeps it for reuse
    assert not release_free_memory(above_mb=kept + 1000)  # under the bound: kept for reuse
    assert rss_mb() - before > 200
    assert release_free_memory(above_mb=before + 100)
    assert rss_mb() - before < 100


KERNEL_PROBE = """
import torch
from cwescan.ml.precision import apply_precision
apply_precision(torch.nn.Linear(4, 4), "fp32", "cpu")  # before any oneDNN kernel, as a scan does
conv = lambda size: torch.nn.functional.conv2d(torch.ones(4, 16, size, size), torch.ones(16, 16, 3, 3))
with torch.no_grad():
    for size in range(16, 36):  # 20 shapes
        conv(size)
    print("AGAIN", flush=True)
    conv(16)  # the first shape again
"""


def _kernels_made_again(env_extra: dict) -> list[str] | None:
    """In a fresh process, oneDNN's verbose record ('cache_hit' / 'cache_miss') of the kernels
    the first of 20 convolution shapes needs when it comes again; None when oneDNN ran none."""
    import os
    import re
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    env.update(ONEDNN_VERBOSE="2", **env_extra)
    out = subprocess.run([sys.executable, "-c", KERNEL_PROBE], env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    if "create:" not in out:
        return None
    return re.findall(r"create:(cache_hit|cache_miss)", out.split("AGAIN", 1)[1])


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch without oneDNN")
def test_cpu_models_bound_onednn_kernel_cache_unless_the_user_set_it():
    bounded = _kernels_made_again({})
    if bounded is None:
        pytest.skip("this torch build ran no oneDNN convolution")
    assert "cache_miss" in bounded  # evicted by the 19 shapes after it: the cache holds 16 kernels
    users = _kernels_made_again({"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "1024"})
    assert users and set(users) == {"cache_hit"}  # the user's own setting stands


SMAPS = """\
7f00a0000000-7f00a4000000 r-xp 00000000 08:01 123 /venv/lib/python3.12/site-packages/torch/lib/libtorch_cuda.so
Size:              65536 kB
Rss:               51200 kB
Pss:               51200 kB
7f00b0000000-7f00b1000000 r-xp 00000000 08:01 124 /venv/lib/python3.12/site-packages/nvidia/cublas/lib/libcublasLt.so.13
Size:              16384 kB
Rss:               10240 kB
7f00c0000000-7f00c2000000 r-xp 00000000 08:01 125 /venv/lib/python3.12/site-packages/torch/lib/libtorch_cpu.so
Size:              32768 kB
Rss:               30720 kB
7f00d0000000-7f00d0100000 rw-p 00000000 00:00 0
Rss:                1024 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
Rss:                  64 kB
"""


def test_gpu_library_rss_counts_only_the_gpu_runtime_mappings(tmp_path):
    from cwescan.core.process import gpu_library_rss_mb

    smaps = tmp_path / "smaps"
    smaps.write_text(SMAPS)
    assert gpu_library_rss_mb(smaps) == (51200 + 10240) / 1024  # libtorch_cuda + cuBLAS, not libtorch_cpu
    assert gpu_library_rss_mb(tmp_path / "missing") is None
    here = gpu_library_rss_mb()  # this process: 0 with a CPU build of torch, more with a CUDA one
    assert here is not None and here >= 0.0
