"""Cookies: a session cookie the browser may send in cleartext (CWE-614) or hand to scripts
(CWE-1004).

Our own rule: Bandit has no cookie check.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from cwescan.detectors.static.context import Context, arg, is_const, kwarg
from cwescan.detectors.static.registry import Hit, rule

# cookie names that say the cookie authenticates its holder (a CSRF token cookie is meant to
# be read by the page's own scripts, so it is not one)
_SESSIONISH = re.compile(r"(?i)(sess|auth|token|jwt|login|remember|sid$|^sid|credential)")


@rule("CWS614", cwe="CWE-614", title="Session cookie without Secure or HttpOnly", severity="medium",
      calls={"set_cookie"})
def insecure_cookie(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """A cookie is set with its ``Secure`` or ``HttpOnly`` protection switched off.

    **What.** ``response.set_cookie(...)`` (Flask/Werkzeug, Django, Pyramid, Starlette) with
    ``secure=False`` (CWE-614) or ``httponly=False`` (CWE-1004) written out; or, for a cookie
    whose name says it authenticates (session, auth, token, jwt, remember...), without
    ``secure=True`` or without ``httponly=True`` (these frameworks default both to off).

    **Why.** Without ``Secure`` the browser also sends the cookie over plain HTTP, where anyone
    on the network reads it; without ``HttpOnly`` any injected script reads it
    (``document.cookie``) and the session is stolen (CWE-614, CWE-1004).

    **Confidence.** 0.75 when a flag is switched off explicitly; 0.5, one severity lower, when
    an authenticating cookie leaves it at the framework's default.

    **Example.**

        resp.set_cookie("session_id", sid, secure=False)

    **Fix.** ``set_cookie(name, value, secure=True, httponly=True, samesite="Lax")``.
    """
    if not isinstance(call.func, ast.Attribute):
        return
    name = arg(call, 0, "key")
    label = name.value if isinstance(name, ast.Constant) and isinstance(name.value, str) else ""
    who = repr(label) if label else ast.unparse(name) if name is not None else "a cookie"
    secure, httponly = kwarg(call, "secure"), kwarg(call, "httponly")
    if any(k.arg is None for k in call.keywords):
        return  # **settings: the flags may be in there
    for flag, value, cwe in (("secure", secure, "CWE-614"), ("httponly", httponly, "CWE-1004")):
        if is_const(value, False):
            yield Hit(call, f"cookie {who} is set with {flag}=False", 0.75, cwe=cwe)
            return
    if not _SESSIONISH.search(label):
        return
    for flag, value, cwe in (("secure", secure, "CWE-614"), ("httponly", httponly, "CWE-1004")):
        if value is None:
            yield Hit(call, f"the authenticating cookie {label!r} is set without {flag}=True (the framework's "
                            "default leaves it off)", 0.5, lower_severity=True, cwe=cwe)
            return
