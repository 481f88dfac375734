"""The model math: decay, windows, rotary codes, gates, convs, the FFN and the token mixers.

Operations with faster routes than plain PyTorch call `swinrmt.kernels`, which is imported first, so that the two
packages load in one order whichever module a user imports.
"""
from .. import kernels  # noqa: F401
