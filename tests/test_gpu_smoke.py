"""benchmarks/gpu/smoke.sh --test: the prepared GPU check runs end to end on the CPU and writes its JSON and Markdown
summaries (run_gpu.sh and tests/test_cuda.py are left out here: tests/test_run_gpu.py and the suite run them)."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_smoke_script_runs_end_to_end_on_the_cpu(tmp_path):
    proc = subprocess.run(["bash", str(REPO / "benchmarks/gpu/smoke.sh"), "--test", "--out", str(tmp_path),
                           "--skip", "run_gpu", "cuda_tests"], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rep = json.loads((tmp_path / "smoke.json").read_text())
    s = rep["sections"]
    assert rep["device"] == "cpu" and rep["failed"] == []
    assert {k for k, v in s.items() if v["status"] == "ok"} == {"versions", "resume", "eval", "syncs", "kernels",
                                                                  "ddp", "bf16_compile", "flex"}
    assert s["resume"]["bit_identical"] and all(c == {} for c in s["syncs"]["deterministic=False"]["syncs_per_step"])
    assert all(r["max_abs_diff_out"] < 1e-5 for r in s["flex"]["families"].values()), s["flex"]
    assert "| resume | ok |" in (tmp_path / "smoke.md").read_text()


def test_smoke_without_a_gpu_outside_test_mode_is_one_line():
    import torch

    if torch.cuda.is_available():
        return
    proc = subprocess.run(["bash", str(REPO / "benchmarks/gpu/smoke.sh")], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 2 and proc.stderr.strip().startswith("smoke: error: no CUDA device")
