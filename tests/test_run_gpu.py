"""benchmarks/reproduction/run_gpu.sh and its device-resident data path (swinrmt.data.device), on CPU.

The device pipeline must give the shapes, dtypes, value ranges and labels of its source; draw crop and flip per
sample, reproducibly from the seed (and identically after a resume); compute RandAugment's ops as the CPU pipeline
does. The script's test mode runs end to end, a rerun keeps finished runs, and bad input is a one-line error.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from swinrmt.data import build_dataset
from swinrmt.data.datasets import ArrayDataset
from swinrmt.data.device import DeviceAugment, DeviceData, DeviceDataset, DeviceLoader, host_arrays
from swinrmt.data.transforms import RANDAUGMENT_OPS
from swinrmt.train.builders import Limited

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "reproduction" / "run_gpu.sh"
TIN100 = Path("/work/shared/data/tiny-imagenet-100.tar.gz")
RECIPE_AUG = {"crop": "rrc", "scale": [0.35, 1.0], "hflip": 0.5, "randaugment": "rand-m9-n2-mstd0.5",
              "random_erasing": 0.25}
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _array_dataset(n: int = 40, size: int = 16, classes: int = 4) -> ArrayDataset:
    rng = np.random.default_rng(0)
    return ArrayDataset(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), rng.integers(0, classes, n),
                        name="toy", split="train", classes=[str(c) for c in range(classes)], root=None)


def _gradient_batch(b: int = 64, size: int = 16) -> torch.Tensor:
    """The same image b times: brightness rises left to right, so a flip shows as a falling profile."""
    row = torch.linspace(0, 255, size).round().to(torch.uint8)
    return row.view(1, 1, size, 1).expand(b, size, size, 3).contiguous()


# -- the dataset on the device -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["array", "limited", "digits"])
def test_device_dataset_rows_and_labels_match_the_source(kind):
    """Row i is ds[i]'s image and label: the array fast path, a seeded subset of it, and the item-by-item path."""
    ds = {"array": _array_dataset, "limited": lambda: Limited(_array_dataset(), 12, seed=3),
          "digits": lambda: build_dataset("digits", "test", img_size=24)}[kind]()
    data = DeviceDataset.from_dataset(ds, "cpu")
    assert data.images.dtype == torch.uint8 and data.labels.dtype == torch.int64
    assert data.images.shape[0] == len(ds) == data.labels.shape[0] and data.images.shape[-1] == 3
    assert data.labels.tolist() == list(ds.targets)
    for i in (0, len(ds) // 2, len(ds) - 1):
        img, label = ds[i]
        assert np.array_equal(data.images[i].numpy(), np.asarray(img)) and int(data.labels[i]) == label


def test_device_dataset_of_the_real_archive_matches_the_source():
    if not TIN100.exists():
        pytest.skip(f"{TIN100} not present (the real-data check needs the shared Tiny-ImageNet-100 archive)")
    from swinrmt.train.builders import load_split

    ds = load_split("tiny-imagenet", "test", root=str(TIN100), on_corrupt="skip", seed=0, limit=40, img_size=64,
                    num_classes=None, verify=False, show_warnings=False, decode_cache=True)
    images, labels = host_arrays(ds)
    assert images.shape == (40, 64, 64, 3) and labels.tolist() == list(ds.targets)
    assert all(np.array_equal(images[i], np.asarray(ds[i][0])) for i in range(40))


# -- batches -----------------------------------------------------------------------------------------------------------
def test_train_batches_have_the_right_shapes_ranges_and_labels():
    data = DeviceDataset.from_dataset(_array_dataset(40, 16), "cpu")
    loader = DeviceLoader(data, DeviceAugment(12, True, mean=MEAN, std=STD, aug=RECIPE_AUG), batch_size=8,
                          train=True, seed=0)
    loader.set_epoch(0)
    batches = list(loader)
    assert len(batches) == len(loader) == 5
    seen = []
    for x, y, idx in batches:
        assert x.shape == (8, 3, 12, 12) and x.dtype == torch.float32 and torch.isfinite(x).all()
        assert y.dtype == torch.int64 and torch.equal(y, data.labels[idx])
        seen += idx.tolist()
    assert sorted(seen) == list(range(40))  # one epoch: every sample once
    plain = DeviceAugment(12, True, mean=(0, 0, 0), std=(1, 1, 1), aug={"scale": [0.35, 1.0]})
    x = plain(data.images[:8], torch.Generator().manual_seed(0))
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0  # crop + flip alone stay in [0, 1] before normalising
    full = DeviceAugment(12, True, mean=(0, 0, 0), std=(1, 1, 1), aug={**RECIPE_AUG, "random_erasing": 0.0})
    x = full(data.images[:8], torch.Generator().manual_seed(0))
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0  # RandAugment's ops stay in [0, 1] too


def test_eval_batches_are_the_normalised_images_in_order():
    data = DeviceDataset.from_dataset(_array_dataset(20, 16), "cpu")
    loader = DeviceLoader(data, DeviceAugment(16, False, mean=MEAN, std=STD, aug=RECIPE_AUG), batch_size=8,
                          train=False, seed=0)
    xs, ys, idx = zip(*loader)
    assert [len(i) for i in idx] == [8, 8, 4] and torch.cat(idx).tolist() == list(range(20))
    want = (data.images.permute(0, 3, 1, 2).float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / \
        torch.tensor(STD).view(1, 3, 1, 1)
    assert torch.allclose(torch.cat(xs), want, atol=1e-6) and torch.equal(torch.cat(ys), data.labels)


def test_flip_and_crop_are_drawn_per_sample():
    imgs = _gradient_batch(64, 16)
    flip_only = DeviceAugment(16, True, mean=(0, 0, 0), std=(1, 1, 1), aug={"scale": [1, 1], "ratio": [1, 1]})
    x = flip_only(imgs, torch.Generator().manual_seed(0))
    slope = (x[:, 0, :, -1] - x[:, 0, :, 0]).mean(dim=1)
    flipped = slope < 0
    assert 10 < int(flipped.sum()) < 54  # about half of them, chosen per sample
    assert torch.allclose(x[~flipped], imgs[~flipped].permute(0, 3, 1, 2).float() / 255)
    assert torch.allclose(x[flipped], imgs[flipped].permute(0, 3, 1, 2).float().flip(-1) / 255)
    crop = DeviceAugment(16, True, mean=(0, 0, 0), std=(1, 1, 1), aug={"scale": [0.35, 1.0], "hflip": 0.0})
    x = crop(imgs, torch.Generator().manual_seed(0))
    profiles = {tuple(torch.round(x[i, 0, 0] * 1e4).tolist()) for i in range(64)}
    assert len(profiles) > 20  # each sample's own box (position and width) gives its own row profile


def test_augmentation_is_seed_reproducible_and_resumes_exactly():
    data = DeviceDataset.from_dataset(_array_dataset(40, 16), "cpu")

    def epoch(seed: int, e: int, start: int = 0) -> list[torch.Tensor]:
        loader = DeviceLoader(data, DeviceAugment(16, True, mean=MEAN, std=STD, aug=RECIPE_AUG), batch_size=8,
                              train=True, seed=seed)
        loader.set_epoch(e)
        loader.set_start(start)
        return [x for x, _, _ in loader]

    a, b = epoch(0, 0), epoch(0, 0)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], epoch(1, 0)[0]) and not torch.equal(a[0], epoch(0, 1)[0])
    resumed = epoch(0, 0, start=16)  # a run resumed after two batches sees the uninterrupted run's batches 2..4
    assert len(resumed) == 3 and all(torch.equal(u, v) for u, v in zip(a[2:], resumed))


