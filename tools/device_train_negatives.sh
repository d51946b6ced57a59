#!/usr/bin/env bash
# Build the realistic-negatives corpus from the lent GPU machine's own site-packages, train SLM
# adapters with it, and score every adapter on the realistic mix, all on the device (the `device`
# tool). BASE picks the base model (the same for every stage, here and on the device):
#   BASE=smol (default): SmolLM2-135M, two negatives ratios, each twice, and the shipped adapter;
#   BASE=qwen: Qwen2.5-Coder-0.5B at ratio 1.0, LoRA twice (the second run checks reproduction)
#              (`launch`) and QLoRA once (`launch qlora`; bitsandbytes carried as a wheel).
#
# A call ships the repository's tree plus carried paths (at most 64 MiB together); a warm device
# keeps /root/stash between calls (~30 s idle), so the code, the labelled data and the base
# model's GGUF travel as pieces over consecutive calls while the corpus is built in the
# background. Qwen's GGUF is 491 MB: with the shipped weights in the tree (~45 MiB) that is ~33
# calls, so for BASE=qwen untrack them for the transfer (`git rm --cached` them and list them in
# .git/info/exclude; `git reset` them afterwards) and carry 52 MiB pieces (10 calls):
#
#   here:    tools/device_train_negatives.sh prepare      # -> .carry/model/c01 ... cNN
# Issue the c01 call alone (the start of a machine may be refused) and the others back to back once
# it has one: the machine goes back after ~30 s without a call, with the jobs on it.
#   device:  bash .carry/model/c01/device_train_negatives.sh stash c01   # carry=[".carry/model/c01"]: code, data,
#                                                          # wheels (gguf; bandit and stevedore, which the rules import);
#                                                          # starts `cwescan data negatives` in the background
#   device:  bash /root/stash/model/code/tools/device_train_negatives.sh stash cNN   # the GGUF pieces
#   device:  bash /root/stash/model/code/tools/device_train_negatives.sh launch      # jobs, one GPU each pair
#   device:  bash /root/stash/model/code/tools/device_train_negatives.sh poll 540
#   device:  bash /root/stash/model/code/tools/device_train_negatives.sh finish 540  # poll, then collect -> $OUT
# Collect in the call whose poll sees the jobs end (`finish` does both): a pause of ~30 s between
# calls gives the machine back with the runs on it. The device runs the tools from c01's code
# archive: run `prepare` again after changing them.
#
# Each job runs `cwescan train slm` with its recipe, then `cwescan eval-mix` on the adapter.
# What comes back: adapters (fp16 safetensors), cards, training logs, score files and the corpus
# manifest.
set -euo pipefail
. "$(dirname "$0")/device_jobs.sh"
STASH=/root/stash/model
BASE=${BASE:-smol}
case $BASE in
smol)
    BASE_MODEL=smollm2-135m
    GGUF=SmolLM2-135M-Instruct.Q4_1.gguf
    GGUF_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
    EXTRA_WHEELS=()
    PIECE=${PIECE:-15M}
    RIDE_WITH_CODE=1 ;;  # the GGUF's last (small) piece travels with the code in c01
qwen)
    BASE_MODEL=qwen2.5-coder-0.5b
    GGUF=qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
    GGUF_SHA=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
    EXTRA_WHEELS=(bitsandbytes==0.50.2)  # 41 MiB: fills c01 with the code and data
    PIECE=${PIECE:-52M}
    RIDE_WITH_CODE=0 ;;
*)
    echo "BASE must be smol or qwen" >&2; exit 2 ;;
esac
stage=${1:?usage: device_train_negatives.sh prepare|stash DIR|launch [qlora]|poll SECONDS|finish SECONDS|collect}

envs() {  # the environment of every job
    echo "PYTHONPATH=$STASH/code/src:/tmp/site PYTHONUNBUFFERED=1 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True" \
         "CWESCAN_BASE_GGUF=$STASH/$GGUF CWESCAN_CACHE=$STASH/cache CWESCAN_DATA=$STASH/datasets" \
         "CWESCAN_SPLITS=$STASH/code/data/splits CWESCAN_NEGATIVES=$STASH/negatives"
}

case "$stage" in
prepare)  # here, from the worktree; the pieces go to the folder the device tool carries from
    dest=${DEST:?set DEST to the .carry/model folder of the checkout the device tool ships}
    rm -rf "$dest" && mkdir -p "$dest/tmp"
    gguf=$(python3 -c 'import sys; from cwescan.ml.slm.base import locate_gguf; print(locate_gguf(sys.argv[1]))' "$BASE_MODEL")
    device_wheels "$dest/tmp/wheels" gguf==0.19.0 bandit=="$(device_installed_version bandit)" \
        stevedore=="$(device_installed_version stevedore)" "${EXTRA_WHEELS[@]}"
    git ls-files src recipes data tools | grep -v '^src/cwescan/models/' | tar -cf "$dest/tmp/code.tar" -T -
    tar -C "$(python3 -c 'from cwescan.data.records import default_data_dir; print(default_data_dir())')" \
        -cf "$dest/tmp/datasets.tar" .
    mkdir -p "$dest/c01"
    cp "$dest/tmp/code.tar" "$dest/tmp/datasets.tar" "$dest/tmp/wheels/"*.whl tools/device_train_negatives.sh \
        tools/device_jobs.sh "$dest/c01/"
    (cd "$dest/tmp" && split -b "$PIECE" -d -a 2 "$gguf" "$GGUF.part")
    n=1
    if [ "$RIDE_WITH_CODE" = 1 ]; then
        last=$(ls "$dest/tmp" | grep "^$GGUF.part" | tail -1)
        mv "$dest/tmp/$last" "$dest/c01/"
    fi
    for p in $(ls "$dest/tmp" | grep "^$GGUF.part"); do
        n=$((n + 1)); d="$dest/c$(printf %02d $n)"; mkdir -p "$d"; mv "$dest/tmp/$p" "$d/"
    done
    rm -rf "$dest/tmp"
    du -sh "$dest"/c* | tr '\n' ' '; echo
    ;;
