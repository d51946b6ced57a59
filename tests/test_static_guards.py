"""Positive validation guards in the taint flow: ``if <validation of x>: <sink(x)>``.

Inside the body of an ``if`` whose test (or an operand of its top-level ``and``) validates a
tainted value, that value is checked; after the ``if``, in its ``else`` and under ``not``/``or``
it is not. Prefix/containment checks count only on a normalised path.
"""

from __future__ import annotations

import textwrap

import pytest

from cwescan.core.units import parse_source
from cwescan.detectors.static import StaticDetector

HEAD = """\
import os, re
from django.conf import settings
from django.http import HttpResponse, HttpResponseRedirect
from django.utils.http import is_safe_url, url_has_allowed_host_and_scheme
from flask import Flask, redirect, request
app = Flask(__name__)
BASE = "/srv/files"
ALLOWED = ("a.txt", "b.txt")
"""


def lines_of(body: str, rule: str) -> set[int]:
    """The lines (counted from the first line of ``body``) where ``rule`` reports."""
    code = HEAD + textwrap.dedent(body)
    src = parse_source("t.py", code)
    assert src.tree is not None, src.error
    offset = HEAD.count("\n")
    return {f.start_line - offset for f in StaticDetector(select=[rule]).detect(src.units)}


def test_django_media_view_with_a_normalised_prefix_check_is_not_reported():
    body = """\
    def media(request, path):
        mediapath = settings.PROTECTED_MEDIA_ROOT
        fullpath = os.path.abspath(os.path.join(mediapath, path))
        if fullpath.startswith(mediapath) and os.path.isfile(fullpath):
            with open(fullpath, 'rb') as f:
                return HttpResponse(f.read())
    """
    assert lines_of(body, "CWS022") == set()
    # the same view without the check is reported: the check is what clears it
    assert lines_of(body.replace("fullpath.startswith(mediapath) and ", ""), "CWS022") == {5}


@pytest.mark.parametrize("validator", ["is_safe_url", "url_has_allowed_host_and_scheme"])
def test_redirect_under_a_validation_result_is_not_reported(validator):
    body = f"""\
    def go(request):
        next = request.POST.get('next', request.GET.get('next'))
        ok = {validator}(url=next, allowed_hosts=request.get_host())
        if ok:
            return HttpResponseRedirect(next)
        return HttpResponseRedirect("index")
    """
    assert lines_of(body, "CWS601") == set()


def test_a_validation_result_does_not_cover_the_redirect_outside_its_if():
    body = """\
    def go(request):
        next = request.GET.get('next')
        ok = is_safe_url(next)
        if ok:
            print("checked")
        return HttpResponseRedirect(next)
    """
    assert lines_of(body, "CWS601") == {6}


def test_a_validation_result_of_an_older_value_does_not_cover_a_new_one():
    body = """\
    def go(request):
        next = request.GET.get('next')
        ok = is_safe_url(next)
        next = request.GET.get('other')
        if ok:
            return HttpResponseRedirect(next)
    """
    assert lines_of(body, "CWS601") == {6}


def test_validator_call_directly_in_the_test_is_credited():
    body = """\
    @app.route("/go")
    def go():
        target = request.args["next"]
        if url_has_allowed_host_and_scheme(target, allowed_hosts={"example.com"}):
            return redirect(target)
        return redirect("/")
    """
    assert lines_of(body, "CWS601") == set()


def test_unnormalised_prefix_check_is_still_reported():
    body = """\
    @app.route("/f")
    def read():
        p = os.path.join(BASE, request.args["f"])
        if p.startswith(BASE):
            return open(p).read()
    """
    assert lines_of(body, "CWS022") == {5}


def test_normalising_before_the_join_is_not_normalising_the_path():
    # normpath("../../etc") keeps its "..": the joined path still escapes BASE
    body = """\
    @app.route("/f")
    def read():
        p = os.path.join(BASE, os.path.normpath(request.args["f"]))
        if p.startswith(BASE):
            return open(p).read()
    """
    assert lines_of(body, "CWS022") == {5}


@pytest.mark.parametrize("test", [
    "os.path.realpath(p).startswith(BASE)",  # the check applied to the normalising call
    "os.path.commonpath([BASE, os.path.abspath(p)]) == BASE",
])
def test_check_on_a_normalising_call_is_credited(test):
    body = f"""\
    @app.route("/f")
    def read():
        p = os.path.join(BASE, request.args["f"])
        if {test}:
            return open(p).read()
    """
    assert lines_of(body, "CWS022") == set()


def test_commonpath_of_an_unnormalised_path_is_still_reported():
    body = """\
    @app.route("/f")
    def read():
        p = os.path.join(BASE, request.args["f"])
        if os.path.commonpath([BASE, p]) == BASE:
            return open(p).read()
    """
    assert lines_of(body, "CWS022") == {5}


