"""save_pretrained / from_pretrained (Hugging Face layout) and trainer-checkpoint conversion."""
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import swinrmt
from swinrmt.cli import main

SMALL = dict(img_size=64, depths=(1, 1, 1, 1))


def _model(name="gated_swinrmt_retention_nano", **kw):
    torch.manual_seed(0)
    return swinrmt.create_model(name, num_classes=5, **{**SMALL, **kw}).eval()


def test_round_trip_layout_and_outputs(tmp_path):
    model = _model(gate="headwise")
    out = model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architecture"] == "gated_swinrmt_retention_nano" and cfg["num_classes"] == 5
    assert cfg["overrides"] == {"depths": [1, 1, 1, 1], "gate": "headwise"} and cfg["img_size"] == 64
    pc = cfg["pretrained_cfg"]
    assert pc["input_size"] == [3, 64, 64] and pc["first_conv"] == "stem.proj.0" and pc["classifier"] == "head"
    assert len(pc["mean"]) == len(pc["std"]) == 3
    loaded = swinrmt.from_pretrained(str(out))
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert not loaded.training
    # fine-tuning head, features_only
    assert swinrmt.from_pretrained(out, num_classes=3)(x).shape == (2, 3)
    feats = swinrmt.from_pretrained(out, features_only=True)
    assert [f.shape[1] for f in feats(x)] == [32, 64, 128, 256]


def test_swin_config(tmp_path):
    out = _model("swin_nano").save_pretrained(tmp_path / "s")
    assert json.loads((out / "config.json").read_text())["pretrained_cfg"]["first_conv"] == "stem.proj"


def test_refuses_non_empty_dir_unless_overwrite(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("keep")
    model = _model()
    with pytest.raises(ValueError, match="not empty"):
        model.save_pretrained(tmp_path / "d")
    model.save_pretrained(tmp_path / "d", overwrite=True)
    assert not list((tmp_path / "d").glob(".*tmp"))  # no temp files left behind


def test_bad_inputs_are_one_line_errors(tmp_path):
    out = _model().save_pretrained(tmp_path / "m")
    cfg = json.loads((out / "config.json").read_text())
    with pytest.raises(FileNotFoundError):
        swinrmt.from_pretrained(tmp_path / "missing" / "dir")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({**cfg, "architecture": "resnet50"}))
    with pytest.raises(ValueError, match="unknown architecture 'resnet50'"):
        swinrmt.from_pretrained(bad)
    # weights that do not fit the config: a clear shape message
    (bad / "config.json").write_text(json.dumps({**cfg, "num_classes": 7}))
    save_file(load_file(str(out / "model.safetensors")), str(bad / "model.safetensors"))
    with pytest.raises(ValueError, match=r"shape-mismatched \(e.g. head.weight"):
        swinrmt.from_pretrained(bad)


def test_trainer_checkpoint_converts_with_one_command(tmp_path, capsys):
    from swinrmt.train.checkpoint import CKPT_DIR, save_checkpoint

    model = _model(gate="headwise")
    ema = {k: v + 1.0 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    spec = {"name": "gated_swinrmt_retention_nano", "num_classes": 5, "img_size": 64, "in_chans": 3,
            "overrides": {"depths": [1, 1, 1, 1], "gate": "headwise"}}
    run = tmp_path / "run"
    save_checkpoint(run / CKPT_DIR / "best.safetensors", model=model.state_dict(), ema=ema,
                    meta={"model": spec, "epoch": 3, "step": 30})
    assert main(["export", "--checkpoint", str(run), "--format", "hub", "--out", str(tmp_path / "hubdir")]) == 0
    loaded = swinrmt.from_pretrained(tmp_path / "hubdir")
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, ema[k]), k  # EMA weights chosen by default
    cfg = json.loads((tmp_path / "hubdir" / "config.json").read_text())
    assert cfg["metadata"]["source_weights"] == "ema" and cfg["metadata"]["source_epoch"] == 3
    assert main(["export", "--checkpoint", str(run), "--format", "hub", "--weights", "model",
                 "--out", str(tmp_path / "raw")]) == 0
    assert torch.equal(swinrmt.from_pretrained(tmp_path / "raw").head.weight, model.head.weight)
    # missing checkpoint / existing output: exit 2 with one line
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(tmp_path / "nope"), "--format", "hub", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("swinrmt export: error:") and "\n" not in err
    assert main(["export", "--checkpoint", str(run), "--format", "hub", "--out", str(tmp_path / "raw")]) == 2
    assert "not empty" in capsys.readouterr().err
