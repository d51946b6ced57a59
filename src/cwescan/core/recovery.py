"""Parse what can be parsed of a file that is not valid Python 3.

``ast.parse`` stops at a file's first syntax error, so such a file would get no rule analysis
at all (Bandit skips it).
Real code bases hold many: Python 2 modules (``print "x"``, ``except E, e:``, ``0755``), a
function left half-written, a template-generated file, code cut out of a larger file. This
module repairs the text *line for line* until it parses:

- the text's common indentation is removed, and a leading run of lines indented deeper than
  what follows (the tail of a block cut in the middle) is re-indented to the level it closes;
- Python 2 statements are rewritten to their Python 3 form on every line that has them
  (``print``, ``exec``, ``except E, e:``, ``raise E, msg``, octal and long literals, ``<>``);
- a clause left without its statement (``else:``, ``except:`` at the start of a cut) opens a
  plain block instead;
- a line that still fails becomes ``pass`` at its own indentation (a bracket left open: the
  line that opens it, then whatever no longer parses after it); a triple-quoted string left
  open runs to the end of the file, whose remaining lines are left out.

Every repair keeps the number of lines, so every line number in the tree is the file's own;
the report names the lines that were dropped or rewritten, and models still read the original
text. A file (or, in a long file, a piece of about ``PIECE_LINES`` lines) that needs more than
``MAX_REPAIRS`` repairs is left out.
"""

from __future__ import annotations

import ast
import re
import textwrap
import warnings
from dataclasses import dataclass, field

MAX_REPAIRS = 60  # per piece
PIECE_LINES = 400
# characters parsed while repairing, as a multiple of the file's size (plus a floor): a file
# with errors everywhere keeps the pieces repaired within it and leaves the rest out. Larger
# files are not repaired: each parse of one costs seconds, and the scan's per-file time bound
# would stop the repairs, and the models' reading of the text with them
WORK_FACTOR, WORK_FLOOR = 8, 200_000
MAX_CHARS = 1_000_000
_TOP_LEVEL = re.compile(r"(?:async\s+def|def|class)\s|@")
_PLAIN_STATEMENT = re.compile(r"[A-Za-z_]")

_PRINT = re.compile(r"^(\s*)print(?:\s*>>\s*[^,]+,?)?(?:\s+(?![\s=(.\[])|(?=[\"']))(.*?)\s*,?\s*$")
_PRINT_BARE = re.compile(r"^(\s*)print\s*(?:>>\s*\S+)?\s*$")
_EXEC = re.compile(r"^(\s*)exec\s+(?!\()(.+?)(?:\s+in\s+.+)?\s*$")
_EXCEPT_AS = re.compile(r"^(\s*except\s+)([^,:]+|\([^)]*\)),\s*(\w+)\s*:")
_RAISE_MSG = re.compile(r"^(\s*raise\s+)([\w.]+)\s*,\s*(.+?)\s*$")
_OCTAL = re.compile(r"(?<![\w.'\"])0([0-7]+)[lL]?\b")
_LONG = re.compile(r"(?<![\w.'\"])([1-9]\d*|0[xX][0-9a-fA-F]+)[lL]\b")
_NOT_EQUAL = re.compile(r"<>")
_DANGLING_CLAUSE = re.compile(r"^(\s*)(?:else|finally|except\b[^:]*|elif\s+(.+?))\s*:\s*(?:#.*)?$")


@dataclass
class Recovered:
    tree: ast.Module
    text: str  # the repaired text: same lines, same numbering as the file
    rewritten: list[int] = field(default_factory=list)  # lines changed but still read
    dropped: list[int] = field(default_factory=list)  # lines left out of the tree

    def describe(self) -> str:
        parts = []
        if self.dropped:
            parts.append(f"{len(self.dropped)} line(s) left out ({_ranges(self.dropped)})")
        if self.rewritten:
            parts.append(f"{len(self.rewritten)} line(s) read after rewriting ({_ranges(self.rewritten)})")
        return "; ".join(parts) or "re-indented"


