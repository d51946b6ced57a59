"""Parse snippets that only fail because they are indented.

Dataset records often hold a method cut out of its class, still indented (``    def f(self):``),
which ``ast.parse`` rejects with "unexpected indent". ``textwrap.dedent`` removes the common
indentation without adding or removing lines, so line numbers stay exact. The scanner never
needs this (a real file that does not parse is reported as such); evaluation on snippets does.
"""

from __future__ import annotations

import ast
import textwrap
import warnings

from cwescan.core.units import SourceFile


def dedented_text(src: SourceFile) -> str | None:
    """The dedented text when ``src`` failed to parse only because of its indentation."""
    if src.tree is not None or not src.error or "unexpected indent" not in src.error:
        return None
    text = textwrap.dedent(src.text)
    return text if text != src.text else None


def tree_of(src: SourceFile) -> ast.Module | None:
    """``src.tree``, or the tree of its dedented text, or None."""
    if src.tree is not None:
        return src.tree
    text = dedented_text(src)
    if text is None:
        return None
    try:
        with warnings.catch_warnings():  # the snippet's invalid escapes are not ours to report
            warnings.simplefilter("ignore")
            return ast.parse(text, filename=src.path)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
