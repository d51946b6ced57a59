"""Short form of the fuzz suite (the long form is `cwescan fuzz --count 10000`): hypothesis
drives generated and mutated files through reading, parsing, the static detector and the
models' pre-processing; nothing may crash and every file is scanned or reported with a reason."""

import ast
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cwescan.fuzz import engine as fuzz
from cwescan.cli import app
from cwescan.ml.codeprep import strip_comments
from cwescan.evaluate.perturb import PERTURBATIONS
from cwescan.cli.fuzz import build_harness

# Small seeds keep each example fast; the long form mutates whole files (up to 64 KB).
SEEDS = fuzz.stdlib_seeds(limit=60, rng=random.Random(0), max_bytes=6000)
# A short per-stage bound: a pathological case is then reported as a timeout within seconds.
HARNESS, NOTES = build_harness(file_timeout=5.0, seeds=SEEDS, quiet=True)
# Kinds that make megabyte files: exercised once each below, not hundreds of times.
HEAVY = {"huge-literal", "long-line", "many-lines", "many-functions", "multiply"}
LIGHT_KINDS = [k for k in fuzz.WEIGHTS if k not in HEAVY]
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _run_bytes(data: bytes, kind: str = "") -> fuzz.Outcome:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "case.py"
        path.write_bytes(data)
        out = HARNESS.run_file(path, "case.py", kind)
    assert out.crash is None, out.crash
    assert out.scanned or out.reasons, "neither scanned nor reported with a reason"
    return out


def _light_case(rng: random.Random) -> fuzz.Case:
    return fuzz.generate(rng, SEEDS, weights={k: 1 for k in LIGHT_KINDS})


def test_harness_runs_every_stage():
    out = _run_bytes(b"import os\ndef f(cmd):\n    # run it\n    os.system(cmd)\n")
    assert out.scanned and out.units >= 1
    assert set(out.stage_seconds) >= {"scan_file", "strip_comments", "slm_prompt", "encoder_windows"}
    assert out.windows >= 2, NOTES  # SLM prompts and encoder windows were built


@FAST
@given(st.binary(max_size=3000))
def test_random_bytes(data):
    _run_bytes(data, "hypothesis-bytes")


@FAST
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=2000))
def test_random_text(text):
    _run_bytes(text.encode("utf-8"), "hypothesis-text")


@FAST
@given(st.randoms(use_true_random=False))
def test_generated_and_mutated_files(rng):
    kind, data = _light_case(rng)
    _run_bytes(data, kind)


@pytest.mark.parametrize("kind", sorted(HEAVY - {"multiply"}))
def test_heavy_generators_once(kind):
    data = fuzz.GENERATORS[kind](random.Random(1), SEEDS)
    _run_bytes(data, kind)


def test_oversized_file_is_reported_not_read():
    data = fuzz.mut_multiply(random.Random(0), SEEDS[0])
    while len(data) <= 5_000_000:
        data += SEEDS[0]
    out = _run_bytes(data, "multiply")
    assert not out.scanned and out.reasons == ["too-large"]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=600))
def test_strip_comments_keeps_lines_and_never_raises(text):
    out = strip_comments(text)
    assert out.count("\n") == text.count("\n")


@FAST
@given(st.randoms(use_true_random=False))
def test_perturbations_never_raise_and_always_parse(rng):
    code = fuzz.mut_lines(rng, rng.choice(SEEDS)).decode("utf-8", errors="replace")
    for kind, fn in PERTURBATIONS.items():
        out = fn(code)
        if out is not None:
            ast.parse(out)


def test_cli_short_form(tmp_path):
    result = CliRunner().invoke(app, ["fuzz", "--count", "40", "--seed", "3", "--quiet",
                                      "--crash-dir", str(tmp_path / "crashes")])
    assert result.exit_code == 0, result.output
    assert "crashes                  0" in result.output
    assert "files                    41" in result.output  # 40 cases + the canary file
    assert not (tmp_path / "crashes").exists()


def test_cli_saves_crashing_inputs(tmp_path, monkeypatch):
    """A stage that raises is counted as a crash and its input is kept for reproduction."""
    import cwescan.ml.codeprep as codeprep

    def broken(code, docstrings=True):
        raise RuntimeError("boom in pre-processing")

    monkeypatch.setattr(codeprep, "strip_comments", broken)
    result = CliRunner().invoke(app, ["fuzz", "--count", "5", "--seed", "1", "--quiet",
                                      "--crash-dir", str(tmp_path / "crashes")])
    assert result.exit_code == 1
    saved = sorted((tmp_path / "crashes").glob("*.txt"))
    assert saved and "boom in pre-processing" in saved[0].read_text()


def test_shards_cover_every_case_once(tmp_path):
    """--jobs N runs shard k of N in each process; together they run each case exactly once."""
    from cwescan.cli.fuzz import merge_summaries, run_fuzz

    parts = [run_fuzz(7, 5, 0.0, 5.0, tmp_path / "crashes", quiet=True, shard=k, shards=2) for k in range(2)]
    assert [p["cases"] for p in parts] == [4, 3]
    merged = merge_summaries(parts, seconds=1.0)
    assert merged["cases"] == 7 and merged["files"] == 9  # one canary per shard
    assert merged["crashes"] == 0
    assert sum(merged["kinds"].values()) == 9


def test_many_functions_do_not_stall_model_preprocessing(tmp_path):
    """Regression (found by cwescan fuzz): SLM prompts looked up each function's callers by
    walking every other function, so 3,000 small functions took minutes."""
    data = b"".join(b"def f%d(a):\n    return f%d(a)\n" % (i, i + 1) for i in range(3000))
    path = tmp_path / "many.py"
    path.write_bytes(data)
    harness, _ = build_harness(file_timeout=20.0, seeds=SEEDS, quiet=True)
    out = harness.run_file(path, "many.py", "many-functions")
    assert out.crash is None and out.units == 3000
    assert not [r for r in out.reasons if r.startswith("timeout")], out.stage_seconds
