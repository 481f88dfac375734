"""The short-attention CPU kernel (swinrmt/layers/csrc/short_attention.cpp) against plain float64 attention.

Values and all three input gradients, on the strided layouts the mixers pass (token-order views), broadcast biases,
masked keys, every supported length and head dim; plus when `biased_attention` routes to it and when it must not.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from tests.layers._kernels import requires_kernels
from swinrmt import kernels
from swinrmt.kernels import build as cpu_kernels
from swinrmt.kernels import sdpa as attention
from swinrmt.kernels import short_attention as sa
from swinrmt.layers.mixers import MaSA2d, MaSADecomposed, RetentionMixer, axial
from swinrmt.layers.rotary import apply_rotary, folded_rotary, rotary_tables
from tests.layers._kernels import set_policy

pytestmark = requires_kernels


def reference(q, k, v, bias, scale):
    q, k, v, bias = (t.double() for t in (q, k, v, bias))
    s = q @ k.transpose(-1, -2) * (q.shape[-1] ** -0.5 if scale is None else scale) + bias
    return torch.softmax(s, -1) @ v


def token_views(n_img, side, heads, d, axis, seed=0):
    """q, k, v as the decomposed passes see them: strided views of (B, H, W, heads, d) token tensors (leaves)."""
    g = torch.Generator().manual_seed(seed)
    leaves = [torch.randn(n_img, side, side, heads, d, generator=g, requires_grad=True) for _ in range(3)]
    if axis == "w":
        views = [t.view(n_img * side, side, heads, d).transpose(1, 2) for t in leaves]
    else:
        views = [t.view(n_img, side, side * heads, d).transpose(1, 2) for t in leaves]
    return leaves, views


def check(leaves, views, bias, scale, atol=2e-5):
    out = sa.short_attention(*views, bias, scale)
    ref = reference(*views, bias, scale)
    assert out.stride() == views[0].stride()  # written in q's (token) layout
    torch.testing.assert_close(out.double(), ref, atol=atol, rtol=1e-4)
    gy = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    got = torch.autograd.grad(out, leaves, gy)
    want = torch.autograd.grad(ref, leaves, gy.double())
    for a, b in zip(got, want):
        torch.testing.assert_close(a.double(), b.double(), atol=atol * 5, rtol=1e-4)


@pytest.mark.parametrize("length", sa.LENGTHS)
@pytest.mark.parametrize("d", sa.HEAD_DIMS)
def test_every_length_and_head_dim(length, d):
    n_img, heads = 2, 2
    for axis in ("w", "h"):
        leaves, views = token_views(n_img, length, heads, d, axis, seed=length + d)
        n2 = views[0].shape[1]
        bias = torch.randn(1, n2, length, length, generator=torch.Generator().manual_seed(3))
        check(leaves, views, bias, 1.0)


@pytest.mark.parametrize("bias_shape", ["n1n2", "n1_1", "1_n2", "1_1"])
def test_broadcast_bias_and_default_scale(bias_shape):
    n1, n2, length, d = 3, 4, 16, 32
    g = torch.Generator().manual_seed(5)
    leaves = [torch.randn(n1, n2, length, d, generator=g, requires_grad=True) for _ in range(3)]
    shape = {"n1n2": (n1, n2), "n1_1": (n1, 1), "1_n2": (1, n2), "1_1": (1, 1)}[bias_shape]
    bias = torch.randn(*shape, length, length, generator=g)
    check(leaves, leaves, bias, None)


def test_masked_keys_get_exactly_zero_weight():
    """A NEG bias (the window mask) must zero a key's weight exactly, as in PyTorch's kernels: changing that key's
    value or key vector cannot change the output."""
    n1, n2, length, d = 2, 3, 8, 16
    g = torch.Generator().manual_seed(7)
    q, k, v = (torch.randn(n1, n2, length, d, generator=g) for _ in range(3))
    bias = torch.zeros(1, 1, length, length)
    bias[..., 5] = axial.NEG
    out = sa.short_attention(q, k, v, bias, 1.0)
    k2, v2 = k.clone(), v.clone()
    k2[..., 5, :] += 3.0
    v2[..., 5, :] = 3e38  # even a huge value: exp(-87) instead of 0 would show
    assert torch.equal(out, sa.short_attention(q, k2, v2, bias, 1.0))
    keep = [i for i in range(length) if i != 5]
    ref = reference(q, k[..., keep, :], v[..., keep, :], bias[..., keep], 1.0)
    torch.testing.assert_close(out.double(), ref, atol=2e-6, rtol=1e-5)


def _kernel_calls(monkeypatch) -> list:
    calls = []
    real = sa.short_attention
    monkeypatch.setattr(sa, "short_attention", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_biased_attention_routes_eligible_calls(monkeypatch):
    calls = _kernel_calls(monkeypatch)
    q = k = v = torch.randn(4, 2, 32, 16)
    bias = torch.randn(1, 2, 32, 32)
    torch.testing.assert_close(attention.biased_attention(q, k, v, bias),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=bias), atol=1e-5, rtol=1e-5)
    assert len(calls) == 1


@pytest.mark.parametrize("case", ["length_7", "head_dim_8", "bf16", "float64", "bias_requires_grad", "3d",
                                  "disabled", "reference_path", "flop_counter", "autocast"])
def test_falls_back_to_pytorch(case, monkeypatch):
    calls = _kernel_calls(monkeypatch)
    n1, n2, length, d, dtype = 2, 2, 16, 16, torch.float32
    if case == "length_7":
        length = 7
    if case == "head_dim_8":
        d = 8
    if case in ("bf16", "float64"):
        dtype = {"bf16": torch.bfloat16, "float64": torch.float64}[case]
    q = k = v = torch.randn(n1, n2, length, d, dtype=dtype)
    bias = torch.randn(1, n2, length, length, dtype=dtype, requires_grad=case == "bias_requires_grad")
    if case == "3d":
        q = k = v = q[0]
        bias = bias[0]
    ctx = torch.enable_grad()
    if case == "disabled":
        set_policy(monkeypatch, short_attention=False)
    elif case == "reference_path":
        ctx = kernels.reference()
    elif case == "flop_counter":  # the counter must see the attention FLOPs (it cannot see inside the kernel)
        ctx = FlopCounterMode(display=False)
    elif case == "autocast":
        ctx = torch.autocast("cpu", dtype=torch.bfloat16)
    with ctx:
        attention.biased_attention(q, k, v, bias)
    assert calls == []


def test_flop_count_unchanged(monkeypatch):
    m = MaSA2d(64, 2).eval()
    x = torch.randn(2, 8, 8, 64)
    with FlopCounterMode(display=False) as c1:
        m(x)
    set_policy(monkeypatch, short_attention=False)
    with FlopCounterMode(display=False) as c2:
        m(x)
    assert c1.get_total_flops() == c2.get_total_flops() > 0


@pytest.mark.parametrize("mixer", ["decomposed", "2d"])
def test_mixers_equal_with_and_without_kernel(mixer, monkeypatch):
    """RMT's mixers at shapes the kernel takes (16 x 16 maps: 16-long passes; 2-D: 16 tokens), values and grads."""
    torch.manual_seed(0)
    m = MaSADecomposed(64, 4) if mixer == "decomposed" else MaSA2d(64, 4)
    x = torch.randn(2, 16, 16, 64) if mixer == "decomposed" else torch.randn(2, 4, 4, 64)
    calls = _kernel_calls(monkeypatch)
    results = []
    for on in (True, False):
        set_policy(monkeypatch, short_attention=on)
        xi = x.clone().requires_grad_()
        m.zero_grad(set_to_none=True)
        y = m(xi)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        results.append((y.detach(), xi.grad, {n: p.grad for n, p in m.named_parameters()}))
    assert len(calls) == (2 if mixer == "decomposed" else 1)  # only the run with the kernel on
    (y1, gx1, g1), (y2, gx2, g2) = results
    torch.testing.assert_close(y1, y2, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(gx1, gx2, atol=1e-5, rtol=1e-4)
    for n in g1:  # bias gradients sum hundreds of terms: the absolute tolerance scales with their size
        torch.testing.assert_close(g1[n], g2[n], atol=1e-5 * max(1.0, g2[n].abs().max().item()), rtol=1e-4)


def test_inference_saves_nothing():
    q = k = v = torch.randn(2, 2, 8, 16, requires_grad=True)
    bias = torch.zeros(1, 1, 8, 8)
    with torch.no_grad():
        out = sa.short_attention(q, k, v, bias)
    assert out.grad_fn is None and not out.requires_grad


def test_build_is_cached_and_a_failed_build_is_one_clear_error(tmp_path, monkeypatch):
    first = cpu_kernels.build(tmp_path)
    mtime = first.stat().st_mtime_ns
    assert cpu_kernels.build(tmp_path) == first and first.stat().st_mtime_ns == mtime  # found, not rebuilt
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setenv("CXX", "false")  # a "compiler" that fails: a different key, a failed build
    with pytest.raises(RuntimeError, match="false"):
        cpu_kernels.build(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]  # no partial file left behind


def test_extra_compiler_flags_are_part_of_the_cache_key(tmp_path):
    first = cpu_kernels.build(tmp_path)
    with pytest.raises(RuntimeError, match="fno-such-flag-swinrmt"):  # a new key, built and failing
        cpu_kernels.build(tmp_path, extra_flags=("-fno-such-flag-swinrmt",))
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]


