"""Injection: SQL (CWE-89), OS commands (CWE-78/77), code evaluation (CWE-94/95).

These are the checks where data flow matters most, so they are our own rather than Bandit's
(Bandit's B608/B602/B307 flag by pattern alone and cannot tell a parameter from a constant).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from cwescan.detectors.static.context import Context, arg, is_const, kwarg
from cwescan.detectors.static.registry import Hit, rule

_SQL_WORDS = re.compile(r"(?i)\b(select\s.+\sfrom|insert\s+into|update\s+\S+\s+set|delete\s+from|"
                        r"drop\s+table|create\s+table|alter\s+table|where\s|order\s+by|union\s+select)")
_DB_RECEIVER = re.compile(r"(?i)(cur|cursor|conn|connection|db|database|session|engine|sql|query|c)$")


def _strings_in(node: ast.AST) -> str:
    return " ".join(n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str))


def _sql_text(expr: ast.AST, ctx: Context) -> str:
    """The literal text of ``expr``, following one variable assignment back."""
    text = _strings_in(expr)
    if isinstance(expr, ast.Name) and ctx.func is not None:
        for node in ast.walk(ctx.func):
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == expr.id for t in node.targets):
                text += " " + _strings_in(node.value)
            elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name) and node.target.id == expr.id:
                text += " " + _strings_in(node.value)
    return text


@rule("CWS089", cwe="CWE-89", title="SQL built from untrusted data", severity="critical",
      calls={"execute", "executemany", "executescript", "raw", "text", "read_sql", "read_sql_query",
             "mogrify", "extra"})
def sql_injection(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """SQL text built with string formatting from a non-constant value.

    **What.** A database call (``cursor.execute``, ``executemany``, ``executescript``, Django
    ``raw``/``extra``, SQLAlchemy ``text()``, ``pandas.read_sql``) whose SQL text is made with an
    f-string, ``+``, ``%`` or ``.format()`` from a value that is not a constant.

    **Why.** Whoever controls the value can change the query: read other rows, bypass a login,
    drop tables (CWE-89).

    **Confidence.** High when a parameter, a request field, ``input()`` or the environment
    reaches the SQL text; medium when the value is not traced; no finding when the SQL text is
    constant or the value went through ``int()``/``float()``. ``execute(sql, params)`` with a
    constant ``sql`` is a parameterised query and is never flagged.

    **Example.**

        query = "SELECT * FROM users WHERE name = '" + name + "'"
        cur.execute(query)

    **Fix.** Pass values as parameters: ``cur.execute("SELECT * FROM users WHERE name = ?", (name,))``.
    """
    qual = ctx.qualname(call) or ""
    name = qual.rsplit(".", 1)[-1] if qual else getattr(call.func, "attr", "")
    if name == "text" and not ("sqlalchemy" in qual or ctx.imported("sqlalchemy")):
        return
    if name in ("read_sql", "read_sql_query") and not ("pandas" in qual or qual.startswith("pd.")):
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
    hit = ctx.sink(call, sql, "sql", f"{ast.unparse(call.func)}()", need_built=True,
                   what="SQL text is built from a non-constant value")
    if hit:
        yield hit


_SHELL_CALLS = {"os.system", "os.popen", "os.popen2", "os.popen3", "os.popen4", "popen2.popen2",
                "commands.getoutput", "commands.getstatusoutput", "subprocess.getoutput",
                "subprocess.getstatusoutput", "asyncio.create_subprocess_shell",
                "platform.popen", "pty.spawn"}
_SUBPROCESS = {"subprocess.Popen", "subprocess.call", "subprocess.run", "subprocess.check_call",
               "subprocess.check_output"}


@rule("CWS078", cwe="CWE-78", title="OS command built from untrusted data", severity="critical",
      calls={"system", "popen", "popen2", "popen3", "popen4", "getoutput", "getstatusoutput",
             "create_subprocess_shell", "spawn", "Popen", "call", "run", "check_call", "check_output"})
def command_injection(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """A shell runs a command line that is not a constant.

    **What.** ``os.system``, ``os.popen``, ``subprocess.getoutput``, ``commands.*``,
    ``asyncio.create_subprocess_shell``, or ``subprocess.*`` with ``shell=True``, given a command
    that is not a constant string.

    **Why.** Shell metacharacters in the value (``;``, ``|``, ``$()``) run further commands with
    the program's rights (CWE-78).

    **Confidence.** High when a parameter, request field, ``input()``, ``sys.argv`` or the
    environment reaches the command; medium when the command is not traced; none when it is
    constant or each value went through ``shlex.quote``/``int()``. ``subprocess`` with an argument
    list and no shell is not flagged.

    **Example.**

        os.system("ping -c 1 " + host)

    **Fix.** ``subprocess.run(["ping", "-c", "1", host], check=True)`` (no shell), or
    ``shlex.quote(host)`` when a shell is unavoidable.
    """
    qual = ctx.qualname(call) or ""
    if qual in _SUBPROCESS:
        shell = kwarg(call, "shell")
        if shell is None or is_const(shell, False) or (isinstance(shell, ast.Constant) and not shell.value):
            return
        command = arg(call, 0, "args")
    elif qual in _SHELL_CALLS:
        command = arg(call, 0, "cmd") or arg(call, 0, "command")
    else:
        return
    if command is None or isinstance(command, ast.Constant):
        return
    if isinstance(command, (ast.List, ast.Tuple)) and qual in _SUBPROCESS:
        command = command.elts[0] if command.elts else None  # with shell=True only args[0] is the script
        if command is None:
            return
    hit = ctx.sink(call, command, "command", f"{qual}()", what="shell command from a non-constant value")
    if hit:
        yield hit


@rule("CWS094", cwe="CWE-95", title="Code evaluated from untrusted data", severity="critical",
      calls={"eval", "exec", "compile", "execfile"})
def code_injection(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """``eval``/``exec``/``compile`` of a value that is not a constant.

    **What.** The builtins ``eval``, ``exec``, ``compile`` (and Python 2 ``execfile``) called on
    code that is not a literal string.

    **Why.** Whoever controls the value runs arbitrary Python in the process (CWE-94/95).

    **Confidence.** High when a parameter, request field, ``input()`` or the environment
    reaches it; medium when untraced; none for constants. ``ast.literal_eval`` is the safe
    replacement and is never flagged.

    **Example.**

        result = eval(request.args["expr"])

    **Fix.** Parse the data instead (``ast.literal_eval``, ``json.loads``, a small expression
    parser); never evaluate it.
    """
    qual = ctx.qualname(call)
    if qual not in ("eval", "exec", "compile", "execfile", "builtins.eval", "builtins.exec"):
        return
    code = arg(call, 0, "source") or arg(call, 0, "object")
    if code is None or isinstance(code, ast.Constant):
        return
    hit = ctx.sink(call, code, "code", f"{qual}()", what="code evaluated from a non-constant value")
    if hit:
        if qual.endswith("exec") or qual == "compile":
            hit.cwe = "CWE-94"
        yield hit
