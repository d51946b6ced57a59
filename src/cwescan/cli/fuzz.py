"""`cwescan fuzz`: push thousands of hostile files through every stage of a scan.

Cases come from :mod:`cwescan.fuzz.engine`. They are written in batches into a temporary folder,
found again by ``walk.discover`` (walking), then each goes through reading, parsing, the static
detector and the models' pre-processing (:class:`cwescan.fuzz.Harness`). Some files in each
batch would write a canary file if anything ever executed them; the canary must never appear.

Exit code 0 when nothing crashed, 1 otherwise (crashing inputs are saved for reproduction).
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import typer

BATCH = 100


def _err(msg: str) -> None:
    typer.echo(msg, err=True)


def build_harness(file_timeout: float, seeds: list[bytes], quiet: bool = False):
    """The harness with the static detector and the models' tokenizers: the shipped ones when
    present, else ones built here from the seed files (pre-processing is the same code)."""
    from cwescan.fuzz.engine import Harness

    detectors, notes = [], []
    try:
        from cwescan.detectors import create

        detectors.append(create("static"))
    except Exception as e:  # noqa: BLE001 - say so and fuzz the rest
        notes.append(f"static detector not available ({type(e).__name__}: {e})")
    slm_builder, slm_note = _slm_builder(seeds)
    enc_tok, enc_note = _encoder_tokenizer(seeds)
    notes += [n for n in (slm_note, enc_note) if n]
    if not quiet:
        for n in notes:
            _err(f"note: {n}")
    return Harness(detectors, slm_builder=slm_builder, encoder_tokenizer=enc_tok,
                   file_timeout=file_timeout), notes


_BPE_CACHE: dict[int, object] = {}


def _small_bpe(seeds: list[bytes]):
    """A small BPE tokenizer trained on the seed files (cached: training takes seconds)."""
    from cwescan.ml.encoder.tokenizer import train_bpe

    key = hash(tuple(seeds[:100]))
    if key not in _BPE_CACHE:
        _BPE_CACHE[key] = train_bpe((s.decode("utf-8", errors="replace") for s in seeds[:100]), vocab_size=2000)
    return _BPE_CACHE[key]


class _FastTokenizer:
    """The two methods PromptBuilder uses, straight on a ``tokenizers.Tokenizer``: the same
    token counts as the transformers wrapper without its per-call overhead, which dominated
    fuzzing time."""

    def __init__(self, tok):
        self.tok = tok

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.tok.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids)


def _slm_builder(seeds):
    try:
        from cwescan.ml.slm.prompt import PromptBuilder
    except ImportError as e:
        return None, f"SLM prompt builder not available ({e})"
    from cwescan.ml.artifacts import model_dir

    shipped = model_dir("slm")
    try:
        from transformers import PreTrainedTokenizerFast

        if (shipped / "tokenizer.json").is_file():
            tok = PreTrainedTokenizerFast(tokenizer_file=str(shipped / "tokenizer.json"))
            return PromptBuilder(tok), None
        return (PromptBuilder(_FastTokenizer(_small_bpe(seeds))),
                "SLM prompts built with a small BPE tokenizer (no shipped SLM tokenizer)")
    except Exception as e:  # noqa: BLE001
        return None, f"SLM prompt builder could not start ({type(e).__name__}: {e})"


def _encoder_tokenizer(seeds):
    try:
        from cwescan.ml.encoder.tokenizer import load_tokenizer
    except ImportError as e:
        return None, f"encoder windowing not available ({e})"
    from cwescan.ml.artifacts import model_dir

    shipped = model_dir("encoder") / "tokenizer.json"
    try:
        if shipped.is_file():
            return load_tokenizer(shipped), None
        return _small_bpe(seeds), "encoder windows built with a small BPE tokenizer (no shipped encoder)"
    except Exception as e:  # noqa: BLE001
        return None, f"encoder windowing could not start ({type(e).__name__}: {e})"


def canary_case(canary: Path) -> bytes:
    """A file that creates ``canary`` if any of its code ever runs: at import, in a decorator,
    a default argument, a class body, a function body."""
    c = repr(str(canary))
    return (f"import pathlib\npathlib.Path({c}).write_text('module')\n"
            f"def deco(f):\n    pathlib.Path({c}).write_text('decorator')\n    return f\n"
            f"@deco\ndef f(x=pathlib.Path({c}).write_text('default')):\n"
            f"    pathlib.Path({c}).write_text('body')\n"
            f"class C:\n    pathlib.Path({c}).write_text('class')\n"
            f"__import__('os').system('touch ' + {c})\n").encode()


def run_fuzz(count: int, seed: int, time_budget: float, file_timeout: float, crash_dir: Path,
             quiet: bool = False, shard: int = 0, shards: int = 1) -> dict:
    """Run cases ``shard, shard + shards, ...`` below ``count`` (or as many as ``time_budget``
    seconds allow); return the summary. Case i is the same whatever the sharding."""
    # Long on purpose: the fuzz loop and its per-stage crash bookkeeping read best in one piece.
    from cwescan.core.process import peak_rss_mb
    from cwescan.fuzz.engine import case_at, save_crash, stdlib_seeds, write_case
    from cwescan.scan.walk import discover

    seeds = stdlib_seeds(rng=random.Random(seed))
    harness, notes = build_harness(file_timeout, seeds, quiet)
    started = time.monotonic()
    totals: Counter = Counter()
    reasons: Counter = Counter()
    crashes_by_stage: Counter = Counter()
    kinds: Counter = Counter()
    slowest = None
    stage_max: dict[str, tuple[float, str]] = {}
    crash_files: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="cwescan-fuzz-"))
    canary = work / "CANARY"
    indices = list(range(shard, count, shards))
    done = 0
    try:
        while done < len(indices) and (not time_budget or time.monotonic() - started < time_budget):
            folder = work / f"batch{done // BATCH:05d}"
            folder.mkdir()
            batch: dict[str, tuple[str, bytes]] = {}
            for i in indices[done:done + BATCH]:
                kind, data = case_at(seed, i, seeds)
                batch[write_case(folder, i, data).name] = (kind, data)
            (folder / "canary.py").write_bytes(canary_case(canary))
            found, walk_notices = discover([folder], work)
            totals["walked"] += len(found)
            missing = set(batch) - {c.abspath.name for c in found} - {Path(n.path).name for n in walk_notices}
            for name in sorted(missing):  # walking lost a file without saying why
                crashes_by_stage["walk"] += 1
                crash_files.append(str(save_crash_raw(crash_dir, name, batch[name], "walk: file not found")))
            for cand in found:
                kind, data = batch.get(cand.abspath.name, ("canary", b""))
                if cand.abspath.name not in batch:
                    data = cand.abspath.read_bytes()
                out = harness.run_file(cand.abspath, cand.relpath, kind)
                totals["files"] += 1
                kinds[kind.split("+")[0]] += 1
                totals["scanned"] += out.scanned
                totals["skipped_with_reason"] += (not out.scanned) and bool(out.reasons)
                totals["scanned_with_notice"] += out.scanned and any(r != "empty" for r in out.reasons)
                totals["units"] += out.units
                totals["windows"] += out.windows
                totals["findings"] += out.findings
                reasons.update(set(out.reasons))
                if out.crash:
                    crashes_by_stage[out.crash.split(":", 1)[0]] += 1
                    crash_files.append(str(save_crash(crash_dir, out, data)))
                if slowest is None or out.seconds > slowest.seconds:
                    slowest = out
                for st, sec in out.stage_seconds.items():
                    if sec > stage_max.get(st, (0.0, ""))[0]:
                        stage_max[st] = (sec, f"{out.name} ({out.kind}, {out.size:,} B)")
            done = min(len(indices), done + BATCH)
            shutil.rmtree(folder, ignore_errors=True)
            if not quiet:
                _err(f"  {done}/{len(indices)} cases{f' (shard {shard + 1}/{shards})' if shards > 1 else ''}, {sum(crashes_by_stage.values())} crashes, "
                     f"{time.monotonic() - started:.0f} s")
        if canary.exists():
            crashes_by_stage["executed-scanned-code"] += 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "cases": done,
        "files": totals["files"],
        "walked": totals["walked"],
        "scanned": totals["scanned"],
        "scanned_with_notice": totals["scanned_with_notice"],
        "skipped_with_reason": totals["skipped_with_reason"],
        "crashes": sum(crashes_by_stage.values()),
        "crashes_by_stage": dict(crashes_by_stage),
        "crash_files": crash_files,
        "reasons": dict(reasons.most_common()),
        "kinds": dict(sorted(kinds.items())),
        "units": totals["units"],
        "windows": totals["windows"],
        "findings": totals["findings"],
        "slowest": (f"{slowest.name} ({slowest.kind}, {slowest.size:,} B): {slowest.seconds:.2f} s"
                    if slowest else "-"),
        "slowest_seconds": slowest.seconds if slowest else 0.0,
        "stage_max": {k: f"{v[0]:.2f} s  {v[1]}" for k, v in sorted(stage_max.items())},
        "stage_max_raw": stage_max,
        "max_rss_mb": round(peak_rss_mb() or 0.0, 1),
        "seconds": round(time.monotonic() - started, 1),
        "notes": notes,
        "seed": seed,
        "file_timeout": file_timeout,
    }


def run_parallel(count: int, seed: int, time_budget: float, file_timeout: float, crash_dir: Path,
                 jobs: int, quiet: bool = False) -> dict:
    """``run_fuzz`` in ``jobs`` processes (shards of the case indices), merged."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    started = time.monotonic()
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        parts = list(pool.map(run_fuzz, *zip(*[
            (count, seed, time_budget, file_timeout, crash_dir, quiet or k > 0, k, jobs)
            for k in range(jobs)])))
    return merge_summaries(parts, time.monotonic() - started)


