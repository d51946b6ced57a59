"""The file stage as Ray tasks: each task decodes, parses and runs the fast detectors on a
batch of files whose bytes the driver read, with the same code as a local scan
(``cwescan.scan.pipeline.scan_read``)."""

from __future__ import annotations

import gc
import importlib

import ray

from cwescan.scan.pipeline import FileResult, scan_read
from cwescan.scan.walk import decode_source

# A worker that dies (killed, out of memory, a crash in C code) has its task run again; a
# batch that fails every try is split into single files, so only the file that kills its
# worker is reported as skipped.
TASK_RETRIES = 3

_FAST: dict[tuple[str, ...], list] = {}  # fast detectors of this worker process, built once


def _fast_detectors(targets: tuple[str, ...]) -> list:
    """The fast detectors from their registry targets ("module:callable"), as the local
    worker processes build them."""
    if targets not in _FAST:
        built = []
        for target in targets:
            module, attr = target.split(":")
            built.append(getattr(importlib.import_module(module), attr)())
        _FAST[targets] = built
        # parsing allocates millions of short-lived nodes: see pipeline.fewer_gc_passes
        gc.freeze()
        gc.set_threshold(200_000, 20, 20)
    return _FAST[targets]


@ray.remote(max_retries=TASK_RETRIES, num_cpus=1)
def scan_files(items: list[tuple[str, bytes]], targets: tuple[str, ...], max_size: int,
               timeout: float, keep_text: bool) -> list[FileResult]:
    """Scan each (relpath, bytes) of ``items``; one FileResult each, in order."""
    fast = _fast_detectors(targets)
    return [scan_read(relpath, decode_source(data, relpath, max_size), fast, timeout,
                      keep_source=False, keep_text=keep_text)
            for relpath, data in items]
