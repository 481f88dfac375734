"""Windowed axial attention: a width pass, then a height pass, inside each (shifted) window.

This is the shared core of RMT's decomposed MaSA (one window = the whole map, no shift) and of both Gated-SwinRMT
mixers. The width pass mixes V along rows; the height pass mixes *that result* along columns, with the original
q and k; each pass carries its own 1-D decay and the per-axis shift/padding mask. Two passes are enough to reach
every token of a window, and the product of the two 1-D decays is the 2-D Manhattan decay.

Layouts (all views of one rolled, padded (B, Hp, Wp, heads, d) tensor):
  width  : (B, heads, Hp, nW, Mw, d)   sequences run along a window's row
  height : (B, heads, nH, Wp, Mh, d)   sequences run along a window's column
Per-pass tables broadcast against the score tensors:
  width  : (heads, 1, nW, Mw, Mw)      height : (heads, nH, 1, Mh, Mh)
The fast whole-axis passes (`fast_axial_softmax`, `fast_axial_sigmoid`) fold the windows into block-diagonal tables
over the padded axis instead, and on maps no window pads they skip the roll too (`UNROLL_SHIFTED`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .. import depthwise, pointwise, short_attention
from .._cache import cached
from ..attention import biased_attention
from ..conv import DWConv
from ..decay import decay_rates, log_decay_1d
from ..linear import Linear, linear
from ..options import check_choice
from ..eager import needs_grad
from ..rotary import apply_rotary, folded_rotary, rotary_tables
from ..windows import AxisGeometry, axis_geometry, cached_axis_allowed, crop_and_unroll, roll_and_pad

NEG = -1.0e4  # masked-key bias: finite, so rows with no valid key (padding queries) stay finite in any dtype

# Fast path switch (see `fast_axial_softmax`). True: softmax passes (Retention, RMT's decomposed MaSA) run as fused
# `scaled_dot_product_attention` calls on zero-copy strided views of the token layout. False: the plain reference
# path (`axial_window_attention`), kept beside it; tests/layers/test_fast_path.py holds the two equal. Use
# `reference_path()` to switch for a block of code, or set `swinrmt.layers.mixers.axial.FAST_PATH = False`.
FAST_PATH = True
# The fused softmax path attends along the whole padded axis, so with n windows per axis it computes n times the
# scores a windowed pass needs. It wins when one window covers the axis (no waste: RMT's global passes) and when the
# windows are many and tiny (the per-window problems are too small to run fast). With exactly 2 windows per axis
# (e.g. 8x8 maps in 4x4 windows: stage 3 at 64 px) the windowed layout is faster in inference than PyTorch's fused
# kernel: 1-5 % of a gated_swinrmt_retention_tiny step at batch 64. In training it is slower (its backward keeps the
# per-window copies), so it is used only without autograd, and only where the whole-axis passes would not run on the
# short-attention kernel, which beats it (benchmarks/speed/README.md). An empty tuple always takes the fused path.
WINDOWED_IF_WINDOWS = (2,)

# Whole-axis passes (the fused softmax path and the sigmoid kernel) over maps that no window pads skip Swin's cyclic
# roll: the shift moves into their tables (`_axis_table`), which saves the roll copies of q, k, v and the output's
# unroll, forward and backward, and lets the LCE and the attention share one V. False rolls as the reference does
# (a switch of benchmarks/speed/ab_switch.py).
UNROLL_SHIFTED = True

# RMT's flat rotary code, in inference where both passes run on the short-attention kernel, is applied by the kernel
# as it loads q and k (`rotary.FoldedRotary`) instead of by two passes writing rotated copies of q and k (about 2 % of
# an rmt_tiny inference step). False rotates first, as the reference does (a switch of benchmarks/speed/ab_switch.py).
FOLD_ROTARY = True

SIGMOID_NORMS = ("none", "rowsum", "n")
# Sigmoid passes (SWAT) are explicit per-window matmuls. With small windows and a small head dim those products are
# tiny (window 4, head dim 16: q k^T is 4 x 16 x 4 and P V 4 x 4 x 16) and run far below the GEMM rate. On the fast
# path (`grouped_sigmoid_pass`) adjacent windows of an axis are merged into passes of up to SIGMOID_GROUP_LENGTH
# positions, with the tables block-diagonal and the multiplier 0 between windows, so those weights are exactly 0:
# more (uncounted) score work, in products large enough to run fast. On gated_swinrmt_swat_tiny's mixers (64 px,
# forward + backward, benchmarks/speed/sigmoid_groups.py) that took 0.72-0.78x the time at head dim 16, and gained
# nothing beyond noise at head dim 32 (0.94-1.09x over three runs), where the per-window products already run well; so
# only heads of at most SIGMOID_GROUP_MAX_HEAD_DIM merge. SIGMOID_GROUP_LENGTH = 0 keeps one window per pass.
SIGMOID_GROUP_LENGTH = 16
SIGMOID_GROUP_MAX_HEAD_DIM = 16


@dataclass
class PassTables:
    """What one pass needs: an additive bias before the nonlinearity, an optional multiplier after it (sigmoid)."""

    add: torch.Tensor
    mul: torch.Tensor | None = None
    rotary: tuple[torch.Tensor, torch.Tensor] | None = None  # (sin, cos), each (M, d)


def width_layout(x: torch.Tensor, gw: AxisGeometry) -> torch.Tensor:
    b, hp, wp, heads, d = x.shape
    return x.view(b, hp, gw.num_windows, gw.window, heads, d).permute(0, 4, 1, 2, 3, 5)


def height_layout(x: torch.Tensor, gh: AxisGeometry) -> torch.Tensor:
    b, hp, wp, heads, d = x.shape
    return x.view(b, gh.num_windows, gh.window, wp, heads, d).permute(0, 4, 1, 3, 2, 5)


def width_to_height(y: torch.Tensor, gh: AxisGeometry) -> torch.Tensor:
    """(B, heads, Hp, nW, Mw, d) -> (B, heads, nH, Wp, Mh, d) without going through the token layout."""
    b, heads, hp, nw, mw, d = y.shape
    return y.reshape(b, heads, gh.num_windows, gh.window, nw * mw, d).transpose(3, 4)


def height_to_tokens(y: torch.Tensor) -> torch.Tensor:
    """(B, heads, nH, Wp, Mh, d) -> (B, Hp, Wp, heads*d)."""
    b, heads, nh, wp, mh, d = y.shape
    return y.permute(0, 2, 4, 3, 1, 5).reshape(b, nh * mh, wp, heads * d)


def pass_weights(q: torch.Tensor, k: torch.Tensor, t: PassTables, kind: str,
                 sigmoid_norm: str = "none") -> torch.Tensor:
    """The weights one pass applies to V (plain tensor code; also what `swinrmt viz` draws). q is pre-scaled."""
    if t.rotary is not None:
        sin, cos = t.rotary
        q, k = apply_rotary(q, sin, cos), apply_rotary(k, sin, cos)
    s = q @ k.transpose(-1, -2) + t.add
    if kind == "softmax":
        return torch.softmax(s, dim=-1)
    a = torch.sigmoid(s)
    if t.mul is not None:
        a = a * t.mul
    if sigmoid_norm == "rowsum":
        a = a / (a.sum(-1, keepdim=True) + 1e-6)
    elif sigmoid_norm == "n":
        a = a / a.shape[-1]
    return a


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, t: PassTables, kind: str,
           sigmoid_norm: str = "none", use_sdpa: bool = True) -> torch.Tensor:
    """One 1-D attention pass over the last-but-one axis. q is already scaled by d^-1/2."""
    if kind == "softmax" and use_sdpa:
        if t.rotary is not None:
            sin, cos = t.rotary
            q, k = apply_rotary(q, sin, cos), apply_rotary(k, sin, cos)
        return biased_attention(q, k, v, t.add, scale=1.0)
    return pass_weights(q, k, t, kind, sigmoid_norm).to(v.dtype) @ v


def axial_window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gh: AxisGeometry, gw: AxisGeometry,
                           tw: PassTables, th: PassTables, kind: str = "softmax", sigmoid_norm: str = "none",
                           use_sdpa: bool = True) -> torch.Tensor:
    """q, k, v: rolled and padded (B, Hp, Wp, heads, d), q pre-scaled. Returns (B, Hp, Wp, heads*d)."""
    yw = attend(width_layout(q, gw), width_layout(k, gw), width_layout(v, gw), tw, kind, sigmoid_norm, use_sdpa)
    yh = attend(height_layout(q, gh), height_layout(k, gh), width_to_height(yw, gh), th, kind, sigmoid_norm,
                use_sdpa)
    return height_to_tokens(yh)


def sigmoid_group(geo: AxisGeometry, length: int | None = None) -> int:
    """How many adjacent windows of this axis one fast sigmoid pass takes: the largest divisor of the window count
    whose merged length stays within `length` (SIGMOID_GROUP_LENGTH)."""
    length = SIGMOID_GROUP_LENGTH if length is None else length
    fits = max(1, length // geo.window)
    return max(g for g in range(1, min(fits, geo.num_windows) + 1) if geo.num_windows % g == 0)


def grouped_sigmoid_pass(geo: AxisGeometry, t: PassTables, axis: str, g: int,
                         sigmoid_norm: str) -> tuple[AxisGeometry, PassTables]:
    """The pass over `g` merged windows: a layout geometry (windows of g*M positions) and block-diagonal tables.

    Between merged windows the multiplier is 0, so their weights are exactly 0 and every row keeps its own window's
    keys only, as in the reference; `rowsum` is unchanged by those zeros, and `n` (divide by the window length) is
    folded into the multiplier, since the merged pass is longer than a window.
    """
    if t.mul is None:
        raise ValueError("a merged sigmoid pass needs the multiplier table (0 between windows)")
    layout = AxisGeometry(geo.padded, geo.window * g, 0)  # only its num_windows / window are read by the layouts

    def merge(tab: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        tab = tab.squeeze(2 if axis == "h" else 1)  # (heads or 1, nwin, M, M)
        h, nw, m, _ = tab.shape
        full = block_diagonal(tab.reshape(h * (nw // g), g, m, m), 0.0)  # (h * nwin/g, gM, gM)
        full = full.view(h, nw // g, g * m, g * m)
        return broadcast_pass_table(full * scale if scale != 1.0 else full, axis)

    rotary = _axis_rotary(t, g) if t.rotary is not None else None
    mul = merge(t.mul, 1.0 / geo.window if sigmoid_norm == "n" else 1.0)
    return layout, PassTables(merge(t.add), mul, rotary)


# ----------------------------------------------------------------------------------------------------------------------
# Fast path: fused softmax attention on zero-copy views
# ----------------------------------------------------------------------------------------------------------------------
class reference_path:
    """Context manager: plain reference code inside the block (tests, debugging): every axial mixer on the
    reference path, and attention, depthwise convs and SWAT's gated value and head norm on PyTorch's kernels rather
    than swinrmt's CPU kernels."""

    def __enter__(self):
        global FAST_PATH
        self._prev, FAST_PATH = FAST_PATH, False
        self._prev_kernels = short_attention.ENABLED, depthwise.ENABLED, pointwise.ENABLED
        short_attention.ENABLED = depthwise.ENABLED = pointwise.ENABLED = False
        return self

    def __exit__(self, *exc):
        global FAST_PATH
        FAST_PATH = self._prev
        short_attention.ENABLED, depthwise.ENABLED, pointwise.ENABLED = self._prev_kernels
        return False


