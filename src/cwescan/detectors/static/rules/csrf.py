"""CSRF (CWE-352): protection exempted for a view or switched off for an application.

Our own rules: Bandit has no CSRF check.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from cwescan.core.astwalk import walk
from cwescan.detectors.static.context import Context, is_const, kwarg
from cwescan.detectors.static.patterns import last_name
from cwescan.detectors.static.registry import Hit, rule

# view decorators that take a view out of CSRF checking (Django, Flask-WTF)
_EXEMPTING = ("csrf_exempt", "csrf.exempt")
# Pyramid's view registrations: ``require_csrf=False`` exempts the view. Like the settings
# calls below they configure the application and carry no data, so triage does not review a
# function for calling them (``minor_calls``)
_PYRAMID_VIEWS = frozenset({"view_config", "add_view"})


@rule("CWS352", cwe="CWE-352", title="CSRF protection disabled for a view", severity="high",
      node=(ast.FunctionDef, ast.AsyncFunctionDef, ast.Call), calls=_PYRAMID_VIEWS,
      minor_calls=_PYRAMID_VIEWS)
def csrf_exempt(node: ast.AST, ctx: Context) -> Iterator[Hit]:
    """A view exempted from CSRF protection.

    **What.** Django ``@csrf_exempt`` or Flask-WTF ``@csrf.exempt`` on a view; Pyramid
    ``@view_config(require_csrf=False)`` or ``config.add_view(..., require_csrf=False)``.

    **Why.** Another site can make a logged-in user's browser submit this request (change a
    password, transfer money) with the user's cookies (CWE-352).

    **Example.**

        @csrf_exempt
        def transfer(request): ...

    **Fix.** Remove the exemption and send the CSRF token with the form or the ``X-CSRFToken``
    header; exempt only endpoints that authenticate without cookies (API tokens).
    """
    if isinstance(node, ast.Call):
        if is_const(kwarg(node, "require_csrf"), False):
            yield Hit(node, f"{ast.unparse(node.func)}(require_csrf=False) exempts the view from CSRF "
                            "protection", 0.7)
        return
    for dec in node.decorator_list:
        target = dec.func if isinstance(dec, ast.Call) else dec
        name = ast.unparse(target)
        if name.endswith(_EXEMPTING):
            yield Hit(dec, f"view `{node.name}` is exempt from CSRF protection ({name})", 0.7)


_CSRF_SETTINGS = frozenset({"WTF_CSRF_ENABLED", "CSRF_ENABLED", "WTF_CSRF_CHECK_DEFAULT"})


@rule("CWS352B", cwe="CWE-352", title="CSRF protection switched off", severity="high",
      node=(ast.Assign, ast.Call), calls={"update", "set_default_csrf_options"},
      minor_calls={"update", "set_default_csrf_options"})
def csrf_disabled(node: ast.AST, ctx: Context) -> Iterator[Hit]:
    """CSRF protection switched off in settings, for a whole application or in a form.

    **What.** ``WTF_CSRF_ENABLED = False`` (module setting, ``app.config[...]`` or
    ``app.config.update(...)``), ``csrf = False`` in a WTForms ``class Meta``, Pyramid's
    ``config.set_default_csrf_options(require_csrf=False)``.

    **Why.** Forms then accept cross-site submissions (CWE-352).

    **Example.**

        app.config["WTF_CSRF_ENABLED"] = False

    **Fix.** Keep CSRF on outside tests (set it in the test configuration only).
    """
    if isinstance(node, ast.Call):
        yield from _disabled_by_call(node)
        return
    if not is_const(node.value, False):
        return
    for t in node.targets:
        if isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Constant):
            name = str(t.slice.value)
        elif isinstance(t, (ast.Name, ast.Attribute)):
            name = t.id if isinstance(t, ast.Name) else t.attr
        else:
            continue
        if name in _CSRF_SETTINGS or name == "csrf" and _in_meta(node, ctx):
            yield Hit(node, f"`{name}` set to False disables CSRF protection", 0.75)


def _disabled_by_call(call: ast.Call) -> Iterator[Hit]:
    if last_name(call.func) == "set_default_csrf_options":
        if is_const(kwarg(call, "require_csrf"), False):
            yield Hit(call, "set_default_csrf_options(require_csrf=False) turns CSRF checks off for "
                            "every view", 0.75)
        return
    for key in call.keywords:  # app.config.update(WTF_CSRF_ENABLED=False)
        if key.arg in _CSRF_SETTINGS and is_const(key.value, False):
            yield Hit(call, f"`{key.arg}` set to False disables CSRF protection", 0.75)


def _in_meta(node: ast.AST, ctx: Context) -> bool:
    for cls in walk(ctx.tree):
        if isinstance(cls, ast.ClassDef) and cls.name == "Meta" and node in cls.body:
            return True
    return False