@requires_kernels
def test_the_policy_picks_the_library(tmp_path):
    """`kernel_sources` / `kernel_flags` name another library (an A/B of two revisions' kernels); a failed one warns
    and runs PyTorch's ops, and the default library is untouched."""
    default = cpu_kernels.load()
    copy = tmp_path / "csrc"
    shutil.copytree(cpu_kernels.CSRC, copy)
    with kernels.use(kernel_sources=copy):
        assert cpu_kernels.load() is not None and cpu_kernels.load() is not default
    with kernels.use(kernel_flags=("-fno-such-flag-swinrmt",)), warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert cpu_kernels.load() is None and not cpu_kernels.available()
        assert not sa.takes(16, 16, torch.float32, torch.device("cpu"))
    assert any("CPU kernels are off" in str(x.message) for x in w)
    assert cpu_kernels.load() is default


def test_build_reads_the_sources_of_the_folder_it_is_given(tmp_path):
    """`build(csrc=...)` (how benchmarks/speed/ab_switch.py builds an older revision's kernels) compiles that folder's
    sources, and the same sources give the same cached library."""
    copy = tmp_path / "csrc"
    shutil.copytree(cpu_kernels.CSRC, copy)
    assert cpu_kernels.build(csrc=copy) == cpu_kernels.build()
    source = copy / "depthwise_conv.cpp"
    source.write_text(source.read_text() + "\n#error swinrmt-test-marker\n")
    with pytest.raises(RuntimeError, match="swinrmt-test-marker"):
        cpu_kernels.build(tmp_path / "out", csrc=copy)


