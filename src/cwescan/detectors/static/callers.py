"""Who calls a function of the same file, and with what: the one step of inter-procedural flow
the data flow (``taint.py``) takes.

A helper's parameter is caller-supplied (the weakest source). When a call in the same file hands
it outside data (``run(request.POST["ip"])`` calling ``def run(command): Popen(command,
shell=True)``), the parameter holds that data, and a finding in the helper rests on it. Only
calls that name the function unambiguously count: a module-level function called by its plain
name, a method called as ``self.name(...)`` from a method of the same class. The other
direction: what such a call returns, when the function reads a source itself or returns only
constants (``returns``). And across files: what another file of the scan hands a module-level
function (``handed_flow``; ``cwescan.core.handoffs``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from cwescan.core.handoffs import Handoff
from cwescan.detectors.static.flow import SOURCE_CONFIDENCE, TAINTED, Flow
from cwescan.detectors.static.patterns import positional_names

_FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef)


@dataclass(frozen=True)
class CallSite:
    """One call of a function of the file: the call, its enclosing functions (outermost
    first), how many leading parameters the call does not pass (1 for ``self``) and the
    function."""

    call: ast.Call
    funcs: tuple[ast.AST, ...]
    skipped: int
    target: ast.AST  # the function called


def call_sites(tree: ast.Module) -> dict[int, list[CallSite]]:
    """``id()`` of a function definition -> the calls of the file that reach it by name."""
    module_funcs = _unique(tree.body)
    methods = {id(c): _unique(c.body) for c in tree.body if isinstance(c, ast.ClassDef)}
    sites: dict[int, list[CallSite]] = {}
    # (node, enclosing functions, the class whose methods ``self.`` names there)
    stack: list[tuple[ast.AST, tuple, ast.ClassDef | None]] = [(tree, (), None)]
    while stack:
        node, funcs, cls = stack.pop()
        if isinstance(node, ast.Call):
            target, skipped = _target(node.func, module_funcs, methods.get(id(cls)) if cls else None)
            if target is not None:
                sites.setdefault(id(target), []).append(CallSite(node, funcs, skipped, target))
        for child in ast.iter_child_nodes(node):
            if isinstance(child, _FUNCS):
                # ``self`` in a method of a top-level class is that class's instance
                inner_cls = node if isinstance(node, ast.ClassDef) and id(node) in methods else None
                stack.append((child, (*funcs, child), inner_cls))
            elif isinstance(child, ast.ClassDef):
                stack.append((child, funcs, None))
            else:
                stack.append((child, funcs, cls))
    return sites


def bind(site: CallSite, func: ast.FunctionDef | ast.AsyncFunctionDef, name: str) -> ast.AST | None:
    """The argument expression ``site`` passes to parameter ``name`` of ``func`` (None: not
    passed, or passed through ``*args``/``**kwargs`` where its position is unknown)."""
    positional = positional_names(func)[site.skipped:]
    for i, arg in enumerate(site.call.args):
        if isinstance(arg, ast.Starred):
            break
        if i < len(positional) and positional[i] == name:
            return arg
    for kw in site.call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def _unique(body: list[ast.stmt]) -> dict[str, ast.AST]:
    """The functions defined once in ``body`` by name (a name defined twice is ambiguous)."""
    seen: dict[str, list[ast.AST]] = {}
    for stmt in body:
        if isinstance(stmt, _FUNCS):
            seen.setdefault(stmt.name, []).append(stmt)
    return {name: defs[0] for name, defs in seen.items() if len(defs) == 1}


def _target(func: ast.AST, module_funcs: dict[str, ast.AST],
            methods: dict[str, ast.AST] | None) -> tuple[ast.AST | None, int]:
    if isinstance(func, ast.Name) and func.id in module_funcs:
        return module_funcs[func.id], 0
    if (methods is not None and isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
            and func.value.id == "self" and func.attr in methods):
        method = methods[func.attr]
        static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in method.decorator_list)
        return method, 0 if static else 1
    return None, 0


def handed_flow(func, name: str, passed: dict[str, list[Handoff]]) -> Flow | None:
    """The strongest outside data another file of the scan hands module-level ``func`` as
    ``name`` (``passed``: function name -> handoffs; ``cwescan.core.handoffs``)."""
    handed = passed.get(getattr(func, "name", ""))
    if not handed:
        return None
    positional = positional_names(func)
    index = positional.index(name) if name in positional else None
    best: Flow | None = None
    for h in handed:
        if (h.keyword == name or (h.position is not None and h.position == index)) and (
                best is None or SOURCE_CONFIDENCE.get(h.source, 0) > best.confidence):
            best = Flow(TAINTED, h.source, f"{h.origin}, passed as `{name}` by {h.caller}",
                        built=h.built, safe_for=h.safe_for, chain=frozenset({name}),
                        entered=((h.caller_path, h.caller_line),))
    return best


def returns(func: ast.AST) -> list[ast.Return] | None:
    """The return statements of ``func`` itself (not of functions defined in it); None for a
    generator, whose call returns no value of its own."""
    out: list[ast.Return] = []
    stack = list(ast.iter_child_nodes(func))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Yield, ast.YieldFrom)):
            return None
        if isinstance(node, ast.Return):
            out.append(node)
        if not isinstance(node, (*_FUNCS, ast.Lambda, ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(node))
    return out
