"""Normalisation layers. Mirrors :mod:`torch.nn.modules.batchnorm`, ``instancenorm`` and ``normalization``."""

import numbers
import warnings

import numpy as np

import nbops as F  # nbops' top level mirrors torch.nn.functional

from . import _tensors, init
from .module import Module, Parameter

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "LayerNorm",
    "GroupNorm",
    "RMSNorm",
    "SwitchNorm2d",
    "DyT",
]


def _register_affine(module, enabled, shape, dtype, bias):
    """Register ``module``'s affine ``weight`` and ``bias`` of ``shape`` (bias only when ``bias``), or both as None
    when not ``enabled``, as torch's norm layers do."""
    if enabled:
        module.weight = Parameter(_tensors.new(shape, dtype))
        if bias:
            module.bias = Parameter(_tensors.new(shape, dtype))
        else:
            module.register_parameter("bias", None)
    else:
        module.register_parameter("weight", None)
        module.register_parameter("bias", None)


def _reset_affine(module, enabled):
    """torch's affine initialisation: weight ones, bias (if any) zeros."""
    if enabled:
        init.ones_(module.weight)
        if module.bias is not None:
            init.zeros_(module.bias)


class _NormBase(Module):
    """Shared state of batch and instance norm: affine weight/bias and running statistics.

    ``num_batches_tracked`` is a host-side int64 counter (a 0-d NumPy array) even when the module lives on cuda: the
    host reads it to compute the cumulative-average momentum, so keeping it there avoids a device round trip.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, device=None,
                 dtype=None, *, bias=True):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        _register_affine(self, affine, (num_features,), dtype, bias)
        if track_running_stats:
            self.register_buffer("running_mean", _tensors.new((num_features,), dtype))
            self.register_buffer("running_var", _tensors.new((num_features,), dtype))
            self.register_buffer("num_batches_tracked", np.zeros((), np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()
        _tensors.place(self, device)

    def _keeps_on_host(self, name):
        return name == "num_batches_tracked"

    def reset_running_stats(self):
        if self.track_running_stats:
            init.zeros_(self.running_mean)
            init.ones_(self.running_var)
            self.num_batches_tracked[...] = 0

    def reset_parameters(self):
        self.reset_running_stats()
        _reset_affine(self, self.affine)

    def _load_from_state_dict(self, state_dict, prefix, strict, missing_keys, unexpected_keys, error_msgs, assign):
        key = prefix + "num_batches_tracked"
        if self.track_running_stats and key not in state_dict:
            # torch fills in a counter missing from an old (versionless) checkpoint rather than reporting it
            state_dict = dict(state_dict)
            state_dict[key] = np.array(self.num_batches_tracked)
        super()._load_from_state_dict(state_dict, prefix, strict, missing_keys, unexpected_keys, error_msgs, assign)

    def extra_repr(self):
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}"
        )


class _BatchNorm(_NormBase):
    def _check_input_dim(self, input):
        raise NotImplementedError

    def forward(self, input):
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            np.add(self.num_batches_tracked, 1, out=self.num_batches_tracked)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        return F.batch_norm(
            input,
            self.running_mean if track else None,
            self.running_var if track else None,
            self.weight,
            self.bias,
            use_batch_stats,
            factor,
            self.eps,
        )


class BatchNorm1d(_BatchNorm):
    """Batch normalisation over ``(N, C)`` or ``(N, C, L)``. Mirrors :class:`torch.nn.BatchNorm1d`.

    Args:
        num_features: C.
        eps: added to the variance. Default: 1e-5.
        momentum: running-stat update factor; None means a cumulative average (1 / num_batches_tracked).
            Default: 0.1.
        affine: learn weight (ones) and bias (zeros). Default: True.
        bias: (keyword) learn the bias when affine. Default: True.
        track_running_stats: keep running_mean (zeros), running_var (ones) and num_batches_tracked. Default: True.

    In training mode the batch statistics normalise and the running statistics are updated in place (unbiased
    variance); in eval mode the running statistics normalise.
    """

    def _check_input_dim(self, input):
        if len(input.shape) not in (2, 3):
            raise ValueError(f"expected 2D or 3D input (got {len(input.shape)}D input)")


class BatchNorm2d(_BatchNorm):
    """Batch normalisation over ``(N, C, H, W)``, per channel. Mirrors :class:`torch.nn.BatchNorm2d`.

    Same arguments and train/eval behaviour as :class:`BatchNorm1d`.

    >>> import numpy as np, nbops.nn as nn
    >>> m = nn.BatchNorm2d(3)
    >>> x = np.random.default_rng(0).standard_normal((4, 3, 5, 5)).astype(np.float32)
    >>> y = m(x)
    >>> int(m.num_batches_tracked), bool(np.abs(m.running_mean).max() > 0)
    (1, True)
    >>> _ = m.eval()
    >>> m.training
    False
    """

    def _check_input_dim(self, input):
        if len(input.shape) != 4:
            raise ValueError(f"expected 4D input (got {len(input.shape)}D input)")


class _InstanceNorm(_NormBase):
    _dims = 2

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=False, track_running_stats=False, device=None,
                 dtype=None, *, bias=True):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias=bias)

    def forward(self, input):
        nd = len(input.shape)
        if nd not in (self._dims + 1, self._dims + 2):
            raise ValueError(f"expected {self._dims + 1}D or {self._dims + 2}D input (got {nd}D input)")
        channels = int(input.shape[-self._dims - 1])
        if channels != self.num_features:
            if self.affine:
                raise ValueError(
                    f"expected input's size at dim={nd - self._dims - 1} to match num_features "
                    f"({self.num_features}), but got: {channels}."
                )
            warnings.warn(
                f"input's size at dim={nd - self._dims - 1} does not match num_features. You can silence this "
                "warning by not passing in num_features, which is not used because affine=False"
            )
        unbatched = nd == self._dims + 1
        if unbatched:
            input = F.unsqueeze(input, 0)
        out = F.instance_norm(
            input,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            self.training or not self.track_running_stats,
            self.momentum if self.momentum is not None else 0.0,
            self.eps,
        )
        return F.squeeze(out, 0) if unbatched else out


class InstanceNorm1d(_InstanceNorm):
    """Instance normalisation over ``(N, C, L)`` or ``(C, L)``: each sample's each channel normalised over L.
    Mirrors :class:`torch.nn.InstanceNorm1d` (affine and track_running_stats default to False)."""

    _dims = 1


class InstanceNorm2d(_InstanceNorm):
    """Instance normalisation over ``(N, C, H, W)`` or ``(C, H, W)``: each sample's each channel normalised over
    H, W. Mirrors :class:`torch.nn.InstanceNorm2d` (affine and track_running_stats default to False)."""

    _dims = 2


def _shape_tuple(normalized_shape):
    if isinstance(normalized_shape, numbers.Integral):
        return (int(normalized_shape),)
    return tuple(int(s) for s in normalized_shape)


class LayerNorm(Module):
    """Layer normalisation over the trailing ``normalized_shape`` dims. Mirrors :class:`torch.nn.LayerNorm`.

    Args:
        normalized_shape: int or tuple, the trailing shape to normalise over.
        eps: Default: 1e-5.
        elementwise_affine: learn weight (ones) of ``normalized_shape``. Default: True.
        bias: learn bias (zeros) too, when elementwise_affine. Default: True.
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, device=None, dtype=None):
        super().__init__()
        self.normalized_shape = _shape_tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        _register_affine(self, elementwise_affine, self.normalized_shape, dtype, bias)
        self.reset_parameters()
        _tensors.place(self, device)

    def reset_parameters(self):
        _reset_affine(self, self.elementwise_affine)

    def forward(self, input):
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (
            f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
            f"bias={self.bias is not None}"
        )


