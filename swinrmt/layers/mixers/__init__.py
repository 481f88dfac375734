"""Token mixers: each maps (B, H, W, C) -> (B, H, W, C) for any H, W."""
from .axial import AxialMixer, axial_window_attention
from .masa import MaSA2d, MaSADecomposed
from .retention import Retention2dMixer, RetentionMixer
from .swat import SwatMixer
from .window_msa import WindowMSA

__all__ = ["AxialMixer", "axial_window_attention", "MaSA2d", "MaSADecomposed", "Retention2dMixer", "RetentionMixer", "SwatMixer",
           "WindowMSA"]
