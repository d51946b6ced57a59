"""The data flow's one inter-procedural step (a helper's parameter holds what the file's own
callers pass it), the standard library's request handlers as sources, and values joined from
differently sanitised parts."""

from __future__ import annotations

import ast
import textwrap

import pytest

from cwescan.core.units import parse_source
from cwescan.detectors.static import StaticDetector
from cwescan.detectors.static.callers import bind, call_sites

HEAD = """\
import os
import subprocess
from flask import Flask, request, make_response
app = Flask(__name__)
"""


def findings(body: str, rule: str) -> dict[int, tuple[float, str]]:
    code = HEAD + textwrap.dedent(body)
    src = parse_source("t.py", code)
    assert src.tree is not None, src.error
    offset = HEAD.count("\n")
    return {f.start_line - offset: (f.confidence, f.message)
            for f in StaticDetector(select=[rule]).detect(src.units)}


HELPER = """\
def run(command):
    return subprocess.Popen(command, shell=True)

"""


@pytest.mark.parametrize("caller, confidence, named", [
    ('@app.route("/scan")\ndef scan():\n    return run("nmap " + request.args["ip"])\n', 0.9, "request data"),
    ('@app.route("/scan")\ndef scan():\n    return run(command="nmap " + request.args["ip"])\n', 0.9, "request data"),
    ('def scan():\n    return run("nmap localhost")\n', 0.55, "parameter"),  # a constant: still the caller's
    ('def scan(host):\n    return run("nmap " + host)\n', 0.55, "parameter"),  # passed on by another helper
    ('def scan():\n    return run(int(request.args["n"]))\n', 0.55, "parameter"),  # sanitised by the caller
])
def test_a_helper_holds_what_the_files_callers_pass(caller, confidence, named):
    found = findings(HELPER + caller, "CWS078")
    assert found[2][0] == pytest.approx(confidence)
    assert named in found[2][1]
    if confidence > 0.6:
        assert "passed as `command` by scan()" in found[2][1]


def test_a_method_holds_what_self_calls_pass_and_recursion_ends():
    body = """\
    class Tool:
        def run(self, command, depth=0):
            if depth < 3:
                self.run(command, depth + 1)
            return os.system(command)

        def serve(self):
            return self.run(request.form["cmd"])
    """
    found = findings(body, "CWS078")
    assert found[5][0] == pytest.approx(0.9) and "by serve()" in found[5][1]


def test_only_calls_that_name_the_function_unambiguously_count():
    tree = ast.parse(textwrap.dedent("""\
        def run(cmd): pass
        def twice(x): pass
        def twice(x): pass
        class A:
            def run(self, cmd): pass
            @staticmethod
            def tool(cmd): pass
            def go(self):
                run(1); self.run(2); self.tool(3); other.run(4); twice(5)
    """))
    sites = call_sites(tree)
    module_run, cls = tree.body[0], tree.body[3]
    method_run, tool = cls.body[0], cls.body[1]
    assert [ast.unparse(s.call) for s in sites[id(module_run)]] == ["run(1)"]
    assert [ast.unparse(bind(s, method_run, "cmd")) for s in sites[id(method_run)]] == ["2"]
    assert [ast.unparse(bind(s, tool, "cmd")) for s in sites[id(tool)]] == ["3"]
    assert id(tree.body[1]) not in sites and id(tree.body[2]) not in sites  # defined twice


def test_a_request_handler_of_http_server_reads_the_request_through_self():
    body = """\
    import http.server
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            query = self.path.split("?", 1)[1]
            os.system("nslookup " + query)

    class Other:
        def do_GET(self):
            os.system("nslookup " + self.path)
    """
    found = findings(body, "CWS078")
    assert found[5][0] == pytest.approx(0.9) and "self.path" in found[5][1]
    assert found[9][0] < 0.6  # not a request handler: an attribute the rules cannot trace


@pytest.mark.parametrize("text, reported", [
    ('escape(request.args["q"]) + row', None),  # for HTML only the unescaped parameter is left: not request data
    ('request.args["q"] + row', 0.9),
    ('escape(request.args["q"]) + escape(row)', None),
])
def test_a_sink_sees_the_strongest_part_not_sanitised_for_it(text, reported):
    body = f"""\
    from markupsafe import escape
    def page(row):
        out = "<p>" + {text} + "</p>"
        return out
    """
    found = findings(body, "CWS079B")
    assert (max(c for c, _ in found.values()) if found else None) == (
        pytest.approx(reported) if reported else None)


