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
