"""Where outside data enters a web application: the request objects and fields of the
frameworks the rules know (Flask, Django, FastAPI/Starlette, aiohttp, Bottle, Pyramid, Falcon,
Tornado) and the standard library's own servers (``http.server``/``socketserver`` handlers).
The data flow (``taint.py``) reads them here; triage (``cwescan.scan.triage``) the request
fields.
"""

from __future__ import annotations

import ast

from cwescan.core.astwalk import walk
from cwescan.detectors.static.patterns import dotted, parameters

REQUEST_FIELDS = {
    "args", "form", "values", "json", "data", "files", "cookies", "headers", "GET", "POST",
    "COOKIES", "FILES", "META", "body", "query_params", "query_string", "path", "full_path",
    "url", "base_url", "view_args", "stream", "environ", "params", "match_info", "text",
    "get_json", "get_data", "content", "raw_post_data", "REQUEST", "get", "matchdict", "json_body",
    "POST", "getlist",
    "referrer", "path_params",
    # aiohttp (request.query, request.rel_url.query), Bottle (request.query / forms), Tornado
    # (self.request.arguments / query_arguments / body_arguments), Falcon (req.get_param / media)
    "query", "rel_url", "forms", "arguments", "query_arguments", "body_arguments", "get_param",
    "get_header", "media", "get_media",
}
REQUEST_OBJECTS = {"request", "req", "flask.request"}
# Modules of the web frameworks and servers whose request data the sources above read: a file
# importing none of them that names a parameter ``request`` or ``req`` is more likely handling
# some other request (an HTTP client's, an installer's requirement)
WEB_FRAMEWORKS = ("flask", "django", "fastapi", "starlette", "aiohttp", "bottle", "falcon", "pyramid",
                  "tornado", "quart", "sanic", "werkzeug", "cherrypy", "litestar", "webob", "web",
                  "http.server", "socketserver", "wsgiref", "graphene", "strawberry", "ariadne", "chalice")


def lambda_handler(func: ast.AST) -> bool:
    """An AWS Lambda handler (``def handler(event, context)``): its ``event`` is the request."""
    return hasattr(func, "args") and "handler" in getattr(func, "name", "") and any(
        p.arg == "event" for p in parameters(func))


# Fields only a Django request has: any object carrying one is a request, whatever its name
# (renaming `request` evaded the rules: docs/ROBUSTNESS.md, rename_neutral).
DJANGO_REQUEST_FIELDS = {"GET", "POST", "FILES", "COOKIES", "META"}
# Calls that take the whole request and return what is not read from it (a rendered page, the
# logged-in user, a CSRF token): any other call handed the request returns request data
REQUEST_CONSUMERS = frozenset({
    "render", "render_to_response", "render_to_string", "TemplateResponse", "RequestContext", "redirect",
    "authenticate", "login", "logout", "get_user", "get_current_site", "get_token", "rotate_token",
    "has_permission", "has_object_permission", "check_permissions", "dispatch", "get_response",
    "process_request", "process_view", "process_response", "isinstance", "id", "str", "repr", "type", "bool",
    "getattr", "hasattr", "setattr", "len", "print", "super"})
# Tornado's RequestHandler reads the request through methods of the handler itself
ARGUMENT_GETTERS = {"get_argument", "get_arguments", "get_query_argument", "get_query_arguments",
                    "get_body_argument", "get_body_arguments", "get_cookie"}
# The standard library's request handlers: a subclass reads the request through ``self``
# (``self.path``, ``self.headers``, ``self.rfile.read()``); ``self.request.recv()`` of a
# socketserver handler is a socket read, which the flow already treats as network data.
HANDLER_BASES = frozenset({"BaseHTTPRequestHandler", "SimpleHTTPRequestHandler", "CGIHTTPRequestHandler",
                           "StreamRequestHandler", "WSGIRequestHandler"})
HANDLER_FIELDS = frozenset({"path", "headers", "rfile", "requestline", "raw_requestline"})


def handler_methods(tree: ast.AST) -> set[int]:
    """``id()`` of every method of a class deriving (directly, or through a class of the same
    file) from one of the standard library's request handlers."""
    classes = [n for n in walk(tree) if isinstance(n, ast.ClassDef)]
    handlers: set[str] = set()
    grew = True
    while grew:  # a handler's subclass in the same file is a handler too
        grew = False
        for c in classes:
            if c.name not in handlers and any(
                    (dotted(b) or "").rpartition(".")[2] in HANDLER_BASES | handlers for b in c.bases):
                handlers.add(c.name)
                grew = True
    return {id(f) for c in classes if c.name in handlers for f in c.body
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))}


def handler_field(node: ast.AST) -> str | None:
    """"self.path" when ``node`` is ``self.path`` (``self.headers``, ``self.rfile``...): what a
    request handler method reads from the request it serves."""
    if isinstance(node, ast.Attribute) and node.attr in HANDLER_FIELDS and dotted(node.value) == "self":
        return f"self.{node.attr}"
    return None


def is_request(node: ast.AST) -> bool:
    """``request`` / ``self.request`` / ``flask.request``."""
    name = dotted(node)
    return name is not None and (name in REQUEST_OBJECTS or name.endswith(".request"))


def request_field(node: ast.AST) -> str | None:
    """"request.args" when ``node`` is ``request.args`` (or deeper, e.g. request.args.get);
    "self.get_argument()" for a Tornado handler's own getter."""
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        if isinstance(node, ast.Attribute) and node.attr in REQUEST_FIELDS and (
                is_request(node.value)
                or (node.attr in DJANGO_REQUEST_FIELDS and isinstance(node.value, ast.Name))):
            return f"request.{node.attr}"
        if isinstance(node, ast.Attribute) and node.attr in ARGUMENT_GETTERS and dotted(node.value) == "self":
            return f"self.{node.attr}()"
        node = node.func if isinstance(node, ast.Call) else node.value
    return None
