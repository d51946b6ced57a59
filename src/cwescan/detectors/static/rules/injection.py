"""Injection: SQL (CWE-89), OS commands (CWE-78/77), code evaluation (CWE-94/95), template
source (server-side template injection, CWE-94/1336), LDAP filters (CWE-90) and XPath queries
(CWE-643).

These are the checks where data flow matters most, so they are our own rather than Bandit's
(Bandit's B608/B602/B307 flag by pattern alone and cannot tell a parameter from a constant).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from cwescan.core.astwalk import walk
from cwescan.detectors.static.context import Context, arg, is_const, kwarg
from cwescan.detectors.static.registry import Hit, rule
from cwescan.detectors.static.flow import TAINTED
from cwescan.detectors.static.sources import request_field

_SQL_WORDS = re.compile(r"(?i)\b(select\s.+\sfrom|insert\s+into|update\s+\S+\s+set|delete\s+from|"
                        r"drop\s+table|create\s+table|alter\s+table|where\s|order\s+by|union\s+select)")
_DB_RECEIVER = re.compile(r"(?i)(cur|cursor|conn|connection|db|database|session|engine|sql|query|c)$")


# bound-parameter markers: a statement that has them passes its values separately, so what is
# formatted into it is usually an identifier (a table name from configuration)
_BOUND_PARAMS = re.compile(r"=\s*(\?|\$\d+|:[A-Za-z_]\w*|%\([A-Za-z_]\w*\)s)|\bIN\s*\(\s*\?")


def _strings_in(node: ast.AST) -> str:
    return " ".join(n.value for n in walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str))


def _sql_text(expr: ast.AST, ctx: Context) -> str:
    """The literal text of ``expr``, following one variable assignment back."""
    text = _strings_in(expr)
    if isinstance(expr, ast.Name) and ctx.func is not None:
        for node in walk(ctx.func):
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == expr.id for t in node.targets):
                text += " " + _strings_in(node.value)
            elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name) and node.target.id == expr.id:
                text += " " + _strings_in(node.value)
    return text


@rule("CWS089", cwe="CWE-89", title="SQL built from untrusted data", severity="critical",
      calls={"execute", "executemany", "executescript", "raw", "text", "read_sql", "read_sql_query",
             "mogrify", "extra", "RawSQL"})
def sql_injection(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """SQL text built with string formatting from a non-constant value.

    **What.** A database call (``cursor.execute``, ``executemany``, ``executescript``, Django
    ``raw``/``extra``, SQLAlchemy ``text()``, ``pandas.read_sql``) whose SQL text is made with an
    f-string, ``+``, ``%`` or ``.format()`` from a value that is not a constant, or whose whole
    SQL text is a request field as the client sent it (``execute(request.args["sql"])``).

    **Why.** Whoever controls the value can change the query: read other rows, bypass a login,
    drop tables (CWE-89).

    **Confidence.** High when a request field, ``input()`` or the environment reaches the SQL
    text; lower, and one severity lower, when only a function parameter does (its callers may
    pass trusted values) or the value is not traced (a database value); no finding when the SQL text is
    constant or the value went through ``int()``/``float()``. ``execute(sql, params)`` with a
    constant ``sql`` is a parameterised query and is never flagged.

    **Example.**

        query = "SELECT * FROM users WHERE name = '" + name + "'"
        cur.execute(query)

    **Fix.** Pass values as parameters: ``cur.execute("SELECT * FROM users WHERE name = ?", (name,))``.
    """
    # (Django's RawSQL is also covered.)
    qual = ctx.qualname(call) or ""
    name = qual.rsplit(".", 1)[-1] if qual else getattr(call.func, "attr", "")
    if name == "text" and not ("sqlalchemy" in qual or ctx.imported("sqlalchemy")):
        return
    if name in ("read_sql", "read_sql_query") and not ("pandas" in qual or qual.startswith("pd.")):
        return
    if name == "RawSQL" and not ("django" in qual or ctx.imported("django")):
        return
    sql = arg(call, 0, "sql") or kwarg(call, "query") or kwarg(call, "statement")
    if name == "extra":
        sql = kwarg(call, "where") or kwarg(call, "select")
    if sql is None or isinstance(sql, ast.Constant):
        return
    receiver = call.func.value if isinstance(call.func, ast.Attribute) else None
    receiver_name = getattr(receiver, "id", None) or getattr(receiver, "attr", None) or ""
    if name in ("execute", "executemany", "executescript", "mogrify", "raw") and not (
            _DB_RECEIVER.search(receiver_name) or _SQL_WORDS.search(_sql_text(sql, ctx))
            or isinstance(receiver, ast.Call)):
        return  # some other .execute(): not a database
    whole = _client_text(sql, ctx)  # the client writes the whole query
    hit = ctx.sink(call, sql, "sql", f"{ast.unparse(call.func)}()", need_built=not whole,
                   what="SQL text is built from a non-constant value" if not whole else "SQL text comes from the client")
    if hit and hit.lower_severity and _BOUND_PARAMS.search(_sql_text(sql, ctx)):
        return  # untraced identifier formatted into a statement whose values are bound
    if hit:
        yield hit


def _client_text(expr: ast.AST, ctx: Context) -> bool:
    """``expr`` is a request field read as it came (``request.args.get("q")``), directly or as
    the value last assigned to the name, not text some call made from it: the client writes the
    whole query (a parameter, the command line or ``input()`` taken whole are the caller's or
    the operator's choice: a query tool runs the SQL its user types)."""
    value = ctx.assigned_value(expr) if isinstance(expr, ast.Name) else expr
    return value is not None and request_field(value) is not None


_SQL_STATEMENT = re.compile(r"(?is)^\W*(select\s.+\sfrom\s|insert\s+into\s|update\s+[\w.\"`\[\]]+\s+set\s|"
                            r"delete\s+from\s|replace\s+into\s)")


def leading_text(node: ast.AST) -> str:
    """The literal text a string-building expression starts with."""
    while True:
        if isinstance(node, ast.Constant):
            return node.value if isinstance(node.value, str) else ""
        if isinstance(node, ast.JoinedStr):
            return "".join(v.value for v in node.values if isinstance(v, ast.Constant))
        if isinstance(node, ast.BinOp):
            node = node.left
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            node = node.func.value
        else:
            return ""


@rule("CWS089B", cwe="CWE-89", title="SQL statement text built from untrusted data", severity="high",
      node=(ast.BinOp, ast.JoinedStr, ast.Call), calls={"format"})
def sql_string_building(node: ast.AST, ctx: Context) -> Iterator[Hit]:
    """A string that starts like an SQL statement is built from a non-constant value.

    **What.** ``"SELECT ... FROM ..." + x``, ``"UPDATE t SET a = %s" % x``, ``f"DELETE FROM t
    WHERE id = {x}"``, ``"INSERT INTO ...".format(x)`` wherever it is built, also when it is
    handed to a helper (``run_query(sql)``) that CWS089 cannot see into. Like Bandit's B608,
    but with data flow.

    **Why.** The value becomes part of the SQL statement (CWE-89).

    **Confidence.** The source's when a parameter, request field or ``input()`` reaches it,
    0.45 when the value is not traced; none for constants and ``int()``-cast values, nor for
    untraced values formatted into a statement that binds its values (``WHERE id = ?``): those
    are identifiers such as a configured table name.

    **Example.**

        db_helper.run("UPDATE drawings SET approved = 1 WHERE id = " + request.form["id"])

    **Fix.** Build the statement with placeholders and pass the values separately.
    """
    if isinstance(node, ast.BinOp) and not isinstance(node.op, (ast.Add, ast.Mod)):
        return
    if isinstance(node, ast.Call) and not isinstance(node.func, ast.Attribute):
        return
    if not _SQL_STATEMENT.match(leading_text(node)):
        return
    if _reaches_execute(node, ctx):
        return  # CWS089 reports it where it is executed, with the same flow
    flow = ctx.flow(node, "sql")
    level = flow.level
    if level == 0:
        return
    if level == 2:
        yield ctx.hit(node, flow, flow.explain("SQL statement text"), flow.confidence * 0.95)
    elif not _BOUND_PARAMS.search(_strings_in(node)):
        yield Hit(node, "SQL statement text is built from a value not traced to a constant",
                  0.45, lower_severity=True)


_EXECUTORS = {"execute", "executemany", "executescript", "raw", "text", "read_sql", "read_sql_query",
              "mogrify", "RawSQL"}


def _reaches_execute(node: ast.AST, ctx: Context) -> bool:
    """The built string is the SQL argument of an execute-like call that CWS089 flags,
    directly or through the variable its statement assigns."""
    scope = ctx.func if ctx.func is not None else ctx.stmt
    stmt = ctx.stmt
    names = set()
    if isinstance(stmt, ast.Assign):
        names = {t.id for t in stmt.targets if isinstance(t, ast.Name)}
    for n in walk(scope) if scope is not None else ():
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in _EXECUTORS \
                or isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in _EXECUTORS:
            first = n.args[0] if n.args else None
            if (first is node or (isinstance(first, ast.Name) and first.id in names)) \
                    and any(sql_injection(n, ctx)):
                return True
    return False


_SHELL_CALLS = {"os.system", "os.popen", "os.popen2", "os.popen3", "os.popen4", "popen2.popen2",
                "commands.getoutput", "commands.getstatusoutput", "subprocess.getoutput",
                "subprocess.getstatusoutput", "asyncio.create_subprocess_shell",
                "platform.popen"}
# run a program from an argument list, never through a shell
_NO_SHELL = ("os.exec", "os.spawn", "os.posix_spawn", "pty.spawn", "asyncio.create_subprocess_exec",
             "asyncio.loop.subprocess_exec")
_LOOP_METHOD = "asyncio.loop."  # an event loop's subprocess_shell / subprocess_exec, named as one
_SUBPROCESS = {"subprocess.Popen", "subprocess.call", "subprocess.run", "subprocess.check_call",
               "subprocess.check_output"}


@rule("CWS078", cwe="CWE-78", title="OS command built from untrusted data", severity="critical",
      calls={"system", "popen", "popen2", "popen3", "popen4", "getoutput", "getstatusoutput",
             "create_subprocess_shell", "spawn", "Popen", "call", "run", "check_call", "check_output",
             "execl", "execle", "execlp", "execlpe", "execv", "execve", "execvp", "execvpe", "spawnl",
             "spawnle", "spawnlp", "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe", "posix_spawn",
             "posix_spawnp", "create_subprocess_exec", "subprocess_shell", "subprocess_exec"})
def command_injection(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """A shell runs a command line that is not a constant.

    **What.** ``os.system``, ``os.popen``, ``subprocess.getoutput``, ``commands.*``,
    ``asyncio.create_subprocess_shell``, an event loop's ``subprocess_shell``, or
    ``subprocess.*`` with ``shell=True``, given a command that is not a constant string.

    **Why.** Shell metacharacters in the value (``;``, ``|``, ``$()``) run further commands with
    the program's rights (CWE-78).

    **Confidence.** High when a request field, ``input()``, the command line (``sys.argv``,
    argparse), a socket's ``recv()`` or the environment
    reaches the command; lower, and one severity lower, when only a function parameter does or
    the command is not traced (a database value); none when it is
    constant or each value went through ``shlex.quote``/``int()``. ``subprocess`` with an argument
    list and no shell is not flagged.

    **Example.**

        os.system("ping -c 1 " + host)

    Without a shell, an argument list is not command injection: each item reaches the program
    as one argument, whatever characters it holds, so data in the arguments is never flagged.
    What is flagged (taint only): request data or ``input()`` choosing the *program*
    (``subprocess.run([cmd[0], ...])``, ``os.execvp(prog, ...)``), a whole command string
    formatted from tainted data, and the script of ``["sh", "-c", x]``, which is a shell
    again. The command line (``sys.argv``) choosing the program is mostly the choice of whoever
    runs it (a wrapper such as ``time``): 0.6, one severity lower. The environment choosing it
    is not flagged.

    **Fix.** ``subprocess.run(["ping", "-c", "1", host], check=True)`` (no shell), or
    ``shlex.quote(host)`` when a shell is unavoidable.
    """
    qual = (ctx.qualname(call) or "").replace("asyncio.subprocess.", "asyncio.", 1)
    if qual.endswith(".subprocess_shell") or qual.endswith(".subprocess_exec"):
        qual = _LOOP_METHOD + qual.rsplit(".", 1)[1]  # loop.subprocess_*(protocol_factory, ...)
    if qual in _SUBPROCESS or qual.startswith(_NO_SHELL):
        shell = kwarg(call, "shell")
        if shell is None or is_const(shell, False) or (isinstance(shell, ast.Constant) and not shell.value):
            yield from _no_shell(call, qual, ctx)
            return
        command = arg(call, 0, "args")
    elif qual in _SHELL_CALLS:
        command = arg(call, 0, "cmd") or arg(call, 0, "command")
    elif qual == _LOOP_METHOD + "subprocess_shell":
        command = arg(call, 1, "cmd")
    else:
        return
    if command is None or isinstance(command, ast.Constant):
        return
    if isinstance(command, (ast.List, ast.Tuple)) and qual in _SUBPROCESS:
        command = command.elts[0] if command.elts else None  # with shell=True only args[0] is the script
        if command is None:
            return
    shown = ast.unparse(call.func) if qual.startswith(_LOOP_METHOD) else qual  # the loop as the code names it
    hit = ctx.sink(call, command, "command", f"{shown}()", what="shell command from a non-constant value")
    if hit:
        yield hit


_EVALUATORS = frozenset({"eval", "exec", "compile", "execfile", "builtins.eval", "builtins.exec",
                         "PIL.ImageMath.eval", "PIL.ImageMath.unsafe_eval"})


@rule("CWS094", cwe="CWE-95", title="Code evaluated from untrusted data", severity="critical",
      calls={"eval", "exec", "compile", "execfile", "unsafe_eval"})
def code_injection(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """``eval``/``exec``/``compile`` of a value that is not a constant.

    **What.** The builtins ``eval``, ``exec``, ``compile`` (and Python 2 ``execfile``) called on
    code that is not a literal string; Pillow's ``ImageMath.eval``/``unsafe_eval``, which
    evaluate their expression as Python (CVE-2023-50447).

    **Why.** Whoever controls the value runs arbitrary Python in the process (CWE-94/95).

    **Confidence.** High when a request field, ``input()`` or the environment reaches it;
    lower, and one severity lower, when only a function parameter does or it is untraced;
    none for constants. ``ast.literal_eval`` is the safe
    replacement and is never flagged.

    **Example.**

        result = eval(request.args["expr"])

    **Fix.** Parse the data instead (``ast.literal_eval``, ``json.loads``, a small expression
    parser); never evaluate it.
    """
    qual = ctx.qualname(call)
    if qual not in _EVALUATORS:
        return
    code = arg(call, 0, "source") or arg(call, 0, "object") or arg(call, 0, "expression")
    hit = ctx.sink(call, code, "code", f"{qual}()", what="code evaluated from a non-constant value")
    if hit:
        if qual.endswith("exec") or qual == "compile":
            hit.cwe = "CWE-94"
        yield hit


_INTERPRETERS = ("code.InteractiveConsole", "code.InteractiveInterpreter")


@rule("CWS094C", cwe="CWE-95", title="Code run by an embedded interpreter", severity="critical",
      calls={"push", "runsource", "runcode"})
def interpreter_injection(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """An embedded Python interpreter (``code.InteractiveConsole``/``InteractiveInterpreter``)
    given code that is not a constant.

    **What.** ``console.push(line)``, ``interpreter.runsource(source)`` or ``.runcode(code)`` on
    an interpreter made in the function (or in the call itself), with a non-constant argument.

    **Why.** These run the text as Python, like ``exec``: whoever controls it runs arbitrary
    code in the process (CWE-94/95).

    **Confidence.** The source's, as for ``eval`` (CWS094); constants are not flagged.

    **Example.**

        console = code.InteractiveConsole()
        console.push(request.form["line"])

    **Fix.** Do not run data as code; expose a fixed set of commands instead.
    """
    if not isinstance(call.func, ast.Attribute):
        return
    receiver = call.func.value
    made = ctx.assigned_value(receiver) if isinstance(receiver, ast.Name) else receiver
    if not (isinstance(made, ast.Call) and (ctx.qualname(made) or "").endswith(_INTERPRETERS)):
        return
    code = arg(call, 0, "source") or arg(call, 0, "line") or arg(call, 0, "code")
    hit = ctx.sink(call, code, "code", f"{ast.unparse(call.func)}()",
                   what="code run by an embedded interpreter from a non-constant value")
    if hit:
        yield hit


_VARARG_EXECS = ("os.execl", "os.spawnl")  # execl*(path, arg0, ...), spawnl*(mode, path, arg0, ...)
_SHELLS = {"sh", "bash", "zsh", "dash", "ksh", "/bin/sh", "/bin/bash", "cmd", "cmd.exe", "powershell"}


def _no_shell(call: ast.Call, qual: str, ctx: Context) -> Iterator[Hit]:
    """subprocess/exec/spawn without a shell: flag untrusted data choosing the program, a
    command string built from it, or the script given to ``sh -c``."""
    if qual.startswith(("os.spawn", "os.posix_spawn", _LOOP_METHOD)):
        # spawn*(mode, ...), loop.subprocess_exec(protocol_factory, program, *args)
        args = call.args if qual.startswith("os.posix_spawn") else call.args[1:]
    else:
        args = call.args
    first = args[0] if args else kwarg(call, "args")
    if first is None or isinstance(first, ast.Starred):
        return
    varargs = qual.startswith(_VARARG_EXECS)
    # execl(path, arg0, arg1, ...): the program's argv is the arguments after its path
    listed = ast.List(elts=list(args[1:])) if varargs else _argument_list(first, ctx)
    target = None
    script = False
    if listed is not None:
        elts = [*listed.elts, *_appended(first, ctx)]
        if not elts:
            return
        shell = next((i for i in range(len(elts) - 1) if _const_in(elts[i], _SHELLS)
                      and _const_in(elts[i + 1], ("-c", "/c"))), None)
        if shell is not None:  # sh -c <script>; with the items of both branches of an if, the first script
            target = next((e for e in elts[shell + 2:] if not isinstance(e, ast.Constant)), None)
            script = True
        else:
            target = first if varargs else elts[0]  # the program; the other items are plain arguments
    elif qual.startswith(_NO_SHELL) or not isinstance(first, ast.Name) or ctx.flow(first).built:
        target = first
    if target is None or isinstance(target, (ast.Constant, ast.Starred)):
        return
    flow = ctx.flow(target, "command")
    if flow.level != 2 or flow.source == "environment":
        return
    if flow.source == "argv":
        # the command line choosing the program is mostly its user's own choice (a wrapper
        # like `time` or `nohup`), dangerous when another program builds that command line
        yield ctx.hit(call, flow, flow.explain(f"{qual}() as the program or its script"), 0.6,
                      lower_severity=True)
        return
    if flow.source == "parameter":
        # A wrapper running the program its caller names is the caller's choice; flag a
        # parameter only in a sh -c script or a command string formatted from it.
        formatted = target is first and flow.how in ("an f-string", "%-formatting", "str.format()")
        if not (script or formatted):
            return
    yield ctx.hit(call, flow, flow.explain(f"{qual}() as the program or its script"), flow.confidence * 0.9)


def _const_in(node: ast.AST, values) -> bool:
    return isinstance(node, ast.Constant) and node.value in values


def _appended(name: ast.AST, ctx: Context) -> list[ast.AST]:
    """The items ``name.append(x)``/``name.extend([...])`` add to a list between its assignment
    and ``name``'s use here, in source order (``args = []; args.append("sh"); ...``)."""
    value = ctx.assigned_value(name)
    if not isinstance(name, ast.Name) or value is None or ctx.func is None:
        return []
    calls = sorted((n for n in walk(ctx.func) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                    and isinstance(n.func.value, ast.Name) and n.func.value.id == name.id
                    and value.lineno <= n.lineno < name.lineno and len(n.args) == 1),
                   key=lambda n: (n.lineno, n.col_offset))
    items: list[ast.AST] = []
    for call in calls:
        if call.func.attr == "append":
            items.append(call.args[0])
        elif call.func.attr == "extend":
            items.extend(call.args[0].elts if isinstance(call.args[0], (ast.List, ast.Tuple)) else [call.args[0]])
    return items


def _argument_list(expr: ast.AST, ctx: Context) -> ast.List | ast.Tuple | None:
    """The argument-list literal ``expr`` is, starts with (``["git"] + extra``) or was last
    assigned in the enclosing function; None when it is no list (a command string)."""
    expr = ctx.assigned_value(expr) or expr
    while isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
        expr = expr.left
    return expr if isinstance(expr, (ast.List, ast.Tuple)) else None


def _tainted_query(call: ast.Call, expr: ast.AST | None, kind: str, sink: str, ctx: Context) -> Hit | None:
    """A hit when outside data reaches the query text ``expr``: a request field, ``input()``
    or the environment, as it is or formatted in; a function parameter only when formatted into
    a larger query (a parameter that is the whole query is its caller's choice)."""
    if expr is None or isinstance(expr, ast.Constant):
        return None
    flow = ctx.flow(expr, kind)
    if flow.level != TAINTED or flow.caller_chosen:
        return None
    return ctx.hit(call, flow, flow.explain(sink))


# python-ldap: search*(base, scope, filterstr); ldap3: Connection.search(search_base, search_filter)
_LDAP_SEARCHES = {"search", "search_s", "search_st", "search_ext", "search_ext_s"}


@rule("CWS090", cwe="CWE-90", title="LDAP query built from untrusted data", severity="high",
      calls=_LDAP_SEARCHES)
def ldap_injection(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """An LDAP search filter or base DN built from untrusted data.

    **What.** python-ldap's ``search``/``search_s``/``search_ext_s`` (filter: the third
    argument) and ldap3's ``Connection.search`` (filter: the second), in a file that imports
    ``ldap`` or ``ldap3``, whose filter or base DN a request field, ``input()`` or the
    environment reaches, or that is formatted from a function parameter.

    **Why.** ``*)(uid=*))(|(uid=*`` in a user name turns "find this user" into "find every
    user" or skips the password check of an LDAP login (CWE-90).

    **Confidence.** The source's; ``escape_filter_chars``/``escape_dn_chars`` and
    ``ldap.filter.filter_format`` clear the taint.

    **Example.**

        conn.search("dc=corp,dc=com", f"(uid={request.args['user']})")

    **Fix.** ``ldap.filter.filter_format("(uid=%s)", [user])`` or
    ``ldap3.utils.conv.escape_filter_chars(user)``.
    """
    if not isinstance(call.func, ast.Attribute):
        return
    if ctx.imported("ldap3") and call.func.attr == "search":
        base, query = arg(call, 0, "search_base"), arg(call, 1, "search_filter")
    elif ctx.imported("ldap"):
        base, query = arg(call, 0, "base"), arg(call, 2, "filterstr")
    else:
        return
    sink = f"{ast.unparse(call.func)}()"
    hit = _tainted_query(call, query, "ldap", f"the filter of {sink}", ctx) or \
        _tainted_query(call, base, "ldap", f"the base DN of {sink}", ctx)
    if hit:
        yield hit


@rule("CWS643", cwe="CWE-643", title="XPath query built from untrusted data", severity="high",
      calls={"xpath", "XPath", "find", "findall", "findtext", "iterfind"})
def xpath_injection(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """An XPath expression built from untrusted data.

    **What.** lxml's ``.xpath(expr)`` and ``etree.XPath(expr)``, and ElementTree's
    ``find``/``findall``/``findtext``/``iterfind`` in a file that imports ``lxml`` or
    ``xml.etree``, where a request field, ``input()`` or the environment reaches the expression,
    or a function parameter is formatted into it (for the ElementTree methods, which strings
    share, only a formatted path counts).

    **Why.** ``' or '1'='1`` in a value widens the query to every node: other users' records, a
    login check that always matches (CWE-643).

    **Confidence.** The source's. lxml's variables (``tree.xpath("//user[@name=$name]",
    name=user)``) keep the value out of the expression and are never flagged.

    **Example.**

        tree.xpath("/users/user[@name='%s']" % request.args["name"])

    **Fix.** Pass values as XPath variables: ``tree.xpath("//user[@name=$name]", name=name)``.
    """
    if not (ctx.imported("lxml") or ctx.imported("xml.etree") or ctx.imported("defusedxml")):
        return
    qual = ctx.qualname(call) or ""
    name = qual.rsplit(".", 1)[-1] if qual else getattr(call.func, "attr", "")
    if name in ("find", "findall", "findtext", "iterfind") and not isinstance(call.func, ast.Attribute):
        return
    expr = arg(call, 0, "path") if name not in ("xpath", "XPath") else arg(call, 0, "_path")
    if name not in ("xpath", "XPath") and (expr is None or not ctx.flow(expr).built):
        return  # ``str.find(needle)`` looks the same: only a path formatted from the data counts
    hit = _tainted_query(call, expr, "xpath", f"the XPath expression of {ast.unparse(call.func)}()", ctx)
    if hit:
        yield hit


# template engines whose template *source* runs code when an attacker writes it
_TEMPLATE_ENGINES = ("jinja2.", "flask.", "django.template.", "mako.template.", "tornado.template.")


@rule("CWS094B", cwe="CWE-94", title="Template source from untrusted data", severity="critical",
      calls={"render_template_string", "Template", "from_string"})
def template_injection(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """A template engine compiles a template whose text untrusted data wrote (server-side
    template injection).

    **What.** Flask's ``render_template_string(source)``, Jinja2's ``Template(source)`` and
    ``Environment.from_string(source)``, Django's, Mako's and Tornado's ``Template(source)``,
    where a request field, ``input()`` or the environment reaches the template text, or a
    function parameter is formatted into it. Values passed *to* a template
    (``render_template_string("Hi {{ name }}", name=x)``) are data, not template, and are never
    flagged; nor is ``string.Template`` (plain substitution).

    **Why.** Template syntax is code: ``{{ cycler.__init__.__globals__.os.popen('id').read() }}``
    in a Jinja2 template runs a shell command on the server (CWE-1336, leading to CWE-94).

    **Example.**

        return render_template_string("<h1>Hello " + request.args["name"] + "</h1>")

    **Fix.** Keep templates constant and pass user data as values:
    ``render_template_string("<h1>Hello {{ name }}</h1>", name=name)``.
    """
    qual = ctx.qualname(call) or ""
    name = qual.rsplit(".", 1)[-1] if qual else getattr(call.func, "attr", "")
    if name == "from_string":
        if not (ctx.imported("jinja2") or ctx.imported("flask")):
            return
    elif not qual.startswith(_TEMPLATE_ENGINES):
        return  # string.Template, or a Template class of no engine the rules know
    source = arg(call, 0, "source")
    hit = _tainted_query(call, source, "template", f"the template text of {ast.unparse(call.func)}()", ctx)
    if hit:
        yield hit