def merge_summaries(parts: list[dict], seconds: float) -> dict:
    out = dict(parts[0])
    for key in ("cases", "files", "walked", "scanned", "scanned_with_notice", "skipped_with_reason",
                "crashes", "units", "windows", "findings"):
        out[key] = sum(p[key] for p in parts)
    for key in ("crashes_by_stage", "reasons", "kinds"):
        total: Counter = Counter()
        for p in parts:
            total.update(p[key])
        out[key] = dict(total.most_common())
    out["crash_files"] = [f for p in parts for f in p["crash_files"]]
    slowest = max(parts, key=lambda p: p["slowest_seconds"])
    out["slowest"], out["slowest_seconds"] = slowest["slowest"], slowest["slowest_seconds"]
    stage_max: dict = {}
    for p in parts:
        for k, v in p["stage_max_raw"].items():
            if v[0] > stage_max.get(k, (0.0, ""))[0]:
                stage_max[k] = v
    out["stage_max_raw"] = stage_max
    out["stage_max"] = {k: f"{v[0]:.2f} s  {v[1]}" for k, v in sorted(stage_max.items())}
    out["max_rss_mb"] = max(p["max_rss_mb"] for p in parts)
    out["seconds"] = round(seconds, 1)
    out["jobs"] = len(parts)
    return out


