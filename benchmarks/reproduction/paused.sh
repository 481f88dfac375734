#!/usr/bin/env bash
# (benchmarks/reproduction/run_detached.sh starts them from ~/swinrmt-runs/code-REV; this pauses every such run.)
# Run a command with the background training runs paused (SIGSTOP/SIGCONT); logs the pause length.
pkill -STOP -f "swinrmt-runs/code"; pkill -STOP -f "multiprocessing.spawn"
t0=$(date +%s)
"$@"; rc=$?
pkill -CONT -f "multiprocessing.spawn"; pkill -CONT -f "swinrmt-runs/code"
echo "$(date -u +%FT%TZ) paused $(( $(date +%s) - t0 )) s for: $*" >> ~/swinrmt-runs/pauses.log
exit $rc
