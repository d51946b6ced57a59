"""The SLM's instruction format: what the model reads and the answer it is trained to write.

Prompt (ChatML, the format SmolLM2-Instruct was tuned with)::

    <|im_start|>user
    {INSTRUCTION}
    [Callers of this function (context only, not judged):
    ...code of callers in the same file...]
    [Static analysis hints:
    static analysis flagged line 12: CWE-89 SQL injection]
    Code:
       1| def f(x):
       2|     ...
    <|im_end|>
    <|im_start|>assistant
    {"vulnerability": true, "type": "CWE-89", "line_number": 2}<|im_end|>

Line numbers are 1-based within the unit (a window keeps the unit's numbering). The trained
answer stops after ``line_number``: ``confidence`` is not generated but filled in from the
model's own P(vulnerable) (see ``infer.py``), because a confidence the model writes as text is
not calibrated and costs extra decoding steps.

The answer is tokenised *piece by piece* (fixed template pieces and slot values separately), so
that training targets and constrained decoding see exactly the same token boundaries.

Windowing: a unit whose numbered code does not fit the token budget is split into overlapping
windows of whole lines, so no line is dropped; a single line longer than a whole window is cut
(and counted as a truncation). Given *focus* lines (where the unit calls a sink, reads a source
or a rule fired), only the windows holding one of them are kept: a window without any of them is
code triage would not have sent to the model had it been a unit of its own, and long functions
were most of the model's tokens in a scan (``docs/SCANNING.md``).
"""

from __future__ import annotations

import ast
from bisect import bisect_left
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from cwescan.core import cwe as cwe_catalog
from cwescan.core.astwalk import walk
from cwescan.ml.codeprep import strip_comments
from cwescan.ml.focus import focused
from cwescan.core.units import Unit, model_code, split_lines

INSTRUCTION = (
    "You are a security code reviewer. Decide whether the Python code below contains a security "
    "vulnerability. Answer in JSON with the keys vulnerability (true or false), type (the CWE id, "
    "or null) and line_number (the numbered line of the weakness, or null)."
)

USER_START = "<|im_start|>user\n"
ASSISTANT_START = "<|im_end|>\n<|im_start|>assistant\n"
END = "<|im_end|>"
# what every prompt starts with (its keys and values are computed once: ml/slm/prefix.py)
PROMPT_PREFIX = USER_START + INSTRUCTION + "\n"

# answer template pieces; slots are filled between them
A_OPEN = '{"vulnerability":'
A_TRUE = " true"
A_FALSE = " false"
A_TYPE = ', "type": "CWE-'
A_LINE = '", "line_number": '
A_CLOSE = "}"
A_SAFE_REST = ', "type": null, "line_number": null}'


@dataclass
class Window:
    """One prompt for (part of) one unit."""

    prompt: str
    first_line: int  # unit-relative line numbers shown in this window
    last_line: int
    truncated: bool = False  # a line longer than the whole budget was cut
    callers: int = 0  # caller functions included as context
    hints: int = 0


@dataclass
class PromptOptions:
    max_tokens: int = 1024  # whole prompt + answer budget per window
    answer_reserve: int = 40  # tokens kept free for the answer
    overlap_lines: int = 4  # lines repeated between consecutive windows
    callers: bool = True  # add callers from the same file when the unit fits
    caller_tokens: int = 384  # at most this many tokens of caller code
    # Comments and docstrings are prose an attacker writes freely ("# input is validated"):
    # the model reads code with them blanked (codeprep.strip_comments keeps line numbers).
    # Stored in the adapter's card; adapters trained before this option read comments.
    strip_comments: bool = True
    # A unit longer than one window is read only in the windows that hold a line where it calls a
    # sink, reads a source or a rule fired (its *focus*; see ``PromptBuilder.windows``). Not stored
    # in cards: it is how the scan reads a unit, not what the adapter learned.
    focus: bool = True
    # With focus, a long unit's windows are cut around its focus lines, each centred on one and at
    # most this many tokens (the prompt with its overhead), instead of the fixed overlapping
    # windows that hold one (None). Not stored in cards either.
    focus_tokens: int | None = None
    # Blank lines of the numbered code, those a stripped docstring or comment leaves among them,
    # are shown (True) or left out (False, the default): every shown line keeps its number, so
    # a gap says where lines were. On the 1,000-file benchmark tree they were 13 % of the SLM's
    # tokens (docs/SCANNING.md). Training builds its prompts with the same default and records it
    # in the card's ``prompt``; a card without it (an adapter trained with blank lines shown) is
    # read without them, which scored the same on the realistic mix.
    blank_lines: bool = False
    # Line numbers are right-aligned in this many characters ("   7| x = 1"), as the adapters were
    # trained; the padding costs the SmolLM2 tokenizer one or two tokens a line. A measurement
    # knob (``cwescan eval-mix --number-width``): a narrower format needs an adapter trained on it.
    number_width: int = 4
    # Callers only when they read an untrusted source themselves (what they hand the unit may be
    # tainted); others are left out of the prompt. Needs the builder's ``reads_source``. Not stored
    # in cards: the adapters were trained with every caller that fits.
    callers_reading_sources: bool = False


