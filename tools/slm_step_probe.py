"""Two small timings behind the SLM stage's split on the CPU: one product (576 x 1536, SmolLM2's
gate/up) by batch rows, with nn.Linear's plain weight and with the weight packed once for oneDNN;
one decoding step (8 rows continuing 450 cached tokens, bf16) and one scoring batch (5 x 384
tokens, bf16) of a random-weight SmolLM2 (speed does not depend on the weights):

    taskset -c 0,1 python tools/slm_step_probe.py CONFIG.json out.json

CONFIG.json: the base checkpoint's (``$CWESCAN_CACHE/base/*/config.json``).
"""
import json, sys, time
import torch
from torch import nn
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM, DynamicCache
torch.set_num_threads(2)
res = {}
def best(fn, reps=7):
    fn(); t = 1e9
    for _ in range(reps):
        s = time.perf_counter(); fn(); t = min(t, time.perf_counter() - s)
    return t
for dt in (torch.bfloat16, torch.float32):
    w = torch.randn(1536, 576, dtype=dt)
    pw = torch.ops.mkldnn._reorder_linear_weight(w, 2048)
    for m in (1, 8, 64, 512, 2048):
        x = torch.randn(m, 576, dtype=dt)
        a = best(lambda: F.linear(x, w)); b = best(lambda: torch.ops.mkldnn._linear_pointwise(x, pw, None, "none", [], ""))
        res[f"{dt} linear 576x1536 M={m}"] = {"F.linear_ms": round(a * 1e3, 3), "packed_ms": round(b * 1e3, 3)}
        print(f"{dt} M={m}: F.linear {a*1e3:.3f} ms, packed {b*1e3:.3f} ms", flush=True)
cfg = LlamaConfig(**json.load(open(sys.argv[1]))); cfg._attn_implementation = "sdpa"
torch.manual_seed(0)
model = LlamaForCausalLM(cfg).eval().to(torch.bfloat16)
rows, ctx = 8, 450
x = torch.randint(3, 40000, (rows, ctx))
with torch.inference_mode():
    out = model(input_ids=x, use_cache=True)
    cache = out.past_key_values
    def step():
        c = DynamicCache()
        for i, layer in enumerate(cache.layers):
            c.update(layer.keys, layer.values, i)
        model(input_ids=torch.randint(3, 40000, (rows, 1)), past_key_values=c, use_cache=True,
              position_ids=torch.full((rows, 1), ctx))
    t = best(step, 5)
    print(f"decode step bf16, {rows} rows over {ctx} cached tokens: {t*1e3:.1f} ms", flush=True)
    res["decode_step_bf16_ms"] = round(t * 1e3, 1)
    def score():
        model.model(input_ids=torch.randint(3, 40000, (5, 384)), use_cache=False)
    t2 = best(score, 3); res["score_batch_5x384_bf16_ms"] = round(t2 * 1e3, 1)
    print(f"score batch 5x384 bf16: {t2*1e3:.1f} ms", flush=True)
json.dump(res, open(sys.argv[2], "w"), indent=1)
