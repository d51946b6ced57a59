"""Facts about the running process that reports and benchmarks print."""

from __future__ import annotations

from pathlib import Path


def rss_mb() -> float | None:
    """This process's resident set now, in MiB (None where /proc is not there)."""
    import os

    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_mb() -> float | None:
    """This process's peak resident set in MiB. /proc's VmHWM belongs to the current address
    space; getrusage's ru_maxrss is only the fallback because a spawned child inherits the
    parent's high-water mark across fork + exec. None where neither is available."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    except (ImportError, OSError):
        return None


# Shared libraries that only a GPU build of torch loads (CUDA runtime, cuBLAS, cuDNN, NCCL, ...,
# and torch's own CUDA parts). A CUDA build maps them at ``import torch`` even when every model
# runs on the CPU: on the lent H200 host ``import torch`` left 492 MB resident against 218 MB for
# the CPU build on the development machine.
GPU_LIBRARY_MARKERS = ("cuda", "cudnn", "cublas", "cufft", "curand", "cusolver", "cusparse", "nccl",
                       "nvrtc", "nvjitlink", "cupti", "nvshmem", "cufile", "/nvidia/")


def gpu_library_rss_mb(smaps: str | Path = "/proc/self/smaps") -> float | None:
    """MiB of this process's resident set that are pages of GPU runtime libraries
    (``GPU_LIBRARY_MARKERS`` in the mapped file's path): what a peak RSS measured with a CUDA
    build of torch holds that a CPU build does not. 0.0 with a CPU build; None without /proc."""
    total_kb, counting = 0, False
    try:
        with open(smaps) as f:
            for line in f:
                fields = line.split()
                if "-" in fields[0] and not fields[0].endswith(":"):  # a mapping's header line
                    path = " ".join(fields[5:]).lower()  # empty: an anonymous mapping
                    counting = any(m in path for m in GPU_LIBRARY_MARKERS)
                elif counting and fields[0] == "Rss:":
                    total_kb += int(fields[1])
    except (OSError, ValueError, IndexError):
        return None
    return total_kb / 1024
