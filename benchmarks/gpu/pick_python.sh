# Sourced by benchmarks/gpu/smoke.sh and benchmarks/reproduction/run_gpu.sh: sets PY to $PYTHON if given, else to
# the first of $REPO/.venv/bin/python and python3 whose torch sees a GPU (a repository .venv often holds the CPU
# wheel); in --test mode (or with RUN_GPU_TEST=1), or when none does, the .venv if present. The scripts then stop
# with one line without a GPU unless --test: a full recipe never trains on the CPU by accident.
pick_python() {
  PY=${PYTHON:-}
  [[ -n $PY ]] && return 0
  local candidates=() test_mode=${RUN_GPU_TEST:-0} a c
  [[ -x $REPO/.venv/bin/python ]] && candidates+=("$REPO/.venv/bin/python")
  command -v python3 >/dev/null 2>&1 && candidates+=(python3)
  for a in "$@"; do [[ $a == --test ]] && test_mode=1; done
  if [[ $test_mode != 1 ]]; then
    for c in "${candidates[@]}"; do
      if "$c" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
        PY=$c; return 0
      fi
    done
  fi
  PY=${candidates[0]:-python3}
}

# `launch SCRIPT ARGS...`: run a Python script of the repository ($REPO) with the interpreter pick_python chooses.
launch() {
  local script=$1; shift
  pick_python "$@"
  export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
  exec "$PY" "$script" "$@"
}
