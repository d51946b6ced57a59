"""Commands run on another machine over SSH (CWE-78): the remote account's shell parses the
command line, so a value formatted into it can run further commands there.

Our own rule: Bandit's paramiko check (B601) flags every ``exec_command`` call, constant or not.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from cwescan.core.astwalk import walk
from cwescan.detectors.static.context import Context, arg
from cwescan.detectors.static.patterns import dotted, last_name
from cwescan.detectors.static.registry import Hit, rule

# paramiko's SSHClient/Channel.exec_command, and the helpers projects wrap around an SSH client,
# named for what they do: _run_ssh, ssh_execute, run_ssh_command, ssh_exec...
_SSH_RUNNER = re.compile(r"(?i)^exec_command$|(?:^|_)(?:run|exec|execute)_?ssh(?:_|$)|(?:^|_)ssh_?(?:run|exec|execute)(?:_|$)")
_FABRIC = frozenset({"fabric.api.run", "fabric.api.sudo", "fabric.operations.run", "fabric.operations.sudo"})


@rule("CWS078R", cwe="CWE-78", title="Remote shell command built from untrusted data", severity="critical")
def remote_command_injection(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """A command line formatted from data is run on another machine over SSH.

    **What.** The command string of paramiko's ``exec_command``, of Fabric's ``run``/``sudo``,
    or of a project's own SSH helper named for running commands (``_run_ssh``,
    ``ssh_execute``, ``run_ssh_command``...), when it is built by formatting (``%``, ``+``,
    f-string, ``format``) from a value that is not constant, directly or through a variable.

    **Why.** SSH hands the command line to the remote account's shell: ``;``, ``|`` or ``$()``
    in the value run further commands on that machine, often a storage array or a server the
    program administers with high rights (CWE-78).

    **Confidence.** As for a local shell command: high when a request field, ``input()``, the
    command line or a socket's data is formatted in; lower, and one severity lower, when only a
    function parameter or an untraced value is. Not flagged: a constant command, a value that
    went through ``shlex.quote``/``int()``, a command passed on unchanged (its caller builds
    it), an argument list (which the helper can quote item by item), a value whose fixed text
    has no space (a destination such as ``exec_ssh(f"{user}@{host}")``, not a command line) and
    a function of an imported module that happens to be called ``exec_command``
    (``numpy.distutils.exec_command``).

    **Example.**

        ssh_cmd = "svcinfo lshostvdiskmap -delim ! %s" % host_name
        out, err = self._run_ssh(ssh_cmd)

    **Fix.** Pass an argument list and quote each item where the helper joins it
    (``" ".join(shlex.quote(a) for a in args)``), or check the value against a strict pattern.
    """
    name = last_name(call.func)
    if not (_SSH_RUNNER.search(name) and not _module_function(call, ctx) or (ctx.qualname(call) or "") in _FABRIC):
        return
    command = arg(call, 0, "command") or arg(call, 0, "cmd")
    if command is None or isinstance(command, ast.Constant):
        return
    built = ctx.assigned_value(command) or command  # what the variable holds, as last assigned
    if _is_list(built) or _destination(_text(built)):
        return
    hit = ctx.sink(call, command, "command", f"{name}()", need_built=True,
                   what="command line for a remote shell (SSH) from a non-constant value")
    if hit:
        yield hit


def _is_list(expr: ast.AST) -> bool:
    """``expr`` is an argument list: a list literal, or a sum with one in it (``cmd + ["-v"]``
    is a list whatever ``cmd`` is)."""
    operands = [expr]
    while operands:
        e = operands.pop()
        if isinstance(e, (ast.List, ast.Tuple, ast.ListComp)):
            return True
        if isinstance(e, ast.BinOp) and isinstance(e.op, ast.Add):
            operands += [e.left, e.right]
    return False


def _module_function(call: ast.Call, ctx: Context) -> bool:
    """The call names a function of an imported module (``exec_command.exec_command(...)``
    after ``from numpy.distutils import exec_command``), not a method of an SSH client."""
    head = (dotted(call.func) or "").partition(".")[0]
    return (head in ctx.aliases or head in ctx.imports) and not (ctx.qualname(call) or "").startswith("paramiko.")


def _destination(text: str) -> bool:
    """Fixed text without a space (``"@ssh.example.org"``): the value names where to connect."""
    return bool(text.strip()) and " " not in text


def _text(expr: ast.AST) -> str:
    """The constant text of the string ``expr`` builds."""
    return "".join(n.value for n in walk(expr) if isinstance(n, ast.Constant) and isinstance(n.value, str))
