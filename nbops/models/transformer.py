"""Transformer encoder layers written with nbops ops: multi-head self-attention from linear / matmul / softmax,
layer_norm, gelu or relu, dropout; plus the DeepNorm (DeepNet, arXiv 2203.00555) and DyT (arXiv 2503.10622)
variants.

:class:`MultiheadAttention` and :class:`TransformerEncoderLayer` mirror torch's classes: same constructor arguments,
attribute names and state_dict keys, so ``load_state_dict(torch_layer.state_dict())`` loads torch's weights.
"""

import math

import numpy as np

import nbops as F  # nbops' top level mirrors torch.nn.functional
from nbops.ops.linear import _attention, _linear_act

from .. import nn
from ..nn import _tensors, init
from ..nn.convert import convert, is_leaf, join_path, register_converter, unsupported

__all__ = [
    "MultiheadAttention",
    "TransformerEncoderLayer",
    "DeepNormEncoderLayer",
    "DyTEncoderLayer",
]


def _to_additive(mask, dtype, name):
    """A float mask to add to attention scores: a bool mask (True = not allowed) becomes 0 / -inf."""
    kind = _tensors.resolve_dtype(mask.dtype).kind
    if kind == "b":
        if isinstance(mask, np.ndarray):
            return np.where(mask, -np.inf, 0.0).astype(dtype)
        return F.where(mask, float("-inf"), 0.0)
    if kind != "f":
        raise TypeError(f"MultiheadAttention: {name} must be a bool or floating array, got {mask.dtype}")
    return mask


