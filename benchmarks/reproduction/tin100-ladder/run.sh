#!/usr/bin/env bash
# The budget ladder's CPU runs (issue 21): the three nano families x 3 seeds under converge-tin100-cpu, first the
# 2-epoch rung (100 000 images per run), then the 6-epoch runs (300 000). Each rung is its own `swinrmt compare`,
# started from a frozen checkout by run_detached.sh; running this again resumes whatever is unfinished.
#
#   nohup bash benchmarks/reproduction/tin100-ladder/run.sh > ~/swinrmt-runs/tin100-ladder.log 2>&1 &
#
# Then: python benchmarks/reproduction/collect.py ~/swinrmt-runs/tin100-RUNG benchmarks/reproduction/tin100-RUNG
# and swinrmt ladder benchmarks/reproduction/tin100 benchmarks/reproduction/tin100-2ep benchmarks/reproduction/tin100-6ep
set -euo pipefail
HERE=$(dirname "$0")
RUNS=${RUNS:-$HOME/swinrmt-runs}
DATA=${DATA:-/work/shared/data/tiny-imagenet-100.tar.gz}   # part of the protocol: keep it the same across resumes
MODELS=(rmt_nano gated_swinrmt_retention_nano gated_swinrmt_swat_nano)
for rung in 2 6; do
    out="$RUNS/tin100-${rung}ep"
    args=(--models "${MODELS[@]}" --recipe converge-tin100-cpu --seeds 3 --data "$DATA" --jobs 2 --threads 2)
    [ "$rung" = 6 ] || args+=(--set "epochs=$rung")
    bash "$HERE/../run_detached.sh" "$out" -- "${args[@]}"
    sleep 5
    while pgrep -f "swinrmt compare.*--out $out( |$)" > /dev/null; do sleep 60; done
    grep -q "^| " "$out/report.md" 2>/dev/null || { echo "rung $rung left no report: see $out.log"; exit 1; }
done
