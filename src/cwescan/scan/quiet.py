"""Quiet model libraries: what torchao, torch and transformers print while loading is not for
the person running a scan (``--verbose`` lets it through)."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import warnings
from contextlib import contextmanager


@contextmanager
def third_party_quiet(enabled: bool = True, streams: bool = True):
    """Hide what model libraries print (torchao's missing optional kernels, torch's deprecation
    lines, transformers' progress bars and advice): Python warnings and logging below ERROR
    are off and, with ``streams``, ``sys.stderr`` and file descriptor 2 go to a temporary file
    (the descriptor catches C-level prints). What was caught is written out after all when the
    block fails. Without ``streams`` (around inference, while a progress bar may be drawing)
    only warnings and logging are held back."""
    if not enabled:
        yield
        return
    for name, value in (("TRANSFORMERS_VERBOSITY", "error"), ("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1"),
                        ("HF_HUB_DISABLE_PROGRESS_BARS", "1"), ("TQDM_DISABLE", "1")):
        os.environ.setdefault(name, value)
    previous_disable = logging.root.manager.disable
    saved_fd, sink, saved_stderr = None, None, sys.stderr
    if streams:
        try:
            sys.stderr.flush()
            saved_fd = os.dup(2)
            sink = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
            os.dup2(sink.fileno(), 2)
            sys.stderr = sink
        except (OSError, ValueError):  # no usable stderr: nothing to hide
            if saved_fd is not None:
                os.close(saved_fd)
            saved_fd = None
    failed = False
    try:
        logging.disable(logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    except BaseException:
        failed = True
        raise
    finally:
        logging.disable(previous_disable)
        if saved_fd is not None:
            sys.stderr = saved_stderr
            sink.flush()
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            if failed:
                sink.seek(0)
                saved_stderr.write(sink.read()[-20_000:])
                saved_stderr.flush()
            sink.close()


# --- per-file stage -----------------------------------------------------------------------
