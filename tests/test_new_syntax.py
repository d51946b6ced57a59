"""Files in Python 3.12-3.14 syntax are fully rule-scanned whatever Python runs the scan.

``tests/fixtures/newsyntax/py312/`` holds vulnerable code written with PEP 701 f-strings,
PEP 695/696 type parameters and aliases, PEP 758 except lists and PEP 750 template strings;
``py311/`` the same code, line for line, in syntax Python 3.11 reads. Both must give the same
findings (rule ids and lines), and the report must say which files were lowered. Real files,
the real parsers (the host's ``ast`` and tree-sitter's grammar)."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cwescan.cli import app
from cwescan.core.lowering import parse_lowered
from cwescan.core.units import parse_source

FIXTURES = Path(__file__).parent / "fixtures" / "newsyntax"
NAMES = sorted(p.name for p in (FIXTURES / "py312").glob("*.py"))


def _scan(folder: Path, fmt: str = "json") -> str:
    result = CliRunner().invoke(app, ["scan", str(folder), "-d", "static", "-f", fmt, "-q",
                                      "--fail-on", "none"])
    assert result.exit_code == 0, result.output
    return result.stdout


def _findings(doc: dict) -> list[tuple[str, str, int, int]]:
    return sorted((Path(f["path"]).name, f["rule_id"], f["line_number"], f["end_line"])
                  for f in doc["findings"])


def test_new_syntax_really_is_new_for_this_python():
    """The fixtures would prove nothing if this Python could parse them natively."""
    if sys.version_info >= (3, 14):
        pytest.skip("this Python reads every construct of the fixtures")
    for name in NAMES:
        with pytest.raises(SyntaxError):
            ast.parse((FIXTURES / "py312" / name).read_text())
        ast.parse((FIXTURES / "py311" / name).read_text())


def test_same_findings_as_the_same_code_in_older_syntax():
    new = json.loads(_scan(FIXTURES / "py312"))
    old = json.loads(_scan(FIXTURES / "py311"))
    assert _findings(new) == _findings(old)
    assert {name for name, *_ in _findings(new)} == set(NAMES)  # every file has findings
    assert len(_findings(new)) >= 10


def test_report_says_which_files_were_lowered():
    doc = json.loads(_scan(FIXTURES / "py312"))
    lowered = {Path(n["path"]).name: n for n in doc["skipped"] if n["reason"] == "lowered"}
    if sys.version_info < (3, 12):
        assert set(lowered) == set(NAMES)
        assert all(n["scanned"] for n in lowered.values())
        assert "PEP 701" in lowered["fstrings.py"]["message"]
        assert "PEP 695" in lowered["generics.py"]["message"]
        assert "PEP 758" in lowered["py314.py"]["message"] and "PEP 750" in lowered["py314.py"]["message"]
        assert doc["stats"]["files_lowered"] == len(NAMES)
    assert doc["stats"]["files_partial"] == 0 and doc["stats"]["files_skipped"] == 0
    text = _scan(FIXTURES / "py312", "text")
    for name in lowered:
        line = next(ln for ln in text.splitlines() if name in ln and "lowered" in ln)
        assert "(scanned)" in line
    sarif = json.loads(_scan(FIXTURES / "py312", "sarif"))
    notes = sarif["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert {n["descriptor"]["id"] for n in notes} == ({"lowered"} if lowered else set())


def test_natively_parsed_files_get_no_notice():
    doc = json.loads(_scan(FIXTURES / "py311"))
    assert doc["skipped"] == [] and "files_lowered" not in doc["stats"]


def test_lowered_pep701_fstring_is_the_tree_python_builds():
    """Field expressions keep their own lines and columns; the rules see a JoinedStr."""
    text = 'x = f"{d["a"]} {"\\n".join(y)} {a # c\n}"; z = 1\n'
    src = parse_source("t.py", text)
    assert src.parser == "lowered" and src.error is None
    joined = src.tree.body[0].value
    assert isinstance(joined, ast.JoinedStr)
    sub = joined.values[0].value
    assert isinstance(sub, ast.Subscript) and sub.slice.value == "a"
    assert (sub.lineno, sub.col_offset, sub.end_col_offset) == (1, 7, 13)
    assert joined.values[2].value.func.value.value == "\n"
    assert (joined.end_lineno, joined.end_col_offset) == (2, 2)
    assert src.tree.body[1].lineno == 2 and src.tree.body[1].col_offset == 4  # "z = 1" unmoved


def test_debug_fields_conversions_and_nested_specs():
    text = 'x = f"{v = !r:>{w}} {{lit}} {d["k"]=}"\n'
    joined = parse_source("t.py", text).tree.body[0].value
    assert isinstance(joined.values[0], ast.Constant) and joined.values[0].value == "v = "
    first = joined.values[1]
    assert first.conversion == ord("r") and isinstance(first.format_spec.values[1], ast.FormattedValue)
    assert joined.values[2].value == ' {lit} d["k"]='
    assert joined.values[3].conversion == ord("r")


def test_real_syntax_errors_stay_syntax_errors():
    for text in ("def f(:\n    pass\n", 'x = f"{d["a"]\n', "type = = 1\n", "class C[T:\n"):
        src = parse_source("t.py", text)
        assert src.tree is None and src.error.startswith("SyntaxError") and src.parser == "native"
    assert parse_lowered("x = (\n") is None


def test_type_statement_keeps_every_line_number():
    text = "import os\ntype Alias[\n    T = int,  # default\n] = list[T]\nos.system(input())\n"
    src = parse_source("t.py", text)
    assert src.parser == "lowered"
    assign, call = src.tree.body[1], src.tree.body[2]
    assert isinstance(assign, ast.Assign) and assign.targets[0].id == "Alias" and assign.lineno == 2
    assert call.lineno == 5


def _newer_python() -> str | None:
    """A Python 3.12+ on this machine, if any: on PATH, or installed beside this one."""
    candidates = [shutil.which(f"python3.{m}") for m in (14, 13, 12)]
    candidates += sorted(str(p) for p in Path(sys.base_prefix).parent.glob("3.1[2-9]*/bin/python3"))
    for exe in filter(None, candidates):
        try:
            done = subprocess.run([exe, "-c", "import sys; print(sys.version_info >= (3, 12))"],
                                  capture_output=True, text=True, timeout=30)
        except OSError:
            continue
        if done.returncode == 0 and done.stdout.strip() == "True":
            return exe
    return None


NEWER_PYTHON = _newer_python()


@pytest.mark.skipif(NEWER_PYTHON is None, reason="no Python 3.12+ on this machine to compare with")
def test_lowered_fstrings_match_a_newer_pythons_tree():
    """Where a newer Python is installed, its own tree of the PEP 701 fixture has the same
    expressions at the same places as the lowered one (a check, never a requirement)."""
    newer = NEWER_PYTHON
    path = FIXTURES / "py312" / "fstrings.py"
    script = ("import ast,sys\nt=ast.parse(open(sys.argv[1]).read())\n"
              "print('\\n'.join(sorted(f'{type(n).__name__} {n.lineno} {n.col_offset} {n.end_lineno} '"
              "f'{n.end_col_offset}' for n in ast.walk(t) if isinstance(n,(ast.Call,ast.Subscript,ast.Name,"
              "ast.JoinedStr)))))")
    theirs = subprocess.run([newer, "-c", script, str(path)], capture_output=True, text=True, check=True,
                            timeout=60).stdout.splitlines()
    tree = parse_source("f.py", path.read_text()).tree
    ours = sorted(f"{type(n).__name__} {n.lineno} {n.col_offset} {n.end_lineno} {n.end_col_offset}"
                  for n in ast.walk(tree) if isinstance(n, (ast.Call, ast.Subscript, ast.Name, ast.JoinedStr)))
    # Python 3.11 (natively, for nested f-strings it can read) places a nested field at its
    # whole string: compare the calls, subscripts and names
    assert [x for x in ours if not x.startswith("JoinedStr")] == [x for x in theirs if not x.startswith("JoinedStr")]


def test_damaged_new_syntax_never_raises_and_keeps_lines():
    """Mutated fixtures (the fuzzer's mutators): lowering either gives a tree whose every node
    lies inside the file, or leaves the file a syntax error; it never raises."""
    from cwescan.fuzz import engine as fuzz

    seeds = [(FIXTURES / "py312" / n).read_bytes() for n in NAMES]
    lowered = 0
    for text in fuzz.damaged_texts(seeds, 300):
        src = parse_source("m.py", text)
        n_lines = max(1, len(text.split("\n")))
        if src.parser == "lowered":
            lowered += 1
            for node in ast.walk(src.tree):
                if getattr(node, "lineno", None) is not None:
                    assert 1 <= node.lineno <= (node.end_lineno or node.lineno) <= n_lines
    assert lowered >= 5  # some damaged files still hold lowerable syntax and parse
