"""Evaluate the shipped SLM on a part of the split in one pass, the way `cwescan eval` does
(same runner, same outputs), and count the parse rate of the constrained ``generate`` answers
over every unit of that part (the windows' scores and decodes are cached, so the answers cost
almost nothing after the evaluation).

    cwescan eval-slm --part test --precision bf16 --out /tmp/eval-slm
"""

from __future__ import annotations

import json
import time
from pathlib import Path


def evaluate_slm_part(part: str = "test", precision: str | None = None, device: str = "cpu",
                      model: str | None = None, batch_size: int = 0, limit: int = 0,
                      out: Path = Path("out/eval-slm")) -> dict:
    """Evaluate the SLM on ``part``; write the evaluation outputs and ``slm-summary.json`` to
    ``out``. ``precision`` None: the same default as ``cwescan scan``."""
    from cwescan.data.split import load_part, manifest_hash
    from cwescan.detectors import create
    from cwescan.ml.precision import default_precision
    from cwescan.evaluate.report import main_table, write_outputs
    from cwescan.evaluate.runner import run_detector, sample
    from cwescan.core.units import parse_source

    precision = precision or default_precision("slm")
    recs = sample(load_part(part), limit or None)
    det = create("slm", precision=precision, device=device, model=model,
                 batch_size=batch_size or (16 if device == "cpu" else 128))
    t0 = time.perf_counter()
    run = run_detector("slm", det, recs, batch_size=64)
    cmd = f"cwescan eval-slm --part {part} --precision {precision} --device {device}" + (
        f" --model {model}" if model else "") + (f" --limit {limit}" if limit else "")
    meta = {"command": cmd, "input": f"the {part} part of the split", "split": part,
            "manifest_hash": manifest_hash(), "records": len(recs), "seconds": round(time.perf_counter() - t0, 2)}
    write_outputs(recs, {"slm": run}, meta, out)
    print(main_table({"slm": run}))
    units = [u for r in recs for u in parse_source(r.id, r.code).units]
    answers = det.generate(units)
    parse = {"answers": len(answers), "parsed": det.stats["parsed"], "units": len(units)}
    summary = {
        "records": len(recs),
        "seconds": meta["seconds"],
        "precision": precision,
        "device": device,
        "adapter": str(det.adapter_dir),
        "threshold": det.threshold,
        "binary": run.metrics["binary"],
        "ranking": run.metrics["ranking"],
        "pairwise": run.metrics["pairwise"],
        "typed": run.metrics["typed"],
        "generate_parse": parse,
        "windowing": {k: det.stats[k] for k in ("units", "windows", "windowed_units", "truncated_windows", "with_callers")},
    }
    (out / "slm-summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    print(f"generate: {parse['parsed']}/{parse['answers']} answers parsed over {parse['units']} units of the {part} part")
    print(json.dumps(summary["windowing"]))
    return summary

