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
