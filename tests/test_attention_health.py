"""The attention-health record (swinrmt.models.health) and the q/k-norm option against logit growth."""
import json
import math
from pathlib import Path

import pytest
import torch

import swinrmt
from swinrmt import compare as C
from swinrmt.layers.health import row_health
from swinrmt.layers.mixers import MaSA2d, RetentionMixer, WindowMSA
from swinrmt.models.health import attention_health
from swinrmt.train import loop, train
from swinrmt.train.metrics import read_jsonl
from swinrmt.train.optim import Scheduler
from swinrmt.train.recipe import SchedCfg, load_recipe

from tests.reference import decomposed_retention, full_2d_retention

FAMILIES = ["rmt_nano", "gated_swinrmt_retention_nano", "gated_swinrmt_swat_nano"]


def _small_run(tmp: Path, name: str, **extra) -> list[dict]:
    """A few seconds of a one-block-per-stage nano model on digits at 32 px; returns its step records."""
    ov = {"model.name": "gated_swinrmt_retention_nano", "model.overrides": "{depths: [1, 1, 1, 1]}",
          "data.limit_train": 96, "data.limit_test": 16, "batch_size": 16, "epochs": 1, "log_every_steps": 3,
          "optim.clip_grad_norm": "null", "sched.warmup_epochs": 0, "health_images": 8, **extra}
    train(load_recipe("quick", [f"{k}={v}" for k, v in ov.items()]), tmp / name, progress=False)
    return [r for r in read_jsonl(tmp / name / "metrics.jsonl") if r["kind"] == "step"]


# -- the measurement --------------------------------------------------------------------------------------------------
def test_row_health_of_uniform_one_hot_and_padding_rows():
    allowed = torch.tensor([[True, True, True, False], [True, True, True, False], [True, True, True, False],
                            [False, False, False, False]])  # 3 keys for rows 0-2; row 3 a padding query
    w = torch.tensor([[1 / 3, 1 / 3, 1 / 3, 0], [1, 0, 0, 0], [0.5, 0.5, 0, 0], [0.25] * 4])
    content = torch.tensor([[1.0, -7.0, 2.0, 50.0], [0, 0, 0, 0], [0, 0, 0, 0], [99.0] * 4])
    s = row_health(w, content, allowed, valid_rows=torch.tensor([True, True, True, False]))
    assert s["rows"] == 3
    assert s["entropy"].item() == pytest.approx(1 + 0 + math.log(2) / math.log(3))
    assert s["peak"].item() == pytest.approx(1 / 3 + 1 + 0.5)
    assert s["logit_max"].item() == 7.0  # |-7|: the masked 50 and the padding row's 99 are left out


def test_swin_with_zero_logits_is_uniform_over_the_keys_each_row_may_see():
    """Shifted windows on a map that needs padding: every real query's row is uniform over its allowed keys, so the
    normalised entropy is exactly 1 and the peak weight is 1/n for that row's own n (counted here from the regions)."""
    m = WindowMSA(16, 2, window_size=4, shift=True)
    with torch.no_grad():
        m.qkv.weight[:32].zero_(), m.qkv.bias[:32].zero_(), m.relative_position_bias_table.zero_()
    s = m.health(torch.randn(2, 7, 6, 16))
    assert s["logit_max"] == 0
    assert s["entropy"].item() / s["rows"].item() == pytest.approx(1.0)
    # In rolled coordinates a window holds 4x4 positions; the last `shift` positions of an axis wrapped around and
    # form their own region; a key counts if it is real and in the query's window and regions.
    region = lambda i, n, shift: 1 if n - shift <= i < n else 0  # noqa: E731
    expect, rows = 0.0, 0
    for y in range(7):
        for x in range(6):
            wy, wx = y // 4, x // 4
            n = sum(1 for yy in range(4 * wy, min(4 * wy + 4, 7)) for xx in range(4 * wx, min(4 * wx + 4, 6))
                    if region(yy, 7, 2) == region(y, 7, 2) and region(xx, 6, 2) == region(x, 6, 2))
            if n >= 2:
                expect, rows = expect + 1 / n, rows + 1
    assert s["rows"].item() == 2 * 2 * rows  # batch x heads x real rows with >= 2 keys
    assert s["peak"].item() == pytest.approx(2 * 2 * expect)


def test_axial_logit_max_is_the_largest_q_dot_k_over_pairs_sharing_a_row_or_a_column():
    """One window covering the map, no shift: the width pass pairs tokens of a row, the height pass of a column."""
    m = RetentionMixer(16, 2, window_size=8, gate="none")
    x = torch.randn(2, 5, 6, 16)
    q, k = m.q(x).view(2, 5, 6, 2, 8), m.k(x).view(2, 5, 6, 2, 8)
    best = 0.0
    for y in range(5):
        for xx in range(6):
            for y2 in range(5):
                for x2 in range(6):
                    if y == y2 or xx == x2:
                        best = max(best, ((q[:, y, xx] * k[:, y2, x2]).sum(-1).abs().max() / math.sqrt(8)).item())
    assert m.health(x)["logit_max"].item() == pytest.approx(best, rel=1e-5)


