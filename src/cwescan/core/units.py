"""Split a Python source file into the units every detector sees.

A unit is one function or method (with its decorators, and for a method the enclosing class
names in its qualname) or the module's top-level code. Units keep exact file line spans: the
line i of ``unit.code`` is line ``unit.start_line + i - 1`` of the file. The module unit is the
whole file with the lines of every function unit blanked, so it holds imports, constants, class
bodies and script code without repeating what the function units already cover.
"""

from __future__ import annotations

import ast
import textwrap
import warnings
from dataclasses import dataclass, field

from cwescan.core.lowering import parse_lowered
from cwescan.core.recovery import Recovered, parse_recovered


@dataclass
class SourceFile:
    path: str  # posix path relative to the scan root (or a record id in evaluation)
    text: str
    tree: ast.Module | None = None  # None when the file does not parse
    error: str | None = None  # why the file did not parse
    # "native": the host's ast; "lowered": after cwescan.core.lowering; "recovered": the parts
    # of a file with syntax errors that cwescan.core.recovery could repair (``error`` says why)
    parser: str = "native"
    lowered: str = ""  # with "lowered": which newer constructs were rewritten
    repair: Recovered | None = None  # with "recovered": the repaired text, lines left out or rewritten
    units: list[Unit] = field(default_factory=list)

    @property
    def lines(self) -> list[str]:
        return split_lines(self.text)


@dataclass
class Unit:
    file: SourceFile = field(repr=False)
    qualname: str  # "module", "f", "Class.method", "outer.<locals>.inner"
    kind: str  # "function" or "module"
    start_line: int  # 1-based, inclusive
    end_line: int
    code: str
    node: ast.AST | None = field(default=None, repr=False)

    @property
    def path(self) -> str:
        return self.file.path

    def file_line(self, unit_line: int) -> int:
        """File line of the 1-based line ``unit_line`` of this unit's code."""
        return self.start_line + unit_line - 1


def _function_nodes(tree: ast.Module):
    """Yield (qualname, node) for every function, outermost first; nested ones are skipped
    because they are part of their enclosing function's unit."""

    def visit(node: ast.AST, prefix: str):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield prefix + child.name, child
            elif isinstance(child, ast.ClassDef):
                yield from visit(child, prefix + child.name + ".")
            elif not isinstance(child, (ast.expr, ast.Lambda)):
                # if/try/with blocks at module or class level may define functions too
                yield from visit(child, prefix)

    yield from visit(tree, "")


def split_lines(text: str) -> list[str]:
    """Lines as Python numbers them: only newlines end a line. str.splitlines() also splits
    at form feeds and Unicode line separators, which would shift every later line number."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def model_code(unit: Unit) -> str:
    """The unit's code as the models read it: dedented, so that a method cut out of its class
    reads like the top-level functions they were trained on (the realistic negatives were
    dedented when the corpus was built; scoring methods indented cleared 7 % instead of 47 % of
    the standard library's sink units in the encoder's first stage). Lines stay where they are."""
    return textwrap.dedent(unit.code)


def node_span(node: ast.AST) -> tuple[int, int]:
    """Lines of a def including its decorators."""
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return start, node.end_lineno or node.lineno


def parse_source(path: str, text: str) -> SourceFile:
    """Parse ``text`` and split it into units. A file with syntax errors keeps ``error`` (why)
    and gets the tree of the lines that could be repaired (``parser == "recovered"``); one
    beyond repair gets a single module unit over the whole text (models can still read it)."""
    src = SourceFile(path=path, text=text)
    lines = split_lines(text)
    n = max(1, len(lines))
    try:
        # invalid escapes in the scanned code are its authors' business, not a message for
        # whoever runs the scan (SyntaxWarning on 3.12+, DeprecationWarning before)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            src.tree = ast.parse(text, filename=path)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        lowered = parse_lowered(text, path) if type(e) is SyntaxError else None
        if lowered is not None:  # syntax newer than this Python's parser, rewritten line for line
            src.tree, src.parser, src.lowered = lowered.tree, "lowered", lowered.describe()
        else:
            src.error = f"{type(e).__name__}: {e}"
            repaired = parse_recovered(text, path) if isinstance(e, SyntaxError) else None
            if repaired is None:
                src.units = [Unit(src, "module", "module", 1, n, text)]
                return src
            src.tree, src.parser, src.repair = repaired.tree, "recovered", repaired

    blank = [False] * (len(lines) + 1)
    for qualname, node in _function_nodes(src.tree):
        start, end = node_span(node)
        end = min(end, len(lines))
        code = "\n".join(lines[start - 1 : end])
        src.units.append(Unit(src, qualname, "function", start, end, code, node))
        for i in range(start, end + 1):
            blank[i] = True
    module_code = "\n".join("" if blank[i + 1] else line for i, line in enumerate(lines))
    if module_code.strip() or not src.units:
        src.units.insert(0, Unit(src, "module", "module", 1, n, module_code, src.tree))
    return src


def _is_docstring(stmt: ast.stmt) -> bool:
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
            and isinstance(stmt.value.value, str))


def _body_statements(unit: Unit) -> list[ast.stmt]:
    node = unit.node
    if node is None:
        return []
    body = list(getattr(node, "body", []))
    if body and _is_docstring(body[0]):
        body = body[1:]
    if unit.kind == "module":  # the module unit holds what is outside its functions
        body = [b for b in body if not isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return body


def body_lines(unit: Unit) -> frozenset[int]:
    """File lines of the unit's own statements: not its decorators or ``def`` line, not its
    docstring, not blank or comment-only lines -- the lines a finding may point at."""
    text = unit.file.text.split("\n")
    out = set()
    for stmt in _body_statements(unit):
        for n in range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1):
            line = text[n - 1].strip() if 0 < n <= len(text) else ""
            if line and not line.startswith("#"):
                out.add(n)
    return frozenset(out)


def code_span(unit: Unit) -> tuple[int, int]:
    """The lines a finding about the whole unit spans: a function from its first decorator or
    ``def`` to its end; the module's top-level code from its first to its last statement (no
    module docstring, no leading blank lines)."""
    if unit.kind != "module":
        return unit.start_line, unit.end_line
    lines = body_lines(unit)
    return (min(lines), max(lines)) if lines else (unit.start_line, unit.end_line)