def parse_recovered(text: str, filename: str = "<unknown>") -> Recovered | None:
    """The tree of ``text`` after line-for-line repairs, or None when nothing could be repaired
    within ``MAX_REPAIRS`` repairs, nothing but blank lines would be left, or ``text`` is over
    ``MAX_CHARS``. Never raises.

    A long file is repaired in pieces cut before its top-level ``def``/``class`` lines, so that
    each repair re-parses one piece rather than the whole file (a piece beyond repair is left
    out); the repaired pieces are then parsed together once, which keeps every line number."""
    if len(text) > MAX_CHARS:
        return None
    lines = text.split("\n")
    pieces = _pieces(lines)
    budget = [WORK_FACTOR * len(text) + WORK_FLOOR]
    if len(pieces) == 1:
        return _best(lines, filename, budget)
    repaired: list[str] = []
    rewritten: list[int] = []
    dropped: list[int] = []
    for start, end in pieces:
        part = _best(lines[start:end], filename, budget)
        if part is None:
            repaired.extend("" for _ in range(start, end))
            dropped.extend(n for n in range(start + 1, end + 1) if lines[n - 1].strip())
            continue
        repaired.extend(part.text.split("\n"))
        rewritten.extend(n + start for n in part.rewritten)
        dropped.extend(n + start for n in part.dropped)
    whole = _best(repaired, filename, budget)  # pieces that only parse apart are repaired here
    if whole is None:
        return None
    return Recovered(whole.tree, whole.text, sorted(set(rewritten) | set(whole.rewritten)),
                     sorted(set(dropped) | set(whole.dropped)))


def _pieces(lines: list[str]) -> list[tuple[int, int]]:
    """[start, end) line ranges of about ``PIECE_LINES`` lines, each cut before a top-level
    ``def``, ``class`` or decorator line (after twice that many lines without one, before any
    top-level statement that does not continue the line above); one range for a short file."""
    out, start = [], 0
    for i in range(PIECE_LINES, len(lines)):
        if i - start < PIECE_LINES:
            continue
        line, above = lines[i], lines[i - 1].rstrip()
        cut = _TOP_LEVEL.match(line) and not above.startswith("@")
        if not cut and i - start >= 2 * PIECE_LINES:
            cut = bool(_PLAIN_STATEMENT.match(line)) and not above.endswith(("\\", ",", "(", "[", "{"))
        if cut:
            out.append((start, i))
            start = i
    out.append((start, len(lines)))
    return out


def _best(lines: list[str], filename: str, budget: list[int]) -> Recovered | None:
    tries = [_recover(lines, filename, 0, budget)]
    text = "\n".join(lines)
    if tries[0] is not None and not tries[0].dropped:
        return tries[0]
    if text.count('"""') % 2 or text.count("\'\'\'") % 2:
        # an odd number of triple quotes: either a string left open, or text that begins
        # inside one (a cut through a docstring); keep whichever reading loses fewer lines
        first = next(n for n, line in enumerate(lines, 1) if '"""' in line or "\'\'\'" in line)
        tries.append(_recover(lines, filename, first, budget))
    done = [t for t in tries if t is not None]
    return min(done, key=lambda t: len(t.dropped)) if done else None


def _recover(lines: list[str], filename: str, skip_to: int, budget: list[int]) -> Recovered | None:
    """Repair until the text parses; lines up to ``skip_to`` are taken as the end of a string
    that began before the text. Each parse draws its length from ``budget`` (shared by the
    pieces of a file); None once it is spent."""
    state = _Repair(lines)
    for n in range(1, skip_to + 1):
        state.drop(n, keep_block=False)
    state.reindent()
    for _ in range(MAX_REPAIRS):
        text = "\n".join(state.lines)
        budget[0] -= len(text)
        if budget[0] < 0:
            return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse(text, filename=filename)
        except (SyntaxError, ValueError) as e:
            if not state.repair(e):
                return None
            continue
        except (RecursionError, MemoryError):
            return None
        if not tree.body or all(isinstance(s, ast.Pass) for s in tree.body):
            return None
        return Recovered(tree, text, sorted(state.rewritten - state.dropped),
                         sorted(state.dropped))
    return None


