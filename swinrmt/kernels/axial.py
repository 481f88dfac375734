"""The windowed axial attention's fast routes, and the one dispatch that picks a route per call.

The reference is the mixer's own `attention` (`layers/mixers/axial.py`): roll and pad, a width pass and a height pass
over per-window layouts, crop and unroll. `axial_attention` runs that, or one of these routes, which compute the same
function (tests/layers/test_fast_path.py and test_short_attention.py hold them to it):

- **whole-axis softmax** (`fast_axial_softmax`, policy `whole_axis`): Retention and RMT's decomposed MaSA attend
  along the whole padded axis in fused `scaled_dot_product_attention` (or short-attention kernel) calls on zero-copy
  strided views of the token layout, the windows folded into a block-diagonal bias. With n windows per axis that
  computes n times the scores a windowed pass needs; it wins when one window covers the axis (RMT's global passes)
  and when the windows are many and tiny. With exactly 2 windows per axis (8x8 maps in 4x4 windows: stage 3 at
  64 px) the windowed layout was faster in inference (1-5 % of a gated_swinrmt_retention_tiny step at batch 64), but
  slower in training (its backward keeps the per-window copies): so inference there takes the reference (policy
  `windowed_if_two_windows`), except where both passes run on the short-attention kernel, which beats it.
- **whole-axis sigmoid on the kernel** (`fast_axial_sigmoid`): SWAT's passes the same way on the short-attention
  kernel, the multiplier 0 between windows.
- **unrolled** (policy `unroll_shifted`): whole-axis passes over maps that no window pads skip Swin's cyclic roll; the
  shift moves into their tables (`_axis_table`), which saves the roll copies of q, k, v and the output's unroll,
  forward and backward, and lets the LCE and the attention share one V.
- **folded rotary** (policy `fold_rotary`): RMT's flat rotary code, in inference where both passes run on the
  short-attention kernel, applied by the kernel as it loads q and k (about 2 % of an rmt_tiny inference step).
- **merged sigmoid windows** (`grouped_sigmoid_pass`, policy `sigmoid_groups`): off the kernel, SWAT's per-window
  products are tiny (window 4, head dim 16: q k^T is 4 x 16 x 4) and run far below the GEMM rate; adjacent windows
  merge into passes of up to SIGMOID_GROUP_LENGTH positions with block-diagonal tables (0 between windows): 0.72-0.78x
  the mixers' time at head dim 16, nothing beyond noise at head dim 32, so only heads of at most
  SIGMOID_GROUP_MAX_HEAD_DIM merge.
- **lean sigmoid training** (policy `lean_sigmoid`): SWAT's passes and head norm under a checkpoint, so only q, k, v
  are kept and the scores, layouts and norm are recomputed in the backward: SWAT's training memory falls to RMT's
  level for a few percent of step time.

Figures: docs/performance.md.
"""
from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from ..layers import rotary
from ..layers._cache import cached
from ..layers.mixers import axial as core
from ..layers.windows import AxisGeometry, crop_and_unroll, roll_and_pad
from . import policy, sdpa, short_attention
from .eager import needs_grad
from .rotate import rotate

SIGMOID_GROUP_LENGTH = 16
SIGMOID_GROUP_MAX_HEAD_DIM = 16


