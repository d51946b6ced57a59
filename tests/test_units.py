from cwescan.core.units import parse_source

SRC = '''import os

CONST = 1


class A:
    x = 2

    @staticmethod
    def m(a):
        def inner():
            return a
        return inner


async def f(b):
    return b
'''


def test_units_have_exact_spans_and_module_rest():
    src = parse_source("a.py", SRC)
    by_name = {u.qualname: u for u in src.units}
    assert set(by_name) == {"module", "A.m", "f"}
    m = by_name["A.m"]
    assert (m.start_line, m.end_line) == (9, 13)
    assert m.code.splitlines()[0].strip() == "@staticmethod"
    assert by_name["f"].start_line == 16
    module = by_name["module"]
    assert "import os" in module.code and "return inner" not in module.code
    assert len(module.code.split("\n")) == len(SRC.splitlines())


def test_syntax_error_gives_one_module_unit_and_reason():
    src = parse_source("bad.py", "def f(:\n  pass\n")
    assert src.tree is None and "SyntaxError" in src.error
    assert [u.kind for u in src.units] == ["module"]