@pytest.mark.parametrize("test", [
    "not p.startswith(BASE)",
    "p.startswith(BASE) or app.debug",
    "not (p.startswith(BASE) and os.path.isfile(p))",
])
def test_negated_and_or_forms_are_not_positive_guards(test):
    body = f"""\
    @app.route("/f")
    def read():
        p = os.path.realpath(os.path.join(BASE, request.args["f"]))
        if {test}:
            return open(p).read()
    """
    assert lines_of(body, "CWS022") == {5}


@pytest.mark.parametrize("test", ['x != "a.txt"', '"a" in x', "x not in ALLOWED", "x is not None"])
def test_comparisons_that_do_not_pin_the_value_are_not_guards(test):
    body = f"""\
    @app.route("/f")
    def read():
        x = request.args["f"]
        if {test}:
            return open(os.path.join(BASE, x)).read()
    """
    assert lines_of(body, "CWS022") == {5}


@pytest.mark.parametrize("test", ['x in ("a.txt", "b.txt")', "x in ALLOWED", 'x == "a.txt"',
                                  'app.debug and (x in ALLOWED and x)'])
def test_comparison_with_constants_is_a_guard(test):
    body = f"""\
    @app.route("/f")
    def read():
        x = request.args["f"]
        if {test}:
            return open(os.path.join(BASE, x)).read()
    """
    assert lines_of(body, "CWS022") == set()


def test_comparison_with_a_tainted_value_is_not_a_guard():
    body = """\
    @app.route("/f")
    def read():
        x = request.args["f"]
        if x == request.args["g"]:
            return open(os.path.join(BASE, x)).read()
    """
    assert lines_of(body, "CWS022") == {5}


def test_the_check_holds_in_the_body_only():
    body = """\
    @app.route("/f")
    def read():
        x = request.args["f"]
        if x in ALLOWED:
            data = open(os.path.join(BASE, x)).read()
        else:
            data = open(os.path.join(BASE, x)).read()
        open(os.path.join(BASE, x)).read()
        return data
    """
    assert lines_of(body, "CWS022") == {7, 8}


def test_nested_ifs_keep_the_check():
    # (bodies that do not leave: an ``if`` that validates and leaves is an early-exit guard)
    body = """\
    @app.route("/f")
    def read():
        x = request.args["f"]
        if x in ALLOWED:
            if app.debug:
                print(x)
            if os.path.exists(os.path.join(BASE, x)):
                data = open(os.path.join(BASE, x)).read()
            data = open(os.path.join(BASE, x)).read()
        data = open(os.path.join(BASE, x)).read()
        return data
    """
    assert lines_of(body, "CWS022") == {10}


def test_one_line_guarded_if():
    body = """\
    @app.route("/f")
    def read():
        x = request.args["f"]
        if x in ALLOWED: data = open(os.path.join(BASE, x)).read()
        return open(os.path.join(BASE, x)).read()
    """
    assert lines_of(body, "CWS022") == {5}


def test_a_reassignment_in_the_guarded_body_is_not_checked():
    body = """\
    @app.route("/f")
    def read():
        x = request.args["f"]
        if x in ALLOWED:
            x = request.args["g"]
            return open(os.path.join(BASE, x)).read()
    """
    assert lines_of(body, "CWS022") == {6}


def test_early_exit_guard_on_an_unnormalised_prefix_is_not_credited():
    body = """\
    @app.route("/f")
    def read():
        p = os.path.join(BASE, request.args["f"])
        if not p.startswith(BASE):
            return "no"
        return open(p).read()
    """
    assert lines_of(body, "CWS022") == {6}
    normalised = body.replace('p = os.path.join(BASE, request.args["f"])',
                              'p = os.path.realpath(os.path.join(BASE, request.args["f"]))')
    assert lines_of(normalised, "CWS022") == set()


def test_a_comparison_pins_the_name_compared_not_what_it_came_from():
    body = """\
    @app.route("/f")
    def read():
        data = request.get_json()
        kind = data["kind"]
        if kind == "report":
            return open(os.path.join(BASE, data["name"])).read()
    """
    assert lines_of(body, "CWS022") == {6}


def test_a_valid_form_is_not_a_checked_value():
    # form.is_valid() checks the fields' types: a CharField's text is still anything
    body = """\
    def search(request, cursor):
        form = SearchForm(request.GET)
        if form.is_valid():
            q = form.cleaned_data["q"]
            cursor.execute("SELECT * FROM t WHERE name = '%s'" % q)
    """
    assert lines_of(body, "CWS089") == {5}


def test_a_validator_that_runs_a_command_is_not_a_guard():
    body = """\
    import subprocess
    @app.route("/f")
    def read():
        x = request.args["f"]
        if subprocess.check_output(["test", "-f", x]):
            return open(os.path.join(BASE, x)).read()
    """
    assert lines_of(body, "CWS022") == {6}


@pytest.mark.parametrize("test", ['re.fullmatch(r"[a-z]+\\.txt", x)', 're.match(r"^[a-z]+$", x) is not None',
                                  "x.isalnum()", "app.debug and x.isalnum()"])
