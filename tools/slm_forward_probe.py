"""How fast SmolLM2's bare forward pass runs on the CPU, by the tokens a batch holds, with
nn.Linear as is and with its weights packed once for oneDNN (``torch.ops.mkldnn``), at bf16 and
fp32; then torch.profiler's operator table for two batch sizes. The weights are random (speed
does not depend on them), so nothing but a config.json is needed:

    taskset -c 0,1 python tools/slm_forward_probe.py CONFIG.json 2 out.json

CONFIG.json: the base checkpoint's (``$CWESCAN_CACHE/base/*/config.json``). No prefix cache, no
decoding, no prompt work: the ceiling of the scan's SLM stage, not the stage itself.
"""
import json, resource, sys, time
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from slm_score_path_probe import pack_linears  # tools/ is this script's own folder on sys.path

torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
cfg = LlamaConfig(**json.load(open(sys.argv[1])))
cfg._attn_implementation = "sdpa"
torch.manual_seed(0)
FLOPS_PER_TOKEN = 2 * 106_168_320
WIDTH = 384


def run(dec, tokens, reps=3):
    rows = max(1, tokens // WIDTH)
    x = torch.randint(3, 40000, (rows, WIDTH))
    with torch.inference_mode():
        out = dec(input_ids=x, use_cache=False).last_hidden_state
        best_w = best_c = 1e9
        for _ in range(reps):
            c, t = time.process_time(), time.perf_counter()
            dec(input_ids=x, use_cache=False)
            best_w, best_c = min(best_w, time.perf_counter() - t), min(best_c, time.process_time() - c)
    n = rows * WIDTH
    return out, {"tokens": n, "wall_s": round(best_w, 4), "cpu_s": round(best_c, 4), "tok_per_s": round(n / best_w),
                 "tok_per_cpu_s": round(n / best_c), "tflops": round(FLOPS_PER_TOKEN * n / best_w / 1e12, 3),
                 "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}


results = []
base = LlamaForCausalLM(cfg).eval()
for dtype in (torch.bfloat16, torch.float32):
    model = LlamaForCausalLM(cfg).eval()
    model.load_state_dict(base.state_dict())
    model = model.to(dtype)
    dec = model.model
    sizes = (2048, 4096, 8192, 16384) if dtype == torch.bfloat16 else (2048, 8192)
    check = torch.randint(3, 40000, (2, WIDTH))
    with torch.inference_mode():
        before = dec(input_ids=check, use_cache=False).last_hidden_state.float()
    for tokens in sizes:
        ref, r = run(dec, tokens, 3 if dtype == torch.bfloat16 else 2)
        results.append({"dtype": str(dtype), "variant": "F.linear", **r}); print(results[-1], flush=True)
    pack_linears(dec, 2048)
    with torch.inference_mode():
        after = dec(input_ids=check, use_cache=False).last_hidden_state.float()
    print(dtype, "prepacked vs F.linear max abs diff", (after - before).abs().max().item(),
          "scale", before.abs().max().item(), flush=True)
    for tokens in sizes:
        out, r = run(dec, tokens, 3 if dtype == torch.bfloat16 else 2)
        results.append({"dtype": str(dtype), "variant": "prepacked", **r}); print(results[-1], flush=True)
    if dtype == torch.bfloat16:
        from torch.profiler import profile
        for tokens in (2048, 8192):
            x = torch.randint(3, 40000, (tokens // WIDTH, WIDTH))
            with torch.inference_mode(), profile() as p:
                dec(input_ids=x, use_cache=False)
            print(f"--- profile prepacked bf16 {tokens} tokens")
            print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=14))
json.dump(results, open(sys.argv[3] if len(sys.argv) > 3 else "probe.json", "w"), indent=1)
