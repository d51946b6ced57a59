"""`cwescan eval`: score detectors side by side on labelled records."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import typer

from cwescan.cli.options import blank_lines_option, focus_option, focus_tokens_option
from cwescan.core.config import DEFAULT_MIN_CONFIDENCE


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


def eval_cmd(
    records: list[Path] = typer.Option(None, "--records", help="JSONL file or folder of *.jsonl (repeatable)."),
    split: str = typer.Option(None, help="Part of the committed split: test, validation or train (default: test)."),
    detector: list[str] = typer.Option(["static"], "--detector", help="static, bandit, slm, encoder (repeatable)."),
    precision: str = typer.Option(None, help="Model detectors: fp32, bf16, int8 or int4."),
    device: str = typer.Option(None, help="Model detectors: cpu or cuda."),
    slm_model: str = typer.Option(None, "--slm-model", help="SLM adapter: smollm2 (default), qwen, or an adapter folder."),
    out: Path = typer.Option(Path("out/eval"), help="Folder for metrics.json, report.md and the plots."),
    limit: int = typer.Option(0, help="Evaluate a deterministic sample of N records (0: all)."),
    perturb: bool = typer.Option(False, help="Also measure verdict flips under semantics-preserving rewrites."),
    batch_size: int = typer.Option(64, help="Records per detector call."),
    update_doc: Path = typer.Option(None, help="Rewrite the eval-table block of this markdown file (e.g. docs/EVALUATION.md)."),
    negatives: Path = typer.Option(None, help="A negatives corpus (`cwescan data negatives`): also report precision at "
                                   "1 % prevalence and false alarms per 1,000 lines on its held-out (test) packages."),
    negatives_limit: int = typer.Option(0, help="Score a deterministic sample of N corpus units (0: all)."),
) -> None:
    """Evaluate detectors on labelled records: binary, ranking, CWE-typed, line, pairwise and
    calibration metrics, per source and per CWE; with --negatives, the realistic-prevalence view."""
    # Long because of its typer options; the body builds detectors and calls the runner.
    from cwescan.data.records import DataError, default_data_dir, load_records
    from cwescan.data.split import load_part, manifest_hash
    from cwescan.detectors import REGISTRY, create_detectors
    from cwescan.evaluate.report import main_table, update_doc as rewrite_doc, write_outputs
    from cwescan.evaluate.runner import perturbed_variants, run_detector, sample

    if records and split:
        _fail("give --records or --split, not both")
    unknown = [d for d in detector if d not in REGISTRY]
    if unknown:
        _fail(f"unknown detector {unknown[0]!r}; choose from {', '.join(REGISTRY)}")
    # the command as given, rebuilt from the options so reports say how to reproduce them
    argv = [a for p in records or [] for a in ("--records", str(p))]
    argv += ["--split", split] if split else []
    argv += [a for d in detector for a in ("--detector", d)]
    for flag, value in (("--precision", precision), ("--device", device), ("--slm-model", slm_model),
                        ("--limit", limit or None)):
        argv += [flag, str(value)] if value else []
    argv += ["--perturb"] if perturb else []
    argv += ["--negatives", str(negatives)] if negatives else []
    argv += ["--negatives-limit", str(negatives_limit)] if negatives_limit else []
    meta: dict = {"command": shlex.join(["cwescan", "eval", *argv])}
    try:
        if records:
            recs = load_records(records)
            meta["input"] = ", ".join(str(p) for p in records)
        else:
            part = split or "test"
            recs = load_part(part)
            meta["input"] = f"the {part} part of the split"
            meta["data_dir"] = str(default_data_dir())
            meta["split"] = part
            meta["manifest_hash"] = manifest_hash()
    except DataError as e:
        _fail(str(e))
    recs = sample(recs, limit or None)
    if not recs:
        _fail("no records to evaluate")
    meta["records"] = len(recs)

    perturbations = None
    if perturb:
        try:
            from cwescan.evaluate.perturb import PERTURBATIONS
        except ModuleNotFoundError:
            _fail("--perturb needs cwescan.evaluate.perturb (PERTURBATIONS), which is not available yet")
        perturbations = perturbed_variants(recs, PERTURBATIONS)  # once, shared by the detectors

    runs, dets = {}, {}
    t_all = time.perf_counter()
    for name in dict.fromkeys(detector):  # each once, in the order given
        label = name
        if name == "slm" and slm_model:
            label = "slm" if slm_model == "smollm2" else f"slm-{Path(slm_model).name}"
        try:
            # the same detectors, options and default precision as `cwescan scan`
            [det] = create_detectors([name], precision, slm_model, device)
        except KeyError as e:
            _fail(str(e.args[0]))
        except ModuleNotFoundError as e:
            _fail(f"detector {name!r} is not available: {e}")
        except Exception as e:  # noqa: BLE001 - e.g. a model not trained yet or failing its hash check
            _fail(f"cannot load detector {name!r}: {type(e).__name__}: {e}")
        run = run_detector(label, det, recs, batch_size, perturbations)
        runs[label] = run
        dets[label] = det
        typer.echo(
            f"{label}: {len(recs)} records in {run.seconds:.1f} s "
            f"({len(recs) / max(run.seconds, 1e-9):.1f} records/s)" + (f", {run.errors} errors" if run.errors else ""),
            err=True,
        )
    realistic = None
    if negatives:
        from cwescan.data.negatives import NegativesError
        from cwescan.evaluate.prevalence import negatives_table, negatives_view

        try:
            realistic = negatives_view(runs, recs, negatives, negatives_limit, batch_size, dets)
        except (DataError, NegativesError) as e:
            _fail(str(e))
    meta["seconds"] = round(time.perf_counter() - t_all, 2)
    written = write_outputs(recs, runs, meta, out)
    if realistic is not None:
        from cwescan.evaluate.prevalence import write_pr_plot

        (out / "realistic.json").write_text(json.dumps(realistic, indent=1) + "\n")
        write_pr_plot(realistic, out / "realistic_pr.png")
        written += [out / "realistic.json", out / "realistic_pr.png"]
        typer.echo(negatives_table(realistic))
    typer.echo(main_table(runs))
    typer.echo(f"total {meta['seconds']:.1f} s; wrote " + ", ".join(str(p) for p in written))
    if update_doc:
        rewrite_doc(update_doc, runs, meta)
        typer.echo(f"updated the eval table in {update_doc}")


def eval_slm_cmd(
    part: str = typer.Option("test", help="Part of the split: train, validation or test."),
    precision: str = typer.Option(None, help="fp32, bf16, int8 or int4 (default: as `cwescan scan`)."),
    device: str = typer.Option("cpu", help="cpu or cuda"),
    model: str = typer.Option(None, help="Adapter folder (default: the shipped one)."),
    batch_size: int = typer.Option(0, help="Windows per forward pass (default 16 on CPU, 128 on a GPU)."),
    limit: int = typer.Option(0, help="Evaluate on a sample of N records (0: all)."),
    out: Path = typer.Option(Path("out/eval-slm"), help="Where the outputs go."),
) -> None:
    """Evaluate the SLM on one part of the split the way `cwescan eval` does, and count the
    parse rate of its constrained answers over every unit of that part."""
    from cwescan.evaluate.slm_part import evaluate_slm_part

    evaluate_slm_part(part, precision, device, model, batch_size, limit, out)


def eval_mix_cmd(
    negatives: Path = typer.Option(..., help="A negatives corpus built by `cwescan data negatives`."),
    out: Path = typer.Option(..., help="Score file to write (JSON)."),
    model: str = typer.Option(None, help="Model folder (default: the shipped one of --detector)."),
    detector: str = typer.Option("slm", help="slm or encoder"),
    part: list[str] = typer.Option(["validation", "test"], "--part", help="Parts to score (repeatable)."),
    device: str = typer.Option("cpu", help="cpu or cuda"),
    precision: str = typer.Option("bf16", help="fp32, bf16, int8 or int4"),
    batch_size: int = typer.Option(0, help="Windows per forward pass (default 16 on CPU, 128 on a GPU)."),
    labelled_only: bool = typer.Option(False, "--labelled-only",
                                       help="Score the labelled parts only (their CWE and line answers), not the corpus."),
    focus: bool = focus_option(),
    focus_tokens: int = focus_tokens_option(),
    callers_reading_sources: bool = typer.Option(False, "--callers-reading-sources",
                                                 help="The SLM's prompts show only callers that read an "
                                                      "untrusted source (default: every caller that fits)."),
    blank_lines: bool | None = blank_lines_option(),
    number_width: int | None = typer.Option(None, "--number-width", min=0, max=8,
                                            help="The SLM's line numbers right-aligned in this many characters "
                                                 "(default: as its model card says; the adapters were trained "
                                                 "with 4)."),
) -> None:
    """Score a model (the SLM by default) on the realistic mix (labelled parts + negatives corpus
    parts) into one file, the input of `cwescan train calibrate` and of the first-stage choice."""
    from cwescan.evaluate.mix_scores import score_mix

    command = shlex.join(["cwescan", "eval-mix", "--detector", detector, "--negatives", str(negatives),
                          "--out", str(out), *(["--model", model] if model else []),
                          *[a for p in part for a in ("--part", p)], "--device", device, "--precision", precision,
                          *(["--labelled-only"] if labelled_only else []), *([] if focus else ["--no-focus"]),
                          *([] if focus_tokens is None else ["--focus-tokens", str(focus_tokens)]),
                          *(["--callers-reading-sources"] if callers_reading_sources else []),
                          *([] if blank_lines is None else ["--blank-lines" if blank_lines else "--no-blank-lines"]),
                          *([] if number_width is None else ["--number-width", str(number_width)])])
    score_mix(negatives, model, part, device, precision, batch_size, out, command, detector, labelled_only,
              focus=focus, focus_tokens=focus_tokens, callers_reading_sources=callers_reading_sources,
              blank_lines=blank_lines, number_width=number_width)


def eval_pipeline_cmd(
    scores: Path = typer.Option(..., help="Score file of `cwescan eval-mix` (e.g. data/negatives/scores/slm.json.gz)."),
    part: str = typer.Option("test", help="Labelled part: test or validation."),
    slm_model: str = typer.Option(None, "--model", "--slm-model",
                                  help="Model whose card holds the decision policy: smollm2 (default), qwen, "
                                       "encoder (the scan with -d static,encoder), or a model folder."),
    partner_scores: Path = typer.Option(None, "--partner-scores",
                                        help="`cwescan eval-mix --detector encoder` scores: judge the SLM's pair "
                                             "(the default scan) with the pair's policy from the card."),
    out: Path = typer.Option(None, help="Also write the view as JSON here."),
) -> None:
    """The default scan as users run it (rules, the model's second opinion and model-only
    findings under the card's decision policy, the default display confidence), on a labelled part;
    with --model encoder and the encoder's scores, the scan with -d static,encoder."""
    from cwescan.core.pair import Pairing
    from cwescan.core.policy import DecisionPolicy
    from cwescan.data.split import load_part
    from cwescan.evaluate.pipeline_view import pipeline_table, pipeline_view
    from cwescan.ml.artifacts import model_dir, verify
    from cwescan.train.calibrate import read_scores
    from cwescan.train.pair import fuse_scores, gated_ids, settled_by

    card = verify(Path(slm_model) if slm_model and Path(slm_model).is_dir() else model_dir(
        {"qwen": "slm-qwen", "encoder": "encoder"}.get(slm_model or "", "slm")))
    doc = read_scores(scores)
    policy = DecisionPolicy.from_card(card)
    if partner_scores:
        pairing = Pairing.from_card(card)
        if pairing is None:
            _fail("the adapter's card has no pair (cwescan train pair --write)")
        theirs = read_scores(partner_scores)
        doc, policy = fuse_scores(doc, theirs, pairing.weight), pairing.policy
        # the scan's first stage clears what falls under the pair's gate before the SLM reads it
        gated = gated_ids(theirs, part, pairing.gate_at(policy.display))
        settled = settled_by(pairing, theirs, part)  # rule findings the scan does not give the SLM
    else:
        gated, settled = set(), None
    by_id = {row["id"]: row["score"] for row in doc["labelled"].get(part, [])}
    records = [r for r in load_part(part) if r.id in by_id]
    if not records:
        _fail(f"{scores} holds no scores of the {part} part")
    view = pipeline_view(records, by_id, policy, gated, settled)
    typer.echo(pipeline_table(view))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(view, indent=2) + "\n", encoding="utf-8")


