#!/usr/bin/env bash
# Train rmt_tiny, gated_swinrmt_retention_tiny and gated_swinrmt_swat_tiny with the full `tiny-imagenet` recipe on
# Tiny-ImageNet-100 on one GPU, within a wall-clock budget (default 660 s, so the whole call fits in 12 minutes of
# device time): the data decoded once onto the GPU, batched augmentation there, the runs side by side as separate
# processes (as many as the free GPU memory holds), epochs set from a short measured probe, every finished run kept.
# How and why: the docstring of run_gpu.py (`bash run_gpu.sh --help` lists every option).
#
#   bash benchmarks/reproduction/run_gpu.sh                                  # the default: 3 models x 1 seed
#   bash benchmarks/reproduction/run_gpu.sh --out /tmp/gpu --export "$OUT/gpu-report"   # on the device machine
#   bash benchmarks/reproduction/run_gpu.sh --test                           # CPU end-to-end check, < 2 minutes
#   RUN_GPU_TEST=1 bash benchmarks/reproduction/run_gpu.sh                   # the same
#
# Environment: RUN_GPU_DATA (dataset archive; default ../shared/data/tiny-imagenet-100.tar.gz, searched at
# /work/shared/data, <repo>/../shared/data and <repo>/shared/data), RUN_GPU_BUDGET_S (seconds), RUN_GPU_TEST=1,
# PYTHON (interpreter; default: the first of <repo>/.venv/bin/python and python3 whose torch sees a GPU). Rerunning
# the same command skips finished runs and resumes the ones stopped at the deadline. Exit code: 0 all trained runs
# fine, 1 a run failed, 2 a bad argument or input, or no GPU outside --test / --device cpu (one line on stderr).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd); REPO=$(cd "$HERE/../.." && pwd)
. "$HERE/../gpu/pick_python.sh"
launch "$HERE/run_gpu.py" "$@"