def _cpu_flags() -> set[str]:
    try:
        return {f for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")
                for f in ln.split(":", 1)[1].split()}
    except OSError:
        return set()


@pytest.mark.skipif("avx512f" not in _cpu_flags() or "avx2" not in _cpu_flags(),
                    reason="needs an AVX-512 CPU: there the kernels build with 16-float vectors, and with "
                           "-mno-avx512f with the 8-float ones that AVX2 CPUs run; elsewhere only one width can run")
def test_the_other_vector_width_too(tmp_path):
    """The tests above run the width this CPU builds (csrc/vec.h: 16 floats on AVX-512, 8 on AVX2). On an AVX-512 CPU,
    run the kernels' value and gradient tests again on the 8-float build, so both widths are checked on one machine."""
    env = dict(os.environ, SWINRMT_TEST_KERNEL_FLAGS="-mno-avx512f", SWINRMT_CACHE=str(tmp_path))
    tests = Path(__file__).parent
    select = ("every_length or broadcast_bias or zero_weight or equal or strided or gelu_matches or match_pytorch "
              "or matches_pytorch or extremes")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", select,
                        str(tests / "test_short_attention.py"), str(tests / "test_depthwise.py"),
                        str(tests / "test_pointwise.py")],
                       capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    built = list((tmp_path / "kernels").glob("swinrmt_kernels-*.so"))
    assert len(built) == 1  # the 8-float library was built and used, not the cached default one


