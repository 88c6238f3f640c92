"""Linear layers. Mirrors :mod:`torch.nn.modules.linear`."""

import math

import nbops as F  # nbops' top level mirrors torch.nn.functional

from . import _tensors, init
from .module import Module, Parameter

__all__ = ["Identity", "Linear"]


class Identity(Module):
    """Returns its input unchanged; takes and ignores any constructor arguments. Mirrors :class:`torch.nn.Identity`.
    """

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Linear(Module):
    """Applies ``y = x W^T + b``. Mirrors :class:`torch.nn.Linear`.

    Args:
        in_features: size of each input sample.
        out_features: size of each output sample.
        bias: learn an additive bias. Default: True.
        device: 'cpu' or 'cuda' for the parameters. Default: cpu.
        dtype: parameter dtype. Default: float32.

    Attributes:
        weight: ``(out_features, in_features)``, drawn from U(-1/sqrt(in_features), 1/sqrt(in_features)) (torch's
            kaiming_uniform with a = sqrt(5)).
        bias: ``(out_features,)``, drawn from the same range, or None.

    Shape: input ``(*, in_features)``, output ``(*, out_features)``.

    >>> import numpy as np, nbops.nn as nn
    >>> nn.Linear(20, 30)(np.ones((128, 20), np.float32)).shape
    (128, 30)
    """

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(_tensors.new((out_features, in_features), dtype))
        if bias:
            self.bias = Parameter(_tensors.new((out_features,), dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()
        _tensors.place(self, device)

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