def block_diagonal(t: torch.Tensor, fill: float) -> torch.Tensor:
    """(heads, nwin, M, M) per-window tables -> (heads, nwin*M, nwin*M), `fill` between windows (differentiable).

    Written with a broadcast `where` rather than advanced-index assignment, so tracers (ONNX) can export it.
    """
    heads, nw, m, _ = t.shape
    idx = torch.arange(nw, device=t.device)
    same = (idx[:, None] == idx[None, :])[None, :, None, :, None]  # (1, nw, 1, nw, 1)
    tiled = t.unsqueeze(3).expand(heads, nw, m, nw, m)  # row window i, column window j -> table of window i
    return torch.where(same, tiled, torch.full((), fill, dtype=t.dtype, device=t.device)).reshape(heads, nw * m, nw * m)


def _axis_table(tab: torch.Tensor, geo: AxisGeometry, axis: str, reps: int, fill: float, key, name: str,
                scale: float = 1.0, shift: int = 0) -> torch.Tensor:
    """A pass's (heads, nwin, M, M) table (in its broadcast shape) as one block-diagonal (1, reps*heads, L, L) table
    over the padded axis, `fill` between windows, times `scale`; cached under `key` (None: rebuilt).

    `shift` > 0 gives the table in the *unrolled* positions of a map that was never rolled: entry (i, j) is the rolled
    table's ((i - s) mod L, (j - s) mod L), which is what the reference's roll, pass and unroll apply to position i.
    """

    def build():
        t = tab.squeeze(2 if axis == "h" else 1)  # (heads, nwin, M, M)
        full = block_diagonal(t, fill) if geo.num_windows > 1 else t[:, 0]
        full = full * scale if scale != 1.0 else full
        full = full.roll((shift, shift), (-2, -1)) if shift else full
        return full.repeat(reps, 1, 1).unsqueeze(0)  # head index fastest: (w * heads + h)

    if key is None:
        return build()
    return cached((name,) + key + (geo, axis, reps, scale, shift, tab.dtype, tab.device), build)


