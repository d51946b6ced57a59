"""The scan pipeline: paths -> files -> units -> detectors -> merged findings -> report.

1. ``walk.discover`` lists the Python files; ``walk.read_source`` reads each one safely.
2. Each file is parsed into units (``units.parse_source``) and the fast detectors (static,
   Bandit) run on it under a per-file time bound, in worker processes with ``jobs > 1``.
3. Model detectors (slm, encoder) get the units of all files in large batches.
4. Findings are merged per (path, line, CWE family), filtered by confidence, inline
   suppressions and the baseline, fingerprinted and sorted into a :class:`Report`.

Nothing a single file does stops the scan: it becomes a :class:`walk.Notice` instead.
"""

from __future__ import annotations

import gc
import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from cwescan import detectors as detector_registry
from cwescan.scan import first_stage as first_stage_mod
from cwescan.scan.cache import ResultCache
from cwescan.scan.combine import apply_policy, is_settled, merge, replace_reviewed
from cwescan.scan.limits import Alarm, FileTimeout, fewer_gc_passes, time_limit
from cwescan.scan.quiet import third_party_quiet
from cwescan.scan.cache import model_key as cache_model_key
from cwescan.scan.cache import unit_key as cache_unit_key
from cwescan.detectors.base import Detector, ModelDetector, ProjectDetector
from cwescan.core import cwe as cwe_catalog
from cwescan.core.findings import Finding, by_path, in_unit
from cwescan.core.handoffs import Handoff
from cwescan.scan.across_files import recheck_handed
from cwescan.scan.parse_notices import lowered_notice, parse_notice
from cwescan.scan.review import FileTriage, parse_for_review, start_triage, units_to_review
from cwescan.core.pair import partner_name
from cwescan.core.report import Report, Reported
from cwescan.scan.executor import BatchDone, StageExecutor
from cwescan.scan.file_budget import FileBudget
from cwescan.core.repositories import find_repositories, repository_of
from cwescan.scan.parse_guard import parse_finishes, parse_may_stall, parse_timeout_message
from cwescan.core.testcode import TestCodePolicy
from cwescan.scan.suppress import FileSuppressions, apply_baseline, content_hash, fingerprint
from cwescan.core.units import SourceFile, Unit, parse_source
from cwescan.scan.walk import (
    DEFAULT_MAX_FILE_SIZE,
    Candidate,
    Notice,
    ReadResult,
    discover,
    find_base,
    read_source,
)

# Units handed to a model detector per call. Each call reports progress: on a CPU a call of 64
# takes about a minute on 2 cores; an accelerator needs larger calls to stay busy.
MODEL_BATCH_UNITS = {"cpu": 64, "accelerator": 512}
PARALLEL_MIN_FILES = 200  # below this, worker start-up costs more than it saves


@dataclass
class FileResult:
    relpath: str
    text: str | None  # None: skipped, or dropped once nothing needs it (see ``scanned``)
    scanned: bool = False
    notices: list[Notice] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    n_units: int = 0
    suppressions: FileSuppressions | None = None
    source: SourceFile | None = None  # kept in-process only, for the model detectors
    function_spans: list[tuple[int, int]] = field(default_factory=list)  # (start, end) of each function unit
    handoffs: list[Handoff] = field(default_factory=list)  # outside data it hands other files' functions
    triage: FileTriage | None = None  # worked out in a worker: the parent need not parse it again


def scan_file(cand: Candidate, fast: Sequence[Detector], max_size: int, timeout: float,
              keep_source: bool, keep_text: bool = True,
              passed: dict[str, list[Handoff]] | None = None, triage: bool = False) -> FileResult:
    """Read, parse and run the fast detectors on one file (``triage``: see ``scan_read``). Never
    raises (but KeyboardInterrupt)."""
    return scan_read(cand.relpath, read_source(cand.abspath, cand.relpath, max_size), fast,
                     timeout, keep_source, keep_text, passed, triage)


