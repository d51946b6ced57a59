"""End-to-end scan benchmark, and what triage costs the SLM in accuracy.

``cwescan bench scan --files 1000``: copies the first N readable UTF-8 ``.py`` files of a folder
(default: this Python's standard library, in the sorted order of ``bench.static.collect``, so
the tree is the same on every run of one Python) into ``<out>/tree``, then scans it twice with
the default detectors, in this process, the way ``cwescan scan`` does:

- cold: an empty result cache at ``<out>/cache``; detectors created (and the model loaded) inside
  the timed span;
- warm: the same tree again with new detector objects and the filled cache.

Each run reports wall seconds (detector creation included), files/s, and the model stage's
counts: units in total, reviewed by the model, cleared by triage, served from the cache; plus
when the model stage started (the static stage's share) and the model's units/s.

``cwescan bench triage``: on the test part of the split (or a deterministic sample of it), the
SLM's record-level recall, precision and F1 with and without triage, and the same for the
scan's union of static and SLM findings. A record's verdict is the detector's (any unit's
P(vulnerable) at or above its threshold); with triage, cleared units cannot flag. Every unit is
scored once (``score`` mode, the detector's default precision) and both verdicts come from the
same scores.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cwescan.bench.static import collect, stdlib_path
from cwescan.core.config import DEFAULT_MIN_CONFIDENCE
from cwescan.core.process import gpu_library_rss_mb, peak_rss_mb, rss_mb


def build_tree(source: Path, files: int, dest: Path) -> list[str]:
    """Copy the first ``files`` readable .py files of ``source`` into ``dest`` (emptied first)."""
    chosen = collect(source, files)
    if dest.exists():
        shutil.rmtree(dest)
    for rel, text in chosen:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return [rel for rel, _ in chosen]


@dataclass
class ScanRun:
    name: str
    wall_s: float
    files: int
    units: int
    reviewed: int
    cleared: int
    cached: int
    findings: int
    create_s: float  # detector creation (model detectors verify their artifact here)
    static_s: float  # from the scan's start to the model stage's start (or the end)
    model_s: float  # model stage: triage, cache look-ups, model load and inference
    detectors: list[str] = field(default_factory=list)
    reasons: dict = field(default_factory=dict)
    peak_rss_mb: float | None = None  # of the benchmark process so far (cumulative over runs)
    cpu_s: float = 0.0  # CPU seconds of this process and its finished workers during the run
    model_cpu_s: float = 0.0  # CPU seconds of the model stage (this process)
    windows: int = 0  # SLM prompt windows of the reviewed units
    scored_windows: int = 0  # windows the model ran on (the rest: identical windows answered once)
    tokens: int = 0  # prompt tokens the model read (after the prefix cache)
    prefix_tokens: int = 0  # prompt tokens served from the prefix cache instead
    prefix_cache: bool = True
    first_stage: str = "encoder"  # the scan's --first-stage
    first_stage_cleared: int = 0  # units the first stage cleared before the SLM
    first_stage_s: float = 0.0  # of the model stage: the first stage's (wall, from the progress reports)
    focus: bool = True  # the models read long units only in the windows around their sinks and sources
    settle: bool = True  # units whose rule findings the encoder settles are not read by the SLM
    settled_units: int = 0  # of them, in this run
    blank_lines: bool | None = None  # the SLM's prompts showed blank lines (None: no SLM)
    # the SLM's share of the model stage, in seconds: its partner's scores, prompt building,
    # scoring passes and decoding (the last two timed on the CPU only), and what those read
    partner_s: float = 0.0
    prompts_s: float = 0.0
    forward_s: float = 0.0
    decode_s: float = 0.0
    decode_steps: int = 0
    padded_tokens: int = 0  # tokens the scoring passes computed, batch padding included
    # resident MB now / peak so far, at the model stage's start (files parsed and triaged), after
    # the first stage, after the SLM's first batch (its model loaded) and at the end: where the
    # peak RSS is reached
    memory: dict = field(default_factory=dict)
    # of the resident set at the end, pages of GPU runtime libraries: a CUDA build of torch maps
    # them even when every model runs on the CPU, a CPU build (what a CPU user installs) does not
    gpu_libraries_mb: float | None = None

    @property
    def files_per_s(self) -> float:
        return self.files / self.wall_s if self.wall_s else 0.0

    @property
    def model_units_per_s(self) -> float | None:
        return self.reviewed / self.model_s if self.reviewed and self.model_s else None

    @property
    def model_units_per_cpu_s(self) -> float | None:
        return self.reviewed / self.model_cpu_s if self.reviewed and self.model_cpu_s else None

    @property
    def tokens_per_unit(self) -> float | None:
        """Prompt tokens a reviewed unit cost: read by the model, and in all (with the prefix)."""
        return self.tokens / self.reviewed if self.reviewed else None

    def to_json(self) -> dict:
        d = asdict(self)
        d["files_per_s"] = round(self.files_per_s, 3)
        d["model_units_per_s"] = None if self.model_units_per_s is None else round(self.model_units_per_s, 3)
        d["model_units_per_cpu_s"] = (None if self.model_units_per_cpu_s is None
                                      else round(self.model_units_per_cpu_s, 4))
        d["tokens_per_unit"] = None if self.tokens_per_unit is None else round(self.tokens_per_unit, 1)
        return d


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its waited-for children."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _detectors(names: list[str], precision: str | None, device: str | None, pair: str, prefix_cache: bool,
               focus: bool, focus_tokens: int | None, settle: bool, blank_lines: bool | None,
               slm_model: str | None = None) -> tuple[list, list]:
    """The scan's detectors, set up as the benchmark run asks, and the SLMs among them."""
    from cwescan.core.pair import partner_name
    from cwescan.detectors import create_detectors
    from cwescan.detectors.base import ModelDetector
    from cwescan.detectors.slm import SLMDetector
    from cwescan.scan.quiet import third_party_quiet

    with third_party_quiet():
        detectors = create_detectors(names, precision, slm_model, device=device, slm_partner=partner_name(pair))
    slm = [d for d in detectors if isinstance(d, SLMDetector)]
    for d in slm:
        d.prefix_cache = prefix_cache
        if blank_lines is not None:  # else as the card says
            d.options.blank_lines = blank_lines
    for d in detectors:
        if isinstance(d, ModelDetector):
            d.set_focus(focus, focus_tokens)
            d.set_settle(settle)
    return detectors, slm