@pytest.mark.parametrize("name", FAMILIES + ["swin_nano"])
def test_model_record_has_one_value_per_stage_and_leaves_the_model_as_it_was(name):
    model = swinrmt.create_model(name, num_classes=10, img_size=32).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(3, 3, 32, 32)
    rng = torch.get_rng_state()
    h = attention_health(model, x)
    assert model.training and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert set(h) == {"attn_entropy", "attn_peak", "attn_logit_max", "gate_mean", "gate_low"}
    assert all(len(v) == 4 for v in h.values())
    assert all(0 < e <= 1 for e in h["attn_entropy"][:3]) and all(v > 0 for v in h["attn_logit_max"])
    gated = name == "gated_swinrmt_retention_nano"  # the only family with a G1 gate by default
    assert all((g is not None) == gated for g in h["gate_mean"])
    if gated:
        assert all(0 < g < 1 for g in h["gate_mean"]) and all(0 <= g <= 1 for g in h["gate_low"])


# -- in the training record -------------------------------------------------------------------------------------------
def test_a_very_high_lr_drives_the_logits_up_and_the_record_shows_it(tmp_path):
    calm = _small_run(tmp_path, "calm", **{"optim.lr": "1e-4"})
    hot = _small_run(tmp_path, "hot", **{"optim.lr": "3e-2"})
    assert [r["step"] for r in hot] == [3, 6]
    assert hot[0]["attn_logit_max"][2] < hot[-1]["attn_logit_max"][2]  # grows during the run
    assert hot[-1]["attn_logit_max"][2] > 10 * calm[-1]["attn_logit_max"][2]
    assert hot[-1]["attn_entropy"][2] < calm[-1]["attn_entropy"][2] - 0.1  # rows concentrate on fewer keys
    summary = C.health_summary(tmp_path / "hot" / "metrics.jsonl")
    assert summary["health_logit_peak"] == max(v for r in hot for v in r["attn_logit_max"])
    assert summary["health_entropy_min"] == min(v for r in hot for v in r["attn_entropy"] if v is not None)
    assert (tmp_path / "hot" / "curves.png").stat().st_size > 0


