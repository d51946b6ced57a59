"""Parse a file without letting the parser hang the scan.

CPython 3.11 parses f-string placeholders in time proportional to (placeholders x length of
the f-string), inside C code where the per-file alarm (``--file-timeout``) cannot interrupt
it: one f-string of 100,000 placeholders (300 KB) takes tens of seconds, the fuzzer's 3 MB
one over an hour. Such a parse is run in a forked child that is killed at the bound.

Forking costs a parse of its own, so only files whose worst case could come near the bound
are tried there (:func:`parse_may_stall`, a few C-speed passes over the text); everything else
is parsed in process under the alarm as before.
"""

from __future__ import annotations

import multiprocessing
import os
import re
from multiprocessing import get_context

from cwescan.core.units import parse_source

# Files up to this size are always parsed in process: even a file made only of f-string
# placeholders parses within a few seconds at this size (60 KB of "{a}": 0.3-2.5 s measured).
SMALL_FILE_CHARS = 64_000
# Worst-case costs per character, measured with CPython 3.11 on this project's shared 2-core
# development machine at load average 9 (docs/SCANNING.md, "Parses that cannot hang"): a
# linear parse of ordinary code (2.4 MB of short lines: 10.6 s) and the quadratic f-string
# term per (brace x character); an idle machine parses about twice as fast.
LINEAR_SECONDS_PER_CHAR = 5e-6
FSTRING_SECONDS_PER_BRACE_CHAR = 6e-10
# A file is tried in a child when its worst case could use this share of --file-timeout.
STALL_SHARE = 0.25

# An f-string (or template string, lowered to an f-string) opens somewhere in the text.
_FSTRING_START = re.compile(r"(?<![\w])(?:[fFtT][rR]?|[rR][fFtT])['\"]")


def parse_may_stall(text: str, timeout: float) -> bool:
    """Whether parsing ``text`` in process might run past ``timeout`` seconds where no alarm
    can stop it. A cheap over-estimate: the brace count bounds the placeholders of any one
    f-string, the text length bounds its length."""
    if not timeout or len(text) <= SMALL_FILE_CHARS:
        return False
    worst = len(text) * LINEAR_SECONDS_PER_CHAR
    if _FSTRING_START.search(text):
        worst += text.count("{") * len(text) * FSTRING_SECONDS_PER_BRACE_CHAR
    return worst > timeout * STALL_SHARE


def _parse_and_exit(path: str, text: str) -> None:
    try:
        parse_source(path, text)  # what the scan runs: the host's parser, then lowering
    except BaseException:  # noqa: BLE001 - only whether it returns matters
        pass
    os._exit(0)  # no atexit handlers, no flushing of buffers inherited from the parent


def parse_finishes(text: str, timeout: float, path: str = "<probe>") -> bool:
    """Whether parsing ``text`` (:func:`cwescan.core.units.parse_source`) returns within
    ``timeout`` seconds, tried in a forked child (the text is inherited, nothing is pickled;
    no answer comes back but the exit). True where fork is unavailable: the in-process alarm
    is then the only bound."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return True
    try:
        child = get_context("fork").Process(target=_parse_and_exit, args=(path, text))
        child.start()
    except OSError:  # cannot fork (process limit, memory): parse in process as before
        return True
    child.join(timeout)
    if child.is_alive():
        child.kill()
        child.join()
        return False
    return True


def parse_timeout_message(timeout: float) -> str:
    return (f"the parser did not finish within {timeout / 2:g} s, half of --file-timeout {timeout:g} s "
            "(tried in a child process, which was stopped; the other half is for parsing it "
            "again in the scan); file skipped")

