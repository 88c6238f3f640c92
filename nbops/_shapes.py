"""Shape arithmetic shared by the public ops: argument tuples, dims, broadcasting, conv/pool output sizes.

Every function takes the op's name first so that its errors name the op and the argument, as torch's do.
"""

import numbers

import numpy as np


def ntuple(op, name, value, n, minimum=None):
    """``value`` (an int or a sequence of ``n`` ints) as a tuple of ``n`` Python ints.

    Raises TypeError for non-integers, ValueError for the wrong length or a value below ``minimum``.
    """
    if isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, bool):
        out = (int(value),) * n
    else:
        try:
            out = tuple(value)
        except TypeError:
            raise TypeError(f"{op}(): argument '{name}' must be an int or a tuple of {n} ints, got {value!r}") from None
        if len(out) == 1:
            out = out * n
        if len(out) != n or not all(isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, bool)
                                    for v in out):
            raise ValueError(f"{op}(): argument '{name}' must be an int or a tuple of {n} ints, got {value!r}")
        out = tuple(int(v) for v in out)
    if minimum is not None and any(v < minimum for v in out):
        raise ValueError(f"{op}(): argument '{name}' must be >= {minimum}, got {value!r}")
    return out


def plain_ints(value, n, minimum):
    """``value`` as a tuple of ``n`` Python ints, each >= ``minimum``, when it is a Python int or a tuple or list of
    exactly ``n`` of them; else None. The ops' fast paths take only these (no bools, NumPy ints or one-element
    sequences, no value the general path would refuse): anything else goes to their general path, which parses it
    and raises its errors."""
    if type(value) is int:
        return (value,) * n if value >= minimum else None
    if type(value) in (tuple, list) and len(value) == n and all(type(v) is int and v >= minimum for v in value):
        return tuple(value)
    return None


def single(op, name, value):
    return ntuple(op, name, value, 1)


def pair(op, name, value):
    return ntuple(op, name, value, 2)


def normalize_dim(op, dim, ndim, name="dim"):
    """``dim`` in ``[-ndim, ndim)`` mapped to ``[0, ndim)``; a 0-d array accepts -1 and 0, as torch does."""
    if type(dim) is not int and (not isinstance(dim, (numbers.Integral, np.integer)) or isinstance(dim, bool)):
        raise TypeError(f"{op}(): argument '{name}' must be an int, got {dim!r}")
    rank = max(ndim, 1)
    if not -rank <= dim < rank:
        raise IndexError(
            f"{op}(): Dimension out of range (expected to be in range of [{-rank}, {rank - 1}], but got {dim})"
        )
    return int(dim) % rank


def normalize_dims(op, dims, ndim, name="dim"):
    """A tuple of distinct normalised dims from an int or a sequence of ints (None stays None)."""
    if dims is None:
        return None
    if isinstance(dims, (numbers.Integral, np.integer)):
        dims = (dims,)
    out = tuple(normalize_dim(op, d, ndim, name) for d in dims)
    if len(set(out)) != len(out):
        raise ValueError(f"{op}(): dim {out} appears multiple times in the list of dims")
    return out


def broadcast_shapes(op, *shapes):
    """The broadcast shape of ``shapes`` under NumPy/torch rules, or a ValueError naming the op and the shapes."""
    if shapes and all(s == shapes[0] for s in shapes):  # equal shapes: the common call, without the walk
        return tuple(shapes[0])
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(-ndim, 0):
        size = 1
        for s in shapes:
            if len(s) >= -axis:
                d = s[axis]
                if d != 1:
                    if size != 1 and d != size:
                        raise ValueError(
                            f"{op}(): shapes {' and '.join(str(tuple(s)) for s in shapes)} cannot be broadcast "
                            f"(size {size} vs {d} at dimension {axis})"
                        )
                    size = d
        out.append(size)
    return tuple(out)


def conv_out_size(size, kernel, stride, padding, dilation):
    """Output length of a convolution along one axis (padding on both sides)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_transpose_out_size(size, kernel, stride, padding, dilation, output_padding):
    """Output length of a transposed convolution along one axis."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def pool_out_size(size, kernel, stride, padding, dilation, ceil_mode):
    """Output length of a pooling window along one axis, with torch's ceil_mode rule: the last window must start
    inside the input or the left padding, never in the right padding."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out
