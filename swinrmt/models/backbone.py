"""The shared RMT-macro backbone: conv stem -> 4 stages (conv downsample + blocks) -> RMT head.

`rmt_*`, `gated_swinrmt_retention_*` and `gated_swinrmt_swat_*` are this one class with a different `mixer`, so a
comparison between them isolates the token mixer. Internally activations are channels-last (B, H, W, C);
`forward_features` and feature maps are returned as NCHW (the layout detection / segmentation necks expect).
"""
from __future__ import annotations

import contextlib
import functools
import inspect
from typing import Any, Callable, Sequence

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..layers.conv import ConvDownsample, ConvStem, DWConv
from ..layers.drop import DropPath, LayerScale
from ..layers.ffn import ConvFFN
from ..layers.linear import Linear
from ..layers.mixers import AxialMixer, MaSA2d, MaSADecomposed, Retention2dMixer, RetentionMixer, SwatMixer
from ..layers.options import check_choice

MIXERS = ("masa", "retention", "swat")
GLOBAL_POOLS = ("avg", "")  # timm's convention: "" keeps the spatial map (no pooling)


def default_geometry(img_size: int | Sequence[int]) -> tuple[int, int]:
    """(stem stride, window) that keep the 224 px / M = 7 regime of ~8, 4, 2, 1 windows per side per stage.

    32 px and below: stride 4 and M = 7, CIFAR's "windows collapse to (almost) global" regime (maps 8/4/2/1).
    Below 112 px: stride 2, M = side/16 (64 px -> maps 32/16/8/4, M = 4). Otherwise stride 4, M = side/32.
    """
    side = min(img_size) if isinstance(img_size, (tuple, list)) else int(img_size)
    if side <= 0:
        raise ValueError(f"img_size must be positive, got {img_size}")
    if side <= 32:
        return 4, 7
    if side < 112:
        return 2, max(2, round(side / 16))
    return 4, max(2, round(side / 32))


def _per_stage(value: Any, name: str) -> tuple:
    if isinstance(value, (list, tuple)):
        if len(value) != 4:
            raise ValueError(f"{name} needs 4 per-stage values, got {len(value)}: {value}")
        return tuple(value)
    return (value,) * 4


def factory_kwargs(init: Callable[..., None]) -> Callable[..., None]:
    """Give a model constructor timm's factory arguments: `device=` and `dtype=` (both None by default).

    The model is built inside `torch.device(device)`, so every parameter and buffer is created there (on "meta" none
    allocates memory; load weights later with `load_state_dict(..., assign=True)` or `to_empty`), then its floating
    point tensors are cast to `dtype`. With neither given the constructor runs exactly as before.
    """

    @functools.wraps(init)
    def wrapper(self, *args: Any, device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                **kwargs: Any) -> None:
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"dtype must be a floating point torch.dtype, got {dtype!r}")
        with torch.device(device) if device is not None else contextlib.nullcontext():
            init(self, *args, **kwargs)
        if dtype is not None:
            self.to(dtype=dtype)

    sig = inspect.signature(init)
    params = [p for p in sig.parameters.values() if p.kind != p.VAR_KEYWORD]
    extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None) for n in ("device", "dtype")]
    var_kw = [p for p in sig.parameters.values() if p.kind == p.VAR_KEYWORD]
    wrapper.__signature__ = sig.replace(parameters=params + extra + var_kw)
    return wrapper


def _like(module: nn.Module) -> dict[str, Any]:
    """device= and dtype= of a module's first floating point parameter (for layers built after construction)."""
    for p in module.parameters():
        if p.is_floating_point():
            return {"device": p.device, "dtype": p.dtype}
    return {}


def check_image_batch(x: torch.Tensor, in_chans: int) -> None:
    """One-line ValueError unless x is a (B, in_chans, H, W) batch. A leaf for torch.fx (it branches on x's shape):
    a symbolic trace records it as one call, which runs as plain Python in eager mode and in the traced module."""
    if x.dim() != 4:
        raise ValueError(f"expected a 4-D image batch (B, {in_chans}, H, W), got shape {tuple(x.shape)}")
    if x.shape[1] != in_chans:
        raise ValueError(f"expected {in_chans} input channels (B, {in_chans}, H, W), "
                         f"got {x.shape[1]} (shape {tuple(x.shape)})")