def test_validator_calls_on_the_value_are_guards(test):
    body = f"""\
    @app.route("/f")
    def read():
        x = request.args["f"]
        if {test}:
            data = open(os.path.join(BASE, x)).read()
    """
    assert lines_of(body, "CWS022") == set()


@pytest.mark.parametrize("path, reported", [
    ('Path(BASE, request.args["f"])', {6}),  # lexical: Path("/srv/../etc").is_relative_to("/srv")
    ('Path(BASE, request.args["f"]).resolve()', set()),
])
def test_is_relative_to_needs_a_resolved_path(path, reported):
    body = f"""\
    from pathlib import Path
    @app.route("/f")
    def read():
        p = {path}
        if p.is_relative_to(BASE):
            data = p.read_text()
    """
    assert lines_of(body, "CWS022") == reported


# -- pattern checks do not clear URL sinks ----------------------------------------------------

@pytest.mark.parametrize("test", [
    'target.endswith("example.com")',  # passes "evil-example.com"
    'UNSAFE_HOST.match(target)',  # a host regex with an unescaped "."
    're.match(r"https://www.example.com/", target) is not None',
    'target.startswith("/")',  # "//evil.com" starts with "/"
])
def test_a_pattern_check_before_a_redirect_still_reports_it(test):
    positive = f"""\
    UNSAFE_HOST = re.compile(r"(www|beta).example.com/")
    @app.route("/go")
    def go():
        target = request.args.get("target", "")
        if {test}:
            return redirect(target)
        return redirect("/")
    """
    assert lines_of(positive, "CWS601") == {6}
    early_exit = f"""\
    UNSAFE_HOST = re.compile(r"(www|beta).example.com/")
    @app.route("/go")
    def go():
        target = request.args.get("target", "")
        if not ({test}):
            return redirect("/")
        return redirect(target)
    """
    assert lines_of(early_exit, "CWS601") == {7}


def test_a_pattern_check_still_clears_other_sink_kinds():
    body = """\
    @app.route("/ls")
    def ls():
        name = request.args.get("name", "")
        if re.fullmatch(r"[a-z0-9_]+", name):
            os.system("ls " + name)
    """
    assert lines_of(body, "CWS078") == set()
    assert lines_of(body.replace('re.fullmatch(r"[a-z0-9_]+", name)', "name"), "CWS078") == {5}


def test_an_allowlist_or_a_url_validator_clears_a_redirect_a_pattern_check_does_not_add_to():
    body = """\
    @app.route("/go")
    def go():
        target = request.args.get("target", "")
        if target.endswith(".html") and url_has_allowed_host_and_scheme(target, allowed_hosts={"a.org"}):
            return redirect(target)
    """
    assert lines_of(body, "CWS601") == set()


# -- early-exit guards: ``if test: return`` -- what holds afterwards is ``not test`` ----------

@pytest.mark.parametrize("guard", [
    "if cmd not in ('ls', 'df'):\n            abort(400)",  # an allow list
    "if cmd != 'ls':\n            return 'no'",
    "if ';' in cmd or '|' in cmd:\n            return 'no'",  # a content check
    "if not cmd.isalnum():\n            return 'no'",
    "if cmd and not cmd.isalnum():\n            return 'no'",  # an empty value is harmless
])
def test_an_exit_guard_that_pins_the_value_clears_it(guard):
    body = f"""\
    @app.route("/run")
    def run():
        cmd = request.args["cmd"]
        {guard}
        os.system(cmd)
    """
    assert lines_of(body, "CWS078") == set()


@pytest.mark.parametrize("guard", [
    "if cmd in ('rm', 'shutdown'):\n            abort(400)",  # a deny list: anything else passes
    "if cmd == 'rm':\n            return 'no'",
    "if cmd.lower() in SKIPPED:\n            return 'no'",
])
def test_an_exit_guard_that_only_excludes_values_does_not_clear_it(guard):
    body = f"""\
    SKIPPED = {{'rm'}}
    @app.route("/run")
    def run():
        cmd = request.args["cmd"]
        {guard}
        os.system(cmd)
    """
    assert lines_of(body, "CWS078") == {7}


def test_checking_a_value_derived_from_the_data_does_not_clear_the_data():
    # ``pos == -1`` says where "=" is, not what the query string holds
    body = """\
    @app.route("/run")
    def run():
        qs = request.query_string.decode()
        pos = qs.find("cmd=")
        if pos == -1:
            return "missing"
        os.system(qs[pos + 4:])
    """
    assert lines_of(body, "CWS078") == {7}


def test_an_overwrite_with_more_of_the_data_is_no_check():
    body = """\
    @app.route("/run")
    def run():
        cmd = request.args["cmd"]
        if cmd not in ("ls", "df"):
            cmd = cmd.split("&")[0]
        os.system(cmd)
    """
    assert lines_of(body, "CWS078") == {6}
    assert lines_of(body.replace('cmd.split("&")[0]', '"ls"'), "CWS078") == set()
