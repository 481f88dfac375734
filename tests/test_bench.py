"""`swinrmt bench` and the FLOP counter: known inputs, the CLI end to end on one tiny model, the JSON schema."""
from __future__ import annotations

import json
import statistics

import pytest
import torch
import torch.nn as nn

from swinrmt import bench
from swinrmt.cli import main
from swinrmt.flops import count_forward_flops, count_train_flops


class _Lin(nn.Module):
    in_chans = 3

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 4 * 4, 10)

    def forward(self, x):
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_linear_flops_are_2_in_out_batch(device):
    m = _Lin()
    assert count_forward_flops(m, 4, batch=5, device=device) == 2 * 48 * 10 * 5
    assert count_train_flops(m, 4, batch=5, device=device) == 3 * 2 * 48 * 10 * 5


def test_conv_flops_and_breakdown():
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1))
    total, per = count_forward_flops(m, (3, 6, 6), device="cpu", by_module=True)
    assert total == 2 * 8 * 6 * 6 * 3 * 9
    assert any(v == total for k, v in per.items() if k.endswith("0"))


def test_attention_counted_with_math_backend():
    """SDPA must count (fused CPU attention would count 0): 2 matmuls of 2*L*L*d per head."""

    class Att(nn.Module):
        in_chans = 2

        def forward(self, x):  # x: (B, heads=2, L=4, d=4)
            return torch.nn.functional.scaled_dot_product_attention(x, x, x)

    assert count_forward_flops(Att(), (1, 2, 4, 4), device="cpu") == 2 * (2 * 2 * 4 * 4 * 4)


def test_model_flops_meta_equals_cpu_and_is_fast():
    import time

    import swinrmt

    m = swinrmt.create_model("gated_swinrmt_retention_nano", num_classes=10, img_size=32)
    assert count_forward_flops(m, 32, device="meta") == count_forward_flops(m, 32, device="cpu") > 0
    with torch.device("meta"):
        big = swinrmt.create_model("gated_swinrmt_swat_paper")
    t0 = time.perf_counter()
    assert count_forward_flops(big, 224) > 1e10
    assert time.perf_counter() - t0 < 10


def test_mfu_and_helpers_on_known_inputs():
    assert bench.mfu(100e9, 2.0, 100e9) == pytest.approx(0.5)
    assert bench.step_flops(10, 4, "train") == 120
    assert bench.step_flops(10, 4, "infer") == 40
    assert bench.percentile([1, 2, 3, 4, 5], 50) == 3
    assert bench.percentile([1, 2], 50) == pytest.approx(1.5)
    with pytest.raises(ValueError):
        bench.mfu(1.0, 0.0, 1.0)


def test_peak_flops_is_plausible():
    p = bench.measure_peak_flops("cpu", "fp32", n=256, repeats=3)
    assert 1e8 < p < 1e14


def test_cpu_peak_counts_the_gemm_the_projections_run_on():
    """The models' projections run on oneDNN, so the peak must include it (else layers could beat "peak")."""
    rates = bench.peak_flops_by_kernel("cpu", "fp32", n=256, repeats=3)
    from swinrmt.kernels.onednn import HAVE_ONEDNN_LINEAR

    expected = {"aten.mm", "onednn"} if HAVE_ONEDNN_LINEAR else {"aten.mm"}
    assert set(rates) == expected and all(1e8 < r < 1e14 for r in rates.values())


