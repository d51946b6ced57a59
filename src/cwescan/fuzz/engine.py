"""Hostile files for cwescan, and the harness that pushes them through every stage a scan runs.

Generators make files from nothing (random bytes, deep nesting, huge literals, odd encodings);
mutators damage real Python files (the standard library's sources are the seeds). Every case is
a ``(kind, bytes)`` pair, reproducible from ``random.Random(seed)``.

:class:`Harness` runs one file the way ``cwescan scan`` does: ``walk.read_source`` and
``scanner.scan_file`` (reading, parsing, the static detector under the per-file time bound),
then the models' pre-processing on every unit (``codeprep.strip_comments``, the SLM prompt
windows, the encoder token windows). A file must come out either scanned or with a notice that
says why not; anything else (an exception escaping a stage, a detector-error notice, units or
findings pointing outside the file, a stage that never returns) is a crash, saved for
reproduction.
"""

from __future__ import annotations

import os
import random
import sysconfig
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

Case = tuple[str, bytes]
Generator = Callable[[random.Random, list[bytes]], bytes]

# --- seeds ----------------------------------------------------------------------------------

SEED_MAX_BYTES = 16_000  # real files are cut here; the huge generators cover size


def stdlib_seeds(limit: int = 400, rng: random.Random | None = None,
                 max_bytes: int = SEED_MAX_BYTES) -> list[bytes]:
    """Up to ``limit`` real Python files from this interpreter's standard library (sorted, then
    sampled with ``rng`` so a seed value picks the same files on every machine with the same
    Python). Each is cut to ``max_bytes``."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.glob("*.py")) + sorted(root.glob("*/*.py"))
    files = [p for p in files if "site-packages" not in p.parts]
    if rng is not None and len(files) > limit:
        files = sorted(rng.sample(files, limit))
    out = []
    for p in files[:limit]:
        try:
            out.append(p.read_bytes()[:max_bytes])
        except OSError:
            continue
    return out or [b"def f(x):\n    return x\n"]


# A few constructs the stdlib seldom has, so mutations reach them too.
SNIPPETS = [
    b"match command.split():\n    case [\"go\", direction]:\n        move(direction)\n    case _:\n        pass\n",
    b"async def f():\n    async with a as b:\n        async for x in b:\n            yield [y async for y in x]\n",
    b"x = f'{a!r:>{width}} {b:{c}.{d}f} {f\"{e}\"}'\n",
    b"@decorator(arg)\nclass C(Base, metaclass=M):\n    x: int = 1\n    def m(self, /, a, *, b=2, **kw): ...\n",
    b"if (n := len(a)) > 10:\n    print(f\"{n=}\")\n",
    b"lambda *a, **k: (yield)\n",
    b"def f():\n    global g\n    nonlocal_thing = lambda: g\n    del g\n",
    b"try:\n    pass\nexcept* ValueError as eg:\n    pass\n",
    b"import os\nos.system(input())\nimport pickle\npickle.loads(data)\ncursor.execute('SELECT ' + q)\n",
    b"\"\"\"doc\"\"\"\nfrom __future__ import annotations\nprint(*a, sep='', **kw)\n",
]

# --- generators: files from nothing ---------------------------------------------------------


def gen_random_bytes(rng: random.Random, seeds: list[bytes]) -> bytes:
    return rng.randbytes(rng.choice([0, 1, 2, 16, 256, 4096]))


_PY_ALPHABET = "abcdefxyz_0123456789 \t\n()[]{}:;,.=+-*/%<>!&|^~@'\"#\\\f\r"


def gen_python_soup(rng: random.Random, seeds: list[bytes]) -> bytes:
    """Characters Python's tokenizer cares about, in random order."""
    return "".join(rng.choice(_PY_ALPHABET) for _ in range(rng.randint(1, 3000))).encode()


