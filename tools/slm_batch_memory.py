"""Peak resident memory and time of the SLM reading the same long units with and without the
CPU batch token cap (``cwescan.ml.slm.infer.CPU_BATCH_TOKENS``), each in a fresh process so
the peaks do not mix; the order alternates (cap, none, cap, none) so drift shows.

    python3 tools/slm_batch_memory.py --tree runs/bench-scan/tree --units 24 [--precision bf16]

The units: the longest function units of the tree's first files that call something (the kind
triage sends to the model). The peak is VmHWM after the model is loaded and reset
(/proc/self/clear_refs), so it is the scoring's own."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def child(tree: Path, n: int, cap: str, precision: str | None) -> dict:
    import torch

    from cwescan.core.process import peak_rss_mb
    from cwescan.core.units import parse_source
    from cwescan.detectors.slm import SLMDetector
    from cwescan.ml.slm import infer

    infer.CPU_BATCH_TOKENS = None if cap == "none" else int(cap)
    units = []
    for f in sorted(tree.rglob("*.py"))[:300]:
        try:
            units += [u for u in parse_source(str(f), f.read_text(encoding="utf-8")).units
                      if u.kind == "function" and "(" in u.code]
        except (UnicodeDecodeError, SyntaxError, ValueError):
            continue
    units = sorted(units, key=lambda u: -len(u.code))[:n]
    det = SLMDetector(precision=precision) if precision else SLMDetector()
    det.load()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
    before = peak_rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    scores = det.score(units)
    return {"cap": cap, "units": len(units), "wall_s": round(time.perf_counter() - t0, 1),
            "cpu_s": round(time.process_time() - c0, 1), "rss_before_mb": round(before),
            "peak_mb": round(peak_rss_mb()), "threads": torch.get_num_threads(),
            "scores": [round(s, 4) for s in scores]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree", type=Path, required=True)
    ap.add_argument("--units", type=int, default=24)
    ap.add_argument("--precision", default=None)
    ap.add_argument("--caps", default="4096,none,4096,none")
    ap.add_argument("--child", default=None)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.tree, a.units, a.child, a.precision)))
        return
    rows = []
    for cap in a.caps.split(","):
        cmd = [sys.executable, __file__, "--tree", str(a.tree), "--units", str(a.units), "--child", cap]
        if a.precision:
            cmd += ["--precision", a.precision]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        rows.append(json.loads(out))
        r = rows[-1]
        print(f"cap {r['cap']:>5}: {r['units']} units, wall {r['wall_s']} s, CPU {r['cpu_s']} s, "
              f"RSS {r['rss_before_mb']} MB -> peak {r['peak_mb']} MB (+{r['peak_mb'] - r['rss_before_mb']})", flush=True)
    same = all(abs(x - y) < 2e-3 for x, y in zip(rows[0]["scores"], rows[1]["scores"]))
    print(f"scores equal within 2e-3 between the first two runs: {same}")


if __name__ == "__main__":
    main()
