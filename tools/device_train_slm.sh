#!/usr/bin/env bash
# Train and evaluate SLM adapters on the lent GPU (the `device` tool), carrying the base weights
# and the wheels the device lacks in pieces.
#
# One call ships the working tree (~30 MiB) plus carried paths, at most 64 MiB, and a warm device
# keeps /root/stash between calls (~30 s idle), so the files travel as ~32 MiB pieces over
# consecutive calls, and training runs in the background on the device while the calls go on:
#
#   here:    tools/device_train_slm.sh prepare            # pieces -> .carry/slm/c01 ... cNN (+ pieces.txt)
#   device:  bash tools/device_train_slm.sh stash c01     # carry=[".carry/slm/c01"], one call per piece dir
#   device:  bash tools/device_train_slm.sh launch smol   # once smol's pieces are stashed: runs a and b
#   device:  bash tools/device_train_slm.sh launch qwen   # once qwen's pieces are stashed: LoRA and QLoRA
#   device:  bash tools/device_train_slm.sh poll 500      # progress; returns when all jobs end or after N s
#   device:  bash tools/device_train_slm.sh collect       # results (adapters, cards, logs, test metrics) -> $OUT
#
# Each job runs `cwescan train slm` with a recipe from recipes/ and then evaluates the adapter on
# the test part (`cwescan eval-slm --part test --device cuda --precision bf16`).
# The smol recipe runs twice (a, b) to check that the training command reproduces its test F1.
# Jobs run from a copy of the repository in the stash, so they outlive the call that started them.
set -euo pipefail
. "$(dirname "$0")/device_jobs.sh"
STASH=/root/stash/slm
PIECE=${PIECE:-32M}
stage=${1:?usage: device_train_slm.sh prepare|stash DIR|launch smol|qwen [JOBS]|poll SECONDS|collect}

# name, file in the stash, sha256 (checked after joining)
FILES="smol SmolLM2-135M-Instruct.Q4_1.gguf b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
qwen qwen2.5-coder-0.5b-instruct-q4_k_m.gguf 1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"

join_file() {  # join the pieces of $1 in the stash and check its hash
    local name=$1 file sha
    read -r _ file sha < <(grep "^$name " <<<"$FILES")
    device_join "$STASH/pieces" "$STASH/$file" "$sha"
    echo "$STASH/$file"
}

env_for() {  # environment of a job using base model $1 (smol|qwen) and the code copy $2
    local gguf
    gguf=$(join_file "$1")
    echo "PYTHONPATH=$2/src:/tmp/site PYTHONUNBUFFERED=1 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True CWESCAN_BASE_GGUF=$gguf CWESCAN_CACHE=$STASH/cache CWESCAN_DATA=$STASH/data CWESCAN_SPLITS=$2/data/splits"
}

job_cmd() {  # name recipe: train, then evaluate on the test part
    local run=$STASH/runs/$1
    echo "rm -rf $run && mkdir -p $run && { python3 -m cwescan train slm --recipe $2 --out $run/adapter --device cuda &&
        python3 -m cwescan eval-slm --part test --device cuda --precision bf16 --model $run/adapter --out $run/eval-test &&
        echo JOB-DONE || echo JOB-FAILED; } > $run/log.txt 2>&1"
}

start_jobs() {  # env code "name recipe" ...: the jobs one after another, in the background
    local env=$1 code=$2 cmds="" name recipe
    shift 2
    for spec in "$@"; do
        read -r name recipe <<<"$spec"
        cmds="$cmds $(job_cmd "$name" "$recipe");"
    done
    (cd "$code" && env $env setsid nohup bash -c "$cmds" > /dev/null 2>&1 < /dev/null &)
    echo "started: $*"
}

case "$stage" in
prepare)
    rm -rf .carry/slm && mkdir -p .carry/slm/pieces
    smol=$(device_smollm2_gguf)
    qwen=$(python3 -c 'from cwescan.ml.slm.base import locate_gguf;print(locate_gguf("qwen2.5-coder-0.5b"))')
    device_wheels .carry/slm/wheels gguf==0.19.0 bitsandbytes==0.50.2
    mkdir -p .carry/slm/data
    for part in train validation test; do cwescan data export --part $part --out .carry/slm/data/$part.jsonl; done
    tar -C .carry/slm -cf .carry/slm/pieces/setup.tar data wheels
    (cd .carry/slm/pieces && split -b "$PIECE" -d -a 2 setup.tar setup.tar.part && rm setup.tar)
    for f in "$smol" "$qwen"; do split -b "$PIECE" -d -a 2 "$f" ".carry/slm/pieces/$(basename "$f").part"; done
    # one piece per carried folder, in the order the stages need them (setup, smol, qwen)
    n=0
    for p in $(ls .carry/slm/pieces | grep '^setup'; ls .carry/slm/pieces | grep '^Smol'; ls .carry/slm/pieces | grep '^qwen'); do
        n=$((n + 1)); d=.carry/slm/c$(printf %02d $n); mkdir -p "$d"; mv ".carry/slm/pieces/$p" "$d/"
    done
    rm -rf .carry/slm/pieces .carry/slm/data .carry/slm/wheels
    du -sh .carry/slm/c* | tr '\n' ' '; echo
    ;;
stash)
    mkdir -p "$STASH/pieces"
    cp ".carry/slm/$2"/* "$STASH/pieces/"
    if [ ! -d "$STASH/runs" ]; then
        nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv,noheader
    fi
    ls "$STASH/pieces" | tr '\n' ' '; echo
    ;;
launch)
    if [ ! -d "$STASH/data" ]; then
        cat "$STASH"/pieces/setup.tar.part* | tar -C "$STASH" -xf -
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$STASH"/wheels/*.whl
    fi
    code=$STASH/code-$2-$(date +%s)  # one copy per launch: a later launch must not pull files from under running jobs
    mkdir -p "$code" && cp -r src recipes data "$code/"
    env=$(env_for "$2" "$code")
    # convert the base once before the jobs start, so two jobs never race on the cache
    (cd "$code" && env $env python3 -c "from cwescan.ml.slm.base import converted_dir; import sys; print(converted_dir(sys.argv[1]))" \
        "$([ "$2" = smol ] && echo smollm2-135m || echo qwen2.5-coder-0.5b)" 2>&1 | tail -1)
    # smol: runs a then b of the same recipe (b checks reproduction; two at once do not fit in
    # 80 GB); qwen: LoRA (QLoRA with `launch qwen-qlora`)
    case $2 in
    smol) start_jobs "$env" "$code" "smol-a recipes/slm-smollm2-lora.yaml" "smol-b recipes/slm-smollm2-lora.yaml" ;;
    qwen) start_jobs "$env" "$code" "qwen-lora recipes/slm-qwen-coder-lora.yaml" ;;
    esac
    ;;
poll)
    device_poll "$STASH/runs" "${2:-60}" 4
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
    ;;
collect)
    out=${OUT:-runs}
    (cd "$STASH/runs" && tar --exclude='*/adapter/logs' -czf "$out/runs.tgz" . && cd "$out" && split -b 15M -d -a 1 runs.tgz runs.tgz.part && rm runs.tgz)
    ls -la "$out"
    ;;
*)
    echo "unknown stage $stage" >&2; exit 2 ;;
esac
