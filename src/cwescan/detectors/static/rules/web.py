"""Web: XSS (CWE-79), open redirect (CWE-601), SSRF (CWE-918).

Our own rules except CWS079C, which calls Bandit's B701 (jinja2 ``Environment`` autoescape) as
is and adds ``aiohttp_jinja2.setup``: Bandit has no taint-aware XSS, redirect or SSRF
check, and no check of ``jinja2.Template`` (CWS079D).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from cwescan.core.astwalk import walk
from cwescan.detectors.static.bandit_bridge import CONFIDENCE
from cwescan.detectors.static.context import Context, arg, is_const, kwarg
from cwescan.detectors.static.registry import Hit, rule
from cwescan.detectors.static.rules.injection import leading_text
from cwescan.detectors.static.patterns import dotted, is_route_decorator, last_name, walk_local
from cwescan.detectors.static.flow import TAINTED, Flow
from cwescan.core.testcode import is_test_path

_HTML = re.compile(r"<\s*/?\s*[a-zA-Z][a-zA-Z0-9]*[^<>]*>|<\s*[a-zA-Z]+\b")
_WEB_SOURCES = ("request", "route-param", "upload", "upload-name", "input")


@rule("CWS079", cwe="CWE-79", title="Untrusted data marked safe as HTML", severity="high",
      calls={"Markup", "mark_safe", "render_template_string", "SafeString", "format_html_join"})
def markup_injection(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """Non-constant text declared safe HTML, or rendered as a template.

    **What.** ``markupsafe.Markup(x)``, Django ``mark_safe(x)``/``SafeString(x)`` and Flask
    ``render_template_string(x)`` where ``x`` is not a constant; and a constant template
    string that prints a variable with ``|safe`` (``{{ body|safe }}``) rendered with request
    data for it.

    **Why.** Marking text safe turns off auto-escaping: a ``<script>`` in it runs in the
    victim's browser (CWE-79). A template string from user data is also template injection.

    **Confidence.** High for request data and ``input()``; lower, and one severity lower, for a
    plain function parameter or an untraced value; none for constants or values passed through
    ``escape()``.

    **Example.**

        return Markup("<b>%s</b>" % request.args["name"])

    **Fix.** Let the template engine escape: ``render_template("page.html", name=name)``; or
    ``Markup("<b>{}</b>").format(name)``, which escapes ``name``.
    """
    value = arg(call, 0, "source") or arg(call, 0, "s")
    hit = ctx.sink(call, value, "html", f"{ast.unparse(call.func)}()",
                   what="text marked safe HTML from a non-constant value")
    if hit:
        yield hit
    elif last_name(call.func) == "render_template_string" and isinstance(value, ast.Constant):
        yield from _unescaped_variables(call, str(value.value), ctx)


_UNESCAPED = re.compile(r"{{-?\s*([A-Za-z_][A-Za-z0-9_]*)\s*\|\s*safe\b")


def _unescaped_variables(call: ast.Call, template: str, ctx: Context) -> Iterator[Hit]:
    """A constant template that prints a variable with ``|safe`` (no escaping), rendered with
    request data for that variable: ``render_template_string("{{ body|safe }}", body=text)``."""
    for name in dict.fromkeys(_UNESCAPED.findall(template)):
        flow = ctx.flow(kwarg(call, name), "html")
        if flow.level == TAINTED and flow.source in _WEB_SOURCES:
            yield ctx.hit(call, flow, flow.explain(f"a template variable printed with |safe ({name})"))
            return


def _html_literal(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Constant) and isinstance(n.value, str) and _HTML.search(n.value)
               for n in walk(node))


def _string_building(node: ast.AST) -> bool:
    """An f-string, ``+``, ``%``, ``format``, ``join``, or ``replace`` filling a placeholder
    with a value that is not a constant (``page.replace("{{ q }}", q)``)."""
    return isinstance(node, (ast.JoinedStr, ast.BinOp)) or (
        isinstance(node, ast.Call) and last_name(node.func) in ("format", "join")) or (
        isinstance(node, ast.Call) and last_name(node.func) == "replace" and len(node.args) >= 2
        and not isinstance(node.args[1], ast.Constant))


# fields of Flask's global ``request`` that no other framework's request has under that name
_FLASK_FIELDS = frozenset({"args", "form", "values", "files"})
# Django's response classes whose body goes out as text/html unless a content type is given
_DJANGO_HTML_RESPONSES = frozenset({"HttpResponse", "HttpResponseBadRequest", "HttpResponseNotFound",
                                    "HttpResponseForbidden", "HttpResponseGone", "HttpResponseServerError"})


@rule("CWS079B", cwe="CWE-79", title="HTML built from request data", severity="high",
      node=(ast.Return, ast.BinOp, ast.JoinedStr, ast.Call),
      calls={"format", "make_response", "Response", *_DJANGO_HTML_RESPONSES})
def html_from_request(node: ast.AST, ctx: Context) -> Iterator[Hit]:
    """An HTML string is built from request data without escaping.

    **What.** ``f"<h1>Hello {name}!</h1>"``, ``"<p>" + word + "</p>"``, ``link % text`` (with
    ``link = '<a href="...%s">'``), ``"<b>{}</b>".format(x)``, or a function returning a variable
    built that way, where a request field, a routed view's URL parameter, an AWS Lambda
    ``event`` or ``input()`` reaches the string. Also any text built from request data that a
    Flask, Quart or Bottle view returns (they serve a returned string as ``text/html``), or that
    Flask's ``make_response``/``Response`` or Django's ``HttpResponse`` (and its error responses,
    ``HttpResponseBadRequest``, ``HttpResponseNotFound``...) send without a non-HTML content
    type, markup or not: ``return f"Parameter value: {name}"``, or a page whose
    placeholder is filled with it: ``page.replace("{{ name }}", name)`` (0.9 of the source's
    confidence).

    **Why.** The browser parses the value as markup: a ``<script>`` or an ``onerror=`` handler
    in it runs in the page (reflected XSS, CWE-79).

    **Confidence.** Request data only (plain parameters are too often library code building
    HTML from trusted values); ``escape()``/``html.escape()`` on the value clears it.

    **Example.**

        name = request.args.get("name", "world")
        return f"<h1>Hello {name}!</h1>"

    **Fix.** ``escape(name)`` (markupsafe / ``html.escape``) or render a template.
    """
    if ctx.func is None:
        return
    served = _served_text(node, ctx)  # the response text, sent as HTML whatever it holds
    if served is not None and not _html_literal(served) and _text_built(served, ctx):  # markup: below
        flow = ctx.flow(served, "html")
        if flow.built and flow.level == TAINTED and flow.source in _WEB_SOURCES:
            yield ctx.hit(node, flow, flow.explain("a response sent as HTML"), flow.confidence * 0.9)
            return
    if isinstance(node, ast.Return):
        value = node.value
        if not isinstance(value, ast.Name):
            return  # string building in the return value is checked on its own node
        flow = ctx.flow(value, "html")
        if not flow.built or not any(_html_literal(n.value) for n in walk(ctx.func)
                                     if isinstance(n, (ast.Assign, ast.AugAssign)) and _targets(n, value.id)):
            return
        where = "an HTML response"
    else:
        if isinstance(node, ast.BinOp) and not isinstance(node.op, (ast.Add, ast.Mod)):
            return
        if isinstance(node, ast.Call) and not isinstance(node.func, ast.Attribute):
            return
        if not (_html_literal(node) or _html_names(node, ctx)):
            return
        flow = ctx.flow(node, "html")
        where = "an HTML string"
    if flow.level == TAINTED and flow.source in _WEB_SOURCES:
        yield ctx.hit(node, flow, flow.explain(where))


def _text_built(expr: ast.AST, ctx: Context) -> bool:
    """``expr`` is text built here (f-string, ``+``, ``%``, ``format``, ``join``), or a name the
    function last built that way (``out += ...``), not some call's result."""
    if _string_building(expr):
        return True
    if not isinstance(expr, ast.Name):
        return False
    last = max((n for n in walk(ctx.func) if isinstance(n, (ast.Assign, ast.AugAssign))
                and _targets(n, expr.id) and n.lineno < expr.lineno), key=lambda n: n.lineno, default=None)
    return isinstance(last, ast.AugAssign) or last is not None and _string_building(last.value)


