#!/usr/bin/env bash
# Section 6 of run_cpu.sh: ROUNDS alternations of `swinrmt bench` (rmt_tiny, fp32, train + infer) in fresh processes,
# under SWINRMT_CPU_ALLOCATOR=default and =retain, then the summary table. Run from the repository root.
set -e
ROUNDS=${1:-4}
rm -f benchmarks/speed/allocator/*.json
mkdir -p benchmarks/speed/allocator
for i in $(seq "$ROUNDS"); do
  for a in default retain; do
    SWINRMT_CPU_ALLOCATOR=$a python -m swinrmt bench --models rmt_tiny --img-size 64 --batch 64 --mode train infer \
      --precision fp32 --steps 4 --warmup 2 --no-memory --overwrite --out benchmarks/speed/allocator/rmt_tiny_${a}_$i.json \
      | grep -E "^rmt_tiny"
  done
done
python benchmarks/speed/allocator_summary.py benchmarks/speed/allocator/*.json