stash)
    mkdir -p "$STASH/pieces"
    src=.carry/model/$2
    if [ -f "$src/code.tar" ]; then
        nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv,noheader
        rm -rf "$STASH/code" && mkdir -p "$STASH/code" "$STASH/datasets"
        tar -C "$STASH/code" -xf "$src/code.tar"
        tar -C "$STASH/datasets" -xf "$src/datasets.tar"
        cp -r src/cwescan/models "$STASH/code/src/cwescan/"  # the shipped adapters, from the tree
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$src"/*.whl
        site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
        python3 -c 'import sys; print(sys.version)'
        (cd "$STASH/code" && env $(envs) setsid nohup bash -c \
            "python3 -m cwescan data negatives --site-packages $site --out $STASH/negatives --workers 15 > $STASH/negatives.log 2>&1" \
            > /dev/null 2>&1 < /dev/null &)
        echo "negatives build started from $site"
    fi
    cp "$src"/*.gguf.part* "$STASH/pieces/" 2>/dev/null || true
    ls "$STASH/pieces" | tr '\n' ' '; echo
    ;;
launch)
    device_join "$STASH/pieces" "$STASH/$GGUF" "$GGUF_SHA"
    while [ ! -f "$STASH/negatives/MANIFEST.json" ]; do
        if ! pgrep -f "cwescan data negatives" > /dev/null; then cat "$STASH/negatives.log"; exit 1; fi
        sleep 5
    done
    tail -8 "$STASH/negatives.log"
    cd "$STASH/code"
    env $(envs) python3 -c "import sys; from cwescan.ml.slm.base import converted_dir; print(converted_dir(sys.argv[1]))" \
        "$BASE_MODEL" 2>&1 | tail -1
    mkdir -p "$STASH/runs"
    ngpu=$(nvidia-smi -L | wc -l)
    job() {  # name recipe gpu [eval-mix options]: train, then score on the realistic mix
        local run=$STASH/runs/$1
        device_job "$run" "$(envs) CUDA_VISIBLE_DEVICES=$3" "python3 -m cwescan train slm --recipe $2 --out $run/adapter --device cuda &&
            python3 -m cwescan eval-mix --model $run/adapter --negatives $STASH/negatives --device cuda --out $run/scores.json ${4:-}"
    }
    g1=$((ngpu > 1 ? 1 : 0))
    case $BASE${2:+-$2} in
    smol)
        job neg100-a recipes/slm-smollm2-neg100.yaml 0
        job neg050-a recipes/slm-smollm2-neg050.yaml 0
        job neg100-b recipes/slm-smollm2-neg100.yaml $g1
        job neg050-b recipes/slm-smollm2-neg050.yaml $g1
        device_job "$STASH/runs/shipped" "$(envs) CUDA_VISIBLE_DEVICES=$g1" \
            "python3 -m cwescan eval-mix --negatives $STASH/negatives --device cuda --out $STASH/runs/shipped/scores.json" ;;
    qwen)
        # run a is the candidate: both mix parts (the pair is fitted on validation) and its line
        # answers on the labelled parts; the repeat gets both mix parts too, because its
        # reproduction is read at its own thresholds (`cwescan train calibrate --repeat-scores`)
        job qwen-lora-a recipes/slm-qwen-coder-neg100.yaml 0 "&& python3 -m cwescan eval-mix --model $STASH/runs/qwen-lora-a/adapter \
            --negatives $STASH/negatives --device cuda --labelled-only --out $STASH/runs/qwen-lora-a/lines.json"
        job qwen-lora-b recipes/slm-qwen-coder-neg100.yaml $g1 ;;
    qwen-qlora)  # its own lease: ~0.8 s a step with the LoRA pair beside it, 0.33 s for LoRA with one
        # neighbour; both mix parts, so `cwescan train calibrate` reads it at its own thresholds
        job qwen-qlora-a recipes/slm-qwen-coder-qlora-neg100.yaml 0 ;;
    *)
        echo "no jobs for BASE=$BASE ${2:-}" >&2; exit 2 ;;
    esac
    echo "started jobs on $ngpu GPU(s): $(ls "$STASH/runs" | tr '\n' ' ')"
    ;;
poll)
    device_poll "$STASH/runs" "${2:-60}" 3
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
    ;;
finish)  # poll, then collect whatever the runs have (partial runs too)
    device_poll "$STASH/runs" "${2:-60}" 3
    OUT=${OUT:-$STASH/out} bash "$0" collect
    ;;
collect)
    out=${OUT:-$STASH/out}
    cp "$STASH/negatives/MANIFEST.json" "$out/NEGATIVES-MANIFEST.json"
    (cd "$STASH/runs" && tar --exclude='*/adapter/logs/train.log' -czf "$out/runs.tgz" . \
        && cd "$out" && split -b 15M -d -a 1 runs.tgz runs.tgz.part && rm runs.tgz)
    ls -la "$out"
    ;;
*)
    echo "unknown stage $stage" >&2; exit 2 ;;
esac
