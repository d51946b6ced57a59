"""Perturbations used by `cwescan eval --perturb` keep code parseable and keep what it does."""

import ast
import textwrap

import pytest

from cwescan.ml.codeprep import strip_comments
from cwescan.evaluate.perturb import COMMENT_KINDS, PERTURBATIONS, code_tokens

SAMPLES = [
    textwrap.dedent('''\
        import os
        import subprocess
        from flask import request

        def run(cmd, n=3):
            """Run it."""
            user = request.args.get("q")
            total = 0
            for i in range(n):
                total += i
            out = subprocess.check_output("ls " + user, shell=True)
            return [x for x in out if x], f"{user} {total}"

        @app.route("/x")
        def view(name):
            query = "SELECT * FROM t WHERE name = '%s'" % name
            a = 1
            b = 2
            return db.execute(query)
        '''),
    textwrap.dedent('''\
        class Store:
            table = "users"

            def find(self, key, *, limit=10):
                sql = "SELECT * FROM %s WHERE k = '%s'" % (self.table, key)
                rows = [r for r in self.db.execute(sql)]; count = len(rows)
                if count: return rows[:limit]
                def inner(z):
                    nonlocal count
                    count += z
                    return count
                return inner(1)
        '''),
    "x = '''multi\nline # not a comment\n  string'''\ny = x  # a comment\n",
    "def f(a):\n    return eval(a)\n",
    "",
    "def broken(:\n    pass\n",
    "lambda: 0\n",
]


@pytest.mark.parametrize("kind", sorted(PERTURBATIONS))
@pytest.mark.parametrize("code", SAMPLES)
def test_result_parses_or_none(kind, code):
    out = PERTURBATIONS[kind](code)
    if out is None:
        return
    assert out != code
    ast.parse(out)


def test_unparseable_input_is_not_applicable():
    for kind, fn in PERTURBATIONS.items():
        assert fn("def broken(:\n    pass\n") is None, kind


@pytest.mark.parametrize("kind", ["comment_safe", "comment_review"])
def test_comment_kinds_only_add_comments(kind):
    for code in SAMPLES:
        out = PERTURBATIONS[kind](code)
        if out is None:
            continue
        assert code_tokens(out) == code_tokens(code)
        assert "#" in out


def test_docstring_claim_only_adds_docstrings():
    out = PERTURBATIONS["docstring_claim"](SAMPLES[0])
    assert "sanitised" in out
    assert _without_docstrings(out) == _without_docstrings(SAMPLES[0])


def _without_docstrings(code):
    tree = ast.parse(code)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def test_every_kind_applies_to_a_typical_file():
    for kind, fn in PERTURBATIONS.items():
        assert fn(SAMPLES[0]) is not None, kind


def test_comments_and_docstrings_are_what_strip_comments_removes():
    """A model fed through strip_comments sees the same text with or without the misleading
    prose, so these kinds cannot change its verdict."""
    for kind in COMMENT_KINDS:
        out = PERTURBATIONS[kind](SAMPLES[0])
        assert _code_lines(strip_comments(out)) == _code_lines(strip_comments(SAMPLES[0]))


def _code_lines(code):
    return [ln.strip() for ln in code.split("\n") if ln.strip() and ln.strip() != '""']


# --- behaviour is preserved -----------------------------------------------------------------

PROGRAMS = [
    textwrap.dedent('''\
        import math
        import string

        def score(words, weight=2):
            total = 0
            seen = set()
            for w in words:
                key = w.lower()
                if key in seen:
                    continue
                seen.add(key)
                total += len(key) * weight
            squares = [k * k for k in range(total % 7)]
            adder = lambda v: v + total
            return adder(sum(squares)), sorted(seen), "%s-%d" % ("n", total)

        def outer(n):
            acc = []
            def push(item):
                acc.append(item * n)
                return len(acc)
            for step in range(n):
                push(step)
            return acc, f"{n} items, last {acc[-1] if acc else None!r}"

        def kw(a, *, scale=3):
            result = a * scale
            return result

        RESULT = (score(["A", "b", "a", "cc"]), outer(4), kw(5, scale=2), math.floor(2.5),
                  string.digits, "SELECT name FROM users WHERE id = %d" % 7)
        '''),
    textwrap.dedent('''\
        def fib(n):
            a = 0
            b = 1
            i = 0
            while i < n:
                a, b = b, a + b
                i += 1
            else:
                done = True
            try:
                ratio = b / a
            except ZeroDivisionError as err:
                ratio = str(err)
            with open(__file__) if False else __import__("contextlib").nullcontext(3) as ctx:
                extra = ctx
            return a, ratio, done, extra

        class Counter:
            start = 10

            def bump(self, by):
                value = self.start + by
                self.start = value
                return value

        c = Counter()
        RESULT = (fib(10), fib(0), c.bump(2), c.bump(3), [fib(k)[0] for k in range(5)])
        '''),
]


def _run(code):
    scope = {"__name__": "perturbed"}
    exec(compile(code, "<perturbed>", "exec"), scope)  # test programs written above, not scanned input
    return scope["RESULT"]


@pytest.mark.parametrize("kind", sorted(PERTURBATIONS))
@pytest.mark.parametrize("index", range(len(PROGRAMS)))
def test_behaviour_is_preserved(kind, index):
    code = PROGRAMS[index]
    out = PERTURBATIONS[kind](code)
    if out is None:
        pytest.skip(f"{kind} does not apply")
    assert _run(out) == _run(code)


def test_renaming_renames_consistently_and_spares_attributes_and_keywords():
    code = PROGRAMS[0]
    out = PERTURBATIONS["rename_neutral"](code)
    assert "seen" not in out.replace("sorted(", "")  # local renamed everywhere
    assert "scale=" in out  # keyword-only parameter kept (callers pass it by name)
    assert ".append(" in out and ".lower()" in out  # attributes untouched
    assert "sorted(" in out and "len(" in out  # builtins untouched


def test_renaming_keeps_parameters_of_decorated_functions():
    code = "@app.route('/u/<name>')\ndef view(name):\n    q = name\n    return q\n"
    out = PERTURBATIONS["rename_neutral"](code)
    assert "def view(name):" in out and "q =" not in out


def test_string_split_leaves_docstrings_fstrings_and_implicit_concatenation():
    code = 'def f():\n    """A docstring here."""\n    a = "one two" "three four"\n    return f"x {a} y"\n'
    assert PERTURBATIONS["string_split"](code) is None
    out = PERTURBATIONS["string_split"]('q = "SELECT * FROM t"\n')
    assert out == 'q = ("SELECT " + "* FROM t")\n'


def test_string_split_never_cuts_an_escape():
    for code in ['s = "ab\\ncd ef"\n', 's = "\\x41\\x42 c"\n', 's = r"a\\b c"\n', "s = '\\N{BULLET} x'\n"]:
        out = PERTURBATIONS["string_split"](code)
        if out is not None:
            assert eval(out.split("=", 1)[1]) == eval(code.split("=", 1)[1])  # literals only


def test_reorder_keeps_dependent_statements_in_order():
    code = "a = 1\nb = a\nc = 2\nd = 3\n"
    out = PERTURBATIONS["reorder"](code)
    assert out == "a = 1\nc = 2\nb = a\nd = 3\n"  # a = 1 / b = a may not swap; b = a / c = 2 may
