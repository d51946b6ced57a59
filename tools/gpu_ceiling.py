"""Where does the SLM's GPU time go? The experiments behind docs/BENCHMARKS.md "GPU matrix".

Not a benchmark row: the decoder alone, with random SmolLM2-135M weights (speed does not depend
on the values), over the test part's real prompt windows, so it needs no GGUF on the device.

    here:    python3 tools/gpu_ceiling.py prepare .carry/exp        # windows, config, tokenizer (~6 MB)
             (copy torchao into .carry/exp/site for the fp8 / int8 rows)
    device:  run(command="PYTHONPATH=$PWD/.carry/exp/site:$PWD/src python3 tools/gpu_ceiling.py ceiling .carry/exp",
                 carry=[".carry/exp"])
             run(command="PYTHONPATH=$PWD/src python3 tools/gpu_ceiling.py batch1 .carry/exp", carry=[".carry/exp"])

ceiling: host costs (comment stripping in 1 / 4 / 8 / 15 processes, batch tokenisation) and the
decoder's units/s eager (bf16 at batches 256 / 1,024 / 4,096, fp16), under torch.compile, and with
torchao fp8 / int8 weight-only, each timed on a second pass over the windows x REP.
batch1: one window at a time, each length seen for the first time and again, fp32 / bf16 / fp16,
with default attention and with the math kernel: the cuDNN per-shape plan cost.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor

sys.path.insert(0, "src")
REP = int(os.environ.get("REP", 4))


def prepare(out: str) -> None:
    from cwescan.bench.models import units_of
    from cwescan.data.split import load_part
    from cwescan.detectors import create
    from cwescan.ml.slm import infer
    from cwescan.ml.slm.prompt import callers_of

    os.makedirs(out, exist_ok=True)
    units, _ = units_of(load_part("test"))
    det = create("slm", precision="bf16")
    det.load()
    windows = det._windows(units, {}, [det._focus(u, {}) for u in units])
    ids = infer.answer_token_ids(det.tokenizer)
    seqs = [s + ids.open for s in infer.encode_prompts(det.tokenizer, [w.prompt for ws in windows for w in ws])]
    texts = [[u.code, [c.code for c in callers_of(u)]] for u in units]
    with open(os.path.join(out, "data.json"), "w") as f:
        json.dump({"units": len(units), "seqs": seqs, "texts": texts}, f)
    det.tokenizer.save_pretrained(out)
    det.model.config.save_pretrained(out)
    print(f"{len(units)} units, {len(seqs)} windows -> {out}")


def _strip(pair):
    from cwescan.ml.slm.prompt import strip_text

    return strip_text(tuple(pair))


def host(data: dict, here: str) -> None:
    texts = data["texts"] * REP
    t = time.perf_counter()
    [_strip(p) for p in texts]
    print(f"strip 1 process: {1000 * (time.perf_counter() - t) / len(texts):.3f} ms/unit", flush=True)
    for n in (4, 8, 15):
        with ProcessPoolExecutor(n, mp_context=mp.get_context("spawn")) as ex:
            list(ex.map(_strip, texts[:64], chunksize=8))  # start the workers
            t = time.perf_counter()
            list(ex.map(_strip, texts, chunksize=32))
            print(f"strip {n} processes: {1000 * (time.perf_counter() - t) / len(texts):.3f} ms/unit", flush=True)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(here, "tokenizer.json"))
    t = time.perf_counter()
    tok.encode_batch_fast([c for c, _ in texts])
    print(f"encode_batch_fast: {1000 * (time.perf_counter() - t) / len(texts):.3f} ms/unit", flush=True)


def ceiling(here: str) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from cwescan.bench.roofline import gemm_peak
    from cwescan.ml.slm.infer import Packed

    data = json.load(open(os.path.join(here, "data.json")))
    host(data, here)
    cfg = AutoConfig.from_pretrained(here)
    seqs, units = data["seqs"] * REP, data["units"] * REP
    real = sum(map(len, seqs))
    peak = gemm_peak("bf16", "cuda", sizes=(8192,), reps=10)
    print(f"bf16 GEMM peak {peak / 1e12:.0f} TFLOP/s; {len(seqs)} windows, {units} units, {real} tokens", flush=True)

    def run(dec, rows, batch, tag):
        flop_token = 2 * sum(m.in_features * m.out_features for m in dec.modules() if hasattr(m, "in_features"))

        def once():
            packed = Packed(seqs, 0, "cuda")
            outs = []
            with torch.inference_mode():
                for s, e in packed.spans(batch):
                    x, lens, _ = packed.batch(s, e)
                    h = dec(input_ids=x, use_cache=False).last_hidden_state
                    outs.append(h[torch.arange(e - s, device="cuda"), lens - 1].float() @ rows.T)
            torch.cuda.synchronize()
            return torch.cat(outs).cpu()

        once()  # first pass: kernel selection, compilation
        t = time.perf_counter()
        once()
        dt = time.perf_counter() - t
        print(f"{tag:28s} b={batch:5d}: {units / dt:8.0f} units/s {real / dt / 1e6:6.2f} M tok/s  "
              f"matmul share of peak {real * flop_token / dt / peak:5.1%}", flush=True)

    def fresh(dtype=torch.bfloat16):
        torch.manual_seed(0)
        m = AutoModelForCausalLM.from_config(cfg).to("cuda", dtype).eval()
        return m.model, m.lm_head.weight[:2].float()

    for b in (256, 1024, 4096):
        run(*fresh(), b, "eager bf16")
    run(*fresh(torch.float16), 1024, "eager fp16")
    dec, rows = fresh()
    t = time.perf_counter()
    run(torch.compile(dec, dynamic=True), rows, 1024, "compiled bf16 (dynamic)")
    print(f"  (compile + two passes: {time.perf_counter() - t:.0f} s)", flush=True)
    try:
        import torchao.quantization as q

        for name, config in (("torchao fp8 dynamic", q.Float8DynamicActivationFloat8WeightConfig()),
                             ("torchao int8 weight-only", q.Int8WeightOnlyConfig())):
            dec, rows = fresh()
            q.quantize_(dec, config)
            run(dec, rows, 1024, name)
    except Exception as e:  # noqa: BLE001 - torchao not carried, or no kernel for this GPU
        print("torchao rows not run:", repr(e)[:200], flush=True)


def batch1(here: str) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    data = json.load(open(os.path.join(here, "data.json")))
    cfg = AutoConfig.from_pretrained(here)
    seqs = sorted(data["seqs"], key=lambda s: hash(tuple(s[-8:])))[:64]

    def latencies(dec) -> str:
        out = []
        for s in seqs:
            x = torch.tensor([s], device="cuda")
            torch.cuda.synchronize()
            t = time.perf_counter()
            with torch.inference_mode():
                dec(input_ids=x, use_cache=False).last_hidden_state[0, -1].float().cpu()
            out.append(1000 * (time.perf_counter() - t))
        return f"p50 {statistics.median(out):6.1f} p95 {statistics.quantiles(out, n=20)[18]:6.1f} ms"

    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        dec = AutoModelForCausalLM.from_config(cfg).to("cuda", dtype).eval().model
        print(f"{dtype}: first time each length {latencies(dec)} | again {latencies(dec)}", flush=True)
        with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
            print(f"{dtype}: math attention {latencies(dec)}", flush=True)


if __name__ == "__main__":
    stage, folder = sys.argv[1], sys.argv[2]
    {"prepare": prepare, "ceiling": ceiling, "batch1": batch1}[stage](folder)