def test_a_sanitiser_applies_to_every_part_it_wraps():
    # quote() covers the escaped request field and the parameter alike: for the command only
    # the unquoted parameter is left, not the request field it joined before
    body = """\
    import shlex
    from markupsafe import escape
    def listing(row):
        os.system("ls " + shlex.quote(escape(request.args["q"]) + row) + row)
    """
    assert findings(body, "CWS078")[4][0] == pytest.approx(0.55)


def test_a_placeholder_filled_with_request_data_is_html_built_from_it():
    body = """\
    @app.route("/hello")
    def hello():
        page = open("templates/hello.html").read()
        return make_response(page.replace("{{ name }}", request.args["name"]))
    """
    assert 4 in findings(body, "CWS079B")


@pytest.mark.parametrize("value, reported", [
    ('request.args.get("q")', True),  # the client writes the whole query
    ('build(request.args.get("q"))', False),  # some helper made it: not the client's text
    ('sys.argv[1]', False),  # a query tool runs the SQL its user types
])
def test_sql_text_taken_whole_from_the_request(value, reported):
    body = f"""\
    import sqlite3, sys
    @app.route("/q")
    def q():
        query = {value}
        return str(sqlite3.connect("x").execute(query).fetchall())
    """
    assert (5 in findings(body, "CWS089")) is reported


def test_the_arguments_of_a_graphql_resolver_are_the_clients():
    body = """\
    import sqlite3
    class Query:
        def resolve_pastes(self, info, filter=None):
            return sqlite3.connect("x").execute("SELECT * FROM p WHERE t = '%s'" % filter)

        def pastes(self, info, filter=None):
            return sqlite3.connect("x").execute("SELECT * FROM p WHERE t = '%s'" % filter)
    """
    found = findings(body, "CWS089")
    assert found[4][0] == pytest.approx(0.85) and "GraphQL argument `filter`" in found[4][1]
    assert found[7][0] == pytest.approx(0.55)  # not a resolver by name: a plain parameter


# -- what a function of the same file returns ------------------------------------------------

def test_a_getter_of_request_data_is_a_source():
    body = """\
    def param(name):
        return request.args.get(name)

    def run():
        os.system("ls " + param("dir"))
    """
    ((confidence, message),) = findings(body, "CWS078").values()
    assert confidence == 0.9 and "returned by param()" in message


def test_a_function_returning_constants_is_a_constant():
    body = """\
    def command():
        if os.name == "nt":
            return "dir"
        return "ls -l"

    def run():
        os.system(command())

    def nothing(p):
        p = ""

    def page():
        return make_response("<p>" + nothing(request.args["q"]))
    """
    assert findings(body, "CWS078") == {}
    assert findings(body, "CWS079B") == {}


def test_a_wrapper_keeps_each_calls_own_argument():
    """The wrapper's return rests on its parameter: what one caller passes does not become
    what every call returns; a sanitising wrapper sanitises."""
    body = """\
    def tidy(value):
        return value.strip()

    def quoted(value):
        import shlex
        return shlex.quote(value)

    def run():
        a = tidy(request.args["q"])
        os.system(tidy("ls"))
        os.system("ls " + quoted(request.args["d"]))
        os.system("ls " + tidy(request.args["e"]))
    """
    found = findings(body, "CWS078")
    assert found[12][0] == 0.9  # tidy(request.args["e"])
    assert 11 not in found  # quoted(...)
    assert found.get(10, (0,))[0] < 0.55  # tidy("ls"): at most an untraced value, not the request


def test_the_command_line_returned_by_a_helper_is_not_followed():
    """A helper returning sys.argv is the program's own configuration (a reloader re-running
    its arguments), not a remote client's data."""
    body = """\
    import sys

    def args_for_reloading():
        return [sys.executable, *sys.argv[1:]]

    def restart():
        return subprocess.call(args_for_reloading())

    def recursive(n):
        return recursive(n - 1) if n else request.args["x"]
    """
    assert findings(body, "CWS078") == {}
