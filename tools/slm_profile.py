"""Where the SLM's score path spends its CPU time: torch.profiler's operator table for the scan's
scoring call (``score_and_decode``: prefix cache, batches, decoding of flagged windows) over the
windows of the first N units of the labelled test part, after timed rounds of the same call (CPU
seconds, so other work on the machine counts less).

    python tools/slm_profile.py --precision bf16 --units 48 --threads 2 [--out profile.txt]
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--units", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    from cwescan.core.units import parse_source
    from cwescan.data.split import load_part
    from cwescan.detectors.slm import SLMDetector
    from cwescan.ml.slm.infer import score_and_decode

    torch.set_num_threads(args.threads)
    det = SLMDetector(precision=args.precision)
    det.load()
    units = [u for r in load_part("test") for u in parse_source(r.id, r.code).units][: args.units]
    windows = [w for u in units for w in det.builder.unit_windows(u)]
    prompts = [w.prompt for w in windows]
    lines = [list(range(w.first_line, w.last_line + 1)) for w in windows]

    def call() -> dict:
        counts: dict = {}
        score_and_decode(det.model, det.tokenizer, prompts, det.threshold, det.cwe_vocab, lines, det.batch_size,
                         "cpu", counts=counts)
        return counts

    report = [f"{len(units)} units, {len(prompts)} windows, precision {args.precision}, {args.threads} threads"]
    call()  # warm-up: kernels for these shapes, the prefix cache
    for r in range(args.rounds):
        c0, t0 = time.process_time(), time.perf_counter()
        counts = call()
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        report.append(f"round {r}: {cpu:.2f} CPU-s, {wall:.2f} s wall, "
                      f"{counts['tokens'] / cpu:.0f} tokens per CPU-s ({counts['tokens']} tokens)")
        print(report[-1], flush=True)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        call()
    report.append("\n" + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=22))
    text = "\n".join(report)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