def _axis_bias(t: PassTables, geo: AxisGeometry, axis: str, reps: int, key, shift: int = 0) -> torch.Tensor:
    """The pass's additive table as one block-diagonal (1, reps*heads, L, L) SDPA mask over the padded axis."""
    return _axis_table(t.add, geo, axis, reps, NEG, key, "fast_axis_bias", shift=shift)


def _axes_on_kernel(gh: AxisGeometry, gw: AxisGeometry, q: torch.Tensor) -> bool:
    """Whether whole-axis passes over both padded axes run on the short-attention kernel for q's head dim/dtype."""
    d = q.shape[-1]
    return (short_attention.takes(gh.padded, d, q.dtype, q.device)
            and short_attention.takes(gw.padded, d, q.dtype, q.device))


def _axis_rotary(t: PassTables, windows: int, shift: int = 0):
    """In-window rotary code tiled over `windows` windows: rolled position p uses the code of p mod M (unrolled
    position i, with `shift`, the code of its rolled position (i - s) mod L; see `_axis_table`)."""
    sin, cos = t.rotary
    if windows > 1:
        sin, cos = sin.repeat(windows, 1), cos.repeat(windows, 1)
    if shift:
        sin, cos = sin.roll(shift, 0), cos.roll(shift, 0)
    return sin, cos


