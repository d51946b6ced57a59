"""A file with syntax errors is rule-scanned on every line that can be repaired: Python 2
modules, half-written functions, code cut out of a larger file. Line numbers stay the file's
own, and the report says which lines were left out or rewritten."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from typer.testing import CliRunner

from cwescan.cli import app
from cwescan.core import recovery
from cwescan.core.recovery import parse_recovered, python2_line
from cwescan.core.units import parse_source
from cwescan.detectors.static import StaticDetector

FIXTURES = Path(__file__).parent / "fixtures" / "recovery"


def _static(text: str) -> list[tuple[str, int]]:
    src = parse_source("t.py", text)
    return sorted((f.rule_id, f.start_line) for f in StaticDetector().check_source(src))


def test_python2_module_gets_every_rule_on_its_own_lines():
    text = (FIXTURES / "legacy_py2_view.py").read_text()
    src = parse_source("legacy_py2_view.py", text)
    assert src.error.startswith("SyntaxError") and src.parser == "recovered"
    lines = text.split("\n")
    found = _static(text)
    assert ("CWS078", 12) in found and "check_output" in lines[11]
    assert ("CWS732", 20) in found and "0777" in lines[19]
    assert ("CWS094", 25) in found and lines[24].strip().startswith("exec ")
    assert ("CWS089", 26) in found
    assert "rewriting (6, 13-15, 20, 25)" in src.repair.describe() and not src.repair.dropped


def test_one_broken_function_leaves_the_others_checked():
    text = (FIXTURES / "half_written.py").read_text()
    src = parse_source("half_written.py", text)
    assert src.parser == "recovered"
    assert [f for _, f in _static(text)] == [11, 21]  # the remove() and the system() call
    assert "left out (5-6, 15)" in src.repair.describe()
    # units are the functions that parsed, so the models read them one by one
    assert {u.qualname for u in src.units if u.kind == "function"} >= {"delete", "also_broken", "run"}


def test_scan_says_what_was_repaired_and_what_left_out():
    result = CliRunner().invoke(app, ["scan", str(FIXTURES), "-d", "static", "-f", "json", "-q",
                                      "--fail-on", "none", "--no-cache"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    notices = {Path(s["path"]).name: s for s in doc["skipped"]}
    assert set(notices) == {"legacy_py2_view.py", "half_written.py"}
    # every line of the Python 2 file was read: fully scanned, with a notice saying how
    py2 = notices["legacy_py2_view.py"]
    assert py2["reason"] == "repaired" and py2["scanned"] and "every rule ran" in py2["message"]
    half = notices["half_written.py"]  # lines left out: partly scanned
    assert half["reason"] == "syntax-error" and half["scanned"] and "rules ran on the rest" in half["message"]
    assert doc["stats"]["files_partial"] == 1 and doc["stats"]["files_repaired"] == 1
    assert {Path(f["path"]).name for f in doc["findings"]} == set(notices)


def test_python2_except_clause_is_not_read_as_a_pep758_list():
    """``except ValueError, e:`` binds ``e`` (Python 2); ``except ValueError, TypeError:`` is a
    PEP 758 list of classes (Python 3.14)."""
    py2 = parse_source("p.py", "try:\n    pass\nexcept ValueError, e:\n    log(e)\n")
    assert py2.parser == "recovered"
    handler = py2.tree.body[0].handlers[0]
    assert handler.name == "e" and isinstance(handler.type, ast.Name)
    py314 = parse_source("q.py", "try:\n    pass\nexcept ValueError, TypeError:\n    pass\n")
    assert py314.parser == "lowered"


def test_code_cut_out_of_a_file():
    """Starts inside a docstring and inside a nested block, ends in the middle of a call."""
    text = (
        "        the rest of a docstring\n"
        '    """\n'
        "            done = True\n"
        "        cmd = request.args['c']\n"
        "    else:\n"
        "        os.system(cmd)\n"
        "def g(p):\n"
        "    return open(request.args['p'] + p).read(\n"
    )
    src = parse_source("cut.py", text)
    assert src.parser == "recovered"
    assert ("CWS078", 6) in _static(text)


