"""Optimizer groups, schedule, EMA, metrics and checkpoints, each against an independent reference."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from sklearn.metrics import confusion_matrix

from swinrmt.train import checkpoint as ckpt_mod
from swinrmt.train.checkpoint import check_same_model, load_checkpoint, load_weights, save_checkpoint
from swinrmt.train.ema import ModelEma
from swinrmt.train.metrics import EvalAccumulator, JsonlLogger, expected_calibration_error, read_jsonl, truncate_jsonl
from swinrmt.train.optim import Scheduler, build_optimizer, fused_ok, param_groups
from swinrmt.train.recipe import OptimCfg, SchedCfg


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.LayerNorm(4)
        self.decay_rate = nn.Parameter(torch.zeros(4, 4))  # 2-D but a decay parameter: never weight-decayed
        self.fc = nn.Linear(4, 2)


def test_no_weight_decay_on_norms_biases_and_decay_rates():
    net = _Net()
    decay, no_decay = param_groups(net, 0.05)
    names = {id(p): n for n, p in net.named_parameters()}
    assert sorted(names[id(p)] for p in decay["params"]) == ["conv.weight", "fc.weight"]
    assert sorted(names[id(p)] for p in no_decay["params"]) == ["conv.bias", "decay_rate", "fc.bias", "norm.bias",
                                                                 "norm.weight"]
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.05, 0.0)
    assert isinstance(build_optimizer(net, OptimCfg(name="sgd")), torch.optim.SGD)


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_optimizer_is_fused_on_cpu_and_steps_like_the_default(name):
    """The fused kernel (one per parameter, not PyTorch's CPU loop) with the same groups and the same updates."""
    torch.manual_seed(0)
    nets = [_Net(), _Net()]
    nets[1].load_state_dict(nets[0].state_dict())
    cfg = OptimCfg(name=name, lr=1e-2, weight_decay=0.05, momentum=0.9)
    fused = build_optimizer(nets[0], cfg)
    assert all(g["fused"] is True for g in fused.param_groups)
    reference = type(fused)(param_groups(nets[1], cfg.weight_decay), lr=cfg.lr, foreach=False,
                            **({"betas": cfg.betas, "eps": cfg.eps} if name == "adamw" else
                               {"momentum": cfg.momentum, "nesterov": cfg.nesterov}))
    for _ in range(3):
        grads = [torch.randn_like(p) for p in nets[0].parameters()]
        for net, opt in zip(nets, (fused, reference)):
            for p, g in zip(net.parameters(), grads):
                p.grad = g.clone()
            opt.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_optimizer_falls_back_where_no_fused_kernel():
    net = _Net().to("meta")  # no fused kernel on the meta device: PyTorch's default implementation
    assert not fused_ok(list(net.parameters())) and not fused_ok([])
    assert all(g["fused"] is None for g in build_optimizer(net, OptimCfg()).param_groups)


def test_warmup_cosine_and_step_schedules():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    s = Scheduler(opt, SchedCfg(warmup_epochs=1, warmup_start_factor=0.1, min_lr=0.01), 1.0, epochs=5,
                  steps_per_epoch=10)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    lrs = [s.lr_at(t) for t in range(50)]
    assert lrs[5] == pytest.approx(0.1 + 0.9 * 0.5) and lrs[10] == pytest.approx(1.0)
    assert lrs[30] == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert s.lr_at(50) == pytest.approx(0.01) and all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    for _ in range(7):
        s.step()
    s2 = Scheduler(opt, SchedCfg(warmup_epochs=1, warmup_start_factor=0.1, min_lr=0.01), 1.0, 5, 10)
    s2.load_state_dict(s.state_dict())
    assert opt.param_groups[0]["lr"] == pytest.approx(lrs[7])
    step = Scheduler(opt, SchedCfg(name="step", decay_epochs=2, decay_rate=0.5), 1.0, 6, 10)
    assert [step.lr_at(t) for t in (0, 19, 20, 40)] == pytest.approx([1.0, 1.0, 0.5, 0.25])


def test_ema_follows_the_formula():
    net = nn.Linear(3, 2)
    ema = ModelEma(net, decay=0.9, warmup=False)
    w0 = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)
    torch.testing.assert_close(ema.module.weight, 0.9 * w0 + 0.1 * (w0 + 1.0))
    assert not ema.module.weight.requires_grad