def test_the_probe_changes_nothing_in_training_and_off_costs_nothing(tmp_path, monkeypatch):
    """Same losses and weights with and without the record (drop-path on: the random streams are exercised)."""
    with_probe = _small_run(tmp_path, "on", **{"model.drop_path_rate": 0.2})
    monkeypatch.setattr(loop, "attention_health", lambda *a: pytest.fail("probed with health_images=0"))
    without = _small_run(tmp_path, "off", **{"model.drop_path_rate": 0.2, "health_images": 0})
    assert [r["loss"] for r in with_probe] == [r["loss"] for r in without]
    assert all("attn_entropy" not in r for r in without)
    from safetensors.torch import load_file
    a, b = (load_file(tmp_path / n / "checkpoints" / "last.safetensors") for n in ("on", "off"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_compare_report_gives_each_models_worst_health(tmp_path):
    rows = []
    for lab, seed, peak in [("a", 0, 3.0), ("a", 1, 5.0), ("b", 0, 20.0)]:
        metrics = tmp_path / f"{lab}{seed}.jsonl"
        recs = [{"kind": "step", "attn_logit_max": [1.0, peak], "attn_entropy": [0.9, 0.5 + seed / 10],
                 "gate_mean": [None, None]}, {"kind": "step", "attn_logit_max": [1.0, 2.0],
                                              "attn_entropy": [0.95, 0.97], "gate_mean": [None, None]}]
        metrics.write_text("".join(json.dumps(r) + "\n" for r in recs))
        rows.append({"label": lab, **C.health_summary(metrics)})
    table = "\n".join(C._health_table([{"label": "a"}, {"label": "b"}], rows))
    assert "| `a` | 4 (5) | 0.55 (0.5) | - |" in table and "| `b` | 20 (20) | 0.5 (0.5) | - |" in table
    assert C._health_table([{"label": "a"}], [{"label": "a", "health_logit_peak": None}]) == []


# -- q/k norm ---------------------------------------------------------------------------------------------------------
def _rms(t, w, heads):
    t = t.unflatten(-1, (heads, -1))
    return (t / torch.sqrt((t ** 2).mean(-1, keepdim=True) + 1e-6) * w).flatten(-2)


def test_qk_norm_retention_equals_reference_on_normalised_q_and_k():
    m = RetentionMixer(16, 2, window_size=8, shift=True, gate="none", lce=False, qk_norm=True).double()
    with torch.no_grad():
        m.q_norm.weight.uniform_(0.5, 2), m.k_norm.weight.uniform_(0.5, 2)
    x = torch.randn(2, 5, 6, 16, dtype=torch.float64)
    q, k, v = _rms(m.q(x), m.q_norm.weight, 2), _rms(m.k(x), m.k_norm.weight, 2), m.v(x)
    ref = torch.stack([decomposed_retention(q[i], k[i], v[i], 2) for i in range(2)])
    assert torch.allclose(m(x), m.proj(ref), atol=1e-10)


def test_qk_norm_masa_2d_equals_reference_and_bounds_the_logits():
    m = MaSA2d(16, 2, rotary="none", lce=False, qk_norm=True).double()
    x = torch.randn(1, 3, 4, 16, dtype=torch.float64)
    q, k, v = _rms(m.q(x), m.q_norm.weight, 2), _rms(m.k(x), m.k_norm.weight, 2), m.v(x)
    assert torch.allclose(m(x), m.proj(full_2d_retention(q[0], k[0], v[0], 2)[None]), atol=1e-10)
    with torch.no_grad():  # q and k 100x larger: same output, and |q.k|/sqrt(d) stays <= sqrt(d) at unit scales
        big = MaSA2d(16, 2, rotary="none", lce=False, qk_norm=True).double()
        big.load_state_dict(m.state_dict())
        big.q.weight.mul_(100), big.q.bias.mul_(100), big.k.weight.mul_(100), big.k.bias.mul_(100)
    assert torch.allclose(big(x), m(x), atol=1e-5)  # equal up to the norm's eps
    assert big.health(x)["logit_max"] <= math.sqrt(8) + 1e-9


@pytest.mark.parametrize("name", FAMILIES)
def test_qk_norm_is_off_by_default_and_trains_every_parameter_at_any_size_and_in_bf16(name):
    plain = swinrmt.create_model(name, num_classes=10, img_size=64)
    normed = swinrmt.create_model(name, num_classes=10, img_size=64, qk_norm=True)
    extra = set(normed.state_dict()) - set(plain.state_dict())
    assert not set(plain.state_dict()) - set(normed.state_dict()) and extra
    assert all(k.endswith(("q_norm.weight", "k_norm.weight")) for k in extra)
    assert not any("norm" in n for n, m in plain.named_modules() if n.endswith(("q_norm", "k_norm")))
    x = torch.randn(2, 3, 40, 56)  # no multiple of the windows: padding and uneven maps
    normed(x).float().pow(2).mean().backward()
    missing = [n for n, p in normed.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(normed(x).float()).all()


# -- warm-up as a share of the schedule -------------------------------------------------------------------------------
def test_warmup_frac_is_the_same_share_of_any_budget():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    short = Scheduler(opt, SchedCfg(warmup_frac=0.1), 1.0, epochs=2, steps_per_epoch=781)
    long = Scheduler(opt, SchedCfg(warmup_frac=0.1), 1.0, epochs=6, steps_per_epoch=781)
    assert (short.warmup, long.warmup) == (156, 469)
    assert short.lr_at(155) < 1.0 == short.lr_at(156) and long.lr_at(468) < 1.0 == long.lr_at(469)
    with pytest.raises(ValueError, match="warmup_frac"):
        load_recipe("quick", ["sched.warmup_frac=0.1"])  # quick sets warmup_epochs: give one of the two
    with pytest.raises(ValueError, match="warmup_frac"):
        load_recipe("quick", ["sched.warmup_epochs=0", "sched.warmup_frac=1.5"])


# -- 2-D attention inside the window (Retention, decompose=False per stage) -------------------------------------------
def test_retention_2d_last_stages_train_every_parameter_at_any_size_and_in_bf16_and_swat_refuses():
    name = "gated_swinrmt_retention_nano"
    plain = swinrmt.create_model(name, num_classes=10, img_size=64)
    two_d = swinrmt.create_model(name, num_classes=10, img_size=64, decompose=(True, True, False, False))
    assert plain.state_dict().keys() == two_d.state_dict().keys()  # the same weights, another attention
    assert [type(b.mixer).__name__ for s in two_d.stages for b in s.blocks][-6:] == ["Retention2dMixer"] * 6
    x = torch.randn(2, 3, 40, 56)
    two_d(x).pow(2).mean().backward()
    missing = [n for n, p in two_d.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(two_d(x).float()).all()
    with pytest.raises(ValueError, match="Retention mixer only"):
        swinrmt.create_model("gated_swinrmt_swat_nano", decompose=(True, True, False, False))