def test_randaugment_ops_equal_the_cpu_pipeline():
    aug = DeviceAugment(16, True, mean=MEAN, std=STD, aug={"randaugment": "rand-m9-n2"})
    x = (torch.rand(4, 3, 16, 16) * 255).round() / 255
    level, sign = torch.rand(4), torch.tensor([1.0, -1.0, 1.0, -1.0])
    for k, (name, (fn, signed)) in enumerate(RANDAUGMENT_OPS.items()):
        s = sign if signed else torch.ones(4)
        out = aug._randaugment_slot(x, torch.full((4,), k), torch.ones(4, dtype=torch.bool), level, s)
        ref = torch.stack([fn(x[i], float(level[i]), float(s[i])) for i in range(4)])
        assert torch.allclose(out, ref, atol=1e-5), name


def test_device_data_is_a_trainer_loader_factory_and_caches_the_upload():
    from swinrmt.train.distributed import DistInfo

    ds, info = _array_dataset(40, 16), DistInfo(0, 1, 0, torch.device("cpu"))
    factory = DeviceData()
    kw = dict(img_size=16, train=True, mean=MEAN, std=STD, aug=RECIPE_AUG, seed=0, batch_size=8, num_workers=0,
              dist_info=info)
    samples, sampler, loader = factory(ds, **kw)
    assert samples is sampler is loader
    _, _, again = factory(_array_dataset(40, 16), **kw)  # the same content again: the same device tensors
    assert again.data.images is loader.data.images


