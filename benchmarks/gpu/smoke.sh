#!/usr/bin/env bash
# The one prepared GPU check (issue 36): versions, tests/test_cuda.py, a killed-and-resumed `swinrmt train` on the GPU,
# `swinrmt eval` on GPU and CPU, host syncs per step and the attention kernels per family, a world-size-1 NCCL step
# with SyncBatchNorm, bf16 and torch.compile, FlexAttention against SDPA, and run_gpu.sh on a small budget, in one call
# of at most 8 minutes. Writes OUT/smoke.json and OUT/smoke.md (default runs/gpu-smoke). Details: smoke.py's docstring.
#
#   bash benchmarks/gpu/smoke.sh --out "$OUT/smoke"      # on the device machine
#   bash benchmarks/gpu/smoke.sh --test                  # the same script end to end on the CPU (tiny, no compile)
#
# PYTHON picks the interpreter (default: the first of <repo>/.venv/bin/python and python3 whose torch sees a GPU;
# with --test, the .venv if present). Exit code: 0 every section that ran is ok, 1 a section failed, 2 no GPU
# outside --test.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd); REPO=$(cd "$HERE/../.." && pwd)
. "$HERE/pick_python.sh"
launch "$HERE/smoke.py" "$@"