def _served_text(node: ast.AST, ctx: Context) -> ast.AST | None:
    """The text a view sends with the framework's default ``text/html`` type: the string a
    Flask/Quart/Bottle route returns, the body of ``make_response``/``Response`` (Flask) or of
    Django's ``HttpResponse`` and its error responses, unless a content type is given that is
    not HTML."""
    if isinstance(node, ast.Return):
        return node.value if _view_serves_html(ctx) else None
    name = last_name(node.func) if isinstance(node, ast.Call) else ""
    if name in _DJANGO_HTML_RESPONSES:
        typed = [kwarg(node, "content_type")]
    elif name in ("make_response", "Response") and _flask_like(ctx):
        typed = [kwarg(node, k) for k in ("mimetype", "content_type", "headers")] + node.args[2:]
    else:
        return None
    if any(t is not None and not (isinstance(t, ast.Constant) and "html" in str(t.value)) for t in typed):
        return None
    return arg(node, 0, "content") or arg(node, 0, "response")


def _flask_like(ctx: Context) -> bool:
    """Flask, Quart or Bottle serve this file's views: it imports one of them (and not FastAPI or
    Starlette, whose ``Response`` is not HTML by default), or it is a snippet whose imports were
    cut off and the function reads Flask's global ``request.args``/``form``/``values``/``files``."""
    if any(ctx.imported(m) for m in ("fastapi", "starlette")):
        return False
    if any(ctx.imported(m) for m in ("flask", "quart", "bottle")):
        return True
    return ctx.func is not None and not ctx.imports_web_framework() and any(
        isinstance(n, ast.Attribute) and n.attr in _FLASK_FIELDS and isinstance(n.value, ast.Name)
        and n.value.id == "request" for n in walk(ctx.func))


