"""Run detectors over labelled records and turn their findings into record-level predictions.

One code path for every number: each record is parsed with ``parse_source(record.id, code)``,
its units go to the detector in batches (``detect`` is called once per batch of records), and:

- verdict: vulnerable when the detector reports any finding in the record (detectors apply
  their own threshold before returning findings);
- score: P(vulnerable) = the maximum over the record's units of ``detector.score``. For a
  detector that keeps the base class's ``score`` (derived from findings) the runner derives it
  from the same findings instead of calling ``detect`` a second time; detectors with a native
  ``score`` (the models) have it called once per batch as well, or, when the detector offers
  ``detect_and_score(units) -> (findings, scores)``, that one call gives both (a model then
  runs once per batch instead of twice);
- predicted CWE: the CWE of the most confident finding (ties: earliest line, then CWE id);
- predicted lines: the start lines of all findings.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cwescan.data.records import Record
from cwescan.data.split import pair_key
from cwescan.detectors.base import Detector
from cwescan.evaluate import metrics as M
from cwescan.core.findings import Finding
from cwescan.core.units import parse_source


@dataclass
class Prediction:
    id: str
    flagged: bool
    score: float
    cwe: str | None
    lines: list[int]
    findings: int
    error: str | None = None  # the detector failed on this record (counted as not flagged)


@dataclass
class DetectorRun:
    name: str
    predictions: list[Prediction]
    seconds: float
    metrics: dict = field(default_factory=dict)
    perturbation: dict = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return sum(p.error is not None for p in self.predictions)


def _record_prediction(record: Record, findings: list[Finding], unit_scores: list[float] | None) -> Prediction:
    best = min(findings, key=lambda f: (-f.confidence, f.start_line, f.cwe), default=None)
    if unit_scores is None:
        score = max((f.confidence for f in findings), default=0.0)
    else:
        score = max(unit_scores, default=0.0)
    return Prediction(
        id=record.id,
        flagged=bool(findings),
        score=float(min(1.0, max(0.0, score))),
        cwe=best.cwe if best else None,
        lines=sorted({f.start_line for f in findings}),
        findings=len(findings),
    )


def _predict_batch(detector: Detector, records: Sequence[Record]) -> list[Prediction]:
    files = [parse_source(r.id, r.code) for r in records]
    units = [u for f in files for u in f.units]
    findings, scores = detector.detect_and_score(units)
    scores = list(scores) if scores is not None else None
    by_path: dict[str, list[Finding]] = {r.id: [] for r in records}
    for f in findings:
        if f.path in by_path:
            by_path[f.path].append(f)
    out, k = [], 0
    for r, f in zip(records, files, strict=True):
        unit_scores = scores[k : k + len(f.units)] if scores is not None else None
        k += len(f.units)
        out.append(_record_prediction(r, by_path[r.id], unit_scores))
    return out


def predict(detector: Detector, records: Sequence[Record], batch_size: int = 64) -> list[Prediction]:
    """Predictions in record order. A batch that makes the detector fail is retried record by
    record, so one bad record costs only itself (marked with ``error``, counted as not flagged)."""
    out: list[Prediction] = []
    for start in range(0, len(records), batch_size):
        batch = records[start : start + batch_size]
        try:
            out.extend(_predict_batch(detector, batch))
            continue
        except Exception:  # noqa: BLE001 - isolate the failing record below
            pass
        for r in batch:
            try:
                out.extend(_predict_batch(detector, [r]))
            except Exception as e:  # noqa: BLE001 - a detector bug must not stop the evaluation
                out.append(Prediction(r.id, False, 0.0, None, [], 0, error=f"{type(e).__name__}: {e}"))
    return out


def twin_pairs(records: Sequence[Record]) -> list[tuple[int, int]]:
    """(vulnerable index, fixed index) for records whose ids mark them as the two halves of one
    fix (``...#6:vul`` / ``...#6:fix``)."""
    halves: dict[str, dict[bool, list[int]]] = {}
    for i, r in enumerate(records):
        key = pair_key(r.id)
        if key:
            halves.setdefault(key, {True: [], False: []})[r.vulnerable].append(i)
    return [(h[True][0], h[False][0]) for _, h in sorted(halves.items()) if len(h[True]) == 1 and len(h[False]) == 1]


def _cwe_key(r: Record) -> str:
    return M.family(r.cwes[0]) if r.vulnerable and r.cwes else ("(safe)" if not r.vulnerable else "(no label)")


def compute_metrics(records: Sequence[Record], preds: Sequence[Prediction]) -> dict:
    """Every metric of one detector on one set of records."""
    y = [r.vulnerable for r in records]
    cwes = [r.cwes for r in records]
    flag = [p.flagged for p in preds]
    score = [p.score for p in preds]
    pcwe = [p.cwe for p in preds]
    return {
        "binary": M.binary_metrics(y, flag),
        "ranking": M.ranking_metrics(y, score),
        "typed": M.typed_metrics(y, cwes, flag, pcwe),
        "localisation": M.localisation(y, flag, [r.lines for r in records], [p.lines for p in preds]),
        "pairwise": M.pairwise(twin_pairs(records), score, flag),
        "calibration": M.calibration(y, score),
        "per_source": M.breakdown([r.source for r in records], y, flag),
        "per_cwe": M.per_cwe(y, cwes, flag, pcwe),
        "per_cwe_binary": M.breakdown([_cwe_key(r) for r in records], y, flag),
        "family_confusion": M.family_confusion(y, cwes, flag, pcwe),
        "errors": sum(p.error is not None for p in preds),
    }


Perturbation = Callable[[str], "str | None"]


Variants = dict[str, tuple[list[int], list[Record]]]  # kind -> (record indices, rewritten records)


def perturbed_variants(records: Sequence[Record], perturbations: dict[str, Perturbation]) -> Variants:
    """Each kind's rewrite of every record it applies to (returns changed code); computed once
    and shared by all detectors. Labelled lines are dropped: a rewrite may move them."""
    out: Variants = {}
    for kind, fn in sorted(perturbations.items()):
        idx, variants = [], []
        for i, r in enumerate(records):
            try:
                code = fn(r.code)
            except Exception:  # noqa: BLE001 - a perturbation that fails on a record does not apply
                code = None
            if code is not None and code != r.code:
                idx.append(i)
                variants.append(Record(r.id, r.source, code, r.vulnerable, r.cwes, [], r.license, r.origin))
        out[kind] = (idx, variants)
    return out


def perturbation_effects(
    detector: Detector,
    records: Sequence[Record],
    base: Sequence[Prediction],
    variants: Variants,
    batch_size: int = 64,
) -> dict[str, dict]:
    """Per perturbation kind: on the records it applies to, how often the binary verdict flips,
    and how often a flagged truly-vulnerable record becomes unflagged (vuln -> safe)."""
    out = {}
    for kind, (idx, recs) in variants.items():
        preds = predict(detector, recs, batch_size)
        flips = sum(p.flagged != base[i].flagged for i, p in zip(idx, preds, strict=True))
        caught = [k for k, i in enumerate(idx) if records[i].vulnerable and base[i].flagged]
        lost = sum(not preds[k].flagged for k in caught)
        out[kind] = {
            "applicable": len(idx),
            "flips": flips,
            "flip_rate": M.ratio(flips, len(idx)),
            "caught_vulnerable": len(caught),
            "vuln_to_safe": lost,
            "vuln_to_safe_rate": M.ratio(lost, len(caught)),
        }
    return out


def sample(records: Sequence[Record], limit: int | None) -> list[Record]:
    """A deterministic subset of ``limit`` records (lowest sha256 of id; all sources mixed), in
    the original order."""
    if not limit or limit >= len(records):
        return list(records)
    keep = set(sorted(range(len(records)), key=lambda i: hashlib.sha256(records[i].id.encode()).hexdigest())[:limit])
    return [r for i, r in enumerate(records) if i in keep]


def run_detector(
    name: str,
    detector: Detector,
    records: Sequence[Record],
    batch_size: int = 64,
    perturbations: dict[str, Perturbation] | Variants | None = None,
) -> DetectorRun:
    """Predictions and metrics of one detector; ``perturbations`` are rewrite functions or
    their precomputed ``perturbed_variants``."""
    t0 = time.perf_counter()
    preds = predict(detector, records, batch_size)
    run = DetectorRun(name=name, predictions=preds, seconds=time.perf_counter() - t0)
    run.metrics = compute_metrics(records, preds)
    run.metrics["timing"] = {
        "seconds": round(run.seconds, 3),
        "records_per_s": round(len(records) / run.seconds, 2) if run.seconds > 0 else None,
    }
    if perturbations:
        variants = perturbations
        if any(callable(v) for v in perturbations.values()):
            variants = perturbed_variants(records, perturbations)
        run.perturbation = perturbation_effects(detector, records, preds, variants, batch_size)
        run.metrics["perturbation"] = run.perturbation
    return run
