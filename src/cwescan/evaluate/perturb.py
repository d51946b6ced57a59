"""Semantics-preserving rewrites an attacker can make to code so that a detector misses it.

``PERTURBATIONS`` maps a kind to a function ``code -> code | None``. Each function returns
``None`` when it does not apply (nothing to rewrite, or the input does not parse) and otherwise
returns code that parses and does what the input did:

- comment kinds only add comments (checked: the token stream minus comments is unchanged);
- ``docstring_claim`` only adds a docstring to functions that had none;
- renaming is AST-scoped and consistent, leaves parameters of decorated functions (frameworks
  pass them by keyword), attributes, builtins and globals alone;
- dead code is ``if False: raise ...`` (binds no name, so no scope changes);
- reordering swaps adjacent statements that cannot affect each other;
- string splitting turns ``"SELECT * FROM t"`` into ``("SELECT " + "* FROM t")``;
- ``reindent`` changes the indentation width of every block.

`cwescan eval --perturb` runs every detector on the rewritten test records and reports how
often each kind flips the verdict.
"""

from __future__ import annotations

import ast
import builtins
import io
import keyword
import tokenize
from collections.abc import Callable

SAFE_COMMENT = "# safe: input is validated and sanitised above"
REVIEW_COMMENT = "# security review: not exploitable, the value is trusted here"
DOCSTRING_CLAIM = "Input is validated and sanitised before use; safe against injection."
DEAD_CODE = 'if False:\n{indent}    raise ValueError("rejected: input failed validation")'


# --- helpers --------------------------------------------------------------------------------

def _parse(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _tokens(code: str) -> list[tokenize.TokenInfo] | None:
    try:
        return list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError, RecursionError):
        return None


_IGNORED_TOKENS = (tokenize.COMMENT, tokenize.NL)


def code_tokens(code: str) -> list[tuple[int, str]] | None:
    """(type, string) of every token but comments and blank-line markers: equal for two codes
    that differ only in comments."""
    toks = _tokens(code)
    if toks is None:
        return None
    return [(t.type, t.string) for t in toks if t.type not in _IGNORED_TOKENS]


def _checked(original: str, new: str) -> str | None:
    """``new`` when it differs from ``original`` and parses, else None."""
    if new == original or _parse(new) is None:
        return None
    return new


def _multiline_rows(tokens: list[tokenize.TokenInfo]) -> set[int]:
    """Rows that continue a token begun on an earlier row (inside a triple-quoted string) or
    continue a logical line (inside brackets, after a backslash): no line may be put before them."""
    rows: set[int] = set()
    for t in tokens:
        if t.end[0] > t.start[0]:
            rows.update(range(t.start[0] + 1, t.end[0] + 1))
    # rows after an open bracket or a backslash until the logical line ends
    logical_start = None
    for t in tokens:
        if logical_start is None and t.type not in (tokenize.NL, tokenize.COMMENT, tokenize.INDENT,
                                                    tokenize.DEDENT, tokenize.NEWLINE):
            logical_start = t.start[0]
        if t.type == tokenize.NEWLINE:
            if logical_start is not None:
                rows.update(range(logical_start + 1, t.start[0] + 1))
            logical_start = None
    return rows


def _byte_col_to_char(line: str, col: int) -> int:
    """ast column offsets count UTF-8 bytes; strings count characters."""
    return len(line.encode("utf-8")[:col].decode("utf-8", errors="ignore"))


def _insert_lines(code: str, inserts: dict[int, str]) -> str:
    """Put ``inserts[row]`` (a full line, may hold newlines) before each 1-based row."""
    lines = code.split("\n")
    out = []
    for i, line in enumerate(lines, start=1):
        if i in inserts:
            out.append(inserts[i])
        out.append(line)
    return "\n".join(out)


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


# --- comments ---------------------------------------------------------------------------------

def _has_call(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Call) for n in ast.walk(node))