def fast_axial_softmax(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gh: AxisGeometry, gw: AxisGeometry,
                       tw: PassTables, th: PassTables, key=None, unrolled: bool = False,
                       flat_rotary: bool = False) -> torch.Tensor:
    """Same result as `axial_window_attention(kind="softmax")`, without copies or per-window batching.

    Each pass attends along the whole padded axis with the window structure folded into the additive mask (NEG
    between windows, so exp() gives exactly 0 there, as in the reference): the window partition becomes a
    block-diagonal bias, and q/k/v stay in the token layout (B, Hp, Wp, heads, d), read through strided views:
      width  : (B*Hp, heads, Wp, d)        mask (1, heads, Wp, Wp)
      height : (B, Wp*heads, Hp, d)        mask (1, Wp*heads, Hp, Hp)  (the (w, head) pair is one stride-d axis)
    CPU's fused flash kernel and CUDA's kernels accept these strides and a broadcast 4-D mask, and return the output
    already in the token layout, so the width output feeds the height pass as V with no transpose. The cost: scores
    over the padded axis instead of a window (wasted, uncounted FLOPs of nwin x a window pass, cheap next to the
    copies it saves at these window counts; exactly what RMT's global decomposed attention does anyway).

    `unrolled=True`: q, k, v were neither rolled nor padded (the caller checks that nothing needs padding), and the
    shift moves into the tables instead (`_axis_table`): the same result in the map's own positions, without the
    roll and unroll copies of q, k, v and the output, forward and backward.

    `flat_rotary=True`: q and k are not yet rotated by RMT's flat code; the passes rotate them as they attend
    (`_whole_axis_passes`).
    """
    return _whole_axis_passes(q, k, v, gh, gw, tw, th, lambda q, k, v, t, geo, axis, reps, shift, rotary=None:
                              biased_attention(q, k, v, _axis_bias(t, geo, axis, reps, key, shift), 1.0, rotary),
                              unrolled, flat_rotary)


