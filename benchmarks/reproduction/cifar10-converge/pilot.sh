#!/usr/bin/env bash
# The regularisation pilot (README.md here): rmt_nano, 10-epoch schedule, light vs heavy, one thread each, side by side.
# Usage: bash pilot.sh [DATA] [OUT]; stop it (Ctrl-C) once the curves are clear, as the README's run was.
set -euo pipefail
DATA=${1:-../shared/data/cifar10-jpeg.tar.gz}
OUT=${2:-$HOME/swinrmt-runs/pilot}
COMMON=(--recipe converge-cifar10-cpu --model rmt_nano --data "$DATA" --no-progress
        --set epochs=10 sched.warmup_epochs=1 eval_every_epochs=1 cpu_threads=1)
swinrmt train "${COMMON[@]}" --out "$OUT/light" &
swinrmt train "${COMMON[@]}" --out "$OUT/heavy" --set model.drop_path_rate=0.1 data.aug.randaugment=rand-m9-n2-mstd0.5 \
  data.aug.random_erasing=0.25 mixup.mixup_alpha=0.8 mixup.cutmix_alpha=1.0 &
wait