def _reference_ece(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    conf, pred = probs.max(1), probs.argmax(1)
    total = 0.0
    for lo, hi in zip(np.linspace(0, 1, n_bins + 1)[:-1], np.linspace(0, 1, n_bins + 1)[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            total += m.mean() * abs((pred[m] == y[m]).mean() - conf[m].mean())
    return total


def test_eval_metrics_match_references_and_are_additive():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(300, 7, generator=g) * 3
    y = torch.randint(0, 7, (300,), generator=g)
    whole = EvalAccumulator(7)
    whole.update(logits, y)
    parts = EvalAccumulator(7)
    for chunk in range(0, 300, 64):  # sums over shards = one pass: what makes the distributed eval exact
        part = EvalAccumulator(7)
        part.update(logits[chunk:chunk + 64], y[chunk:chunk + 64])
        for a, b in zip(parts.tensors(), part.tensors()):
            a += b
    s, p = whole.summary(), parts.summary()
    assert s["confusion_matrix"] == p["confusion_matrix"] and s["top5"] == p["top5"]
    assert s["ece"] == pytest.approx(p["ece"], abs=1e-12)
    probs = logits.softmax(1).numpy()
    cm = confusion_matrix(y.numpy(), probs.argmax(1), labels=range(7))
    assert s["confusion_matrix"] == cm.tolist()
    assert s["top1"] == pytest.approx(100 * np.trace(cm) / 300)
    top5 = (np.argsort(-probs, 1)[:, :5] == y.numpy()[:, None]).any(1).mean() * 100
    assert s["top5"] == pytest.approx(top5)
    assert s["ece"] == pytest.approx(_reference_ece(probs.astype(np.float64), y.numpy()), abs=1e-6)
    assert expected_calibration_error(torch.from_numpy(probs), y) == pytest.approx(s["ece"], abs=1e-9)
    per_class = cm.diagonal() / cm.sum(1) * 100
    assert list(s["per_class_accuracy"].values()) == pytest.approx(per_class.tolist())
    assert s["loss"] == pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-6)


def test_perfectly_confident_correct_predictions_have_zero_ece():
    y = torch.arange(5)
    acc = EvalAccumulator(5)
    acc.update_probs(torch.eye(5), y)
    assert acc.ece() == 0.0 and acc.summary()["top1"] == 100.0


def test_jsonl_truncate_drops_lines_after_the_recorded_size(tmp_path: Path):
    log = JsonlLogger(tmp_path / "m.jsonl")
    log.log({"a": 1})
    size = log.sync()
    log.log({"a": 2})
    log.log({"a": 3})
    log.close()
    assert truncate_jsonl(tmp_path / "m.jsonl", size) == 2
    assert read_jsonl(tmp_path / "m.jsonl") == [{"a": 1}]


def _trained_adamw():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(16, 4)).pow(2).mean().backward()
        opt.step()
    return net, opt


def test_checkpoint_round_trip_resumes_the_optimizer_exactly(tmp_path: Path):
    net, opt = _trained_adamw()
    ema = ModelEma(net, 0.5)
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model=net.state_dict(), ema=ema.module.state_dict(), optimizer=opt.state_dict(),
                    meta={"epoch": 2, "note": "x"})
    assert not list(tmp_path.glob(".*tmp"))
    ck = load_checkpoint(path)
    assert ck.meta["epoch"] == 2 and ck.has("ema") and ck.has("model")
    net2 = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    net2.load_state_dict(ck.tensors("model"))
    opt2 = torch.optim.AdamW(net2.parameters(), lr=1e-2)
    opt2.load_state_dict(ck.optimizer_state())
    x = torch.randn(16, 4)
    for n, o in ((net, opt), (net2, opt2)):
        o.zero_grad()
        n(x).pow(2).mean().backward()
        o.step()
    for a, b in zip(net.state_dict().values(), net2.state_dict().values()):
        assert torch.equal(a, b)
    # The format is plain safetensors + JSON: no pickle anywhere in the file.
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    header = json.loads(path.read_bytes()[8:8 + header_len])
    assert header["__metadata__"]["format"] == ckpt_mod.FORMAT


def test_failed_save_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch):
    net, opt = _trained_adamw()
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, model=net.state_dict(), meta={"epoch": 1})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, model=net.state_dict(), meta={"epoch": 2})
    assert load_checkpoint(path).meta["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]


def test_foreign_truncated_and_mismatched_checkpoints_are_one_line_errors(tmp_path: Path):
    net, _ = _trained_adamw()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model=net.state_dict(), meta={})
    (tmp_path / "cut.safetensors").write_bytes(path.read_bytes()[:100])
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint at all")
    for name in ("cut.safetensors", "junk.safetensors"):
        with pytest.raises(ValueError, match="not a readable safetensors checkpoint"):
            load_checkpoint(tmp_path / name)
    a = {"name": "rmt_nano", "num_classes": 10, "img_size": 32, "in_chans": 3, "overrides": {}}
    b = {**a, "name": "gated_swinrmt_swat_nano"}
    with pytest.raises(ValueError, match=r"holds model 'rmt_nano' .* requested model is 'gated_swinrmt_swat_nano'"):
        check_same_model(a, b, path)
    check_same_model(a, dict(a), path)
    other = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))  # same keys, one shape differs
    with pytest.raises(ValueError, match=r"does not fit model .*2 shape-mismatched tensors, e.g. 2.weight"):
        load_weights(other, load_checkpoint(path).tensors("model"), a, b, path)