def run_scan(name: str, tree: Path, cache_dir: Path | None, detector_names: list[str] | None,
             precision: str | None, review: str, jobs: int = 0, device: str | None = None,
             prefix_cache: bool = True, first_stage: str = "encoder", pair: str = "encoder",
             focus: bool = True, min_confidence: float = DEFAULT_MIN_CONFIDENCE, settle: bool = True,
             focus_tokens: int | None = None, blank_lines: bool | None = None, slm_model: str | None = None) -> ScanRun:
    from cwescan.scan.cache import ResultCache
    from cwescan.detectors import default_detectors
    from cwescan.scan.pipeline import ScanOptions, scan

    names = detector_names or default_detectors()[0]
    marks: dict[str, float] = {}

    memory: dict[str, list[float | None]] = {}

    def remember(point: str) -> None:
        if point not in memory:
            memory[point] = [_rounded(rss_mb()), _rounded_peak_rss()]

    def progress(stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if stage.endswith((" units", " first stage")) and "model" not in marks:
            marks["model"], marks["model_cpu"] = now, time.process_time()
            remember("model stage start")
        if stage.endswith(" first stage"):  # reported at its start (0 done) and its end
            if done == 0:
                marks["first_stage_start"] = now
            elif "first_stage_start" in marks:
                marks["first_stage_s"] = marks.get("first_stage_s", 0.0) + now - marks.pop("first_stage_start")
                remember("first stage end")
        elif stage.endswith(" units") and "first stage end" in memory:
            # the model's stage reports first what the cache and the first stage settled, then
            # each batch: the first report past that one comes after a batch (the model loaded)
            if "units_after_first" not in marks:
                marks["units_after_first"] = done
            elif done > marks["units_after_first"]:
                remember("first model batch")

    c0 = _cpu_seconds()
    t0 = time.perf_counter()
    detectors, slm = _detectors(names, precision, device, pair, prefix_cache=prefix_cache, focus=focus,
                                focus_tokens=focus_tokens, settle=settle, blank_lines=blank_lines, slm_model=slm_model)
    t1 = time.perf_counter()
    # the display confidence (a user's scan: 0.3) decides the pair's gate too
    options = ScanOptions(detectors=names, precision=precision, review=review, jobs=jobs,
                          cache=ResultCache(cache_dir) if cache_dir is not None else None,
                          first_stage=first_stage, pair=pair, min_confidence=min_confidence)
    report = scan([tree], options, detectors=detectors, progress=progress)
    t2 = time.perf_counter()
    c2, p2 = _cpu_seconds(), time.process_time()
    remember("end")
    stage = report.stats.get("model_stage") or {}
    counted = {k: sum(d.stats.get(k, 0) for d in slm)
               for k in ("windows", "scored_windows", "tokens", "prefix_tokens", "settled_units",
                         "decode_steps", "padded_tokens")}
    counted.update({k: round(sum(d.stats.get(k, 0.0) for d in slm), 4)
                    for k in ("partner_s", "prompts_s", "forward_s", "decode_s")})
    model_start = marks.get("model", t2)
    return ScanRun(
        name=name, wall_s=round(t2 - t0, 2), files=report.stats["files_scanned"],
        units=stage.get("units", report.stats["units"]), reviewed=stage.get("reviewed", 0),
        cleared=stage.get("cleared", 0), cached=stage.get("cached", 0),
        findings=report.stats["findings"], create_s=round(t1 - t0, 2),
        static_s=round(model_start - t1, 2), model_s=round(t2 - model_start, 2),
        detectors=[d.name for d in detectors], reasons=stage.get("reasons", {}),
        peak_rss_mb=_rounded_peak_rss(), gpu_libraries_mb=_rounded(gpu_library_rss_mb()), cpu_s=round(c2 - c0, 2),
        model_cpu_s=round(p2 - marks.get("model_cpu", p2), 2), prefix_cache=prefix_cache,
        first_stage=first_stage, first_stage_cleared=(stage.get("first_stage") or {}).get("cleared", 0),
        first_stage_s=round(marks.get("first_stage_s", 0.0), 2), focus=focus, settle=settle, memory=memory,
        blank_lines=slm[0].options.blank_lines if slm else None, **counted)


def scan_bench(files: int, source: Path | None, out: Path, detector_names: list[str] | None = None,
               precision: str | None = None, review: str = "triage", jobs: int = 0,
               device: str | None = None, compare: bool = False, compare_first_stage: bool = False,
               first_stage: str = "encoder", pair: str = "encoder", focus: bool = True,
               compare_gate: bool = False, settle: bool = True, focus_tokens: int | None = None,
               blank_lines: bool | None = None, slm_model: str | None = None) -> dict:
    source = source or stdlib_path()
    tree = out / "tree"
    chosen = build_tree(source, files, tree)
    cache_dir = out / "cache"
    if cache_dir.exists():
        shutil.rmtree(cache_dir)
    same = {"first_stage": first_stage, "pair": pair, "focus": focus, "settle": settle, "focus_tokens": focus_tokens,
            "blank_lines": blank_lines, "slm_model": slm_model}
    runs = [run_scan("cold cache", tree, cache_dir, detector_names, precision, review, jobs, device, **same)]
    if compare:  # the same cold scan without the prefix cache (its own empty cache), second: the
        # first run of a process also pays imports and the first model load from disk
        runs.append(run_scan("cold, no prefix cache", tree, out / "cache-compare", detector_names, precision,
                             review, jobs, device, prefix_cache=False, **same))
        shutil.rmtree(out / "cache-compare", ignore_errors=True)
    if compare_first_stage:  # the same cold scan with every triaged unit read by the SLM
        runs.append(run_scan("cold, no first stage", tree, out / "cache-compare", detector_names, precision,
                             review, jobs, device, **{**same, "first_stage": "none"}))
        shutil.rmtree(out / "cache-compare", ignore_errors=True)
    if compare_gate:  # the same cold scan showing every model-only finding past the raw threshold:
        # the pair's gate then sits at that threshold (the card's), not at the display
        runs.append(run_scan("cold, gate at the threshold", tree, out / "cache-compare", detector_names, precision,
                             review, jobs, device, min_confidence=0.0, **same))
        shutil.rmtree(out / "cache-compare", ignore_errors=True)
    runs.append(run_scan("warm cache", tree, cache_dir, detector_names, precision, review, jobs, device, **same))
    return {
        "source": str(source),
        "files_requested": files,
        "files_copied": len(chosen),
        "bytes": sum((tree / rel).stat().st_size for rel in chosen),
        "review": review,
        "first_stage": first_stage,
        "pair": pair,
        "focus": focus,
        "settle": settle,
        "focus_tokens": focus_tokens,
        "blank_lines": blank_lines,
        "slm_model": slm_model,
        "device": device or "cpu",
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": _torch_threads(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "load_avg_after": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "runs": [r.to_json() for r in runs],
    }


def _torch_threads() -> int | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.get_num_threads()


def scan_table(result: dict) -> str:
    """The result as a Markdown table."""
    head = ("| run | detectors | files | wall s | files/s | units | model reviewed | triage cleared "
            "| first stage cleared | settled | from cache | findings | create s | static stage s | model stage s (first stage) | model units/s "
            "| CPU s | model CPU s | model units per CPU-s | windows (scored) | tokens a unit (+ prefix cache) "
            "| peak RSS MB |")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in result["runs"]:
        ups = "—" if r["model_units_per_s"] is None else f"{r['model_units_per_s']:.2f}"
        upc = "—" if r.get("model_units_per_cpu_s") is None else f"{r['model_units_per_cpu_s']:.3f}"
        tpu = ("—" if r.get("tokens_per_unit") is None else
               f"{r['tokens_per_unit']:.0f} (+{r['prefix_tokens'] / r['reviewed']:.0f})")
        rows.append(f"| {r['name']} | {'+'.join(r['detectors'])} | {r['files']} | {r['wall_s']:.1f} | "
                    f"{r['files_per_s']:.1f} | {r['units']:,} | {r['reviewed']:,} | {r['cleared']:,} | "
                    f"{r.get('first_stage_cleared', 0):,} | {r.get('settled_units', 0):,} | "
                    f"{r['cached']:,} | {r['findings']} | {r['create_s']:.1f} | {r['static_s']:.1f} | "
                    f"{r['model_s']:.1f} ({r.get('first_stage_s', 0.0):.1f}) | {ups} | {r['cpu_s']:.1f} | {r['model_cpu_s']:.1f} | {upc} | "
                    f"{r['windows']:,} ({r['scored_windows']:,}) | {tpu} | {r['peak_rss_mb'] or 0:,.0f} |")
    rows.append("")
    for r in result["runs"]:
        if r.get("tokens"):
            padding = r.get("padded_tokens", 0) / r["tokens"] - 1 if r.get("padded_tokens") else None
            rows.append(f"- {r['name']}, the SLM's seconds: partner {r.get('partner_s', 0):.1f}, prompts "
                        f"{r.get('prompts_s', 0):.1f}, scoring passes {r.get('forward_s', 0):.1f}, decoding "
                        f"{r.get('decode_s', 0):.1f} ({r.get('decode_steps', 0):,} steps); batch padding "
                        + ("—" if padding is None else f"{100 * padding:.1f} %") + " of the tokens")
    for r in result["runs"]:
        if r.get("memory"):
            points = ", ".join(f"{k} {now or 0:,.0f} / {peak or 0:,.0f}" for k, (now, peak) in r["memory"].items())
            rows.append(f"- {r['name']}, resident MB now / peak so far: {points}")
    gpu_libs = max((r.get("gpu_libraries_mb") or 0.0 for r in result["runs"]), default=0.0)
    if gpu_libs:
        rows.append(f"- of the resident set, {gpu_libs:,.0f} MB are pages of GPU runtime libraries that this CUDA "
                    "build of torch maps even on the CPU; a CPU build does not load them")
    return "\n".join(rows) + "\n"


# --- what triage costs -----------------------------------------------------------------------

def _confusion(flags: list[bool], labels: list[bool]) -> dict:
    tp = sum(f and y for f, y in zip(flags, labels))
    fp = sum(f and not y for f, y in zip(flags, labels))
    fn = sum(not f and y for f, y in zip(flags, labels))
    return {"tp": tp, "fp": fp, "fn": fn, "tn": len(labels) - tp - fp - fn}


def prf(c: dict) -> dict:
    from cwescan.evaluate.metrics import prf as precision_recall_f1

    p, r, f1 = precision_recall_f1(c["tp"], c["fp"], c["fn"])
    return {**c, "precision": round(p, 4), "recall": round(r, 4), "f1": round(f1, 4)}


def card_sha(detector) -> str | None:
    """SHA-256 of a detector's model card (which model a result came from)."""
    import hashlib

    card = detector.card
    return hashlib.sha256(json.dumps(card, sort_keys=True).encode()).hexdigest() if card else None


def triage_cost(records, detector, log=print) -> dict:
    """SLM verdicts with and without triage on ``records`` (see the module docstring)."""
    from cwescan.detectors.static import StaticDetector
    from cwescan.core.findings import by_path
    from cwescan.scan.triage import triage
    from cwescan.core.units import parse_source

    static = StaticDetector()
    units, owners, reviewed = [], [], []
    static_flagged = [False] * len(records)
    all_cleared = {True: 0, False: 0}
    for i, r in enumerate(records):
        src = parse_source(r.id, r.code)
        us = [u for u in src.units if u.code.strip()]
        hints = by_path(static.detect(us))
        static_flagged[i] = bool(hints)
        verdicts = triage(us, hints)
        if us and all(not v.review for v in verdicts):
            all_cleared[r.vulnerable] += 1
        for u, v in zip(us, verdicts):
            units.append(u)
            owners.append(i)
            reviewed.append(v.review)
    log(f"{len(records)} records, {len(units)} units, {reviewed.count(False)} cleared by triage; "
        f"scoring every unit")
    t0 = time.perf_counter()
    scores = detector.score(units) if units else []
    seconds = time.perf_counter() - t0
    thr = detector.threshold
    full = [False] * len(records)
    tri = [False] * len(records)
    for i, s, rev in zip(owners, scores, reviewed):
        full[i] |= s >= thr
        tri[i] |= rev and s >= thr
    labels = [r.vulnerable for r in records]
    with_static = [f or s for f, s in zip(full, static_flagged)]
    tri_static = [t or s for t, s in zip(tri, static_flagged)]
    return {
        "records": len(records),
        "vulnerable": sum(labels),
        "units": len(units),
        "units_cleared": reviewed.count(False),
        "records_all_cleared": {"vulnerable": all_cleared[True], "safe": all_cleared[False]},
        "score_seconds": round(seconds, 1),
        "units_per_s": round(len(units) / seconds, 2) if seconds else None,
        "threshold": thr,
        "precision": detector.precision,
        "slm": {"without_triage": prf(_confusion(full, labels)),
                "with_triage": prf(_confusion(tri, labels))},
        "static_or_slm": {"without_triage": prf(_confusion(with_static, labels)),
                          "with_triage": prf(_confusion(tri_static, labels))},
        "lost_true_positives": sum(f and not t and y for f, t, y in zip(full, tri, labels)),
        "removed_false_positives": sum(f and not t and not y for f, t, y in zip(full, tri, labels)),
    }


def _rounded_peak_rss() -> float | None:
    return _rounded(peak_rss_mb())


def _rounded(mb: float | None) -> float | None:
    return round(mb, 1) if mb is not None else None
