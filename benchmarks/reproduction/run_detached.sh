#!/usr/bin/env bash
# Start (or resume) a long `swinrmt compare` in the background, from a frozen checkout of the code, so that editing
# this working tree while the runs go cannot change what they run. The revision is recorded in OUT/code-rev on the
# first start and reused by every resume, so all runs of one report train on one revision.
#
#   bash benchmarks/reproduction/run_detached.sh OUT -- <swinrmt compare arguments without --out>
#
# Console output goes to OUT.log; each job's own log to OUT/logs/. Stop it with `pkill -f "compare.*OUT"`; running it
# again resumes every unfinished run.
set -euo pipefail
OUT=$(realpath -m "$1"); shift
[ "${1:-}" = "--" ] && shift
REPO=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
PY=${PYTHON:-$REPO/.venv/bin/python}
mkdir -p "$OUT"
[ -f "$OUT/code-rev" ] || git -C "$REPO" rev-parse --short HEAD > "$OUT/code-rev"
REV=$(cat "$OUT/code-rev")
CODE="$(dirname "$OUT")/code-$REV"
[ -d "$CODE" ] || git -C "$REPO" worktree add --detach -f "$CODE" "$REV" >/dev/null
cd "$CODE"
PYTHONPATH="$CODE" nohup "$PY" -m swinrmt compare "$@" --out "$OUT" --no-progress >> "$OUT.log" 2>&1 &
echo "started pid $! from $CODE (revision $REV); log $OUT.log"
