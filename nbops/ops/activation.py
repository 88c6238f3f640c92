"""Activation functions. Mirrors :mod:`torch.nn.functional`'s activations."""

from .._dispatch import FLOAT_DTYPES, Call, public


def _unary(op, input, inplace=False, **consts):
    """Shared path of the elementwise activations: validate, make contiguous, allocate, launch, wrap."""
    call = Call(op, input=input)
    call.check_dtype("input", FLOAT_DTYPES)
    x = call.contiguous(call["input"])
    out = x if inplace and x is call["input"] else call.empty(x.shape, x.dtype)
    if x.size:
        call.launch(op, out, x, **consts)
    if inplace and out is not call["input"]:
        call.launch("copy", call["input"], out)
        return input
    return call.wrap(out) if not inplace else input


@public("activation")
def relu(input, inplace=False):
    """Applies the rectified linear unit elementwise: ``max(0, x)``; NaN stays NaN.

    Mirrors :func:`torch.nn.functional.relu`.

    Args:
        input: array of any shape.
        inplace: write the result into ``input`` and return it. Default: False.

    Returns:
        array of ``input``'s shape and dtype; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64.

    >>> import numpy as np, nbops
    >>> nbops.relu(np.array([-1.0, 0.5], dtype=np.float32))
    array([0. , 0.5], dtype=float32)
    """
    return _unary("relu", input, inplace)
