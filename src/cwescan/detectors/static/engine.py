"""One AST walk per file, dispatching each node to the rules registered for its type.

Call rules are indexed by the last name of the callee (``execute`` for ``cur.execute(...)``),
so a call costs one dict lookup unless some rule cares about that name. A rule that raises is
counted in ``StaticDetector.errors`` and skipped for that node; the walk goes on.
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Iterable, Sequence

from cwescan.core.astwalk import walk
from cwescan.core.handoffs import Handoff
from cwescan.detectors.base import FileCheck, ProjectDetector
from cwescan.detectors.static import rules as _rules  # noqa: F401  (registers the rules)
from cwescan.detectors.static.context import Context
from cwescan.detectors.static.handoffs import handoffs_of
from cwescan.detectors.static.registry import RULES, Hit, Rule
from cwescan.detectors.static.patterns import last_name
from cwescan.core.findings import SEVERITIES, Finding
from cwescan.core.units import SourceFile

_FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
_SKIP = (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)


def _is_str(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def fold_string_concatenation(tree: ast.AST) -> None:
    """Fold ``"SELECT " + "* FROM t"`` into one string constant, in place.

    Rules that read a query or a credential from one constant are otherwise evaded by splitting
    the literal (measured: docs/ROBUSTNESS.md, ``string_split``). The fold keeps what the code
    does and its locations. It visits nodes children-first without recursion, so a long chain of
    ``+`` cannot exhaust the stack."""
    for parent in reversed(list(walk(tree))):  # breadth-first reversed: children first
        for field_name in parent._fields:
            value = getattr(parent, field_name, None)
            if isinstance(value, list):
                for i, child in enumerate(value):
                    if type(child) is ast.BinOp:  # only a BinOp folds: skip the call for the rest
                        folded = _folded(child)
                        if folded is not None:
                            value[i] = folded
            elif type(value) is ast.BinOp:
                folded = _folded(value)
                if folded is not None:
                    setattr(parent, field_name, folded)


def _folded(node) -> ast.Constant | None:
    if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add)
            and _is_str(node.left) and _is_str(node.right)):
        return ast.copy_location(ast.Constant(node.left.value + node.right.value), node)
    return None


class RuleIndex:
    def __init__(self, rules: Iterable[Rule]) -> None:
        self.by_type: dict[type, list[Rule]] = {}
        self.calls_by_name: dict[str, list[Rule]] = {}
        self.calls_any: list[Rule] = []
        for r in rules:
            for t in r.node_type if isinstance(r.node_type, tuple) else (r.node_type,):
                if t is ast.Call and r.calls is not None:
                    for name in r.calls:
                        self.calls_by_name.setdefault(name, []).append(r)
                elif t is ast.Call:
                    self.calls_any.append(r)
                else:
                    self.by_type.setdefault(t, []).append(r)

    def for_node(self, node: ast.AST, aliases: dict[str, str] | None = None) -> list[Rule]:
        """The rules to run on ``node``; a call is matched by its callee's last name, the name it
        was imported under when ``aliases`` (local name -> qualified name) knows it
        (``from os import system as run; run(cmd)`` is ``system``)."""
        if type(node) is ast.Call:
            name = last_name(node.func)
            if aliases and isinstance(node.func, ast.Name) and name in aliases:
                name = aliases[name].rsplit(".", 1)[-1]
            named = self.calls_by_name.get(name)
            if named:
                return named + self.calls_any if self.calls_any else named
            return self.calls_any
        return self.by_type.get(type(node), [])


def _lower(severity: str) -> str:
    return SEVERITIES[max(0, SEVERITIES.index(severity) - 1)]


def check_tree(ctx: Context, index: RuleIndex, errors: Counter) -> list[Finding]:
    path, tree = ctx.path, ctx.tree
    findings: list[Finding] = []
    seen: set[tuple[str, int]] = set()
    stack: list[tuple[ast.AST, ast.stmt | None, tuple]] = [(tree, None, ())]
    while stack:
        node, stmt, funcs = stack.pop()
        t = type(node)
        if t is ast.Import or t is ast.ImportFrom:
            ctx.add_import(node)
        rules = index.for_node(node, ctx.aliases)
        if rules:
            ctx.func = funcs[-1] if funcs else None
            ctx.funcs = list(funcs)
            ctx.stmt = stmt
            for r in rules:
                try:
                    for hit in r.check(node, ctx):
                        f = _finding(path, r, hit, stmt)
                        key = (r.id, f.start_line)
                        if key not in seen:
                            seen.add(key)
                            findings.append(f)
                except RecursionError:
                    errors[r.id] += 1
                except Exception:  # a rule's bug must not stop the walk
                    errors[r.id] += 1
        if t is ast.Name or t is ast.Constant:
            continue  # leaves (about half of all nodes): nothing below them to visit
        if isinstance(node, ast.stmt):
            stmt = node
        if t in _FUNCS:
            funcs = (*funcs, node)
        children = [c for c in ast.iter_child_nodes(node) if not isinstance(c, _SKIP)]
        for child in reversed(children):
            stack.append((child, stmt, funcs))
    return findings


def _finding(path: str, r: Rule, hit: Hit, stmt: ast.stmt | None) -> Finding:
    # the flagged statement; for a compound one (with/if/for...) only the flagged node's lines
    span = stmt if stmt is not None and not hasattr(stmt, "body") else hit.node
    if hit.node is not None and getattr(hit.node, "lineno", None) and not (
            span.lineno <= hit.node.lineno <= (span.end_lineno or span.lineno)):
        span = hit.node
    start = span.lineno
    return Finding(
        path=path, start_line=start, end_line=max(start, span.end_lineno or start),
        cwe=hit.cwe or r.cwe, rule_id=r.id, title=r.title, message=hit.message,
        confidence=round(hit.confidence, 4),
        severity=_lower(r.severity) if hit.lower_severity else r.severity, detector="static",
        extra={"related": [{"path": p, "line": n} for p, n in hit.related]} if hit.related else {})


class StaticDetector(ProjectDetector):
    """AST rules with a light intraprocedural data flow (see ``docs/RULES.md``).

    Options: ``select`` (rule ids such as "CWS089", or CWEs such as "CWE-22", to run; default
    all), ``ignore`` (rule ids or CWEs to skip).
    """

    name = "static"

    def __init__(self, select: Sequence[str] | None = None, ignore: Sequence[str] = ()) -> None:
        def matches(r: Rule, keys) -> bool:
            return any(k == r.id or k.upper() == r.cwe for k in keys)

        chosen = [r for r in RULES.values()
                  if (not select or matches(r, select)) and not matches(r, ignore)]
        self.rules = chosen
        self.index = RuleIndex(chosen)
        self.errors: Counter = Counter()  # rule id -> exceptions caught

    def rule_docs(self) -> dict[str, tuple[str, str]]:
        return {rid: (r.summary, r.doc) for rid, r in RULES.items() if r.doc}

    def check_file(self, src: SourceFile, passed: dict[str, list[Handoff]] | None = None,
                   handoffs: bool = True) -> FileCheck:
        tree = src.tree  # for a file with syntax errors, the tree of its repaired lines
        if tree is None:
            return FileCheck([])
        fold_string_concatenation(tree)
        ctx = Context(src.path, tree, passed)
        findings = check_tree(ctx, self.index, self.errors)
        return FileCheck(findings, handoffs_of(ctx) if handoffs else [])