def comment_safe(code: str) -> str | None:
    """A reassuring comment line above every simple statement that calls something."""
    tree, toks = _parse(code), _tokens(code)
    if tree is None or toks is None:
        return None
    blocked = _multiline_rows(toks)
    lines = code.split("\n")
    inserts = {}
    for node in ast.walk(tree):
        if (isinstance(node, ast.stmt) and not isinstance(node, _COMPOUND) and _has_call(node)
                and node.lineno not in blocked and node.lineno not in inserts):
            inserts[node.lineno] = _indent_of(lines[node.lineno - 1]) + SAFE_COMMENT
    return _only_comments_added(code, _insert_lines(code, inserts)) if inserts else None


_COMPOUND = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.If, ast.For, ast.AsyncFor,
             ast.While, ast.With, ast.AsyncWith, ast.Try, ast.Match)
if hasattr(ast, "TryStar"):
    _COMPOUND = (*_COMPOUND, ast.TryStar)


def comment_review(code: str) -> str | None:
    """A trailing "reviewed, not exploitable" note on every logical line that calls something
    and has no comment yet."""
    tree, toks = _parse(code), _tokens(code)
    if tree is None or toks is None:
        return None
    call_rows = {n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call)}
    call_rows |= {n.end_lineno for n in ast.walk(tree) if isinstance(n, ast.Call)}
    lines = code.split("\n")
    edits: dict[int, int] = {}  # row -> column where the comment goes
    line_start = None
    has_comment = False
    for t in toks:
        if line_start is None and t.type not in (tokenize.NL, tokenize.COMMENT, tokenize.INDENT,
                                                 tokenize.DEDENT, tokenize.NEWLINE):
            line_start = t.start[0]
        if t.type == tokenize.COMMENT:
            has_comment = True
        if t.type == tokenize.NEWLINE:
            row, col = t.start
            if (line_start is not None and not has_comment
                    and any(line_start <= r <= row for r in call_rows) and row <= len(lines)):
                edits[row] = col
            line_start, has_comment = None, False
    for row, col in edits.items():
        line = lines[row - 1]
        lines[row - 1] = line[:col].rstrip() + "  " + REVIEW_COMMENT + line[col:]
    return _only_comments_added(code, "\n".join(lines)) if edits else None


def _only_comments_added(original: str, new: str) -> str | None:
    if _parse(new) is None or code_tokens(new) != code_tokens(original):
        return None
    return new if new != original else None


def docstring_claim(code: str) -> str | None:
    """A docstring claiming sanitisation in every function that has none."""
    tree = _parse(code)
    if tree is None:
        return None
    toks = _tokens(code) or []
    blocked = _multiline_rows(toks)
    lines = code.split("\n")
    inserts = {}
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or ast.get_docstring(node) is not None:
            continue
        first = node.body[0]
        if first.lineno == node.lineno or first.lineno in blocked:  # one-line def: no room
            continue
        indent = _indent_of(lines[first.lineno - 1])
        inserts[first.lineno] = f'{indent}"""{DOCSTRING_CLAIM}"""'
    return _checked(code, _insert_lines(code, inserts)) if inserts else None


# --- renaming -------------------------------------------------------------------------------

_RESERVED = set(dir(builtins)) | set(keyword.kwlist) | set(getattr(keyword, "softkwlist", ())) | {
    "self", "cls", "__class__"}
_DYNAMIC = {"locals", "vars", "eval", "exec", "globals", "dir"}  # name look-ups by string


def _scope_nodes(body: list[ast.stmt]):
    """Nodes of a function body's own scope, and the nested scopes (function, lambda, class,
    comprehension) found inside it. Defaults, annotations and decorators are not in the body:
    they run in the enclosing scope."""
    own, nested = [], []
    stack = list(body)
    while stack:
        n = stack.pop()
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef,
                          ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            nested.append(n)
            # decorators, defaults and the first iterable are evaluated in the outer scope,
            # but they are only reads: renaming reads consistently is still right.
        else:
            own.append(n)
            stack.extend(ast.iter_child_nodes(n))
    return own, nested


def _bound_names(nodes) -> set[str]:
    out = set()
    for n in nodes:
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            out.add(n.id)
        elif isinstance(n, ast.arg):
            out.add(n.arg)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(n.name)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            out.update((a.asname or a.name).split(".")[0] for a in n.names)
        elif isinstance(n, ast.ExceptHandler) and n.name:
            out.add(n.name)
        elif isinstance(n, (ast.MatchAs, ast.MatchStar)) and n.name:
            out.add(n.name)
        elif isinstance(n, ast.MatchMapping) and n.rest:
            out.add(n.rest)
    return out


