"""Every static rule against its fixture (Ruff-style), plus the data flow and robustness.

``tests/fixtures/static/<RULE_ID>.py`` marks lines ``# expect: <RULE_ID>`` (the rule must flag
the statement on that line) and ``# ok: <RULE_ID>`` (look-alikes it must not flag).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from cwescan.detectors import create
from cwescan.detectors.static import RULES, StaticDetector
from cwescan.core.units import parse_source

FIXTURES = Path(__file__).parent / "fixtures" / "static"
MARK = re.compile(r"#\s*(expect|ok):\s*([A-Z0-9, ]+)")


def marks(text: str) -> dict[str, list[tuple[str, int]]]:
    out: dict[str, list[tuple[str, int]]] = {"expect": [], "ok": []}
    for lineno, line in enumerate(text.split("\n"), 1):
        for m in MARK.finditer(line):
            for rid in m.group(2).replace(",", " ").split():
                out[m.group(1)].append((rid, lineno))
    return out


def scan(path: str, text: str, **options):
    src = parse_source(path, text)
    assert src.tree is not None, src.error
    return StaticDetector(**options).detect(src.units)


def flagged(findings, rule_id: str, line: int) -> bool:
    return any(f.rule_id == rule_id and f.start_line <= line <= f.end_line for f in findings)


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_rule_fixture(rule_id):
    fixture = FIXTURES / f"{rule_id}.py"
    assert fixture.is_file(), f"rule {rule_id} has no fixture {fixture}"
    text = fixture.read_text()
    m = marks(text)
    expected = [line for rid, line in m["expect"] if rid == rule_id]
    ok = [line for rid, line in m["ok"] if rid == rule_id]
    assert expected, f"{fixture.name} marks no '# expect: {rule_id}' line"
    assert ok, f"{fixture.name} marks no '# ok: {rule_id}' look-alike"
    findings = scan(fixture.name, text, select=[rule_id])
    missed = [line for line in expected if not flagged(findings, rule_id, line)]
    wrong = [line for line in ok if flagged(findings, rule_id, line)]
    assert not missed, f"{rule_id} missed lines {missed}"
    assert not wrong, f"{rule_id} flagged safe lines {wrong}: " + "; ".join(
        f.message for f in findings if any(f.start_line <= w <= f.end_line for w in wrong))
    for f in findings:
        assert f.detector == "static" and f.rule_id == rule_id and f.cwe.startswith("CWE-")
        assert 0 < f.confidence <= 1 and f.message and f.title


def test_every_fixture_belongs_to_a_rule():
    orphans = [p.name for p in FIXTURES.glob("*.py") if p.stem not in RULES]
    assert not orphans


def test_every_rule_is_documented():
    for r in RULES.values():
        assert "**Why.**" in r.doc and "**Example.**" in r.doc, r.id
        assert r.cwe.startswith("CWE-") and r.title


def _confidence(code: str, rule_id: str) -> float:
    found = [f for f in scan("t.py", code, select=[rule_id]) if f.rule_id == rule_id]
    return max((f.confidence for f in found), default=0.0)


@pytest.mark.parametrize("rule_id, template", [
    ("CWS089", "def f(cur, {p}):\n    cur.execute('SELECT * FROM t WHERE a = ' + {v})\n"),
    ("CWS078", "import os\ndef f({p}):\n    os.system('ls ' + {v})\n"),
    ("CWS094", "def f({p}):\n    return eval({v})\n"),
])
def test_taint_orders_confidence(rule_id, template):
    """A parameter reaching the sink beats an untraced value, which beats a constant (none)."""
    tainted = _confidence(template.format(p="user", v="user"), rule_id)
    untraced = _confidence(template.format(p="unused", v="helper()"), rule_id)
    constant = _confidence(template.format(p="unused", v="'x'"), rule_id)
    assert tainted > untraced > constant == 0.0


def test_request_data_beats_a_plain_parameter():
    request_code = ("from flask import request\nimport os\n"
                    "def f():\n    os.system('ls ' + request.args['d'])\n")
    param_code = "import os\ndef f(d):\n    os.system('ls ' + d)\n"
    assert _confidence(request_code, "CWS078") > _confidence(param_code, "CWS078")
    # a Django-style view's parameters after `request` are URL segments
    view = "import os\ndef view(request, name):\n    return open(os.path.join('/srv', name))\n"
    helper = "import os\ndef helper(base, name):\n    return open(os.path.join('/srv', name))\n"
    assert _confidence(view, "CWS022") > _confidence(helper, "CWS022") > 0


def test_message_explains_the_flow():
    code = ("def find(conn, username):\n"
            "    query = f\"SELECT * FROM users WHERE name = '{username}'\"\n"
            "    return conn.execute(query)\n")
    (f,) = scan("t.py", code, select=["CWS089"])
    assert "parameter `username`" in f.message and "f-string" in f.message and "line 2" in f.message
    # a plain parameter is the caller's value: reported, one severity below the rule's
    assert (f.start_line, f.end_line, f.cwe, f.severity) == (3, 3, "CWE-89", "high")


def _only(code: str, rule_id: str, path: str = "t.py"):
    (f,) = [f for f in scan(path, code, select=[rule_id]) if f.rule_id == rule_id]
    return f


@pytest.mark.parametrize("source, kind, severity", [
    ("request.args['h']", "request data (request.args)", "critical"),
    ("os.environ['QUERY_STRING']", "request data (the CGI variable `QUERY_STRING`)", "critical"),
    ("sys.argv[1]", "command-line argument (sys.argv)", "high"),
    ("os.environ['HOST']", "environment variable `HOST`", "high"),
    ("input()", "user input (input())", "high"),
    ("host", "parameter `host` (caller-supplied, not known to be user input)", "high"),
])
def test_parameter_only_evidence_ranks_below_request_argv_and_env(source, kind, severity):
    """A parameter of a library function is not untrusted input: below every real source in
    confidence and one severity lower. What whoever runs the program sets (the command line,
    the environment, input()) keeps its confidence but is one severity lower than what a remote
    client sends (CGI's request variables are the request). The explanation names the source."""
    head = "import os, sys\nfrom flask import request\n"
    f = _only(head + f"def ping(host):\n    os.system('ping ' + {source})\n", "CWS078")
    assert f.message.startswith(f"shell command from a non-constant value: {kind} reaches os.system()")
    assert f.severity == severity
    param = _only(head + "def ping(host):\n    os.system('ping ' + host)\n", "CWS078")
    if source != "host":
        assert f.confidence > param.confidence


def test_the_strongest_source_names_a_mixed_value():
    code = ("import os\nfrom flask import request\n"
            "def f(prefix):\n    os.system(prefix + request.args['x'])\n")
    f = _only(code, "CWS078")
    assert "request data (request.args)" in f.message and f.severity == "critical"


DB_VALUES = """import os
from flask import request


def from_orm():
    note = Note.objects.get(pk=request.GET["id"])
    os.system("echo " + note.title)


def from_cursor(conn):
    row = conn.execute("SELECT cmd FROM jobs").fetchone()
    os.system(row[0])


def from_request():
    os.system("echo " + request.args["title"])
"""


def test_database_values_are_not_request_data():
    found = {f.start_line: f for f in scan("t.py", DB_VALUES, select=["CWS078"])}
    orm, cursor, req = found[7], found[12], found[16]
    for f in (orm, cursor):
        assert "a value read from the database" in f.message, f.message
        assert f.confidence == 0.5 and f.severity == "high"  # untraced: one severity lower
    assert "Note.objects.get()" in orm.message and "fetchone()" in cursor.message
    assert req.confidence == 0.9 and req.severity == "critical"


def test_debugger_rank_depends_on_who_can_reach_it():
    head = "from flask import Flask\napp = Flask(__name__)\n"
    exposed = _only(head + "app.run(host='0.0.0.0', debug=True)\n", "CWS489")
    local = _only(head + "app.run(debug=True)\n", "CWS489")
    assert (exposed.cwe, exposed.severity, exposed.confidence) == ("CWE-489", "high", 0.8)
    assert (local.severity, local.confidence) == ("medium", 0.6)
    assert "0.0.0.0" in exposed.message and "loopback" in local.message
    # no Flask in the module: some other object's run(debug=True)
    assert scan("t.py", "import trainer\ntrainer.run(debug=True)\n", select=["CWS489"]) == []


def test_jinja_template_rank_depends_on_html():
    head = "from jinja2 import Template\n"
    html = _only(head + "t = Template('<b>{{ x }}</b>')\n", "CWS079D")
    text = _only(head + "t = Template('Dear {{ x }}')\n", "CWS079D")
    assert (html.cwe, html.severity, html.confidence) == ("CWE-79", "high", 0.75)
    assert (text.severity, text.confidence) == ("medium", 0.5)


def test_taint_follows_branches_and_sanitisers():
    code = ("import os, shlex\n"
            "def f(host, flag):\n"
            "    cmd = 'ping ' + host\n"
            "    if flag:\n"
            "        cmd = 'ping localhost'\n"
            "    os.system(cmd)\n"
            "    safe = 'ping ' + shlex.quote(host)\n"
            "    os.system(safe)\n")
    lines = {f.start_line for f in scan("t.py", code, select=["CWS078"])}
    assert lines == {6}  # the other branch keeps the taint; quoting clears it


def test_findings_cover_the_whole_statement():
    code = "import os\ndef f(h):\n    os.system(\n        'ping ' + h\n    )\n"
    (f,) = scan("t.py", code, select=["CWS078"])
    assert (f.start_line, f.end_line) == (3, 5)


def test_works_on_snippets_and_only_reports_the_units_asked_for():
    src = parse_source("record-17", "import os\ndef a(x):\n    os.system(x + '!')\ndef b(y):\n    eval(y)\n")
    det = create("static")
    assert {f.rule_id for f in det.detect(src.units)} == {"CWS078", "CWS094"}
    only_b = [u for u in src.units if u.qualname == "b"]
    assert [f.rule_id for f in det.detect(only_b)] == ["CWS094"]
    assert all(f.path == "record-17" for f in det.detect(src.units))



def test_a_snippet_cut_from_its_imports_is_judged_as_its_module_calls_read():
    # Bandit decides B506 from the file's imports; a function cut out of its file has none, and
    # yaml.load(f) there is the same unsafe call as with ``import yaml`` above it
    code = "def read(path):\n    with open(path) as f:\n        return yaml.load(f)\n"
    assert [f.rule_id for f in scan("t.py", code, select=["CWS502B"])] == ["CWS502B"]
    assert [f.rule_id for f in scan("t.py", "import yaml\n" + code, select=["CWS502B"])] == ["CWS502B"]
    safe = code.replace("yaml.load(f)", "yaml.load(f, Loader=yaml.SafeLoader)")
    assert scan("t.py", safe, select=["CWS502B"]) == []
    cipher = "def seal(key, iv):\n    return DES3.new(key, DES3.MODE_CFB, iv)\n"
    assert [f.rule_id for f in scan("t.py", cipher, select=["CWS327"])] == ["CWS327"]
    own = "DES3 = Registry()\n" + cipher  # a name the file defines is not the module
    assert scan("t.py", own, select=["CWS327"]) == []

ODD_CODE = [
    "x = (lambda: (yield))\n",
    "async def f(a, /, b=1, *c, d, **e):\n    async with a as (p, q):\n        await eval(p)\n",
    "def f():\n    global g\n    nonlocal_ = [*range(3)]\n    del nonlocal_[0]\n    return (y := 1)\n",
    "match cmd:\n    case {'x': [a, *rest]} if a:\n        exec(a)\n    case _:\n        pass\n",
    "class A(metaclass=type):\n    def __init__(self, *a, **k): super().__init__(*a, **k)\n",
    "f = lambda x: __import__('os').system(x)\n(lambda y: eval(y))('1')\n",
    "try:\n    pass\nexcept* ValueError as e:\n    open(e.args[0])\n",
    "x = [eval(s) for s in input().split()]\nsubprocess = None\nsubprocess.run('ls', shell=True)\n",
    "def f(request):\n    return request.GET['a'][0].b.c()(1)[2]\n",
    "(" * 50 + "1" + ")" * 50 + "\n",
    "\n".join(f"{'    ' * i}if x{i}:" for i in range(60)) + "\n" + "    " * 60 + "eval(x)\n",
]


@pytest.mark.parametrize("code", ODD_CODE)
def test_survives_odd_code(code):
    det = StaticDetector()
    src = parse_source("odd.py", code)
    if src.tree is None:
        pytest.skip(f"does not parse on this Python: {src.error}")
    det.detect(src.units)
    assert sum(det.errors.values()) == 0, det.errors


def test_a_broken_rule_is_counted_not_raised(monkeypatch):
    import dataclasses

    from cwescan.detectors.static import registry

    def boom(node, ctx):
        raise ValueError("bug")
        yield

    broken = dataclasses.replace(RULES["CWS094"], check=boom)
    monkeypatch.setitem(registry.RULES, "CWS094", broken)
    det = StaticDetector()
    findings = det.detect(parse_source("t.py", "import os\ndef f(x):\n    eval(x)\n    os.system(x)\n").units)
    assert det.errors["CWS094"] == 1
    assert [f.rule_id for f in findings] == ["CWS078"]


def test_demo_app_answer_key():
    """Every weakness of the demo app's answer key is found; no safe function is flagged."""
    import json

    root = Path(__file__).resolve().parents[1] / "examples" / "vulnapp"
    key = json.loads((root / "ANSWERS.json").read_text())
    findings = []
    for path in sorted((root / "vulnapp").glob("*.py")):
        rel = path.relative_to(root).as_posix()
        findings += scan(rel, path.read_text())
    from cwescan.core.cwe import same_family

    missed = [v for v in key["vulnerable"] if not any(
        f.path == v["path"] and f.start_line == v["line"] and same_family(f.cwe, v["cwe"]) for f in findings)]
    false_alarms = [f for f in findings for s in key["safe"]
                    if f.path == s["path"] and s["start_line"] <= f.start_line <= s["end_line"]]
    assert not missed
    assert not false_alarms


def test_docs_are_generated_from_the_rules():
    out = subprocess.run([sys.executable, "-m", "cwescan", "rules", "--docs"],
                         capture_output=True, text=True, check=True).stdout
    for r in RULES.values():
        assert f"## {r.id}" in out
    committed = Path(__file__).resolve().parents[1] / "docs" / "RULES.md"
    assert committed.read_text() == out, "docs/RULES.md is stale: cwescan rules --docs > docs/RULES.md"


def test_indented_snippets_are_scanned_with_exact_lines():
    """A method cut out of its class (still indented) does not parse; recovery dedents it."""
    snippet = "    def run(self, cmd):\n\n        import os\n        os.system('sh -c ' + cmd)\n"
    src = parse_source("record-9", snippet)
    assert src.error.startswith("IndentationError") and src.parser == "recovered"
    assert [u.qualname for u in src.units] == ["run"]
    (f,) = StaticDetector().detect(src.units)
    assert (f.rule_id, f.start_line) == ("CWS078", 4)
    assert StaticDetector().detect(parse_source("r", "    def f(:\n        pass\n").units) == []


def test_partial_ssrf_ranks_below_a_free_url():
    head = "import requests\nfrom flask import request\ndef f():\n    u = request.args['u']\n"
    free = _confidence(head + "    return requests.get(u)\n", "CWS918")
    path_only = _confidence(head + "    return requests.get('https://api.example.com/' + u)\n", "CWS918")
    assert free > path_only > 0


def test_argument_lists_without_a_shell():
    """Data in the arguments of a shell-less call is no command injection; request data choosing
    the program is; the command line choosing it is flagged weakly."""
    head = "import subprocess, sys\nfrom flask import request\ndef f():\n"
    assert scan("t.py", head + "    subprocess.run(['git', 'log', request.args['ref']])\n",
                select=["CWS078"]) == []
    req = _only(head + "    subprocess.run([request.args['prog'], '-v'])\n", "CWS078")
    argv = _only(head + "    subprocess.run(sys.argv[1:])\n", "CWS078")
    assert (req.severity, argv.severity) == ("critical", "high")
    assert req.confidence > argv.confidence == 0.6
    assert "command-line argument (sys.argv)" in argv.message


def test_unsafe_yaml_loader_on_a_constant_document_is_reported_below_display():
    text = (FIXTURES / "CWS502B.py").read_text()
    line = next(n for n, t in enumerate(text.split("\n"), 1) if "yaml.load(DEFAULTS" in t)
    found = [f for f in scan("CWS502B.py", text, select=["CWS502B"]) if f.start_line == line]
    assert [f.confidence for f in found] == [0.25]  # below DEFAULT_MIN_CONFIDENCE


def test_a_path_on_a_configured_server_is_partial_ssrf():
    text = (FIXTURES / "CWS918.py").read_text()
    lines = [n for n, t in enumerate(text.split("\n"), 1) if "self.endpoint}/api" in t or 'CONFIG["base"]' in t]
    found = {f.start_line: f.confidence for f in scan("CWS918.py", text, select=["CWS918"])}
    # request data on a configured server is partial SSRF; a plain parameter there is the
    # API client's own job
    assert [found.get(n) for n in lines] == [None, 0.45, 0.45]


def test_flask_view_cut_out_of_its_file_serves_html():
    """A snippet whose imports were cut off: Flask's global request fields say who serves it;
    a file importing another framework (FastAPI's Response is not HTML by default) keeps its own."""
    body = ("def greet():\n    name = request.args.get('name')\n"
            "    return make_response('Hello {}'.format(name))\n")
    assert _confidence(body, "CWS079B") > 0
    assert _confidence("from fastapi import Response, Request\n" + body, "CWS079B") == 0.0
    # without Flask's request fields nothing says the function is a view
    assert _confidence(body.replace("request.args.get('name')", "load_name()"), "CWS079B") == 0.0


def test_plain_parameter_paths_and_patterns_sit_under_the_display():
    """A library joining its caller's name into a path, or compiling its caller's pattern, is
    reported under the default display confidence; request data in the same place is shown."""
    from cwescan.core.config import DEFAULT_MIN_CONFIDENCE

    head = "import os, re\nfrom flask import request\n"
    path_param = _confidence(head + "def f(name):\n    return open(os.path.join('/srv', name))\n", "CWS022")
    path_request = _confidence(head + "def f():\n    return open(os.path.join('/srv', request.args['n']))\n",
                               "CWS022")
    pattern_param = _confidence(head + "def f(p, s):\n    return re.search(p, s)\n", "CWS400")
    pattern_request = _confidence(head + "def f(s):\n    return re.search(request.args['p'], s)\n", "CWS400")
    assert 0 < path_param < DEFAULT_MIN_CONFIDENCE <= path_request
    assert 0 < pattern_param < DEFAULT_MIN_CONFIDENCE <= pattern_request
