"""Convolution layers. Mirrors :mod:`torch.nn.modules.conv` (zero padding only)."""

import math

import nbops as F  # nbops' top level mirrors torch.nn.functional

from . import _tensors, init
from .module import Module, Parameter

__all__ = ["Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d"]


class _ConvNd(Module):
    _dims = 2
    _transposed = False

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode,
                 output_padding, device, dtype):
        super().__init__()
        name = type(self).__name__
        tup = lambda v: _tensors.ntuple(v, self._dims)  # noqa: E731
        if not isinstance(groups, int) or groups <= 0:
            raise ValueError("groups must be a positive integer")
        if in_channels % groups != 0:
            raise ValueError("in_channels must be divisible by groups")
        if out_channels % groups != 0:
            raise ValueError("out_channels must be divisible by groups")
        if isinstance(padding, str):
            if self._transposed:
                raise ValueError(f'padding="{padding}" is not supported by {name}')
            if padding not in ("same", "valid"):
                raise ValueError(f"Invalid padding string {padding!r}, should be one of {{'valid', 'same'}}")
            if padding == "same" and any(s != 1 for s in tup(stride)):
                raise ValueError("padding='same' is not supported for strided convolutions")
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ValueError(
                f"padding_mode must be one of ['zeros', 'reflect', 'replicate', 'circular'], but got "
                f"padding_mode='{padding_mode}'"
            )
        if padding_mode != "zeros":
            raise NotImplementedError(f"{name}: padding_mode={padding_mode!r} is not supported by nbops (only 'zeros')")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = tup(kernel_size)
        self.stride = tup(stride)
        self.padding = padding if isinstance(padding, str) else tup(padding)
        self.dilation = tup(dilation)
        self.transposed = self._transposed
        self.output_padding = tup(output_padding)
        self.groups = groups
        self.padding_mode = padding_mode
        if self._transposed:
            shape = (in_channels, out_channels // groups) + self.kernel_size
        else:
            shape = (out_channels, in_channels // groups) + self.kernel_size
        self.weight = Parameter(_tensors.new(shape, dtype))
        if bias:
            self.bias = Parameter(_tensors.new((out_channels,), dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()
        _tensors.place(self, device)

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            if fan_in != 0:
                bound = 1 / math.sqrt(fan_in)
                init.uniform_(self.bias, -bound, bound)

    def extra_repr(self):
        n = self._dims
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * n:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * n:
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * n:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class Conv1d(_ConvNd):
    """1-D convolution over an input of shape ``(N, C_in, L)`` or ``(C_in, L)``. Mirrors :class:`torch.nn.Conv1d`.

    Args: in_channels, out_channels, kernel_size, stride=1, padding=0 (int, tuple, 'same' or 'valid'), dilation=1,
    groups=1, bias=True, padding_mode='zeros' (the only mode nbops supports), device=None, dtype=None.
    Weight ``(C_out, C_in / groups, K)`` and bias ``(C_out,)`` drawn as torch does (kaiming-uniform, a = sqrt(5)).
    """

    _dims = 1

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, 0, device, dtype)

    def forward(self, input):
        return F.conv1d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class Conv2d(_ConvNd):
    """2-D convolution over an input of shape ``(N, C_in, H, W)`` or ``(C_in, H, W)``.
    Mirrors :class:`torch.nn.Conv2d`.

    Args: in_channels, out_channels, kernel_size, stride=1, padding=0 (int, tuple, 'same' or 'valid'), dilation=1,
    groups=1, bias=True, padding_mode='zeros' (the only mode nbops supports), device=None, dtype=None.
    Weight ``(C_out, C_in / groups, kH, kW)`` and bias ``(C_out,)`` drawn as torch does (kaiming-uniform,
    a = sqrt(5)).

    >>> import numpy as np, nbops.nn as nn
    >>> m = nn.Conv2d(16, 33, (3, 5), stride=(2, 1), padding=(4, 2), dilation=(3, 1))
    >>> m
    Conv2d(16, 33, kernel_size=(3, 5), stride=(2, 1), padding=(4, 2), dilation=(3, 1))
    >>> m(np.zeros((2, 16, 10, 20), np.float32)).shape
    (2, 33, 6, 20)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, 0, device, dtype)

    def forward(self, input):
        return F.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class _ConvTransposeNd(_ConvNd):
    _transposed = True

    def _output_padding(self, input, output_size):
        """The output_padding that makes the output ``output_size`` (torch's rule for ``forward(input,
        output_size)``); ``self.output_padding`` when ``output_size`` is None."""
        if output_size is None:
            return self.output_padding
        n = self._dims
        name = type(self).__name__
        shape = tuple(int(s) for s in input.shape)
        lead = 2 if len(shape) == n + 2 else 1
        output_size = [int(s) for s in output_size]
        if len(output_size) == lead + n:
            output_size = output_size[lead:]
        if len(output_size) != n:
            raise ValueError(
                f"{name}: for {len(shape)}D input, output_size must have {n} or {lead + n} elements "
                f"(got {len(output_size)})"
            )
        spatial = shape[lead:]
        if len(spatial) != n:
            raise ValueError(f"{name}: expected a {n + 1}D or {n + 2}D input, got shape {shape}")
        lo = [
            (spatial[d] - 1) * self.stride[d] - 2 * self.padding[d] + self.dilation[d] * (self.kernel_size[d] - 1) + 1
            for d in range(n)
        ]
        hi = [lo[d] + self.stride[d] - 1 for d in range(n)]
        for d in range(n):
            if not lo[d] <= output_size[d] <= hi[d]:
                raise ValueError(
                    f"requested an output size of {output_size}, but valid sizes range from {lo} to {hi} "
                    f"(for an input of {list(spatial)})"
                )
        return tuple(output_size[d] - lo[d] for d in range(n))


class ConvTranspose1d(_ConvTransposeNd):
    """1-D transposed convolution. Mirrors :class:`torch.nn.ConvTranspose1d`; ``forward(input, output_size=None)``.

    Args: in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1, bias=True,
    dilation=1, padding_mode='zeros', device=None, dtype=None. Weight ``(C_in, C_out / groups, K)``.
    """

    _dims = 1

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, output_padding, device, dtype)

    def forward(self, input, output_size=None):
        output_padding = self._output_padding(input, output_size)
        return F.conv_transpose1d(input, self.weight, self.bias, self.stride, self.padding, output_padding,
                                  self.groups, self.dilation)


class ConvTranspose2d(_ConvTransposeNd):
    """2-D transposed convolution. Mirrors :class:`torch.nn.ConvTranspose2d`; ``forward(input, output_size=None)``
    picks the output_padding that yields ``output_size`` (a shape with or without the batch/channel dims).

    Args: in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1, bias=True,
    dilation=1, padding_mode='zeros', device=None, dtype=None. Weight ``(C_in, C_out / groups, kH, kW)``.

    >>> import numpy as np, nbops.nn as nn
    >>> x = np.zeros((1, 16, 12, 12), np.float32)
    >>> h = nn.Conv2d(16, 16, 3, stride=2, padding=1)(x)
    >>> nn.ConvTranspose2d(16, 16, 3, stride=2, padding=1)(h, output_size=x.shape).shape
    (1, 16, 12, 12)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, output_padding, device, dtype)

    def forward(self, input, output_size=None):
        output_padding = self._output_padding(input, output_size)
        return F.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding, output_padding,
                                  self.groups, self.dilation)