def scan_read(relpath: str, read: ReadResult, fast: Sequence[Detector], timeout: float,
              keep_source: bool, keep_text: bool = True,
              passed: dict[str, list[Handoff]] | None = None, triage: bool = False) -> FileResult:
    """Parse and run the fast detectors on one file already read (here or on another machine);
    ``passed``: what the scan's other files hand its functions (``scan/across_files.py``);
    ``triage``: also triage its units for the model stage (``scan/review.py``).
    Never raises (but KeyboardInterrupt)."""
    result = FileResult(relpath, read.text, scanned=read.text is not None)
    if read.notice is not None:
        result.notices.append(read.notice)
    if read.text is None:
        return result
    budget = FileBudget(timeout)
    # a parse tried in a child runs again here: each run gets half of the file's budget
    if parse_may_stall(read.text, timeout) and not parse_finishes(read.text, timeout / 2, relpath):
        result.notices.append(Notice(relpath, "parse-timeout", parse_timeout_message(timeout)))
        result.scanned, result.text = False, None
        return result
    alarm = Alarm()
    try:
        with time_limit(budget.left()) as alarm:
            src = parse_source(relpath, read.text)
        if alarm.fired:  # went off inside the parser, which turned it into a parse error
            raise FileTimeout
    except (Exception, FileTimeout) as e:
        result.notices.append(_failure(relpath, "parsing", e, alarm.fired, timeout))
        result.suppressions = _suppressions(relpath, read.text, None)
        result.text = None  # the model stage would parse it again: it gets no units from it
        return result
    if src.error and read.text.strip():
        result.notices.append(parse_notice(relpath, src))
    if src.parser == "lowered":
        result.notices.append(lowered_notice(relpath, src.lowered))
    result.n_units = len(src.units)
    result.function_spans = [(u.start_line, u.end_line) for u in src.units if u.kind == "function"]
    finish_triage = start_triage(src) if triage else None  # on the tree before the rules fold it
    # Static detectors need the AST; a file beyond repair is left to the models.
    for det in (fast if src.tree is not None else ()):
        alarm = Alarm()
        try:
            with time_limit(budget.left()) as alarm:
                if isinstance(det, ProjectDetector):
                    # a file checked again with what others hand it: what it hands on is not
                    # followed a second step, so it is not listed again
                    check = det.check_file(src, passed, handoffs=passed is None)
                    found = sorted(check.findings, key=Finding.sort_key)
                    result.handoffs.extend(check.handoffs)
                else:
                    found = det.detect(src.units)
            result.findings.extend(found)
        except (Exception, FileTimeout) as e:  # one detector's failure must not lose the scan
            result.notices.append(_failure(relpath, det.name, e, alarm.fired, timeout))
    result.suppressions = _suppressions(relpath, read.text, src.tree)
    if finish_triage is not None:
        result.triage = finish_triage(result.findings)
    if keep_source:
        result.source = src
    if not keep_text and not result.findings:
        result.text = None  # only fingerprints of findings need it: keeps big scans small
    return result


def _failure(relpath: str, stage: str, error: BaseException, alarm_fired: bool,
             timeout: float) -> Notice:
    """The notice for a parse or detector run that raised."""
    if alarm_fired or isinstance(error, FileTimeout):
        return Notice(relpath, "timeout", f"{stage}: over {timeout:g} s on this file (--file-timeout)")
    if isinstance(error, (RecursionError, MemoryError)):
        return Notice(relpath, "too-deep", f"{stage}: {type(error).__name__} on deeply nested code")
    if stage == "parsing":
        return Notice(relpath, "syntax-error", f"the parser failed: {type(error).__name__}: {error}")
    return Notice(relpath, "detector-error", f"{stage} failed: {type(error).__name__}: {error}")


def _suppressions(relpath: str, text: str, tree) -> FileSuppressions:
    """Directives of a file; statement spans from the AST when it can be walked."""
    for t in (tree, None):
        try:
            return FileSuppressions.build(relpath, text, t)
        except (RecursionError, MemoryError, ValueError):
            continue
    return FileSuppressions(relpath, [], [])


_WORKER: dict = {}


def _init_worker(targets: list[str], max_size: int, timeout: float, keep_text: bool,
                 triage: bool = False) -> None:
    """Build the fast detectors in a worker from their registry targets ("module:callable"),
    resolved in the parent so detectors registered at run time work too; ``triage``: triage
    each file's units there too (``scan/review.py``)."""
    import importlib

    fast = []
    for target in targets:
        module, attr = target.split(":")
        fast.append(getattr(importlib.import_module(module), attr)())
    _WORKER["fast"] = fast
    gc.freeze()
    gc.set_threshold(200_000, 20, 20)  # see fewer_gc_passes
    _WORKER["args"] = (max_size, timeout, keep_text, triage)


def _scan_in_worker(cand: Candidate) -> FileResult:
    max_size, timeout, keep_text, triage = _WORKER["args"]
    return scan_file(cand, _WORKER["fast"], max_size, timeout, keep_source=False, keep_text=keep_text,
                     triage=triage)


