"""SLM instruction format: windowing keeps every line, answers tokenise piece by piece, recipes parse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cwescan.ml.slm import prompt as P
from cwescan.train.slm import RecipeError, SLMRecipe, load_recipe, record_units
from cwescan.data.records import Record
from cwescan.core.units import parse_source

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    from cwescan.ml.slm.base import locate_gguf

    gguf = locate_gguf("smollm2-135m")
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def shown_lines(prompt: str) -> list[int]:
    code = prompt.split("Code:\n", 1)[1].split(P.ASSISTANT_START)[0]
    return [int(row.split("|", 1)[0]) for row in code.split("\n") if "|" in row]


def test_short_unit_is_one_window_with_numbered_lines(tok):
    b = P.PromptBuilder(tok)
    [w] = b.windows("def f(x):\n    return eval(x)\n")
    assert (w.first_line, w.last_line, w.truncated) == (1, 2, False)
    assert "   1| def f(x):\n   2|     return eval(x)" in w.prompt
    assert w.prompt.startswith(P.USER_START) and w.prompt.endswith(P.ASSISTANT_START)


def test_long_unit_windows_cover_every_line(tok):
    code = "\n".join(f"value_{i} = compute('{'x' * (i % 17)}', {i})" for i in range(1, 401))
    b = P.PromptBuilder(tok, P.PromptOptions(max_tokens=256, overlap_lines=3))
    ws = b.windows(code)
    assert len(ws) > 5
    seen = set()
    for w in ws:
        lines = shown_lines(w.prompt)
        assert lines == list(range(w.first_line, w.last_line + 1))
        assert len(tok.encode(w.prompt, add_special_tokens=False)) <= 256
        seen.update(lines)
    assert seen == set(range(1, 401))  # no line dropped
    assert all(a.last_line >= b.first_line for a, b in zip(ws, ws[1:]))  # windows overlap or touch
    assert not any(w.truncated for w in ws)


def test_focus_keeps_only_the_windows_that_hold_a_focus_line(tok):
    code = "\n".join(f"value_{i} = compute('{'x' * (i % 17)}', {i})" for i in range(1, 401))
    b = P.PromptBuilder(tok, P.PromptOptions(max_tokens=256, overlap_lines=3))
    every = b.windows(code)
    kept = b.windows(code, focus={350})
    assert len(kept) in (1, 2) and all(w.first_line <= 350 <= w.last_line for w in kept)
    assert [w.prompt for w in kept] == [w.prompt for w in every if w.first_line <= 350 <= w.last_line]
    assert b.windows(code, focus={1, 400}) == [every[0], every[-1]]
    # a focus line outside the code keeps every window; a unit of one window is never cut
    assert b.windows(code, focus={9999}) == every
    assert len(b.windows("x = eval(y)\n", focus={7})) == 1


def test_focus_windows_are_centred_on_the_focus_lines_and_within_their_budget(tok):
    code = "\n".join(f"value_{i} = compute('{'x' * (i % 17)}', {i})" for i in range(1, 401))
    b = P.PromptBuilder(tok, P.PromptOptions(max_tokens=512, overlap_lines=3, focus_tokens=240))
    ws = b.windows(code, focus={350, 352, 40})
    assert len(ws) == 2  # 350 and 352 share one window
    for w, line in zip(ws, (40, 350)):
        lines = shown_lines(w.prompt)
        assert lines == list(range(w.first_line, w.last_line + 1))
        assert len(tok.encode(w.prompt, add_special_tokens=False)) <= 240
        assert w.first_line < line < w.last_line  # code on both sides of the sink
        assert abs((line - w.first_line) - (w.last_line - line)) <= 2  # centred
    assert all(w.first_line <= 352 <= w.last_line for w in ws[1:])
    # smaller than the fixed windows that hold the same lines
    fixed = P.PromptBuilder(tok, P.PromptOptions(max_tokens=512, overlap_lines=3)).windows(code, focus={350, 352, 40})
    assert sum(len(tok.encode(w.prompt)) for w in ws) < sum(len(tok.encode(w.prompt)) for w in fixed)
    # a unit of one window is read whole, as without the option
    short = "def f(x):\n    return eval(x)\n"
    assert b.windows(short, focus={2}) == P.PromptBuilder(tok).windows(short, focus={2})


def test_overlong_single_line_is_cut_and_counted(tok):
    code = "a = 1\n" + "b = '" + "z y " * 2000 + "'\nc = 3\n"
    ws = P.PromptBuilder(tok, P.PromptOptions(max_tokens=200)).windows(code)
    assert sum(w.truncated for w in ws) == 1
    assert {ln for w in ws for ln in range(w.first_line, w.last_line + 1)} == {1, 2, 3}


def test_callers_are_added_as_context_when_the_unit_fits(tok):
    src = "def run(q):\n    return db.execute(q)\n\ndef handler(req):\n    return run(req.args['q'])\n"
    f = parse_source("app.py", src)
    run_unit = next(u for u in f.units if u.qualname == "run")
    [w] = P.PromptBuilder(tok).unit_windows(run_unit)
    assert w.callers == 1 and "def handler(req)" in w.prompt
    [w2] = P.PromptBuilder(tok, P.PromptOptions(callers=False)).unit_windows(run_unit)
    assert w2.callers == 0 and "handler" not in w2.prompt


def test_callers_can_be_limited_to_those_that_read_an_untrusted_source(tok):
    from cwescan.scan.triage import reads_source

    src = ("from flask import request\n\ndef run(q):\n    return db.execute(q)\n\n"
           "def handler():\n    return run(request.args['q'])\n\n"
           "def nightly():\n    return run('VACUUM')\n")
    run_unit = next(u for u in parse_source("app.py", src).units if u.qualname == "run")
    [every] = P.PromptBuilder(tok, None, reads_source).unit_windows(run_unit)
    assert every.callers == 2 and "def nightly" in every.prompt
    only = P.PromptBuilder(tok, P.PromptOptions(callers_reading_sources=True), reads_source)
    [w] = only.unit_windows(run_unit)
    assert w.callers == 1 and "def handler" in w.prompt and "nightly" not in w.prompt


def test_hints_name_the_line_and_cwe(tok):
    [w] = P.PromptBuilder(tok).windows("x = 1\ny = eval(x)\n", hints=[P.Hint(2, "CWE-95", "eval")])
    assert "static analysis flagged line 2: CWE-95 eval" in w.prompt and w.hints == 1


def test_answer_pieces_join_into_json(tok):
    vul = "".join(P.answer_pieces(True, "CWE-89", 12))
    assert json.loads(vul) == {"vulnerability": True, "type": "CWE-89", "line_number": 12}
    safe = "".join(P.answer_pieces(False))
    assert json.loads(safe) == {"vulnerability": False, "type": None, "line_number": None}
    enc = P.encode_example(tok, "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n", True, "CWE-89", 3)
    answer = [t for t, y in zip(enc.input_ids, enc.labels) if y != -100]
    assert tok.decode(answer).startswith('{"vulnerability": true, "type": "CWE-89", "line_number": 3}')
    assert enc.labels[0] == -100  # the prompt carries no loss


def test_record_units_label_the_unit_holding_the_line():
    code = "import os\n\ndef safe():\n    return 1\n\ndef bad(cmd):\n    os.system(cmd)\n"
    rec = Record("r1", "t", code, True, ["CWE-78"], [7])
    got = {u.qualname: (pos, cwe, line) for u, pos, cwe, line in record_units(rec)}
    assert got["bad"] == (True, "CWE-78", 2)
    assert got["safe"][0] is False and got["module"][0] is False
    unlabeled = Record("r2", "t", code, True, ["CWE-78"], [])
    got = {u.qualname: (pos, line) for u, pos, _, line in record_units(unlabeled)}
    assert got["bad"] == (True, None) and got["module"] == (False, None)


@pytest.mark.parametrize("path", sorted((ROOT / "recipes").glob("slm-*.yaml")), ids=lambda p: p.name)
def test_every_slm_recipe_parses(path):
    r = load_recipe(path)
    assert r.name == path.stem


def test_recipe_rejects_unknown_and_bad_values(tmp_path):
    with pytest.raises(RecipeError, match="unknown recipe keys: lerning_rate"):
        SLMRecipe.from_dict({"name": "x", "lerning_rate": 0.1})
    with pytest.raises(RecipeError, match="method"):
        SLMRecipe.from_dict({"name": "x", "method": "full"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(RecipeError):
        load_recipe(bad)


def test_unit_prompts_hide_comments_but_keep_line_numbers(tok):
    code = ('def f(x):\n    """Safe: x is validated upstream."""\n'
            '    # nosec: reviewed\n    return eval(x)  # trusted input\n')
    [unit] = [u for u in parse_source("m.py", code).units if u.kind == "function"]
    [w] = P.PromptBuilder(tok).unit_windows(unit)
    assert "validated" not in w.prompt and "reviewed" not in w.prompt and "trusted" not in w.prompt
    # line 3 was only a comment: left out, and line 4 keeps its number
    assert "   4|     return eval(x)" + P.ASSISTANT_START in w.prompt and shown_lines(w.prompt) == [1, 2, 4]
    assert (w.first_line, w.last_line) == (1, 4)
    [kept] = P.PromptBuilder(tok, P.PromptOptions(blank_lines=True)).unit_windows(unit)
    assert shown_lines(kept.prompt) == [1, 2, 3, 4]
    [raw] = P.PromptBuilder(tok, P.PromptOptions(strip_comments=False)).unit_windows(unit)
    assert "# trusted input" in raw.prompt  # adapters trained before the option read comments


def test_windows_built_in_a_process_pool_equal_the_serial_ones(tok):
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    code = ("import os\n\ndef run(cmd):\n    # trusted\n    os.system(cmd)  # nosec\n\n"
            'def handler(req):\n    """Validated upstream."""\n    return run(req.args["q"])\n')
    units = parse_source("m.py", code).units * 20
    serial = P.PromptBuilder(tok).many_unit_windows(units)
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        pooled = P.PromptBuilder(tok).many_unit_windows(units, executor=pool)
    assert [[w.prompt for w in ws] for ws in pooled] == [[w.prompt for w in ws] for ws in serial]
    assert "trusted" not in serial[1][0].prompt and "Validated" not in serial[2][0].prompt


def test_count_memo_stays_bounded_and_correct(tok, monkeypatch):
    """Regression (found by cwescan fuzz): the memo was cleared after deciding which texts it
    already knew, so the next lookup raised KeyError once it passed its bound."""
    monkeypatch.setattr(P, "MEMO_MAX_TEXTS", 5)
    b = P.PromptBuilder(tok)
    texts = [f"line {i}\n" for i in range(8)]
    first = b.counts(texts)
    assert b.counts(texts[:3] + ["new text\n"]) == first[:3] + [len(tok.encode("new text\n", add_special_tokens=False))]


def test_blank_lines_are_left_out_but_every_code_line_is_in_a_window_with_its_number(tok):
    """Blank lines (and those a stripped docstring leaves) cost tokens and say nothing: the model
    reads the other lines under their own numbers, in as many windows as before or fewer, and a
    long unit's focus still picks the window that holds its sink."""
    body = [f"    y{i} = x + {i}\n\n" if i % 3 else f'    """Step {i}.\n\n    More.\n    """\n' for i in range(300)]
    code = "def f(x):\n" + "".join(body) + "    return eval(y299)\n"
    last = code.count("\n")
    options = P.PromptOptions(max_tokens=256, overlap_lines=3)
    sparse = P.PromptBuilder(tok, options).windows(code)
    dense = P.PromptBuilder(tok, P.PromptOptions(max_tokens=256, overlap_lines=3, blank_lines=True)).windows(code)
    assert len(sparse) < len(dense)
    shown = sorted({n for w in sparse for n in shown_lines(w.prompt)})
    lines = code.split("\n")
    assert shown == [n for n in range(1, last + 1) if lines[n - 1].strip()]
    for w in sparse:
        rows = shown_lines(w.prompt)
        assert (w.first_line, w.last_line) == (rows[0], rows[-1])
        assert all(f"{n:>4}| {lines[n - 1]}" in w.prompt for n in rows)
    [window] = P.PromptBuilder(tok, options).windows(code, focus={last})
    assert last in shown_lines(window.prompt)
    centred = P.PromptBuilder(tok, P.PromptOptions(max_tokens=256, focus_tokens=160)).windows(code, focus={2, last})
    assert [2 in shown_lines(centred[0].prompt), last in shown_lines(centred[-1].prompt)] == [True, True]
    blank_focus = P.PromptBuilder(tok, P.PromptOptions(max_tokens=256, focus_tokens=160)).windows(code, focus={3})
    assert shown_lines(blank_focus[0].prompt)[0] <= 4 <= shown_lines(blank_focus[0].prompt)[-1]


def test_callers_are_shown_without_their_blank_lines(tok):
    code = ('import os\n\ndef run(cmd):\n    os.system(cmd)\n\n'
            'def handler(req):\n    """Runs it.\n\n    Twice.\n    """\n\n    return run(req.args["q"])\n')
    run_unit = next(u for u in parse_source("m.py", code).units if u.qualname == "run")
    [w] = P.PromptBuilder(tok).unit_windows(run_unit)
    context = w.prompt.split("Callers of this function (context only, not judged):\n", 1)[1].split("Code:\n")[0]
    assert context == 'def handler(req):\n    ""\n    return run(req.args["q"])\n'