def _view_serves_html(ctx: Context) -> bool:
    """A Flask/Quart/Bottle route: a string it returns goes out as ``text/html``."""
    return any(is_route_decorator(d) for d in getattr(ctx.func, "decorator_list", ())) and _flask_like(ctx)


def _html_names(node: ast.AST, ctx: Context) -> bool:
    """A template variable of the expression (``link % text``) holds an HTML literal."""
    left = node.left if isinstance(node, ast.BinOp) else (
        node.func.value if isinstance(node, ast.Call) else None)
    if not isinstance(left, ast.Name):
        return False
    scope = ctx.func if ctx.func is not None else ctx.tree
    return any(_html_literal(n.value) for n in walk(scope)
               if isinstance(n, ast.Assign) and _targets(n, left.id))


def _targets(node, name: str) -> bool:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return any(isinstance(t, ast.Name) and t.id == name for t in targets)


# Markdown renderers that pass raw HTML in their input through to the page by default
# (Python-Markdown 3 dropped ``safe_mode``; markdown2's ``safe_mode`` and commonmark.py's
# ``safe`` are off unless set). cmark-based renderers (cmarkgfm) drop raw HTML by default.
_MARKDOWN_RENDERERS = frozenset({"markdown.markdown", "markdown2.markdown", "commonmark.commonmark"})


def _markdown_render(expr: ast.AST | None, ctx: Context) -> ast.Call | None:
    """The Markdown rendering call ``expr`` is, or the one the variable ``expr`` was last
    assigned from: ``markdown.markdown(text)``, ``markdown2.markdown(text)``,
    ``commonmark.commonmark(text)`` or ``markdown.Markdown(...).convert(text)`` (also through a
    variable holding the ``Markdown`` instance)."""
    if isinstance(expr, ast.Name):
        expr = ctx.assigned_value(expr)
    if not isinstance(expr, ast.Call):
        return None
    if ctx.qualname(expr) in _MARKDOWN_RENDERERS:
        return expr
    if isinstance(expr.func, ast.Attribute) and expr.func.attr == "convert":
        maker = expr.func.value
        maker = ctx.assigned_value(maker) if isinstance(maker, ast.Name) else maker
        if isinstance(maker, ast.Call) and ctx.qualname(maker) == "markdown.Markdown":
            return expr
    return None


@rule("CWS079E", cwe="CWE-79", title="Request data rendered as Markdown into a page", severity="high",
      node=(ast.Return, ast.Call), calls={"make_response", "Response", *_DJANGO_HTML_RESPONSES})