def test_dangling_try_and_header_without_body():
    text = "try:\n    x = request.args['x']\n    eval(x)\nz = 1\ndef f():\n"
    assert ("CWS094", 3) in _static(text)


def test_python2_statements_rewritten_line_for_line():
    assert python2_line('    print "a", b,') == '    print("a", b)'
    assert python2_line("print >>sys.stderr, 'x'") == "print('x')"
    assert python2_line("print") == "print()"
    assert python2_line("exec code in ns") == "exec(code)"
    assert python2_line("except (A, B), e:") == "except (A, B) as e:"
    assert python2_line("raise ValueError, 'bad'") == "raise ValueError('bad')"
    assert python2_line("x = 0755 + 10L") == "x = 0o755 + 10"
    assert python2_line("if a <> b: pass") == "if a != b: pass"
    for valid in ("print(x)", "print = log", "exec(code)", "raise E from e", "s = '0755 <>'"):
        assert python2_line(valid) == valid


def test_valid_and_hopeless_files_are_left_alone(monkeypatch):
    assert parse_source("ok.py", "x = 1\n").parser == "native"
    monkeypatch.setattr(recovery, "MAX_CHARS", 100)  # over the size repairs are tried on
    assert parse_recovered("print 'x'\n" * 10, "h.py") is not None
    assert parse_recovered("print 'x'\n" * 11, "h.py") is None
    monkeypatch.undo()
    for text in ("def f(:\n    pass\n", "))))\n", "\x00\x01", "else:\n"):
        src = parse_source("bad.py", text)
        assert src.tree is None and src.parser == "native" and src.error


def test_damaged_files_never_raise_and_keep_their_line_numbers():
    """Mutated fixtures and labelled-style snippets: recovery gives a tree whose every node lies
    inside the file, and every line it read without rewriting is the file's own line."""
    from cwescan.fuzz import engine as fuzz

    seeds = [p.read_bytes() for p in sorted(FIXTURES.glob("*.py"))]
    seeds += [p.read_bytes() for p in sorted((Path(__file__).parent / "fixtures" / "static").glob("*.py"))[:40]]
    recovered = 0
    for text in fuzz.damaged_texts(seeds, 300, seed=1):
        result = parse_recovered(text, "m.py")
        if result is None:
            continue
        recovered += 1
        original = text.split("\n")
        repaired = result.text.split("\n")
        assert len(repaired) == len(original)
        untouched = set(range(1, len(original) + 1)) - set(result.dropped) - set(result.rewritten)
        for node in ast.walk(result.tree):
            if isinstance(node, ast.stmt):
                assert 1 <= node.lineno <= (node.end_lineno or node.lineno) <= len(original)
                if node.lineno in untouched:
                    assert repaired[node.lineno - 1].strip() == original[node.lineno - 1].strip()
    assert recovered >= 100


def test_long_file_is_repaired_piece_by_piece_with_its_own_line_numbers():
    """Past a few hundred lines each repair re-parses one piece, not the file; a broken line in
    one piece does not cost the findings of the others."""
    body = (FIXTURES / "legacy_py2_view.py").read_text()
    lines = "\n".join(body.replace("def ", f"def f{i}_") for i in range(60)).split("\n")
    for n in range(50, len(lines), 300):
        if lines[n].startswith("    ") and "(" not in lines[n]:  # inside a function, not a sink
            lines[n] = "    x = = 1"
    text = "\n".join(lines)
    src = parse_source("long.py", text)
    assert src.parser == "recovered"
    found = StaticDetector().check_source(src)
    sinks = [n for n, line in enumerate(lines, 1) if "check_output(" in line or "db.execute(" in line]
    assert {f.start_line for f in found if f.rule_id in ("CWS078", "CWS089")} == set(sinks)
    assert len(sinks) == 120 and src.repair.dropped
