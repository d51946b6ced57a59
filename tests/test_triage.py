"""Triage: which units go to the model. Sinks come from the static rule catalogue; names every
program uses count only through an import."""

from __future__ import annotations

import ast
import os
import sys

import pytest

from cwescan.scan import triage as T
from cwescan.detectors.static import RULES, StaticDetector, rule
from cwescan.core.units import parse_source


def verdicts(code: str, with_static: bool = False) -> dict[str, T.Verdict]:
    src = parse_source("m.py", code)
    hints = {}
    if with_static:
        for f in StaticDetector().detect(src.units):
            hints.setdefault(f.path, []).append(f)
    return {u.qualname: v for u, v in zip(src.units, T.triage(src.units, hints))}


def test_sinks_through_imports_builtins_and_distinctive_methods():
    v = verdicts('''import subprocess as sp
from subprocess import run
import hashlib


def a(x):
    sp.run(x)


def b(x):
    run(x)


def c(cur, q):
    cur.execute(q)


def d(s):
    return eval(s)


def e(data):
    return hashlib.md5(data)


class Job:
    def start(self):
        self.run()
        return {}.get("k", "").split(",")

    def run(self):
        return self.parse(format(1))
''')
    assert (v["a"].kind, v["a"].detail) == ("sink", "subprocess.run")
    assert (v["b"].kind, v["b"].detail) == ("sink", "subprocess.run")
    assert (v["c"].kind, v["c"].detail) == ("sink", ".execute()")
    assert (v["d"].kind, v["d"].detail) == ("sink", "eval()")
    assert v["e"].detail == "hashlib.md5"
    assert not v["Job.start"].review and not v["Job.run"].review
    assert v["module"].kind == "no-surface"  # imports alone are no surface


def test_sources_are_surfaces():
    v = verdicts('''import os
import sys
from flask import request


def a():
    return request.args["q"]


def b():
    return os.environ["HOME"]


def c():
    return sys.argv[1]


def d():
    return input()


def e():
    return os.getenv("X")
''')
    assert {k: (x.kind, x.detail) for k, x in v.items() if k != "module"} == {
        "a": ("source", "request.args"), "b": ("source", "os.environ"), "c": ("source", "sys.argv"),
        "d": ("source", "input"), "e": ("source", "os.getenv")}


def test_surface_lines_are_every_sink_and_source_of_the_unit():
    code = ("import os\nimport subprocess\n\n\ndef f(cmd):\n    home = os.environ['HOME']\n"
            "    x = 1\n    subprocess.run(cmd)\n    y = x + 1\n    return eval(home)\n\n\ndef g():\n    return 1\n")
    units = {u.qualname: u for u in parse_source("m.py", code).units}
    assert T.surface_lines(units["f"]) == {6, 8, 10}
    assert T.unit_surface(units["f"]).line in {6, 8, 10}  # the first of them met in the walk
    assert T.surface_lines(units["g"]) == frozenset()
    assert T.surface_lines(parse_source("bad.py", "def f(:\n").units[0]) == frozenset()


def test_static_findings_and_unparsed_files_are_always_reviewed():
    v = verdicts('password = "hunter2"\n\ndef f():\n    return 1\n', with_static=True)
    assert v["module"].kind == "static-finding" and v["module"].detail.startswith("CWS798")
    assert not v["f"].review
    src = parse_source("bad.py", "def f(:\n    pass\n")
    [only] = T.triage(src.units)
    assert only.review and only.kind == "unparsed"


def test_files_repaired_are_judged_on_the_lines_kept():
    """A file parsed after repairs (Python 2 rewritten, a snippet re-indented, a broken line
    left out) is triaged on its tree, unit by unit, like any parsed file."""
    partly = parse_source("p.py", "import os\n\ndef f(x):\n    return x +\n\ndef g():\n    return 1\n\n"
                                  "def h(c):\n    print 'running', c\n    os.system(c)\n")
    assert partly.repair is not None and partly.repair.dropped
    verdicts = {u.qualname: v for u, v in zip(partly.units, T.triage(partly.units))}
    assert verdicts["h"].review and verdicts["h"].kind == "sink"
    assert not verdicts["g"].review


def test_module_unit_does_not_see_function_bodies():
    v = verdicts("import os\n\nX = 1\n\ndef f(c):\n    os.system(c)\n")
    assert v["f"].review and not v["module"].review


def test_sinks_are_the_catalogue_and_a_new_rule_widens_triage():
    calls = set().union(*(r.calls - r.minor_calls for r in RULES.values() if r.calls))
    assert T.sink_names() == calls
    assert T.distinctive_methods() <= calls
    assert "get" not in T.distinctive_methods() and "execute" in T.distinctive_methods()
    code = "def f(x):\n    return x.frobnicate_secret()\n"
    assert not verdicts(code)["f"].review

    @rule("CWS999Z", cwe="CWE-20", title="test rule", severity="low", calls={"frobnicate_secret"})
    def _test_rule(call, ctx):
        """A rule registered only by this test."""
        return iter(())

    T.sink_names.cache_clear()
    T.distinctive_methods.cache_clear()
    try:
        assert verdicts(code)["f"].review
    finally:
        del RULES["CWS999Z"]
        T.sink_names.cache_clear()
        T.distinctive_methods.cache_clear()


def test_a_minor_call_alone_is_no_reason_to_review():
    # os.path.exists is a CWS022 call (a path probe), not a surface for the models
    assert "exists" not in T.sink_names() and "exists" in RULES["CWS022"].calls
    v = verdicts("import os\n\ndef f(p):\n    return os.path.exists(p)\n\n"
                 "def g(p):\n    return open(p).read()\n")
    assert not v["f"].review and v["g"].review


def test_third_party_quiet_hides_output_unless_the_block_fails(capfd):
    import logging
    import warnings

    from cwescan.scan.quiet import third_party_quiet

    with third_party_quiet():
        os.write(2, b"C-level noise\n")
        print("python noise", file=sys.stderr)
        warnings.warn("deprecated thing", FutureWarning)
        logging.getLogger("transformers").warning("advice")
    with third_party_quiet(enabled=False):
        os.write(2, b"shown when verbose\n")
    err = capfd.readouterr().err
    assert "noise" not in err and "advice" not in err and "shown when verbose" in err
    with pytest.raises(RuntimeError):
        with third_party_quiet():
            os.write(2, b"context for the failure\n")
            raise RuntimeError("load failed")
    assert "context for the failure" in capfd.readouterr().err
    assert ast  # keeps the import used by the helpers above honest


@pytest.mark.parametrize("body, reviewed", [
    ('return redirect("/posts")', False),
    ('return render(request, "page.html")', False),  # the request handed to a consumer: plumbing
    ('return subprocess.check_output(["git", "--version"])', False),
    ('return redirect(next_url)', True),
    ('return render(request, "page.html", {"q": request.GET["q"]})', True),
    ('return tempfile.mktemp()', True),  # no arguments: the call alone may be the weakness
    ('return subprocess.check_output(f"git log {ref}", shell=True)', True),
])
def test_a_sink_called_with_literals_only_is_not_a_surface(body, reviewed):
    code = ("import subprocess, tempfile\nfrom django.shortcuts import redirect, render\n\n"
            f"def view(request, next_url, ref):\n    {body}\n")
    src = parse_source("views.py", code)
    unit = next(u for u in src.units if u.qualname == "view")
    assert T.triage([unit])[0].review is reviewed
