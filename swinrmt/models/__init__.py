"""Model families. Importing this package registers every model."""
from . import gated_swinrmt, rmt, swin  # noqa: F401
from .backbone import BackboneAPI, RMTBackbone, default_geometry

__all__ = ["BackboneAPI", "RMTBackbone", "default_geometry"]
