"""Dataset formats: CIFAR python pickles, ImageFolder, Tiny-ImageNet, Mini-ImageNet, digits, detection and errors."""
from __future__ import annotations

import csv
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.data.data_helpers import (
    cifar_rows,
    write_image,
    write_not_an_image,
    write_pickle,
    write_truncated_jpeg,
)
from swinrmt.data import DATASETS, ClassificationDataset, build_dataset
from swinrmt.data.datasets import detect_format
from swinrmt.data.images import CorruptImageError

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ---------------------------------------------------------------------------------------------------------------------
# CIFAR python format
# ---------------------------------------------------------------------------------------------------------------------
def make_cifar10(root: Path, per_batch: int = 3, n_test: int = 4, bad_label: int | None = None) -> tuple[Path, dict]:
    """Write cifar-10-batches-py under ``root`` (5 train batches + test batch + meta); return dir and the truth."""
    d = root / "cifar-10-batches-py"
    rng = np.random.default_rng(1)
    truth = {"train_images": [], "train_labels": []}
    for b in range(1, 6):
        imgs = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        # python-2 era files decode to str keys under latin1; python-3 written ones may carry bytes keys: test both
        key = (lambda k: k.encode()) if b % 2 else (lambda k: k)
        write_pickle(d / f"data_batch_{b}", {key("data"): cifar_rows(imgs), key("labels"): labels,
                                            key("batch_label"): f"training batch {b} of 5"})
        truth["train_images"].append(imgs)
        truth["train_labels"] += labels
    test_imgs = rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8)
    test_labels = [int(v) for v in rng.integers(0, 10, n_test)]
    if bad_label is not None:
        test_labels[-1] = bad_label
    write_pickle(d / "test_batch", {"data": cifar_rows(test_imgs), "labels": test_labels})
    write_pickle(d / "batches.meta", {b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_vis": 3072})
    truth["train_images"] = np.concatenate(truth["train_images"])
    truth["test_images"], truth["test_labels"] = test_imgs, test_labels
    return d, truth


def test_cifar10_reader_matches_written_pixels_and_labels(tmp_path):
    d, truth = make_cifar10(tmp_path)
    train = build_dataset("cifar10", "train", root=str(tmp_path))
    test = build_dataset("cifar10", "test", root=str(d))  # the batches dir itself works too
    assert isinstance(train, ClassificationDataset)
    assert (len(train), len(test)) == (15, 4)
    assert train.classes == CIFAR10_NAMES and train.num_classes == 10
    assert train.targets == truth["train_labels"] and test.targets == truth["test_labels"]
    assert train.default_img_size == 32 and train.num_skipped == 0
    for i in (0, 7, 14):
        img, label = train[i]
        assert img.mode == "RGB" and img.size == (32, 32) and label == truth["train_labels"][i]
        np.testing.assert_array_equal(np.asarray(img), truth["train_images"][i])
    # spot-check the plane layout directly: R plane first, row-major
    rows = cifar_rows(truth["test_images"])
    img = np.asarray(test[2][0])
    assert img[5, 9, 0] == rows[2, 0 * 1024 + 5 * 32 + 9] and img[5, 9, 2] == rows[2, 2 * 1024 + 5 * 32 + 9]


def test_cifar100_reader_uses_fine_labels(tmp_path):
    d = tmp_path / "cifar-100-python"
    rng = np.random.default_rng(2)
    imgs = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    fine = [0, 99, 5, 42, 7, 3]
    write_pickle(d / "train", {"data": cifar_rows(imgs), "fine_labels": fine, "coarse_labels": [0, 19, 1, 2, 3, 4]})
    write_pickle(d / "test", {"data": cifar_rows(imgs[:2]), "fine_labels": [1, 2], "coarse_labels": [0, 0]})
    write_pickle(d / "meta", {"fine_label_names": [f"c{i}" for i in range(100)],
                              "coarse_label_names": [f"s{i}" for i in range(20)]})
    train = build_dataset(str(tmp_path), "train")  # auto-detected through the wrapper dir
    assert train.name == "cifar100" and train.num_classes == 100 and train.targets == fine
    np.testing.assert_array_equal(np.asarray(train[1][0]), imgs[1])
    assert len(build_dataset("cifar100", "val", root=str(d))) == 2


def test_cifar_label_out_of_range_names_value_range_and_file(tmp_path):
    d, _ = make_cifar10(tmp_path, bad_label=10)
    with pytest.raises(ValueError, match=r"test_batch.*label 10 out of range \[0, 10\)"):
        build_dataset("cifar10", "test", root=str(d))


def test_cifar_wrong_shape_and_hostile_pickle_are_refused(tmp_path):
    d, _ = make_cifar10(tmp_path)
    write_pickle(d / "test_batch", {"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]})
    with pytest.raises(ValueError, match=r"test_batch.*\(N, 3072\)"):
        build_dataset("cifar10", "test", root=str(d))

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(d / "test_batch", "wb") as f:
        pickle.dump({"data": Evil(), "labels": [0]}, f)
    with pytest.raises(ValueError, match=r"test_batch.*not allowed"):
        build_dataset("cifar10", "test", root=str(d))


# ---------------------------------------------------------------------------------------------------------------------
# ImageFolder: modes, corrupt files, policies
# ---------------------------------------------------------------------------------------------------------------------
def make_imagefolder(root: Path, corrupt: bool = True) -> dict[str, Path]:
    """train/{cat,dog}, test/{cat,dog}; the train split holds every colour mode and (optionally) two bad files."""
    p = {}
    p["rgb"] = write_image(root / "train/cat/a_rgb.jpg", (200, 30, 60))
    p["gray"] = write_image(root / "train/cat/b_gray.png", 77, mode="L")
    p["cmyk"] = write_image(root / "train/cat/c_cmyk.jpg", (0, 0, 0, 0), mode="CMYK")
    pal = Image.new("P", (8, 8), 1)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    p["palette"] = root / "train/dog/d_palette.png"
    p["palette"].parent.mkdir(parents=True, exist_ok=True)
    pal.save(p["palette"])
    rgba = Image.new("RGBA", (8, 8), (10, 20, 30, 0))  # fully transparent left half ...
    rgba.paste((40, 50, 60, 255), (4, 0, 8, 8))  # ... opaque right half
    p["rgba"] = root / "train/dog/e_rgba.png"
    rgba.save(p["rgba"])
    i16 = Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16))
    p["i16"] = root / "train/dog/f_i16.png"
    i16.save(p["i16"])
    if corrupt:
        p["corrupt"] = write_not_an_image(root / "train/cat/bb_corrupt.jpg")
        p["truncated"] = write_truncated_jpeg(root / "train/dog/ee_truncated.jpg")
    (root / "train/dog/notes.txt").write_text("not an image; ignored by extension")
    write_image(root / "test/cat/t1.png", (1, 2, 3))
    write_image(root / "test/dog/t2.png", (4, 5, 6))
    return p


def _by_file(ds) -> dict[str, int]:
    return {Path(f).name: k for k, f in enumerate(ds.files)}


def test_imagefolder_converts_every_mode_to_rgb(tmp_path):
    paths = make_imagefolder(tmp_path, corrupt=False)
    ds = build_dataset("imagefolder", "train", root=str(tmp_path))
    assert ds.classes == ["cat", "dog"] and len(ds) == 6
    idx = _by_file(ds)
    px = {}
    for key, path in paths.items():
        img, label = ds[idx[path.name]]
        assert img.mode == "RGB" and img.size == (8, 8), key
        assert label == (0 if "/cat/" in path.as_posix() else 1)
        px[key] = np.asarray(img).astype(int)
    assert np.abs(px["rgb"][0, 0] - [200, 30, 60]).max() <= 8  # JPEG
    assert (px["gray"] == 77).all()
    assert (np.abs(px["cmyk"] - 255) <= 2).all()  # CMYK (0,0,0,0) is white
    assert (px["palette"] == [10, 200, 30]).all()
    assert (px["rgba"][:, :4] == 255).all() and (px["rgba"][:, 4:] == [40, 50, 60]).all()  # alpha over white
    assert (px["i16"] == 255).all()  # 16-bit scaled, not clipped garbage


def test_on_corrupt_error_names_the_file(tmp_path):
    paths = make_imagefolder(tmp_path)
    ds = build_dataset(str(tmp_path), "train", on_corrupt="error")
    idx = _by_file(ds)
    for key in ("corrupt", "truncated"):
        with pytest.raises(CorruptImageError, match=str(paths[key])) as info:
            ds[idx[paths[key].name]]
        assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


def test_on_corrupt_skip_lazily_returns_next_valid_sample_and_warns_once(tmp_path):
    paths = make_imagefolder(tmp_path)
    ds = build_dataset(str(tmp_path), "train", on_corrupt="skip")
    assert len(ds) == 8 and ds.num_skipped == 0  # nothing decoded at construction
    idx = _by_file(ds)
    bad = {idx[paths["corrupt"].name], idx[paths["truncated"].name]}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = [ds[i] for i in range(len(ds))]
    assert ds.num_skipped == 2
    assert len([w for w in caught if "corrupt" in str(w.message)]) == 1
    for i in bad:  # a corrupt position yields the next valid one, deterministically
        j = (i + 1) % len(ds)
        while j in bad:
            j = (j + 1) % len(ds)
        assert np.array_equal(np.asarray(items[i][0]), np.asarray(ds[j][0])) and items[i][1] == ds[j][1]


def test_verify_drops_corrupt_files_with_one_counted_warning(tmp_path):
    make_imagefolder(tmp_path)
    ds = build_dataset(str(tmp_path), "train")
    with pytest.warns(RuntimeWarning, match=r"skipped 2 corrupt image file\(s\)"):
        assert ds.verify() == 2
    assert len(ds) == 6 and ds.num_skipped == 2 and len(ds.targets) == 6
    assert all(ds[i][0].mode == "RGB" for i in range(len(ds)))
    strict = build_dataset(str(tmp_path), "train", on_corrupt="error")
    with pytest.raises(CorruptImageError):
        strict.verify()


def test_imagefolder_detection_and_test_split(tmp_path):
    make_imagefolder(tmp_path, corrupt=False)
    assert detect_format(tmp_path) == ("imagefolder", tmp_path)
    test = build_dataset(str(tmp_path), "test")
    assert test.targets == [0, 1] and test.classes == ["cat", "dog"]
    assert np.asarray(test[1][0])[0, 0].tolist() == [4, 5, 6]
    (tmp_path / "test").rename(tmp_path / "val")
    assert len(build_dataset(str(tmp_path), "val")) == 2


def test_imagefolder_rejects_test_classes_missing_from_train(tmp_path):
    make_imagefolder(tmp_path, corrupt=False)
    write_image(tmp_path / "test/zebra/z.png")
    with pytest.raises(ValueError, match=r"\['zebra'\] are not in train"):
        build_dataset("imagefolder", "test", root=str(tmp_path))


# ---------------------------------------------------------------------------------------------------------------------
# Tiny-ImageNet
# ---------------------------------------------------------------------------------------------------------------------
def make_tiny(root: Path, wnids=("n01", "n02", "n03"), per_class: int = 2) -> list[tuple[str, str]]:
    (root / "wnids.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("\n".join(reversed(wnids)) + "\n")  # file order is not the class order
    for c, w in enumerate(wnids):
        for k in range(per_class):
            write_image(root / f"train/{w}/images/{w}_{k}.JPEG", (10 * c, 0, 0), fmt="JPEG")
        (root / f"train/{w}/{w}_boxes.txt").write_text("ignored")
    val = [(f"val_{k}.JPEG", wnids[(k * 2) % len(wnids)]) for k in range(5)]
    for name, _ in val:
        write_image(root / "val/images" / name, fmt="JPEG")
    with open(root / "val/val_annotations.txt", "w") as f:
        for name, w in val:
            f.write(f"{name}\t{w}\t0\t0\t7\t7\n")
    return val


def test_tiny_imagenet_layout(tmp_path):
    val = make_tiny(tmp_path / "tiny")
    assert detect_format(tmp_path) == ("tiny-imagenet", tmp_path / "tiny")  # found through the wrapper dir
    train = build_dataset(str(tmp_path), "train")
    test = build_dataset("tiny-imagenet", "val", root=str(tmp_path / "tiny"))
    assert train.classes == ["n01", "n02", "n03"] and train.default_img_size == 64
    assert train.targets == [0, 0, 1, 1, 2, 2]
    assert test.targets == [train.classes.index(w) for _, w in val]
    assert [Path(f).name for f in test.files] == [n for n, _ in val]
    assert test[0][0].mode == "RGB"


def test_tiny_imagenet_unknown_wnid_in_annotations(tmp_path):
    make_tiny(tmp_path)
    with open(tmp_path / "val/val_annotations.txt", "a") as f:
        f.write("val_9.JPEG\tn99\t0\t0\t1\t1\n")
    with pytest.raises(ValueError, match=r"val_annotations.txt:6: wnid 'n99'"):
        build_dataset("tiny-imagenet", "test", root=str(tmp_path))
    ann = tmp_path / "val/val_annotations.txt"
    ann.write_text(ann.read_text().replace("n99", "n01"))
    with pytest.raises(FileNotFoundError, match=r"val_annotations.txt:6: image .*val_9.JPEG not found"):
        build_dataset("tiny-imagenet", "test", root=str(tmp_path))


# ---------------------------------------------------------------------------------------------------------------------
# Mini-ImageNet (classification re-split)
# ---------------------------------------------------------------------------------------------------------------------
def make_mini_folders(root: Path, classes=("n0001", "n0002", "n0003", "n0004"), per_class: int = 12) -> None:
    for c in classes:
        for k in range(per_class):
            write_image(root / c / f"{c}{k:08d}.png", size=(2, 2))


def _split_names(ds) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f, t in zip(ds.files, ds.targets):
        out.setdefault(ds.classes[t], set()).add(Path(f).name)
    return out


def test_mini_imagenet_seeded_per_class_split(tmp_path):
    make_mini_folders(tmp_path)
    assert detect_format(tmp_path)[0] == "mini-imagenet"
    tr = build_dataset("mini-imagenet", "train", root=str(tmp_path), seed=0)
    te = build_dataset("mini-imagenet", "test", root=str(tmp_path), seed=0)
    assert tr.classes == te.classes == ["n0001", "n0002", "n0003", "n0004"]
    a, b = _split_names(tr), _split_names(te)
    for c in tr.classes:
        assert len(a[c]) == 10 and len(b[c]) == 2  # 1/6 per class: 600 -> 500/100
        assert not a[c] & b[c]
        assert a[c] | b[c] == {f"{c}{k:08d}.png" for k in range(12)}
    again = build_dataset("mini-imagenet", "test", root=str(tmp_path), seed=0)
    assert again.files == te.files  # stable across calls
    other = build_dataset("mini-imagenet", "test", root=str(tmp_path), seed=1)
    assert set(other.files) != set(te.files)  # changes with the seed


def test_mini_imagenet_csv_layout_merges_disjoint_fewshot_splits(tmp_path):
    classes = {"train": ["n01", "n02"], "val": ["n03"], "test": ["n04"]}
    (tmp_path / "images").mkdir()
    for split, cs in classes.items():
        with open(tmp_path / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["filename", "label"])
            for c in cs:
                for k in range(6):
                    name = f"{c}{k:08d}.jpg"
                    write_image(tmp_path / "images" / name)
                    w.writerow([name, c])
    tr = build_dataset(str(tmp_path), "train")
    te = build_dataset(str(tmp_path), "test")
    assert tr.name == "mini-imagenet" and tr.classes == te.classes == ["n01", "n02", "n03", "n04"]
    assert len(tr) == 20 and len(te) == 4 and sorted(te.targets) == [0, 1, 2, 3]
    assert not set(tr.files) & set(te.files)


def test_mini_imagenet_split_folders_with_disjoint_classes_are_merged(tmp_path):
    make_mini_folders(tmp_path / "train", classes=("n01", "n02"), per_class=6)
    make_mini_folders(tmp_path / "val", classes=("n03",), per_class=6)
    make_mini_folders(tmp_path / "test", classes=("n04",), per_class=6)
    assert detect_format(tmp_path)[0] == "mini-imagenet"  # not an ImageFolder: the classes are disjoint
    te = build_dataset(str(tmp_path), "test")
    assert te.classes == ["n01", "n02", "n03", "n04"] and len(te) == 4
    with pytest.raises(ValueError, match="few-shot split"):
        build_dataset("imagefolder", "test", root=str(tmp_path))


# ---------------------------------------------------------------------------------------------------------------------
# digits (built-in default)
# ---------------------------------------------------------------------------------------------------------------------
def test_digits_default_split_sizes_rgb_and_determinism():
    tr, te = build_dataset("digits", "train"), build_dataset("digits", "test")
    assert (len(tr), len(te)) == (1437, 360) and tr.classes == [str(d) for d in range(10)]
    assert tr.num_classes == 10 and tr.default_img_size == 32
    img, label = tr[0]
    arr = np.asarray(img)
    assert img.mode == "RGB" and img.size == (32, 32) and 0 <= label < 10
    assert (arr[..., 0] == arr[..., 1]).all() and arr.max() > 100  # gray digit, real contrast
    assert build_dataset("digits", "test").targets == te.targets  # fixed split
    counts = np.bincount(te.targets, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: ~36 per class
    assert build_dataset("digits", "train", img_size=48)[0][0].size == (48, 48)
    assert build_dataset("digits", "test", seed=1).targets != te.targets


# ---------------------------------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------------------------------
def test_bad_inputs_give_one_line_errors(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        build_dataset(str(missing), "train")
    with pytest.raises(FileNotFoundError, match=str(missing)):
        build_dataset("tiny-imagenet", "train", root=str(missing))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "readme.md").write_text("hello")
    with pytest.raises(ValueError, match=r"matches no known format.*cifar10.*tiny-imagenet.*imagefolder") as info:
        build_dataset(str(tmp_path / "junk"), "train")
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="needs root="):
        build_dataset("cifar10", "train")
    with pytest.raises(ValueError, match="unknown dataset 'imagenet-21k'"):
        build_dataset("imagenet-21k", "train")
    with pytest.raises(ValueError, match="split must be one of"):
        build_dataset("digits", "dev")
    with pytest.raises(ValueError, match="on_corrupt must be one of"):
        build_dataset("digits", "train", on_corrupt="ignore")
    assert set(DATASETS) == {"digits", "cifar10", "cifar100", "imagefolder", "tiny-imagenet", "mini-imagenet"}
