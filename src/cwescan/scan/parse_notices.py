"""What the report says about how a file was parsed: syntax newer than this Python lowered,
syntax errors repaired line for line (or not), nesting too deep for the parser."""

from __future__ import annotations

import sys

from cwescan.core.units import SourceFile
from cwescan.scan.walk import Notice


def parse_notice(relpath: str, src: SourceFile) -> Notice:
    error = src.error or ""
    deep = error.startswith(("RecursionError", "MemoryError")) or "too many nested" in error
    if deep:
        return Notice(relpath, "too-deep", f"nesting too deep to parse ({error}); "
                      "static rules skipped, models read the text")
    if src.repair is not None and not src.repair.dropped:
        return Notice(relpath, "repaired", f"{error}; rewritten line for line before parsing "
                      f"({src.repair.describe()}); every rule ran")
    if src.repair is not None:
        return Notice(relpath, "syntax-error", f"{error}; rules ran on the rest after repairs "
                      f"line for line ({src.repair.describe()}), models read the text")
    return Notice(relpath, "syntax-error", f"{error}; static rules skipped, models read the text")


def lowered_notice(relpath: str, constructs: str) -> Notice:
    return Notice(relpath, "lowered", f"syntax newer than Python {sys.version_info.major}."
                  f"{sys.version_info.minor} ({constructs}) was rewritten line for line before "
                  "parsing; every rule ran")