def _whole_axis_passes(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gh: AxisGeometry, gw: AxisGeometry,
                       tw: PassTables, th: PassTables, attend, unrolled: bool = False,
                       flat_rotary: bool = False) -> torch.Tensor:
    """The width then height pass along whole padded axes, on strided views of the token layout (see
    `fast_axial_softmax`); `attend(q, k, v, tables, geo, axis, reps, shift[, rotary])` runs one pass and returns q's
    layout. `flat_rotary`: q and k are not yet rotated by the flat code (row * W + col), and each pass has the kernel
    rotate them (`FOLD_ROTARY`, `rotary.FoldedRotary`: steps of 1 along a row, W along a column); the map must be
    unpadded and unrolled, so positions are the map's own."""
    if (unrolled or flat_rotary) and (gh.pad or gw.pad):
        raise ValueError("unrolled or flat-rotary whole-axis passes need maps that no window pads")
    if flat_rotary and not unrolled and (gh.shift or gw.shift):
        raise ValueError("flat-rotary whole-axis passes need unrolled maps")
    sh, sw = (gh.shift, gw.shift) if unrolled else (0, 0)
    b, hp, wp, heads, d = q.shape
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    # width pass
    qw, kw_, vw = (t.view(b * hp, wp, heads, d).transpose(1, 2) for t in (q, k, v))
    if tw.rotary is not None:
        sin, cos = _axis_rotary(tw, gw.num_windows, sw)
        qw, kw_ = apply_rotary(qw, sin, cos), apply_rotary(kw_, sin, cos)
    rot = {"rotary": folded_rotary(hp * wp, d, q.dtype, q.device)} if flat_rotary else {}
    yw = attend(qw, kw_, vw, tw, gw, "w", 1, sw, **rot)
    yw = yw.transpose(1, 2).reshape(b, hp, wp * heads, d)  # a view when the kernel returns token order
    # height pass, V = the width pass output
    qh, kh = (t.view(b, hp, wp * heads, d).transpose(1, 2) for t in (q, k))
    if th.rotary is not None:
        sin, cos = _axis_rotary(th, gh.num_windows, sh)
        qh, kh = apply_rotary(qh, sin, cos), apply_rotary(kh, sin, cos)
    if flat_rotary:
        rot = {"rotary": folded_rotary(hp * wp, d, q.dtype, q.device, step=wp)}  # rows are W positions apart
    yh = attend(qh, kh, yw.transpose(1, 2), th, gh, "h", wp, sh, **rot)
    return yh.transpose(1, 2).reshape(b, hp, wp, heads * d)