class _Repair:
    def __init__(self, lines: list[str]) -> None:
        self.lines = list(lines)
        self.rewritten: set[int] = set()
        self.dropped: set[int] = set()
        self.python2_done = False
        self.tabs_done = False

    def set(self, n: int, new: str) -> None:
        """Replace line ``n`` (1-based) and remember it was rewritten."""
        if self.lines[n - 1] != new:
            self.lines[n - 1] = new
            self.rewritten.add(n)

    def drop(self, n: int, keep_block: bool = True) -> None:
        """Leave line ``n`` out: ``pass`` at its indentation (a block stays a block), or an
        empty line where its indentation is the problem."""
        line = self.lines[n - 1]
        self.lines[n - 1] = _indent(line) + "pass" if line.strip() and keep_block else ""
        self.dropped.add(n)

    def reindent(self) -> None:
        """Remove the common indentation, then give a leading run of deeper lines (the end of a
        block cut in the middle) the level of the line they close into. Not a rewrite: the
        code of each line stays as it is."""
        self.lines = textwrap.dedent("\n".join(self.lines)).split("\n")
        floor = None
        for n, line in enumerate(self.lines):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            indent = _indent(line)
            if not indent:
                break
            if floor is None or len(indent) < len(floor):
                floor = indent
            if indent.startswith(floor):
                self.lines[n] = line[len(floor):]

    def repair(self, error: SyntaxError | ValueError) -> bool:
        """One repair for ``error``; False when none applies."""
        if not isinstance(error, SyntaxError) or not error.lineno:
            return False
        msg = str(error.msg)
        n = min(error.lineno, len(self.lines))
        if isinstance(error, TabError) and not self.tabs_done:
            self.tabs_done = True
            self.lines = [_expand_indent(line) for line in self.lines]
            return True
        if not self.python2_done and python2_line(self.lines[n - 1]) != self.lines[n - 1]:
            self.python2_all()  # the failing line is Python 2: so, likely, is the whole file
            return True
        if "unterminated triple-quoted" in msg:  # the string runs to the end of the file
            for i in range(n, len(self.lines) + 1):
                if self.lines[i - 1].strip():
                    self.drop(i)
            return True
        m = re.search(r"after .+ on line (\d+)", msg)
        if m and msg.startswith("expected an indented block"):
            self.drop(int(m.group(1)))  # a header whose body is missing (a cut at its end)
            return True
        if "expected 'except' or 'finally'" in msg:
            return self.open_plain_block(n, r"try\s*:")
        line = self.lines[n - 1]
        if msg == "unexpected indent":
            return self.drop_deeper_run(n)
        if isinstance(error, IndentationError):
            self.drop(n, keep_block=False)
            return True
        clause = _DANGLING_CLAUSE.match(line)
        if clause and n not in self.rewritten:
            self.set(n, f"{clause.group(1)}if {clause.group(2) or 'True'}:")
            return True
        if n in self.dropped or not line.strip():
            return self.drop_previous(n)
        self.drop(n)
        return True

    def open_plain_block(self, n: int, header: str) -> bool:
        """Turn the nearest statement header above line ``n`` matching ``header`` (a ``try:``
        whose handlers were cut off) into ``if True:``."""
        for i in range(n - 1, 0, -1):
            m = re.match(r"^(\s*)" + header, self.lines[i - 1])
            if m:
                self.set(i, m.group(1) + "if True:")
                return True
        return False

    def drop_deeper_run(self, n: int) -> bool:
        """Line ``n`` is indented deeper than any open block: leave it and the lines under it out."""
        depth = len(_indent(self.lines[n - 1]))
        for i in range(n, len(self.lines) + 1):
            text = self.lines[i - 1]
            if text.strip() and len(_indent(text)) < depth:
                break
            if text.strip():
                self.drop(i, keep_block=False)
        return True

    def drop_previous(self, n: int) -> bool:
        """The error sits on a line already dropped or blank (a statement's missing end):
        drop the nearest earlier line still read."""
        for i in range(n - 1, 0, -1):
            if self.lines[i - 1].strip() and i not in self.dropped:
                self.drop(i)
                return True
        return False

    def python2_all(self) -> None:
        """Rewrite every Python 2 statement of the file at once (one parse instead of one per
        line)."""
        self.python2_done = True
        for n, line in enumerate(self.lines, 1):
            self.set(n, python2_line(line))


def python2_line(line: str) -> str:
    """``line`` with its Python 2 statement forms written as Python 3 (same line)."""
    if _PRINT_BARE.match(line):
        return _PRINT_BARE.sub(r"\1print()", line)
    m = _PRINT.match(line)
    if m and not line.lstrip().startswith("print("):
        return f"{m.group(1)}print({m.group(2)})"
    m = _EXEC.match(line)
    if m and not line.rstrip().endswith(":"):
        return f"{m.group(1)}exec({m.group(2)})"
    line = _EXCEPT_AS.sub(r"\1\2 as \3:", line)
    m = _RAISE_MSG.match(line)
    if m and not m.group(3).startswith(("from ", "(")):
        line = f"{m.group(1)}{m.group(2)}({m.group(3)})"
    if "#" not in line and "'" not in line and '"' not in line:  # literals outside strings only
        line = _OCTAL.sub(r"0o\1", line)
        line = _LONG.sub(r"\1", line)
        line = _NOT_EQUAL.sub("!=", line)
    return line


def _indent(line: str) -> str:
    """The leading whitespace of ``line``."""
    return line[: len(line) - len(line.lstrip())]


def _expand_indent(line: str) -> str:
    return _indent(line).expandtabs(8) + line.lstrip()


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 7] -> "1-3, 7" (at most six ranges, then an ellipsis)."""
    out: list[str] = []
    start = prev = numbers[0]
    for n in numbers[1:] + [None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(out[:6]) + (", ..." if len(out) > 6 else "")