def eval_owasp_cmd(
    expected: Path = typer.Argument(..., help="The benchmark's expectedresults-<version>.csv."),
    results: list[Path] = typer.Argument(..., help="Results on its testcode/ folder: `cwescan scan -f json`, "
                                                   "SARIF or Bandit JSON (several: one table each)."),
    min_confidence: float = typer.Option(DEFAULT_MIN_CONFIDENCE, "--min-confidence",
                                         help="cwescan reports: count findings at or above this confidence "
                                              "(default: what a scan shows)."),
    out: Path = typer.Option(None, help="Also write the scores as JSON here."),
) -> None:
    """Score SAST results on the OWASP Benchmark for Python: per category the true and false
    positive rates and the benchmark's score (TPR - FPR), a test flagged when a CWE of its
    category's family is reported in its file."""
    from cwescan.evaluate.owasp import BenchmarkError, read_expected, read_results, score, table

    try:
        cases = read_expected(expected)
        scored = {str(r): score(cases, read_results(r, min_confidence)) for r in results}
    except BenchmarkError as e:
        _fail(str(e))
    for name, result in scored.items():
        typer.echo(f"\n{name} ({result['tests']} tests, {result['tests_without_findings']} without a finding)\n")
        typer.echo(table(result))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(scored, indent=2) + "\n", encoding="utf-8")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
    app.command("eval-slm")(eval_slm_cmd)
    app.command("eval-mix")(eval_mix_cmd)
    app.command("eval-pipeline")(eval_pipeline_cmd)
    app.command("eval-owasp")(eval_owasp_cmd)
