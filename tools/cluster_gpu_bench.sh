#!/usr/bin/env bash
# On the GPU machine: join the Ray site pieces, build a random SmolLM2-shaped SLM, then
# `cwescan bench scan --cluster local --device cuda` (1 actor on 1 GPU vs 2 actors on 2 GPUs).
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
