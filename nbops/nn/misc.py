"""Dropout, Flatten and Embedding. Mirrors :mod:`torch.nn.modules.dropout`, ``flatten`` and ``sparse``."""

import nbops as F  # nbops' top level mirrors torch.nn.functional

from . import _tensors, init
from .module import Module, Parameter

__all__ = ["Dropout", "Dropout1d", "Dropout2d", "AlphaDropout", "Flatten", "Embedding"]


class Dropout(Module):
    """Zeroes each element with probability ``p`` and scales the survivors by ``1 / (1 - p)`` in training mode; the
    identity in eval mode. Mirrors :class:`torch.nn.Dropout`; masks come from nbops' seeded generator.

    Args: p=0.5, inplace=False.
    """

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if p < 0 or p > 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.inplace = inplace

    def forward(self, input):
        return F.dropout(input, self.p, self.training, self.inplace)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class _DropoutNd(Module):
    _fn = None

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if p < 0 or p > 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.inplace = inplace

    def forward(self, input):
        return getattr(F, self._fn)(input, self.p, self.training, self.inplace)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class Dropout1d(_DropoutNd):
    """Zeroes whole channels of ``(N, C, L)`` or ``(C, L)`` with probability ``p`` in training mode.
    Mirrors :class:`torch.nn.Dropout1d`."""

    _fn = "dropout1d"


class Dropout2d(_DropoutNd):
    """Zeroes whole channels of ``(N, C, H, W)`` or ``(C, H, W)`` with probability ``p`` in training mode.
    Mirrors :class:`torch.nn.Dropout2d`."""

    _fn = "dropout2d"


class AlphaDropout(_DropoutNd):
    """Dropout that keeps a SELU network's mean and variance (dropped values set to SELU's negative saturation, then
    an affine correction). Mirrors :class:`torch.nn.AlphaDropout`."""

    _fn = "alpha_dropout"


class Flatten(Module):
    """Flattens dims ``start_dim`` .. ``end_dim`` into one. Mirrors :class:`torch.nn.Flatten` (start_dim=1)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, input):
        return F.flatten(input, self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Embedding(Module):
    """A lookup table of ``num_embeddings`` vectors of size ``embedding_dim``, indexed by integer arrays.
    Mirrors :class:`torch.nn.Embedding`.

    Args:
        num_embeddings, embedding_dim: the table's shape.
        padding_idx: this row is initialised to zeros (negative counts from the end). Default: None.
        max_norm, norm_type: rows looked up are renormalised in place to at most ``max_norm`` (``norm_type``-norm).
        scale_grad_by_freq, sparse: accepted for torch compatibility (they only affect gradients).
        _weight: an initial weight array of shape ``(num_embeddings, embedding_dim)`` instead of N(0, 1) draws.

    >>> import numpy as np, nbops.nn as nn
    >>> emb = nn.Embedding(10, 3, padding_idx=0)
    >>> emb(np.array([[0, 2, 0, 5]]))[0, 0]
    array([0., 0., 0.], dtype=float32)
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None, norm_type=2.0,
                 scale_grad_by_freq=False, sparse=False, _weight=None, _freeze=False, device=None, dtype=None):
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        if padding_idx is not None:
            if padding_idx > 0:
                if padding_idx >= num_embeddings:
                    raise ValueError("Padding_idx must be within num_embeddings")
            elif padding_idx < 0:
                if padding_idx < -num_embeddings:
                    raise ValueError("Padding_idx must be within num_embeddings")
                padding_idx = num_embeddings + padding_idx
        self.padding_idx = padding_idx
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.scale_grad_by_freq = scale_grad_by_freq
        self.sparse = sparse
        if _weight is None:
            self.weight = Parameter(_tensors.new((num_embeddings, embedding_dim), dtype))
            self.reset_parameters()
        else:
            if _tensors.shape_of(_weight) != (num_embeddings, embedding_dim):
                raise ValueError("Shape of weight does not match num_embeddings and embedding_dim")
            self.weight = Parameter(_weight)
        _tensors.place(self, device)

    def reset_parameters(self):
        init.normal_(self.weight)
        if self.padding_idx is not None:
            row = self.weight[self.padding_idx]
            init.zeros_(row)

    def forward(self, input):
        return F.embedding(input, self.weight, self.padding_idx, self.max_norm, self.norm_type,
                           self.scale_grad_by_freq, self.sparse)

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        if self.max_norm is not None:
            s += f", max_norm={self.max_norm}"
        if self.norm_type != 2:
            s += f", norm_type={self.norm_type}"
        if self.scale_grad_by_freq is not False:
            s += f", scale_grad_by_freq={self.scale_grad_by_freq}"
        if self.sparse is not False:
            s += ", sparse=True"
        return s

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, padding_idx=None, max_norm=None, norm_type=2.0,
                        scale_grad_by_freq=False, sparse=False):
        """An Embedding whose weight is ``embeddings`` (2-D, any array kind; a CPU torch tensor is copied).
        Mirrors :meth:`torch.nn.Embedding.from_pretrained` (``freeze`` is accepted and has no effect without
        autograd)."""
        if len(embeddings.shape) != 2:
            raise ValueError("Embeddings parameter is expected to be 2-dimensional")
        rows, cols = _tensors.shape_of(embeddings)
        return cls(rows, cols, _weight=embeddings, _freeze=freeze, padding_idx=padding_idx, max_norm=max_norm,
                   norm_type=norm_type, scale_grad_by_freq=scale_grad_by_freq, sparse=sparse)