class MultiheadAttention(nn.Module):
    """Multi-head attention ``softmax(Q K^T / sqrt(d)) V`` over ``num_heads`` heads.
    Mirrors :class:`torch.nn.MultiheadAttention` (equal query/key/value embedding sizes, no bias_k/bias_v, no
    add_zero_attn).

    Args:
        embed_dim: E. num_heads: H (E % H == 0). dropout: on the attention weights in training. Default: 0.0.
        bias: in/out projection biases. Default: True.
        batch_first: inputs ``(N, L, E)`` instead of ``(L, N, E)``. Default: False.

    Attributes: in_proj_weight ``(3E, E)`` (xavier-uniform), in_proj_bias ``(3E,)`` (zeros), out_proj (a Linear
    whose bias starts at zero).

    ``forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False)`` returns ``(attn_output, attn_weights or None)``; masks are bool
    (True = not allowed) or float (added to the scores), attn_mask ``(L, S)`` or ``(N * H, L, S)``,
    key_padding_mask ``(N, S)``.
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False, add_zero_attn=False,
                 kdim=None, vdim=None, batch_first=False, device=None, dtype=None):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(
                f"embed_dim and num_heads must be greater than 0, got embed_dim={embed_dim} and num_heads={num_heads}"
            )
        if add_bias_kv or add_zero_attn:
            raise NotImplementedError("MultiheadAttention: add_bias_kv and add_zero_attn are not supported by nbops")
        if (kdim is not None and kdim != embed_dim) or (vdim is not None and vdim != embed_dim):
            raise NotImplementedError("MultiheadAttention: kdim/vdim different from embed_dim are not supported")
        self.embed_dim = embed_dim
        self.kdim = embed_dim
        self.vdim = embed_dim
        self._qkv_same_embed_dim = True
        self.num_heads = num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        if self.head_dim * num_heads != embed_dim:
            raise ValueError("embed_dim must be divisible by num_heads")
        self.in_proj_weight = nn.Parameter(_tensors.new((3 * embed_dim, embed_dim), dtype))
        self.register_parameter("q_proj_weight", None)
        self.register_parameter("k_proj_weight", None)
        self.register_parameter("v_proj_weight", None)
        if bias:
            self.in_proj_bias = nn.Parameter(_tensors.new((3 * embed_dim,), dtype))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, dtype=dtype)
        self.bias_k = self.bias_v = None
        self.add_zero_attn = False
        self._reset_parameters()
        _tensors.place(self, device)

    def _reset_parameters(self):
        init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def _project(self, x, i):
        """The i-th (0: query, 1: key, 2: value) input projection of ``x`` (N, L, E), as (N, H, L, D)."""
        E = self.embed_dim
        bias = None if self.in_proj_bias is None else self.in_proj_bias[i * E:(i + 1) * E]
        y = F.linear(x, self.in_proj_weight[i * E:(i + 1) * E], bias)
        n, length = int(x.shape[0]), int(x.shape[1])
        return F.transpose(F.reshape(y, (n, length, self.num_heads, self.head_dim)), 1, 2)

    def _project_packed(self, x):
        """Self-attention's three projections of ``x`` (N, L, E) as one GEMM against the whole in_proj_weight
        (N, L, 3E): one pass over x and one output array for the three, as torch's packed in-projection. Returns
        (N, H, L, D) views of q, k and v in it (the fused attention kernel reads them in place). Each value is
        the same sum as ``_project``'s, bit for bit (same K order)."""
        n, length = int(x.shape[0]), int(x.shape[1])
        y = F.reshape(F.linear(x, self.in_proj_weight, self.in_proj_bias), (n, length, 3, self.num_heads,
                                                                            self.head_dim))
        return tuple(F.transpose(F.squeeze(F.narrow(y, 2, i, 1), 2), 1, 2) for i in range(3))

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        if is_causal and attn_mask is None:
            raise RuntimeError("Need attn_mask if specifying the is_causal hint")
        batched = len(query.shape) == 3
        if batched:
            # (N, L, E) views of the inputs, whatever the caller's layout
            q_in, k_in, v_in = (t if self.batch_first else F.transpose(t, 0, 1) for t in (query, key, value))
        else:
            if len(query.shape) != 2:
                raise ValueError(f"query should be unbatched 2D or batched 3D tensor but received {len(query.shape)}-D")
            q_in, k_in, v_in = (F.unsqueeze(t, 0) for t in (query, key, value))
            if key_padding_mask is not None:
                key_padding_mask = F.unsqueeze(key_padding_mask, 0)
        n, length, E = (int(s) for s in q_in.shape)
        src = int(k_in.shape[1])
        if E != self.embed_dim:
            raise ValueError(f"was expecting embedding dimension of {self.embed_dim}, but got {E}")
        if query is key and key is value:  # self-attention: one GEMM for the three projections
            q, k, v = self._project_packed(q_in)
        else:
            q = self._project(q_in, 0)
            k = self._project(k_in, 1)
            v = self._project(v_in, 2)
        if not need_weights and attn_mask is None and key_padding_mask is None and not (
                self.training and self.dropout > 0.0):
            out = _attention(q, k, v, 1.0 / math.sqrt(self.head_dim), merged=True)  # (N, L, E), fused on the CPU
            return self._project_out(out, batched), None
        scores = F.matmul(F.mul(q, 1.0 / math.sqrt(self.head_dim)), F.transpose(k, 2, 3))  # (N, H, L, S)
        dtype = _tensors.resolve_dtype(scores.dtype)
        if attn_mask is not None:
            mask = _to_additive(attn_mask, dtype, "attn_mask")
            if len(mask.shape) == 3:
                mask = F.reshape(mask, (n, self.num_heads, length, src))
            elif len(mask.shape) != 2:
                raise ValueError(f"attn_mask's dimension {len(mask.shape)} is not supported")
            scores = F.add(scores, mask)
        if key_padding_mask is not None:
            mask = _to_additive(key_padding_mask, dtype, "key_padding_mask")
            scores = F.add(scores, F.reshape(mask, (n, 1, 1, src)))
        attn = F.softmax(scores, -1)
        if self.training and self.dropout > 0.0:
            attn = F.dropout(attn, self.dropout)
        out = self._project_out(F.reshape(F.transpose(F.matmul(attn, v), 1, 2), (n, length, E)), batched)
        weights = None
        if need_weights:
            weights = F.mean(attn, dim=1) if average_attn_weights else attn
            if not batched:
                weights = F.squeeze(weights, 0)
        return out, weights

    def _project_out(self, merged, batched):
        """The heads' outputs merged side by side, (N, L, E), projected: (N, L, E), or (L, N, E) when not
        batch_first, or (L, E) for an unbatched query."""
        out = self.out_proj(merged)
        if not batched:
            return F.squeeze(out, 0)
        return out if self.batch_first else F.transpose(out, 0, 1)

    def extra_repr(self):
        return ""


