"""Triage: which units the model stage must review, and which a confident static pass clears.

A unit goes to the model when

- the static stage flagged something inside it (the model gives its second opinion), or
- it touches a security-relevant surface: it calls a sink the static rules know with
  something other than literals, or reads a source their data flow knows (an HTTP request
  field, ``input()``, ``sys.argv``, the environment). A sink called with literals only
  (``redirect("/posts")``) is not a surface: no outside data reaches it, and what is weak
  about such a call itself (a weak hash, a debug flag) is for the rules.

Everything else is *cleared*: it calls no API any rule inspects, so neither the rules nor the
model's training data give a reason to look at it, and the model is not run on it.

The sinks come from the rule catalogue itself (``calls=`` of every call rule in
``cwescan.detectors.static.RULES``), not from a second hand-kept list, so a new rule widens
triage by itself. A callee's last name alone is too weak for names that every program uses
(``get``, ``format``, ``split``, ``open``, ``run``...), so a call counts as a sink when its
name is in the catalogue and

- it resolves through the file's imports (``os.system``, ``from subprocess import run``,
  ``hashlib.md5``, ``requests.get``) or through a name the file never binds (a snippet whose
  imports were cut off: ``subprocess.call(x)``, ``urlopen(url)``), or
- it is a bare call of a builtin the catalogue names (``eval``, ``exec``, ``open``,
  ``compile``; not ``format``, which the catalogue means as the str method), or
- it is a method call whose name is *distinctive*: not a method of Python's builtin types
  (str, bytes, dict, list, set, file objects...) nor a builtin function, and not one of the
  few catalogue names that are also everyday method names in any code base (``run``,
  ``call``, ``get``, ``save``, ``parse`` ... see ``AMBIGUOUS_METHODS``): ``cur.execute``,
  ``yaml.load``-like ``loader.load``, ``tar.extractall``, ``pattern.sub``.

What triage costs in recall is measured, not assumed: ``docs/SCANNING.md``.
"""

from __future__ import annotations

import ast
import builtins
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from cwescan.core.astwalk import walk
from cwescan.detectors.static.patterns import dotted
from cwescan.detectors.static.sources import REQUEST_CONSUMERS, is_request, request_field
from cwescan.core.findings import Finding, in_unit
from cwescan.core.units import Unit

REVIEW_MODES = ("triage", "all")
# verdicts a first stage may overturn: a surface only, no rule finding, an AST to judge
FIRST_STAGE_KINDS = frozenset({"sink", "source"})

# Catalogue names that are also everyday method names on any object: as a method on a local
# object they say nothing about security (``self.run()``, ``parser.parse()``, ``obj.save()``),
# so they count only when they resolve through an import (``subprocess.run``,
# ``xml.etree.ElementTree.parse``). Names of builtin-type methods are derived below.
AMBIGUOUS_METHODS = frozenset({
    "run", "call", "spawn", "new", "text", "raw", "save", "generate", "request", "fetch",
    "delete", "put", "post", "patch", "head", "options", "stream", "parse", "load", "decode",
    "open", "read", "move", "copy", "remove", "rename", "extra", "match", "search", "sub",
    "split", "compile", "Request", "Environment", "Cipher", "choice", "sample", "shuffle",
    "random", "uniform", "randint", "get", "format", "setup", "Template", "login", "push",
    "filter", "order_by", "group_by", "having", "distinct", "where",
})


@lru_cache(maxsize=1)
def sink_names() -> frozenset[str]:
    """Every callee name a call rule of the static catalogue inspects, but those only some rule's
    minor calls (a path probe) and no other rule's sink."""
    from cwescan.detectors.static import RULES

    names: set[str] = set()
    for rule in RULES.values():
        if rule.calls:
            names |= rule.calls - rule.minor_calls
    return frozenset(names)


@lru_cache(maxsize=1)
def _builtin_type_methods() -> frozenset[str]:
    kinds = (str, bytes, bytearray, dict, list, set, frozenset, tuple, int, float, object,
             io.TextIOWrapper, io.BufferedReader, io.BytesIO, io.StringIO)
    return frozenset(name for k in kinds for name in dir(k))


@lru_cache(maxsize=1)
def distinctive_methods() -> frozenset[str]:
    """Catalogue names that mark a sink even as a method on a local object."""
    common = _builtin_type_methods() | frozenset(dir(builtins)) | AMBIGUOUS_METHODS
    return frozenset(sink_names() - common)


