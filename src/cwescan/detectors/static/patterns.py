"""What the data flow (taint.py) recognises from the syntax alone.

Database reads (stored data, not request data), and validation guards: which calls validate,
which operands of an ``if`` test hold inside its body, what a check looks at. Whether a checked
value is tainted, normalised or compared with a constant is the data flow's business:
``taint.Analyzer`` credits the guards.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator

from cwescan.core.astwalk import walk


def dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a Name/Attribute chain, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def walk_local(nodes: Iterable[ast.AST]) -> Iterator[ast.AST]:
    """``nodes`` and everything under them except the insides of nested functions, lambdas and
    classes (their own scopes; the ``def``/``lambda``/``class`` nodes themselves are yielded)."""
    stack = list(nodes)
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(node))


def parameters(func: ast.AST) -> list[ast.arg]:
    """Every parameter of a function or lambda, in order: positional-only, positional,
    keyword-only, ``*args``, ``**kwargs``."""
    a = func.args
    return [*a.posonlyargs, *a.args, *a.kwonlyargs, *(p for p in (a.vararg, a.kwarg) if p is not None)]


def positional_names(func: ast.AST) -> list[str]:
    """The names a call's positional arguments bind, in order."""
    return [p.arg for p in (*func.args.posonlyargs, *func.args.args)]


def last_name(func: ast.AST) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def is_route_decorator(dec: ast.AST) -> bool:
    """@app.route(...), @bp.get(...), @router.post(...), @api_view..."""
    target = dec.func if isinstance(dec, ast.Call) else dec
    name = last_name(target)
    return name in ("route", "get", "post", "put", "delete", "patch", "api_view", "websocket",
                    "view_config", "expose") and isinstance(target, ast.Attribute) or name == "api_view"


# -- database reads ---------------------------------------------------------------------

# cursor methods that return rows (DB-API, asyncpg, databases)
_CURSOR_READS = {"fetchone", "fetchall", "fetchmany", "fetchval", "fetchrow", "fetch_one", "fetch_all",
                 "fetch_val"}
# ORM methods that return rows or model instances, when called on a query (below)
_ORM_READS = {"get", "first", "one", "one_or_none", "all", "scalar", "scalars", "scalar_one",
              "scalar_one_or_none", "get_or_404", "first_or_404", "one_or_404", "filter", "filter_by",
              "values", "values_list", "latest", "earliest", "last", "in_bulk", "iterator"}
# what makes a receiver chain a database query: ``Model.objects``, ``Model.query``,
# ``session.query(...)``, ``session.execute(...)``, ``select(...)``
_QUERY_ATTRS = {"objects", "query"}
_QUERY_CALLS = {"query", "execute", "select", "filter", "filter_by", "order_by", "where", "scalars",
                "raw", "exclude", "select_related", "prefetch_related", "annotate", "limit"}
_DB_HANDLE = re.compile(r"(?i)(^|[._])(cur|cursor|conn|connection|db|database|session|engine)$")


def database_read(func: ast.AST) -> str:
    """"cur.fetchone()" when ``func`` reads rows back from a database, else ""."""
    if not isinstance(func, ast.Attribute):
        return ""
    found = func.attr in _CURSOR_READS or func.attr in ("execute", "cursor") and bool(
        _DB_HANDLE.search(ast.unparse(func.value)[-40:]))  # rows of a query, or a cursor over them
    node = func.value
    while not found and func.attr in _ORM_READS and isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        found = (isinstance(node, ast.Attribute) and node.attr in _QUERY_ATTRS
                 or isinstance(node, ast.Call) and last_name(node.func) in _QUERY_CALLS)
        node = node.func if isinstance(node, ast.Call) else node.value
    if not found:
        return ""
    text = ast.unparse(func)
    return (text if len(text) <= 60 else "..." + text[-57:]) + "()"


# -- validation guards ------------------------------------------------------------------

# calls whose test in an ``if`` is a validation of the value they look at
VALIDATOR_WORDS = ("valid", "allowed", "safe", "check", "verify", "is_relative_to", "commonpath",
                   "startswith", "endswith", "match", "fullmatch", "isalnum", "isdigit",
                   "isidentifier", "isdecimal", "isnumeric", "isascii", "whitelist", "allowlist",
                   "url_has_allowed_host_and_scheme", "is_safe_url")
