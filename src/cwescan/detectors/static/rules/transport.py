"""Transport: data and credentials sent over cleartext protocols (CWE-319).

Our own rule. Bandit's B312/B321/B401/B402 flag every ``telnetlib``/``ftplib`` import and call;
CWS319 flags the connections (an import alone sends nothing), mail logins without STARTTLS, and
requests to fixed ``http://`` URLs of other hosts.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from cwescan.core.testcode import is_test_path
from cwescan.detectors.static.context import Context, arg
from cwescan.detectors.static.registry import Hit, rule

_CLEARTEXT_CLIENTS = {"telnetlib.Telnet": "Telnet", "ftplib.FTP": "FTP"}
_HTTP_CLIENTS = ("requests.", "httpx.", "urllib.request.urlopen", "urllib.request.Request",
                 "urllib.request.urlretrieve", "urllib2.urlopen", "urllib2.Request", "urllib3.request",
                 "xmlrpc.client.ServerProxy", "xmlrpclib.ServerProxy")
_HTTP_CALLS = {"get", "post", "put", "patch", "delete", "head", "options", "request", "urlopen",
               "Request", "urlretrieve", "ServerProxy"}
# hosts where a cleartext request stays on this machine or is a documentation placeholder
_LOCAL_OR_EXAMPLE = re.compile(r"(?i)^http://(localhost|127(\.\d+){3}|\[::1\]|0\.0\.0\.0|"
                               r"169\.254\.169\.254|[^/:]*\.(local|localhost|test|invalid)|"
                               r"([^/:]*\.)?example\.(com|org|net))([:/?#]|$)")


@rule("CWS319", cwe="CWE-319", title="Cleartext protocol", severity="medium",
      calls={"Telnet", "FTP", "login", *_HTTP_CALLS})
def cleartext_transport(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """Data or a password crosses the network unencrypted.

    **What.** A ``telnetlib.Telnet`` or ``ftplib.FTP`` connection (not ``FTP_TLS``); an
    ``smtplib.SMTP`` connection that logs in without ``starttls()`` in the same function; a
    request (``requests``, ``httpx``, ``urllib``, ``xmlrpc``) to a constant ``http://`` URL of
    another host (localhost, link-local metadata, ``*.local``/``*.test`` and ``example.com``
    are not flagged, nor are test files).

    **Why.** Anyone on the path (Wi-Fi, a proxy, the hosting network) reads the credentials and
    data and can change the responses (CWE-319).

    **Confidence.** 0.75 for Telnet/FTP connections and mail logins; 0.45, one severity lower,
    for a fixed ``http://`` URL (it may carry nothing sensitive).

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
    elif qual.startswith(_HTTP_CLIENTS) and not is_test_path(ctx.path):
        takes_method = qual.rsplit(".", 1)[-1] == "request" and not qual.startswith("urllib3")
        url = arg(call, 1, "url") if takes_method else arg(call, 0, "url") or arg(call, 0, "uri")
        if (isinstance(url, ast.Constant) and isinstance(url.value, str)
                and url.value.lower().startswith("http://") and not _LOCAL_OR_EXAMPLE.match(url.value)):
            yield Hit(call, f"{qual}() talks to {url.value[:60]!r} over cleartext HTTP", 0.45,
                      lower_severity=True)


def _smtp_client(receiver: ast.AST, ctx: Context) -> str | None:
    """``smtplib.SMTP(...)`` when ``receiver`` is that call or a variable assigned from it
    in the enclosing function (``SMTP_SSL`` is encrypted from the start)."""
    value = receiver if isinstance(receiver, ast.Call) else ctx.assigned_value(receiver)
    if value is None and isinstance(receiver, ast.Name) and ctx.func is not None:
        for node in ast.walk(ctx.func):  # with smtplib.SMTP(host) as server:
            if isinstance(node, (ast.With, ast.AsyncWith)):
                for item in node.items:
                    var = item.optional_vars
                    if isinstance(var, ast.Name) and var.id == receiver.id:
                        value = item.context_expr
    if isinstance(value, ast.Call) and (ctx.qualname(value) or "") == "smtplib.SMTP":
        return "smtplib.SMTP"
    return None


def _calls_starttls(receiver: ast.AST, ctx: Context) -> bool:
    scope = ctx.func if ctx.func is not None else ctx.tree
    text = ast.unparse(receiver)
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "starttls"
               and ast.unparse(n.func.value) == text for n in ast.walk(scope))