def _activation(activation):
    if isinstance(activation, str):
        if activation == "relu":
            return F.relu
        if activation == "gelu":
            return F.gelu
        raise RuntimeError(f"activation should be relu/gelu, not {activation}")
    return activation


_FUSED_ACTIVATIONS = ((F.relu, "relu"), (F.gelu, "gelu"))  # activations linear1 can apply (``_linear_act``)


class TransformerEncoderLayer(nn.Module):
    """Self-attention and a feed-forward block, each with dropout, a residual connection and layer norm.
    Mirrors :class:`torch.nn.TransformerEncoderLayer`.

    Args:
        d_model: E. nhead: heads. dim_feedforward: hidden size of the FFN. Default: 2048.
        dropout: Default: 0.1. activation: 'relu', 'gelu' or a callable / module. Default: 'relu'.
        layer_norm_eps: Default: 1e-5. batch_first: ``(N, L, E)`` inputs. Default: False.
        norm_first: pre-norm (``x + f(norm(x))``) instead of post-norm (``norm(x + f(x))``). Default: False.
        bias: biases in the linear and norm layers. Default: True.

    ``forward(src, src_mask=None, src_key_padding_mask=None, is_causal=False)``.
    """

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu", layer_norm_eps=1e-5,
                 batch_first=False, norm_first=False, bias=True, device=None, dtype=None):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first,
                                            dtype=dtype)
        self.linear1 = nn.Linear(d_model, dim_feedforward, bias=bias, dtype=dtype)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model, bias=bias, dtype=dtype)
        self.norm_first = norm_first
        self.norm1 = self._make_norm(d_model, layer_norm_eps, bias, dtype)
        self.norm2 = self._make_norm(d_model, layer_norm_eps, bias, dtype)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = _activation(activation)
        _tensors.place(self, device)

    def _make_norm(self, d_model, eps, bias, dtype):
        return nn.LayerNorm(d_model, eps=eps, bias=bias, dtype=dtype)

    def _add_norm(self, norm, x, fx):
        """Post-norm residual: ``norm(x + fx)``; with a LayerNorm, one pass (``deep_norm`` with alpha 1: the sum
        is never written, and 1 * x + fx rounds as x + fx, so the result is add-then-layer_norm's, bit for bit)."""
        if isinstance(norm, nn.LayerNorm):
            return F.deep_norm(x, fx, 1.0, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
        return norm(F.add(x, fx))

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False,
                           is_causal=is_causal)[0]
        return self.dropout1(x)

    def _ff_block(self, x):
        act = next((name for f, name in _FUSED_ACTIVATIONS if self.activation is f), None)  # any callable: no hash
        if act is not None and type(self.linear1) is nn.Linear and not (
                self.linear1._forward_pre_hooks or self.linear1._forward_hooks):
            h = _linear_act(x, self.linear1.weight, self.linear1.bias, act)  # on the CPU, in linear1's epilogue
        else:
            h = self.activation(self.linear1(x))
        return self.dropout2(self.linear2(self.dropout(h)))

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        x = src
        if self.norm_first:
            x = F.add(x, self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal))
            x = F.add(x, self._ff_block(self.norm2(x)))
        else:
            x = self._add_norm(self.norm1, x, self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
            x = self._add_norm(self.norm2, x, self._ff_block(x))
        return x


class DeepNormEncoderLayer(TransformerEncoderLayer):
    """A post-norm encoder layer with DeepNorm residuals: ``x = LN(alpha * x + f(x))`` (DeepNet, arXiv 2203.00555).

    Args: as :class:`TransformerEncoderLayer` (without norm_first), plus ``num_layers`` (N, the depth of the
    encoder-only stack this layer belongs to; alpha and beta from :func:`nbops.deep_norm_coefficients`) or
    explicit ``alpha`` / ``beta``. The FFN weights and the value and output
    projections are initialised xavier-normal with gain ``beta``, the query and key projections with gain 1, as the
    paper prescribes; ``alpha`` up-weights the residual.
    """

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu", layer_norm_eps=1e-5,
                 batch_first=False, bias=True, num_layers=1, alpha=None, beta=None, device=None, dtype=None):
        super().__init__(d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, batch_first,
                         norm_first=False, bias=bias, dtype=dtype)
        default_alpha, default_beta = F.deep_norm_coefficients(num_encoder_layers=num_layers)[:2]
        self.alpha = default_alpha if alpha is None else alpha
        self.beta = default_beta if beta is None else beta
        E = d_model
        w = self.self_attn.in_proj_weight
        for i, gain in enumerate((1.0, 1.0, self.beta)):
            init.xavier_normal_(w[i * E:(i + 1) * E], gain=gain)
        for lin in (self.self_attn.out_proj, self.linear1, self.linear2):
            init.xavier_normal_(lin.weight, gain=self.beta)
        _tensors.place(self, device)

    def _add_norm(self, norm, x, fx):
        return F.deep_norm(x, fx, self.alpha, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


class DyTEncoderLayer(TransformerEncoderLayer):
    """An encoder layer whose two LayerNorms are Dynamic Tanh (``weight * tanh(alpha * x) + bias``,
    arXiv 2503.10622). Args as :class:`TransformerEncoderLayer`, plus ``alpha_init_value`` (default 0.5); the norm
    modules are :class:`nbops.nn.DyT` with state_dict keys ``norm1.alpha``, ``norm1.weight``, ``norm1.bias``."""

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu", batch_first=False,
                 norm_first=False, bias=True, alpha_init_value=0.5, device=None, dtype=None):
        self.alpha_init_value = alpha_init_value
        super().__init__(d_model, nhead, dim_feedforward, dropout, activation, 1e-5, batch_first, norm_first, bias,
                         device=device, dtype=dtype)

    def _make_norm(self, d_model, eps, bias, dtype):
        return nn.DyT(d_model, alpha_init_value=self.alpha_init_value, dtype=dtype)


