"""Active debug code (CWE-489): the Werkzeug interactive debugger left on.

Bandit's B201 flags ``app.run(debug=True)`` when the module imports Flask and files it under
CWE-94, the consequence (the debugger's console runs Python). cwescan files it under CWE-489,
the weakness itself (debug code active where it can be reached), and covers the other ways
to switch the same debugger on: ``use_debugger=True`` in ``app.run`` or Werkzeug's
``run_simple``, and ``DebuggedApplication(app, evalex=True)``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from cwescan.detectors.static.context import Context, arg, is_const, kwarg
from cwescan.detectors.static.registry import Hit, rule
from cwescan.detectors.static.patterns import last_name

# ``.run`` of these is never a Flask app
_OTHER_RUNS = ("asyncio.", "subprocess.", "uvicorn.", "trio.", "anyio.", "unittest.", "pytest.", "doctest.")
_LOOPBACK = re.compile(r"(?i)^(localhost|127(\.\d+){3}|::1)$")


@rule("CWS489", cwe="CWE-489", title="Interactive debugger left on", severity="high",
      calls={"run", "run_simple", "DebuggedApplication"})
def debugger_on(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """The Werkzeug interactive debugger is switched on.

    **What.** Flask ``app.run(debug=True)`` or ``app.run(use_debugger=True)`` in a module that
    imports Flask, Werkzeug ``run_simple(..., use_debugger=True)``, and
    ``DebuggedApplication(app, evalex=True)``.

    **Why.** On an error the debugger serves a traceback page with a Python console: whoever
    reaches it (and gets past the PIN, printed in the server log) runs code in the server
    process (CWE-489, leading to CWE-94). A debug server that is reachable from elsewhere was
    the entry point of public breaches.

    **Confidence.** 0.8 when the server listens beyond this machine (``host="0.0.0.0"``, any
    non-loopback or non-constant host); 0.6 and one severity lower when it listens on
    loopback only, Flask's and Werkzeug's default, which leaves the console to local users.
    ``debug=False`` or a value that is not the constant ``True`` (an environment switch) is not
    flagged.

    **Example.**

        app.run(host="0.0.0.0", debug=True)

    **Fix.** Serve production with a WSGI server (gunicorn, waitress) and never with the
    development server; turn debugging on only locally, with ``flask run --debug``.
    """
    qual = ctx.qualname(call) or ""
    name = last_name(call.func)
    if name == "run":
        if not isinstance(call.func, ast.Attribute) or qual.startswith(_OTHER_RUNS):
            return
        if not ctx.imported("flask"):
            return
        # Flask.run(host=None, port=None, debug=None, load_dotenv=True, **options)
        if is_const(arg(call, 2, "debug"), True):
            switch = "debug"
        elif is_const(kwarg(call, "use_debugger"), True):
            switch = "use_debugger"
        else:
            return
        host = arg(call, 0, "host")
    elif name == "run_simple":
        if "werkzeug" not in qual and not ctx.imported("werkzeug"):
            return
        switch = "use_debugger"
        if not is_const(arg(call, 4, switch), True):
            return
        host = arg(call, 0, "hostname")
    else:  # DebuggedApplication
        if "werkzeug" not in qual and not ctx.imported("werkzeug"):
            return
        switch = "evalex"
        if not is_const(arg(call, 1, switch), True):
            return
        host = None  # wraps an application; where it is served is decided elsewhere
    local = (host is None and name != "DebuggedApplication") or (
        isinstance(host, ast.Constant) and isinstance(host.value, str) and bool(_LOOPBACK.match(host.value)))
    callee = ast.unparse(call.func)
    if name == "DebuggedApplication":
        message = f"{callee}() with evalex=True serves a Python console on the wrapped application's error pages"
    else:
        where = "on loopback only" if local else (
            f"on {host.value}" if isinstance(host, ast.Constant) else "on a host chosen at run time")
        message = (f"{callee}() with {switch}=True turns on the Werkzeug debugger, whose console runs "
                   f"Python code; the server listens {where}")
    if local:
        yield Hit(call, message, 0.6, lower_severity=True)
    else:
        yield Hit(call, message, 0.8)
