"""The outside data a file hands to the functions it imports (``cwescan.core.handoffs`` says
why the scan wants them).

Only arguments the data flow traces to data a remote client chose count (request data, a URL
parameter, an upload, the network; in a file that imports a web framework or server), not the
command line, ``input()`` or the environment, and not another caller-supplied parameter: that
would be a second step, which the scan does not take. A call counts when its callee is a name the
file imported (``helpers.run_cmd(...)``, ``run_cmd(...)`` after ``from .helpers import
run_cmd``); builtins and the file's own functions (``callers.py``) do not.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import sys
from pathlib import PurePosixPath

from cwescan.core.handoffs import Handoff
from cwescan.detectors.static.context import Context
from cwescan.detectors.static.flow import REMOTE_SOURCES, TAINTED, Flow
from cwescan.detectors.static.patterns import dotted
from cwescan.detectors.static.sources import lambda_handler

_FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


@functools.cache
def _installed() -> frozenset[str]:
    """Top-level names of the standard library and of the installed distributions."""
    names = set(sys.stdlib_module_names)
    try:
        names.update(importlib.metadata.packages_distributions())
    except Exception:  # noqa: BLE001 - broken metadata of some distribution: stdlib only
        pass
    return frozenset(names)


def _may_be_scanned(ctx: Context, head: str, callee: str) -> bool:
    """Whether the callee may be a function of the scanned project rather than of a library:
    imported relatively, from a package named like a folder of this file's own path, or from a
    module neither the standard library nor an installed distribution provides. (Following
    every call would cost the static pass half again its time, for calls into libraries.)"""
    if head in ctx.relative:
        return True
    top = callee.partition(".")[0]
    return top in PurePosixPath(ctx.path).parts[:-1] or top not in _installed()


def handoffs_of(ctx: Context) -> list[Handoff]:
    """Every argument of a call to an imported function that carries outside data. Call after
    the rules' walk, which records the file's imports in ``ctx``."""
    web = ctx.imports_web_framework()
    if not (web or ctx.imported("socket") or any(lambda_handler(n) for n in ctx.tree.body)):
        return []  # what the flow would find here is no remote client's (see _remote)
    out: list[Handoff] = []
    stack: list[tuple[ast.AST, tuple]] = [(ctx.tree, ())]
    while stack:
        node, funcs = stack.pop()
        if isinstance(node, ast.Call):
            out.extend(_handed(node, funcs, ctx, web))
        for child in ast.iter_child_nodes(node):
            stack.append((child, (*funcs, child) if isinstance(child, _FUNCS) else funcs))
    return out


def _handed(call: ast.Call, funcs: tuple, ctx: Context, web: bool) -> list[Handoff]:
    name = dotted(call.func)
    if name is None or not (call.args or call.keywords):
        return []
    head = name.partition(".")[0]
    if head not in ctx.aliases and head not in ctx.imports:
        return []  # a builtin, a local, or a function of this file
    callee = ctx.qualname(call) or name
    if not _may_be_scanned(ctx, head, callee):
        return []
    function = getattr(funcs[-1], "name", "") if funcs else ""  # "" at module level or in a lambda
    args: list[tuple[ast.AST, int | None, str | None]] = []
    for i, arg in enumerate(call.args):
        if isinstance(arg, ast.Starred):
            break  # positions after it are unknown
        args.append((arg, i, None))
    args += [(kw.value, None, kw.arg) for kw in call.keywords if kw.arg is not None]
    out = []
    for arg, position, keyword in args:
        if isinstance(arg, ast.Constant):
            continue
        flow = ctx.analyzer.flow(arg, list(funcs))
        if flow.level == TAINTED and _remote(flow, web):
            out.append(Handoff(callee, position, keyword, flow.source, flow.origin, ctx.path, call.lineno,
                               function, built=flow.built, safe_for=flow.safe_for))
    return out


def _remote(flow: Flow, web: bool) -> bool:
    """Data a remote client chose: not the command line, input() or the environment (the
    program's own user and configuration: a CLI's helpers open the files it is told to); request
    data in a ``web`` file (importing a web framework or server) or a Lambda handler's event,
    since a parameter named ``request`` elsewhere is some other request (an installer's
    requirement ``req``, an HTTP client's request); network data anywhere."""
    return flow.source in REMOTE_SOURCES and (flow.source == "network" or web or "Lambda" in flow.origin)
