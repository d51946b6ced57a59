"""Split a Python source file into the units every detector sees.

A unit is one function or method (with its decorators, and for a method the enclosing class
names in its qualname) or the module's top-level code. Units keep exact file line spans: the
line i of ``unit.code`` is line ``unit.start_line + i - 1`` of the file. The module unit is the
whole file with the lines of every function unit blanked, so it holds imports, constants, class
bodies and script code without repeating what the function units already cover.
"""

from __future__ import annotations

import ast
import warnings
from dataclasses import dataclass, field


@dataclass
class SourceFile:
    path: str  # posix path relative to the scan root (or a record id in evaluation)
    text: str
    tree: ast.Module | None = None  # None when the file does not parse
    error: str | None = None  # why the file did not parse
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


def node_span(node: ast.AST) -> tuple[int, int]:
    """Lines of a def including its decorators."""
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return start, node.end_lineno or node.lineno


def parse_source(path: str, text: str) -> SourceFile:
    """Parse ``text`` and split it into units. A file that does not parse gets a single module
    unit over the whole text (models can still read it) and ``error`` says why."""
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
        src.error = f"{type(e).__name__}: {e}"
        src.units = [Unit(src, "module", "module", 1, n, text)]
        return src

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
