"""Every registered model: shapes, gradients, dtypes, determinism, sizes, timm-style API and errors."""
import pytest
import torch

import swinrmt
from swinrmt.layers.mixers import RetentionMixer
from swinrmt.models import default_geometry

ALL = swinrmt.list_models()
SMALL = [n for n in ALL if n.endswith(("_nano", "_tiny"))]
# small/base/paper take seconds each on 2 cores: covered by the slow suite (`pytest -m slow`).
ALL_PARAMS = [n if n in SMALL else pytest.param(n, marks=pytest.mark.slow) for n in ALL]
SIZES = [(2, 3, 40, 56), (1, 3, 64, 37)]  # non-square, no multiple of the window


def _params(name, **kw):
    with torch.device("meta"):  # shapes only: counting 78 M parameters needs no memory or init time
        return sum(p.numel() for p in swinrmt.create_model(name, **kw).parameters())


def test_registry_lists_every_family_and_size():
    for fam in ("gated_swinrmt_swat", "gated_swinrmt_retention", "rmt"):
        for size in ("nano", "tiny", "small", "base", "paper"):
            assert f"{fam}_{size}" in ALL
    assert {"swin_tiny", "swin_small"} <= set(ALL)


@pytest.mark.parametrize("name", ALL_PARAMS)
def test_forward_backward_all_params_get_grad(name):
    model = swinrmt.create_model(name, num_classes=7)
    for shape in SIZES:
        model.zero_grad(set_to_none=True)
        out = model(torch.randn(shape))
        assert out.shape == (shape[0], 7)
        assert torch.isfinite(out).all()
        out.logsumexp(-1).sum().backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
        assert not missing, f"{name} {shape}: no/invalid grad for {missing[:5]}"


def test_retention_head_norm_option_trains_every_parameter_and_is_finite_in_bf16():
    model = swinrmt.create_model("gated_swinrmt_retention_nano", num_classes=7, norm="headnorm")
    mixers = [m for m in model.modules() if isinstance(m, RetentionMixer)]
    assert mixers and all(m.head_norm_weight is not None for m in mixers)  # every block's mixer, one weight/channel
    extra = _params("gated_swinrmt_retention_nano", norm="headnorm") - _params("gated_swinrmt_retention_nano")
    assert extra == sum(m.dim for m in mixers)
    for autocast in (False, True):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = model(torch.randn(2, 3, 40, 56))
            out.float().logsumexp(-1).sum().backward()
        assert torch.isfinite(out.float()).all()
        missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
        assert not missing, f"autocast={autocast}: no/invalid grad for {missing[:5]}"


@pytest.mark.parametrize("name", ALL_PARAMS)
def test_bf16_autocast_is_finite(name):
    model = swinrmt.create_model(name, num_classes=5, img_size=64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 3, 64, 48))
        out.float().sum().backward()
    assert torch.isfinite(out.float()).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", ALL_PARAMS)
def test_forward_is_deterministic(name):
    model = swinrmt.create_model(name, num_classes=5, img_size=64).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_parameter_counts_match_the_references():
    assert abs(_params("rmt_tiny") / 14.33e6 - 1) < 0.03
    assert abs(_params("rmt_small") / 27e6 - 1) < 0.10
    assert abs(_params("rmt_base") / 54e6 - 1) < 0.10
    for name in ("gated_swinrmt_swat_paper", "gated_swinrmt_retention_paper"):
        assert 77e6 <= _params(name, num_classes=100) <= 79e6, name
    assert 2e6 <= _params("gated_swinrmt_swat_nano") <= 3.5e6


def test_same_macro_families_differ_only_in_the_mixer():
    a = swinrmt.create_model("rmt_tiny")
    b = swinrmt.create_model("gated_swinrmt_retention_tiny")
    strip = lambda m: {k: v.shape for k, v in m.state_dict().items() if ".mixer." not in k}  # noqa: E731
    assert strip(a) == strip(b)


@pytest.mark.parametrize("img,expect", [(32, (4, 7)), (64, (2, 4)), (224, (4, 7)), (384, (4, 12))])
def test_geometry_follows_input_size(img, expect):
    assert default_geometry(img) == expect
    m = swinrmt.create_model("gated_swinrmt_swat_nano", img_size=img)
    assert (m.stem_stride, m.window_size) == expect


