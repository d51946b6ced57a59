#!/usr/bin/env bash
# On the GPU machine: join the Ray site pieces, build a random SmolLM2-shaped SLM, then
# `cwescan bench scan --cluster local --device cuda` (1 actor on 1 GPU vs 2 actors on 2 GPUs).
#
# Prepared here (the GPU machine has no network; one call carries at most 64 MiB with the tree):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 ray==2.60.0 pathspec jsonschema jsonschema-specifications \
#     referencing rpds-py bandit stevedore          # unzip all into site/; drop ray/{jars,rllib,
#   data,tune,train,serve,llm,air,dashboard/client} (unused by a scan), tar site | xz -> 29.7 MB,
#   split -b 16M into .carry/ray/p0/site.part0 and .carry/ray/p1/site.part1 (+ site.sha);
#   .carry/ray/p1/extra.tar.xz: src/cwescan (models: cards only), SmolLM2's tokenizer
#   (save_pretrained from the GGUF) and tools/random_slm_artifact.py, under ray-extra/.
# Device, two calls back to back (the machine keeps /root/stash while warm):
#   mkdir -p /root/stash/ray && cp .carry/ray/p0/site.part0 /root/stash/ray/   (carry p0)
#   FILES=200 bash .carry/ray/p1/run.sh                                          (carry p1)
set -euo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
S=/root/stash/ray; P1=$PWD/.carry/ray/p1
cat $S/site.part0 $P1/site.part1 > $S/site.tar.xz
(cd $S && sha256sum -c $P1/site.sha)
tar -xJf $S/site.tar.xz -C /tmp; tar -xJf $P1/extra.tar.xz -C /tmp
export PYTHONPATH=/tmp/ray-extra/src:/tmp/site
nvidia-smi -L; python3 -c 'import torch,ray; print(torch.__version__, torch.cuda.device_count(), ray.__version__)'
python3 /tmp/ray-extra/tools/random_slm_artifact.py /tmp/ray-extra/tok /tmp/rand-slm 2>&1 | tail -1
python3 -m cwescan bench scan --cluster local --device cuda -d slm --review all --precision bf16 \
  --files ${FILES:-200} --slm-model /tmp/rand-slm/adapter --out $OUT/bench 2>&1 | grep -v gcs_client | tee $OUT/log.txt