def markdown_from_request(node: ast.AST, ctx: Context) -> Iterator[Hit]:
    """Request data rendered as Markdown and sent as the page.

    **What.** A Flask, Quart or Bottle view returns ``markdown.markdown(text)`` (or
    ``markdown2.markdown``, ``commonmark.commonmark``, ``markdown.Markdown(...).convert``), or
    sends it with ``make_response``/``Response`` or Django's ``HttpResponse`` without a non-HTML
    content type, directly or through a variable, where ``text`` holds request data, a routed
    view's URL parameter or ``input()``.

    **Why.** Markdown allows raw HTML, and these renderers pass it through: ``<script>`` or
    ``<img src=x onerror=...>`` in the text runs in the page (CWE-79). Rendering what a user
    wrote as Markdown is a common way to build a page, so the HTML looks intended.

    **Confidence.** 0.9 of the source's; request data only. ``escape()`` on the text, or a
    sanitiser (``bleach.clean``, ``nh3.clean``) around the rendered HTML, clears it.

    **Example.**

        @app.route("/preview", methods=["POST"])
        def preview():
            return markdown.markdown(request.form["body"])

    **Fix.** Sanitise the rendered HTML with an allow-list (``nh3.clean(html)`` or
    ``bleach.clean(html, tags=...)``), or use a renderer that drops raw HTML (cmarkgfm,
    markdown-it-py with ``html=False``).
    """
    if ctx.func is None:
        return
    render = _markdown_render(_served_text(node, ctx), ctx)
    if render is None:
        return
    flow = ctx.flow(arg(render, 0, "text") or arg(render, 0, "source"), "html")
    if flow.level == TAINTED and flow.source in _WEB_SOURCES:
        yield ctx.hit(node, flow, flow.explain("a page rendered from Markdown"), flow.confidence * 0.9)


@rule("CWS079C", cwe="CWE-79", title="Jinja2 autoescape disabled", severity="high",
      calls={"Environment", "setup"}, bandit=("B701",))
