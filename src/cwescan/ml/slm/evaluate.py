"""Evaluate the shipped SLM on a part of the split in one pass, the way `cwescan eval` does
(same runner, same outputs), and count the parse rate of the constrained ``generate`` answers
over every unit of that part (the windows' scores and decodes are cached, so the answers cost
almost nothing after the evaluation).

    python3 -m cwescan.ml.slm.evaluate --part test --precision bf16 --out /tmp/eval-slm
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> dict:
    from cwescan.data.split import load_part, manifest_hash
    from cwescan.detectors.slm import SLMDetector
    from cwescan.evaluate.report import main_table, write_outputs
    from cwescan.evaluate.runner import run_detector, sample
    from cwescan.core.units import parse_source

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", default="test")
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default=None, help="adapter folder (default: the shipped one)")
    ap.add_argument("--batch-size", type=int, default=0, help="windows per forward pass (default 16 on CPU, 128 on a GPU)")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("out/eval-slm"))
    a = ap.parse_args(argv)

    recs = sample(load_part(a.part), a.limit or None)
    det = SLMDetector(precision=a.precision, device=a.device, model=a.model,
                      batch_size=a.batch_size or (16 if a.device == "cpu" else 128))
    t0 = time.perf_counter()
    run = run_detector("slm", det, recs, batch_size=64)
    cmd = f"python3 -m cwescan.ml.slm.evaluate --part {a.part} --precision {a.precision} --device {a.device}" + (
        f" --model {a.model}" if a.model else "") + (f" --limit {a.limit}" if a.limit else "")
    meta = {"command": cmd, "input": f"the {a.part} part of the split", "split": a.part,
            "manifest_hash": manifest_hash(), "records": len(recs), "seconds": round(time.perf_counter() - t0, 2)}
    write_outputs(recs, {"slm": run}, meta, a.out)
    print(main_table({"slm": run}))
    units = [u for r in recs for u in parse_source(r.id, r.code).units]
    answers = det.generate(units)
    parse = {"answers": len(answers), "parsed": det.stats["parsed"], "units": len(units)}
    summary = {
        "records": len(recs),
        "seconds": meta["seconds"],
        "precision": a.precision,
        "device": a.device,
        "adapter": str(det.adapter_dir),
        "threshold": det.threshold,
        "binary": run.metrics["binary"],
        "ranking": run.metrics["ranking"],
        "pairwise": run.metrics["pairwise"],
        "typed": run.metrics["typed"],
        "generate_parse": parse,
        "windowing": {k: det.stats[k] for k in ("units", "windows", "windowed_units", "truncated_windows", "with_callers")},
    }
    (a.out / "slm-summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    print(f"generate: {parse['parsed']}/{parse['answers']} answers parsed over {parse['units']} units of the {a.part} part")
    print(json.dumps(summary["windowing"]))
    return summary


if __name__ == "__main__":
    main()