# --- merging and the report ---------------------------------------------------------------

@dataclass
class ScanOptions:
    detectors: list[str]
    exclude: list[str] = field(default_factory=list)
    precision: str | None = None
    device: str | None = None  # model detectors: "cpu" (default) or "cuda"
    max_file_size: int = DEFAULT_MAX_FILE_SIZE
    file_timeout: float = 20.0
    min_confidence: float = 0.0
    baseline: Counter | None = None
    force_exclude: bool = False  # excludes apply to named paths too
    jobs: int = 0  # 0: automatic (worker processes from PARALLEL_MIN_FILES files on)
    base: Path | None = None  # report paths relative to this; default walk.find_base
    review: str = "triage"  # model stage: "triage" (skip units with no security surface) or "all"
    cache: ResultCache | None = None  # model results per unit; None: no cache
    verbose: bool = False  # let model libraries print their warnings and progress bars
    tests: TestCodePolicy = TestCodePolicy()  # test code: reported lower (default), normal or skipped
    first_stage: str = "encoder"  # model stage: a cheap model clears units before the SLM ("none": off)
    pair: str = "encoder"  # the SLM decides with this partner model when its card has a pair for it ("none": alone)


ProgressHook = Callable[[str, int, int], None]  # (stage, done, total)


def scan(paths: Sequence[Path], options: ScanOptions,
         detectors: Sequence[Detector] | None = None,
         progress: ProgressHook | None = None,
         executor: StageExecutor | None = None) -> Report:
    """Scan ``paths``. ``detectors`` may be given ready-made; else ``options.detectors`` are
    created through the registry. ``executor``: where the file and model stages run (default
    :class:`LocalExecutor`: this process and its worker processes)."""
    executor = executor or LocalExecutor()
    paths = [Path(p) for p in paths]
    base = (options.base or find_base(paths)).resolve()
    if detectors is None:
        detectors = detector_registry.create_detectors(
            options.detectors, options.precision, device=options.device,
            slm_partner=partner_name(options.pair))
    fast = [d for d in detectors if not isinstance(d, ModelDetector)]
    models = [d for d in detectors if isinstance(d, ModelDetector)]

    excludes_used: set[str] = set()
    candidates, notices = discover(paths, base, options.exclude, force_exclude=options.force_exclude,
                                   matched_excludes=excludes_used)
    candidates, tests_not_scanned = options.tests.to_scan(candidates, lambda c: c.relpath)
    with fewer_gc_passes():
        results = executor.run_files(candidates, fast, options, keep_source=bool(models),
                                     progress=progress)
        # files whose functions other files hand outside data: checked again with it
        recheck_handed(results, candidates, lambda cand, passed: scan_file(
            cand, fast, options.max_file_size, options.file_timeout, bool(models), bool(models), passed,
            triage=_triage_where_scanned(options, bool(models))))
    notices = list(notices)
    raw: list[Finding] = []
    model_stats: dict = {}
    for r in results:
        notices.extend(r.notices)
        raw.extend(r.findings)
    if models:
        raw, model_stats = _with_model_opinions(raw, results, models, notices, options, progress, executor)

    texts = {r.relpath: r.text for r in results if r.text is not None}
    sups = {r.relpath: r.suppressions for r in results if r.suppressions is not None}
    merged = merge(raw, {r.relpath: r.function_spans for r in results})
    options.tests.mark(merged)
    kept, low, suppressed = [], 0, 0
    for f in merged:
        # suppressions first, so a directive over a low-confidence finding counts as used
        s = sups.get(f.path)
        if s is not None and s.hide(f) is not None:
            suppressed += 1
        elif f.confidence < options.min_confidence:
            low += 1
        else:
            kept.append(f)
    reported = _fingerprint(kept, texts)
    repositories = find_repositories(paths, base)
    for r in reported:
        repo = repository_of(r.finding.path, repositories)
        r.repository = repo.name if repo else None
    hidden = (apply_baseline([r.fingerprint for r in reported], options.baseline)
              if options.baseline else [False] * len(reported))
    visible = [r for r, h in zip(reported, hidden) if not h]
    unused = [u for path in sorted(sups) for u in sups[path].unused()]

    notices.sort(key=lambda n: (n.path, n.reason, n.message))
    stats = _stats(results, notices, visible, [d.name for d in detectors],
                   low=low, suppressed=suppressed, baselined=sum(hidden))
    if models:
        stats["model_stage"] = model_stats
    if tests_not_scanned:
        stats["test_files_not_scanned"] = tests_not_scanned
    rule_docs = {rid: doc for d in fast for rid, doc in d.rule_docs().items()}
    return Report(base, [d.name for d in detectors], visible, notices, unused, stats, reported,
                  model_detectors=frozenset(d.name for d in models), rule_docs=rule_docs,
                  excludes_used=excludes_used, repositories=repositories)


