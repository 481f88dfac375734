"""Issue 36 on a machine without a GPU: the CUDA-only settings and decisions, tested as pure functions or with CUDA
mocked (TF32 and determinism as recipe settings, device checks, the launcher's refusal to train on the CPU by
accident, the kornia floor)."""
from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from swinrmt.train import cuda_settings, distributed
from swinrmt.train.recipe import Recipe, load_recipe

REPO = Path(__file__).resolve().parents[1]


# -- TF32 and determinism: recipe settings ---------------------------------------------------------------------------
def test_cuda_settings_are_recipe_fields_with_documented_defaults():
    r = load_recipe("quick")
    assert (r.cuda.tf32, r.cuda.deterministic) == (True, False)
    assert r.to_dict()["cuda"] == {"tf32": True, "deterministic": False}  # in every run's config.yaml
    r2 = r.with_overrides(["cuda.tf32=false", "cuda.deterministic=true"])
    assert (r2.cuda.tf32, r2.cuda.deterministic) == (False, True)
    with pytest.raises(ValueError, match="recipe key 'cuda.tf32': expected bool"):
        r.with_overrides(["cuda.tf32=maybe"])
    assert Recipe.from_dict({k: v for k, v in r.to_dict().items() if k != "cuda"}).cuda == r.cuda  # older configs


def test_cuda_settings_leave_a_cpu_run_alone():
    before = cuda_settings.state()
    assert cuda_settings.apply(load_recipe("quick").with_overrides(["cuda.deterministic=true"]).cuda,
                               torch.device("cpu")) is None
    assert cuda_settings.state() == before


def test_cuda_settings_apply_and_restore_on_a_cuda_device(monkeypatch):
    monkeypatch.delenv(cuda_settings.CUBLAS_ENV, raising=False)
    before = cuda_settings.state()
    cfg = load_recipe("quick").with_overrides(["cuda.deterministic=true"]).cuda
    saved = cuda_settings.apply(cfg, torch.device("cuda"))  # flags only: no GPU needed to set them
    try:
        s = cuda_settings.state()
        assert s["matmul_tf32"] and s["cudnn_tf32"] and s["deterministic"] and s["deterministic_warn_only"]
        assert s["cudnn_deterministic"] and not s["cudnn_benchmark"] and s["cublas_workspace"] == ":4096:8"
    finally:
        cuda_settings.restore(saved)
    assert cuda_settings.state() == before
    saved = cuda_settings.apply(load_recipe("quick").with_overrides(["cuda.tf32=false"]).cuda, torch.device("cuda"))
    try:
        s = cuda_settings.state()
        assert not s["matmul_tf32"] and not s["cudnn_tf32"] and not s["deterministic"]
    finally:
        cuda_settings.restore(saved)
    assert cuda_settings.state() == before


def test_compare_treats_cuda_settings_as_per_run_and_older_plans_as_the_same_protocol(tmp_path):
    from swinrmt.compare import PLAN, _check_plan

    new = load_recipe("quick").to_dict()
    old = {k: v for k, v in new.items() if k != "cuda"}  # a report folder made before the field existed
    (tmp_path / PLAN).write_text(json.dumps({"recipe": old}))
    _check_plan(tmp_path, new)
    _check_plan(tmp_path, load_recipe("quick", ["cuda.tf32=false"]).to_dict())


def test_bench_records_tf32():
    from swinrmt import bench

    rep = bench.run_bench(["rmt_nano"], img_size=32, batch=2, modes=("infer",), steps=1, warmup=0, memory=False,
                          log=lambda *a: None)
    assert rep["config"]["tf32"] is None  # CPU: no TF32 (on CUDA: the setting in force, and machine.matmul_tf32)


# -- devices -----------------------------------------------------------------------------------------------------
def _fake_gpus(monkeypatch, n: int):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    monkeypatch.setattr(torch.cuda, "set_device", lambda dev: None)


def test_each_local_rank_gets_its_own_gpu_or_one_clear_error(monkeypatch):
    _fake_gpus(monkeypatch, 2)
    assert distributed.resolve_device("auto", 1) == torch.device("cuda", 1)
    assert distributed.resolve_device("cuda", 0) == torch.device("cuda", 0)
    with pytest.raises(ValueError, match=r"LOCAL_RANK=2 but only 2 CUDA device\(s\) are visible.*nproc-per-node"):
        distributed.resolve_device("cuda", 2)  # was cuda:0 again (2 % 2): NCCL's "duplicate GPU" later
    with pytest.raises(ValueError, match="only 2 CUDA device"):
        distributed.resolve_device("cuda:3", 0)


def test_train_on_cuda_without_a_gpu_is_one_line(monkeypatch, capsys, tmp_path):
    from swinrmt.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["train", "--device", "cuda", "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("swinrmt train: error: device 'cuda' requested but CUDA is not "
                                               "available"), err
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU refusal")
def test_run_gpu_sh_refuses_to_train_on_the_cpu_by_accident(tmp_path):
    proc = subprocess.run(["bash", str(REPO / "benchmarks/reproduction/run_gpu.sh"), "--out", str(tmp_path / "o"),
                           "--data", str(tmp_path)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHON": sys.executable, "RUN_GPU_TEST": "0"})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("run_gpu: error: no CUDA device: this torch") and "--test" in lines[0]
    assert not (tmp_path / "o").exists()


# -- data ----------------------------------------------------------------------------------------------------------
def test_kornia_equalize_is_batched_without_host_syncs():
    """kornia >= 0.9.2 (pyproject): equalize is one batched pass; older releases loop over images and channels
    with `.item()` calls (a host sync per channel on a GPU)."""
    import kornia.enhance.adjust as kadj

    version = tuple(int(p) for p in importlib.metadata.version("kornia").split(".")[:3] if p.isdigit())
    assert version >= (0, 9, 2) and hasattr(kadj, "_scale_channel_batched")
    assert '"kornia>=0.9.2"' in (REPO / "pyproject.toml").read_text()
