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
# 4. (2026-11-24, second session) nano models at 64 px, fp32 vs bf16 autocast, with swin_nano beside them. The file
#    *_before_bf16_fix.json is the same command (without swin_nano) at commit f7523f0, before CPU bf16 attention stopped
#    using the fused masked SDPA kernel.
python -m swinrmt bench --models rmt_nano gated_swinrmt_retention_nano gated_swinrmt_swat_nano swin_nano --img-size 64 \
  --batch 64 --mode train --precision fp32 bf16 --steps 4 --warmup 1 --no-memory --num-classes 100 \
  --out benchmarks/speed/cpu_nano_64px_b64_train.json
uptime
# 5. training memory only (the lean SWAT path): one timed step, so its timings mean nothing (it ran beside training
#    jobs, load ~3.5); the memory column does not depend on load (a fresh process per model, RSS high-water mark).
python -m swinrmt bench --models $M --img-size 64 --batch 64 --mode train --precision fp32 bf16 --steps 1 --warmup 1 \
  --mem-steps 2 --out benchmarks/speed/cpu_tiny_64px_b64_memory.json
