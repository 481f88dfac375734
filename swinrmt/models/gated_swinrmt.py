"""Gated-SwinRMT registrations: the RMT macro and sizes with a windowed, shifted, gated axial mixer in every stage.

Every docs/design.md §7 option is a keyword of `create_model` (see the mixer classes): `window_size`, `shift`, `gate`,
`gate_input`, `lce`, `learnable_decay`, `rotary`, `norm` (SWAT: headnorm by default; Retention: none); SWAT adds
`alibi`, `sigmoid_bias`.
"""
from __future__ import annotations

from typing import Any

from ..registry import register_model
from .backbone import RMTBackbone
from .rmt import PAPER_INPUT, SMALL_INPUT, build


def _gated(mixer: str, size: str, **kwargs: Any) -> RMTBackbone:
    # Width-then-height passes in every stage; Retention takes decompose=False per stage for 2-D window attention.
    kwargs.setdefault("decompose", (True,) * 4)
    return build(mixer, size, **kwargs)


@register_model("gated_swinrmt_swat", **SMALL_INPUT)
def gated_swinrmt_swat_nano(**kwargs: Any) -> RMTBackbone:
    return _gated("swat", "nano", **kwargs)


@register_model("gated_swinrmt_swat")
def gated_swinrmt_swat_tiny(**kwargs: Any) -> RMTBackbone:
    return _gated("swat", "tiny", **kwargs)


@register_model("gated_swinrmt_swat")
def gated_swinrmt_swat_small(**kwargs: Any) -> RMTBackbone:
    return _gated("swat", "small", **kwargs)


@register_model("gated_swinrmt_swat")
def gated_swinrmt_swat_base(**kwargs: Any) -> RMTBackbone:
    return _gated("swat", "base", **kwargs)


@register_model("gated_swinrmt_swat", **PAPER_INPUT)
def gated_swinrmt_swat_paper(**kwargs: Any) -> RMTBackbone:
    return _gated("swat", "paper", **kwargs)


@register_model("gated_swinrmt_retention", **SMALL_INPUT)
def gated_swinrmt_retention_nano(**kwargs: Any) -> RMTBackbone:
    return _gated("retention", "nano", **kwargs)


@register_model("gated_swinrmt_retention")
def gated_swinrmt_retention_tiny(**kwargs: Any) -> RMTBackbone:
    return _gated("retention", "tiny", **kwargs)


@register_model("gated_swinrmt_retention")
def gated_swinrmt_retention_small(**kwargs: Any) -> RMTBackbone:
    return _gated("retention", "small", **kwargs)


@register_model("gated_swinrmt_retention")
def gated_swinrmt_retention_base(**kwargs: Any) -> RMTBackbone:
    return _gated("retention", "base", **kwargs)


@register_model("gated_swinrmt_retention", **PAPER_INPUT)
def gated_swinrmt_retention_paper(**kwargs: Any) -> RMTBackbone:
    return _gated("retention", "paper", **kwargs)