def fast_axial_sigmoid(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gh: AxisGeometry, gw: AxisGeometry,
                       tw: PassTables, th: PassTables, sigmoid_norm: str = "none", key=None,
                       unrolled: bool = False) -> torch.Tensor:
    """Same result as `axial_window_attention(kind="sigmoid")` for norm "none" or "n", on the short-attention kernel.

    As in `fast_axial_softmax`, each pass runs along the whole padded axis on strided views of the token layout, the
    windows folded into block-diagonal tables: the multiplier is 0 between windows, so those weights are exactly 0
    (the additive table's value there is irrelevant), and "n" (divide by the window length) is folded into the
    multiplier. The kernel keeps each row's scores in registers, so the extra (uncounted) score work of the longer
    pass costs little, unlike the explicit products of the windowed layout. The caller checks
    `AxialMixer.sigmoid_on_kernel` first; `unrolled` as in `fast_axial_softmax`.
    """
    if sigmoid_norm not in ("none", "n"):
        raise ValueError(f"the kernel's sigmoid pass has no row normaliser; sigmoid_norm={sigmoid_norm!r}")

    def attend(q, k, v, t: PassTables, geo: AxisGeometry, axis: str, reps: int, shift: int) -> torch.Tensor:
        scale = 1.0 / geo.window if sigmoid_norm == "n" else 1.0
        return short_attention.sigmoid_attention(
            q, k, v, _axis_table(t.add, geo, axis, reps, 0.0, key, "fast_sigmoid_add", shift=shift),
            _axis_table(t.mul, geo, axis, reps, 0.0, key, "fast_sigmoid_mul", scale, shift))

    return _whole_axis_passes(q, k, v, gh, gw, tw, th, attend, unrolled)


# ----------------------------------------------------------------------------------------------------------------------
# The mixer module shared by MaSA (decomposed), Retention and SWAT
# ----------------------------------------------------------------------------------------------------------------------
ROTARY_MODES = ("none", "flat", "window")


def broadcast_pass_table(t: torch.Tensor, axis: str) -> torch.Tensor:
    """(heads or 1, n_windows, M, M) -> the pass's broadcast shape (see module docstring)."""
    return t.unsqueeze(1) if axis == "w" else t.unsqueeze(2)