class Row(NamedTuple):
    """A line of a unit as the model reads it: its number in the unit and its numbered text."""

    number: int
    text: str


@dataclass
class Hint:
    line: int  # unit-relative
    cwe: str
    title: str = ""


@dataclass
class Encoded:
    """Token ids of one training example."""

    input_ids: list[int]
    labels: list[int]  # -100 outside the answer
    meta: dict = field(default_factory=dict)


def numbered(lines: Sequence[str], first: int, width: int = 4) -> list[str]:
    return [f"{first + i:>{width}}| {line}" for i, line in enumerate(lines)]


def hint_text(hints: Sequence[Hint]) -> str:
    if not hints:
        return ""
    rows = [f"static analysis flagged line {h.line}: {h.cwe} {h.title or cwe_catalog.name(h.cwe)}" for h in hints]
    return "Static analysis hints:\n" + "\n".join(rows) + "\n"


def _called_name(call: ast.Call) -> str | None:
    f = call.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute):
        return f.attr
    return None


def _callers_by_name(file) -> dict[str, list[Unit]]:
    """Called name -> function units of ``file`` that call it, in file order. Built once per
    file: asking every unit for its callers by walking every other unit was quadratic, and a
    hostile file of many small functions stalled the scan (found by `cwescan fuzz`)."""
    index = file.__dict__.get("_callers_by_name")
    if index is None:
        index = {}
        for other in file.units:
            if other.kind != "function" or other.node is None:
                continue
            called = {_called_name(n) for n in walk(other.node) if isinstance(n, ast.Call)}
            for name in called - {None}:
                index.setdefault(name, []).append(other)
        file.__dict__["_callers_by_name"] = index
    return index


def callers_of(unit: Unit) -> list[Unit]:
    """Other function units of the same file that call this unit's function by name."""
    if unit.kind != "function":
        return []
    name = unit.qualname.split(".")[-1]
    return [other for other in _callers_by_name(unit.file).get(name, ()) if other is not unit]


MEMO_MAX_TEXTS = 200_000  # token counts remembered per builder