def test_unavailable_kernel_warns_once_and_falls_back(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", "false")
    monkeypatch.setenv("SWINRMT_CACHE", str(tmp_path))
    monkeypatch.setattr(cpu_kernels, "_libs", {})
    q = k = v = torch.randn(2, 2, 16, 16)
    bias = torch.zeros(1, 2, 16, 16)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        y = attention.biased_attention(q, k, v, bias)
        attention.biased_attention(q, k, v, bias)
    assert len([x for x in w if "CPU kernels are off" in str(x.message)]) == 1
    torch.testing.assert_close(y, F.scaled_dot_product_attention(q, k, v, attn_mask=bias))


def test_two_window_inference_keeps_the_whole_axis_path_on_the_kernel(monkeypatch):
    """With 2 windows per axis, inference takes the windowed layout only where the kernel would not run the whole-axis
    passes (it beats the windowed layout); both choices give the same output."""
    torch.manual_seed(0)
    m = RetentionMixer(64, 4, window_size=4, shift=True).eval()  # head dim 16, 8x8 map: two 8-long passes
    x = torch.randn(2, 8, 8, 64)
    calls = _kernel_calls(monkeypatch)
    with torch.no_grad():
        on_kernel = m(x)
    assert len(calls) == 2
    set_policy(monkeypatch, short_attention=False)
    windowed_layout = []
    real = axial.axial_window_attention
    monkeypatch.setattr(axial, "axial_window_attention", lambda *a, **k: windowed_layout.append(1) or real(*a, **k))
    with torch.no_grad():
        windowed = m(x)
    assert windowed_layout == [1]
    torch.testing.assert_close(on_kernel, windowed, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------------------------
# SWAT's sigmoid passes: weights sigmoid(S) * mul, no normaliser
# ---------------------------------------------------------------------------------------------------------------------
def sigmoid_reference(q, k, v, add, mul, scale=1.0):
    q, k, v, add, mul = (t.double() for t in (q, k, v, add, mul))
    return (torch.sigmoid(q @ k.transpose(-1, -2) * scale + add) * mul) @ v


@pytest.mark.parametrize("length", sa.LENGTHS)
@pytest.mark.parametrize("d", sa.HEAD_DIMS)
def test_sigmoid_every_length_and_head_dim(length, d):
    for axis in ("w", "h"):
        leaves, views = token_views(2, length, 2, d, axis, seed=length * d)
        n2 = views[0].shape[1]
        g = torch.Generator().manual_seed(4)
        add = torch.randn(1, n2, length, length, generator=g) * 3  # scores spread over sigmoid's whole range
        mul = torch.rand(1, n2, length, length, generator=g) * (torch.rand(1, n2, length, length, generator=g) > 0.3)
        out = sa.sigmoid_attention(*views, add, mul)
        ref = sigmoid_reference(*views, add, mul)
        assert out.stride() == views[0].stride()
        torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=1e-4)
        gy = torch.randn(out.shape, generator=g)
        for a, b in zip(torch.autograd.grad(out, leaves, gy), torch.autograd.grad(ref, leaves, gy.double())):
            torch.testing.assert_close(a.double(), b.double(), atol=1e-4, rtol=1e-4)


def test_sigmoid_zero_multiplier_is_exactly_zero_weight_and_extremes_stay_finite():
    n1, n2, length, d = 2, 2, 16, 16
    g = torch.Generator().manual_seed(9)
    q, k, v = (torch.randn(n1, n2, length, d, generator=g) * 30 for _ in range(3))  # |scores| in the thousands
    add = torch.zeros(n1, n2, length, length)
    mul = torch.ones(n1, n2, length, length)
    mul[..., 3] = 0
    out = sa.sigmoid_attention(q, k, v, add, mul)
    assert torch.isfinite(out).all()
    v2 = v.clone()
    v2[..., 3, :] = 3e38
    assert torch.equal(out, sa.sigmoid_attention(q, k, v2, add, mul))
    torch.testing.assert_close(out.double(), sigmoid_reference(q, k, v, add, mul), atol=1e-3, rtol=1e-5)


SWAT_CASES = [  # (options, map): lengths the kernel takes, head dim 16
    (dict(window_size=4, shift=True), (2, 8, 8)),
    (dict(window_size=4, shift=False, norm="n"), (2, 16, 8)),
    (dict(window_size=4, shift=True, rotary="window", alibi="signed", sigmoid_bias="none"), (1, 8, 16)),
    (dict(window_size=3, shift=True), (2, 7, 5)),  # padded to 9 and 6: not on the kernel, same answer
]


@pytest.mark.parametrize("opts,shape", SWAT_CASES)
@pytest.mark.parametrize("training", [False, True])
def test_swat_mixer_on_the_kernel_equals_the_reference(opts, shape, training, monkeypatch):
    from swinrmt.layers.mixers import SwatMixer

    torch.manual_seed(0)
    m = SwatMixer(64, 4, **opts).train(training)
    x = torch.randn(*shape, 64)
    calls = []
    real = sa.sigmoid_attention
    monkeypatch.setattr(sa, "sigmoid_attention", lambda *a, **k: calls.append(1) or real(*a, **k))
    results = []
    for ref in (False, True):
        xi = x.clone().requires_grad_()
        m.zero_grad(set_to_none=True)
        with kernels.reference() if ref else torch.enable_grad():
            y = m(xi)
            (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        results.append((y.detach(), xi.grad, {n: p.grad for n, p in m.named_parameters() if p.grad is not None}))
        if not ref:
            on_kernel = shape[1] % 4 == 0 and shape[2] % 4 == 0 and opts["window_size"] == 4
            # two passes, run again by the training recompute
            assert len(calls) == (2 * (2 if training else 1) if on_kernel else 0)
    (y1, gx1, g1), (y2, gx2, g2) = results
    torch.testing.assert_close(y1, y2, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(gx1, gx2, atol=1e-5, rtol=1e-4)
    assert g1.keys() == g2.keys()
    for n in g1:
        torch.testing.assert_close(g1[n], g2[n], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("opts", [dict(norm="rowsum"), dict(learnable_decay=True)])
def test_swat_options_the_kernel_does_not_cover_keep_the_explicit_path(opts, monkeypatch):
    from swinrmt.layers.mixers import SwatMixer

    m = SwatMixer(64, 4, window_size=4, shift=True, **opts).train()
    calls = []
    monkeypatch.setattr(sa, "sigmoid_attention", lambda *a, **k: calls.append(1))
    m(torch.randn(2, 8, 8, 64)).sum().backward()
    assert calls == []


# -- RMT's flat rotary applied by the kernel as it loads q and k (`rotary.FoldedRotary`) ----------------------------

def _rotary_case(layout, d, seed=0):
    """Unrotated q, k, v views of one layout, the same views of rotated copies (apply_rotary on the token layout, as
    the mixers did before the fold) and the FoldedRotary the mixers pass for it."""
    g = torch.Generator().manual_seed(seed)
    b, side, heads = 2, 8, 2
    tok = [torch.randn(b, side, side, heads, d, generator=g) for _ in range(3)]
    sin, cos = rotary_tables(side * side, d, torch.float32, tok[0].device)
    rotated = [apply_rotary(t, sin.view(side, side, 1, d), cos.view(side, side, 1, d)) for t in tok[:2]] + tok[2:]
    if layout == "w":  # (B*H, heads, W, d): positions row * W + l, step 1
        view, step = (lambda t: t.view(b * side, side, heads, d).transpose(1, 2)), 1
    elif layout == "h":  # (B, W*heads, H, d): positions l * W + col, step W
        view, step = (lambda t: t.view(b, side, side * heads, d).transpose(1, 2)), side
    else:  # 2-D: (B, heads, H*W, d), positions l
        view, step = (lambda t: t.reshape(b, side * side, heads, d).transpose(1, 2)), 1
    rot = folded_rotary(side * side, d, torch.float32, tok[0].device, step=step)
    return [view(t) for t in tok], [view(t) for t in rotated], rot


@pytest.mark.parametrize("layout", ["w", "h", "2d"])
@pytest.mark.parametrize("d", [16, 32])
def test_kernel_rotary_equals_rotated_copies(layout, d, monkeypatch):
    plain, rotated, rot = _rotary_case(layout, d, seed=d)
    n2, length = plain[0].shape[1], plain[0].shape[2]
    bias = torch.randn(1, n2, length, length, generator=torch.Generator().manual_seed(2))
    if layout == "2d":  # one problem per image and head: the same positions as apply_rotary's
        torch.testing.assert_close(rot.apply(plain[0]), rotated[0], atol=1e-6, rtol=1e-6)
    want = reference(*rotated, bias, 0.25)
    seen = []
    real = sa._forward
    monkeypatch.setattr(sa, "_forward", lambda *a, **k: seen.append(k.get("rotary")) or real(*a, **k))
    with torch.no_grad():
        got = attention.biased_attention(*plain, bias, 0.25, rotary=rot)
    assert seen == [rot]  # one kernel call, rotating q and k itself
    torch.testing.assert_close(got.double(), want, atol=2e-5, rtol=1e-4)


def test_rotary_with_autograd_or_without_the_kernel_takes_rotated_copies(monkeypatch):
    plain, rotated, rot = _rotary_case("w", 16)
    bias = torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(2))
    leaves = [t.detach().clone().requires_grad_() for t in plain]
    out = attention.biased_attention(*leaves, bias, 1.0, rotary=rot)
    ref_leaves = [t.detach().clone().requires_grad_() for t in plain]
    ref = reference(rot.apply(ref_leaves[0]), rot.apply(ref_leaves[1]), ref_leaves[2], bias, 1.0)
    torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=1e-4)
    gy = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    for a, b in zip(torch.autograd.grad(out, leaves, gy), torch.autograd.grad(ref, ref_leaves, gy.double())):
        torch.testing.assert_close(a.double(), b.double(), atol=1e-4, rtol=1e-4)
    set_policy(monkeypatch, short_attention=False)  # PyTorch's kernel: rotated copies first
    with torch.no_grad():
        torch.testing.assert_close(attention.biased_attention(*plain, bias, 1.0, rotary=rot).double(),
                                   reference(*rotated, bias, 1.0), atol=2e-5, rtol=1e-4)


def test_rotary_offsets_cancel_and_tables_must_cover_the_call():
    """A problem's offset (row * W on a width pass) cancels in the scores, which is why one step per pass suffices;
    a step that runs past the tables is an error, not a read past them."""
    plain, rotated, rot = _rotary_case("h", 16)
    q, k = rotated[0][:, 3:4], rotated[1][:, 3:4]  # column 1, head 1: positions l * 8 + 1
    q0, k0 = rot.apply(plain[0][:, 3:4]), rot.apply(plain[1][:, 3:4])  # positions l * 8
    assert (q - q0).abs().max() > 0.1  # rotated differently...
    torch.testing.assert_close(q0 @ k0.transpose(-1, -2), q @ k.transpose(-1, -2), atol=1e-4, rtol=1e-4)  # same scores
    short = folded_rotary(16, 16, torch.float32, plain[0].device, step=8)  # rows 0, 8, 16, ...: 16 is past the end
    assert rot.fits(plain[0].shape) and not short.fits(plain[0].shape)
    assert not sa.rotary_fits(short, plain[0])
    with pytest.raises(ValueError, match="do not cover"):
        short.apply(plain[0])


@pytest.mark.parametrize("mixer", ["decomposed", "2d"])
def test_rmt_mixers_fold_the_rotary_in_inference_only(mixer, monkeypatch):
    """Inference rotates inside the kernel (no `kernels.rotate`) and equals rotating first; training rotates first."""
    torch.manual_seed(0)
    m = (MaSADecomposed(64, 4) if mixer == "decomposed" else MaSA2d(64, 4)).eval()
    x = torch.randn(2, 16, 16, 64) if mixer == "decomposed" else torch.randn(2, 4, 4, 64)
    rotations = []
    real = kernels.rotate
    monkeypatch.setattr(kernels, "rotate", lambda *a: rotations.append(1) or real(*a))
    with torch.no_grad():
        folded = m(x)
        assert rotations == []
        set_policy(monkeypatch, fold_rotary=False)
        unfolded = m(x)
        assert len(rotations) == 2
        with kernels.reference():
            ref = m(x)
    torch.testing.assert_close(folded, unfolded, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(folded, ref, atol=1e-5, rtol=1e-4)
    set_policy(monkeypatch, fold_rotary=True)
    rotations.clear()
    m.train()(x.requires_grad_()).sum().backward()
    assert len(rotations) == 2


def test_prefetch_distance_changes_no_result():
    """Prefetching is a hint: any distance (0 = off) gives the same bits, forward and backward."""
    leaves, views = token_views(2, 32, 2, 16, "w")
    bias = torch.randn(1, 2, 32, 32, generator=torch.Generator().manual_seed(3))
    gy = torch.randn(views[0].shape, generator=torch.Generator().manual_seed(1))
    results = []
    prev = sa.set_prefetch(0)
    try:
        for ahead in (0, 1, 4):
            sa.set_prefetch(ahead)
            out = sa.short_attention(*views, bias, 1.0)
            results.append((out, *torch.autograd.grad(out, leaves, gy)))
    finally:
        sa.set_prefetch(prev)
    assert prev == 4 and sa.set_prefetch(prev) == prev
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)
