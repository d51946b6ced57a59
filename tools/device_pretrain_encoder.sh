#!/usr/bin/env bash
# The encoder's pre-training + fine-tuning run on the device machine (one H100), from the repo
# root. Needs the labelled records copied to .carry/encoder/data (carried; they are not in git):
#   mkdir -p .carry/encoder/data && cp ../shared/datasets/*.jsonl .carry/encoder/data/
#   device run, carry [.carry/encoder]:  bash tools/device_pretrain_encoder.sh
# Brings back (<= 8 files under $OUT): run.log, small.tgz (tokenizer, configs, logs, summaries),
# pretrained/encoder-*.safetensors (fp16 MLM body), model/model-*.safetensors (fp16 classifier).
set -uo pipefail
RECIPE=${1:-recipes/encoder-device.yaml}
OUT=${OUT:-out/device-encoder}
WORK=${WORK:-/root/stash/encoder}
mkdir -p "$OUT" "$WORK"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true
export CWESCAN_DATA=${CWESCAN_DATA:-$PWD/.carry/encoder/data}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | tee "$OUT/run.log"
python3 -c "import site, torch, transformers, tokenizers; print(site.getsitepackages(), torch.__version__, transformers.__version__, tokenizers.__version__)" 2>&1 | tee -a "$OUT/run.log"
# an inner limit, so that whatever finished is still copied back before the call ends
timeout "${LIMIT:-540}" python3 -m cwescan train encoder --recipe "$RECIPE" --out "$WORK" --device auto 2>&1 | tee -a "$OUT/run.log"
status=${PIPESTATUS[0]}
mkdir -p "$OUT/pretrained" "$OUT/model"
# the pre-trained body (34 MB) and the classifier (34 MB) together exceed what comes back (64 MB)
[ "${BRING_PRETRAINED:-0}" = 1 ] && cp "$WORK"/encoder-*.safetensors "$OUT/pretrained/" 2>/dev/null
cp "$WORK"/model/model-*.safetensors "$OUT/model/" 2>/dev/null
(cd "$WORK" && tar czf "$OUT/small.tgz" $(ls tokenizer.json *.jsonl *_summary.json model/config.json model/tokenizer.json 2>/dev/null))
ls -la "$OUT" "$OUT"/* | tee -a "$OUT/run.log"
exit "$status"
