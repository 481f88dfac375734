"""timm registration, and the model battery timm runs on its own models (tests/test_models.py in timm).

timm is in the `test` extra, so the README's test command installs it. Without it this file skips locally, and fails
in CI (`CI` set, as `.ci/run` does): a test meant to run in CI must not skip there. `tests/test_timm_models.py` runs
timm's own battery file; this one keeps the project's checks of registration, features and `local-dir:` loading.
"""
import importlib.util
import math
import os
from pathlib import Path

import pytest
import torch

_spec = importlib.util.spec_from_file_location("_timm_shim", Path(__file__).with_name("_timm_shim.py"))
_shim = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_shim)
try:
    timm = _shim.import_timm()
except ImportError as exc:
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        raise RuntimeError(f"timm is not installed ({exc}); CI must run the timm tests, not skip them") from exc
    pytest.skip(f"timm is not installed ({exc}); pip install -c constraints.txt -e '.[test]' to run the timm tests",
                allow_module_level=True)

import swinrmt  # noqa: E402
import swinrmt.timm_compat as timm_compat  # noqa: E402

FAST = ["gated_swinrmt_swat_nano", "gated_swinrmt_retention_nano", "rmt_nano", "swin_nano"]
ALL = swinrmt.list_models()
BIG = [n for n in ALL if n not in FAST]
SMALL = dict(depths=(1, 1, 1, 1))  # the fast battery trims depth; the slow one runs the registered sizes


def _input_size(model, target):  # timm's _get_input_size: cap the default size at `target`
    return tuple(min(s, target) for s in model.default_cfg["input_size"])


def test_every_model_is_registered_with_pretrained_cfg():
    assert set(ALL) <= set(timm.list_models())
    for name in ALL:
        cfg = timm.models.get_pretrained_cfg(name).to_dict()
        assert cfg["architecture"] == name and cfg["classifier"] == "head" and cfg["first_conv"]
        assert len(cfg["input_size"]) == 3 and len(cfg["mean"]) == len(cfg["std"]) == 3 and cfg["pool_size"]
    assert timm_compat.register() == timm_compat.registered()  # idempotent


def _battery(name, **kw):
    # test_model_forward (+ grad checkpointing gives the same output)
    model = timm.create_model(name, pretrained=False, **kw).eval()
    x = torch.randn(1, *_input_size(model, 384 if not kw else 96))
    with torch.no_grad():
        out = model(x)
        assert out.shape[0] == 1 and not torch.isnan(out).any()
        model.set_grad_checkpointing()
        assert torch.allclose(model(x), out, rtol=1e-4, atol=1e-5)
    # test_model_backward: every parameter gets a gradient
    model = timm.create_model(name, pretrained=False, num_classes=42, **kw).train()
    out = model(torch.randn(2, *_input_size(model, 128)))
    out.mean().backward()
    assert out.shape[-1] == 42 and not torch.isnan(out).any()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    # test_model_default_cfgs
    model = timm.create_model(name, pretrained=False, **kw).eval()
    cfg, sd = model.default_cfg, model.state_dict()
    assert model.num_classes >= 0 and model.num_features > 0 and model.head_hidden_size > 0
    x = torch.randn(1, *cfg["input_size"])
    with torch.no_grad():
        feats = model.forward_features(x)
        pre = model.forward_head(feats, pre_logits=True)
        assert tuple(feats.shape[-2:]) == tuple(cfg["pool_size"]) and feats.shape[1] == model.num_features
        assert pre.shape[1] == model.head_hidden_size
        model.reset_classifier(0)
        assert model.num_classes == 0 and model(x).shape == pre.shape
        model.reset_classifier(0, "")
        out = model(x)
        assert out.ndim == 4 and tuple(out.shape[-2:]) == tuple(cfg["pool_size"])
        out = timm.create_model(name, pretrained=False, num_classes=0, global_pool="", **kw).eval()(x)
        assert out.ndim == 4 and tuple(out.shape[-2:]) == tuple(cfg["pool_size"])
    assert cfg["classifier"] + ".weight" in sd and cfg["first_conv"] + ".weight" in sd
    # test_model_forward_features / _intermediates_features (default features_only and feature_cls="getter")
    for extra in ({}, {"feature_cls": "getter"}):
        feat = timm.create_model(name, pretrained=False, features_only=True, **extra, **kw).eval()
        chans, reds = feat.feature_info.channels(), feat.feature_info.reduction()
        assert len(chans) >= 3
        size = _input_size(feat, 96)
        with torch.no_grad():
            outs = feat(torch.randn(1, *size))
        assert len(outs) == len(chans)
        for c, r, o in zip(chans, reds, outs):
            assert o.shape[1] == c and o.shape[0] == 1 and not torch.isnan(o).any()
            assert o.shape[2] <= math.ceil(size[1] / r) + 1 and o.shape[3] <= math.ceil(size[2] / r) + 1
    # test_model_forward_intermediates
    model = timm.create_model(name, pretrained=False, **kw).eval()
    info = timm.models.FeatureInfo(model.feature_info, len(model.feature_info))
    x = torch.randn(1, *_input_size(model, 96))
    with torch.no_grad():
        final, inter = model.forward_intermediates(x, output_fmt="NCHW")
        assert len(inter) == len(info.channels())
        for c, o in zip(info.channels(), inter):
            assert o.shape[1] == c and not torch.isnan(o).any()
        assert torch.allclose(final, model.forward_features(x))
        model.set_grad_checkpointing()
        assert torch.allclose(model.forward_intermediates(x)[0], final, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["gated_swinrmt_retention_nano", "swin_nano",
                                  pytest.param("gated_swinrmt_swat_nano", marks=pytest.mark.slow),
                                  pytest.param("rmt_nano", marks=pytest.mark.slow)])
def test_timm_battery_fast(name):
    _battery(name, **SMALL)


@pytest.mark.slow
@pytest.mark.parametrize("name", FAST + BIG)
def test_timm_battery_full_size(name):
    _battery(name)


def test_timm_features_non_square_and_local_dir(tmp_path):
    feat = timm.create_model("gated_swinrmt_swat_nano", features_only=True, out_indices=(1, 2, 3), **SMALL).eval()
    with torch.no_grad():
        outs = feat(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(1, 64, 16, 24), (1, 128, 8, 12), (1, 256, 4, 6)]
    # a save_pretrained directory is a timm "local-dir:" model
    torch.manual_seed(0)
    model = swinrmt.create_model("rmt_nano", num_classes=7, **SMALL).eval()
    model.save_pretrained(tmp_path / "m")
    loaded = timm.create_model(f"local-dir:{tmp_path / 'm'}", pretrained=True).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert timm.data.resolve_data_config(model=loaded)["input_size"] == (3, 64, 64)
