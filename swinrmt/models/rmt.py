"""RMT sizes (CVPR 2024) and the `rmt_*` baseline registrations.

The sizes are shared with the gated families (gated_swinrmt.py) so the three RMT-macro families differ only in the
mixer. tiny/small/base follow RMT-T/S/B; `nano` is a ~2.5 M CPU-scale model; `paper` is the ~78 M size the paper
compares at (dims and depths are ours: the paper's layout is unknown).
"""
from __future__ import annotations

from typing import Any

from ..registry import register_model
from .backbone import RMTBackbone

# Which stages decompose (width-then-height) in RMT; the gated families window every stage instead.
RMT_SIZES: dict[str, dict[str, Any]] = {
    "nano": dict(embed_dims=(32, 64, 128, 256), depths=(2, 2, 4, 2), num_heads=(2, 2, 4, 8), mlp_ratios=3.0,
                 decompose=(True, True, False, False), decay_b=(4, 4, 6, 6), drop_path_rate=0.05, head_dim=512),
    "tiny": dict(embed_dims=(64, 128, 256, 512), depths=(2, 2, 8, 2), num_heads=(4, 4, 8, 16), mlp_ratios=3.0,
                 decompose=(True, True, False, False), decay_b=(4, 4, 6, 6), drop_path_rate=0.1),
    "small": dict(embed_dims=(64, 128, 256, 512), depths=(3, 4, 18, 4), num_heads=(4, 4, 8, 16),
                  mlp_ratios=(4, 4, 3, 3), decompose=(True, True, True, False), decay_b=(4, 4, 6, 6),
                  drop_path_rate=0.15),
    "base": dict(embed_dims=(80, 160, 320, 512), depths=(4, 8, 25, 8), num_heads=(5, 5, 10, 16),
                 mlp_ratios=(4, 4, 3, 3), decompose=(True, True, True, False), decay_b=(5, 5, 6, 6),
                 layerscale=(None, None, 1e-6, 1e-6), drop_path_rate=0.4),
    "paper": dict(embed_dims=(112, 224, 448, 640), depths=(4, 8, 18, 6), num_heads=(7, 7, 14, 20),
                  mlp_ratios=(4, 4, 3, 3), decompose=(True, True, True, False), decay_b=(6, 6, 6, 6),
                  layerscale=(None, None, 1e-6, 1e-6), drop_path_rate=0.5),
}

SMALL_INPUT = {"num_classes": 100, "img_size": 64}
PAPER_INPUT = {"num_classes": 100, "img_size": 224}


def build(mixer: str, size: str, **kwargs: Any) -> RMTBackbone:
    """Size defaults first, user overrides last (so `depths=...` etc. can be changed per experiment)."""
    return RMTBackbone(mixer=mixer, **{**RMT_SIZES[size], **kwargs})


@register_model("rmt", **SMALL_INPUT)
def rmt_nano(**kwargs: Any) -> RMTBackbone:
    return build("masa", "nano", **kwargs)


@register_model("rmt")
def rmt_tiny(**kwargs: Any) -> RMTBackbone:
    return build("masa", "tiny", **kwargs)


@register_model("rmt")
def rmt_small(**kwargs: Any) -> RMTBackbone:
    return build("masa", "small", **kwargs)


@register_model("rmt")
def rmt_base(**kwargs: Any) -> RMTBackbone:
    return build("masa", "base", **kwargs)


@register_model("rmt", **PAPER_INPUT)
def rmt_paper(**kwargs: Any) -> RMTBackbone:
    return build("masa", "paper", **kwargs)
