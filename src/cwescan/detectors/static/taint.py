"""A light intraprocedural data flow: where may the value reaching a sink come from?

Each function is read once, statement by statement in source order, the first time a rule asks
about it. Every assignment records what the assigned name holds from that line on:

* ``tainted``: data an attacker may control: a ``request.*`` field (Flask/Django: args, form,
  values, json, GET, POST, cookies, headers, data, files...), what an ``http.server`` handler
  reads through ``self`` (``self.path``, ``self.headers``, ``self.rfile``), a routed view's
  parameter (a URL segment), ``input()``/``sys.stdin``, ``sys.argv``/argparse, a socket's
  ``recv()``, ``os.environ``/``os.getenv``, and, as the weakest kind, a plain function
  parameter: it holds whatever its caller passes, which is untrusted only if some caller passes
  outside data. When a call in the same file does (``callers.py``: a function called by its
  plain name, a method as ``self.name()``), the parameter holds that data. Each tainted value
  keeps its source kind; findings name it, and rest on a plain parameter get lower confidence
  and severity. A value joined from parts sanitised differently (``escape(q) + row``) keeps
  them: a sink sees the strongest part not sanitised for its kind (``Flow.for_kind``). Taint
  follows assignments, f-strings, concatenation, ``%``, ``.format()``, ``join``, ``replace``
  filling a placeholder, containers, method calls on tainted values and calls that take tainted
  arguments.
* ``constant``: built only from literals and module-level constants, or passed through a
  sanitiser (``int()``, ``float()``, ``bool()``, ``len()``; ``shlex.quote`` for commands,
  ``secure_filename``/``os.path.basename`` for paths, ``escape`` for HTML, ...).
* ``unknown``: anything else (the result of some call, an attribute of ``self``...). Values read
  back from a database (``cursor.fetchone()``, ``Model.objects.get(...)``, ``session.query(...)
  .first()``) are unknown too, labelled as database values: stored data, not request data, even
  when a request field chose the row. So are the parameters of tests and pytest fixtures in
  test files: pytest passes them fixtures and parametrized values the test's author chose.

Assignments inside branches and loops join with what the name held before (taint wins), so
``if x: v = "default"`` does not hide the tainted ``v`` of the other path; an ``if`` whose test
the code decides (literals, names assigned one literal: ``folding.py``) is followed into its
taken branch only. An item with a constant key (``d["k"] = v``, ``{"k": v}``) holds its own
value while the dictionary takes no other taint. A call handed the whole request object
(``get_param(request, "q")``) returns request data. An early-exit guard, an ``if`` whose test,
once false, pins the value (``x not in ALLOWED``, ``x != C``), checks its content (``".." in
p``) or passed a validator (``startswith``/``commonpath``/an ``is_safe``-like call...), and that
then leaves (raise/return/abort) or overwrites the value with a settled one, marks that value and
the names it came from as checked from there on (``x in DENIED`` and ``pos == -1`` pin nothing).
A positive guard, an ``if`` whose test (or an operand of its top-level ``and``) is such a
validation, ``x == C``/``x in C`` with ``x`` on the left, or a name assigned a validator's result
(``ok = is_safe_url(u)``; ``if ok:``), marks them checked inside its body only. A prefix or containment check counts only on a path normalised
by ``abspath``/``realpath``/``normpath``/``resolve()``. This is deliberately simple: no
inter-procedural flow, no aliasing, no attribute sensitivity.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field, replace

from cwescan.core.astwalk import walk
from cwescan.core.handoffs import Handoff
from cwescan.detectors.static.callers import bind, call_sites, handed_flow, returns
from cwescan.detectors.static.flow import (
    CONST, CONSTANT, DATABASE, NAMED_UNKNOWN, PURE, REMOTE_SOURCES, TAINTED, UNKNOWN, UNKNOWN_FLOW, Flow,
    argv_flow, environment_flow, join, request_flow, sanitizer_kinds)
from cwescan.detectors.static.folding import NOT_LITERAL, decide, literal_names
from cwescan.detectors.static.patterns import (
    EVERY_KIND, NORMALISERS, assigned_names, checked_exprs, check_credit, database_read, dotted, escapes_quote,
    exit_checked, is_route_decorator, is_validator, last_name, leaves, needs_normalised, operand_call, parameters,
    positive_comparison, positive_operands, validation_calls, validation_test)
from cwescan.detectors.static.sources import (
    REQUEST_CONSUMERS, handler_field, handler_methods, is_request, lambda_handler, request_field)


@dataclass
class Scope:
    """Per-name flow events of one function (or the module), in line order."""

    events: dict[str, list[tuple[int, Flow]]] = field(default_factory=dict)
    parent: Scope | None = None
    # names now holding a validator's result (``ok = is_safe_url(u)``): line, call
    results: dict[str, tuple[int, ast.Call]] = field(default_factory=dict)
    # the names the scope assigns, with their value where it is one literal (folding.py)
    literals: dict[str, object] = field(default_factory=dict)
    # (container, line) of the events that an item with a constant key made (``d["k"] = x``)
    keyed: set[tuple[str, int]] = field(default_factory=set)
    # a method of an ``http.server``-style request handler (or a function nested in one)
    handler: bool = False

    def add(self, name: str, line: int, flow: Flow, conditional: bool) -> None:
        self.results.pop(name, None)
        events = self.events.setdefault(name, [])
        if conditional and events:
            flow = join([events[-1][1], flow], how=flow.how)
        events.append((line, flow))

    def lookup(self, name: str, line: int) -> Flow | None:
        events = self.events.get(name)
        if events:
            found = None
            for at, flow in events:
                if at >= line:
                    break
                found = flow
            if found is not None:
                return found
            # used before its first assignment in this scope (loops): take the first
            return events[0][1]
        return self.parent.lookup(name, 1 << 30) if self.parent is not None else None

    def latest(self, name: str, line: int) -> int:
        """The line of the last event of ``name`` in this scope before ``line`` (-1: none), not
        counting those an item with a constant key made."""
        return max((at for at, _ in self.events.get(name, ()) if at < line and (name, at) not in self.keyed),
                   default=-1)

    def literal(self, name: str) -> object:
        if name in self.literals:
            return self.literals[name]
        return self.parent.literal(name) if self.parent is not None else NOT_LITERAL


class Analyzer:
    """Answers "what may this expression hold here?" for one file."""

    def __init__(self, tree: ast.Module, resolve, test_file: bool = False,
                 passed: dict[str, list[Handoff]] | None = None) -> None:
        self.resolve = resolve  # callee qualname resolver of the file (aliases)
        self.test_file = test_file  # test code: tests' and fixtures' parameters are test data
        # what other files of the scan hand the module-level functions of this one, by name
        self.passed = passed or {}
        self.top_level = {id(s) for s in tree.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))}
        self.module = Scope(literals=literal_names(tree.body))
        # a module name some function rebinds (``global``) is not the literal it starts as
        self.module.literals.update({n: NOT_LITERAL for node in walk(tree) if isinstance(node, ast.Global)
                                     for n in node.names})
        self.scopes: dict[int, Scope] = {}
        self.routes: set[int] = set()
        self.handler_methods = handler_methods(tree)
        self.call_sites = call_sites(tree)
        self.called = {id(site.call): site.target for sites in self.call_sites.values() for site in sites}
        self._returned: dict[int, Flow | None] = {}  # function -> what its calls return (see _returns)
        self._binding: set[int] = set()  # functions whose parameters are being bound to callers
        self._build(tree.body, self.module, None, 0)

    # -- public ----------------------------------------------------------------------------

    def flow(self, expr: ast.AST, funcs: list[ast.AST]) -> Flow:
        """What ``expr`` may hold; ``funcs`` are its enclosing functions, outermost first."""
        try:
            scope = self.scope_of(funcs)
            return self._eval(expr, scope, getattr(expr, "lineno", 1 << 30), 0)
        except RecursionError:
            return UNKNOWN_FLOW

    def scope_of(self, funcs: list[ast.AST]) -> Scope:
        """The scope of the innermost function; names it does not assign are looked up in the
        enclosing functions (closures), then the module."""
        if not funcs:
            return self.module
        func = funcs[-1]
        scope = self.scopes.get(id(func))
        if scope is None:
            parent = self.scope_of(funcs[:-1])
            scope = Scope(parent=parent, handler=parent.handler or id(func) in self.handler_methods)
            self._params(func, scope)
            scope.literals = literal_names(func.body if isinstance(func.body, list) else [], list(scope.events))
            if isinstance(func, ast.Lambda):
                pass  # its body is one expression, evaluated where a rule asks
            else:
                self._build(func.body, scope, func, 0)
            self.scopes[id(func)] = scope
        return scope

    # -- building scopes --------------------------------------------------------------------

    def _params(self, func, scope: Scope) -> None:
        a = func.args
        # a routed view, or a Django-style view taking the request: the other parameters are
        # URL segments
        routed = any(is_route_decorator(d) for d in getattr(func, "decorator_list", ())) or any(
            p.arg in ("request", "req") for p in a.args[:2])
        # a GraphQL resolver (graphene: ``resolve_x(root, info, ...)``, ``mutate(self, info, ...)``):
        # the parameters after ``info`` are the arguments of the client's query
        graphql = (getattr(func, "name", "").startswith("resolve_") or getattr(func, "name", "") == "mutate") \
            and "info" in [p.arg for p in a.args[:2]]
        params = parameters(func)
        # pytest hands a test or fixture its fixtures and parametrized values: data the test's
        # author chose, not outside input
        test_data = self.test_file and (getattr(func, "name", "").startswith("test") or any(
            "fixture" in (dotted(d.func if isinstance(d, ast.Call) else d) or "")
            for d in getattr(func, "decorator_list", ())))
        for p in params:
            if p.arg in ("self", "cls", "request", "req") or (graphql and p.arg in ("root", "info")):
                continue
            if test_data:
                f = Flow(UNKNOWN, "test-data", f"test parameter `{p.arg}` (a pytest fixture or "
                         "parametrized value)", chain=frozenset({p.arg}))
            elif routed:
                f = Flow(TAINTED, "route-param", f"URL parameter `{p.arg}`", chain=frozenset({p.arg}))
            elif graphql:
                f = Flow(TAINTED, "route-param", f"GraphQL argument `{p.arg}`", chain=frozenset({p.arg}))
            elif p.arg == "event" and lambda_handler(func):
                f = Flow(TAINTED, "request", "request data (the Lambda `event`)", chain=frozenset({p.arg}))
            else:
                f = self._passed(func, p.arg) or Flow(
                    TAINTED, "parameter", f"parameter `{p.arg}` (caller-supplied, not known to be user input)",
                    chain=frozenset({p.arg}))
            scope.add(p.arg, func.lineno, f, False)

    def _passed(self, func, name: str) -> Flow | None:
        """What the file's own calls of ``func`` pass as parameter ``name`` when one of them
        passes outside data (not merely another caller-supplied parameter), else what a call
        from another file of the scan hands it; else None."""
        sites = self.call_sites.get(id(func))
        if not sites or id(func) in self._binding:  # no caller in the file, or a recursive cycle
            return handed_flow(func, name, self.passed) if id(func) in self.top_level else None
        self._binding.add(id(func))
        try:
            best: Flow | None = None
            for site in sites:
                arg = bind(site, func, name)
                if arg is None or any(f is func for f in site.funcs):
                    continue
                f = self._eval(arg, self.scope_of(list(site.funcs)), arg.lineno, 0)
                if f.level == TAINTED and not f.weak and (best is None or f.confidence > best.confidence):
                    caller = f"{getattr(site.funcs[-1], 'name', 'a lambda')}()" if site.funcs else "module code"
                    best = replace(f, origin=f"{f.origin}, passed as `{name}` by {caller} (line {arg.lineno})",
                                   var="", line=0, chain=frozenset({name}), entered=(*f.entered, ("", arg.lineno)))
            return best or (handed_flow(func, name, self.passed) if id(func) in self.top_level else None)
        finally:
            self._binding.discard(id(func))

    def _build(self, body, scope: Scope, func, depth: int) -> None:
        for stmt in body:
            self._stmt(stmt, scope, depth)

    def _assign(self, target, flow: Flow, scope: Scope, line: int, depth: int) -> None:
        if isinstance(target, ast.Name):
            named = replace(flow, var=target.id, line=line, chain=flow.chain | {target.id}) \
                if flow.level else flow
            scope.add(target.id, line, named, depth > 0)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for t in target.elts:
                self._assign(t, flow, scope, line, depth)
        elif isinstance(target, ast.Starred):
            self._assign(target.value, flow, scope, line, depth)
        elif isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
            key = _constant_key(target)
            if key:  # d["k"] = v: what d["k"] holds from here on, while d takes no other taint
                _set_key(scope, target.value.id, key, line, flow, depth)
            if flow.level == TAINTED:  # the container now holds taint
                scope.add(target.value.id, line, flow, True)
                if key:
                    scope.keyed.add((target.value.id, line))

    def _stmt(self, stmt, scope: Scope, depth: int) -> None:
        line = stmt.lineno
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            scope.add(stmt.name, line, UNKNOWN_FLOW, depth > 0)
            if isinstance(stmt, ast.ClassDef) and scope is self.module:
                self._build(stmt.body, scope, None, depth + 1)  # class attributes live with the module
            return
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            for alias in stmt.names:  # modules and imported definitions: code, not data
                name = alias.asname or alias.name.split(".")[0]
                if name != "*":
                    scope.add(name, line, CONST, depth > 0)
            return
        if isinstance(stmt, ast.Assign):
            flow = self._eval(stmt.value, scope, line, 0)
            for t in stmt.targets:
                self._assign(t, flow, scope, stmt.end_lineno or line, depth)
            if isinstance(stmt.value, ast.Dict) and isinstance(stmt.targets[0], ast.Name):
                for k, v in zip(stmt.value.keys, stmt.value.values):  # d = {"k": v}: d["k"] holds v
                    if k is not None and (key := _constant_key(ast.Subscript(stmt.targets[0], k))):
                        _set_key(scope, stmt.targets[0].id, key, stmt.end_lineno or line,
                                 self._eval(v, scope, line, 0), depth)
            name = stmt.targets[0].id if isinstance(stmt.targets[0], ast.Name) else ""
            # ``ok = is_safe_url(u)``, not in a branch that may leave an older ``ok``
            if len(stmt.targets) == 1 and name and is_validator(stmt.value) and not (
                    depth and len(scope.events[name]) > 1):
                scope.results[name] = (line, stmt.value)
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            self._assign(stmt.target, self._eval(stmt.value, scope, line, 0), scope,
                         stmt.end_lineno or line, depth)
        elif isinstance(stmt, ast.AugAssign):
            flow = self._eval(stmt.value, scope, line, 0)
            if isinstance(stmt.target, ast.Name):
                old = scope.lookup(stmt.target.id, line) or UNKNOWN_FLOW
                how = "concatenation" if isinstance(stmt.op, ast.Add) else ""
                self._assign(stmt.target, join([old, flow], how), scope, stmt.end_lineno or line, 0)
        elif isinstance(stmt, ast.Expr):
            self._mutation(stmt.value, scope, line)
        elif isinstance(stmt, (ast.For, ast.AsyncFor)):
            self._assign(stmt.target, self._eval(stmt.iter, scope, line, 0), scope, line, depth + 1)
            self._build(stmt.body, scope, None, depth + 1)
            self._build(stmt.orelse, scope, None, depth + 1)
        elif isinstance(stmt, ast.While):
            self._build(stmt.body, scope, None, depth + 1)
            self._build(stmt.orelse, scope, None, depth + 1)
        elif isinstance(stmt, ast.If) and (taken := decide(stmt.test, scope.literal)) is not None:
            self._build(stmt.body if taken else stmt.orelse, scope, None, depth)  # the only branch run
        elif isinstance(stmt, ast.If):
            inside = self._enter_guard(stmt, scope)
            self._build(stmt.body, scope, None, depth + 1)
            self._leave_guard(stmt, scope, inside)
            self._build(stmt.orelse, scope, None, depth + 1)
            self._guard(stmt, scope)
        elif isinstance(stmt, (ast.With, ast.AsyncWith)):
            for item in stmt.items:
                if item.optional_vars is not None:
                    self._assign(item.optional_vars, self._eval(item.context_expr, scope, line, 0),
                                 scope, line, depth)
            self._build(stmt.body, scope, None, depth)
        elif isinstance(stmt, (ast.Try, getattr(ast, "TryStar", ast.Try))):
            self._build(stmt.body, scope, None, depth + 1)
            for h in stmt.handlers:
                self._build(h.body, scope, None, depth + 1)
            self._build(stmt.orelse, scope, None, depth + 1)
            self._build(stmt.finalbody, scope, None, depth)
        elif isinstance(stmt, ast.Match):
            for case in stmt.cases:
                self._build(case.body, scope, None, depth + 1)

    def _key(self, container: ast.AST, key: str, scope: Scope, line: int) -> Flow | None:
        """What ``d['k']`` (or ``d.get('k')``) holds, when the flow followed that key since ``d``
        last took taint; None to fall back on the container."""
        if not key or key not in scope.events or scope.latest(key, line) < scope.latest(container.id, line):
            return None
        return scope.lookup(key, line)

    def _mutation(self, call, scope: Scope, line: int) -> None:
        """``items.append(tainted)`` taints ``items``."""
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and isinstance(call.func.value, ast.Name)
                and call.func.attr in ("append", "extend", "insert", "update", "add", "write")):
            flow = join(self._eval(a, scope, line, 0) for a in call.args)
            if flow.level == TAINTED:
                scope.add(call.func.value.id, line, replace(flow, var=call.func.value.id, line=line), True)

    def _guard(self, stmt: ast.If, scope: Scope) -> None:
        """An ``if`` that validates tainted values and leaves or overwrites them marks them checked."""
        line = stmt.lineno
        if not validation_test(stmt.test):
            return
        checked = set().union(*(self._tainted_names(e, scope, line) for e in exit_checked(stmt.test)))
        if not checked:
            return
        # overwritten with a value that is not tainted (``if x not in ALLOWED: x = DEFAULT``) or
        # that a positive guard checked (``if ok(x): x = quote(x) else: x = None``)
        assigned = {t.id for s in stmt.body for t in assigned_names(s)
                    if not isinstance(s, ast.AugAssign) and _settled(self._eval(s.value, scope, s.lineno, 0))}
        if not (leaves(stmt.body) or leaves(stmt.orelse) or assigned & checked):
            return
        after = (stmt.end_lineno or line)
        kinds = frozenset().union(*(self._credit(c, scope, line) for c in validation_calls(stmt.test)))
        for name in checked:
            f = scope.lookup(name, after + 1)
            if f is not None and f.level == TAINTED:
                scope.events.setdefault(name, []).append(
                    (after, f.made_safe_for(kinds)))

    def _enter_guard(self, stmt: ast.If, scope: Scope) -> dict:
        """A positive guard (``if p.startswith(root) and ...:``, ``if x in ALLOWED:``, ``if ok:``
        after ``ok = is_safe_url(x)``) marks what it checks as checked inside its body only;
        returns, per name, the event added and the flow to put back after the body."""
        line = stmt.lineno
        credits: list[tuple[set[str], frozenset[str]]] = []  # (names checked, sink kinds they are checked for)
        for operand in positive_operands(stmt.test):
            call = operand_call(operand)
            if isinstance(operand, ast.Name) and operand.id in scope.results:
                at, call = scope.results[operand.id]  # unless the value changed since
                credits.append(({n for n in self._validated(call, scope, at)
                                 if scope.lookup(n, at) is scope.lookup(n, line)}, self._credit(call, scope, at)))
            elif call is not None:
                credits.append((self._validated(call, scope, line), self._credit(call, scope, line)))
            elif positive_comparison(operand) and all(
                    self._eval(c, scope, line, 0).level == CONSTANT for c in operand.comparators):
                # pins the name compared, not what it was computed from (``x = os.system(cmd)``)
                credits.append((self._tainted_names(operand.left, scope, line) & {operand.left.id}, EVERY_KIND))
        checked: dict[str, frozenset[str]] = {}
        for names, kinds in credits:
            checked.update({n: checked.get(n, frozenset()) | kinds for n in names})
        end = stmt.test.end_lineno or line  # a one-line ``if t: body`` shares the test's line
        at = end if stmt.body[0].lineno > end else end - 0.5
        inside = {}
        for name, kinds in checked.items():
            f = scope.lookup(name, line)
            if (name in scope.events and f is not None and f.level == TAINTED
                    and "*" not in f.safe_for and not kinds <= f.safe_for):
                inside[name] = ((at, f.made_safe_for(kinds)), f)
                scope.events[name].append(inside[name][0])
        return inside

    def _leave_guard(self, stmt: ast.If, scope: Scope, inside: dict) -> None:
        """After the guarded body a name holds what it held before the ``if``, or what the body
        assigned it (without the guard's check)."""
        end = stmt.body[-1].end_lineno or stmt.lineno
        for name, (event, before) in inside.items():
            events = scope.events[name]
            if events[-1] is not event:  # reassigned in the body: without the guard's credit
                last = events[-1][1]
                before = join([before, replace(last, safe_for=last.safe_for - (event[1].safe_for - before.safe_for))])
            events.append((end, before))

    def _validated(self, call: ast.Call, scope: Scope, line: int) -> set[str]:
        """The tainted names a validator call checks."""
        return set().union(*(self._tainted_names(e, scope, line) for e in checked_exprs(call)))

    def _credit(self, call: ast.Call | None, scope: Scope, line: int) -> frozenset[str]:
        """The sink kinds passing ``call`` (None: a comparison) makes its values safe for."""
        normalised = call is None or not needs_normalised(call) or all(
            f.level != TAINTED or f.normalised for f in (self._eval(e, scope, line, 0) for e in checked_exprs(call)))
        return check_credit(call, normalised)

    def _tainted_names(self, expr: ast.AST, scope: Scope, line: int) -> set[str]:
        """The tainted names ``expr`` reads, and the names their values went through."""
        out: set[str] = set()
        for n in walk(expr):
            if isinstance(n, ast.Name):
                f = scope.lookup(n.id, line)
                if f is not None and f.level == TAINTED:
                    out |= f.chain | {n.id}
        return out

    # -- evaluating expressions --------------------------------------------------------------

    def _eval(self, node, scope: Scope, line: int, depth: int) -> Flow:
        if depth > 40:
            return UNKNOWN_FLOW
        d = depth + 1
        ev = self._eval
        if isinstance(node, ast.Constant):
            return CONST
        if isinstance(node, ast.Name):
            f = scope.lookup(node.id, line)
            if f is None:
                return UNKNOWN_FLOW  # imported or builtin name
            return f
        if isinstance(node, ast.JoinedStr):
            parts = [ev(v.value, scope, line, d) for v in node.values if isinstance(v, ast.FormattedValue)]
            return join(parts, "an f-string")
        if isinstance(node, ast.BinOp):
            how = {ast.Add: "concatenation", ast.Mod: "%-formatting"}.get(type(node.op), "")
            return join([ev(node.left, scope, line, d), ev(node.right, scope, line, d)], how)
        if isinstance(node, ast.Attribute):
            field_name = request_field(node) or (scope.handler and handler_field(node))
            if field_name:
                return request_flow(field_name)
            base = ev(node.value, scope, line, d)
            if base.level == TAINTED and node.attr == "filename" and base.source == "upload":
                return replace(base, source="upload-name", origin="the client-chosen upload filename")
            return base if base.level == TAINTED or base.source in NAMED_UNKNOWN else UNKNOWN_FLOW
        if isinstance(node, ast.Subscript) and (held := self._key(node.value, _constant_key(node), scope, line)):
            return held
        if isinstance(node, ast.Subscript):
            name = dotted(node.value)
            if name in ("os.environ", "environ"):
                return environment_flow(node.slice)
            if name == "sys.argv":
                return argv_flow("command-line argument (sys.argv)")
            return ev(node.value, scope, line, d)
        if isinstance(node, ast.Call):
            return self._call(node, scope, line, d)
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            return join(ev(e, scope, line, d) for e in node.elts)
        if isinstance(node, ast.Dict):
            return join(ev(e, scope, line, d) for e in [*node.keys, *node.values] if e is not None)
        if isinstance(node, ast.IfExp) and (taken := decide(node.test, scope.literal)) is not None:
            return ev(node.body if taken else node.orelse, scope, line, d)
        if isinstance(node, ast.IfExp):
            return join([ev(node.body, scope, line, d), ev(node.orelse, scope, line, d)])
        if isinstance(node, ast.BoolOp):
            return join(ev(v, scope, line, d) for v in node.values)
        if isinstance(node, ast.Compare) or (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)):
            return CONST  # a boolean
        if isinstance(node, ast.UnaryOp):
            return ev(node.operand, scope, line, d)
        if isinstance(node, (ast.Starred, ast.NamedExpr, ast.Await, ast.FormattedValue)):
            return ev(node.value, scope, line, d)
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp)):
            return join([ev(node.elt, scope, line, d)] + [ev(g.iter, scope, line, d) for g in node.generators])
        return UNKNOWN_FLOW

    def _returns(self, call: ast.Call, d: int) -> Flow | None:
        """What the function of this file that ``call`` names returns, whatever the call passes:
        a source it reads itself, constants only, or its parameter sanitised (flows resting on
        a parameter are left to the call's own arguments); None when unknown."""
        func = self.called.get(id(call))
        if func is None or id(func) in self._returned:
            return self._returned.get(id(func)) if func is not None else None
        self._returned[id(func)] = None  # a recursive call meanwhile: unknown
        rets = returns(func)
        out = None
        if rets is not None:
            scope = self.scope_of([func])
            flow = join(CONST if r.value is None else self._eval(r.value, scope, r.lineno, d) for r in rets)
            own = not (flow.chain & {p.arg for p in parameters(func)})
            out = flow if own or (flow.level == TAINTED and flow.safe_for) else None
        self._returned[id(func)] = out
        return out

    def _call(self, node: ast.Call, scope: Scope, line: int, d: int) -> Flow:
        func = node.func
        name = last_name(func)
        qual = self.resolve(node) or ""
        ev = self._eval
        # sources
        if qual in ("input", "raw_input"):
            return Flow(TAINTED, "input", "user input (input())")
        if qual.startswith("sys.stdin."):
            return Flow(TAINTED, "input", f"standard input ({qual}())")
        if name in ("parse_args", "parse_known_args") and isinstance(func, ast.Attribute):
            return argv_flow(f"command-line arguments ({ast.unparse(func)}())")
        if name in ("recv", "recvfrom") and node.args and isinstance(func, ast.Attribute):
            # a socket's recv(bufsize); multiprocessing's Connection.recv() takes no size
            return Flow(TAINTED, "network", f"data received from the network ({ast.unparse(func)}())")
        if qual in ("os.getenv", "os.environ.get", "getenv", "environ.get"):
            return environment_flow(node.args[0] if node.args else None)
        if name == "replace" and isinstance(func, ast.Attribute) and escapes_quote(node):
            # x.replace("'", "&apos;"): cannot close a quoted XPath literal any more
            inner = ev(func.value, scope, line, d)
            return inner.made_safe_for(frozenset({"xpath"})) if inner.level == TAINTED else inner
        field_name = request_field(func)
        if field_name:
            return request_flow(field_name)
        read = database_read(func)
        if read:  # stored data, whoever chose the row
            return Flow(UNKNOWN, DATABASE, f"a value read from the database ({read})")
        args = [ev(a, scope, line, d) for a in node.args]
        args += [ev(k.value, scope, line, d) for k in node.keywords]
        # sanitisers
        kinds = sanitizer_kinds(name)
        if kinds is not None:
            inner = join(args)
            if "*" in kinds or inner.level != TAINTED:
                return CONST if "*" in kinds else inner
            return inner.made_safe_for(kinds)
        if name not in REQUEST_CONSUMERS and any(is_request(a) and not (
                isinstance(a, ast.Name) and a.id in scope.events) for a in node.args):
            # a helper handed the whole request (``param = get_param(request, "q")``) returns
            # what it read from it; a local ``request = Request(url)`` is not the request
            return Flow(TAINTED, "request", f"request data (read by {name}() from the request)")
        summary = self._returns(node, d)
        if summary is not None and summary.level == CONSTANT:
            return CONST  # a function of this file that returns constants only
        if summary is not None and summary.level == TAINTED and summary.source in REMOTE_SOURCES:
            # a getter of request data; not a helper returning the command line or the
            # environment, which is mostly the program's own configuration (a reloader
            # re-running its argv)
            return replace(summary, origin=f"{summary.origin}, returned by {name}()")
        if summary is not None and summary.safe_for and (inner := join(args)).level == TAINTED:
            return inner.made_safe_for(summary.safe_for)  # a wrapper sanitising its parameter
        if name == "get" and isinstance(func, ast.Attribute) and node.args and (held := self._key(
                func.value, _constant_key(ast.Subscript(func.value, node.args[0])), scope, line)):
            return held
        receiver = ev(func.value, scope, line, d) if isinstance(func, ast.Attribute) else CONST
        if name == "format" and isinstance(func, ast.Attribute):
            return join([receiver, *args], "str.format()")
        if name == "join" and isinstance(func, ast.Attribute) and isinstance(func.value, ast.Constant):
            return join([receiver, *args], "str.join()")
        if name == "join" and qual.endswith("path.join"):
            return join(args, "os.path.join()")
        if name == "replace" and isinstance(func, ast.Attribute) and len(node.args) >= 2 and not isinstance(
                node.args[1], ast.Constant):
            return join([receiver, *args], "str.replace()")  # a placeholder filled in: text built
        flow = join([receiver, *args])
        if flow.level == TAINTED and name in NORMALISERS:
            return replace(flow, normalised=True)
        if flow.level == TAINTED or flow.source in NAMED_UNKNOWN:
            return flow
        if name in PURE and flow.level == CONSTANT:
            return CONST  # a pure function of constants
        return UNKNOWN_FLOW


def _constant_key(node: ast.Subscript) -> str:
    """``d['k']`` -> "d['k']", the name the flow keeps ``d``'s item under; "" when the key is
    not a constant or the container not a plain name."""
    key = node.slice
    if isinstance(node.value, ast.Name) and isinstance(key, ast.Constant) and type(key.value) in (str, int):
        return f"{node.value.id}[{key.value!r}]"
    return ""


def _set_key(scope: Scope, container: str, key: str, line: int, flow: Flow, depth: int) -> None:
    if depth > 0 and key not in scope.events and (held := scope.lookup(container, line)):
        scope.add(key, line, held, False)  # the branch may not run: d["k"] may be what d held
    scope.add(key, line, flow, depth > 0)


def _settled(flow: Flow) -> bool:
    return flow.level != TAINTED or "*" in flow.safe_for