# names that contain a validator word but run something rather than check it
NOT_VALIDATORS = frozenset({"check_output", "check_call"})
# Path containment checks that mean "inside the folder" only on a normalised path:
# os.path.join(base, "../etc/passwd").startswith(base) is True (commonpath and is_relative_to
# are as lexical), so an un-normalised prefix check is the classic *vulnerable* version that CVE
# fixes replace, and crediting it would hide real path traversals. They count only when the
# checked value went through one of NORMALISERS.
CONTAINMENT = frozenset({"startswith", "commonpath", "is_relative_to"})
NORMALISERS = frozenset({"abspath", "realpath", "normpath", "resolve"})
# checks whose receiver is the checked value (the arguments are what it is checked against)
RECEIVER_CHECKS = frozenset({"startswith", "endswith", "is_relative_to"})
LEAVE_CALLS = {"abort", "exit", "_exit", "fail", "Http404", "HttpResponseBadRequest"}
# What a passed check makes a value safe for (``check_credit``). Pattern checks, a regex match,
# a prefix or a suffix test, are the classic bypassed check before a redirect or a request
# (``url.endswith("example.com")`` passes "evil-example.com", an unescaped "." in a host regex
# matches any character, "//evil.com" starts with "/"): there only a URL validator
# (``url_has_allowed_host_and_scheme``, an ``*allowed*``/``*safe*`` check) or an allowlist counts.
# A containment check of a path that was not normalised (CONTAINMENT) says nothing about where
# the path leads, but as much as any pattern check about what else the value is.
PATTERN_CHECKS = frozenset({"match", "fullmatch", "startswith", "endswith"})
URL_SINK_KINDS = frozenset({"redirect", "url", "url-path"})
PATH_SINK_KINDS = frozenset({"path", "upload"})
# every sink kind the rules ask about (``Flow.level_for``); a kind missing here is not cleared by
# a pattern check, which errs towards reporting
SINK_KINDS = frozenset({"sql", "command", "html", "code", "xml", "regex", "deserialize"}) | URL_SINK_KINDS \
    | PATH_SINK_KINDS
EVERY_KIND = frozenset("*")


def is_validator(call: ast.AST) -> bool:
    if not isinstance(call, ast.Call):
        return False
    name = last_name(call.func).lower()
    if name == "is_valid" and not call.args and not call.keywords:
        # a Django form / DRF serializer: checks its fields' types, not that a CharField's text
        # is safe for SQL, a path or a redirect; ``if form.is_valid():`` wraps whole views
        return False
    return name not in NOT_VALIDATORS and any(w in name for w in VALIDATOR_WORDS)


def check_credit(call: ast.Call | None, normalised: bool = True) -> frozenset[str]:
    """The sink kinds a value that passed one check is safe for: every kind after a comparison
    (``call`` None) or a validator, fewer after a pattern check or a containment check of a path
    that was not ``normalised`` (see PATTERN_CHECKS)."""
    name = last_name(call.func).lower() if call is not None else ""
    kinds = SINK_KINDS - URL_SINK_KINDS if name in PATTERN_CHECKS else EVERY_KIND
    if name in CONTAINMENT and not normalised:
        kinds = (SINK_KINDS if kinds == EVERY_KIND else kinds) - PATH_SINK_KINDS
    return kinds


def validation_calls(test: ast.AST) -> list[ast.Call | None]:
    """The checks in an ``if`` test: its validator calls, and None for each comparison."""
    calls = [n for n in walk(test) if is_validator(n)]
    # a comparison of a validator's result (``re.match(r, x) is not None``) is that validator
    plain = [n for n in walk(test) if isinstance(n, ast.Compare)
             and not any(is_validator(m) for m in walk(n))]
    return [*calls, *[None] * len(plain)]


def validation_test(test: ast.AST) -> bool:
    """Does ``test`` compare or validate something anywhere (for early-exit guards)?"""
    for n in walk(test):
        if isinstance(n, ast.Compare):
            for op, right in zip(n.ops, n.comparators):
                if isinstance(op, (ast.In, ast.NotIn)):
                    return True
                if isinstance(op, (ast.Eq, ast.NotEq)) and not (
                        isinstance(right, ast.Constant) and right.value in (None, "", 0)):
                    return True
        elif is_validator(n):
            return True
    return False