class AxialMixer(nn.Module):
    """Projections, windowing and bookkeeping common to every windowed-axial mixer.

    Subclasses define the value path (`value`), the per-pass tables (`pass_tables`) and what happens between the
    attention output and W_O (`post`). `window_size=None` means one window = the whole map (RMT's global decomposed
    attention); otherwise windows adapt per axis (min(M, H), min(M, W)) and an axis one window covers is not shifted.
    """

    kind = "softmax"

    def __init__(self, dim: int, num_heads: int, window_size: int | None = 7, shift: bool = False,
                 decay_a: float = 2.0, decay_b: float = 4.0, learnable_decay: bool = False, lce: bool = True,
                 rotary: str = "none", qkv_bias: bool = True, use_sdpa: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        check_choice("rotary", rotary, ROTARY_MODES)
        if window_size is not None and window_size < 1:
            raise ValueError(f"window_size must be >= 1 or None (global), got {window_size}")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.window_size, self.shift = window_size, shift
        self.decay_a, self.decay_b = float(decay_a), float(decay_b)
        self.rotary, self.use_sdpa = rotary, use_sdpa
        self.scale = self.head_dim ** -0.5
        self.q = Linear(dim, dim, bias=qkv_bias)
        self.k = Linear(dim, dim, bias=qkv_bias)
        self.lce = DWConv(dim, 5) if lce else None
        self.proj = Linear(dim, dim)
        if learnable_decay:
            g = decay_rates(num_heads, decay_a, decay_b)
            self.decay_logit = nn.Parameter(torch.log(g / (1 - g)).float())
        else:
            self.decay_logit = None

    # -- hooks -----------------------------------------------------------------------------------------------------
    def value(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pass_tables(self, geo, axis: str, dtype: torch.dtype, device: torch.device) -> PassTables:
        raise NotImplementedError

    def post(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return y

    # -- shared pieces ---------------------------------------------------------------------------------------------
    def log_gamma(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """(heads,) log decay rate; differentiable only with learnable_decay."""
        if self.decay_logit is not None:
            return F.logsigmoid(self.decay_logit).to(dtype)
        return torch.log(decay_rates(self.num_heads, self.decay_a, self.decay_b, device)).to(dtype)

    def window_rotary(self, geo, dtype, device):
        if self.rotary != "window":
            return None
        return rotary_tables(geo.window, self.head_dim, dtype, device)

    def geometry(self, h: int, w: int):
        if self.window_size is None:
            return axis_geometry(h, h, False), axis_geometry(w, w, False)
        return axis_geometry(h, self.window_size, self.shift), axis_geometry(w, self.window_size, self.shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        heads, d = self.num_heads, self.head_dim
        q = self.scaled_q(x).view(b, h, w, heads, d)
        k = self.k(x).view(b, h, w, heads, d)
        v = v_map = self.value(x)
        gh, gw = self.geometry(h, w)
        tw = self.pass_tables(gw, "w", q.dtype, q.device)
        th = self.pass_tables(gh, "h", q.dtype, q.device)
        norm = getattr(self, "sigmoid_norm", "none")
        softmax_fast = FAST_PATH and self.kind == "softmax" and self.use_sdpa and not self.windowed_is_faster(gh, gw, q)
        on_kernel = FAST_PATH and self.kind == "sigmoid" and self.use_sdpa and self.sigmoid_on_kernel(gh, gw, q, tw, th,
                                                                                                    norm)
        unrolled = UNROLL_SHIFTED and (softmax_fast or on_kernel) and not (gh.pad or gw.pad)  # see UNROLL_SHIFTED
        fold = (FOLD_ROTARY and self.rotary == "flat" and softmax_fast and unrolled and not needs_grad(q, k)
                and _axes_on_kernel(gh, gw, q))  # see FOLD_ROTARY
        if self.rotary == "flat" and not fold:  # RMT: one code indexed by the flattened position row * W + col
            sin, cos = rotary_tables(h * w, d, q.dtype, q.device)
            sin, cos = sin.view(h, w, 1, d), cos.view(h, w, 1, d)
            q, k = apply_rotary(q, sin, cos), apply_rotary(k, sin, cos)
        v = v.view(b, h, w, heads, d)
        if not unrolled:
            q, k, v = roll_and_pad(q, gh, gw), roll_and_pad(k, gh, gw), roll_and_pad(v, gh, gw)

        def to_map(y: torch.Tensor) -> torch.Tensor:
            return y if unrolled else crop_and_unroll(y, gh, gw)

        if softmax_fast:
            y = self.post(to_map(fast_axial_softmax(q, k, v, gh, gw, tw, th, self.fast_bias_key(), unrolled, fold)), x)
        else:
            lh, lw = gh, gw  # the layouts' geometry: the windows, or merged windows on the fast sigmoid path
            if not on_kernel and FAST_PATH and self.kind == "sigmoid" and self.head_dim <= SIGMOID_GROUP_MAX_HEAD_DIM:
                merge_w, merge_h = sigmoid_group(gw), sigmoid_group(gh)
                if merge_w > 1 or merge_h > 1:  # tables rebuilt per forward: about 60 us a pass
                    lw, tw = grouped_sigmoid_pass(gw, tw, "w", merge_w, norm)
                    lh, th = grouped_sigmoid_pass(gh, th, "h", merge_h, norm)
                    norm = "none" if norm == "n" else norm

            def core(q, k, v):
                if on_kernel:
                    key = self.fast_bias_key()
                    key = None if key is None else key + (self.alibi, self.sigmoid_bias)
                    y = fast_axial_sigmoid(q, k, v, gh, gw, tw, th, norm, key, unrolled)
                else:
                    y = axial_window_attention(q, k, v, lh, lw, tw, th, self.kind, norm, self.use_sdpa)
                return self.post(to_map(y), x)

            if FAST_PATH and self.kind == "sigmoid" and self.training and torch.is_grad_enabled() and q.requires_grad:
                # Lean sigmoid path: keep only q, k, v (saved by their own producers anyway) and recompute the
                # scores, the per-window layouts and the head norm in the backward. These are cheap elementwise and
                # tiny-matmul work, but each held one or more activation-sized tensors: SWAT's training memory
                # falls to RMT's level for a few percent of step time (benchmarks/speed/README.md). On the kernel the
                # recompute is one more kernel forward; without it the width-pass output and the head norm's input
                # stay saved: 1.21x rmt_tiny's training memory, and no faster (seventh session, ad hoc).
                y = checkpoint(core, q, k, v, use_reentrant=False)
            else:
                y = core(q, k, v)
        if self.lce is not None:
            y = self.lce(v_map, y)
        y = self.gate_output(y, x)
        return self.proj(y)

    def gate_output(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return y

    def scaled_q(self, x: torch.Tensor) -> torch.Tensor:
        """x W_q d^-1/2, with the scale folded into the (dim x dim) weight rather than applied to the activations."""
        bias = self.q.bias * self.scale if self.q.bias is not None else None
        return linear(x, self.q.weight * self.scale, bias)

    @staticmethod
    def windowed_is_faster(gh: AxisGeometry, gw: AxisGeometry, q: torch.Tensor) -> bool:
        """Whether the windowed layout beats the fused whole-axis path here (see WINDOWED_IF_WINDOWS).

        Measured in eager mode; under torch.compile the fused path is kept (Inductor's lowering of the 6-D windowed
        SDPA call fails in torch 2.13). Where both whole-axis passes run on the short-attention kernel, the fused path
        is kept too: there it measured faster than the windowed layout (benchmarks/speed/README.md, seventh session).
        """
        if torch.is_grad_enabled() or torch.compiler.is_compiling():
            return False
        if max(gh.num_windows, gw.num_windows) not in WINDOWED_IF_WINDOWS:
            return False
        return not _axes_on_kernel(gh, gw, q)

    @staticmethod
    def sigmoid_on_kernel(gh: AxisGeometry, gw: AxisGeometry, q: torch.Tensor, tw: PassTables, th: PassTables,
                          norm: str) -> bool:
        """Whether the sigmoid passes run whole-axis on the short-attention kernel (`fast_axial_sigmoid`): both axis
        lengths and the head dim fit it, the norm needs no row sum, and no table needs a gradient (learnable decay
        keeps the explicit path, which differentiates the multiplier)."""
        if norm not in ("none", "n") or tw.mul is None or th.mul is None:
            return False
        if torch.is_grad_enabled() and (tw.mul.requires_grad or th.mul.requires_grad):
            return False
        return _axes_on_kernel(gh, gw, q)

    def fast_bias_key(self):
        """Cache key of this mixer's (fixed) pass tables, or None when they change per forward (learnable decay)."""
        if self.decay_logit is not None:
            return None
        return (type(self).__name__, self.num_heads, self.decay_a, self.decay_b)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, heads={self.num_heads}, window={self.window_size}, shift={self.shift}, "
                f"decay=({self.decay_a}, {self.decay_b}), rotary={self.rotary!r}")


def softmax_decay_tables(mixer: AxialMixer, geo, axis: str, dtype, device) -> PassTables:
    """|delta| * log(gamma_h) + mask, the log-space decay of RMT (decay, then renormalise by the softmax)."""
    rot = mixer.window_rotary(geo, dtype, device)

    def build_mask():
        allowed = cached_axis_allowed(geo, device)
        return broadcast_pass_table(torch.where(allowed, 0.0, NEG).to(dtype).unsqueeze(0), axis)

    mask_key = ("softmax_mask", geo, axis, dtype, device)
    if mixer.decay_logit is not None:  # learnable: rebuilt each forward (the one documented exception)
        decay = broadcast_pass_table(log_decay_1d(geo.window, mixer.log_gamma(torch.float32, device)).unsqueeze(1),
                                     axis)
        return PassTables(cached(mask_key, build_mask) + decay.to(dtype), None, rot)

    def build():
        lg = torch.log(decay_rates(mixer.num_heads, mixer.decay_a, mixer.decay_b, device))
        decay = broadcast_pass_table(log_decay_1d(geo.window, lg).unsqueeze(1), axis).to(dtype)
        return cached(mask_key, build_mask) + decay

    key = ("softmax_tables", geo, axis, mixer.num_heads, mixer.decay_a, mixer.decay_b, dtype, device)
    return PassTables(cached(key, build), None, rot)
