"""Score a model detector (the SLM, or the encoder) on the realistic mix: the labelled validation and test parts plus the
validation and test parts of the negatives corpus, and write every score to one JSON file.

Thresholds, calibration and the realistic-prevalence metrics are computed from this file
(``cwescan.evaluate.prevalence``), so the expensive part runs once, on whatever machine has the
accelerator, and everything after it is reproducible from the file on any machine:

    cwescan eval-mix --model src/cwescan/models/slm --negatives NEG --device cuda --out scores.json

Labelled records are scored with ``detect`` at threshold 0, so every unit also gets its decoded
CWE, the CWE path's probability and a line (the inputs of the CWE-head threshold); corpus units
are scored only (P(vulnerable) of their most suspicious window).
"""

from __future__ import annotations

import json
import time
from pathlib import Path


def score_labelled(det, records) -> list[dict]:
    """One row per record: labels, the record score (max over its units) and the CWE, CWE
    confidence and line of its top unit."""
    from cwescan.core.units import parse_source
    from cwescan.scan.combine import raw_score

    rows = []
    for start in range(0, len(records), 256):
        batch = records[start : start + 256]
        units = [u for r in batch for u in parse_source(r.id, r.code).units]
        findings = det.detect(units)
        top: dict[str, object] = {}
        for f in findings:
            if f.detector != det.name:
                continue
            best = top.get(f.path)
            if best is None or raw_score(f) > raw_score(best):
                top[f.path] = f
        for r in batch:
            f = top.get(r.id)
            rows.append({
                "id": r.id, "vulnerable": r.vulnerable, "cwes": r.cwes, "lines": r.lines,
                # raw: a shipped card's calibration would turn confidences into probabilities
                "score": raw_score(f) if f else 0.0, "cwe": f.cwe if f else None,
                "cwe_confidence": f.extra.get("cwe_confidence") if f else None, "line": f.start_line if f else None,
                "line_confidence": f.extra.get("line_confidence") if f else None,
                "code_lines": len(r.code.split("\n")),
            })
    return rows


def score_negatives(det, records) -> list[dict]:
    from cwescan.core.units import parse_source

    files = [parse_source(r.id, r.code) for r in records]
    units = [u for f in files for u in f.units]
    scores = det.score(units)
    rows, k = [], 0
    for r, f in zip(records, files, strict=True):
        s = scores[k : k + len(f.units)]
        k += len(f.units)
        rows.append({"id": r.id, "score": max(s, default=0.0), "code_lines": len(r.code.split("\n"))})
    return rows


def score_mix(negatives: Path, model: str | None = None, parts=("validation", "test"), device: str = "cpu",
              precision: str = "bf16", batch_size: int = 0, out: Path | None = None, command: str = "",
              detector: str = "slm", labelled_only: bool = False, focus: bool = True,
              focus_tokens: int | None = None, callers_reading_sources: bool = False,
              blank_lines: bool | None = None, number_width: int | None = None) -> dict:
    """Score the labelled parts and the corpus parts with one model (``detector``: slm or
    encoder; ``model``: its folder, default the shipped one); write JSON to ``out``.
    ``labelled_only``: the labelled parts alone (their CWE and line answers, e.g. on a CPU).
    ``focus``: the model reads long units only around their sinks and sources, as a scan does
    (``focus_tokens``: in windows of at most that many tokens centred on them; 0: the fixed
    windows that hold one; None: the model's default); ``callers_reading_sources``: the SLM's
    prompts show only callers that read an untrusted source; ``blank_lines``: they show the
    blank lines of the numbered code too (or not); ``number_width``: its line numbers in that
    many characters (these two: None reads as the SLM's card says)."""
    from cwescan.data.negatives import manifest_digest, read_manifest
    from cwescan.data.records import load_records
    from cwescan.data.split import load_part, manifest_hash

    if detector == "slm":
        from cwescan.detectors.slm import SLMDetector

        det = SLMDetector(precision=precision, device=device, model=model, threshold=0.0,
                          batch_size=batch_size or (16 if device == "cpu" else 128), focus=focus)
        folder = det.adapter_dir
        det.options.callers_reading_sources = callers_reading_sources
        if blank_lines is not None:
            det.options.blank_lines = blank_lines
        if number_width is not None:
            det.options.number_width = number_width
        blank_lines, number_width = det.options.blank_lines, det.options.number_width  # as scored
    elif detector == "encoder":
        from cwescan.detectors.encoder import EncoderDetector

        det = EncoderDetector(precision=precision, device=device, threshold=0.0,
                              model_path=model, focus=focus)
        folder = det.directory
    else:
        raise ValueError(f"eval-mix scores the slm or the encoder, not {detector!r}")
    det.set_focus(focus, focus_tokens)
    negatives = Path(negatives)
    manifest = read_manifest(negatives)
    result = {"command": command, "detector": detector, "adapter": str(folder), "adapter_files": det.card.get("files"),
              "split_manifest_hash": manifest_hash(), "negatives_manifest_hash": manifest_digest(manifest),
              "precision": precision, "device": device, "focus": focus, "focus_tokens": focus_tokens,
              "callers_reading_sources": callers_reading_sources, "blank_lines": blank_lines,
              "number_width": number_width,
              "labelled": {}, "negatives": {}, "seconds": {}}
    for part in parts:
        t0 = time.perf_counter()
        result["labelled"][part] = score_labelled(det, load_part(part))
        if not labelled_only:
            result["negatives"][part] = score_negatives(det, load_records(negatives / f"{part}.jsonl"))
        result["seconds"][part] = round(time.perf_counter() - t0, 1)
        print(f"{part}: {len(result['labelled'][part])} records, {len(result['negatives'].get(part, []))} negative units, "
              f"{result['seconds'][part]} s", flush=True)
    if out:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result) + "\n")
    return result