def exit_checked(test: ast.AST) -> list[ast.AST]:
    """What the test of an early-exit guard (``if test: return``) checks, given that the code
    after it runs only when ``test`` is false: ``x not in ALLOWED`` and ``x != C`` pin ``x``
    (and ``C``); ``".." in p`` checks the content of ``p``; a validator call checks what it
    looks at, as does anything under ``not``. ``x in DENIED`` and ``x == C`` pin nothing: ``x``
    is then anything else (a deny list), and ``pos == -1`` says nothing about the string ``pos``
    was found in. Under ``or`` every operand is false afterwards; under ``and`` only one need be,
    and a truthiness operand (``if x and ...``) leaves the others: an empty ``x`` is harmless."""
    if isinstance(test, ast.BoolOp):
        values = test.values if isinstance(test.op, ast.Or) else [
            v for v in test.values if not _truthiness(v)]
        return [e for v in values for e in exit_checked(v)]
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return [test.operand]
    if isinstance(test, ast.Compare):
        if any(is_validator(n) for n in walk(test)):
            return [test]  # a validator's result compared (``re.match(r, x) is None``)
        if len(test.ops) != 1:
            return []
        op = test.ops[0]
        if isinstance(op, ast.NotIn):
            return [test.left]
        if isinstance(op, ast.NotEq):
            if any(isinstance(c, ast.Constant) and type(c.value) in (int, float) for c in test.comparators):
                return []  # ``pos != -1`` pins a number, not the string it was found in
            return [test.left, *test.comparators]
        if isinstance(op, ast.In) and isinstance(test.left, ast.Constant):
            return list(test.comparators)
        return []
    return [test] if is_validator(test) else []


def _truthiness(node: ast.AST) -> bool:
    """``x``, ``x is not None``, ``len(x)``: a test only of whether there is a value."""
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], (ast.Is, ast.IsNot)):
        return True
    return isinstance(node, (ast.Name, ast.Attribute)) or (
        isinstance(node, ast.Call) and last_name(node.func) == "len")


def positive_operands(test: ast.AST) -> list[ast.AST]:
    """The parts of an ``if`` test that all hold inside its body: the test itself, or the
    operands of a top-level ``and`` (nested ``and``s too). Nothing under ``not`` or ``or``."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        return [o for v in test.values for o in positive_operands(v)]
    return [test]


def operand_call(node: ast.AST) -> ast.Call | None:
    """The validator call that a positive operand asserts: ``is_safe_url(u)``,
    ``commonpath([root, p]) == root``, ``re.match(r, x) is not None``."""
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        op, right = node.ops[0], node.comparators[0]
        falsy = isinstance(right, ast.Constant) and not right.value
        if isinstance(op, ast.Eq) and not falsy or (
                isinstance(op, ast.IsNot) and isinstance(right, ast.Constant) and right.value is None):
            node = node.left
    return node if is_validator(node) else None


def positive_comparison(node: ast.AST) -> bool:
    """``x == C`` / ``x in C`` (chained too) with a plain name ``x`` on the left: ``x`` is one of
    the right sides. ``!=``, ``not in`` and ``is not`` say nothing about what it is, and neither
    does ``len(x) == 3`` or ``x.split("/")[0] in C``."""
    return isinstance(node, ast.Compare) and isinstance(node.left, ast.Name) and all(
        isinstance(op, (ast.Eq, ast.In)) for op in node.ops)


def checked_exprs(call: ast.Call) -> list[ast.AST]:
    """What a validator call checks: the receiver of ``p.startswith(root)``, else the receiver
    and the arguments."""
    func = call.func
    receiver = [func.value] if isinstance(func, ast.Attribute) else []
    if last_name(func) in RECEIVER_CHECKS:
        return receiver
    return receiver + list(call.args) + [k.value for k in call.keywords]


def needs_normalised(call: ast.Call) -> bool:
    return last_name(call.func) in CONTAINMENT


def leaves(body) -> bool:
    if not body:
        return False
    last = body[-1]
    if isinstance(last, (ast.Raise, ast.Return, ast.Continue, ast.Break)):
        return True
    return (isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)
            and last_name(last.value.func) in LEAVE_CALLS)


def assigned_names(stmt):
    if isinstance(stmt, ast.Assign):
        for t in stmt.targets:
            if isinstance(t, ast.Name):
                yield t
    elif isinstance(stmt, (ast.AugAssign, ast.AnnAssign)) and isinstance(stmt.target, ast.Name):
        yield stmt.target


def escapes_quote(call: ast.Call) -> bool:
    """``.replace("'", "&apos;")`` / ``.replace('"', "&quot;")``: every quote of one kind replaced by
    text without it."""
    if len(call.args) != 2 or not all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in call.args):
        return False
    quote, by = call.args[0].value, call.args[1].value
    return quote in ("'", '"') and quote not in by
