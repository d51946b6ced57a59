"""Transport: data and credentials sent over cleartext protocols (CWE-319).

Our own rule. Bandit's B312/B321/B401/B402 flag every ``telnetlib``/``ftplib`` import and call;
CWS319 flags the connections (an import alone sends nothing), mail logins without STARTTLS, and
requests to fixed ``http://`` or ``ftp://`` URLs of other hosts.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from cwescan.core.astwalk import walk
from cwescan.core.testcode import is_test_path
from cwescan.detectors.static.context import Context, arg
from cwescan.detectors.static.registry import Hit, rule

_CLEARTEXT_CLIENTS = {"telnetlib.Telnet": "Telnet", "ftplib.FTP": "FTP"}
_HTTP_CLIENTS = ("requests.", "httpx.", "urllib.request.urlopen", "urllib.request.Request",
                 "urllib.request.urlretrieve", "urllib2.urlopen", "urllib2.Request", "urllib3.request",
                 "urllib.urlopen", "urllib.urlretrieve", "xmlrpc.client.ServerProxy", "xmlrpclib.ServerProxy")
_HTTP_CALLS = {"get", "post", "put", "patch", "delete", "head", "options", "request", "urlopen",
               "Request", "urlretrieve", "ServerProxy"}
# urllib's functions as a snippet calls them with its imports cut off
_BARE_URLLIB = {"urlopen", "urlretrieve", "Request"}
# objects whose ``open``/``retrieve`` fetch http:// and ftp:// URLs: urllib's openers (Python 2's
# legacy ``URLopener`` classes too; a snippet may use them without the import)
_URL_OPENERS = {"urllib.request.URLopener", "urllib.request.FancyURLopener", "urllib.URLopener",
                "urllib.FancyURLopener", "URLopener", "FancyURLopener", "urllib.request.OpenerDirector",
                "urllib.request.build_opener", "urllib2.build_opener", "OpenerDirector", "build_opener"}
_OPENER_CALLS = {"open", "retrieve"}
# HTTP sessions and clients: their verbs take the URL like the module-level functions
_HTTP_SESSIONS = {"requests.Session", "requests.session", "httpx.Client", "httpx.AsyncClient"}
# hosts where a cleartext request stays on this machine
_LOCAL = re.compile(r"(?i)^[a-z]+://(localhost|127(\.\d+){3}|\[::1\]|0\.0\.0\.0|"
                    r"169\.254\.169\.254|[^/:]*\.(local|localhost|test|invalid))([:/?#]|$)")
_CLEARTEXT_SCHEMES = ("http://", "ftp://")


@rule("CWS319", cwe="CWE-319", title="Cleartext protocol", severity="medium",
      calls={"Telnet", "FTP", "login", *_HTTP_CALLS, *_OPENER_CALLS}, minor_calls={"retrieve"})
def cleartext_transport(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """Data or a password crosses the network unencrypted.

    **What.** A ``telnetlib.Telnet`` or ``ftplib.FTP`` connection (not ``FTP_TLS``); an
    ``smtplib.SMTP`` connection that logs in without ``starttls()`` in the same function; a
    request (``requests`` and its sessions, ``httpx`` and its clients, ``urllib`` and its
    openers, ``xmlrpc``) to a fixed ``http://`` or ``ftp://`` URL of another host: a literal, a
    variable assigned one, or a parameter's default (localhost, link-local metadata and ``*.local``/``*.test`` hosts are
    not flagged, nor are test files). A placeholder host such as ``example.com`` is flagged:
    whoever fills in the real host keeps the scheme.

    **Why.** Anyone on the path (Wi-Fi, a proxy, the hosting network) reads the credentials and
    data and can change the responses (CWE-319).

    **Confidence.** 0.75 for Telnet/FTP connections and mail logins; 0.45, one severity lower,
    for a fixed cleartext URL (it may carry nothing sensitive).

    **Example.**

        ftp = ftplib.FTP("files.corp.internal", "deploy", password)

    **Fix.** ``ftplib.FTP_TLS``, SSH/SFTP instead of Telnet, ``smtp.starttls()`` before
    ``login()`` (or ``SMTP_SSL``), ``https://`` URLs.
    """
    qual = ctx.qualname(call) or ""
    if qual in _CLEARTEXT_CLIENTS:
        yield Hit(call, f"{_CLEARTEXT_CLIENTS[qual]} sends credentials and data in cleartext ({qual}())", 0.75)
    elif isinstance(call.func, ast.Attribute) and call.func.attr == "login":
        client = _smtp_client(call.func.value, ctx)
        if client is not None and not _calls_starttls(call.func.value, ctx):
            yield Hit(call, f"{ast.unparse(call.func)}() sends the password over a connection "
                            f"({client}) that never called starttls()", 0.75)
    elif not is_test_path(ctx.path):
        url = _request_url(call, qual, ctx)
        fixed = _fixed_text(url, ctx)
        if fixed is not None and fixed.lower().startswith(_CLEARTEXT_SCHEMES) and not _LOCAL.match(fixed):
            scheme = fixed.split(":", 1)[0].upper()
            yield Hit(call, f"{ast.unparse(call.func)}() talks to {fixed[:60]!r} over cleartext {scheme}",
                      0.45, lower_severity=True)


def _request_url(call: ast.Call, qual: str, ctx: Context) -> ast.AST | None:
    """The URL argument of an HTTP client call (a module's function, a session's verb) or of
    an opener's ``open``/``retrieve``."""
    made_by = ""
    if isinstance(call.func, ast.Attribute):
        maker = _constructor(call.func.value, ctx)
        made_by = (ctx.qualname(maker) or "") if maker is not None else ""
    if made_by in _URL_OPENERS and call.func.attr in _OPENER_CALLS:
        return arg(call, 0, "fullurl") or arg(call, 0, "url")
    if qual.startswith(_HTTP_CLIENTS) or qual in _BARE_URLLIB or (
            made_by in _HTTP_SESSIONS and call.func.attr in _HTTP_CALLS):
        verb = qual.rsplit(".", 1)[-1]
        takes_method = (verb == "request" and not qual.startswith("urllib3")) or qual == "requests.Request"
        return arg(call, 1, "url") if takes_method else arg(call, 0, "url") or arg(call, 0, "uri")
    return None