def gen_deep_nesting(rng: random.Random, seeds: list[bytes]) -> bytes:
    depth = rng.choice([50, 99, 100, 101, 200, 1000, 5000, 20000])
    shape = rng.choice(["parens", "brackets", "blocks", "defs", "binop", "calls", "attrs", "lambda", "dicts"])
    if shape == "parens":
        return b"x = " + b"(" * depth + b"1" + b")" * depth + b"\n"
    if shape == "brackets":
        return b"x = " + b"[" * depth + b"]" * depth + b"\n"
    if shape == "dicts":
        return b"x = " + b"{1: " * depth + b"2" + b"}" * depth + b"\n"
    if shape == "blocks":
        depth = min(depth, 200)
        return b"".join(b" " * i + b"if x:\n" for i in range(depth)) + b" " * depth + b"os.system(x)\n"
    if shape == "defs":
        depth = min(depth, 150)
        return b"".join(b"  " * i + b"def f%d(a):\n" % i for i in range(depth)) + b"  " * depth + b"eval(a)\n"
    if shape == "binop":
        return b"q = 'SELECT ' + " + b" + ".join([b"a"] * depth) + b"\ncursor.execute(q)\n"
    if shape == "calls":
        return b"x = " + b"f(" * depth + b"input()" + b")" * depth + b"\n"
    if shape == "attrs":
        return b"x = a" + b".b" * depth + b"(input())\n"
    return b"f = " + b"lambda: " * depth + b"0\n"