# a catalogue name that is also a str method (``format``) targets the method, not the builtin
_STR_METHODS = frozenset(dir(str))

# taint sources (cwescan.detectors.static.flow and .taint): reading one makes a unit worth the model
_SOURCE_CALLS = frozenset({"input", "raw_input", "os.getenv", "os.environ.get", "getenv"})
_SOURCE_NAMES = frozenset({"sys.argv", "os.environ", "sys.stdin"})


@dataclass
class Verdict:
    review: bool
    kind: str  # "static-finding", "sink", "source", "unparsed", "forced" or "no-surface"
    detail: str = ""  # "os.system", "request.args" ...


def file_imports(tree: ast.AST | None) -> dict[str, str]:
    """Local name -> what it was imported as, over the whole file (any scope): ``{"sp":
    "subprocess", "run": "subprocess.run"}``."""
    out: dict[str, str] = {}
    if tree is None:
        return out
    for node in walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            for a in node.names:
                out[a.asname or a.name] = f"{node.module or ''}.{a.name}".lstrip(".")
    return out


def file_bindings(tree: ast.AST | None) -> frozenset[str]:
    """Every name the file binds anywhere: assignments, parameters, defs, classes, imports,
    loop and ``with`` targets. A name called but bound nowhere comes from outside the file
    (a snippet whose imports were cut off, a star import)."""
    out: set[str] = set()
    if tree is None:
        return frozenset()
    for node in walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            out.add(node.id)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
            out.add(node.name)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            out.update(node.names)
    return frozenset(out)


def _unit_nodes(unit: Unit) -> Iterator[ast.AST]:
    """The nodes of a unit: a function with everything nested in it; the module without the
    function units (they are units of their own)."""
    if unit.node is None:
        return
    if unit.kind != "module":
        yield from walk(unit.node)
        return
    stack = [unit.node]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                stack.append(child)


class Surface(NamedTuple):
    """Where a unit touches a security-relevant surface: ("sink", "subprocess.run", 12)."""

    kind: str  # "sink" or "source"
    what: str
    line: int  # 1-based line in the file

    def as_dict(self) -> dict:
        return {"kind": self.kind, "what": self.what, "line": self.line}


FileNames = tuple[dict[str, str], frozenset[str]]
_NAMES = "_surface_names"  # where a parsed file keeps its FileNames


def file_names(file) -> FileNames:
    """(``file_imports``, ``file_bindings``) of a parsed file, worked out once per file and kept
    with it: triage, the model's focus lines and the explanations of model findings all ask for
    them, unit by unit, and each is a walk of the whole file."""
    names = file.__dict__.get(_NAMES)
    if names is None:
        names = file.__dict__[_NAMES] = (file_imports(file.tree), file_bindings(file.tree))
    return names


def keep_file_names(file, names: FileNames) -> None:
    """Give ``file`` the ``file_names`` worked out on another parse of the same text (a worker
    process's), so that this process need not walk the whole file twice again."""
    file.__dict__[_NAMES] = names


def unit_surface(unit: Unit) -> Surface | None:
    """``surface`` of one unit (None without an AST)."""
    if unit.file.tree is None or unit.node is None:
        return None
    return surface(unit, *file_names(unit.file))


def surface(unit: Unit, imports: dict[str, str],
            bound: frozenset[str] = frozenset()) -> Surface | None:
    """How ``unit`` touches a security-relevant surface, as (kind, what, line): ("sink",
    "subprocess.run", 12), ("source", "request.args", 9); None when it does not. ``bound``: names
    the file binds (``file_bindings``); a call through a name bound nowhere and not a builtin
    is taken as imported under that name (``subprocess.call(x)`` in a snippet without its
    import)."""
    return next(surfaces(unit, imports, bound), None)


def reads_source(unit: Unit) -> bool:
    """Whether ``unit`` reads an untrusted source (a request field, ``input()``, the environment...)."""
    if unit.file.tree is None or unit.node is None:
        return False
    return any(s.kind == "source" for s in surfaces(unit, *file_names(unit.file)))


def surface_lines(unit: Unit) -> frozenset[int]:
    """File lines of every sink call and source read in ``unit`` (empty without an AST)."""
    if unit.file.tree is None or unit.node is None:
        return frozenset()
    return frozenset(s.line for s in surfaces(unit, *file_names(unit.file)))