def _fixed_text(expr: ast.AST | None, ctx: Context) -> str | None:
    """The string ``expr`` always holds here: a literal, a variable of the enclosing function
    last assigned one, or a parameter whose default is one (what a call without it sends)."""
    if isinstance(expr, ast.Name):
        assigned = ctx.assigned_value(expr)
        expr = assigned if assigned is not None else _parameter_default(expr.id, ctx.func)
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return expr.value
    return None


def _parameter_default(name: str, func: ast.AST | None) -> ast.AST | None:
    if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return None
    args = func.args
    positional = [*args.posonlyargs, *args.args]
    pairs = [*zip(positional[len(positional) - len(args.defaults):], args.defaults),
             *zip(args.kwonlyargs, args.kw_defaults)]
    return next((default for a, default in pairs if a.arg == name), None)


def _constructor(receiver: ast.AST, ctx: Context) -> ast.Call | None:
    """The call that made the object ``receiver`` names: the receiver itself when it is a call,
    else the call last assigned to the variable in the enclosing function or bound to it by
    ``with call as name:``."""
    value = receiver if isinstance(receiver, ast.Call) else ctx.assigned_value(receiver)
    if value is None and isinstance(receiver, ast.Name) and ctx.func is not None:
        for node in walk(ctx.func):
            if isinstance(node, (ast.With, ast.AsyncWith)):
                for item in node.items:
                    var = item.optional_vars
                    if isinstance(var, ast.Name) and var.id == receiver.id:
                        value = item.context_expr
    return value if isinstance(value, ast.Call) else None


def _smtp_client(receiver: ast.AST, ctx: Context) -> str | None:
    """``smtplib.SMTP(...)`` when ``receiver`` is made by that call (``SMTP_SSL`` is encrypted
    from the start)."""
    value = _constructor(receiver, ctx)
    if value is not None and (ctx.qualname(value) or "") == "smtplib.SMTP":
        return "smtplib.SMTP"
    return None


def _calls_starttls(receiver: ast.AST, ctx: Context) -> bool:
    scope = ctx.func if ctx.func is not None else ctx.tree
    text = ast.unparse(receiver)
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "starttls"
               and ast.unparse(n.func.value) == text for n in walk(scope))
