"""swinrmt: Gated-SwinRMT and its RMT / Swin baselines under one protocol."""
from .registry import create_model, list_models, register_model
from .hub import from_pretrained

__version__ = "0.1.0"

__all__ = ["create_model", "from_pretrained", "list_models", "register_model", "__version__"]