def _with_model_opinions(raw: list[Finding], results: list[FileResult], models: list[ModelDetector],
                         notices: list[Notice], options: ScanOptions, progress: ProgressHook | None,
                         executor: StageExecutor) -> tuple[list[Finding], dict]:
    """The static findings ``raw`` with the model stage's findings and opinions, and its stats.

    Static findings go to the model detectors as hints; each comes back with the model's second
    opinion folded into its confidence (cwescan.scan.combine.second_opinion) and replaces the
    plain static finding, so a disagreeing model ranks it lower."""
    hints = by_path(raw)
    for d in models:  # what the scan hides decides which model answers could change the report
        d.set_display(options.min_confidence)
    model_findings, model_stats = _run_model_stage(results, models, notices, progress, hints,
                                                   review=options.review, cache=options.cache,
                                                   verbose=options.verbose, executor=executor,
                                                   first_stage=_first_stage(options, models))
    pairs = {d.name: c.name for d in models for c in d.companions()}
    if pairs:
        model_stats["pair"] = pairs
    model_stats["settled"] = sum(1 for f in model_findings if is_settled(f))
    raw = replace_reviewed(raw, model_findings)
    raw, model_stats["model_only_withheld"] = apply_policy(raw, {d.name: d.policy for d in models})
    return raw, model_stats


def _first_stage(options: ScanOptions, models: list[ModelDetector]) -> first_stage_mod.FirstStage | None:
    """The first stage a triaged scan puts before its other model detectors (not before itself)."""
    if options.review != "triage" or options.first_stage == "none" \
            or not any(d.name != options.first_stage for d in models):
        return None
    for d, c in ((d, c) for d in models for c in d.companions()):
        if c.name == options.first_stage:  # the SLM's partner is loaded once, for both jobs
            try:
                return first_stage_mod.FirstStage.from_card(c, gate=d.gate(options.min_confidence))
            except first_stage_mod.FirstStageUnavailable:
                return None
    return first_stage_mod.create(options.first_stage, options.device)


class LocalExecutor(StageExecutor):
    """Both stages on this machine: files in this process or, from PARALLEL_MIN_FILES files
    on, in spawned worker processes; model batches in this process."""

    def run_files(self, candidates, fast, options, keep_source, progress):
        return _run_fast_stage(list(candidates), list(fast), options, keep_source, progress)

    def run_model(self, detector, batches, hints, verbose, batch_done: BatchDone):
        out: list[list[Finding] | Exception] = []
        load_error: Exception | None = None
        if batches:
            try:
                with third_party_quiet(enabled=not verbose):
                    detector.load()
            except Exception as e:  # every batch reports it per file
                load_error = RuntimeError(f"could not load: {type(e).__name__}: {e}")
        for batch in batches:
            if load_error is not None:
                out.append(load_error)
            else:
                try:
                    with third_party_quiet(enabled=not verbose, streams=False):
                        out.append(detector.detect(batch, hints=hints))
                except Exception as e:  # keep the rest of the scan
                    out.append(e)
            batch_done(len(batch))
        return out


def _triage_where_scanned(options: ScanOptions, with_models: bool) -> bool:
    """Whether each file is triaged where it is scanned, on its tree as parsed, in a worker or
    here (``scan/review.py``): when model detectors will read units that triage picks."""
    return with_models and options.review == "triage"