# -- the script --------------------------------------------------------------------------------------------------------
def _load_script():
    spec = importlib.util.spec_from_file_location("run_gpu", SCRIPT.with_suffix(".py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("run_gpu", mod)  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def test_plan_epochs_fills_the_budget_of_the_slowest_run():
    run_gpu = _load_script()
    rates = [{"steps_per_s": 10.0, "steps_per_epoch": 100, "epoch_end_s": 2.0, "setup_s": 10.0},
             {"steps_per_s": 5.0, "steps_per_epoch": 100, "epoch_end_s": 2.0, "setup_s": 10.0}]
    epochs, own = run_gpu.plan_epochs(rates, now=0.0, stop_at=490.0, max_epochs=100, safety=0.9)
    assert own == [35, 19] and epochs == 19  # floor((0.9 * 490 - 10) / (100 / rate + 2))
    assert run_gpu.plan_epochs(rates, now=0.0, stop_at=500.0, max_epochs=5)[0] == 5
    assert run_gpu.plan_epochs(rates, now=0.0, stop_at=5.0, max_epochs=5)[0] == 1


def _run(*args: str, timeout: float = 170) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("RUN_GPU_TEST", None)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=REPO)


@pytest.fixture(scope="module")
def test_mode_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("run-gpu") / "out"
    proc = _run("--test", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc


def test_test_mode_runs_end_to_end_and_writes_the_report(test_mode_out):
    out, proc = test_mode_out
    for name in ("summary.md", "summary.json", "report.md", "runs.csv", "run_gpu.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished"] == summary["total"] == 3
    for model in ("rmt_nano", "gated_swinrmt_retention_nano", "gated_swinrmt_swat_nano"):
        res = json.loads((out / "runs" / model / "seed-0" / "result.json").read_text())
        assert res["status"] == "finished" and res["steps"] >= 1 and 0 <= res["test_top1"] <= 100
        assert 0 <= res["test_ema_top1"] <= 100 and res["img_per_s"] > 0 and res["wall_s"] > 0 and res["device"]
        evals = [json.loads(line) for line in (out / "runs" / model / "seed-0" / "metrics.jsonl").open()]
        assert any("test_top1" in e for e in evals if e["kind"] == "epoch")
    assert not any((out / "tmp").iterdir())  # the throwaway probe runs are gone
    assert "rmt_nano" in (out / "summary.md").read_text()


def test_a_rerun_skips_finished_runs_and_keeps_their_files(test_mode_out):
    out, _ = test_mode_out
    results = sorted((out / "runs").glob("*/seed-0/result.json"))
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in results}
    proc = _run("--test", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "3 finished (kept, skipped), 0 to train" in proc.stdout
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in results} == before


def test_result_files_are_written_once():
    run_gpu = _load_script()
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"run-gpu-once-{os.getpid()}.json"
    path.unlink(missing_ok=True)
    try:
        run_gpu.write_once(path, {"a": 1})
        with pytest.raises(FileExistsError):
            run_gpu.write_once(path, {"a": 2})
        assert json.loads(path.read_text()) == {"a": 1}
    finally:
        path.unlink(missing_ok=True)


@pytest.mark.parametrize("args,message", [
    (["--data", "/nonexistent/tiny.tar.gz"], "dataset not found: /nonexistent/tiny.tar.gz"),
    (["--test", "--models", "rmt_nanoo"], "unknown model 'rmt_nanoo'"),
])
def test_bad_input_is_a_one_line_error(args, message, tmp_path):
    proc = _run(*args, "--out", str(tmp_path / "out"), timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("run_gpu: error: ") and message in lines[0], proc.stderr


def test_a_folder_in_use_is_a_one_line_error(tmp_path):
    from swinrmt.atomic import exclusive

    out = tmp_path / "out"
    out.mkdir()
    with exclusive(out, _load_script().LOCK, "run_gpu.py"):
        proc = _run("--test", "--out", str(out), timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "another run_gpu.py is running in" in lines[0], proc.stderr
    assert not (out / "runs").exists()
