#!/usr/bin/env bash
# The CUDA table of benchmarks/speed/README.md: the CUDA correctness tests, then `swinrmt bench` on the tiny models at
# 64 px in bf16 with torch.compile (batch 256; 64, the CPU table's batch, with WARM_BATCHES), and eager bf16 and fp32
# steps at batch 256 and 64 beside them.
# Run from the repository root on a GPU machine (the package needs no install: PYTHONPATH is set here):
#   OUT=benchmarks/speed benchmarks/speed/run_cuda.sh
# Writes $OUT/run_cuda.log, $OUT/pytest_cuda.log, $OUT/warm_runs.jsonl and $OUT/cuda_*.json. BUDGET_S (default 540)
# bounds the whole run: a step that no longer fits is skipped and says so, most important first, so a run cut short
# still leaves the compiled bf16 table. PYTEST_K selects tests (pytest -k), WARM_BATCHES the compiled batch sizes.
#
# Compilation is the slow part: on the H200 machine (16 CPU cores, torch 2.11), with six compiles and the tests running
# at once, a tiny model's inference graph took 68-98 s to compile and rmt_tiny's training graph 155 s; the gated
# variants' training graphs took over 195 s (run_cuda_session11.log). Phase 1 compiles every (model, mode, batch) in
# parallel processes, which fills Inductor's on-disk caches; phase 2 then times the models side by side in one process
# per table, where compiling is a cache hit (7-13 s a graph). Timings come from phase 2 only, run alone. Whether the
# default budget fits the compiled training table is not yet seen: the eleventh session's device time ran out first,
# and the twelfth session's loan was refused. bench writes each table's JSON after every finished (precision, mode)
# group, so a table cut off in inference still keeps its training rows.
set -uo pipefail
OUT=${OUT:-benchmarks/speed}
PY=${PYTHON:-python3}
BUDGET_S=${BUDGET_S:-540}
BIG=${BIG:-256} SMALL=${SMALL:-64}
WARM_BATCHES=${WARM_BATCHES:-$BIG}  # compiled tables; add $SMALL (the CPU table's batch) where the budget allows
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
M=${MODELS:-rmt_tiny gated_swinrmt_retention_tiny gated_swinrmt_swat_tiny}
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu MODELS=rmt_nano BIG=4 SMALL=2 LOW=fp32 TORCH_COMPILE_DISABLE=1: a dry run on CPU
LOW=${LOW:-bf16}  # the compiled tables' precision (fp32 for a dry run on a CPU without native bf16)
EAGER_PRECISIONS="$LOW"; [[ $LOW != fp32 ]] && EAGER_PRECISIONS="$LOW fp32"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/run_cuda.log") 2>&1

left() { echo $((BUDGET_S - SECONDS)); }
# fits NEED LIMIT: a timeout of at most LIMIT seconds that ends 15 s before the budget, or nothing if under NEED
fits() { local t; t=$(($(left) - 15)); ((t > $2)) && t=$2; ((t >= $1)) && echo "$t"; }
bench() { # bench NAME NEED LIMIT ARGS...: one side-by-side table into $OUT/NAME.json
  local name=$1 t; t=$(fits "$2" "$3"); shift 3
  if [[ -z $t ]]; then echo "== $name: skipped, $(left) s of the budget left"; return; fi
  echo "== $name (timeout $t s): $*"
  timeout "$t" $PY -m swinrmt bench --device $DEVICE --models $M --img-size 64 --mode train infer --steps 20 --warmup 3 \
    "$@" --out "$OUT/$name.json" || echo "== $name: exit $?"
}

date -u; [[ $DEVICE == cuda ]] && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available()
      and torch.cuda.get_device_name())"
git log -1 --format='commit %H %s' 2>/dev/null || true

echo "== phase 1: CUDA tests and compile warm-up, in parallel ($(left) s left)"
timeout $(($(left) - 90)) $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py ${PYTEST_K:+-k "$PYTEST_K"} \
  > "$OUT/pytest_cuda.log" 2>&1 &
jobs=($!)
for b in $WARM_BATCHES; do
  for m in $M; do
    for mode in train infer; do
      TORCHINDUCTOR_COMPILE_THREADS=4 timeout $(($(left) - 90)) $PY -m swinrmt bench --device $DEVICE --models $m \
        --img-size 64 --batch $b --mode $mode --precision $LOW --compile --steps 1 --warmup 1 --no-memory --overwrite \
        --out "/tmp/warm_${m}_${mode}_$b.json" > "/tmp/warm_${m}_${mode}_$b.log" 2>&1 \
        || echo "[warm $m $mode b$b] exit $?: $(grep -E 'Error|error:' "/tmp/warm_${m}_${mode}_$b.log" | tail -n 3)" &
      jobs+=($!)
    done
  done
done
wait "${jobs[@]}"  # not a bare wait: that would also wait for the tee behind this script's output
for f in /tmp/warm_*.json; do [[ -f $f ]] && $PY -c "import json, sys; r = json.load(open(sys.argv[1]))['results'][0]
print(f\"[warm {r['model']} {r['mode']} b{r['batch']}] first step (compile) {r['first_step_s']:.0f} s\")" "$f"; done
cat /tmp/warm_*.json > "$OUT/warm_runs.jsonl" 2>/dev/null
echo "== phase 1 done ($(left) s left); tests:"; tail -n 25 "$OUT/pytest_cuda.log"

echo "== phase 2: timed tables"
bench cuda_${LOW}_compile_b$BIG 45 150 --batch $BIG --precision $LOW --compile
bench cuda_eager_b$BIG 25 60 --batch $BIG --precision $EAGER_PRECISIONS
[[ " $WARM_BATCHES " == *" $SMALL "* ]] && bench cuda_${LOW}_compile_b$SMALL 45 150 --batch $SMALL --precision $LOW --compile
bench cuda_eager_b$SMALL 25 60 --batch $SMALL --precision $EAGER_PRECISIONS
echo "== done, $(left) s of the budget left"
for f in "$OUT"/cuda_*.json; do [[ -f $f ]] && $PY benchmarks/speed/make_table.py "$f"; done