@pytest.mark.parametrize("name", ["gated_swinrmt_swat_nano", "rmt_nano", "swin_nano"])
def test_timm_contract(name):
    m = swinrmt.create_model(name, num_classes=10, img_size=64).eval()
    x = torch.randn(2, 3, 64, 80)
    f = m.forward_features(x)
    assert f.shape == (2, m.num_features, 4, 5)  # NCHW; stem stride 2 at img_size 64, so total stride 16
    pooled = m.forward_head(f, pre_logits=True)
    assert pooled.shape == (2, m.head_hidden_size)
    assert torch.allclose(m.forward_head(f), m(x), atol=1e-6)
    final, inter = m.forward_intermediates(x)
    assert [t.shape[1] for t in inter] == [fi["num_chs"] for fi in m.feature_info]
    assert [80 // t.shape[-1] for t in inter] == [fi["reduction"] for fi in m.feature_info]
    m.reset_classifier(3)
    assert m(x).shape == (2, 3)


def test_features_only_returns_four_nchw_maps():
    fx = swinrmt.create_model("gated_swinrmt_retention_nano", img_size=64, features_only=True)
    maps = fx(torch.randn(1, 3, 64, 96))
    assert [tuple(t.shape) for t in maps] == [(1, 32, 32, 48), (1, 64, 16, 24), (1, 128, 8, 12), (1, 256, 4, 6)]
    assert fx.feature_info.channels() == [32, 64, 128, 256]
    assert fx.feature_info.reduction() == [2, 4, 8, 16]


def test_grad_checkpointing_matches():
    m = swinrmt.create_model("gated_swinrmt_swat_nano", num_classes=4, drop_path_rate=0.0)
    x = torch.randn(2, 3, 32, 32)
    m(x).sum().backward()
    g0 = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    m.set_grad_checkpointing(True)
    m(x).sum().backward()
    assert all(torch.allclose(a, p.grad, atol=1e-5) for a, p in zip(g0, m.parameters()))


@pytest.mark.parametrize("name", ["gated_swinrmt_swat_tiny", "gated_swinrmt_retention_tiny", "rmt_tiny",
                                  "swin_tiny"])
def test_torch_export_of_tiny_models(name):
    m = swinrmt.create_model(name, num_classes=10, img_size=64).eval()
    x = torch.randn(2, 3, 64, 64)
    ep = torch.export.export(m, (x,))
    with torch.no_grad():
        assert torch.allclose(ep.module()(x), m(x), atol=1e-4)


# --- errors name the problem -----------------------------------------------------------------------------------------
def test_unknown_model_name_suggests_close_matches():
    with pytest.raises(ValueError, match=r"unknown model 'gated_swinrmt_swat_tny'.*gated_swinrmt_swat_tiny"):
        swinrmt.create_model("gated_swinrmt_swat_tny")


def test_wrong_input_rank_and_channels():
    m = swinrmt.create_model("rmt_nano")
    with pytest.raises(ValueError, match=r"4-D image batch .* got shape \(3, 32, 32\)"):
        m(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="expected 3 input channels.*got 1"):
        m(torch.randn(2, 1, 32, 32))


@pytest.mark.parametrize("name,kw,msg", [
    ("gated_swinrmt_swat_nano", dict(norm="batch"), r"norm='batch' is not valid; accepted: 'headnorm'"),
    ("gated_swinrmt_swat_nano", dict(alibi="left"), "alibi='left'"),
    ("gated_swinrmt_retention_nano", dict(gate="global"), "gate='global'"),
    ("gated_swinrmt_retention_nano", dict(window_size=0), "window_size must be >= 1"),
    ("rmt_nano", dict(depths=(1, 2)), "depths needs 4 per-stage values"),
])
def test_invalid_option_values(name, kw, msg):
    with pytest.raises(ValueError, match=msg):
        swinrmt.create_model(name, **kw)


def test_unknown_option_is_named():
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['windw'\].*accepted"):
        swinrmt.create_model("gated_swinrmt_swat_nano", windw=3)


@pytest.mark.parametrize("bad", [(4,), (-5,), ()])
def test_out_of_range_stage_indices_are_refused(bad):
    with pytest.raises(ValueError, match="stage indices must be in"):
        swinrmt.create_model("rmt_nano", features_only=True, out_indices=bad)
    with pytest.raises(ValueError, match="stage indices must be in"):
        swinrmt.create_model("rmt_nano").forward_intermediates(torch.randn(1, 3, 32, 32), indices=bad)


@pytest.mark.parametrize("name", ["rmt_nano", "gated_swinrmt_retention_nano", "gated_swinrmt_swat_nano"])
def test_training_after_a_first_forward_in_inference_mode(name):
    """The cached decay/mask/rotary tables built under inference_mode must not break a later training step."""
    from swinrmt.layers import _cache

    _cache.clear()
    model = swinrmt.create_model(name, num_classes=5, img_size=64)
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        model.eval()(x)
    model.train()(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name", ["rmt_nano", "gated_swinrmt_retention_nano", "gated_swinrmt_swat_nano", "swin_nano",
                                  "gated_swinrmt_swat_tiny"])
def test_tables_are_built_on_the_models_device(name, train):
    """Decay, ALiBi, mask and rotary tables are built where the model runs: under torch.compile they are built inside
    its graph, and CPU work in a CUDA graph made Inductor compile C++ beside the GPU kernels (which failed for SWAT on
    an H200). Checked on the meta device: any op that makes a CPU tensor during a forward is named."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from swinrmt.layers import _cache

    class CpuOps(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            outs = out if isinstance(out, (tuple, list)) else (out,)
            if any(isinstance(t, torch.Tensor) and t.device.type == "cpu" for t in outs):
                self.ops.append(str(func))
            return out

    _cache.clear()
    with torch.device("meta"):
        model = swinrmt.create_model(name, num_classes=10, img_size=64, drop_path_rate=0.1).train(train)
    with CpuOps() as mode:
        model(torch.randn(2, 3, 72, 56, device="meta"))
    _cache.clear()
    assert not mode.ops, f"{name}: ops that built CPU tensors: {sorted(set(mode.ops))}"