torch.fx.wrap("check_image_batch")


def is_empty_batch(x: torch.Tensor) -> bool:
    """Batch 0, in eager mode. A torch.fx trace (x a Proxy) records the non-empty path: its graph has no branch."""
    return not isinstance(x, torch.fx.Proxy) and x.dim() == 4 and x.shape[0] == 0


def _linspace(stop: float, n: int) -> list[float]:
    """Stochastic-depth rates 0..stop over n blocks (plain Python, so models can be built on the meta device)."""
    return [stop * i / (n - 1) if n > 1 else 0.0 for i in range(n)]


def _mixer_options(mixer: str) -> set[str]:
    cls = {"masa": MaSADecomposed, "retention": RetentionMixer, "swat": SwatMixer}[mixer]
    names: set[str] = set()
    for c in (cls, AxialMixer) + ((MaSA2d,) if mixer == "masa" else ()):
        names |= set(inspect.signature(c.__init__).parameters)
    return names - {"self", "dim", "num_heads", "window_size", "shift", "decay_a", "decay_b", "kw", "unused"}


class Block(nn.Module):
    """x += CPE(x); x += drop_path(ls(mixer(norm(x)))); x += drop_path(ls(ffn(norm(x))))."""

    def __init__(self, dim: int, mixer: nn.Module, mlp_ratio: float, drop_path: float = 0.0,
                 layerscale: float | None = None):
        super().__init__()
        self.cpe = DWConv(dim, 3)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.mixer = mixer
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.ffn = ConvFFN(dim, int(dim * mlp_ratio))
        self.ls1 = LayerScale(dim, layerscale) if layerscale else nn.Identity()
        self.ls2 = LayerScale(dim, layerscale) if layerscale else nn.Identity()
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cpe(x, x)
        x = x + self.drop_path(self.ls1(self.mixer(self.norm1(x))))
        return x + self.drop_path(self.ls2(self.ffn(self.norm2(x))))


class Stage(nn.Module):
    def __init__(self, downsample: nn.Module, blocks: list[nn.Module]):
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.ModuleList(blocks)
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        for blk in self.blocks:
            if self.grad_checkpointing and x.requires_grad and torch.is_grad_enabled():
                x = checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        return x