class GroupNorm(Module):
    """Group normalisation: channels split into ``num_groups`` groups, each normalised over (C/G, *).
    Mirrors :class:`torch.nn.GroupNorm`.

    Args: num_groups, num_channels, eps=1e-5, affine=True (weight ones and, unless ``bias=False``, bias zeros, of
    shape (C,)).
    """

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, device=None, dtype=None, *, bias=True):
        super().__init__()
        if num_channels % num_groups != 0:
            raise ValueError("num_channels must be divisible by num_groups")
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        _register_affine(self, affine, (num_channels,), dtype, bias)
        self.reset_parameters()
        _tensors.place(self, device)

    def reset_parameters(self):
        _reset_affine(self, self.affine)

    def forward(self, input):
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (
            f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
            f"bias={self.bias is not None}"
        )


class RMSNorm(Module):
    """Root-mean-square normalisation over the trailing ``normalized_shape`` dims: ``x / sqrt(mean(x^2) + eps) * g``.
    Mirrors :class:`torch.nn.RMSNorm`.

    Args: normalized_shape, eps=None (the dtype's machine epsilon), elementwise_affine=True (weight ones).
    """

    def __init__(self, normalized_shape, eps=None, elementwise_affine=True, device=None, dtype=None):
        super().__init__()
        self.normalized_shape = _shape_tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(_tensors.new(self.normalized_shape, dtype))
        else:
            self.register_parameter("weight", None)
        self.reset_parameters()
        _tensors.place(self, device)

    def reset_parameters(self):
        if self.elementwise_affine:
            init.ones_(self.weight)

    def forward(self, x):
        return F.rms_norm(x, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class SwitchNorm2d(Module):
    """Switchable normalisation over ``(N, C, H, W)`` (Luo et al. 2018, arXiv 1806.10779): the mean and variance
    used are softmax-weighted mixes of the instance-, layer- and batch-norm statistics, with learned mixing logits.
    Not in torch; follows the authors' reference module (parameter names and shapes included, so its checkpoints
    load directly) and computes with :func:`nbops.switch_norm`.

    Args:
        num_features: C.
        eps: Default: 1e-5.
        momentum: the authors' convention, ``running = momentum * running + (1 - momentum) * batch`` (so their
            0.9 is torch's 0.1). Default: 0.9.
        using_bn: mix in batch statistics (3 mixing logits, running stats kept) or not (2). Default: True.
        last_gamma: initialise weight to zeros instead of ones (for the last norm of a residual block).

    Attributes: weight, bias ``(1, C, 1, 1)``; mean_weight, var_weight ``(3,)`` (or ``(2,)``), ones;
    running_mean, running_var ``(1, C, 1)``, zeros.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.9, using_bn=True, last_gamma=False, device=None,
                 dtype=None):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.using_bn = using_bn
        self.last_gamma = last_gamma
        k = 3 if using_bn else 2
        self.weight = Parameter(_tensors.new((1, num_features, 1, 1), dtype))
        self.bias = Parameter(_tensors.new((1, num_features, 1, 1), dtype))
        self.mean_weight = Parameter(_tensors.new((k,), dtype))
        self.var_weight = Parameter(_tensors.new((k,), dtype))
        if using_bn:
            self.register_buffer("running_mean", _tensors.new((1, num_features, 1), dtype))
            self.register_buffer("running_var", _tensors.new((1, num_features, 1), dtype))
        self.reset_parameters()
        _tensors.place(self, device)

    def reset_parameters(self):
        if self.using_bn:
            init.zeros_(self.running_mean)
            init.zeros_(self.running_var)
        init.constant_(self.weight, 0.0 if self.last_gamma else 1.0)
        init.zeros_(self.bias)
        init.ones_(self.mean_weight)
        init.ones_(self.var_weight)

    def forward(self, x):
        if len(x.shape) != 4:
            raise ValueError(f"expected 4D input (got {len(x.shape)}D input)")
        C = self.num_features
        # (C,) views of the reference shapes: the running statistics are updated in place through them
        stats = (self.running_mean.reshape(C), self.running_var.reshape(C)) if self.using_bn else (None, None)
        return F.switch_norm(x, self.weight.reshape(C), self.bias.reshape(C), self.mean_weight, self.var_weight,
                             *stats, training=self.training, momentum=1.0 - self.momentum, eps=self.eps,
                             using_bn=self.using_bn)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, using_bn={self.using_bn}"


class DyT(Module):
    """Dynamic Tanh, ``weight * tanh(alpha * x) + bias`` over the last dim (Zhu et al. 2025, "Transformers without
    Normalization", arXiv 2503.10622): a drop-in replacement for LayerNorm. Not in torch; parameter names follow the
    authors' code.

    Args:
        num_features: C, the size of the last dim.
        alpha_init_value: initial value of the learned scalar ``alpha`` (shape (1,)). Default: 0.5.

    Attributes: alpha ``(1,)``; weight ``(C,)`` ones; bias ``(C,)`` zeros.
    """

    def __init__(self, num_features, alpha_init_value=0.5, device=None, dtype=None):
        super().__init__()
        self.num_features = num_features
        self.alpha_init_value = alpha_init_value
        self.alpha = Parameter(_tensors.new((1,), dtype))
        self.weight = Parameter(_tensors.new((num_features,), dtype))
        self.bias = Parameter(_tensors.new((num_features,), dtype))
        self.reset_parameters()
        _tensors.place(self, device)

    def reset_parameters(self):
        init.constant_(self.alpha, self.alpha_init_value)
        init.ones_(self.weight)
        init.zeros_(self.bias)

    def forward(self, x):
        return F.dyt(x, self.alpha, self.weight, self.bias)

    def extra_repr(self):
        return f"{self.num_features}, alpha_init_value={self.alpha_init_value}"
