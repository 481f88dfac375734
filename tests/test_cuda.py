"""CUDA: the CPU suite's correctness checks again on a GPU, where the mixers take other kernels (cuDNN / flash / memory-
efficient SDPA, no hand-written CPU kernels), plus bf16 autocast, torch.compile and `swinrmt bench --device cuda`.

Skipped without a CUDA device; `benchmarks/speed/run_cuda.sh` runs them on a GPU machine before the CUDA benchmark.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from swinrmt import kernels
import swinrmt
from swinrmt import bench
from tests.layers.test_fast_path import CASES, _assert_same_run, _run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device (these run on a GPU machine: benchmarks/speed/run_cuda.sh)")

FAMILIES = ["rmt_nano", "gated_swinrmt_retention_nano", "gated_swinrmt_swat_nano", "swin_nano"]


@pytest.fixture(autouse=True)
def _exact_fp32():
    """fp32 means fp32 here: TF32 matmuls and convs would put the fast path and the reference 1e-3 apart."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("name,cls,kw,shape", CASES, ids=[c[0] for c in CASES])
def test_mixer_fast_equals_reference_on_cuda(name, cls, kw, shape):
    torch.manual_seed(0)
    m = cls(32, 4, **kw).cuda()
    x = torch.randn(*shape, 32, device="cuda")
    _assert_same_run(_run(m, x, fast=True), _run(m, x, fast=False))


@pytest.mark.parametrize("name", FAMILIES)
def test_model_on_cuda_equals_cpu_and_reference(name):
    """Same weights, same input: CUDA fast path = CUDA reference path = CPU, in outputs and gradients."""
    torch.manual_seed(0)
    cpu = swinrmt.create_model(name, num_classes=10, img_size=64).eval()
    gpu = swinrmt.create_model(name, num_classes=10, img_size=64).eval()
    gpu.load_state_dict(cpu.state_dict())
    gpu.cuda()
    x = torch.randn(2, 3, 72, 56)
    runs = {}
    for key, model, dev, ref in (("cpu", cpu, "cpu", False), ("cuda", gpu, "cuda", False), ("cuda_ref", gpu, "cuda", True)):
        model.zero_grad(set_to_none=True)
        with kernels.reference() if ref else torch.enable_grad():
            y = model(x.to(dev))
            y.square().sum().backward()
        runs[key] = (y.detach().cpu(), {n: p.grad.cpu() for n, p in model.named_parameters() if p.grad is not None})
    y_cpu, g_cpu = runs["cpu"]
    for key in ("cuda", "cuda_ref"):
        y, g = runs[key]
        assert g.keys() == g_cpu.keys()
        assert _rel(y, y_cpu) < 1e-5, key
        assert _rel(torch.cat([g[n].flatten() for n in g_cpu]), torch.cat([t.flatten() for t in g_cpu.values()])) < 1e-4
        for n in g_cpu:  # no parameter's gradient may be off on its own (a wrong path in one block, say)
            torch.testing.assert_close(g[n], g_cpu[n], rtol=1e-3, atol=1e-5 * float(g_cpu[n].abs().max()) + 1e-7,
                                       msg=lambda s, n=n: f"{key} {n}: {s}")


@pytest.mark.parametrize("name", FAMILIES)
def test_bf16_autocast_on_cuda_follows_fp32(name):
    torch.manual_seed(0)
    model = swinrmt.create_model(name, num_classes=10, img_size=64).cuda().eval()
    x = torch.randn(4, 3, 64, 64, device="cuda")
    with torch.no_grad():  # eval first: a training forward would move BatchNorm's running statistics
        f32, y32 = model.forward_features(x), model(x)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            f16, y16 = model.forward_features(x).float(), model(x).float()
    assert _rel(f16, f32) < 3e-2 and _rel(y16, y32) < 3e-2  # 1e-2 on CPU for every family; a wrong path gives ~1
    model.train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(x)
    out.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_compiled_training_step_on_cuda_matches_eager():
    """Inductor's CUDA code (Triton), forward and backward, in bf16 autocast as the benchmark runs it."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = swinrmt.create_model("gated_swinrmt_retention_nano", num_classes=10, img_size=32, drop_path_rate=0.0).cuda()
    x, y = torch.randn(8, 3, 32, 32, device="cuda"), torch.randint(0, 10, (8,), device="cuda")
    compiled = torch.compile(model)

    def step(fn):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(fn(x), y)
        loss.backward()
        return loss.detach().float(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    (l_eager, g_eager), (l_comp, g_comp) = step(model), step(compiled)
    assert torch.isfinite(g_comp).all()
    assert abs(float(l_comp - l_eager)) < 2e-2 * float(l_eager)
    assert _rel(g_comp, g_eager) < 5e-2


def test_bench_on_cuda_reports_memory_and_mfu():
    rep = bench.run_bench(["rmt_nano", "gated_swinrmt_swat_nano"], img_size=32, batch=8, modes=("train", "infer"),
                          precisions=("bf16",), steps=2, warmup=1, device="cuda", log=lambda *a: None)
    assert "gpu" in rep["machine"] and rep["peak_flops"]["bf16"] > 1e12
    for row in rep["results"]:
        assert 0 < row["mfu"] < 1 and row["peak_mem_mb"] > 0 and row["first_step_s"] > 0
    train = {r["model"]: r["peak_mem_mb"] for r in rep["results"] if r["mode"] == "train"}
    infer = {r["model"]: r["peak_mem_mb"] for r in rep["results"] if r["mode"] == "infer"}
    assert all(train[m] > infer[m] for m in train)  # training holds activations, gradients and optimizer state
