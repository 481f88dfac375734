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

`AxialMixer.attention` is this computation written out; `kernels.axial_attention` runs it, or a faster route that
computes the same function (`swinrmt/kernels/axial.py`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from ... import kernels
from .._cache import cached
from ..conv import DWConv
from ..decay import decay_rates, log_decay_1d
from ..health import HealthSums, add_sums, row_health
from ..linear import Linear
from ..options import check_choice
from ..rotary import rotary_tables
from ..windows import AxisGeometry, axis_geometry, cached_axis_allowed, crop_and_unroll, roll_and_pad

NEG = -1.0e4  # masked-key bias: finite, so rows with no valid key (padding queries) stay finite in any dtype


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
        q, k = kernels.rotate(q, sin, cos), kernels.rotate(k, sin, cos)
    s = q @ k.transpose(-1, -2) + t.add
    if kind == "softmax":
        return torch.softmax(s, dim=-1)
    a = torch.sigmoid(s)
    if t.mul is not None:  # SWAT: the decay gamma^|delta| (0 on masked keys) multiplies the weights after the sigmoid
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
            q, k = kernels.rotate(q, sin, cos), kernels.rotate(k, sin, cos)
        return kernels.attention(q, k, v, t.add, scale=1.0)
    return pass_weights(q, k, t, kind, sigmoid_norm).to(v.dtype) @ v


def axial_window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gh: AxisGeometry, gw: AxisGeometry,
                           tw: PassTables, th: PassTables, kind: str = "softmax", sigmoid_norm: str = "none",
                           use_sdpa: bool = True) -> torch.Tensor:
    """q, k, v: rolled and padded (B, Hp, Wp, heads, d), q pre-scaled. Returns (B, Hp, Wp, heads*d)."""
    yw = attend(width_layout(q, gw), width_layout(k, gw), width_layout(v, gw), tw, kind, sigmoid_norm, use_sdpa)
    yh = attend(height_layout(q, gh), height_layout(k, gh), width_to_height(yw, gh), th, kind, sigmoid_norm,
                use_sdpa)
    return height_to_tokens(yh)


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
    attention output and W_O (`post`, `gate_output`). `window_size=None` means one window = the whole map (RMT's
    global decomposed attention); otherwise windows adapt per axis (min(M, H), min(M, W)) and an axis one window
    covers is not shifted.
    """

    kind = "softmax"
    sigmoid_norm = "none"  # the sigmoid passes' row normaliser (SWAT's `rowsum` / `n`)

    def __init__(self, dim: int, num_heads: int, window_size: int | None = 7, shift: bool = False,
                 decay_a: float = 2.0, decay_b: float = 4.0, learnable_decay: bool = False, lce: bool = True,
                 rotary: str = "none", qkv_bias: bool = True, use_sdpa: bool = True, qk_norm: bool = False):
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
        self.q_norm, self.k_norm = qk_norms(self.head_dim, qk_norm)
        self.lce = DWConv(dim, 5) if lce else None
        self.proj = Linear(dim, dim)
        self.register_parameter("head_norm_weight", None)  # set by a subclass that normalises each head's output
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

    def post(self, y: torch.Tensor) -> torch.Tensor:
        """The attention output before LCE: the head norm where a subclass has one (RMS over each head's channels,
        times a learned weight: RetNet's GroupNorm role; SWAT's default, a Retention option)."""
        if self.head_norm_weight is None:
            return y
        return kernels.head_rms_norm(y, self.head_norm_weight, self.head_dim, 1e-6)

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

    def project_qk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q (scaled by d^-1/2) and k, (B, H, W, heads, d); with qk_norm, each head's q and k RMS-normalised first."""
        b, h, w, _ = x.shape
        heads, d = self.num_heads, self.head_dim
        if self.q_norm is None:
            return self.scaled_q(x).view(b, h, w, heads, d), self.k(x).view(b, h, w, heads, d)
        q = self.q_norm(self.q(x).view(b, h, w, heads, d)) * self.scale
        return q, self.k_norm(self.k(x).view(b, h, w, heads, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        heads, d = self.num_heads, self.head_dim
        q, k = self.project_qk(x)
        v = self.value(x)
        gh, gw = mixer_geometry(self, h, w)
        tw = mixer_pass_tables(self, gw, "w", q.dtype, q.device)  # the width pass's decay, bias and masks
        th = mixer_pass_tables(self, gh, "h", q.dtype, q.device)
        y = kernels.axial_attention(self, q, k, v.view(b, h, w, heads, d), gh, gw, tw, th)  # = self.attention(...)
        if self.lce is not None:
            y = self.lce(v, y)  # + LCE(V)
        y = self.gate_output(y, x)
        return self.proj(y)

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gh: AxisGeometry, gw: AxisGeometry,
                  tw: PassTables, th: PassTables) -> torch.Tensor:
        """The width pass, then the height pass on its output, inside each shifted window; then `post`.

        q (pre-scaled), k, v: (B, H, W, heads, d) -> (B, H, W, heads * d). The map is rolled by the shift and padded
        to whole windows, attended, then cropped and rolled back (Swin's cyclic shift)."""
        if self.rotary == "flat":
            q, k = self.flat_rotary(q, k)
        q, k, v = roll_and_pad(q, gh, gw), roll_and_pad(k, gh, gw), roll_and_pad(v, gh, gw)
        y = axial_window_attention(q, k, v, gh, gw, tw, th, self.kind, self.sigmoid_norm, self.use_sdpa)
        return self.post(crop_and_unroll(y, gh, gw))

    def flat_rotary(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """RMT's rotary code: q and k (B, H, W, heads, d) rotated by the flattened position row * W + col."""
        b, h, w, heads, d = q.shape
        sin, cos = rotary_tables(h * w, d, q.dtype, q.device)
        sin, cos = sin.view(h, w, 1, d), cos.view(h, w, 1, d)
        return kernels.rotate(q, sin, cos), kernels.rotate(k, sin, cos)

    @torch.no_grad()
    def health(self, x: torch.Tensor) -> HealthSums:
        """Row entropy, peak weight and largest content logit of both passes (`layers.health`), from the plain math of
        `pass_weights` on this block's input x (B, H, W, C); padding queries and masked keys are left out."""
        b, h, w, _ = x.shape
        q, k = self.project_qk(x)
        gh, gw = self.geometry(h, w)
        if self.rotary == "flat":
            q, k = self.flat_rotary(q, k)
        q, k = roll_and_pad(q, gh, gw), roll_and_pad(k, gh, gw)
        real = torch.zeros(1, gh.padded, gw.padded, 1, 1, dtype=torch.bool, device=x.device)
        real[:, :gh.length, :gw.length] = True
        sums: HealthSums = {}
        for geo, axis, layout in ((gw, "w", width_layout), (gh, "h", height_layout)):
            t = self.pass_tables(geo, axis, q.dtype, q.device)
            qa, ka = layout(q, geo), layout(k, geo)
            if t.rotary is not None:
                sin, cos = t.rotary
                qa, ka = kernels.rotate(qa, sin, cos), kernels.rotate(ka, sin, cos)
            weights = pass_weights(qa, ka, PassTables(t.add, t.mul), self.kind, self.sigmoid_norm)
            allowed = broadcast_pass_table(cached_axis_allowed(geo, x.device).unsqueeze(0), axis)
            rows = layout(real, geo).squeeze(-1)
            add_sums(sums, row_health(weights, qa @ ka.transpose(-1, -2), allowed, rows))
        return sums

    def gate_output(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return y

    def scaled_q(self, x: torch.Tensor) -> torch.Tensor:
        """x W_q d^-1/2, with the scale folded into the (dim x dim) weight rather than applied to the activations."""
        bias = self.q.bias * self.scale if self.q.bias is not None else None
        return kernels.linear(x, self.q.weight * self.scale, bias)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, heads={self.num_heads}, window={self.window_size}, shift={self.shift}, "
                f"decay=({self.decay_a}, {self.decay_b}), rotary={self.rotary!r}"
                + (", qk_norm=True" if self.q_norm is not None else ""))


def qk_norms(head_dim: int, on: bool) -> tuple[nn.Module | None, nn.Module | None]:
    """Per-head RMS norms of q and k with a learnable scale (ViT-22B's remedy for attention logits that grow without
    bound at a high learning rate): the content logit is then bounded by the two scales times sqrt(d)."""
    if not on:
        return None, None
    return nn.RMSNorm(head_dim, eps=1e-6), nn.RMSNorm(head_dim, eps=1e-6)


def mixer_geometry(mixer: AxialMixer, h: int, w: int) -> tuple[AxisGeometry, AxisGeometry]:
    """`mixer.geometry(h, w)`; with `mixer_pass_tables`, a leaf for torch.fx (see the end of this module)."""
    return mixer.geometry(h, w)


def mixer_pass_tables(mixer: AxialMixer, geo: AxisGeometry, axis: str, dtype: torch.dtype,
                      device: torch.device) -> PassTables:
    """`mixer.pass_tables(geo, axis, dtype, device)` (the cached decay, bias and mask tables of one pass)."""
    return mixer.pass_tables(geo, axis, dtype, device)


# torch.fx: the window geometry and the table caches branch on the map size, so a symbolic trace records each of these
# calls as one node (plain calls in eager mode).
torch.fx.wrap("mixer_geometry")
torch.fx.wrap("mixer_pass_tables")


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
