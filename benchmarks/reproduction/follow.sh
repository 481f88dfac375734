# Sourced by the reproduction run.sh scripts. `follow OUT REC`: wait while the `swinrmt compare --out OUT` started by
# run_detached.sh runs, collecting the records of its finished runs (collect.py) into the repository folder REC every
# 10 minutes and once at its end. Needs PY (the Python that runs collect.py).
compare_running() { pgrep -f "swinrmt compare.*--out $1( |$)" > /dev/null; }
follow() {
    local out=$1 rec=$2 n=0
    while compare_running "$out"; do
        sleep 60
        n=$((n + 1)); [ $((n % 10)) -ne 0 ] || "$PY" "$REPRO/collect.py" "$out" "$rec" > /dev/null 2>&1 || true
    done
    "$PY" "$REPRO/collect.py" "$out" "$rec" > /dev/null 2>&1 || true  # nothing finished yet is not an error
}
REPRO=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