def save_crash_raw(crash_dir: Path, name: str, case: tuple[str, bytes], why: str) -> Path:
    crash_dir.mkdir(parents=True, exist_ok=True)
    (crash_dir / name).write_bytes(case[1])
    (crash_dir / (name + ".txt")).write_text(f"kind: {case[0]}\n{why}\n", encoding="utf-8")
    return crash_dir / name


def summary_table(s: dict) -> str:
    rows = [
        ("files", f"{s['files']:,} ({s['cases']:,} generated + canaries; {s['walked']:,} found by walking)"),
        ("scanned", f"{s['scanned']:,} ({s['scanned_with_notice']:,} of them with a notice: syntax error, too deep, timeout)"),
        ("reported with reason", f"{s['skipped_with_reason']:,} skipped, each with a reason"),
        ("crashes", f"{s['crashes']}" + (f"  {s['crashes_by_stage']}" if s["crashes"] else "")),
        ("slowest file", s["slowest"]),
        ("max RSS", f"{s['max_rss_mb']:,.0f} MB" + (f" (largest of {s['jobs']} processes)" if s.get("jobs", 1) > 1 else "")),
        ("units / model windows", f"{s['units']:,} / {s['windows']:,}"),
        ("time", f"{s['seconds']:,.1f} s (seed {s['seed']}, --file-timeout {s['file_timeout']:g} s)"),
    ]
    rows += [(f"slowest {k}", v) for k, v in s["stage_max"].items()]
    rows += [("reasons", ", ".join(f"{k} {v:,}" for k, v in s["reasons"].items()) or "-")]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    lines += [f"note: {n}" for n in s["notes"]]
    lines += [f"crash input: {p}" for p in s["crash_files"][:20]]
    return "\n".join(lines)


def fuzz_command(
    count: int = typer.Option(1000, "--count", "-n", min=1, help="How many generated files."),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed makes the same files."),
    time_budget: float = typer.Option(0.0, "--time-budget", min=0.0,
                                      help="Stop after this many seconds (0 = run all --count)."),
    file_timeout: float = typer.Option(20.0, "--file-timeout", min=0.0,
                                       help="Per-file, per-stage time bound in seconds (as cwescan scan)."),
    crash_dir: Path = typer.Option(Path("fuzz-crashes"), "--crash-dir",
                                   help="Where crashing inputs are written."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Processes (each runs a share of the cases)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress on stderr."),
) -> None:
    """Feed generated and mutated Python files through walking, reading, parsing, the static
    detector and the models' pre-processing; report crashes (0 expected)."""
    if jobs > 1:
        summary = run_parallel(count, seed, time_budget, file_timeout, crash_dir, jobs, quiet)
    else:
        summary = run_fuzz(count, seed, time_budget, file_timeout, crash_dir, quiet)
    typer.echo(summary_table(summary))
    raise typer.Exit(1 if summary["crashes"] else 0)


def register(app: typer.Typer) -> None:
    app.command("fuzz")(fuzz_command)
