"""The data flow's precision: conditions decided from the code alone, and dictionary items
with constant keys."""

from __future__ import annotations

import ast
import textwrap

import pytest

from cwescan.core.units import parse_source
from cwescan.detectors.static import StaticDetector
from cwescan.detectors.static.folding import NOT_LITERAL, decide, literal_names

HEAD = """\
import os
from flask import Flask, request
app = Flask(__name__)
"""


def lines_of(body: str, rule: str = "CWS078") -> set[int]:
    code = HEAD + textwrap.dedent(body)
    src = parse_source("t.py", code)
    assert src.tree is not None, src.error
    offset = HEAD.count("\n")
    return {f.start_line - offset for f in StaticDetector(select=[rule]).detect(src.units)}


@pytest.mark.parametrize("test, expected", [
    ("7 * 42 - num > 200", True), ("(7 * 42) - num > 200 and not off", True), ("num % 2 == 1", False),
    ("'ab' + 'd' in word", False), ("word == 'abc'", True), ("1 < num < 50", False),
    ("twice > 1", None), ("num > unknown", None), ("f(num)", None), ("word * 2 == 'abcabc'", None),
    ("num // 0", None), ("param == 1", None),
])
def test_decide(test, expected):
    body = ast.parse("num = 86\nword = 'abc'\noff = False\ntwice = 1\ntwice = 2\n").body
    literals = literal_names(body, ["param"])
    assert decide(ast.parse(test, mode="eval").body, lambda n: literals.get(n, NOT_LITERAL)) is expected


def test_literal_names_ignores_nested_scopes_and_rebinding():
    tree = ast.parse("a = 1\nb = 2\nfor b in []: pass\ndef f():\n    c = 3\nimport os as a2\n")
    literals = literal_names(tree.body)
    assert literals["a"] == 1 and literals["b"] is NOT_LITERAL and literals["f"] is NOT_LITERAL
    assert "c" not in literals and literals["a2"] is NOT_LITERAL


@pytest.mark.parametrize("branch, reported", [
    ("if 7 * 42 - num > 200:\n            cmd = 'ls'\n        else:\n            cmd = param", False),
    ("if 7 * 42 - num < 200:\n            cmd = 'ls'\n        else:\n            cmd = param", True),
    ("cmd = 'ls' if (7 * 42) - num > 200 else param", False),
    ("cmd = 'ls' if (7 * 42) - num < 200 else param", True),
    ("if DEBUG:\n            cmd = param\n        else:\n            cmd = 'ls'", False),
    ("if flag:\n            cmd = 'ls'\n        else:\n            cmd = param", True),  # undecided
])
def test_a_branch_that_never_runs_does_not_taint(branch, reported):
    body = f"""\
    DEBUG = False
    @app.route("/run")
    def run():
        param = request.args["cmd"]
        num = 86
        flag = request.args.get("flag")
        {branch}
        os.system(cmd)
    """
    assert bool(lines_of(body)) is reported


def test_a_module_flag_rebound_by_a_function_is_not_decided():
    body = """\
    DEBUG = False
    def enable():
        global DEBUG
        DEBUG = True
    @app.route("/run")
    def run():
        cmd = "ls"
        if DEBUG:
            cmd = request.args["cmd"]
        os.system(cmd)
    """
    assert lines_of(body) == {10}


@pytest.mark.parametrize("read, reported", [
    ("d['b']", True), ("d['a']", False), ("d.get('a')", False), ("d.get('b')", True), ("d[k]", True),
])
def test_dictionary_items_with_constant_keys_are_followed(read, reported):
    for build in (["d = {}", "d['a'] = 'ls'", "d['b'] = param"], ["d = {'a': 'ls', 'b': param}"]):
        body = "\n    ".join(['@app.route("/run")\ndef run():', 'param = request.args["cmd"]',
                               'k = request.args["k"]', *build, f"os.system({read})"])
        assert bool(lines_of(body)) is reported, (build, read)


@pytest.mark.parametrize("later", [
    "d.update(request.args)",  # the container took taint after the key was set
    "d[k] = param",
])
def test_a_container_tainted_after_the_key_was_set_is_followed(later):
    body = f"""\
    @app.route("/run")
    def run():
        param = request.args["cmd"]
        k = request.args["k"]
        d = {{'a': 'ls'}}
        {later}
        os.system(d['a'])
    """
    assert lines_of(body) == {7}


def test_an_item_set_in_a_branch_may_still_hold_the_request_data():
    body = """\
    @app.route("/run")
    def run():
        d = request.form.to_dict()
        if not d.get("cmd"):
            d["cmd"] = "ls"
        os.system(d["cmd"])
    """
    assert lines_of(body) == {6}


def test_a_helper_given_the_request_returns_request_data():
    body = """\
    def get_param(req, name):
        return req.args.get(name, "")
    @app.route("/run")
    def run():
        os.system("echo " + get_param(request, "q"))
    """
    assert lines_of(body) == {5}


def test_a_local_object_named_request_is_not_the_web_request():
    body = """\
    import urllib.request
    def fetch():
        request = urllib.request.Request("https://example.com/feed")
        os.system("curl " + make_cmd(request))
    """
    src = parse_source("t.py", HEAD + textwrap.dedent(body))
    found = StaticDetector(select=["CWS078"]).detect(src.units)
    # an untraced value at most (0.5), never request data (0.9)
    assert found and all("request data" not in f.message and f.confidence <= 0.5 for f in found)
