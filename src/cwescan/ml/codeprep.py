"""Prepare code for a model: take out what an attacker can write freely without changing what
the code does.

Comments and docstrings are prose. A model that reads them can be talked out of a verdict
(``# safe: input is validated``), so model detectors call :func:`strip_comments` on every
unit before building their input. Line numbers are kept: line i of the result is line i of the
input, so findings still point at the right place.
"""

from __future__ import annotations

import io
import re
import tokenize

# Not a docstring claim: a string statement is prose only when it is the first statement of a
# module, class or function body; we blank every standalone string statement, which also
# covers "docstrings" pasted further down a body to mislead.
_STRING_START = re.compile(r"""^(?:[rRuU]?)(?:'''|\"\"\"|'|")""")


def strip_comments(code: str, docstrings: bool = True) -> str:
    """``code`` without comments (and, by default, without standalone string statements such
    as docstrings), keeping every line where it was.

    Comments become nothing (trailing whitespace before them is dropped); a docstring becomes
    ``""`` followed by as many newlines as it spanned, so the statement structure and the line
    count stay the same. Code that tokenize cannot read (a unit cut out of a file that does not
    parse) is returned unchanged: the model then sees it as it is, which is no worse than before.
    """
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return code
    lines = code.split("\n")
    # edits per line: (start_col, end_col, replacement); applied right to left
    edits: dict[int, list[tuple[int, int, str]]] = {}
    prev_significant = tokenize.NEWLINE
    for i, tok in enumerate(tokens):
        if tok.type == tokenize.COMMENT:
            row, col = tok.start
            edits.setdefault(row, []).append((col, tok.end[1], ""))
        elif (docstrings and tok.type == tokenize.STRING
              and prev_significant in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
              and _standalone(tokens, i) and _STRING_START.match(tok.string)):
            (r0, c0), (r1, c1) = tok.start, tok.end
            if r0 == r1:
                edits.setdefault(r0, []).append((c0, c1, '""'))
            else:  # keep the first line's prefix and the last line's suffix; blank the rest
                edits.setdefault(r0, []).append((c0, len(lines[r0 - 1]), '""'))
                for r in range(r0 + 1, r1):
                    edits.setdefault(r, []).append((0, len(lines[r - 1]), ""))
                edits.setdefault(r1, []).append((0, c1, ""))
        if tok.type not in (tokenize.COMMENT, tokenize.NL):
            prev_significant = tok.type
    for row, row_edits in edits.items():
        if row - 1 >= len(lines):
            continue
        line = lines[row - 1]
        for c0, c1, new in sorted(row_edits, reverse=True):
            line = line[:c0] + new + line[c1:]
        lines[row - 1] = line.rstrip() if any(new == "" for _, _, new in row_edits) else line
    return "\n".join(lines)


def _standalone(tokens: list[tokenize.TokenInfo], i: int) -> bool:
    """Whether the string token at ``i`` is a whole statement (followed by the end of the
    logical line), not the start of an expression such as ``"x".join(...)``."""
    for tok in tokens[i + 1:]:
        if tok.type in (tokenize.COMMENT, tokenize.NL):
            continue
        return tok.type in (tokenize.NEWLINE, tokenize.ENDMARKER)
    return True
