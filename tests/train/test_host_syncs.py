"""No host sync inside a training step (issue 36): on a GPU one `.item()` per step stalls a launch-bound model.

On CPU nothing waits, so these tests count the calls that would wait on a GPU (`swinrmt.train.syncs`): `.item()`,
`float()` / `bool()` of a tensor, `.tolist()`, `.cpu()`, `.numpy()`, tensors made from host data, data-dependent
shapes. The step's host part (`Trainer._host_step`: the label check of a batch still on the host, the mixup draws from
a CPU generator) works on host tensors in a GPU run as well and is left out; `_device_step` must count zero.
"""
from pathlib import Path

import pytest
import torch

from swinrmt.train.loop import Trainer
from swinrmt.train.recipe import load_recipe
from swinrmt.train.syncs import HostSyncCounter
from train_tiny_model import tiny_overrides


def test_counter_sees_every_kind_of_sync():
    x = torch.randn(8)
    with HostSyncCounter() as c:
        x.sum().item()
        float(x[0])
        bool(x[1] > 0)
        x.tolist()
        x.cpu()
        x[x > 0]
        torch.tensor(3.0)
        x.nonzero()
    assert c.counts["aten._local_scalar_dense"] == 3
    assert c.counts["Tensor.tolist"] == c.counts["Tensor.cpu"] == 1
    assert c.counts["aten.index (bool mask)"] == c.counts["aten.lift_fresh"] == c.counts["aten.nonzero"] == 1
    with HostSyncCounter() as c:
        y = x * 2 + torch.full((), 3.0)
        y.to(torch.float64).sum()
        with c.paused():
            x.tolist()
    assert c.total == 0
    assert torch.Tensor.tolist is not None and "wrapped" not in torch.Tensor.tolist.__qualname__  # restored


@pytest.mark.parametrize("extra", [
    {},  # plain: label smoothing via cross-entropy, no EMA
    {"mixup.mixup_alpha": 0.8, "mixup.cutmix_alpha": 1.0, "ema.enabled": "true", "optim.clip_grad_norm": 1.0,
     "label_smoothing": 0.1},
    {"precision": "bf16"},
], ids=["plain", "mixup-ema-clip", "bf16"])
def test_device_step_has_no_host_sync(tmp_path: Path, extra):
    recipe = load_recipe("quick", tiny_overrides(epochs=1, **{"log_every_steps": 100, "health_images": 0, **extra}))
    trainer = Trainer(recipe, tmp_path / "run", device="cpu", progress=False)
    counts = []
    device_step = trainer._device_step

    def counted(x, y, plan):
        with HostSyncCounter() as c:
            out = device_step(x, y, plan)
        counts.append(dict(c.counts))
        return out

    trainer._device_step = counted
    trainer.train_module.train()
    batches = iter(trainer.train_loader)
    for _ in range(3):  # the first step creates the optimizer state: counted too
        x, y, _ = next(batches)
        trainer._train_step(x, y)
    assert counts == [{}, {}, {}], counts


def test_mixup_on_the_device_equals_mixup_before_the_copy():
    """`plan` + `apply` (the trainer: draws on the host, mixing on the device) = the one-call `__call__`."""
    from swinrmt.data import MixupCutmix

    mix = MixupCutmix(5, mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1)
    x, y = torch.randn(6, 3, 16, 16), torch.randint(0, 5, (6,))
    for seed in range(8):
        a = mix(x, y, torch.Generator().manual_seed(seed))
        b = mix.apply(x, y, mix.plan(torch.Generator().manual_seed(seed), (16, 16)))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_device_data_batches_and_steps_have_no_host_sync(tmp_path: Path, monkeypatch):
    """The on-device data path (`swinrmt.data.device`, run_gpu.py's): making a batch (the tiny-imagenet recipe's
    crop, flip, RandAugment, erasing) and the device step together count zero syncs, with mixup / cutmix, EMA and
    clipping. Kornia's range check in `equalize` reads its flag on the host for a CPU tensor only (on CUDA it is
    `torch._assert_async`), so the test gives it its CUDA branch."""
    import kornia.enhance.adjust as kadj

    from swinrmt.data.device import DeviceData

    monkeypatch.setattr(kadj, "_check_async", lambda cond, msg="", *a, **k: torch._assert_async(cond, msg))
    aug = "{crop: rrc, scale: [0.35, 1.0], hflip: 0.5, randaugment: rand-m9-n2-mstd0.5, random_erasing: 0.25}"
    recipe = load_recipe("quick", tiny_overrides(epochs=1, **{
        "log_every_steps": 100, "health_images": 0, "data.aug": aug, "mixup.mixup_alpha": 0.8,
        "mixup.cutmix_alpha": 1.0, "ema.enabled": "true", "optim.clip_grad_norm": 5.0, "label_smoothing": 0.1}))
    trainer = Trainer(recipe, tmp_path / "run", device="cpu", progress=False, loader_factory=DeviceData())
    trainer.train_module.train()
    batches = iter(trainer.train_loader)
    x, y, _ = next(batches)  # the epoch's order goes to the device once, and first-use tables are built
    trainer._train_step(x, y)
    counts = []
    for _ in range(3):
        with HostSyncCounter() as c:
            x, y, _ = next(batches)
            assert y.device == trainer.device
            with c.paused():  # host work in a GPU run too: the mixup draws from a CPU generator
                plan = trainer._host_step(x, y)
            trainer._device_step(x, y, plan)
        counts.append(dict(c.counts))
    assert counts == [{}, {}, {}], counts