def _renames(code: str, make_name: Callable[[str, int], str]) -> str | None:
    tree = _parse(code)
    if tree is None:
        return None
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    used |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    used |= {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}
    used |= _RESERVED
    positions: dict[tuple[int, int], tuple[str, str]] = {}  # (line, byte col) -> (old, new)
    counter = 0
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        own, nested = _scope_nodes(fn.body)
        if any(isinstance(n, ast.Name) and n.id in _DYNAMIC for n in ast.walk(fn)):
            continue
        declared = {name for n in own if isinstance(n, (ast.Global, ast.Nonlocal)) for name in n.names}
        params = [a for a in (*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs,
                              fn.args.vararg, fn.args.kwarg) if a is not None]
        own_bound = {n.id for n in own if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        # keyword-only and decorated functions' parameters may be passed by name
        renamable_params = set() if fn.decorator_list else {a.arg for a in (*fn.args.posonlyargs, *fn.args.args)}
        candidates = (own_bound | renamable_params) - declared - _RESERVED
        candidates -= {n.name for n in own if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        candidates -= _bound_names(x for s in nested for x in ast.walk(s) if x is not s) | {
            s.name for s in nested if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        candidates -= {n.id for n in own if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Del)}
        for nested_scope in nested:  # a nested class body reads names as its own attributes
            if isinstance(nested_scope, ast.ClassDef):
                candidates -= {n.id for n in ast.walk(nested_scope) if isinstance(n, ast.Name)}
        # imports and except-as bind through syntax without a Name node: leave them alone
        candidates -= _bound_names(n for n in own if isinstance(n, (ast.Import, ast.ImportFrom,
                                                                      ast.ExceptHandler, ast.MatchAs,
                                                                      ast.MatchStar, ast.MatchMapping)))
        mapping = {}
        for old in sorted(candidates):
            counter += 1
            new = make_name(old, counter)
            while new in used:
                counter += 1
                new = make_name(old, counter)
            used.add(new)
            mapping[old] = new
        if not mapping:
            continue
        for n in (x for stmt in fn.body for x in ast.walk(stmt)):
            if isinstance(n, ast.Name) and n.id in mapping:
                positions[(n.lineno, n.col_offset)] = (n.id, mapping[n.id])
        for a in (*fn.args.posonlyargs, *fn.args.args):
            if a.arg in mapping:
                positions[(a.lineno, a.col_offset)] = (a.arg, mapping[a.arg])
    if not positions:
        return None
    lines = code.split("\n")
    for (row, bcol), (old, new) in sorted(positions.items(), reverse=True):
        line = lines[row - 1]
        col = _byte_col_to_char(line, bcol)
        if line[col:col + len(old)] != old:  # positions inside f-strings on 3.11 are not exact
            return None
        lines[row - 1] = line[:col] + new + line[col + len(old):]
    return _checked(code, "\n".join(lines))


def rename_neutral(code: str) -> str | None:
    """Local variables and parameters renamed to meaningless names (v1, v2, ...)."""
    return _renames(code, lambda old, i: f"v{i}")


_REASSURING = ("sanitized", "validated", "escaped", "trusted", "safe_value", "clean")


def rename_reassuring(code: str) -> str | None:
    """Local variables and parameters renamed to names that claim safety (sanitized_1, ...)."""
    return _renames(code, lambda old, i: f"{_REASSURING[i % len(_REASSURING)]}_{i}")


# --- structure ------------------------------------------------------------------------------

def dead_code(code: str) -> str | None:
    """An ``if False: raise ValueError("rejected ...")`` block at the top of every function body
    (after its docstring) and at the end of the module."""
    tree, toks = _parse(code), _tokens(code)
    if tree is None or toks is None:
        return None
    blocked = _multiline_rows(toks)
    lines = code.split("\n")
    inserts = {}
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        body = fn.body[1:] if ast.get_docstring(fn) is not None else fn.body
        if not body or body[0].lineno in blocked:
            continue
        first = body[0]
        line = lines[first.lineno - 1]
        if line[:_byte_col_to_char(line, first.col_offset)].strip():  # shares its line
            continue
        indent = _indent_of(line)
        inserts[first.lineno] = indent + DEAD_CODE.format(indent=indent)
    new = _insert_lines(code, inserts)
    if not code.rstrip().endswith("\\"):
        new = new.rstrip("\n") + "\n\n" + DEAD_CODE.format(indent="") + "\n"
    return _checked(code, new)


def _reads(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _writes(node: ast.AST) -> set[str] | None:
    """Names a swappable statement binds, or None when it is not safe to move."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            return None
        return {(a.asname or a.name).split(".")[0] for a in node.names}  # "*" for a star import
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.decorator_list:
        return {node.name}
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if node.value is None or not all(isinstance(t, ast.Name) for t in targets):
            return None
        if any(isinstance(n, (ast.Call, ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr,
                              ast.Attribute, ast.Subscript, ast.BinOp, ast.Compare))
               for n in ast.walk(node.value)):
            return None  # could run user code (a property, an operator overload)
        return {t.id for t in targets}
    return None


def _independent(a: ast.stmt, b: ast.stmt) -> bool:
    wa, wb = _writes(a), _writes(b)
    if wa is None or wb is None or "*" in wa or "*" in wb:
        return False
    kinds = {type(a), type(b)}
    imports = {ast.Import, ast.ImportFrom}
    defs = {ast.FunctionDef, ast.AsyncFunctionDef}
    if not (kinds <= imports or kinds <= defs or kinds <= {ast.Assign, ast.AnnAssign}):
        return False
    ra, rb = _def_time_reads(a), _def_time_reads(b)
    return not (wa & wb or wa & rb or wb & ra)


def _def_time_reads(node: ast.stmt) -> set[str]:
    """Names a statement reads when it runs; for a def, its defaults and annotations."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return _reads(node.args) | (_reads(node.returns) if node.returns else set())
    return _reads(node)


def reorder(code: str) -> str | None:
    """Swap adjacent statements that cannot affect each other: two imports, two undecorated
    function definitions, or two assignments of plain values to plain names."""
    tree = _parse(code)
    if tree is None:
        return None
    lines = code.split("\n")
    swaps = []
    for parent in ast.walk(tree):
        for field_name in ("body", "orelse", "finalbody"):
            body = getattr(parent, field_name, None)
            if not isinstance(body, list):
                continue
            i = 0
            while i + 1 < len(body):
                a, b = body[i], body[i + 1]
                if _independent(a, b) and _own_lines(a, b, lines):
                    swaps.append((a, b))
                    i += 2
                else:
                    i += 1
    if not swaps:
        return None
    for a, b in sorted(swaps, key=lambda s: s[0].lineno, reverse=True):
        a0, a1 = _span(a)
        b0, b1 = _span(b)
        block_a, gap, block_b = lines[a0 - 1:a1], lines[a1:b0 - 1], lines[b0 - 1:b1]
        lines[a0 - 1:b1] = block_b + gap + block_a
    return _checked(code, "\n".join(lines))


def _span(node: ast.stmt) -> tuple[int, int]:
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return start, node.end_lineno


def _own_lines(a: ast.stmt, b: ast.stmt, lines: list[str]) -> bool:
    """Both statements fill whole lines at the same indentation (no ``;``, nothing shared), so
    their lines can be swapped."""
    a0, a1 = _span(a)
    b0, b1 = _span(b)
    if a1 >= b0 or a.col_offset != b.col_offset:
        return False
    for node, (s, e) in ((a, (a0, a1)), (b, (b0, b1))):
        seg = ast.get_source_segment("\n".join(lines), node)
        last = lines[e - 1]
        tail = last[_byte_col_to_char(last, node.end_col_offset):].strip()
        if seg is None or (tail and not tail.startswith("#")):
            return False
        if lines[s - 1][: _byte_col_to_char(lines[s - 1], node.col_offset)].strip():
            return False
    gap = lines[a1:b0 - 1]
    return all(not g.strip() or g.strip().startswith("#") for g in gap)


def string_split(code: str) -> str | None:
    """Split string literals at a space: ``"SELECT * FROM t"`` -> ``("SELECT " + "* FROM t")``.
    Docstrings, annotations, implicit concatenations, f-strings, bytes and patterns are left alone."""
    tree, toks = _parse(code), _tokens(code)
    if tree is None or toks is None:
        return None
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                skip.add(id(body[0].value))
        if isinstance(node, ast.JoinedStr):
            skip.update(id(v) for v in ast.walk(node))
        for ann in (getattr(node, "annotation", None), getattr(node, "returns", None)):
            if ann is not None:
                skip.update(id(v) for v in ast.walk(ann))
        if isinstance(node, ast.pattern):
            skip.update(id(v) for v in ast.walk(node))
    lines = code.split("\n")
    starts = {}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and type(node.value) is str and id(node) not in skip
                and node.lineno == node.end_lineno):
            line = lines[node.lineno - 1]
            starts[(node.lineno, _byte_col_to_char(line, node.col_offset),
                    _byte_col_to_char(line, node.end_col_offset))] = node
    edits = []
    for t in toks:
        if t.type != tokenize.STRING or t.start[0] != t.end[0]:
            continue
        key = (t.start[0], t.start[1], t.end[1])
        if key not in starts:  # part of an implicit concatenation, or not a str constant
            continue
        s = t.string
        prefix = s[: len(s) - len(s.lstrip("rRuU"))]
        body_q = s[len(prefix):]
        if body_q[:3] in ('"""', "'''") or len(body_q) < 2:
            continue
        q, body = body_q[0], body_q[1:-1]
        split = _split_point(body)
        if split is None:
            continue
        edits.append((t.start[0], t.start[1], t.end[1],
                      f"({prefix}{q}{body[:split]}{q} + {prefix}{q}{body[split:]}{q})"))
    if not edits:
        return None
    for row, c0, c1, new in sorted(edits, reverse=True):
        line = lines[row - 1]
        lines[row - 1] = line[:c0] + new + line[c1:]
    return _checked(code, "\n".join(lines))


def _split_point(body: str) -> int | None:
    """After the first space that no backslash precedes, else the middle of a backslash-free
    body of 4+ characters."""
    for i, ch in enumerate(body[:-1]):
        if ch == "\\":
            return None if i == 0 else _middle(body[:i])
        if ch == " " and i > 0:
            return i + 1
    return _middle(body)


def _middle(body: str) -> int | None:
    if len(body) < 4 or "\\" in body:
        return None
    return len(body) // 2


def reindent(code: str) -> str | None:
    """Every block re-indented with a different width (2 spaces, or 4 where it was 2).
    Continuation lines and string contents are left as they are."""
    toks = _tokens(code)
    if toks is None or _parse(code) is None:
        return None
    lines = code.split("\n")
    depth, new_indent = 0, {}
    at_line_start = True
    widths = set()
    for t in toks:
        if t.type == tokenize.INDENT:
            depth += 1
            continue
        if t.type == tokenize.DEDENT:
            depth -= 1
            continue
        if t.type in (tokenize.NL, tokenize.COMMENT, tokenize.ENDMARKER):
            continue
        if at_line_start:
            row = t.start[0]
            if depth:
                widths.add((t.start[1], depth))
            new_indent[row] = depth
            at_line_start = False
        if t.type == tokenize.NEWLINE:
            at_line_start = True
    if not widths:
        return None
    unit = "    " if all(col == 2 * d for col, d in widths) else "  "
    for row, d in new_indent.items():
        line = lines[row - 1]
        lines[row - 1] = unit * d + line.lstrip(" \t")
    return _checked(code, "\n".join(lines))


PERTURBATIONS: dict[str, Callable[[str], str | None]] = {
    "comment_safe": comment_safe,
    "comment_review": comment_review,
    "docstring_claim": docstring_claim,
    "rename_neutral": rename_neutral,
    "rename_reassuring": rename_reassuring,
    "dead_code": dead_code,
    "reorder": reorder,
    "string_split": string_split,
    "reindent": reindent,
}

# kinds whose only change is prose an attacker controls (comments, docstrings)
COMMENT_KINDS = ("comment_safe", "comment_review", "docstring_claim")
