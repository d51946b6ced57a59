#!/usr/bin/env bash
# Fine-tune the encoder with realistic negatives on the lent GPU machine, twice (seeds 0 and 1,
# the second checks reproduction), and score both on the realistic mix, in ONE device call.
#
#   here:    tools/device_train_encoder_negatives.sh prepare        # -> .carry/encneg (labelled data, wheels)
#   device:  bash tools/device_train_encoder_negatives.sh run       # carry [".carry/encneg"]
#
# The corpus is rebuilt on the device from its own site-packages (`cwescan data negatives`,
# < 1 minute; the same packages_sha256 as data/negatives/MANIFEST.json, checked). What comes back
# under $OUT: model-0000{1,2}.safetensors of run a (int8, shipped format) and small.tgz (card,
# config, tokenizer, training summaries and logs, both runs' score files, the corpus manifest).
set -uo pipefail
stage=${1:?usage: device_train_encoder_negatives.sh prepare|run}
CARRY=.carry/encneg
case "$stage" in
prepare)
    rm -rf "$CARRY" && mkdir -p "$CARRY/wheels"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 -d "$CARRY/wheels" \
        bandit=="$(python3 -c 'import importlib.metadata as m; print(m.version("bandit"))')" \
        stevedore=="$(python3 -c 'import importlib.metadata as m; print(m.version("stevedore"))')"
    tar -C "$(python3 -c 'from cwescan.data.records import default_data_dir; print(default_data_dir())')" \
        -cf "$CARRY/datasets.tar" .
    du -sh "$CARRY"
    ;;
run)
    W=/tmp/encneg
    rm -rf "$W" && mkdir -p "$W/data" "$OUT"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$CARRY"/wheels/*.whl
    tar -C "$W/data" -xf "$CARRY/datasets.tar"
    export PYTHONPATH=$PWD/src:/tmp/site PYTHONUNBUFFERED=1 CWESCAN_DATA=$W/data CWESCAN_NEGATIVES=$W/negatives \
        CWESCAN_CACHE=$W/cache TOKENIZERS_PARALLELISM=true
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$W/run.log"
    site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    python3 -m cwescan data negatives --site-packages "$site" --out "$W/negatives" --workers 15 >> "$W/run.log" 2>&1
    python3 - "$W/negatives/MANIFEST.json" data/negatives/MANIFEST.json <<'PY' | tee -a "$W/run.log"
import json, sys
a, b = (json.load(open(p))["packages_sha256"] for p in sys.argv[1:])
print("corpus packages_sha256", a, "same as the committed manifest" if a == b else "DIFFERS from " + b)
PY
    sed 's/^  seed: 0$/  seed: 1/' recipes/encoder-negatives.yaml > "$W/encoder-negatives-b.yaml"
    for run in a b; do
        recipe=recipes/encoder-negatives.yaml; [ $run = b ] && recipe=$W/encoder-negatives-b.yaml
        ( timeout "${LIMIT:-420}" python3 -m cwescan train encoder --recipe "$recipe" --out "$W/run-$run" --device cuda \
              > "$W/train-$run.log" 2>&1 \
          && python3 -m cwescan train encoder-ship "$W/run-$run" "$W/shipped-$run" --storage int8 \
              --command "CWESCAN_NEGATIVES=<corpus> cwescan train encoder --recipe recipes/encoder-negatives.yaml --out runs/encoder-neg --device cuda" \
              --command "cwescan train encoder-ship runs/encoder-neg src/cwescan/models/encoder --storage int8" \
              >> "$W/train-$run.log" 2>&1 \
          && python3 -m cwescan eval-mix --detector encoder --model "$W/shipped-$run" --negatives "$W/negatives" \
              --device cuda --precision bf16 --out "$W/scores-$run.json" >> "$W/train-$run.log" 2>&1 ) &
    done
    wait
    tail -n 12 "$W"/train-*.log | tee -a "$W/run.log"
    gzip -f "$W"/scores-*.json 2>/dev/null
    cp "$W"/shipped-a/model-*.safetensors "$OUT/" 2>/dev/null
    (cd "$W" && tar czf "$OUT/small.tgz" run.log train-*.log negatives/MANIFEST.json scores-*.json.gz \
        $(ls run-*/finetune_summary.json run-*/finetune_log.jsonl shipped-*/card.json shipped-*/config.json \
             shipped-*/README.md shipped-a/tokenizer.json 2>/dev/null))
    ls -la "$OUT"
    ;;
esac
