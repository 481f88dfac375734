#!/usr/bin/env bash
# A sound shared recipe for the 100-class comparison (issue 34): a seeded peak-lr pilot at the ladder's rung 2
# (converge-tin100-cpu --set epochs=2, 100 000 images per run), float32, with the warm-up given as a share of the
# schedule (sched.warmup_frac=0.1, the published small-data ViT recipe's 10 of 100 epochs) so that it carries over to
# the 6-epoch rung. Every run records its attention health (metrics.jsonl: entropy, largest content logit, G1 gate
# per stage at every step record). One compare per peak lr, two seeds each:
#   phase 1: the baseline rmt_nano at 5e-4, 1e-3 and 2e-3 (its best lr becomes the shared recipe's)
#   phase 2: the same compares gain gated_swinrmt_retention_nano and gated_swinrmt_swat_nano (the rmt runs are done
#            and are not trained again), so each family can also be read at its own best lr
#   phase 3, the diagnosis of Retention's stall at 2e-3: the lr2e-3 compare gains Retention with q/k norm
#            (qk_norm=true), with RMT's rotary code (rotary=flat) and with 2-D attention inside the window in stages
#            3-4 (decompose=[true,true,false,false], RMT-T's layout); a fifth compare, warm0.3, runs Retention at 2e-3
#            with three times the warm-up (sched.warmup_frac=0.3). The lower-lr arms are phase 2's.
#
#   nohup bash benchmarks/reproduction/tin100-recipe/run.sh > ~/swinrmt-runs/tin100-recipe.log 2>&1 &
#
# Then the 6-epoch rung under the shared recipe (300 000 images per run, 3 seeds, on the pilot's revision), with the
# peak lr the pilot chose for the baseline (`lr_pilot.py pilot/lr* --best rmt_nano`) and the three families (a model
# spec may carry an option the diagnosis showed to be needed, documented as a deviation from the paper):
#
#   nohup bash benchmarks/reproduction/tin100-recipe/run.sh rung LR [MODEL ...] > ~/swinrmt-runs/tin100-rung.log 2>&1 &
#
# Its records are collected into benchmarks/reproduction/tin100-ladder/tin100-6ep-v2/.
#
# Each compare starts from a frozen checkout (run_detached.sh, revision in OUT/code-rev) and runs two one-thread jobs.
# Records are collected into tin100-recipe/pilot/lr*/ every 10 minutes and when a compare ends (commit them); a
# compare starting on a bare machine first restores the finished runs recorded there, so rerunning this resumes
# whatever is unfinished.
set -euo pipefail -f  # -f: no globbing, the model specs hold [brackets]
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(git -C "$HERE" rev-parse --show-toplevel)
PY=${PYTHON:-$REPO/.venv/bin/python}
RUNS=${RUNS:-$HOME/swinrmt-runs}
DATA=${DATA:-/work/shared/data/tiny-imagenet-100.tar.gz}   # part of the protocol: keep it the same across resumes
LRS=(5e-4 1e-3 2e-3)
BASE=(rmt_nano)
ALL=(rmt_nano gated_swinrmt_retention_nano gated_swinrmt_swat_nano)
. "$HERE/../follow.sh"
# Every compare of the pilot trains on one revision: the one checked out when the pilot first started.
mkdir -p "$HERE/pilot"
[ -f "$HERE/pilot/code-rev" ] || git -C "$REPO" rev-parse --short HEAD > "$HERE/pilot/code-rev"

one() {  # one compare to its end: $1 = its name (lr<peak lr>, warm0.3 or rung-<peak lr>), the rest = models
    local name=$1; shift
    local lr=2e-3 frac=0.3 epochs=2 seeds=2 out="$RUNS/tin100-recipe-$name" rec="$HERE/pilot/$name"
    [ "${name#lr}" = "$name" ] || { lr=${name#lr}; frac=0.1; }
    if [ "${name#rung-}" != "$name" ]; then
        lr=${name#rung-}; frac=0.1; epochs=6; seeds=3; rec="$HERE/../tin100-ladder/tin100-6ep-v2"
    fi
    if compare_running "$out"; then echo "$name is already running: waiting for it"; else
        if [ -f "$rec/code-rev" ] && [ -n "$(find "$rec/finished-runs" -name result.json 2>/dev/null)" ]; then
            "$PY" "$HERE/../collect.py" --restore "$rec" "$out" > /dev/null
        fi
        mkdir -p "$out"; [ -f "$out/code-rev" ] || cp "$HERE/pilot/code-rev" "$out/code-rev"
        bash "$HERE/../run_detached.sh" "$out" -- --models "$@" --recipe converge-tin100-cpu --seeds "$seeds" \
            --data "$DATA" --jobs 2 --threads 2 --set "epochs=$epochs" precision=fp32 sched.warmup_epochs=0 \
            "sched.warmup_frac=$frac" "optim.lr=$lr"
        sleep 5
    fi
    follow "$out" "$rec"
    grep -q "^| " "$out/report.md" 2>/dev/null || { echo "$name left no report: see $out.log"; exit 1; }
}
T=gated_swinrmt_retention_nano
if [ "${1:-}" = rung ]; then
    [ -n "${2:-}" ] || { echo "usage: run.sh rung LR [MODEL ...]"; exit 2; }
    lr=$2; shift 2
    if [ $# -eq 0 ]; then set -- "${ALL[@]}"; fi
    one "rung-$lr" "$@"
    exit 0
fi
for lr in "${LRS[@]}"; do one "lr$lr" "${BASE[@]}"; done
for lr in "${LRS[@]}"; do one "lr$lr" "${ALL[@]}"; done
one lr2e-3 "${ALL[@]}" "$T[qk_norm=true]" "$T[rotary=flat]" "$T[decompose=[true,true,false,false]]"
one warm0.3 "$T"