def focus_lines(unit: Unit, findings: Sequence[Finding] = ()) -> frozenset[int]:
    """Unit-relative lines a model reads a long unit around (``cwescan.ml.focus``): its sink
    calls and source reads, and the lines of those ``findings`` (rule findings) that lie in it."""
    lines = surface_lines(unit) | {f.start_line for f in findings if in_unit(f, unit)}
    return frozenset(line - unit.start_line + 1 for line in lines)


def surfaces(unit: Unit, imports: dict[str, str],
             bound: frozenset[str] = frozenset()) -> Iterator[Surface]:
    """Every place where ``unit`` touches a security-relevant surface (``surface``), in walk
    order."""
    sinks, distinctive = sink_names(), distinctive_methods()
    for node in _unit_nodes(unit):
        if isinstance(node, ast.Call):
            func = node.func
            name = dotted(func)
            last = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if last is None:
                continue
            head, _, rest = (name or "").partition(".")
            resolved = imports.get(head) if name else None
            if name and resolved is None and head not in bound and not hasattr(builtins, head):
                resolved = head  # free name: an import we cannot see
            qual = (f"{resolved}.{rest}" if rest else resolved) if resolved else name
            if qual in _SOURCE_CALLS or (resolved and qual.endswith((".getenv", ".environ.get"))):
                yield Surface("source", qual, node.lineno)
                continue
            if last not in sinks or _literal_call(node, last):
                continue
            if resolved:
                yield Surface("sink", qual, node.lineno)
            elif isinstance(func, ast.Name) and hasattr(builtins, last) and last not in _STR_METHODS:
                yield Surface("sink", f"{last}()", node.lineno)
            elif isinstance(func, ast.Attribute) and last in distinctive:
                yield Surface("sink", f".{last}()", node.lineno)
        elif isinstance(node, ast.Attribute):
            field = request_field(node)
            if field:
                yield Surface("source", field, node.lineno)
                continue
            name = dotted(node)
            if name:
                head, _, rest = name.partition(".")
                qual = f"{imports[head]}.{rest}" if head in imports and rest else name
                if qual in _SOURCE_NAMES:
                    yield Surface("source", qual, node.lineno)


def _literal(node: ast.AST) -> bool:
    """A value written in the code: a constant, an f-string without fields, a container of them."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.JoinedStr):
        return all(isinstance(v, ast.Constant) for v in node.values)
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return all(_literal(e) for e in node.elts)
    return False


def _literal_call(call: ast.Call, name: str) -> bool:
    """A sink called with literals only (``redirect("/posts")``, ``render(request,
    "page.html")``: the request object handed to a call that only consumes it is plumbing, not
    data). No outside data can reach it, and what is weak about the call itself (a weak hash, a
    debug flag) is a rule's to report. A call without arguments (``mktemp()``) is not one: the
    call alone may be the weakness."""
    values = [*call.args, *(k.value for k in call.keywords)]
    return bool(values) and all(_literal(v) or (name in REQUEST_CONSUMERS and is_request(v)) for v in values)


def triage(units: Sequence[Unit], hints: dict[str, list[Finding]] | None = None) -> list[Verdict]:
    """A verdict per unit: review it with the model, or clear it. A unit of a file that did not
    parse is always reviewed (there is no AST to clear it with). One of a file parsed after
    repairs is judged on the lines the repairs kept, like any other: reviewing every unit of
    files whose repairs left lines out doubled the model-only findings on a Python 2 project
    (docs/SCANNING.md)."""
    hints = hints or {}
    return [flagged_verdict(u, hints.get(u.path, ())) or surface_verdict(u) for u in units]


def flagged_verdict(unit: Unit, findings: Sequence[Finding]) -> Verdict | None:
    """``triage``'s verdict for a unit that one of ``findings`` (its file's static findings)
    lies in; None when none does."""
    flagged = [f for f in findings if in_unit(f, unit, nested=False)]
    return Verdict(True, "static-finding", flagged[0].rule_id) if flagged else None


def surface_verdict(unit: Unit) -> Verdict:
    """``triage``'s verdict for a unit no static finding lies in: from its AST alone, so it may
    be worked out before the rules run (they fold string constants in the tree)."""
    if unit.file.tree is None or unit.node is None:
        return Verdict(True, "unparsed")
    why = surface(unit, *file_names(unit.file))
    return Verdict(True, why.kind, why.what) if why else Verdict(False, "no-surface")
