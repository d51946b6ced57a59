"""Rewrites that keep what code does must not hide it from the static rules."""

from cwescan.detectors.static import StaticDetector
from cwescan.detectors.static.engine import fold_string_concatenation
from cwescan.evaluate.perturb import PERTURBATIONS
from cwescan.core.units import parse_source

SQL = '''def find(cur, name):
    cur.execute("SELECT * FROM users WHERE name = '%s'" % name)
'''
PASSWORD = '''import pymysql


def connect():
    return pymysql.connect(host="db", user="app", password="cpsnow2024")
'''


def cwes(code: str) -> set[str]:
    return {f.cwe for f in StaticDetector().detect(parse_source("x.py", code).units)}


def test_split_string_literals_are_still_flagged():
    for code, cwe in ((SQL, "CWE-89"), (PASSWORD, "CWE-798")):
        split = PERTURBATIONS["string_split"](code)
        assert split is not None and split != code
        assert cwe in cwes(code), "the unsplit code is flagged"
        assert cwe in cwes(split), f"splitting the literals hid {cwe}:\n{split}"


def test_fold_handles_long_chains_without_recursion():
    import ast

    tree = ast.parse("x = " + " + ".join(['"a"'] * 900))
    fold_string_concatenation(tree)
    value = tree.body[0].value
    assert isinstance(value, ast.Constant) and value.value == "a" * 900


DJANGO_VIEW = '''import os


def download(request):
    return open(os.path.join("/srv/files", request.POST["filename"]), "rb")
'''


def test_renamed_django_request_is_still_a_request():
    def path_findings(code):
        return [(f.confidence, f.message) for f in StaticDetector().detect(parse_source("x.py", code).units)
                if f.cwe == "CWE-22"]

    original = path_findings(DJANGO_VIEW)
    renamed = path_findings(DJANGO_VIEW.replace("request", "v2"))
    assert original and renamed
    # the renamed request is still recognised as request data, not demoted to a plain parameter
    assert renamed == original and "request.POST" in renamed[0][1]
