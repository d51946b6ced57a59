#!/usr/bin/env bash
# `cwescan bench scan --files 1000` on the lent GPU machine: cold scans of the first 1,000
# standard-library files (this machine's, carried as an archive so that every run reads the same
# tree), each CPU run confined to 2 cores (taskset, 2 torch threads) so that the numbers stand
# for a quiet 2-core machine (that CPU has the bf16 matrix units the development machine may
# lack), and the same tree with the models on the GPU. Runs side by side, each on its own cores:
#   cores 0-1  the default scan
#   cores 2-3  SECOND=baseline (default): the same with BASELINE_ARGS (default: --no-focus, the
#              models read whole units; a candidate SLM: --slm-model $STASH/code/data/candidates/NAME,
#              a fitted adapter folder put there for the launch call only, since the working tree
#              and a GGUF piece must stay under what one call carries); SECOND=precisions: `cwescan bench models` of the SLM at
#              fp32 and bf16 (units per CPU-second of each precision on 2 cores);
#              SECOND=without-torchao: the default scan in a virtual environment that has every
#              package of the device's but torchao (the `models` extra a user installs has no
#              torchao; the `bench` extra brings it, and transformers imports it when present)
#   SECOND=alone: the baseline scan after the default one, on cores 0-1, with nothing beside
#              either (with GPU=none: a quiet 2-core machine, measured twice in turn)
#   SECOND=memory: instead of the above, four default scans side by side, cores 0-1 .. 6-7, with
#              the merged model cached beforehand (a user's first scan builds it once), to find
#              where the SLM stage's resident set grows: as is, with oneDNN's primitive cache
#              (one compiled kernel per new matrix shape, 1,024 kept by default) capped at 16
#              and at 0 (off), and with glibc's malloc arenas capped at 2
#   cores 4-5  THIRD_PRECISIONS (unset: none): `cwescan bench models` of the SLM at those
#              precisions (e.g. fp32,bf16,bf16-compiled) on 2 cores; or THIRD_SCAN_ARGS: the
#              default scan with those arguments (e.g. --focus-tokens 512); the GPU runs then get 6-15
#   SCORE_PROBE=N (unset: none): tools/slm_score_path_probe.py over the windows of N units of the
#              tree on cores 4-5 (leave THIRD_* unset)
#   PROFILE=bf16 (unset: none): tools/slm_score_path_probe.py over 48 test-part units at that
#              precision on cores 6-7 (the GPU runs then get 8-15)
#   OVERLAY=DIR: a carried folder of files laid over the code every run imports (a commit's
#              versions of files the checkout has changed since; DIR/remove.txt: paths to drop);
#              BASE_OVERLAY=DIR: the same over a second copy that only the SECOND=baseline run
#              imports, so the code before and after a change run side by side
#   CPU=none skips every CPU run above (GPU work alone)
#   GPU=none: no GPU run
#   cores 4-15 GPU=mix: the second `cwescan eval-mix` run below alone; GPU=bench: the default scan with the models on the GPU, and nothing else (no
#              negatives corpus is built); GPU=scan (default): the same, then `cwescan
#              eval-mix` of MIX_DETECTOR (default slm) on the GPU with focus and with MIX_SECOND_ARGS
#              (default --no-focus; its file is MIX_SECOND_NAME, default whole), and with
#              MIX_THIRD_ARGS when MIX_THIRD_NAME (its file) is set (labelled
#              parts and the negatives corpus, rebuilt on the device from its own site-packages
#              while the pieces travel); GPU=train-slm: two runs (a, b) of `cwescan train slm
#              --recipe $SLM_RECIPE` side by side on the GPU, each followed by `cwescan eval-mix`
#              of its adapter (a second run measures reproduction; SLM_RECIPE_B: run b trains
#              that recipe instead, two recipes compared in one call; TRAIN_RUNS=slm-a: one run
#              only; TRAIN_MIX_ARGS: more eval-mix arguments, e.g. --part test; ALSO_MIX=1: also
#              `cwescan eval-mix` of MIX_DETECTOR, e.g. encoder, on the same corpus, as in GPU=scan)
#
# The SmolLM2 GGUF (98 MB) goes in pieces over consecutive calls while the machine stays warm;
# the wheels the device image lacks, the tree and the labelled data ride in c01:
#   here:    DEST=.carry/bench PIECE=28M tools/device_bench_scan.sh prepare
#   device:  bash tools/device_bench_scan.sh stash .carry/bench/c01     # carry=[".carry/bench/c01"]
#   device:  bash tools/device_bench_scan.sh stash .carry/bench/cNN     # each other piece
#   device:  bash tools/device_bench_scan.sh launch
#   device:  bash tools/device_bench_scan.sh poll 540                   # until the runs finish
#   device:  bash tools/device_bench_scan.sh collect                    # results -> $OUT
set -euo pipefail
. "$(dirname "$0")/device_jobs.sh"
STASH=/root/stash/bench
PIECE=${PIECE:-15M}
GGUF=SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
BASELINE_ARGS=${BASELINE_ARGS:---no-focus}
SECOND=${SECOND:-baseline}
MIX_DETECTOR=${MIX_DETECTOR:-slm}
MIX_SECOND_ARGS=${MIX_SECOND_ARGS:---no-focus}
MIX_SECOND_NAME=${MIX_SECOND_NAME:-whole}
GPU=${GPU:-scan}
SLM_RECIPE=${SLM_RECIPE:-recipes/slm-smollm2-neg100.yaml}
NOAO=/tmp/venv-without-torchao
stage=${1:?usage: device_bench_scan.sh prepare|stash DIR|launch|poll SECONDS|collect}

