"""Activation layers, softmax and log-softmax. Mirrors :mod:`torch.nn.modules.activation`.

Each module keeps torch's constructor arguments as attributes and calls the functional op of the same name.
"""

import warnings

import nbops as F  # nbops' top level mirrors torch.nn.functional

from . import _tensors, init
from .module import Module, Parameter

__all__ = [
    "ReLU",
    "ReLU6",
    "LeakyReLU",
    "ELU",
    "SELU",
    "CELU",
    "GELU",
    "SiLU",
    "Mish",
    "Sigmoid",
    "Tanh",
    "Hardtanh",
    "Hardsigmoid",
    "Hardswish",
    "Softplus",
    "Softsign",
    "GLU",
    "PReLU",
    "Softmax",
    "LogSoftmax",
]


def _inplace_repr(inplace):
    return "inplace=True" if inplace else ""


class _Inplace(Module):
    """An activation whose only option is ``inplace`` (write into the input)."""

    _fn = None

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        return getattr(F, self._fn)(input, inplace=self.inplace)

    def extra_repr(self):
        return _inplace_repr(self.inplace)


class ReLU(_Inplace):
    """``max(0, x)``. Mirrors :class:`torch.nn.ReLU`."""

    _fn = "relu"


class ReLU6(_Inplace):
    """``min(max(0, x), 6)``. Mirrors :class:`torch.nn.ReLU6`."""

    _fn = "relu6"


class SELU(_Inplace):
    """Scaled ELU with torch's fixed alpha and scale. Mirrors :class:`torch.nn.SELU`."""

    _fn = "selu"


class SiLU(_Inplace):
    """``x * sigmoid(x)``. Mirrors :class:`torch.nn.SiLU`."""

    _fn = "silu"


class Mish(_Inplace):
    """``x * tanh(softplus(x))``. Mirrors :class:`torch.nn.Mish`."""

    _fn = "mish"


class Hardsigmoid(_Inplace):
    """``relu6(x + 3) / 6``. Mirrors :class:`torch.nn.Hardsigmoid`."""

    _fn = "hardsigmoid"

    def extra_repr(self):
        return ""


class Hardswish(_Inplace):
    """``x * relu6(x + 3) / 6``. Mirrors :class:`torch.nn.Hardswish`."""

    _fn = "hardswish"

    def extra_repr(self):
        return ""


class LeakyReLU(Module):
    """``x`` for x >= 0, ``negative_slope * x`` otherwise. Mirrors :class:`torch.nn.LeakyReLU`."""

    def __init__(self, negative_slope=1e-2, inplace=False):
        super().__init__()
        self.negative_slope = negative_slope
        self.inplace = inplace

    def forward(self, input):
        return F.leaky_relu(input, self.negative_slope, self.inplace)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class ELU(Module):
    """``x`` for x > 0, ``alpha * (exp(x) - 1)`` otherwise. Mirrors :class:`torch.nn.ELU`."""

    def __init__(self, alpha=1.0, inplace=False):
        super().__init__()
        self.alpha = alpha
        self.inplace = inplace

    def forward(self, input):
        return F.elu(input, self.alpha, self.inplace)

    def extra_repr(self):
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class CELU(Module):
    """``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))``. Mirrors :class:`torch.nn.CELU`."""

    def __init__(self, alpha=1.0, inplace=False):
        super().__init__()
        self.alpha = alpha
        self.inplace = inplace

    def forward(self, input):
        return F.celu(input, self.alpha, self.inplace)

    def extra_repr(self):
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class GELU(Module):
    """Gaussian error linear unit, exact (``approximate='none'``) or the tanh approximation.
    Mirrors :class:`torch.nn.GELU`."""

    def __init__(self, approximate="none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, input):
        return F.gelu(input, approximate=self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class Sigmoid(Module):
    """``1 / (1 + exp(-x))``. Mirrors :class:`torch.nn.Sigmoid`."""

    def forward(self, input):
        return F.sigmoid(input)


class Tanh(Module):
    """Hyperbolic tangent. Mirrors :class:`torch.nn.Tanh`."""

    def forward(self, input):
        return F.tanh(input)


class Softsign(Module):
    """``x / (1 + |x|)``. Mirrors :class:`torch.nn.Softsign`."""

    def forward(self, input):
        return F.softsign(input)


class Hardtanh(Module):
    """Clamp to ``[min_val, max_val]``. Mirrors :class:`torch.nn.Hardtanh`."""

    def __init__(self, min_val=-1.0, max_val=1.0, inplace=False):
        super().__init__()
        if max_val <= min_val:
            raise ValueError(f"max_val ({max_val}) must be greater than min_val ({min_val})")
        self.min_val = min_val
        self.max_val = max_val
        self.inplace = inplace

    def forward(self, input):
        return F.hardtanh(input, self.min_val, self.max_val, self.inplace)

    def extra_repr(self):
        return f"min_val={self.min_val}, max_val={self.max_val}" + (", inplace=True" if self.inplace else "")


class Softplus(Module):
    """``log(1 + exp(beta * x)) / beta``, linear above ``threshold``. Mirrors :class:`torch.nn.Softplus`."""

    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        self.beta = beta
        self.threshold = threshold

    def forward(self, input):
        return F.softplus(input, self.beta, self.threshold)

    def extra_repr(self):
        return f"beta={self.beta}, threshold={self.threshold}"


class GLU(Module):
    """Gated linear unit: split ``dim`` in halves a, b and return ``a * sigmoid(b)``. Mirrors :class:`torch.nn.GLU`.
    """

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        return F.glu(input, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class PReLU(Module):
    """``max(0, x) + weight * min(0, x)`` with a learned slope per channel (or one shared).
    Mirrors :class:`torch.nn.PReLU`.

    Args: num_parameters=1 (1 or the number of channels), init=0.25, device=None, dtype=None.
    """

    def __init__(self, num_parameters=1, init=0.25, device=None, dtype=None):
        super().__init__()
        self.num_parameters = num_parameters
        self.init = init
        self.weight = Parameter(_tensors.new((num_parameters,), dtype))
        self.reset_parameters()
        _tensors.place(self, device)

    def reset_parameters(self):
        init.constant_(self.weight, self.init)

    def forward(self, input):
        return F.prelu(input, self.weight)

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"


def _softmax_dim(name, ndim):
    warnings.warn(
        f"Implicit dimension choice for {name} has been deprecated. Change the call to include dim=X as an argument.",
        stacklevel=3,
    )
    return 0 if ndim in (0, 1, 3) else 1


class Softmax(Module):
    """Softmax along ``dim``. Mirrors :class:`torch.nn.Softmax` (``dim=None`` picks torch's legacy default with its
    deprecation warning)."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        dim = self.dim if self.dim is not None else _softmax_dim("softmax", len(input.shape))
        return F.softmax(input, dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """``log(softmax(x))`` along ``dim``, computed stably. Mirrors :class:`torch.nn.LogSoftmax`."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        dim = self.dim if self.dim is not None else _softmax_dim("log_softmax", len(input.shape))
        return F.log_softmax(input, dim)

    def extra_repr(self):
        return f"dim={self.dim}"