def _run_fast_stage(candidates: list[Candidate], fast: list[Detector], options: ScanOptions,
                    keep_source: bool, progress: ProgressHook | None) -> list[FileResult]:
    total = len(candidates)
    jobs = options.jobs or (min(os.cpu_count() or 1, 8) if total >= PARALLEL_MIN_FILES else 1)
    # Workers rebuild the fast detectors from the registry with default options.
    if not fast or not all(d.name in detector_registry.REGISTRY for d in fast):
        jobs = 1
    results: list[FileResult] = []
    triage = _triage_where_scanned(options, keep_source)
    if jobs <= 1 or total < 2:
        for i, cand in enumerate(candidates):
            results.append(scan_file(cand, fast, options.max_file_size, options.file_timeout,
                                     keep_source, keep_text=keep_source, triage=triage))
            if progress:
                progress("files", i + 1, total)
        return results
    targets = [detector_registry.REGISTRY[d.name] for d in fast]
    # spawn, not fork: the parent may hold model threads or open files a fork would copy.
    try:
        with ProcessPoolExecutor(max_workers=min(jobs, total), mp_context=get_context("spawn"),
                                 initializer=_init_worker,
                                 initargs=(targets, options.max_file_size, options.file_timeout,
                                           keep_source, triage)) as pool:
            for r in pool.map(_scan_in_worker, candidates, chunksize=4):
                parse_for_review(r)
                results.append(r)
                if progress:
                    progress("files", len(results), total)
    except BrokenProcessPool:
        # A worker died (a crash in C code on some file): finish in this process, where
        # every failure is caught per file.
        pass
    for cand in candidates[len(results):]:
        results.append(scan_file(cand, fast, options.max_file_size, options.file_timeout,
                                 keep_source, keep_text=keep_source, triage=triage))
        if progress:
            progress("files", len(results), total)
    return results


def _run_model_stage(results: list[FileResult], models: list[ModelDetector], notices: list[Notice],
                     progress: ProgressHook | None,
                     hints: dict[str, list[Finding]] | None = None,
                     review: str = "triage",
                     cache: ResultCache | None = None,
                     verbose: bool = False,
                     executor: StageExecutor | None = None,
                     first_stage: first_stage_mod.FirstStage | None = None) -> tuple[list[Finding], dict]:
    """Findings of the model detectors and what the stage did: per unit, triage decides
    whether a model must look at it (``cwescan.scan.triage``), then the cache may answer for it,
    then the first stage may clear it (``cwescan.scan.first_stage``); only the rest run through
    the model, in batches."""
    hints = hints or {}
    executor = executor or LocalExecutor()
    todo, reasons, n_units, over_budget, first_stage_ids = units_to_review(results, hints, review, notices)
    out: list[Finding] = []
    ran: set[int] = set()  # units some model actually ran on
    cached: dict[int, int] = {}  # unit -> models that answered it from the cache
    total = len(todo) * len(models)
    done = 0
    for det in models:
        mkey = cache_model_key(det) if cache is not None else None
        keys: dict[int, str] = {}
        pending: list[Unit] = []
        for u in todo:
            if mkey is not None:
                keys[id(u)] = cache_unit_key(mkey, u, hints.get(u.path, ()))
                hit = cache.get(keys[id(u)], u)
                if hit is not None:
                    out.extend(hit)
                    cached[id(u)] = cached.get(id(u), 0) + 1
                    continue
            pending.append(u)
        if first_stage is not None and det is not first_stage.detector:
            pending = _first_stage_keeps(first_stage, pending, first_stage_ids, cache, verbose, progress)
        done += len(todo) - len(pending)
        if progress and total:
            progress(f"{det.name} units", done, total)

        def batch_done(n: int, stage: str = f"{det.name} units") -> None:
            nonlocal done
            done += n
            if progress:
                progress(stage, done, total)

        # Same batches whatever the executor: a detector's numbers may depend on what it is
        # given together (padding), and the report must not depend on where it ran.
        size = MODEL_BATCH_UNITS["cpu" if str(det.device) == "cpu" else "accelerator"]
        batches = [pending[i:i + size] for i in range(0, len(pending), size)]
        answers = executor.run_model(det, batches, hints, verbose, batch_done) if batches else []
        for batch, found in zip(batches, answers):
            if isinstance(found, Exception):  # keep the rest of the scan; name the files it missed
                for path in sorted({u.path for u in batch}):
                    notices.append(Notice(path, "detector-error",
                                          f"{det.name} failed: {type(found).__name__}: {found}"))
                continue
            out.extend(found)
            ran.update(id(u) for u in batch)
            if mkey is not None:
                _store(cache, keys, batch, found)
    if cache is not None and cache.writes:
        cache.prune()
    from_cache = sum(1 for u in todo if cached.get(id(u), 0) == len(models))
    stats = {
        "review": review,
        "units": n_units,
        "reviewed": len(ran),  # a model ran on them in this scan
        "cleared": n_units - len(todo),  # triage: no security surface, no model
        "cached": from_cache,  # every model's answer came from the cache
        "reasons": dict(sorted(reasons.items())),
        **({"over_budget": over_budget} if over_budget else {}),
        **({"first_stage": first_stage.stats()} if first_stage is not None else {}),
    }
    return out, stats


