"""CPU launchers of the shape family: strided copies (with dtype casts) and fills.

A copy is pure data movement, which NumPy's strided copy loops already do at memory speed; wrapping it in a numba
kernel would add a compile per rank and dtype pair for nothing.
"""

import numpy as np

from .._dispatch import register


@register("copy", "cpu")
def copy(out, x):
    """out[...] = x, any strides and any dtype pair (C-style cast); ``x`` broadcasts to ``out.shape``."""
    np.copyto(out, x, casting="unsafe")


@register("fill", "cpu")
def fill(out, value):
    out.fill(value)
