#!/usr/bin/env bash
# Why does Gated-SwinRMT-Retention fall behind RMT as the budget grows (tin100-ladder: -4.1 pp at 100 000 images,
# -16.6 pp on seed 0 at 300 000), while its training loss rises at the peak learning rate? Nine seed-0 runs at the
# ladder's rung 2 (converge-tin100-cpu --set epochs=2, 100 000 images, the recipe's bf16), with the trainer's
# gradient-norm records, in four compares; the first two run side by side on one thread each:
#   lr2e-3: Retention as is (the rung-2 baseline, now with gradient norms), without its G1 gate (gate=none), and
#           rmt_nano (added after the first two, so that every arm has a same-machine reference at 2e-3)
#   lr1e-3: Retention and rmt_nano at half the peak learning rate
# If the gate is the cause, gate=none closes the gap at 2e-3; if the peak learning rate is, the 1e-3 pair does.
# (Result: the lr, not the gate.) A third compare asks what else makes Retention more lr-sensitive than RMT. With
# gate=none it differs from rmt_nano only in its shifted windows and in lacking RMT's rotary code (rotary=flat):
#   rotary: Retention with RMT's rotary code, with and without its gate, at 2e-3
# (Result: the rotary code recovers 1.6 pp; windowed retention without gate and with the code still trails rmt by
# 3.5 pp.) SWAT, windowed too, normalises each head's output and does not stall. A fourth compare:
#   headnorm: Retention with a per-head output norm (norm=headnorm), without and with RMT's rotary code, at 2e-3
#
#   nohup bash benchmarks/reproduction/retention-probe/run.sh > ~/swinrmt-runs/retention-probe.log 2>&1 &
#
# Records are collected into retention-probe/{lr2e-3,lr1e-3,rotary,headnorm}/ every 10 minutes and at the end
# (commit them); running this again resumes whatever is unfinished.
set -euo pipefail -f  # -f: no globbing, the model names hold [brackets]
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-$(git -C "$HERE" rev-parse --show-toplevel)/.venv/bin/python}
RUNS=${RUNS:-$HOME/swinrmt-runs}
DATA=${DATA:-/work/shared/data/tiny-imagenet-100.tar.gz}
T=gated_swinrmt_retention_nano
collect() { "$PY" "$HERE/../collect.py" "$1" "$2" > /dev/null 2>&1 || true; }
declare -A MODELS=([lr2e-3]="$T $T[gate=none] rmt_nano" [lr1e-3]="$T rmt_nano"
                  [rotary]="$T[rotary=flat] $T[gate=none,rotary=flat]"
                  [headnorm]="$T[norm=headnorm] $T[norm=headnorm,rotary=flat]")
declare -A LR=([lr2e-3]=2e-3 [lr1e-3]=1e-3 [rotary]=2e-3 [headnorm]=2e-3)
# Phases of two one-thread runs side by side on 2 cores: the lr2e-3 and lr1e-3 compares (one job each), then the
# rotary and the headnorm compares (two jobs in a pool each). A finished compare trains nothing, so rerunning resumes
# where it stopped.
phase() {
    local name out jobs=$1; shift
    for name in "$@"; do
        out="$RUNS/retention-probe-$name"
        pgrep -f "swinrmt compare.*--out $out( |$)" > /dev/null && continue
        # shellcheck disable=SC2086  # the model list splits on purpose
        bash "$HERE/../run_detached.sh" "$out" -- --models ${MODELS[$name]} --recipe converge-tin100-cpu --seeds 1 \
            --data "$DATA" --jobs "$jobs" --threads "$jobs" --set epochs=2 "optim.lr=${LR[$name]}"
    done
    sleep 5
    local n=0
    while pgrep -f "swinrmt compare.*--out $RUNS/retention-probe-" > /dev/null; do
        sleep 60
        n=$((n + 1))
        [ $((n % 10)) -ne 0 ] || for name in "$@"; do collect "$RUNS/retention-probe-$name" "$HERE/$name"; done
    done
    for name in "$@"; do collect "$RUNS/retention-probe-$name" "$HERE/$name"; done
}
phase 1 lr2e-3 lr1e-3
phase 2 rotary
phase 2 headnorm