class BackboneAPI(nn.Module):
    """The timm model contract over `stem`, `stages` (NHWC), `norm` and a classifier head.

    Subclasses set `self.stem`, `self.stages`, `self.norm`, `self.num_features`, `self.head_hidden_size`,
    `self.feature_info`, and implement `forward_head` / `reset_classifier`.
    """

    in_chans: int
    global_pool: str = "avg"

    def check_input(self, x: torch.Tensor) -> None:
        check_image_batch(x, self.in_chans)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for s in self.stages:
            s.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def _on_empty_batch(self, fn: Any, x: torch.Tensor) -> Any:
        """An empty batch gets empty results of the right shapes (the window reshapes and the C++ kernels cannot take
        batch 0): `fn` runs on one zero image in eval mode (no BatchNorm statistics move) and every output keeps 0
        rows, still attached to the graph. Non-empty batches never come here."""
        was = self.training
        self.eval()
        try:
            out = fn(x.new_zeros((1, *x.shape[1:])) + x.sum())  # x.sum() is 0 and keeps x in the graph
        finally:
            self.train(was)
        return torch.utils._pytree.tree_map(lambda t: t[:0] if isinstance(t, torch.Tensor) else t, out)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled last-stage features, NCHW (B, num_features, H/32, W/32)."""
        self.check_input(x)
        if is_empty_batch(x):
            return self._on_empty_batch(self.forward_features, x)
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.norm(x).permute(0, 3, 1, 2)

    def _stage_indices(self, indices: int | Sequence[int] | None) -> list[int]:
        """timm's convention: None = all stages, an int n = the last n, else explicit (negative) stage indices."""
        n = len(self.stages)
        if indices is None:
            return list(range(n))
        if isinstance(indices, int):
            if not 1 <= indices <= n:
                raise ValueError(f"take the last 1..{n} stages, got {indices}")
            return list(range(n - indices, n))
        if not indices or any(not -n <= i < n for i in indices):
            raise ValueError(f"stage indices must be in [-{n}, {n}), got {tuple(indices)}")
        return sorted({i % n for i in indices})

    def forward_intermediates(self, x: torch.Tensor, indices: int | Sequence[int] | None = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW", intermediates_only: bool = False):
        """timm's API: stage outputs at `indices` (an int n means the last n stages), plus the final features."""
        check_choice("output_fmt", output_fmt, ("NCHW", "NHWC"))
        self.check_input(x)
        if is_empty_batch(x):
            return self._on_empty_batch(lambda z: self.forward_intermediates(
                z, indices, norm=norm, stop_early=stop_early, output_fmt=output_fmt,
                intermediates_only=intermediates_only), x)
        take, n = self._stage_indices(indices), len(self.stages)
        outs = []
        x = self.stem(x)
        last = max(take) if stop_early else n - 1
        for i, stage in enumerate(self.stages[: last + 1]):
            x = stage(x)
            if i in take:
                y = self.norm(x) if (norm and i == n - 1) else x
                outs.append(y.permute(0, 3, 1, 2) if output_fmt == "NCHW" else y)
        if intermediates_only:
            return outs
        return self.norm(x).permute(0, 3, 1, 2), outs

    def prune_intermediate_layers(self, indices: int | Sequence[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """timm's API: drop the stages after the last wanted one (and the head / final norm); returns the indices."""
        take = self._stage_indices(indices)
        self.stages = self.stages[: max(take) + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            for name in ("head_proj", "head_norm", "head_drop", "head"):
                if hasattr(self, name):
                    setattr(self, name, nn.Identity())
        return take

    def save_pretrained(self, save_directory: str, *, overwrite: bool = False, **metadata: Any):
        """Write `config.json` + `model.safetensors` (Hugging Face Hub layout); see `swinrmt.hub.save_pretrained`."""
        from ..hub import save_pretrained

        return save_pretrained(self, save_directory, overwrite=overwrite, **metadata)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if is_empty_batch(x):
            self.check_input(x)
            return self._on_empty_batch(self.forward, x)
        return self.forward_head(self.forward_features(x))


class RMTBackbone(BackboneAPI):
    """RMT macro with a pluggable mixer. `mixer_options` reach every mixer (e.g. gate="headwise", norm="rowsum").

    `device=` / `dtype=` (timm's factory arguments, see `factory_kwargs`) place every parameter and buffer.
    """

    @factory_kwargs
    def __init__(self, mixer: str = "masa", num_classes: int = 1000, img_size: int | Sequence[int] = 224,
                 in_chans: int = 3, embed_dims: Sequence[int] = (64, 128, 256, 512),
                 depths: Sequence[int] = (2, 2, 8, 2), num_heads: Sequence[int] = (4, 4, 8, 16),
                 mlp_ratios: float | Sequence[float] = 3.0, decompose: bool | Sequence[bool] = (True, True, False, False),
                 layerscale: float | None | Sequence[float | None] = None,
                 decay_a: float | Sequence[float] = 2.0, decay_b: float | Sequence[float] = (4, 4, 6, 6),
                 window_size: int | None = None, stem_stride: int | None = None, shift: bool = True,
                 drop_rate: float = 0.0, drop_path_rate: float = 0.1, head_dim: int = 1024,
                 global_pool: str = "avg", **mixer_options: Any):
        super().__init__()
        check_choice("mixer", mixer, MIXERS)
        check_choice("global_pool", global_pool, GLOBAL_POOLS)
        self.global_pool = global_pool
        unknown = set(mixer_options) - _mixer_options(mixer)
        if unknown:
            raise TypeError(f"unknown option(s) {sorted(unknown)} for mixer {mixer!r}; "
                            f"accepted: {sorted(_mixer_options(mixer))}")
        auto_stride, auto_window = default_geometry(img_size)
        self.stem_stride = auto_stride if stem_stride is None else stem_stride
        self.window_size = auto_window if window_size is None else window_size
        if self.window_size < 1:
            raise ValueError(f"window_size must be >= 1, got {self.window_size}")
        self.mixer_type, self.num_classes, self.in_chans = mixer, num_classes, in_chans
        dims, depths, heads = _per_stage(embed_dims, "embed_dims"), _per_stage(depths, "depths"), _per_stage(
            num_heads, "num_heads")
        ratios, dec = _per_stage(mlp_ratios, "mlp_ratios"), _per_stage(decompose, "decompose")
        ls, da, db = _per_stage(layerscale, "layerscale"), _per_stage(decay_a, "decay_a"), _per_stage(decay_b, "decay_b")
        dpr = _linspace(drop_path_rate, sum(depths))

        self.stem = ConvStem(in_chans, dims[0], self.stem_stride)
        self.stages = nn.ModuleList()
        self.feature_info = []
        reduction, k = self.stem_stride, 0
        for i in range(4):
            down = nn.Identity() if i == 0 else ConvDownsample(dims[i - 1], dims[i])
            reduction *= 1 if i == 0 else 2
            blocks = []
            for j in range(depths[i]):
                m = self._make_mixer(mixer, dims[i], heads[i], dec[i], da[i], db[i], shift and j % 2 == 1,
                                     mixer_options)
                blocks.append(Block(dims[i], m, ratios[i], dpr[k], ls[i]))
                k += 1
            self.stages.append(Stage(down, blocks))
            self.feature_info.append({"num_chs": dims[i], "reduction": reduction, "module": f"stages.{i}"})
        self.norm = nn.Identity()
        self.num_features = dims[-1]
        self.head_hidden_size = head_dim
        # RMT's head: Linear -> BN -> Swish per position, then global average pool, then the classifier.
        self.head_proj = Linear(dims[-1], head_dim)
        self.head_norm = nn.BatchNorm2d(head_dim)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = Linear(head_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(_init_weights)

    def _make_mixer(self, mixer, dim, heads, decompose, a, b, shift, options) -> nn.Module:
        if mixer == "masa":
            opts = {k: v for k, v in options.items() if k in ("rotary", "lce", "qkv_bias", "use_sdpa",
                                                                 "learnable_decay", "qk_norm")}
            if decompose:
                return MaSADecomposed(dim, heads, decay_a=a, decay_b=b, **opts)
            opts.pop("use_sdpa", None)
            if opts.pop("learnable_decay", False):
                raise ValueError("learnable_decay is not supported by RMT's full 2-D MaSA stages")
            return MaSA2d(dim, heads, decay_a=a, decay_b=b, **opts)
        if not decompose and mixer == "swat":
            raise ValueError("decompose=False (2-D attention inside the window) is an option of the Retention mixer "
                             "only; SWAT's passes are 1-D")
        cls = SwatMixer if mixer == "swat" else RetentionMixer if decompose else Retention2dMixer
        return cls(dim, heads, window_size=self.window_size, shift=shift, decay_a=a, decay_b=b, **options)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool is not None:
            check_choice("global_pool", global_pool, GLOBAL_POOLS)
            self.global_pool = global_pool
        self.num_classes = num_classes
        # the new head joins the model where it is: same device, dtype and train / eval mode
        self.head = (Linear(self.head_hidden_size, num_classes, **_like(self)) if num_classes > 0
                     else nn.Identity()).train(self.training)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """NCHW features -> logits (or the pooled `head_hidden_size` vector with pre_logits=True).

        With `global_pool=""` nothing is pooled: (B, head_hidden_size, H, W), or per-position logits (B, classes, H, W).
        """
        x = self.head_proj(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        x = F.silu(self.head_norm(x))
        if not self.global_pool:
            x = self.head_drop(x)
            return x if pre_logits else self.head(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        x = self.head_drop(x.mean(dim=(2, 3)))
        return x if pre_logits else self.head(x)


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