envs() {  # jobs import from a copy of the code: each call re-syncs the checkout under a running job
    echo "PYTHONPATH=$STASH/code/src:/tmp/site PYTHONUNBUFFERED=1 CWESCAN_BASE_GGUF=$STASH/$GGUF CWESCAN_CACHE=$STASH/cache" \
         "CWESCAN_DATA=$STASH/datasets CWESCAN_SPLITS=$STASH/code/data/splits CWESCAN_NEGATIVES=$STASH/negatives"
}

overlay() {  # overlay FOLDER DEST: FOLDER's files laid over the copy DEST (a commit's versions of
    # files the checkout has changed since), and FOLDER/remove.txt: paths to leave out of it
    (cd "$1" && find . -type f ! -name remove.txt -exec cp --parents {} "$2/" \;)
    [ -f "$1/remove.txt" ] && (cd "$2" && xargs -r rm -f < "$1/remove.txt")
    echo "overlay on $(basename "$2"): $(find "$1" -type f | wc -l) files"
}

code_copy() {  # OVERLAY: laid over the code every run imports; BASE_OVERLAY: over a second copy,
    # code-base, that the SECOND=baseline run imports instead (before/after code in one run)
    rm -rf "$STASH/code" && mkdir -p "$STASH/code" && cp -r src data recipes "$STASH/code/"
    if [ -n "${OVERLAY:-}" ]; then overlay "$OVERLAY" "$STASH/code"; fi
    if [ -n "${BASE_OVERLAY:-}" ]; then
        rm -rf "$STASH/code-base" && cp -r "$STASH/code" "$STASH/code-base"
        overlay "$BASE_OVERLAY" "$STASH/code-base"
    fi
}

venv_without_torchao() {  # the device's packages, torchao left out, as a virtual environment
    local site
    site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    rm -rf "$NOAO" && python3 -m venv --without-pip "$NOAO"
    local own
    own=$("$NOAO/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    for entry in "$site"/*; do
        case "$(basename "$entry")" in torchao|torchao-*) continue ;; esac
        ln -s "$entry" "$own/$(basename "$entry")"
    done
    "$NOAO/bin/python" -c 'import importlib.util as u, torch, transformers; assert u.find_spec("torchao") is None; print("venv without torchao:", torch.__version__, transformers.__version__)'
}