def _mha_from_torch(m, path):
    """``from_torch``'s converter for ``torch.nn.MultiheadAttention``."""
    if not m._qkv_same_embed_dim or m.bias_k is not None or m.add_zero_attn:
        raise unsupported(m, path, " (separate kdim/vdim, add_bias_kv and add_zero_attn are not)")
    return MultiheadAttention(m.embed_dim, m.num_heads, dropout=m.dropout, bias=m.in_proj_bias is not None,
                              batch_first=m.batch_first, dtype=_tensors.resolve_dtype(m.in_proj_weight.dtype))


def _encoder_layer_from_torch(m, path):
    """``from_torch``'s converter for ``torch.nn.TransformerEncoderLayer``."""
    code = getattr(m, "activation_relu_or_gelu", 0)
    if is_leaf(m.activation):  # a module (keeps e.g. GELU's approximate setting)
        activation = convert(m.activation, join_path(path, "activation"))
    elif code in (1, 2):  # torch.nn.functional.relu / gelu
        activation = "relu" if code == 1 else "gelu"
    else:
        raise unsupported(m, path, " (its activation must be relu, gelu or a supported activation module)")
    attn = m.self_attn
    _mha_from_torch(attn, join_path(path, "self_attn"))
    return TransformerEncoderLayer(attn.embed_dim, attn.num_heads, dim_feedforward=m.linear1.out_features,
                                   dropout=m.dropout.p, activation=activation, layer_norm_eps=m.norm1.eps,
                                   batch_first=attn.batch_first, norm_first=m.norm_first,
                                   bias=m.linear1.bias is not None,
                                   dtype=_tensors.resolve_dtype(m.linear1.weight.dtype))


register_converter("MultiheadAttention", _mha_from_torch)
register_converter("TransformerEncoderLayer", _encoder_layer_from_torch)
