"""Inference helpers. Mirrors :mod:`torch.nn.utils.fusion`: fold an eval-mode BatchNorm into the convolution before it,
so that inference makes one pass over the data instead of two."""

import copy

import numpy as np

from . import _tensors
from .module import Parameter

__all__ = ["fuse_conv_bn_eval", "fuse_conv_bn_weights"]


def fuse_conv_bn_weights(conv_w, conv_b, bn_rm, bn_rv, bn_eps, bn_w, bn_b, transpose=False):
    """The weight and bias of a convolution that computes ``bn(conv(x))`` with the BatchNorm in eval mode.

    Mirrors :func:`torch.nn.utils.fusion.fuse_conv_bn_weights`. Per output channel c, with
    ``s = bn_w / sqrt(bn_rv + bn_eps)``: ``weight[c] = conv_w[c] * s[c]`` and ``bias[c] = (conv_b[c] - bn_rm[c]) *
    s[c] + bn_b[c]`` (``conv_b`` None means 0, ``bn_w`` None 1, ``bn_b`` None 0). The output channels are dim 1 of a
    transposed convolution's weight (``transpose=True``), dim 0 otherwise.

    The arithmetic runs on the host in float64; the results have ``conv_w``'s dtype and live where it lives.

    Returns:
        ``(weight, bias)`` arrays.
    """
    device = _tensors.device_of(conv_w)
    dtype = np.dtype(conv_w.dtype)
    w = _tensors.to_host(conv_w).astype(np.float64)
    rm = _tensors.to_host(bn_rm).astype(np.float64)
    rv = _tensors.to_host(bn_rv).astype(np.float64)
    channels = rm.shape[0]
    b = np.zeros(channels) if conv_b is None else _tensors.to_host(conv_b).astype(np.float64)
    gamma = np.ones(channels) if bn_w is None else _tensors.to_host(bn_w).astype(np.float64)
    beta = np.zeros(channels) if bn_b is None else _tensors.to_host(bn_b).astype(np.float64)
    scale = gamma / np.sqrt(rv + bn_eps)
    shape = [1] * w.ndim
    shape[1 if transpose else 0] = channels
    fused_w = w * scale.reshape(shape)
    fused_b = (b - rm) * scale + beta
    return _tensors.move(fused_w.astype(dtype), device), _tensors.move(fused_b.astype(dtype), device)


def fuse_conv_bn_eval(conv, bn, transpose=False):
    """A copy of ``conv`` that computes ``bn(conv(x))``, for eval-mode modules. Mirrors
    :func:`torch.nn.utils.fusion.fuse_conv_bn_eval`; ``bn`` must track running statistics.

    >>> import numpy as np, nbops.nn as nn
    >>> from nbops.nn.utils import fuse_conv_bn_eval
    >>> conv, bn = nn.Conv2d(3, 4, 3, bias=False).eval(), nn.BatchNorm2d(4).eval()
    >>> bn.running_mean[:] = 0.5
    >>> x = np.random.default_rng(0).standard_normal((1, 3, 6, 6)).astype(np.float32)
    >>> bool(np.allclose(fuse_conv_bn_eval(conv, bn)(x), bn(conv(x)), atol=1e-5))
    True
    """
    if conv.training or bn.training:
        raise ValueError("Fusion only for eval!")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("fuse_conv_bn_eval: the BatchNorm must track running statistics")
    shared = {id(p): p for p in conv._parameters.values() if p is not None}  # replaced below, never copied
    fused = copy.deepcopy(conv, shared)
    weight, bias = fuse_conv_bn_weights(fused.weight, fused.bias, bn.running_mean, bn.running_var, bn.eps,
                                        bn.weight, bn.bias, transpose)
    fused.weight = Parameter(weight)
    fused.bias = Parameter(bias)
    return fused
