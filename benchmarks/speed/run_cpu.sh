#!/usr/bin/env bash
# The commands behind benchmarks/speed/README.md (CPU, 2 threads). Run from the repository root.
set -e
M="rmt_tiny gated_swinrmt_retention_tiny gated_swinrmt_swat_tiny"
uptime
# 1. the target table: tiny models, batch 64 at 64 px, train + infer, fp32 + bf16 autocast (fast path)
python -m swinrmt bench --models $M --img-size 64 --batch 64 --mode train infer --precision fp32 bf16 \
  --steps 5 --warmup 2 --out benchmarks/speed/cpu_tiny_64px_b64.json
uptime
# 2. the public RMT-T layout (stride-4 stem, 0.39 GFLOP/img), to compare images/s with the public code
python -m swinrmt bench --models $M --img-size 64 --batch 64 --mode train infer --precision fp32 --stem-stride 4 \
  --steps 5 --warmup 2 --out benchmarks/speed/cpu_tiny_64px_b64_stem4.json
uptime
# 3. before/after: the same fp32 training step on the mixers' plain reference path
python -m swinrmt bench --models $M --img-size 64 --batch 64 --mode train --precision fp32 --reference-path \
  --steps 5 --warmup 2 --no-memory --out benchmarks/speed/cpu_tiny_64px_b64_reference_path.json
uptime
