"""The SLM's scan scoring call against its bare forward pass, on the same windows of real code.

The cold scan's scoring passes ran ~1,550 tokens a second on 2 AMX cores where the bare forward
pass of 5 x 384 random tokens ran ~2,700-3,000. This probe times, on one set of windows (those of
the first ``--units`` units of a source tree that triage sends to a model, read around their
sinks and sources as the scan reads them, or of the labelled test part; the shipped SLM at
``--precision``):

- ``scan``: ``score_and_decode`` as the scan calls it (prefix cache, decoding of flagged windows);
- ``score only``: the same without decoding (no window reaches the cut);
- ``no prefix``: the whole prompts, no cache: the bare forward pass over the same batches;
- ``packed``: ``score only`` with every ``nn.Linear`` of the decoder replaced by oneDNN weights
  packed once (``torch.ops.mkldnn``), which ran the bare pass 27 % faster at a fixed shape;

each as tokens per CPU-second (best of ``--rounds``), then torch.profiler's operator table of
``score only`` and of ``no prefix``, and how far the packed scores move from the plain ones.

    taskset -c 0,1 python tools/slm_score_path_probe.py TREE|test --units 120 --threads 2 --out probe.txt
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


def windows_of(source: str, n_units: int, det):
    """(units, prompts, allowed lines) of the first ``n_units`` units of ``source``: a source
    tree's units that triage sends to a model, read around their sinks and sources as the scan
    reads them; or, for ``test``, the labelled test part's units, whole."""
    from cwescan.core.units import parse_source
    from cwescan.scan.triage import FIRST_STAGE_KINDS, focus_lines, triage

    if source == "test":
        from cwescan.data.split import load_part

        units = [u for r in load_part("test") for u in parse_source(r.id, r.code).units][:n_units]
        focus = [()] * len(units)
    else:
        units = []
        for path in sorted(Path(source).rglob("*.py")):
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            found = parse_source(str(path), text).units
            units += [u for u, v in zip(found, triage(found), strict=True) if v.kind in FIRST_STAGE_KINDS]
            if len(units) >= n_units:
                break
        units = units[:n_units]
        focus = [focus_lines(u) for u in units]
    flat = [w for ws in det.builder.many_unit_windows(units, focus=focus) for w in ws]
    return len(units), [w.prompt for w in flat], [list(range(w.first_line, w.last_line + 1)) for w in flat]


class PackedLinear(torch.nn.Module):
    """An ``nn.Linear`` whose weight oneDNN lays out once, not on every call."""

    def __init__(self, lin: torch.nn.Linear, rows_hint: int) -> None:
        super().__init__()
        self.weight = torch.ops.mkldnn._reorder_linear_weight(lin.weight.detach(), rows_hint)
        self.bias = None if lin.bias is None else lin.bias.detach()

    def forward(self, x):
        shape = x.shape
        y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, shape[-1]), self.weight, self.bias, "none", [], "")
        return y.view(*shape[:-1], y.shape[-1])


def pack_linears(decoder, rows_hint: int = 2048) -> None:
    """Every ``nn.Linear`` of a Llama decoder's layers replaced by a ``PackedLinear``."""
    for layer in decoder.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name, child in list(parent.named_children()):
                if isinstance(child, torch.nn.Linear):
                    setattr(parent, name, PackedLinear(child, rows_hint))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", help="a source tree, or test: the labelled test part")
    ap.add_argument("--units", type=int, default=120)
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from torch.profiler import ProfilerActivity, profile

    from cwescan.detectors.slm import SLMDetector
    from cwescan.ml.slm.infer import score_and_decode

    torch.set_num_threads(args.threads)
    det = SLMDetector(precision=args.precision)
    det.load()
    n_units, prompts, lines = windows_of(args.source, args.units, det)
    report = [f"{n_units} units, {len(prompts)} windows, precision {args.precision}, {args.threads} threads, "
              f"batch {det.batch_size} rows"]
    print(report[0], flush=True)

    def call(cut: float, prefix: bool) -> tuple[list[float], dict]:
        counts: dict = {}
        out = score_and_decode(det.model, det.tokenizer, prompts, cut, det.cwe_vocab, lines, det.batch_size, "cpu",
                               prefix_cache=prefix, counts=counts)
        return [p for p, _ in out], counts

    variants = {"scan": (det.threshold, True), "score only": (float("inf"), True),
                "no prefix": (float("inf"), False)}
    scores = {}

    def timed(name: str, cut: float, prefix: bool) -> None:
        call(cut, prefix)  # warm-up: kernels for these shapes, the prefix cache
        best = None
        for _ in range(args.rounds):
            c0, t0 = time.process_time(), time.perf_counter()
            scores[name], counts = call(cut, prefix)
            cpu, wall = time.process_time() - c0, time.perf_counter() - t0
            best = min(best or (cpu, wall, counts), (cpu, wall, counts), key=lambda r: r[0])
        cpu, wall, counts = best
        tokens = counts["tokens"] + counts.get("prefix_tokens", 0)
        report.append(f"{name:12s} {cpu:7.2f} CPU-s {wall:7.2f} s wall | {tokens / cpu:6.0f} prompt tokens per CPU-s "
                      f"(fed {counts['tokens']}, padded {counts['padded_tokens']}, from prefix "
                      f"{counts.get('prefix_tokens', 0)}) | forward {counts.get('forward_s', 0):.2f} s, "
                      f"decode {counts.get('decode_s', 0):.2f} s in {counts.get('decode_steps', 0)} steps")
        print(report[-1], flush=True)

    for name, (cut, prefix) in variants.items():
        timed(name, cut, prefix)
    for name in ("score only", "no prefix"):
        cut, prefix = variants[name]
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            call(cut, prefix)
        report.append(f"\n== {name}: operators by self CPU time\n"
                      + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
        print(report[-1], flush=True)
    pack_linears(det.model.model)
    timed("packed", float("inf"), True)
    diff = max(abs(a - b) for a, b in zip(scores["packed"], scores["score only"], strict=True))
    flips = sum((a >= det.threshold) != (b >= det.threshold)
                for a, b in zip(scores["packed"], scores["score only"], strict=True))
    report.append(f"packed vs plain: max |dP| {diff:.4f}, verdicts flipped at the threshold: {flips} of {len(prompts)}")
    diff = max(abs(a - b) for a, b in zip(scores["no prefix"], scores["score only"], strict=True))
    report.append(f"no prefix vs prefix: max |dP| {diff:.4f}")
    print("\n".join(report[-2:]), flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(report) + "\n")


if __name__ == "__main__":
    main()