def jinja_autoescape(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """A Jinja2 ``Environment`` without HTML auto-escaping (delegates to Bandit B701), or
    ``aiohttp_jinja2.setup(..., autoescape=False)``.

    **What.** ``jinja2.Environment(...)`` with ``autoescape=False`` or without ``autoescape``
    (Jinja2's default is off). Bandit's B701 does this check; this rule runs it. Also
    ``aiohttp_jinja2.setup(app, loader=..., autoescape=False)``, which Bandit misses
    (aiohttp-jinja2's own default is on, so only an explicit ``False`` is flagged).

    **CWE.** Bandit files B701 under CWE-94; the weakness is missing output escaping, whose
    consequence is cross-site scripting: cwescan reports CWE-79 (CWE-116, improper encoding of
    output, is its cause), as do its other XSS rules.

    **Why.** Every ``{{ value }}`` is inserted raw into the HTML (CWE-79).

    **Example.**

        env = jinja2.Environment(loader=FileSystemLoader("templates"))
        aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader("t"), autoescape=False)

    **Fix.** ``Environment(..., autoescape=select_autoescape())``; leave aiohttp-jinja2's
    ``autoescape`` at its default (on).
    """
    if last_name(call.func) == "setup":
        if (ctx.qualname(call) or "").startswith("aiohttp_jinja2.") and is_const(kwarg(call, "autoescape"), False):
            yield Hit(call, "aiohttp_jinja2.setup() with autoescape=False inserts every {{ value }} "
                            "into the page unescaped", 0.8)
        return
    issue = ctx.bandit("B701", call)
    if issue is not None:
        yield Hit(call, f"{issue.text} (Bandit {issue.test_id or 'B701'})",
                  CONFIDENCE.get(str(issue.confidence), 0.6))


@rule("CWS079D", cwe="CWE-79", title="Jinja2 Template built without autoescape", severity="high",
      calls={"Template"})
def jinja_template_autoescape(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """``jinja2.Template(source)`` without ``autoescape=True``.

    **What.** The ``jinja2.Template`` constructor makes a template with its own environment,
    whose auto-escaping is off unless ``autoescape=True`` (or ``select_autoescape(...)``) is
    passed. Bandit's B701 checks ``Environment`` only.

    **Why.** Rendered as HTML, every ``{{ value }}`` goes into the page raw: a ``<script>`` in
    it runs in the victim's browser (CWE-79).

    **Confidence.** 0.75 when the template text is HTML (a literal with tags, directly or via
    the variable passed); 0.5 and one severity lower otherwise: plain-text templates (e-mails,
    configuration files) need no HTML escaping. ``string.Template`` and other engines are not
    flagged.

    **Example.**

        page = jinja2.Template("<p>Hello {{ name }}</p>").render(name=name)

    **Fix.** ``jinja2.Template(source, autoescape=True)``, or load templates from an
    ``Environment(autoescape=select_autoescape())``.
    """
    qual = ctx.qualname(call) or ""
    if qual not in ("jinja2.Template", "jinja2.environment.Template"):
        return
    escape = kwarg(call, "autoescape")
    if escape is not None and not is_const(escape, False):
        return  # True, select_autoescape(...) or a setting decided at run time
    source = arg(call, 0, "source")
    html = source is not None and (_html_literal(source) or (
        isinstance(source, ast.Name) and _html_assigned(source.id, ctx)))
    state = "autoescape=False" if escape is not None else "no autoescape (off by default)"
    if html:
        yield Hit(call, f"{ast.unparse(call.func)}() renders HTML with {state}: values go into the page "
                        "unescaped", 0.75)
    else:
        yield Hit(call, f"{ast.unparse(call.func)}() with {state}: values are inserted unescaped if "
                        "the output is HTML", 0.5, lower_severity=True)


def _html_assigned(name: str, ctx: Context) -> bool:
    scope = ctx.func if ctx.func is not None else ctx.tree
    return any(_html_literal(n.value) for n in walk(scope)
               if isinstance(n, ast.Assign) and _targets(n, name))


_REDIRECTS = {"redirect", "HttpResponseRedirect", "HttpResponsePermanentRedirect",
              "RedirectResponse"}


@rule("CWS601", cwe="CWE-601", title="Redirect to a URL from untrusted data", severity="medium",
      calls=_REDIRECTS)
def open_redirect(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """A redirect target taken from the request.

    **What.** Flask/Werkzeug ``redirect(x)``, Django ``HttpResponseRedirect(x)``/``redirect(x)``,
    Starlette ``RedirectResponse(x)`` where ``x`` comes from request data or a parameter and was
    not checked against allowed hosts.

    **Why.** A link to your site that forwards to ``https://evil.example`` makes phishing
    believable (CWE-601).

    **Confidence.** Tainted targets only; a plain function parameter passed as the target is the
    caller's choice (a redirect helper) and is not flagged. ``url_for()``/``reverse()`` targets are safe; an
    ``if`` that compares the URL's host with an allow-list (``url_has_allowed_host_and_scheme``,
    ``netloc in ALLOWED``) and overwrites or rejects it clears the taint, and so does
    redirecting only inside the check (``if url_has_allowed_host_and_scheme(url, hosts):
    return redirect(url)``, also with the result saved first: ``ok = is_safe_url(url)``,
    ``if ok:``). A pattern check is not enough, before or around the redirect: ``//evil.example``
    starts with ``/``, ``evil-example.com`` ends with ``example.com``, and an unescaped ``.`` in
    a host regex matches any character.

    **Example.**

        return redirect(request.args.get("next", "/"))

    **Fix.** Check ``urlparse(target).netloc`` against an allow-list (Django:
    ``url_has_allowed_host_and_scheme``), else redirect to a fixed page.
    """
    target = arg(call, 0, "location") or kwarg(call, "url") or kwarg(call, "redirect_to")
    if target is None or isinstance(target, ast.Constant):
        return
    flow = ctx.flow(target)
    if flow.caller_chosen:
        return  # a redirect helper sending its caller's location: the caller's choice
    hit = ctx.sink(call, target, "redirect", f"{ast.unparse(call.func)}()", flag_unknown=False)
    if hit:
        yield hit


_HTTP_VERBS = {"get", "post", "put", "patch", "delete", "head", "options", "request", "stream",
               "urlopen", "Request", "fetch"}
_HTTP_MODULES = ("requests", "httpx", "urllib.request", "urllib2", "urllib3", "aiohttp",
                 "six.moves.urllib")
# the object a verb is called on names an HTTP client: its last name ends like one (``session``,
# ``self._client``, ``http``, ``requests.Session()``); ``http.client.responses.get(code)`` and
# ``client_config.get(key)`` are dictionaries
_CLIENTISH = re.compile(r"(?i)(session|client|https?|requests|httpx)$")


@rule("CWS918", cwe="CWE-918", title="Server-side request to a URL from untrusted data",
      severity="high", calls=_HTTP_VERBS)
def ssrf(call: ast.Call, ctx: Context) -> Iterator[Hit]:
    """The server fetches a URL that untrusted data chooses.

    **What.** ``requests.get/post/...(url)``, ``httpx``, ``urllib.request.urlopen``/``Request``,
    ``urllib3``, or ``.get(url)`` on a session/client object, where a request field, a routed
    view's URL parameter, ``input()`` or a parameter reaches the URL.

    **Why.** The attacker makes the server call internal services (cloud metadata at
    169.254.169.254, admin ports, ``file://``), CWE-918.

    **Confidence.** Tainted URLs only. A plain function parameter passed as the URL is the
    caller's choice (an HTTP helper) and is not flagged; one formatted into a URL is. 0.45 (one
    severity lower) when the URL starts with a
    constant ``scheme://host/``, or with an untainted base such as ``self.endpoint`` followed by a
    constant ``/``: the data then only picks a path on a fixed server ("partial SSRF", still able
    to reach other endpoints of that server); only outside data counts there, not a plain
    function parameter (an API client building its server's paths from its arguments). A host
    allow-list
    check that rejects other URLs (``if urlparse(url).hostname not in ALLOWED: raise``) clears
    the taint.

    **Test clients are not sinks.** Framework test clients call the application in process,
    not the network: Flask's ``app.test_client()`` (and ``with app.test_client() as c``),
    Werkzeug's and Django's ``Client``, Django ``TestCase``'s ``self.client``, DRF's
    ``APIClient``, Starlette/FastAPI's ``TestClient``, and in test files a pytest fixture
    parameter named like ``client``. In test files, a request to a fixed ``localhost`` /
    ``127.0.0.1`` URL is not flagged either.

    **Example.**

        url = request.args.get("url")
        return requests.get(url, timeout=5).text

    **Fix.** Parse the URL and allow only known hosts and schemes; never forward raw URLs.
    """
    qual = ctx.qualname(call) or ""
    func = call.func
    if qual.startswith(_HTTP_MODULES):
        pass
    elif isinstance(func, ast.Attribute) and _CLIENTISH.search(_receiver_name(func.value)) \
            and not _DB_SESSION.search(ast.unparse(func.value)[-40:]):
        pass
    else:
        return
    if isinstance(func, ast.Attribute) and _test_client(func.value, ctx):
        return  # calls the application in process, not the network
    name = last_name(func)
    # request(method, url); requests.Request(method, url) too, unlike urllib's Request(url)
    takes_method = name == "request" or name == "Request" and qual.startswith("requests.")
    url = arg(call, 1, "url") if takes_method else arg(call, 0, "url")
    if url is None or isinstance(url, ast.Constant):
        return
    flow: Flow = ctx.flow(url, "url")
    if flow.level != TAINTED:
        return
    if flow.caller_chosen:
        return  # an HTTP helper fetching the URL its caller gives: the caller's choice
    if is_test_path(ctx.path) and _LOOPBACK_URL.match(leading_text(_url_value(url, ctx))):
        return  # a test talking to the server it started
    if _fixed_host(url, ctx) or _configured_host(url, ctx):  # partial SSRF: a path on a fixed server
        if flow.source == "parameter":
            return  # an API client putting its caller's argument in a path of its own server
        yield Hit(call, flow.explain(f"the path of a fixed-host URL in {ast.unparse(func)}()"),
                  0.45, lower_severity=True)
    else:
        yield ctx.hit(call, flow, flow.explain(f"{ast.unparse(func)}()"))


def _receiver_name(node: ast.AST) -> str:
    """The last name of what a method is called on: ``session`` for ``self.session``,
    ``Session`` for ``requests.Session()``."""
    if isinstance(node, ast.Call):
        node = node.func
    return node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""


_DB_SESSION = re.compile(r"(?i)(db|database|sql|orm)\w*\.session$|^(db_)?session\.query")
_FIXED_HOST = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#{}%]+[/?#]")
# a URL on this machine, whatever port follows (often a placeholder)
_LOOPBACK_URL = re.compile(r"(?i)^[a-z][a-z0-9+.-]*://(localhost|127(\.\d+){3}|\[::1\]|0\.0\.0\.0)([:/?#]|$)")

# callables that make an in-process test client of a web application
_TEST_CLIENT_CALLS = {"test_client", "TestClient", "FlaskClient", "APIClient", "QuartClient"}
_TEST_CLIENT_CLASSES = {"django.test.Client", "django.test.AsyncClient", "django.test.client.Client",
                        "werkzeug.test.Client", "werkzeug.Client", "rest_framework.test.APIClient",
                        "starlette.testclient.TestClient", "fastapi.testclient.TestClient"}
_TEST_NAME = re.compile(r"(?i)test_?client")


def _test_client(receiver: ast.AST, ctx: Context) -> bool:
    """``receiver`` is a framework's in-process test client (see CWS918's docs)."""
    text = ast.unparse(receiver)
    if _TEST_NAME.search(text):
        return True
    if isinstance(receiver, ast.Call):
        return _makes_test_client(receiver, ctx)
    name = dotted(receiver)
    if name is None:
        return False
    cls = _enclosing_class(ctx)
    if name == "self.client" and (is_test_path(ctx.path) or cls is not None and any(
            (dotted(b) or "").endswith(("TestCase", "TestBase")) for b in cls.bases)):
        return True  # django.test.TestCase and its kin give every test self.client
    scopes = [f for f in reversed(ctx.funcs)] + [ctx.tree]
    if name.startswith("self."):
        scopes = [cls] if cls is not None else []  # setUp() or __init__ assigns it
    for scope in scopes:
        for value in _bound_values(scope, name):
            if isinstance(value, ast.Call) and _makes_test_client(value, ctx):
                return True
    # a pytest fixture: a test function's parameter named like a client
    return (is_test_path(ctx.path) and isinstance(receiver, ast.Name) and "client" in name.lower()
            and any(receiver.id in {a.arg for a in (*f.args.posonlyargs, *f.args.args, *f.args.kwonlyargs)}
                    for f in ctx.funcs))


def _makes_test_client(call: ast.Call, ctx: Context) -> bool:
    return (last_name(call.func) in _TEST_CLIENT_CALLS or (ctx.qualname(call) or "") in _TEST_CLIENT_CLASSES)


def _bound_values(scope: ast.AST, name: str) -> Iterator[ast.AST]:
    """Values ``name`` (a variable or ``self.attr``) is assigned or bound by ``with ... as`` in
    ``scope``, not looking into nested functions (their names are their own) unless ``scope``
    is a class (``self.attr`` is set in any of its methods)."""
    for n in _walk_scope(scope, into_functions=isinstance(scope, ast.ClassDef)):
        if isinstance(n, ast.Assign):
            if any(dotted(t) == name for t in n.targets):
                yield n.value
        elif isinstance(n, (ast.With, ast.AsyncWith)):
            for item in n.items:
                if item.optional_vars is not None and dotted(item.optional_vars) == name:
                    yield item.context_expr


def _walk_scope(scope: ast.AST, into_functions: bool) -> Iterator[ast.AST]:
    children = ast.iter_child_nodes(scope)
    return (n for c in children for n in walk(c)) if into_functions else walk_local(children)


def _enclosing_class(ctx: Context) -> ast.ClassDef | None:
    """The class whose method holds the node being checked."""
    if not ctx.funcs:
        return None
    method = ctx.funcs[0]
    for cls in walk(ctx.tree):
        if isinstance(cls, ast.ClassDef) and method in cls.body:
            return cls
    return None


def _fixed_host(url: ast.AST, ctx: Context) -> bool:
    """The URL starts with a constant scheme://host/, so data only reaches its path or query."""
    return bool(_FIXED_HOST.match(leading_text(_url_value(url, ctx))))


def _configured_host(url: ast.AST, ctx: Context) -> bool:
    """The URL starts with an untainted base (``self.endpoint``, a setting) followed by a
    constant ``/`` or ``?``: ``f"{self.endpoint}/api/{repo_id}"``, ``BASE + "/users/" + name``.
    The program's configuration chose the server; the data only reaches the path."""
    value = _url_value(url, ctx)
    if isinstance(value, ast.JoinedStr):
        parts = [v.value if isinstance(v, ast.FormattedValue) else v for v in value.values]
    else:
        parts = []
        while isinstance(value, ast.BinOp) and isinstance(value.op, ast.Add):
            parts.insert(0, value.right)
            value = value.left
        parts.insert(0, value)
    if len(parts) < 2 or isinstance(parts[0], ast.Constant):
        return False
    after = parts[1]
    return (isinstance(after, ast.Constant) and isinstance(after.value, str) and after.value[:1] in ("/", "?")
            and ctx.flow(parts[0]).level != TAINTED)


def _url_value(url: ast.AST, ctx: Context) -> ast.AST:
    """The expression a URL variable was last assigned before its use, else ``url`` itself."""
    return ctx.assigned_value(url) or url
