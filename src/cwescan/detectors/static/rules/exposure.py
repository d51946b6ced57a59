"""Exposure: stack traces sent to the client (CWE-209), credentials in readable tokens (CWE-522).

Our own rules: Bandit checks neither.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from cwescan.core.astwalk import walk
from cwescan.detectors.static.context import Context, arg
from cwescan.detectors.static.patterns import is_route_decorator, last_name, positional_names
from cwescan.detectors.static.registry import Hit, rule

_TRACE_TEXT = frozenset({"format_exc", "format_exception", "format_tb", "format_stack"})
# calls whose arguments become the body of an HTTP response
_RESPONSES = frozenset({"Response", "make_response", "jsonify", "HttpResponse", "HttpResponseServerError",
                        "HttpResponseBadRequest", "JsonResponse", "JSONResponse", "PlainTextResponse",
                        "HTMLResponse", "json_response", "HTTPException", "abort"})
_DEBUG_ONLY = re.compile(r"(?i)debug")


@rule("CWS209", cwe="CWE-209", title="Stack trace sent to the client", severity="medium",
      calls=_TRACE_TEXT, minor_calls=_TRACE_TEXT)
def stack_trace_exposure(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """A web view sends the client the stack trace of an exception.

    **What.** The text of ``traceback.format_exc()`` (or ``format_exception``, ``format_tb``,
    ``format_stack``) returned by a routed view or a view taking ``request`` in a file that
    imports a web framework, or passed to a response (``Response``, ``make_response``,
    ``jsonify``, ``HttpResponse``, ``JSONResponse``, ``abort``...), directly or through a
    variable. Not inside an ``if`` that tests a debug setting.

    **Why.** A trace shows file paths, library versions, code lines and often values (queries,
    keys) that help an attacker aim the next request (CWE-209).

    **Confidence.** 0.7: the trace provably reaches the response; a trace written to a log is
    not flagged.

    **Example.**

        except Exception:
            return traceback.format_exc()

    **Fix.** Log the trace (``logger.exception(...)``) and return a generic message with an
    error id.
    """
    if not (ctx.qualname(call) or "").startswith("traceback.") or ctx.func is None or ctx.stmt is None:
        return
    if _under_debug_test(call, ctx.func):
        return
    reaches = _in_response(call, ctx.stmt) or (isinstance(ctx.stmt, ast.Return) and _is_view(ctx))
    if not reaches and isinstance(ctx.stmt, ast.Assign):
        names = {t.id for t in ctx.stmt.targets if isinstance(t, ast.Name)}
        reaches = any(_sends(stmt, names, ctx) for stmt in walk(ctx.func)
                      if isinstance(stmt, (ast.Return, ast.Expr, ast.Assign)) and stmt.lineno > ctx.stmt.lineno)
    if reaches:
        yield Hit(call, f"{ast.unparse(call.func)}() sends the exception's stack trace to the client", 0.7)


def _in_response(node: ast.AST, stmt: ast.stmt) -> bool:
    """``node`` is (inside) an argument of a response call in ``stmt``."""
    return any(isinstance(c, ast.Call) and last_name(c.func) in _RESPONSES
               and any(node in walk(a) for a in [*c.args, *(k.value for k in c.keywords)])
               for c in walk(stmt))


def _sends(stmt: ast.stmt, names: set[str], ctx: Context) -> bool:
    """``stmt`` returns (from a view) or passes to a response one of the variables ``names``."""
    uses = [n for n in walk(stmt) if isinstance(n, ast.Name) and n.id in names]
    if not uses:
        return False
    if isinstance(stmt, ast.Return) and _is_view(ctx):
        return True
    return any(_in_response(n, stmt) for n in uses)


def _is_view(ctx: Context) -> bool:
    """A routed function, or one taking ``request`` in a file that imports a web framework."""
    for func in ctx.funcs:
        if any(is_route_decorator(d) for d in getattr(func, "decorator_list", ())):
            return True
    return any(n in ("request", "req") for n in positional_names(ctx.func)[:2]) and ctx.imports_web_framework()


def _under_debug_test(node: ast.AST, func: ast.AST) -> bool:
    """``node`` runs only when an ``if`` testing a debug setting holds (``if app.debug:``)."""
    return any(isinstance(n, ast.If) and _DEBUG_ONLY.search(ast.unparse(n.test))
               and any(node in walk(s) for s in n.body) for n in walk(func))


# keys of a token payload that hold a credential or payment data
_CREDENTIAL_KEY = re.compile(r"(?i)(passw(or)?d|passwd|passphrase|(^|_)pwd$|secret|api_?key|private_?key|"
                             r"credit_?card|card_?number|cvv)")


@rule("CWS522", cwe="CWE-522", title="Credential inside a readable token", severity="medium",
      calls={"encode"}, minor_calls={"encode"})
def credential_in_token(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """A password or secret is put into a JSON Web Token's payload.

    **What.** ``jwt.encode(payload, key)`` (PyJWT, python-jose, authlib) where ``payload`` is a
    dict literal, or a variable assigned one in the function, with a key named like a
    password, secret, API key or card number.

    **Why.** A signed JWT is not encrypted: anyone holding the token (the browser, a proxy, a
    log) reads its payload with a base64 decoder (CWE-522).

    **Confidence.** 0.6: the key's name says what the value is.

    **Example.**

        token = jwt.encode({"user": name, "password": password}, key, algorithm="HS256")

    **Fix.** Put an identifier in the token and keep the credential on the server; use JWE if
    the token must carry a secret.
    """
    if not (ctx.qualname(call) or "").endswith("jwt.encode"):
        return
    payload = arg(call, 0, "payload") or arg(call, 0, "claims")
    if isinstance(payload, ast.Name):
        payload = ctx.assigned_value(payload)
    if not isinstance(payload, ast.Dict):
        return
    keys = [k.value for k in payload.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
    found = [k for k in keys if _CREDENTIAL_KEY.search(k)]
    if found:
        yield Hit(call, f"the token's payload carries {found[0]!r}: anyone holding the token can read it", 0.6)