def test_bench_cli_writes_json(tmp_path, capsys):
    out = tmp_path / "b.json"
    rc = main(["bench", "--models", "rmt_nano", "gated_swinrmt_swat_nano", "--img-size", "32", "--batch", "2",
               "--steps", "2", "--warmup", "1", "--mode", "train", "infer", "--no-memory", "--out", str(out)])
    assert rc == 0
    rep = json.loads(out.read_text())
    assert {"machine", "config", "peak_flops", "peak_flops_by_kernel", "results", "load_avg_start",
            "load_avg_end"} <= rep.keys()
    assert len(rep["results"]) == 4
    assert {"cpu_capability", "cpu_kernels", "cpu_linear"} <= rep["machine"].keys()  # which CPU paths ran
    for row in rep["results"]:
        assert set(bench.SCHEMA_KEYS) <= row.keys()
        assert row["images_per_s"] > 0 and 0 < row["mfu"] < 1.5
        assert row["flops_per_step"] == row["flops_per_image"] * 2 * (3 if row["mode"] == "train" else 1)
        assert row["achieved_flops"] == pytest.approx(row["flops_per_step"] / (row["step_ms"] / 1e3))
        assert len(row["step_ms_all"]) == 2
        # each step against its own round's peak sample, then the median
        paired = [row["flops_per_step"] / (t / 1e3) / p for t, p in zip(row["step_ms_all"], row["peak_flops_rounds"])]
        assert len(row["peak_flops_rounds"]) == 2 and row["mfu_paired"] == pytest.approx(statistics.median(paired))
    base = [r for r in rep["results"] if r["model"] == "rmt_nano"]
    assert all(r["step_time_ratio"] == 1.0 for r in base)
    assert "rmt_nano" in capsys.readouterr().out


def test_bench_saves_each_finished_group_and_never_replaces_a_result(tmp_path, capsys, monkeypatch):
    """A run cut off by a time limit keeps the groups it finished (`"complete": false`), and an existing --out file
    survives a second run unless --overwrite is given."""
    out = tmp_path / "b.json"
    args = ["bench", "--models", "rmt_nano", "--img-size", "32", "--batch", "2", "--steps", "1", "--warmup", "0",
            "--mode", "train", "infer", "--no-memory", "--out", str(out)]
    saved = []
    real_write = bench.write_json

    def write_then_stop(path, report):
        real_write(path, report)
        saved.append(json.loads(out.read_text()))
        if len(saved) == 1:
            raise KeyboardInterrupt  # the time limit, right after the first group

    monkeypatch.setattr(bench, "write_json", write_then_stop)
    assert main(args) == 130
    rep = json.loads(out.read_text())
    assert rep["complete"] is False and [r["mode"] for r in rep["results"]] == ["train"]

    monkeypatch.setattr(bench, "write_json", real_write)
    before = out.read_text()
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == before
    assert main(args + ["--overwrite"]) == 0
    rep = json.loads(out.read_text())
    assert rep["complete"] is True and [r["mode"] for r in rep["results"]] == ["train", "infer"]


def test_memory_child_measures_a_step():
    spec = {"model": "rmt_nano", "mode": "train", "precision": "fp32", "img_size": 32, "batch": 2, "num_classes": 10,
            "mem_steps": 1, "threads": 1}
    res = bench._cpu_peak_memory(spec)
    assert res["rss_peak_mb"] > res["peak_mem_mb"] > 0


def test_bench_rejects_unknown_model(capsys):
    assert main(["bench", "--models", "no_such_model", "--no-memory"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_compiled_rows_carry_the_compile_check_and_first_step(monkeypatch):
    """--compile: inference rows say how far the compiled output is from eager, every row how long the first step took
    (the compilation). torch.compile is swapped for a wrapper that perturbs the output, so the check must see it."""

    class Off(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            y = self.m(x)
            return y + 1e-3 * y.norm() / y.numel() ** 0.5  # a relative error of about 1e-3

    monkeypatch.setattr(torch, "compile", Off)
    rep = bench.run_bench(["rmt_nano"], img_size=32, batch=2, modes=("train", "infer"), steps=1, warmup=1,
                          compile=True, memory=False, log=lambda *a: None)
    rows = {r["mode"]: r for r in rep["results"]}
    assert rows["train"]["compiled_rel_error"] is None
    assert 5e-4 < rows["infer"]["compiled_rel_error"] < 2e-3
    assert all(r["first_step_s"] > 0 for r in rows.values())
