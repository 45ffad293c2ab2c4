#!/usr/bin/env bash
# The GPU measurements of issue 8 in one go: run on a CUDA machine with pix2chat installed
# (./scripts/test's .venv with a CUDA torch, or the Docker image). Writes bench-gpu/*.json and
# prints the tables; paste them into docs/BENCHMARKS.md with the device name.
# Takes about 10-20 minutes on an H100 (most of it compiling every shape for the compile rows).
set -euo pipefail
cd "$(dirname "$0")/.."
PIX2CHAT="${PIX2CHAT:-.venv/bin/pix2chat}"
OUT="${OUT:-bench-gpu}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia-smi.txt"

# 1. The issue's curve: default options, 512 and 768, batch 1/2/4/8, 20 steps.
"$PIX2CHAT" bench model --device cuda --json "$OUT/default.json"
# 2. Each speed option on its own and together, 512 px, the batch sizes the scheduler uses.
"$PIX2CHAT" bench model --device cuda --resolutions 512 --batch-sizes 1,4,8 \
    --options classic --options default --options channels_last --options fuse_qkv \
    --options compile --options compile_vae+channels_last+fuse_qkv \
    --options compile_vae+channels_last+fuse_qkv+cuda_graphs --options preview \
    --json "$OUT/options.json"
# 3. bfloat16 instead of float16.
"$PIX2CHAT" bench model --device cuda --dtype bfloat16 --resolutions 512 --batch-sizes 1,8 \
    --json "$OUT/bf16.json"