def _first_stage_keeps(first_stage: first_stage_mod.FirstStage, pending: list[Unit], eligible: set[int],
                       cache: ResultCache | None, verbose: bool, progress: ProgressHook | None) -> list[Unit]:
    """The units of ``pending`` the first stage leaves for the next model."""
    if not pending:
        return pending
    stage = f"{first_stage.detector.name} first stage"
    if progress:
        progress(stage, 0, len(pending))
    with third_party_quiet(enabled=not verbose, streams=False):
        keep, _ = first_stage.split(pending, eligible, cache, verbose)
    if progress:
        progress(stage, len(pending), len(pending))
    return keep


def _store(cache: ResultCache, keys: dict[int, str], batch: list[Unit], found: list[Finding]) -> None:
    """Cache each unit's share of ``found``. A finding goes to the innermost unit holding its
    line (the one it names, for model findings); when one cannot be placed, no unit of its file
    is cached, so a later scan never misses it."""
    per_unit: dict[int, list[Finding]] = {id(u): [] for u in batch}
    by_path: dict[str, list[Unit]] = {}
    for u in batch:
        by_path.setdefault(u.path, []).append(u)
    unplaced: set[str] = set()
    for f in found:
        holders = [u for u in by_path.get(f.path, ()) if in_unit(f, u)]
        named = [u for u in holders if u.qualname == f.extra.get("unit")]
        holders = named or holders
        if not holders:
            unplaced.add(f.path)
            continue
        per_unit[id(min(holders, key=lambda u: u.end_line - u.start_line))].append(f)
    for u in batch:
        if u.path not in unplaced:
            cache.put(keys[id(u)], per_unit[id(u)])


def _fingerprint(findings: list[Finding], texts: dict[str, str]) -> list[Reported]:
    """Baseline fingerprints and SARIF line hashes; the occurrence counter tells apart
    identical code flagged twice in one file, like GitHub's own fingerprints."""
    out = []
    seen: Counter = Counter()
    lines_of: dict[str, list[str]] = {}
    for f in findings:
        lines = lines_of.setdefault(f.path, texts.get(f.path, "").split("\n"))
        h = content_hash(lines, f.start_line, f.end_line)
        seen[(f.path, f.family, h)] += 1
        first = lines[f.start_line - 1].strip() if 0 < f.start_line <= len(lines) else ""
        out.append(Reported(f, fingerprint(f, lines), f"{h}:{seen[(f.path, f.family, h)]}",
                            first[:160]))
    return out


def _stats(results: list[FileResult], notices: list[Notice], visible: list[Reported],
           detectors: list[str], *, low: int, suppressed: int, baselined: int) -> dict:
    skipped_paths = {n.path for n in notices if not n.scanned}
    partial_paths = {n.path for n in notices if n.scanned and not n.complete}
    lowered_paths = {n.path for n in notices if n.reason == "lowered"}
    repaired_paths = {n.path for n in notices if n.reason == "repaired"}
    by_detector: Counter = Counter()
    for r in visible:
        for name in r.finding.extra.get("detectors", {r.finding.detector: 0}):
            by_detector[name] += 1
    by_severity = Counter(r.finding.severity for r in visible)
    by_cwe = Counter(r.finding.cwe for r in visible)
    return {
        "detectors": list(detectors),
        "files_scanned": sum(1 for r in results if r.scanned),
        "files_skipped": len(skipped_paths),
        "files_partial": len(partial_paths),
        **({"files_lowered": len(lowered_paths)} if lowered_paths else {}),
        **({"files_repaired": len(repaired_paths)} if repaired_paths else {}),
        "units": sum(r.n_units for r in results),
        "findings": len(visible),
        "by_detector": dict(sorted(by_detector.items())),
        "by_severity": {s: by_severity[s] for s in ("critical", "high", "medium", "low") if by_severity[s]},
        "by_cwe": dict(sorted(by_cwe.items(), key=lambda kv: cwe_catalog.sort_key(kv[0]))),
        "suppressed": suppressed,
        "baselined": baselined,
        "below_min_confidence": low,
        **({"in_test": in_test} if (in_test := sum(r.finding.in_test for r in visible)) else {}),
    }
