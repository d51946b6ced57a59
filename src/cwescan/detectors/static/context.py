"""What a rule sees besides its node: the file, imports, the enclosing function and data flow."""

from __future__ import annotations

import ast

from cwescan.core.astwalk import walk
from cwescan.core.handoffs import Handoff
from cwescan.detectors.static import bandit_bridge
from cwescan.core.testcode import is_test_path
from cwescan.detectors.static.registry import Hit
from cwescan.detectors.static.patterns import dotted
from cwescan.detectors.static.flow import CONSTANT, TAINTED, UNKNOWN, Flow
from cwescan.detectors.static.sources import WEB_FRAMEWORKS
from cwescan.detectors.static.taint import Analyzer


class Context:
    def __init__(self, path: str, tree: ast.Module, passed: dict[str, list[Handoff]] | None = None) -> None:
        self.path = path
        self.tree = tree
        self.passed = passed  # what other files of the scan hand this file's functions
        self.imports: set[str] = set()  # module names imported, as Bandit records them
        self.aliases: dict[str, str] = {}  # local name -> qualified name, as Bandit records them
        self.relative: set[str] = set()  # local names imported relatively (``from . import x``)
        self.func: ast.AST | None = None  # the enclosing function of the node being checked
        self.funcs: list[ast.AST] = []  # enclosing functions, outermost first
        self.stmt: ast.stmt | None = None  # the statement holding the node being checked
        self._analyzer: Analyzer | None = None

    # -- imports and names -------------------------------------------------------------------

    def add_import(self, node: ast.Import | ast.ImportFrom) -> None:
        module = getattr(node, "module", None)
        if isinstance(node, ast.ImportFrom) and node.level:  # this project's own modules
            self.relative.update(alias.asname or alias.name for alias in node.names)
        for alias in node.names:
            if isinstance(node, ast.ImportFrom) and module:
                self.aliases[alias.asname or alias.name] = f"{module}.{alias.name}"
                self.imports.add(f"{module}.{alias.name}")
            else:
                if alias.asname:
                    self.aliases[alias.asname] = alias.name
                self.imports.add(alias.name)

    def imported(self, prefix: str) -> bool:
        return any(m == prefix or m.startswith(prefix + ".") for m in self.imports)

    def imports_web_framework(self) -> bool:
        """The file imports a web framework or server (``sources.WEB_FRAMEWORKS``)."""
        return any(self.imported(m) for m in WEB_FRAMEWORKS)

    def qualname(self, call: ast.Call) -> str | None:
        """``hashlib.md5`` for ``from hashlib import md5; md5(...)``; None when not a dotted name."""
        name = dotted(call.func)
        if name is None:
            return None
        head, _, rest = name.partition(".")
        head = self.aliases.get(head, head)
        return f"{head}.{rest}" if rest else head

    # -- data flow ----------------------------------------------------------------------------

    @property
    def analyzer(self) -> Analyzer:
        if self._analyzer is None:
            self._analyzer = Analyzer(self.tree, self.qualname, test_file=is_test_path(self.path),
                                      passed=self.passed)
        return self._analyzer

    def flow(self, expr: ast.AST | None, kind: str = "") -> Flow:
        """What ``expr`` may hold here; with a sink ``kind``, as that sink sees it
        (``Flow.for_kind``: constant when sanitised for it)."""
        if expr is None:
            return Flow(CONSTANT)
        flow = self.analyzer.flow(expr, self.funcs)
        return flow.for_kind(kind) if kind else flow

    def hit(self, node: ast.AST, flow: Flow, message: str, confidence: float | None = None, *,
            lower_severity: bool = False) -> Hit:
        """A hit whose evidence is ``flow``: the source's confidence unless given, and one
        severity lower when the flow is weak evidence (untraced, or only a plain parameter) or
        comes from whoever runs the program (``Flow.local``)."""
        return Hit(node, message, flow.confidence if confidence is None else confidence,
                   lower_severity=lower_severity or flow.weak or flow.local,
                   related=tuple((path or self.path, line) for path, line in flow.entered))

    def sink(self, node: ast.AST, expr: ast.AST | None, kind: str, sink: str, *,
             flag_unknown: bool = True, need_built: bool = False, what: str = "") -> Hit | None:
        """The usual taint verdict for ``expr`` reaching ``sink``: a hit with the source's
        confidence when tainted (one severity lower when the source is only a plain parameter),
        a medium one when untraced (if ``flag_unknown``), none when constant or sanitised for
        ``kind``. ``need_built``: only flag values built by string formatting (f-string, +, %,
        format, join), e.g. SQL text."""
        if expr is None or isinstance(expr, ast.Constant):
            return None  # a literal: no data flow to build (the analyzer walks the whole file)
        flow = self.flow(expr, kind)
        level = flow.level
        if level == CONSTANT or (need_built and not flow.built):
            return None
        if level == UNKNOWN and not flag_unknown:
            return None
        message = flow.explain(sink)
        if what:
            message = f"{what}: {message}"
        return self.hit(node, flow, message, lower_severity=level != TAINTED)

    def assigned_value(self, name: ast.AST) -> ast.AST | None:
        """The value last assigned to the variable ``name`` in the enclosing function before
        the line it is used on; None for other expressions or when there is none."""
        if not isinstance(name, ast.Name) or self.func is None:
            return None
        found = None
        for node in walk(self.func):
            if (isinstance(node, ast.Assign) and node.lineno < name.lineno
                    and any(isinstance(t, ast.Name) and t.id == name.id for t in node.targets)
                    and (found is None or node.lineno > found.lineno)):
                found = node
        return found.value if found is not None else None

    # -- Bandit ------------------------------------------------------------------------------

    def bandit(self, test_id: str, call: ast.Call):
        # Bandit asks the file's imports which module a call belongs to. A name the function
        # assigns is a local object even where a module of that name is imported
        # (``yaml = YAML(typ="safe")``); a snippet cut out of its file has lost its imports, while
        # ``qualname`` reads ``yaml.load`` as yaml's all the same, so Bandit is shown that module.
        head = (dotted(call.func) or "").partition(".")[0]
        if head and self.func is not None and _binds(self.func, head):
            return None
        imports = self.imports | {head} if self.lost_import(head) else self.imports
        return bandit_bridge.run_test(test_id, call, imports, self.aliases, self.path)

    def lost_import(self, name: str) -> bool:
        """The file uses ``name`` but neither imports nor assigns it: a snippet cut out of its
        file, where ``DES3.new(...)`` is most likely the module it is called like."""
        return bool(name) and name not in self.aliases and name not in self.imports and not _binds(self.tree, name)


def _binds(scope: ast.AST, name: str) -> bool:
    """``scope`` assigns ``name`` or takes it as a parameter."""
    return any(isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Store)
               or isinstance(n, ast.arg) and n.arg == name for n in walk(scope))


def kwarg(call: ast.Call, name: str) -> ast.AST | None:
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def arg(call: ast.Call, index: int, name: str | None = None) -> ast.AST | None:
    """Positional argument ``index`` or keyword ``name``."""
    if len(call.args) > index and not isinstance(call.args[index], ast.Starred):
        return call.args[index]
    return kwarg(call, name) if name else None


def is_const(node: ast.AST | None, value=...) -> bool:
    if not isinstance(node, ast.Constant):
        return False
    return value is ... or node.value is value or node.value == value and type(node.value) is type(value)