class PromptBuilder:
    def __init__(self, tokenizer, options: PromptOptions | None = None,
                 reads_source: Callable[[Unit], bool] | None = None) -> None:
        self.tok = tokenizer
        self.opt = options or PromptOptions()
        self.reads_source = reads_source  # for ``callers_reading_sources`` (the scan's triage knows)
        self._counts: dict[str, int] = {}
        self.overhead = self.count(USER_START + INSTRUCTION + "\nCode:\n" + ASSISTANT_START) + self.opt.answer_reserve

    def count(self, text: str) -> int:
        return self.counts([text])[0]

    def counts(self, texts: Sequence[str]) -> list[int]:
        """Token counts, as ``len(tokenizer.encode(t, add_special_tokens=False))``, of many texts
        in one call of the fast tokenizer (the Python wrapper's per-call overhead dominated prompt
        building), memoised: twins, callers and blank lines repeat."""
        memo = self._counts
        if len(memo) > MEMO_MAX_TEXTS:  # bounded; cleared before deciding what is known
            memo.clear()
        todo = list(dict.fromkeys(t for t in texts if t not in memo))
        if todo:
            backend = getattr(self.tok, "backend_tokenizer", None)
            if backend is not None:
                batch = getattr(backend, "encode_batch_fast", None) or backend.encode_batch
                found = [len(e.ids) for e in batch(todo, add_special_tokens=False)]
            else:
                found = [len(self.tok.encode(t, add_special_tokens=False)) for t in todo]
            memo.update(zip(todo, found, strict=True))
        return [memo[t] for t in texts]

    def _prompt(self, code_lines: list[str], context: str, hints: str) -> str:
        return PROMPT_PREFIX + context + hints + "Code:\n" + "\n".join(code_lines) + ASSISTANT_START

    def windows(self, code: str, hints: Sequence[Hint] = (), callers: Sequence[str] = (),
                focus: Collection[int] = ()) -> list[Window]:
        """Prompts covering every line of ``code`` (unit-relative numbering); when it takes more
        than one window and ``focus`` (unit-relative lines) is given, only the windows that hold
        a focus line (all of them when none does)."""
        rows = self.rows(code)
        costs = self.counts([r.text + "\n" for r in rows])
        budget = max(16, self.opt.max_tokens - self.overhead)
        if sum(costs) <= budget:
            return [self._whole_window(rows, sum(costs), budget, hints, callers)]
        if focus and self.opt.focus_tokens:
            centred = self._focus_windows(rows, costs, hints, focus)
            if centred:
                return centred
        return focused(self._tiled_windows(rows, costs, budget, hints), focus)

    def rows(self, code: str) -> list[Row]:
        """The numbered lines of ``code`` the model reads (blank ones only with ``blank_lines``)."""
        lines = split_lines(code) or [""]
        width = self.opt.number_width
        shown = [Row(n, text) for n, text in zip(range(1, len(lines) + 1), numbered(lines, 1, width), strict=True)
                 if self.opt.blank_lines or lines[n - 1].strip()]
        return shown or [Row(1, numbered(lines[:1], 1, width)[0])]

    def _context_code(self, caller: str) -> str:
        return caller if self.opt.blank_lines else "\n".join(x for x in caller.split("\n") if x.strip())

    def _whole_window(self, rows: list[Row], total: int, budget: int, hints: Sequence[Hint],
                      callers: Sequence[str]) -> Window:
        """The one window of a unit that fits, with its hints and as many callers as fit."""
        hint_block = hint_text(hints)
        room = budget - total - self.count(hint_block)
        if room < 0:
            hint_block, room = "", budget - total
        context, used = "", 0
        if self.opt.callers and callers:
            parts = []
            for c in map(self._context_code, callers):
                n = self.count(c + "\n")
                if used + n > min(room, self.opt.caller_tokens):
                    continue
                parts.append(c)
                used += n
            if parts:
                context = "Callers of this function (context only, not judged):\n" + "\n".join(parts) + "\n"
        return Window(self._prompt([r.text for r in rows], context, hint_block), 1, rows[-1].number,
                      callers=len(parts) if context else 0, hints=len(hints) if hint_block else 0)

    def _cut_row(self, row: Row, budget: int) -> Row:
        """A line longer than a whole window's budget, cut to fit it (counted as a truncation)."""
        return Row(row.number, self.tok.decode(self.tok.encode(row.text, add_special_tokens=False)[: budget - 2]))

    def _part_window(self, window_rows: list[Row], used: int, budget: int, hints: Sequence[Hint],
                     truncated: bool = False) -> Window:
        """A window of some rows of a longer unit, ``used`` tokens of code, with the hints on
        its lines when they fit too."""
        first, last = window_rows[0].number, window_rows[-1].number
        in_window = [h for h in hints if first <= h.line <= last]
        hint_block = hint_text(in_window)
        if self.count(hint_block) + used > budget:
            hint_block, in_window = "", []
        return Window(self._prompt([r.text for r in window_rows], "", hint_block), first, last, truncated,
                      hints=len(in_window))

    def _focus_windows(self, rows: list[Row], costs: list[int], hints: Sequence[Hint],
                       focus: Collection[int]) -> list[Window]:
        """Windows of at most ``focus_tokens`` centred on the focus lines of a unit longer than
        one window: each window grows line by line on both sides of the first focus line not yet
        covered, so a sink is read with the code just before and after it."""
        budget = max(16, min(self.opt.max_tokens, self.opt.focus_tokens) - self.overhead)
        out: list[Window] = []
        numbers = [r.number for r in rows]
        covered = 0  # focus lines up to here are in a window
        for line in sorted(x for x in focus if 1 <= x <= numbers[-1]):
            if line <= covered:
                continue
            start = end = bisect_left(numbers, line)  # the row of the line (or the next shown one)
            used = costs[start]
            if used > budget:  # one line longer than the whole budget: cut it
                out.append(self._part_window([self._cut_row(rows[start], budget)], 0, budget, (), True))
                covered = rows[start].number
                continue
            grew = True
            while grew:
                grew = False
                if end + 1 < len(rows) and used + costs[end + 1] <= budget:
                    end += 1
                    used += costs[end]
                    grew = True
                if start > 0 and used + costs[start - 1] <= budget:
                    start -= 1
                    used += costs[start]
                    grew = True
            out.append(self._part_window(rows[start:end + 1], used, budget, hints))
            covered = rows[end].number
        return out

    def _tiled_windows(self, rows: list[Row], costs: list[int], budget: int, hints: Sequence[Hint]) -> list[Window]:
        """Overlapping windows of whole lines covering a unit longer than one window."""
        out: list[Window] = []
        start = 0
        while start < len(rows):
            end, used, truncated = start, 0, False
            while end < len(rows) and used + costs[end] <= budget:
                used += costs[end]
                end += 1
            if end == start:  # one line longer than the whole budget: cut it
                window_rows = [self._cut_row(rows[start], budget)]
                end, truncated = start + 1, True
            else:
                window_rows = rows[start:end]
            out.append(self._part_window(window_rows, used, budget, hints, truncated))
            if end >= len(rows):
                break
            start = max(start + 1, end - self.opt.overlap_lines)
        return out

    def _unit_text(self, unit: Unit) -> tuple[str, list[str]]:
        """(code, callers' code) of a unit as the model reads them."""
        return self._prepare(self._raw_text(unit))

    def _raw_text(self, unit: Unit) -> tuple[str, list[str]]:
        if not self.opt.callers:
            return model_code(unit), []
        callers = callers_of(unit)
        if self.opt.callers_reading_sources and self.reads_source is not None:
            callers = [c for c in callers if self.reads_source(c)]
        return model_code(unit), [model_code(c) for c in callers]

    def _prepare(self, text: tuple[str, list[str]]) -> tuple[str, list[str]]:
        return strip_text(text) if self.opt.strip_comments else text

    def unit_windows(self, unit: Unit, hints: Sequence[Hint] = (), focus: Collection[int] = ()) -> list[Window]:
        code, callers = self._unit_text(unit)
        return self.windows(code, hints, callers, focus)

    def many_unit_windows(
        self, units: Sequence[Unit], hints: Sequence[Sequence[Hint]] | None = None, executor=None,
        focus: Sequence[Collection[int]] | None = None,
    ) -> list[list[Window]]:
        """``unit_windows`` of many units: the same windows, but every line (and caller) is
        counted first in one batch call of the fast tokenizer, which spreads it over all cores
        (one call per unit left the host the bottleneck of a GPU scan). ``executor`` (e.g. a
        process pool) strips comments in parallel: Python's tokenize is the largest host cost
        per unit left (0.3 ms; an H100's eager forward pass takes ~0.8 ms a unit)."""
        raw = [self._raw_text(u) for u in units]
        if self.opt.strip_comments and executor is not None:
            texts = list(executor.map(strip_text, raw, chunksize=max(1, min(64, len(raw) // 32))))
        else:
            texts = [self._prepare(t) for t in raw]
        self.counts([r.text + "\n" for code, _ in texts for r in self.rows(code)]
                    + [self._context_code(c) + "\n" for _, callers in texts for c in callers])
        hints = hints if hints is not None else [()] * len(units)
        focus = focus if focus is not None else [()] * len(units)
        return [self.windows(code, hs, callers, fs)
                for (code, callers), hs, fs in zip(texts, hints, focus, strict=True)]


def strip_text(text: tuple[str, list[str]]) -> tuple[str, list[str]]:
    """``strip_comments`` of a unit's code and its callers' code (a top-level function, so a
    process pool can run it)."""
    code, callers = text
    return strip_comments(code), [strip_comments(c) for c in callers]


def answer_pieces(vulnerable: bool, cwe: str | None = None, line: int | None = None) -> list[str]:
    """The answer as template pieces and slot values, in order."""
    if not vulnerable:
        return [A_OPEN, A_FALSE, A_SAFE_REST]
    digits = cwe_catalog.normalize(cwe).split("-", 1)[1] if cwe else "20"  # CWE-20: improper input validation
    return [A_OPEN, A_TRUE, A_TYPE, digits, A_LINE, str(line if line else 1), A_CLOSE]


def encode_pieces(tokenizer, pieces: Sequence[str]) -> list[int]:
    ids: list[int] = []
    for p in pieces:
        ids.extend(tokenizer.encode(p, add_special_tokens=False))
    return ids


def encode_example(tokenizer, prompt: str, vulnerable: bool, cwe: str | None, line: int | None) -> Encoded:
    """Prompt + answer ids, with the loss masked to the answer (and its end token)."""
    p = tokenizer.encode(prompt, add_special_tokens=False)
    a = encode_pieces(tokenizer, answer_pieces(vulnerable, cwe, line)) + tokenizer.encode(END, add_special_tokens=False)
    return Encoded(p + a, [-100] * len(p) + a)


def answer_json(vulnerable: bool, cwe: str | None, line: int | None, confidence: float) -> dict:
    return {
        "vulnerability": bool(vulnerable),
        "type": cwe if vulnerable else None,
        "line_number": line if vulnerable else None,
        "confidence": round(float(confidence), 4),
    }
