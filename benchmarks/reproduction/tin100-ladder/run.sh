#!/usr/bin/env bash
# The budget ladder's CPU runs (issue 21): the three nano families x 3 seeds under converge-tin100-cpu, first the
# 2-epoch rung (100 000 images per run), then the 6-epoch runs (300 000). Each rung is its own `swinrmt compare`,
# started from a frozen checkout by run_detached.sh; running this again resumes whatever is unfinished.
#
#   nohup bash benchmarks/reproduction/tin100-ladder/run.sh > ~/swinrmt-runs/tin100-ladder.log 2>&1 &
#
# The run folders live outside the repository (~/swinrmt-runs/tin100-RUNG), and a session's machine may be handed
# back bare. So every 10 minutes, and when a rung ends, the records of its finished runs (and the report, once there
# is one) are collected into the repository folder tin100-ladder/tin100-RUNG/ (commit them), and a rung starting
# on a bare machine first restores the finished runs recorded there: only the unfinished ones train again.
#
# Then: swinrmt ladder benchmarks/reproduction/tin100 benchmarks/reproduction/tin100-ladder/tin100-2ep \
#           benchmarks/reproduction/tin100-ladder/tin100-6ep --out benchmarks/reproduction/tin100-ladder
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(git -C "$HERE" rev-parse --show-toplevel)
PY=${PYTHON:-$REPO/.venv/bin/python}
RUNS=${RUNS:-$HOME/swinrmt-runs}
DATA=${DATA:-/work/shared/data/tiny-imagenet-100.tar.gz}   # part of the protocol: keep it the same across resumes
MODELS=(rmt_nano gated_swinrmt_retention_nano gated_swinrmt_swat_nano)
. "$HERE/../follow.sh"
for rung in 2 6; do
    out="$RUNS/tin100-${rung}ep"
    rec="$HERE/tin100-${rung}ep"
    args=(--models "${MODELS[@]}" --recipe converge-tin100-cpu --seeds 3 --data "$DATA" --jobs 2 --threads 2)
    # Rung 3 in float32: it spans sessions on CPUs of different kinds, and bf16 autocast without native bf16 (an Ice
    # Lake Xeon, avx512 but no avx512_bf16) trains at half the fp32 speed, while fp32 is at most 1.35x slower where
    # bf16 is native (AMX). Rung 2 ran in bf16 (the recipe's default) and is complete.
    if [ "$rung" = 6 ]; then args+=(--set precision=fp32); else args+=(--set "epochs=$rung"); fi
    if compare_running "$out"; then echo "rung $rung is already running: waiting for it"; else
        if [ -f "$rec/code-rev" ] && [ -n "$(ls "$rec"/finished-runs/*/seed-*/result.json 2>/dev/null)" ]; then
            "$PY" "$HERE/../collect.py" --restore "$rec" "$out" > /dev/null
        fi
        bash "$HERE/../run_detached.sh" "$out" -- "${args[@]}"; sleep 5
    fi
    follow "$out" "$rec"
    grep -q "^| " "$out/report.md" 2>/dev/null || { echo "rung $rung left no report: see $out.log"; exit 1; }
done