def axial_attention(mixer, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gh: AxisGeometry, gw: AxisGeometry,
                    tw, th) -> torch.Tensor:
    """`mixer.attention(q, k, v, gh, gw, tw, th)` on the fastest route the policy allows for this call."""
    pol = policy.current()
    sigmoid, norm = mixer.kind == "sigmoid", mixer.sigmoid_norm
    softmax_fast = (pol.whole_axis and not sigmoid and mixer.use_sdpa
                    and not windowed_is_faster(pol, gh, gw, q))
    on_kernel = pol.whole_axis and sigmoid and mixer.use_sdpa and sigmoid_on_kernel(gh, gw, q, tw, th, norm)
    merge_w, merge_h = (1, 1) if on_kernel else sigmoid_merge(pol, sigmoid, mixer.head_dim, gh, gw, q)
    lean = pol.lean_sigmoid and sigmoid and mixer.training and torch.is_grad_enabled() and q.requires_grad
    if not (softmax_fast or on_kernel or merge_w > 1 or merge_h > 1 or lean):
        return mixer.attention(q, k, v, gh, gw, tw, th)

    unrolled = pol.unroll_shifted and (softmax_fast or on_kernel) and not (gh.pad or gw.pad)
    fold = (pol.fold_rotary and mixer.rotary == "flat" and softmax_fast and unrolled and not needs_grad(q, k)
            and _axes_on_kernel(gh, gw, q))
    if mixer.rotary == "flat" and not fold:
        q, k = mixer.flat_rotary(q, k)
    if not unrolled:
        q, k, v = roll_and_pad(q, gh, gw), roll_and_pad(k, gh, gw), roll_and_pad(v, gh, gw)

    def to_map(y: torch.Tensor) -> torch.Tensor:
        return y if unrolled else crop_and_unroll(y, gh, gw)

    key = fast_bias_key(mixer)
    if softmax_fast:
        return mixer.post(to_map(fast_axial_softmax(q, k, v, gh, gw, tw, th, key, unrolled, fold)))
    lh, lw = gh, gw  # the layouts' geometry: the windows, or merged windows
    if merge_w > 1 or merge_h > 1:  # tables rebuilt per forward: about 60 us a pass
        lw, tw = grouped_sigmoid_pass(gw, tw, "w", merge_w, norm)
        lh, th = grouped_sigmoid_pass(gh, th, "h", merge_h, norm)
        norm = "none" if norm == "n" else norm

    def passes(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if on_kernel:
            y = fast_axial_sigmoid(q, k, v, gh, gw, tw, th, norm, None if key is None else key + (
                mixer.alibi, mixer.sigmoid_bias), unrolled)
        else:
            y = core.axial_window_attention(q, k, v, lh, lw, tw, th, mixer.kind, norm, mixer.use_sdpa)
        return mixer.post(to_map(y))

    if lean:  # the recompute runs under the forward's policy, whatever is in force at backward time
        return checkpoint(policy.run_under, pol, passes, q, k, v, use_reentrant=False)
    return passes(q, k, v)


def windowed_is_faster(pol: policy.Policy, gh: AxisGeometry, gw: AxisGeometry, q: torch.Tensor) -> bool:
    """Whether the windowed layout beats the fused whole-axis softmax path here (module docstring).

    Measured on a CPU in eager mode, so a CPU rule only: off the CPU the whole-axis path (4-D strided views, a
    broadcast bias: what CUDA's fused SDPA kernels take) is kept. Under torch.compile the fused path is kept too
    (Inductor's lowering of the 6-D windowed SDPA call fails in torch 2.13), and where both whole-axis passes run on
    the short-attention kernel.
    """
    if (not pol.windowed_if_two_windows or q.device.type != "cpu" or torch.is_grad_enabled()
            or torch.compiler.is_compiling()):
        return False
    if max(gh.num_windows, gw.num_windows) != 2:
        return False
    return not _axes_on_kernel(gh, gw, q)


def sigmoid_merge(pol: policy.Policy, sigmoid: bool, head_dim: int, gh: AxisGeometry, gw: AxisGeometry,
                  q: torch.Tensor) -> tuple[int, int]:
    """How many windows of each axis one sigmoid pass merges into a block-diagonal sequence (width, height). A rule
    measured on a CPU (longer batched matmuls beat more short ones there), so it applies on the CPU only."""
    if not (pol.sigmoid_groups and sigmoid and head_dim <= SIGMOID_GROUP_MAX_HEAD_DIM and q.device.type == "cpu"):
        return 1, 1
    return sigmoid_group(gw), sigmoid_group(gh)


def sigmoid_on_kernel(gh: AxisGeometry, gw: AxisGeometry, q: torch.Tensor, tw, th, norm: str) -> bool:
    """Whether the sigmoid passes run whole-axis on the short-attention kernel (`fast_axial_sigmoid`): both axis
    lengths and the head dim fit it, the norm needs no row sum, and no table needs a gradient (learnable decay keeps
    the explicit path, which differentiates the multiplier)."""
    if norm not in ("none", "n") or tw.mul is None or th.mul is None:
        return False
    if torch.is_grad_enabled() and (tw.mul.requires_grad or th.mul.requires_grad):
        return False
    return _axes_on_kernel(gh, gw, q)


def fast_bias_key(mixer):
    """Cache key of a mixer's (fixed) pass tables, or None when they change per forward (learnable decay)."""
    if mixer.decay_logit is not None:
        return None
    return (type(mixer).__name__, mixer.num_heads, mixer.decay_a, mixer.decay_b)


def sigmoid_group(geo: AxisGeometry, length: int | None = None) -> int:
    """How many adjacent windows of this axis one fast sigmoid pass takes: the largest divisor of the window count
    whose merged length stays within `length` (SIGMOID_GROUP_LENGTH)."""
    length = SIGMOID_GROUP_LENGTH if length is None else length
    fits = max(1, length // geo.window)
    return max(g for g in range(1, min(fits, geo.num_windows) + 1) if geo.num_windows % g == 0)


def grouped_sigmoid_pass(geo: AxisGeometry, t: core.PassTables, axis: str, g: int,
                         sigmoid_norm: str) -> tuple[AxisGeometry, core.PassTables]:
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
        return core.broadcast_pass_table(full * scale if scale != 1.0 else full, axis)

    rotary = _axis_rotary(t, g) if t.rotary is not None else None
    mul = merge(t.mul, 1.0 / geo.window if sigmoid_norm == "n" else 1.0)
    return layout, core.PassTables(merge(t.add), mul, rotary)


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


def _axis_bias(t: core.PassTables, geo: AxisGeometry, axis: str, reps: int, key, shift: int = 0) -> torch.Tensor:
    """The pass's additive table as one block-diagonal (1, reps*heads, L, L) SDPA mask over the padded axis."""
    return _axis_table(t.add, geo, axis, reps, core.NEG, key, "fast_axis_bias", shift=shift)


def _axes_on_kernel(gh: AxisGeometry, gw: AxisGeometry, q: torch.Tensor) -> bool:
    """Whether whole-axis passes over both padded axes run on the short-attention kernel for q's head dim/dtype."""
    d = q.shape[-1]
    return (short_attention.takes(gh.padded, d, q.dtype, q.device)
            and short_attention.takes(gw.padded, d, q.dtype, q.device))


def _axis_rotary(t: core.PassTables, windows: int, shift: int = 0):
    """In-window rotary code tiled over `windows` windows: rolled position p uses the code of p mod M (unrolled
    position i, with `shift`, the code of its rolled position (i - s) mod L; see `_axis_table`)."""
    sin, cos = t.rotary
    if windows > 1:
        sin, cos = sin.repeat(windows, 1), cos.repeat(windows, 1)
    if shift:
        sin, cos = sin.roll(shift, 0), cos.roll(shift, 0)
    return sin, cos


def fast_axial_softmax(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gh: AxisGeometry, gw: AxisGeometry,
                       tw: core.PassTables, th: core.PassTables, key=None, unrolled: bool = False,
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
                              sdpa.biased_attention(q, k, v, _axis_bias(t, geo, axis, reps, key, shift), 1.0, rotary),
                              unrolled, flat_rotary)


def _whole_axis_passes(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gh: AxisGeometry, gw: AxisGeometry,
                       tw: core.PassTables, th: core.PassTables, attend, unrolled: bool = False,
                       flat_rotary: bool = False) -> torch.Tensor:
    """The width then height pass along whole padded axes, on strided views of the token layout (see
    `fast_axial_softmax`); `attend(q, k, v, tables, geo, axis, reps, shift[, rotary])` runs one pass and returns q's
    layout. `flat_rotary`: q and k are not yet rotated by the flat code (row * W + col), and each pass has the kernel
    rotate them (policy `fold_rotary`, `rotary.FoldedRotary`: steps of 1 along a row, W along a column); the map must be
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
        qw, kw_ = rotate(qw, sin, cos), rotate(kw_, sin, cos)
    rot = {"rotary": rotary.folded_rotary(hp * wp, d, q.dtype, q.device)} if flat_rotary else {}
    yw = attend(qw, kw_, vw, tw, gw, "w", 1, sw, **rot)
    yw = yw.transpose(1, 2).reshape(b, hp, wp * heads, d)  # a view when the kernel returns token order
    # height pass, V = the width pass output
    qh, kh = (t.view(b, hp, wp * heads, d).transpose(1, 2) for t in (q, k))
    if th.rotary is not None:
        sin, cos = _axis_rotary(th, gh.num_windows, sh)
        qh, kh = rotate(qh, sin, cos), rotate(kh, sin, cos)
    if flat_rotary:
        rot = {"rotary": rotary.folded_rotary(hp * wp, d, q.dtype, q.device, step=wp)}  # rows are W positions apart
    yh = attend(qh, kh, yw.transpose(1, 2), th, gh, "h", wp, sh, **rot)
    return yh.transpose(1, 2).reshape(b, hp, wp, heads * d)


def fast_axial_sigmoid(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gh: AxisGeometry, gw: AxisGeometry,
                       tw: core.PassTables, th: core.PassTables, sigmoid_norm: str = "none", key=None,
                       unrolled: bool = False) -> torch.Tensor:
    """Same result as `axial_window_attention(kind="sigmoid")` for norm "none" or "n", on the short-attention kernel.

    As in `fast_axial_softmax`, each pass runs along the whole padded axis on strided views of the token layout, the
    windows folded into block-diagonal tables: the multiplier is 0 between windows, so those weights are exactly 0
    (the additive table's value there is irrelevant), and "n" (divide by the window length) is folded into the
    multiplier. The kernel keeps each row's scores in registers, so the extra (uncounted) score work of the longer
    pass costs little, unlike the explicit products of the windowed layout. The caller checks
    `sigmoid_on_kernel` first; `unrolled` as in `fast_axial_softmax`.
    """
    if sigmoid_norm not in ("none", "n"):
        raise ValueError(f"the kernel's sigmoid pass has no row normaliser; sigmoid_norm={sigmoid_norm!r}")

    def attend(q, k, v, t: core.PassTables, geo: AxisGeometry, axis: str, reps: int, shift: int) -> torch.Tensor:
        scale = 1.0 / geo.window if sigmoid_norm == "n" else 1.0
        return short_attention.sigmoid_attention(
            q, k, v, _axis_table(t.add, geo, axis, reps, 0.0, key, "fast_sigmoid_add", shift=shift),
            _axis_table(t.mul, geo, axis, reps, 0.0, key, "fast_sigmoid_mul", scale, shift))

    return _whole_axis_passes(q, k, v, gh, gw, tw, th, attend, unrolled)