def gen_huge_literal(rng: random.Random, seeds: list[bytes]) -> bytes:
    n = rng.choice([10_000, 100_000, 1_000_000, 3_000_000])
    kind = rng.choice(["str", "bytes", "int", "list", "dict", "fstring", "docstring", "comment"])
    if kind == "str":
        return b"x = '" + b"a" * n + b"'\nos.system(x)\n"
    if kind == "bytes":
        return b"x = b'" + b"\\x00" * (n // 4) + b"'\n"
    if kind == "int":
        return b"x = " + b"9" * rng.choice([4300, 4301, 10_000]) + b"\n"
    if kind == "list":
        return b"x = [" + b"1, " * (n // 3) + b"]\n"
    if kind == "dict":
        return b"x = {" + b", ".join(b"%d: %d" % (i, i) for i in range(n // 10)) + b"}\n"
    if kind == "fstring":
        # CPython 3.11 parses f-string placeholders in quadratic time, in C where no timer can
        # interrupt it (3 MB: over an hour); the scan parses such a file in a child process
        # that is killed at --file-timeout (cwescan.scan.parse_guard).
        return b"x = f'" + b"{a}" * (n // 3) + b"'\n"
    if kind == "docstring":
        return b'def f():\n    """' + b"line\n" * (n // 5) + b'"""\n    eval(input())\n'
    return b"# " + b"c" * n + b"\nimport os\n"


def gen_very_long_line(rng: random.Random, seeds: list[bytes]) -> bytes:
    n = rng.choice([5_000, 100_000, 1_000_000])
    return b"def f(a):\n    return " + b"a + " * (n // 4) + b"a\n"


def gen_many_lines(rng: random.Random, seeds: list[bytes]) -> bytes:
    n = rng.choice([10_000, 100_000, 400_000])
    return b"x = 1\n" * n


def gen_many_functions(rng: random.Random, seeds: list[bytes]) -> bytes:
    n = rng.choice([1_000, 10_000, 30_000])
    return b"".join(b"def f%d(a):\n    return eval(a)\n" % i for i in range(n))


def gen_snippet(rng: random.Random, seeds: list[bytes]) -> bytes:
    return b"\n".join(rng.choice(SNIPPETS) for _ in range(rng.randint(1, 5)))


def gen_special_file(rng: random.Random, seeds: list[bytes]) -> bytes:
    return rng.choice([
        b"", b"\n", b" \t\f\r\n", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\0", b"\\", b"\\\n",
        b"'", b'"""', b"#", b"# -*- coding: nonexistent -*-\nx = 1\n",
        b"# coding: utf-16\nx = 1\n", b"\xef\xbb\xbf# coding: latin-1\nx = 1\n",
        b"#!/usr/bin/env python\n", b"\r", b"\r\r\r", b"if x:\n\tpass\n        pass\n",
        b"x = 1\x0c\nif x:\n\x0c    pass\n", b"\x1a", b"x = '\xed\xa0\x80'\n", b"\x00\x00\x00\x01",
        "x = '\u202e' # trojan source\n".encode(), "a\u2028b = 1\n".encode(), "\u00e9t\u00e9 = 1\n".encode(),
        "x = '\\ud800'\n".encode(), "def f():\n\u3000return 1\n".encode(), b"x = 1\x0b\n",
    ])


# --- mutators: damaged real files ----------------------------------------------------------


def mut_truncate(rng: random.Random, seed: bytes) -> bytes:
    return seed[: rng.randint(0, len(seed))]


def mut_bytes(rng: random.Random, seed: bytes) -> bytes:
    """Flip, insert or delete a few random bytes."""
    data = bytearray(seed)
    for _ in range(rng.randint(1, 20)):
        op = rng.choice("fid")
        pos = rng.randint(0, len(data))
        if op == "f" and pos < len(data):
            data[pos] ^= 1 << rng.randint(0, 7)
        elif op == "i":
            data[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif pos < len(data):
            del data[pos : pos + rng.randint(1, 16)]
    return bytes(data)


def mut_splice(rng: random.Random, seed: bytes, other: bytes) -> bytes:
    return seed[: rng.randint(0, len(seed))] + other[rng.randint(0, len(other)) :]


def mut_lines(rng: random.Random, seed: bytes) -> bytes:
    """Delete, duplicate, swap or re-indent whole lines."""
    lines = seed.split(b"\n")
    for _ in range(rng.randint(1, 10)):
        if not lines:
            break
        i = rng.randrange(len(lines))
        op = rng.choice(["del", "dup", "swap", "indent", "dedent"])
        if op == "del":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "indent":
            lines[i] = b" " * rng.randint(1, 9) + lines[i]
        else:
            lines[i] = lines[i].lstrip()
    return b"\n".join(lines)


def mut_line_endings(rng: random.Random, seed: bytes) -> bytes:
    """Each line break becomes \\n, \\r\\n or \\r at random."""
    parts = seed.split(b"\n")
    return b"".join(p + rng.choice([b"\n", b"\r\n", b"\r"]) for p in parts[:-1]) + parts[-1]


def mut_whitespace(rng: random.Random, seed: bytes) -> bytes:
    """Tabs for indentation, form feeds and vertical tabs at line starts, trailing spaces."""
    out = []
    for line in seed.split(b"\n"):
        stripped = line.lstrip(b" ")
        indent = len(line) - len(stripped)
        r = rng.random()
        if r < 0.2 and indent:
            line = b"\t" * (indent // 4) + b" " * (indent % 4) + stripped
        elif r < 0.3:
            line = b"\x0c" + line
        elif r < 0.33:
            line = line + b" \t"
        elif r < 0.35:
            line = b"\x0b" + line
        out.append(line)
    return b"\n".join(out)


def mut_nul(rng: random.Random, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randint(1, 3)):
        data.insert(rng.randint(0, len(data)), 0)
    return bytes(data)


def mut_encoding(rng: random.Random, seed: bytes) -> bytes:
    """The file re-encoded: UTF-16 with BOM, UTF-8 with BOM, Latin-1 with or without a coding
    line, cp1252, or with invalid UTF-8 sequences (lone surrogates, overlongs) inserted."""
    text = seed.decode("utf-8", errors="replace")
    # Latin-1-only characters in a comment so the encodings actually differ
    text = "# caf\u00e9 na\u00efve \u00bd\n" + text
    kind = rng.choice(["utf16", "utf16-nobom", "utf8-bom", "latin1-coding", "latin1-bare",
                       "cp1252-coding", "invalid-utf8", "utf32", "wrong-coding"])
    if kind == "utf16":
        return text.encode("utf-16")
    if kind == "utf16-nobom":
        return text.encode("utf-16-le")
    if kind == "utf32":
        return text.encode("utf-32")
    if kind == "utf8-bom":
        return b"\xef\xbb\xbf" + text.encode("utf-8")
    if kind in ("latin1-coding", "latin1-bare", "cp1252-coding"):
        codec = "cp1252" if kind.startswith("cp") else "latin-1"
        body = text.encode(codec, errors="replace")
        return (f"# -*- coding: {codec} -*-\n".encode() if kind.endswith("coding") else b"") + body
    if kind == "wrong-coding":  # declares UTF-8 but holds Latin-1, or declares ascii
        return rng.choice([b"# coding: utf-8\n", b"# coding: ascii\n"]) + text.encode("latin-1", errors="replace")
    data = bytearray(text.encode("utf-8"))
    for _ in range(rng.randint(1, 5)):
        data[rng.randint(0, len(data)):0] = rng.choice(
            [b"\xed\xa0\x80", b"\xc0\xaf", b"\xff", b"\x80", b"\xf4\x90\x80\x80", b"\xe2\x82"])
    return bytes(data)


def mut_unicode(rng: random.Random, seed: bytes) -> bytes:
    """Unicode that confuses line splitting and display: line/paragraph separators, bidi
    overrides (Trojan Source), zero-width spaces, non-ASCII identifiers, escaped surrogates."""
    text = seed.decode("utf-8", errors="replace")
    specials = ["\u2028", "\u2029", "\u202e", "\u2066", "\u200b", "\ufeff", "\u0085", "\x1c",
                "\u00e9", "\U0001f600", "\\ud800", "\\N{BULLET}", "\u0301"]
    chars = list(text)
    for _ in range(rng.randint(1, 10)):
        chars.insert(rng.randint(0, len(chars)), rng.choice(specials))
    return "".join(chars).encode("utf-8")


def mut_multiply(rng: random.Random, seed: bytes) -> bytes:
    """The file repeated until it is a few MB (near or over the size limit)."""
    if not seed:
        return seed
    target = rng.choice([1_000_000, 4_900_000, 5_100_000])
    return seed * (target // len(seed) + 1)


MUTATORS: dict[str, Callable[[random.Random, bytes], bytes]] = {
    "truncate": mut_truncate,
    "bytes": mut_bytes,
    "lines": mut_lines,
    "line-endings": mut_line_endings,
    "whitespace": mut_whitespace,
    "nul": mut_nul,
    "encoding": mut_encoding,
    "unicode": mut_unicode,
}

GENERATORS: dict[str, Generator] = {
    "random-bytes": gen_random_bytes,
    "python-soup": gen_python_soup,
    "deep-nesting": gen_deep_nesting,
    "huge-literal": gen_huge_literal,
    "long-line": gen_very_long_line,
    "many-lines": gen_many_lines,
    "many-functions": gen_many_functions,
    "snippet": gen_snippet,
    "special": gen_special_file,
}

# Relative frequencies: mutated real files dominate; the expensive huge generators are rare so
# that 10,000 cases run in minutes, not hours.
WEIGHTS = {
    "random-bytes": 4, "python-soup": 4, "deep-nesting": 4, "huge-literal": 0.5, "long-line": 0.5,
    "many-lines": 0.3, "many-functions": 0.3, "snippet": 3, "special": 3,
    "seed": 2, "splice": 3, "multiply": 0.1,
    **{f"mutate:{m}": 6 for m in MUTATORS},
    "mutate:chain": 6,
}


def damaged_texts(seeds: list[bytes], count: int, seed: int = 0,
                  mutators: Sequence[str] = ("truncate", "bytes", "lines", "whitespace", "unicode")) -> Iterator[str]:
    """``count`` texts, each a seed damaged by two of ``mutators``: the input of the parsers'
    property tests (lowering, recovery)."""
    rng = random.Random(seed)
    for _ in range(count):
        data = rng.choice(seeds)
        for name in rng.sample(list(mutators), 2):
            data = MUTATORS[name](rng, data)
        yield data.decode("utf-8", errors="replace")


def generate(rng: random.Random, seeds: list[bytes], weights: dict[str, float] | None = None) -> Case:
    """One fuzz case; ``weights`` (default WEIGHTS) says how often each kind is picked."""
    weights = WEIGHTS if weights is None else weights
    kinds = [k for k in weights if weights[k] > 0]
    kind = rng.choices(kinds, weights=[weights[k] for k in kinds])[0]
    if kind in GENERATORS:
        return kind, GENERATORS[kind](rng, seeds)
    seed = rng.choice(seeds)
    if kind == "seed":
        return kind, seed
    if kind == "splice":
        return kind, mut_splice(rng, seed, rng.choice(seeds + [s for s in SNIPPETS]))
    if kind == "multiply":
        return kind, mut_multiply(rng, seed)
    if kind == "mutate:chain":  # several mutations in a row
        names = rng.sample(sorted(MUTATORS), rng.randint(2, 4))
        data = seed
        for name in names:
            data = MUTATORS[name](rng, data)
        return "mutate:" + "+".join(names), data
    name = kind.split(":", 1)[1]
    return kind, MUTATORS[name](rng, seed)


def case_at(seed: int, index: int, seeds: list[bytes]) -> Case:
    """Case ``index`` of the run with ``seed``: depends only on the two (and the seed files)."""
    return generate(random.Random(f"{seed}:{index}"), seeds)


def cases(count: int, seed: int = 0, seeds: list[bytes] | None = None):
    """``count`` reproducible cases."""
    seeds = seeds if seeds is not None else stdlib_seeds(rng=random.Random(seed))
    for i in range(count):
        yield case_at(seed, i, seeds)


# --- the harness ----------------------------------------------------------------------------


@dataclass
class Outcome:
    """What happened to one file."""

    name: str
    kind: str
    size: int
    scanned: bool
    reasons: list[str]  # notice reasons (why skipped, or partly scanned)
    units: int = 0
    windows: int = 0  # model windows built (SLM prompts + encoder windows)
    findings: int = 0
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    crash: str | None = None  # "stage: traceback" when something went wrong


class Harness:
    """Runs files through reading, parsing, the static detector and the models' pre-processing.

    ``slm_builder``: a ``cwescan.ml.slm.prompt.PromptBuilder`` (or None to skip that stage);
    ``encoder_tokenizer``: a ``tokenizers.Tokenizer`` for ``cwescan.ml.encoder.windows`` (or None).
    """

    def __init__(self, detectors: list, slm_builder=None, encoder_tokenizer=None,
                 file_timeout: float = 20.0, max_file_size: int | None = None):
        from cwescan.scan.walk import DEFAULT_MAX_FILE_SIZE

        self.detectors = detectors
        self.slm_builder = slm_builder
        self.encoder_tokenizer = encoder_tokenizer
        self.file_timeout = file_timeout
        self.max_file_size = max_file_size or DEFAULT_MAX_FILE_SIZE

    def run_file(self, path: Path, relpath: str, kind: str = "") -> Outcome:
        from cwescan.scan.file_budget import FileBudget
        from cwescan.scan.model_budget import within_budget
        from cwescan.scan.limits import FileTimeout, time_limit
        from cwescan.scan.pipeline import scan_file
        from cwescan.scan.walk import Candidate

        t0 = time.perf_counter()
        budget = FileBudget(self.file_timeout)  # one --file-timeout for all stages of the file
        size = path.stat().st_size if path.exists() else 0
        out = Outcome(relpath, kind, size, scanned=False, reasons=[])
        stage = "scan_file"
        try:
            result = scan_file(Candidate(path, relpath), self.detectors, self.max_file_size,
                               self.file_timeout, keep_source=True)
            out.stage_seconds["scan_file"] = time.perf_counter() - t0
            out.scanned = result.scanned
            out.reasons = [n.reason for n in result.notices]
            out.findings = len(result.findings)
            bugs = [n.message for n in result.notices if n.reason == "detector-error"]
            if bugs:
                raise AssertionError("detector-error notice: " + "; ".join(bugs))
            if not out.scanned and not out.reasons:
                raise AssertionError("file neither scanned nor reported with a reason")
            src = result.source
            if result.text is None or src is None:
                return self._done(out, t0)
            stage = "invariants"
            _check_invariants(src, result.findings)
            out.units = len(src.units)
            # the models' pre-processing, as the scanner's model stage feeds it
            units, left_out = within_budget([u for u in src.units if u.code.strip()])
            if left_out:
                out.reasons.append("model-budget")
            stripped: dict[int, str] = {}  # id(unit) -> code without comments, made once

            def strip(unit) -> int:
                from cwescan.ml.codeprep import strip_comments

                stripped[id(unit)] = strip_comments(unit.code)
                if stripped[id(unit)].count("\n") != unit.code.count("\n"):
                    raise AssertionError("strip_comments changed the number of lines")
                return 0

            def encoder(unit) -> int:
                return self._encoder_windows(unit, stripped.get(id(unit)))

            for stage, fn in (("strip_comments", strip),
                              ("slm_prompt", self._slm_windows),
                              ("encoder_windows", encoder)):
                t = time.perf_counter()
                if budget.spent():  # not started: its tokenizer calls could not be stopped
                    out.reasons.append(f"timeout:{stage}")
                    continue
                try:
                    with time_limit(budget.left()):
                        out.windows += sum(fn(u) for u in units)
                except FileTimeout:
                    out.reasons.append(f"timeout:{stage}")
                out.stage_seconds[stage] = time.perf_counter() - t
        except Exception:  # noqa: BLE001 - every escape is a finding of the fuzzer
            out.crash = f"{stage}: {traceback.format_exc(limit=8)}"
        return self._done(out, t0)

    @staticmethod
    def _done(out: Outcome, t0: float) -> Outcome:
        out.seconds = time.perf_counter() - t0
        return out

    def _slm_windows(self, unit) -> int:
        if self.slm_builder is None:
            return 0
        windows = self.slm_builder.unit_windows(unit)
        if not windows:
            raise AssertionError("SLM prompt builder returned no window for a unit")
        return len(windows)

    def _encoder_windows(self, unit, stripped: str | None = None) -> int:
        """The encoder detector's input: the unit without comments, cut into token windows."""
        if self.encoder_tokenizer is None:
            return 0
        from cwescan.ml.codeprep import strip_comments
        from cwescan.ml.encoder.windows import make_windows

        text = stripped if stripped is not None else strip_comments(unit.code)
        return len(make_windows(self.encoder_tokenizer, text))


def _check_invariants(src, findings) -> None:
    from cwescan.core.units import split_lines

    n = max(1, len(split_lines(src.text)))
    for u in src.units:
        if not (1 <= u.start_line <= u.end_line <= n):
            raise AssertionError(f"unit {u.qualname} spans {u.start_line}-{u.end_line} of {n} lines")
    for f in findings:
        if not (1 <= f.start_line <= n):
            raise AssertionError(f"finding {f.rule_id} at line {f.start_line} of {n} lines")


def write_case(folder: Path, index: int, data: bytes) -> Path:
    path = folder / f"case_{index:06d}.py"
    path.write_bytes(data)
    return path


def save_crash(crash_dir: Path, outcome: Outcome, data: bytes) -> Path:
    crash_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(outcome.name).stem
    (crash_dir / f"{stem}.py").write_bytes(data)
    (crash_dir / f"{stem}.txt").write_text(f"kind: {outcome.kind}\n{outcome.crash}\n", encoding="utf-8")
    return crash_dir / f"{stem}.py"


def default_crash_dir() -> Path:
    return Path(os.environ.get("CWESCAN_FUZZ_CRASHES", "fuzz-crashes"))