case "$stage" in
prepare)  # here: c01 = wheels, tree, labelled data; c02... = GGUF pieces
    dest=${DEST:?set DEST to an ignored folder of the checkout, e.g. .carry/bench}
    rm -rf "$dest" && mkdir -p "$dest/c01"
    device_wheels "$dest/c01" gguf==0.19.0 tree-sitter==0.26.1 tree-sitter-python==0.25.0 \
        bandit=="$(device_installed_version bandit)" stevedore=="$(device_installed_version stevedore)"
    tree=$(mktemp -d)
    python3 -c 'import sys, sysconfig; from pathlib import Path; from cwescan.bench.scan import build_tree
build_tree(Path(sysconfig.get_paths()["stdlib"]), 1000, Path(sys.argv[1]) / "tree")' "$tree"
    tar -C "$tree" -cJf "$dest/c01/tree.tar.xz" tree && rm -rf "$tree"
    tar -C "$(python3 -c 'from cwescan.data.records import default_data_dir; print(default_data_dir())')" \
        -cJf "$dest/c01/datasets.tar.xz" .
    device_split "$(device_smollm2_gguf)" "$PIECE" "$dest" 2
    du -sh "$dest"/c* | tr '\n' ' '; echo
    ;;
stash)
    src=${2:?the carried folder}
    mkdir -p "$STASH/pieces"
    if [ -f "$src/tree.tar.xz" ]; then
        lscpu | grep -E 'Model name|^CPU\(s\)' || true
        grep -o -E 'amx_bf16|avx512_bf16' /proc/cpuinfo | sort -u | tr '\n' ' '; echo
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$src"/*.whl
        mkdir -p "$STASH/src" "$STASH/datasets"
        tar -C "$STASH/src" -xJf "$src/tree.tar.xz"
        tar -C "$STASH/datasets" -xJf "$src/datasets.tar.xz"
        site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
        code_copy
        # the negatives corpus for eval-mix, built now: the timed runs must have their cores to themselves
        if [ "$GPU" = bench ] || [ "$GPU" = none ]; then
            device_job "$STASH/corpus" "" "true"
        else
            device_job "$STASH/corpus" "$(envs)" "python3 -m cwescan data negatives --site-packages $site --out $STASH/negatives --workers 14"
        fi
        echo "tree: $(find "$STASH/src/tree" -name '*.py' | wc -l) files; negatives corpus build started (GPU=$GPU)"
    fi
    cp "$src"/*.gguf.part* "$STASH/pieces/" 2>/dev/null || true
    ls "$STASH/pieces" | tr '\n' ' '; echo
    ;;
launch)
    device_join "$STASH/pieces" "$STASH/$GGUF" "$GGUF_SHA"
    code_copy
    while ! grep -q -E 'JOB-DONE|JOB-FAILED' "$STASH/corpus/log.txt"; do sleep 3; done
    tail -3 "$STASH/corpus/log.txt"
    # the device image runs with PYTHONDONTWRITEBYTECODE=1 and ships torch without bytecode, so
    # every process compiled torch's modules on import (~10 s in the scan's model stage); a
    # user's install has them compiled: so compile them once here, outside the timed runs
    site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    python3 -m compileall -q -j 0 "$site/torch" "$STASH/code/src" "$STASH/code-base/src" /tmp/site > /dev/null 2>&1 || true
    echo "bytecode: $(find "$site/torch" -name '*.pyc' | wc -l) compiled files under torch"
    # convert the base once, outside the timed runs (a user's first scan pays it once too)
    env $(envs) python3 -c "from cwescan.ml.slm.base import converted_dir; print(converted_dir('smollm2-135m'))" 2>&1 | tail -1
    bench="python3 -m cwescan bench scan --files 1000 --path $STASH/src/tree"
    if [ "$SECOND" = memory ]; then
        env $(envs) python3 -c "from cwescan.detectors.slm import SLMDetector; SLMDetector(precision='bf16').load()" 2>&1 | tail -1
        cores=0
        for variant in as-is:X=1 primitive-cache-16:ONEDNN_PRIMITIVE_CACHE_CAPACITY=16 \
                       primitive-cache-0:ONEDNN_PRIMITIVE_CACHE_CAPACITY=0 malloc-arenas-2:MALLOC_ARENA_MAX=2; do
            name=${variant%%:*}
            device_job "$STASH/runs/cpu2-$name" "$(envs) OMP_NUM_THREADS=2 ${variant#*:}" \
                "taskset -c $cores,$((cores + 1)) $bench --out $STASH/runs/cpu2-$name --device cpu --jobs 2"
            cores=$((cores + 2))
        done
        echo "started the memory runs"
        exit 0
    fi
    if [ "$SECOND" = alone ]; then  # the merged model built before either timed run, as in SECOND=memory
        env $(envs) python3 -c "from cwescan.detectors.slm import SLMDetector; SLMDetector(precision='bf16').load()" 2>&1 | tail -1
    fi
    if [ "${CPU:-scan}" = none ]; then
        SECOND=none
    else
        # PYPROF=1: the default scan under cProfile (where the main process's seconds go, Python and
        # torch's operators alike; the static stage's workers are other processes)
        prof=${PYPROF:+-m cProfile -o $STASH/runs/cpu2-default/scan.prof}
        device_job "$STASH/runs/cpu2-default" "$(envs) OMP_NUM_THREADS=2" \
            "taskset -c 0,1 ${bench/python3 -m cwescan/python3 $prof -m cwescan} --out $STASH/runs/cpu2-default --device cpu --jobs 2"
    fi
    python3 -c 'import importlib.util as u; print("torchao on the device:", u.find_spec("torchao") is not None)'
    if [ "$SECOND" = without-torchao ]; then
        venv_without_torchao || { echo "no environment without torchao: the second run is skipped"; }
        [ -x "$NOAO/bin/python" ] && device_job "$STASH/runs/cpu2-without-torchao" "$(envs) OMP_NUM_THREADS=2" \
            "taskset -c 2,3 $NOAO/bin/python -m cwescan bench scan --files 1000 --path $STASH/src/tree \
             --out $STASH/runs/cpu2-without-torchao --device cpu --jobs 2"
    elif [ "$SECOND" = precisions ]; then
        device_job "$STASH/runs/cpu2-precisions" "$(envs) OMP_NUM_THREADS=2" \
            "taskset -c 2,3 python3 -m cwescan bench models --models slm --precisions fp32,bf16 --device cpu \
             --threads 2 --records 30 --batches 1,8,16 --speed-units 16 --latency-units 8 --no-write-default \
             --out $STASH/runs/cpu2-precisions"
    elif [ "$SECOND" = alone ]; then  # after the default scan, on the same cores, nothing beside it
        device_job "$STASH/runs/cpu2-baseline" "$(envs | sed "s#$STASH/code/#$STASH/code-${BASE_OVERLAY:+base}/#g; s#code-/#code/#g") OMP_NUM_THREADS=2" \
            "while ! grep -q -E 'JOB-DONE|JOB-FAILED' $STASH/runs/cpu2-default/log.txt 2>/dev/null; do sleep 2; done;
             taskset -c 0,1 $bench --out $STASH/runs/cpu2-baseline --device cpu --jobs 2 $BASELINE_ARGS"
    elif [ "$SECOND" != none ]; then
        device_job "$STASH/runs/cpu2-baseline" "$(envs | sed "s#$STASH/code/#$STASH/code-${BASE_OVERLAY:+base}/#g; s#code-/#code/#g") OMP_NUM_THREADS=2" \
            "taskset -c 2,3 $bench --out $STASH/runs/cpu2-baseline --device cpu --jobs 2 $BASELINE_ARGS"
    fi
    gpu_cores=4-15
    if [ -n "${PROFILE:-}" ]; then  # cores 6-7: the SLM's score path under torch.profiler
        device_job "$STASH/runs/cpu2-profile" "$(envs) OMP_NUM_THREADS=2" \
            "taskset -c 6,7 python3 tools/slm_score_path_probe.py test --units 48 --precision $PROFILE --threads 2 \
             --out $STASH/runs/cpu2-profile/profile.txt"
    fi
    if [ -n "${SCORE_PROBE:-}" ]; then  # cores 4-5: the scan's scoring call against the bare forward pass
        device_job "$STASH/runs/cpu2-probe" "$(envs) OMP_NUM_THREADS=2" \
            "taskset -c 4,5 python3 tools/slm_score_path_probe.py $STASH/src/tree --units $SCORE_PROBE --threads 2 \
             --rounds 1 --out $STASH/runs/cpu2-probe/probe.txt"
    fi
    if [ -n "${THIRD_PRECISIONS:-}" ]; then
        gpu_cores=$([ -n "${PROFILE:-}" ] && echo 8-15 || echo 6-15)
        device_job "$STASH/runs/cpu2-third" "$(envs) OMP_NUM_THREADS=2" \
            "taskset -c 4,5 python3 -m cwescan bench models --models slm --precisions $THIRD_PRECISIONS --device cpu \
             --threads 2 --records 30 --batches 1,8,16 --speed-units 16 --latency-units 8 --no-write-default \
             --out $STASH/runs/cpu2-third"
    elif [ -n "${THIRD_SCAN_ARGS:-}" ]; then
        gpu_cores=6-15
        device_job "$STASH/runs/cpu2-third" "$(envs) OMP_NUM_THREADS=2" \
            "taskset -c 4,5 $bench --out $STASH/runs/cpu2-third --device cpu --jobs 2 $THIRD_SCAN_ARGS"
    fi
    mix="python3 -m cwescan eval-mix --detector $MIX_DETECTOR --negatives $STASH/negatives --device cuda"
    if [ "$GPU" = mix ]; then  # the default's scores come from an earlier run on the same corpus
        device_job "$STASH/runs/gpu" "$(envs) OMP_NUM_THREADS=8" \
            "taskset -c $gpu_cores $mix $MIX_SECOND_ARGS --out $STASH/runs/gpu/mix-$MIX_SECOND_NAME.json"
    elif [ "$GPU" = none ]; then
        :
    elif [ "$GPU" = bench ]; then
        device_job "$STASH/runs/gpu" "$(envs) OMP_NUM_THREADS=8" \
            "taskset -c $gpu_cores $bench --out $STASH/runs/gpu --device cuda --jobs 8"
    elif [ "$GPU" = train-slm ]; then
        for run in ${TRAIN_RUNS:-slm-a slm-b}; do  # one recipe twice measures reproduction (GPU kernels are not bitwise deterministic)
            recipe=$SLM_RECIPE
            [ "$run" = slm-b ] && recipe=${SLM_RECIPE_B:-$SLM_RECIPE}
            device_job "$STASH/runs/$run" "$(envs) OMP_NUM_THREADS=6 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True" \
                "cd $STASH/code && taskset -c $gpu_cores python3 -m cwescan train slm --recipe $recipe \
                   --out $STASH/runs/$run/adapter --device cuda &&
                 taskset -c $gpu_cores python3 -m cwescan eval-mix --model $STASH/runs/$run/adapter \
                   --negatives $STASH/negatives --device cuda --out $STASH/runs/$run/scores.json ${TRAIN_MIX_ARGS:-}"
        done
        if [ -n "${ALSO_MIX:-}" ]; then  # MIX_DETECTOR's scores on the same corpus (e.g. the pair partner's)
            device_job "$STASH/runs/gpu" "$(envs) OMP_NUM_THREADS=4" \
                "taskset -c $gpu_cores $mix --out $STASH/runs/gpu/mix-focus.json"
        fi
    else
        device_job "$STASH/runs/gpu" "$(envs) OMP_NUM_THREADS=8" \
            "taskset -c $gpu_cores $bench --out $STASH/runs/gpu --device cuda --jobs 8 &&
             taskset -c $gpu_cores $mix --out $STASH/runs/gpu/mix-focus.json &&
             taskset -c $gpu_cores $mix $MIX_SECOND_ARGS --out $STASH/runs/gpu/mix-$MIX_SECOND_NAME.json${MIX_THIRD_NAME:+ &&
             taskset -c $gpu_cores $mix $MIX_THIRD_ARGS --out $STASH/runs/gpu/mix-$MIX_THIRD_NAME.json}"
    fi
    echo "started the jobs"
    ;;
poll)
    device_poll "$STASH/runs" "${2:-60}" 4
    ;;
collect)
    for run in "$STASH"/runs/*/; do  # at most 8 files come back: one log for all
        name=$(basename "$run")
        cp "$run/scan.json" "$OUT/$name.json" 2>/dev/null || cp "$run/bench.json" "$OUT/$name.json" 2>/dev/null || true
        { echo "== $name"; tail -30 "$run/log.txt"; } >> "$OUT/logs.txt" || true
    done
    gzip -c "$STASH/runs/gpu/mix-focus.json" > "$OUT/$MIX_DETECTOR-focus.json.gz" 2>/dev/null || true
    gzip -c "$STASH/runs/gpu/mix-$MIX_SECOND_NAME.json" > "$OUT/$MIX_DETECTOR-$MIX_SECOND_NAME.json.gz" 2>/dev/null || true
    [ -n "${MIX_THIRD_NAME:-}" ] && { gzip -c "$STASH/runs/gpu/mix-$MIX_THIRD_NAME.json" \
        > "$OUT/$MIX_DETECTOR-$MIX_THIRD_NAME.json.gz" 2>/dev/null || true; }
    cp "$STASH/runs/cpu2-precisions/bench.md" "$OUT/cpu2-precisions.md" 2>/dev/null || true
    cp "$STASH/runs/cpu2-third/bench.md" "$OUT/cpu2-third.md" 2>/dev/null || true
    cp "$STASH/runs/cpu2-profile/profile.txt" "$OUT/cpu2-profile.txt" 2>/dev/null || true
    cp "$STASH/runs/cpu2-probe/probe.txt" "$OUT/cpu2-probe.txt" 2>/dev/null || true
    if [ -f "$STASH/runs/cpu2-default/scan.prof" ]; then  # PYPROF=1: the raw profile and its two tables
        cp "$STASH/runs/cpu2-default/scan.prof" "$OUT/cpu2-default.prof"
        python3 -c "import pstats, sys; p = pstats.Stats(sys.argv[1]); p.sort_stats('tottime').print_stats(70); p.sort_stats('cumulative').print_stats(90)" \
            "$STASH/runs/cpu2-default/scan.prof" > "$OUT/cpu2-default-prof.txt" 2>&1 || true
    fi
    cp "$STASH/negatives/MANIFEST.json" "$OUT/NEGATIVES-MANIFEST.json" 2>/dev/null || true
    for run in slm-a slm-b; do  # adapter, card and realistic-mix scores of each training run
        [ -d "$STASH/runs/$run/adapter" ] || continue
        (cd "$STASH/runs/$run" && gzip -f scores.json 2>/dev/null;
         tar --exclude='adapter/logs' -czf "$OUT/$run.tgz" adapter scores.json.gz log.txt) || true
    done
    ls -la "$OUT"
    ;;
*)
    echo "unknown stage $stage" >&2; exit 2 ;;
esac
