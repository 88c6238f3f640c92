"""ONNX operators as nbops calls: one converter per operator, run once per node at load time.

A converter reads the node's attributes (and its constant inputs where the semantics need them at load time),
rejects what nbops cannot run with :class:`UnsupportedModelError`, and returns ``(fn, host)``: ``fn(rt, *inputs)``
computes the node's outputs from its input arrays with nbops' public ops, so one function serves both targets;
``host`` names the inputs that are parameters (shapes, axes, pads, indices...) read on the host with ``rt.host``
rather than data. Where ONNX and torch differ (asymmetric pads, auto_pad, Gemm's transposes, negative axes,
select_last_index, integer division), the function does what the ONNX specification says, from existing ops.
"""

import math

import numpy as np

import nbops

from .._dispatch import Call
from ..ops.linear import _attention

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_CONVERTERS = {}


class NodeInfo:
    """What a converter sees of one node at load time: attributes, constant inputs, inferred input dtypes/ranks."""

    def __init__(self, node, opset, types, constants, error):
        import onnx

        self.node, self.opset, self.op = node, opset, node.op_type
        self.inputs, self.outputs = list(node.input), list(node.output)
        self._types, self._constants, self._error = types, constants, error
        self._attrs = {}
        for a in node.attribute:
            if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                self.fail(f"attribute {a.name!r} holds a subgraph; control flow is not supported")
            if a.ref_attr_name:
                self.fail(f"attribute {a.name!r} refers to a function attribute")
            v = onnx.helper.get_attribute_value(a)
            if isinstance(v, onnx.TensorProto):
                v = onnx.numpy_helper.to_array(v)
            elif isinstance(v, bytes):
                v = v.decode()
            elif isinstance(v, list):
                v = [x.decode() if isinstance(x, bytes) else x for x in v]
            self._attrs[a.name] = v

    def fail(self, why):
        raise self._error(f"node {self.node.name!r} ({self.op}, opset {self.opset}): {why}")

    def attr(self, name, default=None):
        return self._attrs.get(name, default)

    def has(self, i):
        return i < len(self.inputs) and self.inputs[i] != ""

    def has_output(self, i):
        return i < len(self.outputs) and self.outputs[i] != ""

    def const(self, i):
        """Input ``i`` as a NumPy array when it is an initializer (or a folded constant), else None."""
        return self._constants.get(self.inputs[i]) if self.has(i) else None

    def dtype(self, i):
        info = self._types.get(self.inputs[i]) if self.has(i) else None
        return info.dtype if info is not None else None

    def rank(self, i):
        info = self._types.get(self.inputs[i]) if self.has(i) else None
        return len(info.shape) if info is not None and info.shape is not None else None

    def require_float(self, *inputs):
        for i in inputs:
            dt = self.dtype(i)
            if dt is not None and dt not in FLOATS:
                self.fail(f"input {i} has dtype {dt}; this operator runs float32 and float64 only")


def converter(*op_types, since=1):
    """Register the decorated binder for ``op_types``; ``since``: the first opset whose semantics it implements."""
    def deco(fn):
        for t in op_types:
            _CONVERTERS[t] = (fn, since)
        return fn
    return deco


def claimed():
    """The ONNX operator types nbops.onnx runs, sorted."""
    return sorted(_CONVERTERS)


def bind(node):
    """``(fn, host)`` for ``node`` (a :class:`NodeInfo`); raises the load error for anything not supported."""
    if node.op not in _CONVERTERS:
        node.fail("operator not supported by nbops.onnx (see docs/onnx.md for the list)")
    fn, since = _CONVERTERS[node.op]
    if node.opset < since:
        node.fail(f"supported from opset {since}")
    out = fn(node)
    return out if isinstance(out, tuple) else (out, frozenset())


# helpers -------------------------------------------------------------------------------------------------------

def _cast(x, dtype):
    """``x`` converted to ``dtype`` on its own target (C-contiguous); ``x`` itself when it has that dtype."""
    dtype = np.dtype(dtype)
    if np.dtype(x.dtype) == dtype:
        return x
    return Call("Cast", input=x).astype(x, dtype)


def _axis(axis, ndim):
    a = int(axis)
    if not -ndim <= a < max(ndim, 1):
        raise ValueError(f"axis {a} is out of range for rank {ndim}")
    return a % ndim if ndim else 0


def _full(rt, like, value, shape, dtype):
    """An array of ``shape`` filled with ``value`` on the same side as ``like`` (a broadcast view of one element)."""
    one = rt.like(like, np.array(value, dtype=dtype))
    return nbops.expand(one, *shape) if len(shape) else one


def _pad(rt, x, pairs, value):
    """``x`` padded with ``value``: ``pairs`` maps axis -> (before, after); negative amounts crop."""
    crop = [slice(None)] * x.ndim
    for ax, (b, e) in pairs.items():
        if b < 0 or e < 0:
            crop[ax] = slice(max(-b, 0), x.shape[ax] - max(-e, 0))
    if any(s != slice(None) for s in crop):
        x = x[tuple(crop)]
    for ax, (b, e) in sorted(pairs.items()):
        b, e = max(b, 0), max(e, 0)
        if not (b or e):
            continue
        blocks = []  # the constant block before x, then the one after (empty lists where the amount is 0)
        for n in (b, e):
            shape = list(x.shape)
            shape[ax] = n
            blocks.append([_full(rt, x, value, shape, x.dtype)] if n else [])
        x = nbops.cat(blocks[0] + [x] + blocks[1], ax)
    return x


def _spatial_pads(node, x_shape, kernel, strides, dilations, pads):
    """ONNX auto_pad / pads as (begin, end) lists for the spatial dims of an input of ``x_shape``."""
    auto = node.attr("auto_pad", "NOTSET")
    n = len(kernel)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for i in range(n):
            size = x_shape[2 + i]
            out = -(-size // strides[i])
            total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size)
            small = total // 2
            begin.append(small if auto == "SAME_UPPER" else total - small)
            end.append(total - begin[-1])
        return begin, end
    if auto == "VALID":
        return [0] * n, [0] * n
    pads = list(pads) if pads is not None else [0] * (2 * n)
    return pads[:n], pads[n:]


def _spatial(node, rank_input=0, weight=None):
    """The number of spatial dims of a conv/pool node, from the kernel_shape attribute, a constant weight or the
    inferred input rank; fails at load when it is not 1 or 2 (nbops has 1-D and 2-D kernels only)."""
    ks = node.attr("kernel_shape")
    if ks is not None:
        n = len(ks)
    elif weight is not None and node.const(weight) is not None:
        n = node.const(weight).ndim - 2
    elif node.rank(rank_input) is not None:
        n = node.rank(rank_input) - 2
    else:
        node.fail("cannot tell the number of spatial dims at load time (no kernel_shape, shapes not inferred)")
    if n not in (1, 2):
        node.fail(f"{n}-D spatial dims; nbops has 1-D and 2-D kernels")
    return n


# elementwise ---------------------------------------------------------------------------------------------------

_UNARY = {"Relu": nbops.relu, "Sigmoid": nbops.sigmoid, "Tanh": nbops.tanh, "Exp": nbops.exp, "Log": nbops.log,
          "Sqrt": nbops.sqrt, "Softsign": nbops.softsign, "Softplus": nbops.softplus, "Mish": nbops.mish,
          "HardSwish": nbops.hardswish}
_UNARY_ANY = {"Abs": nbops.abs, "Neg": nbops.neg, "Identity": lambda x: x}


@converter(*_UNARY)
def _unary(node):
    node.require_float(0)
    f = _UNARY[node.op]
    return lambda rt, x: f(x)


@converter(*_UNARY_ANY)
def _unary_any(node):
    f = _UNARY_ANY[node.op]
    return lambda rt, x: f(x)


@converter("Reciprocal")
def _reciprocal(node):
    node.require_float(0)
    return lambda rt, x: nbops.div(rt.like(x, np.ones((), x.dtype)), x)


@converter("Add", "Sub", "Mul", "Div", since=7)
def _binary(node):
    f = {"Add": nbops.add, "Sub": nbops.sub, "Mul": nbops.mul, "Div": nbops.div}[node.op]
    if node.op == "Div":
        def div(rt, a, b):
            if np.dtype(a.dtype) in FLOATS:
                return nbops.div(a, b)
            return _cast(nbops.div(a, b, rounding_mode="trunc"), a.dtype)
        return div
    return lambda rt, a, b: f(a, b)


@converter("Pow", since=7)
def _pow(node):
    return lambda rt, a, b: _cast(nbops.pow(a, b), a.dtype)


@converter("Max", "Min", "Sum", "Mean", since=8)
def _variadic(node):
    f = {"Max": nbops.maximum, "Min": nbops.minimum, "Sum": nbops.add, "Mean": nbops.add}[node.op]
    if node.op == "Mean":
        node.require_float(*range(len(node.inputs)))

    def fn(rt, *xs):
        out = xs[0]
        for x in xs[1:]:
            out = f(out, x)
        if node.op == "Mean" and len(xs) > 1:
            out = nbops.div(out, rt.like(out, np.array(len(xs), out.dtype)))
        return out
    return fn


@converter("Where", since=9)
def _where(node):
    return lambda rt, c, a, b: nbops.where(c, a, b)


@converter("Clip", since=6)
def _clip(node):
    if node.opset < 11:
        lo, hi = node.attr("min", -np.inf), node.attr("max", np.inf)
        return lambda rt, x: nbops.clamp(x, lo, hi)

    def fn(rt, x, lo=None, hi=None):
        lo = None if lo is None else rt.host(lo).item()
        hi = None if hi is None else rt.host(hi).item()
        if lo is None and hi is None:
            return x
        return nbops.clamp(x, lo, hi)
    return fn, frozenset({1, 2})


# activations ---------------------------------------------------------------------------------------------------

@converter("LeakyRelu", "Elu", "Celu", "Selu", "HardSigmoid", "Gelu", "Swish", "PRelu")
def _activation(node):
    node.require_float(0)
    op = node.op
    if op == "LeakyRelu":
        alpha = node.attr("alpha", 0.01)
        return lambda rt, x: nbops.leaky_relu(x, alpha)
    if op == "Elu":
        alpha = node.attr("alpha", 1.0)
        return lambda rt, x: nbops.elu(x, alpha)
    if op == "Celu":
        alpha = node.attr("alpha", 1.0)
        return lambda rt, x: nbops.celu(x, alpha)
    if op == "Selu":
        alpha, gamma = node.attr("alpha", 1.67326319217681884765625), node.attr("gamma", 1.05070102214813232421875)
        return lambda rt, x: nbops.mul(nbops.elu(x, alpha), rt.like(x, np.array(gamma, x.dtype)))
    if op == "HardSigmoid":
        alpha, beta = node.attr("alpha", 0.2), node.attr("beta", 0.5)
        return lambda rt, x: nbops.clamp(nbops.add(nbops.mul(x, rt.like(x, np.array(alpha, x.dtype))),
                                                   rt.like(x, np.array(beta, x.dtype))), 0.0, 1.0)
    if op == "Gelu":
        approximate = node.attr("approximate", "none")
        if approximate not in ("none", "tanh"):
            node.fail(f"approximate={approximate!r}")
        return lambda rt, x: nbops.gelu(x, approximate=approximate)
    if op == "Swish":
        alpha = node.attr("alpha", 1.0)
        if alpha == 1.0:
            return lambda rt, x: nbops.silu(x)
        return lambda rt, x: nbops.mul(x, nbops.sigmoid(nbops.mul(x, rt.like(x, np.array(alpha, x.dtype)))))

    def prelu(rt, x, slope):  # max(x, 0) + slope * min(x, 0), with ONNX's one-way broadcast of the slope
        zero = rt.like(x, np.zeros((), x.dtype))
        return nbops.add(nbops.maximum(x, zero), nbops.mul(slope, nbops.minimum(x, zero)))
    return prelu


@converter("Softmax", "LogSoftmax")
def _softmax(node):
    node.require_float(0)
    f = nbops.softmax if node.op == "Softmax" else nbops.log_softmax
    if node.opset >= 13:
        axis = node.attr("axis", -1)
        return lambda rt, x: f(x, dim=_axis(axis, x.ndim)) if x.ndim else f(x, dim=0)
    axis = node.attr("axis", 1)

    def coerced(rt, x):  # before opset 13: softmax over the flattened dims from ``axis`` on
        a = _axis(axis, x.ndim) if axis != x.ndim else axis
        rows = int(np.prod(x.shape[:a], dtype=np.int64))
        y = f(nbops.reshape(x, (rows, int(np.prod(x.shape[a:], dtype=np.int64)))), dim=1)
        return nbops.reshape(y, tuple(x.shape))
    return coerced


# linear algebra, convolution -----------------------------------------------------------------------------------

def linear(rt, x, weight_t, bias):
    """MatMul by a constant weight followed by Add of a constant bias, fused by the session: ``weight_t`` is the
    (N, K) transpose view of the (K, N) weight, which nbops.linear reads in place."""
    return nbops.linear(x, weight_t, bias)


def scaled_matmul(rt, a, b, scale, divide):
    """MatMul followed by Div (``divide``) or Mul by a constant one-element ``scale``, fused by the session: the
    GEMM's store multiplies by alpha = 1/scale or scale (addmm / baddbmm with beta=0), so the product is written
    once. Integer operands, and batch dims that differ between a and b, take matmul and then the Div or Mul."""
    if np.dtype(a.dtype) in FLOATS and a.dtype == b.dtype == scale.dtype and a.ndim == b.ndim >= 2 and \
            a.shape[:-2] == b.shape[:-2]:
        alpha = 1.0 / float(scale) if divide else float(scale)
        zero = rt.like(a, np.zeros((), a.dtype))
        if a.ndim == 2:
            return nbops.addmm(zero, a, b, beta=0, alpha=alpha)
        batch = tuple(a.shape[:-2])
        n = int(np.prod(batch, dtype=np.int64))
        y = nbops.baddbmm(zero, nbops.reshape(a, (n,) + tuple(a.shape[-2:])),
                          nbops.reshape(b, (n,) + tuple(b.shape[-2:])), beta=0, alpha=alpha)
        return nbops.reshape(y, batch + tuple(y.shape[-2:]))
    y = nbops.matmul(a, b)
    c = rt.like(y, scale)
    return nbops.div(y, c) if divide else nbops.mul(y, c)


def attention(rt, q, k_t, v, scale, divide):
    """MatMul(q, k_t), Div or Mul by ``scale`` (None: neither), Softmax over the last axis, MatMul by v: fused by
    the session into nbops' attention, which on the CPU keeps the scores in cache (one kernel instead of a GEMM, a
    softmax and a GEMM over an (L, S) array per head) and reads k_t as its (S, D) transpose in place. q (*, L, D),
    k_t (*, D, S), v (*, S, E) of one float dtype with the same batch dims (at least one); anything else runs
    the nodes one by one (the scaled product as ``scaled_matmul``, as the session would have fused it). The scale
    multiplies q before the product instead of the product after it: a rounding apart."""
    qs, ks, vs = (tuple(int(n) for n in x.shape) for x in (q, k_t, v))  # (the simulator's shapes index >= 0 only)
    nd = len(qs)
    if np.dtype(q.dtype) in FLOATS and q.dtype == k_t.dtype == v.dtype and \
            (scale is None or scale.dtype == q.dtype) and nd >= 3 and len(ks) == len(vs) == nd and \
            qs[:nd - 2] == ks[:nd - 2] == vs[:nd - 2] and qs[nd - 1] == ks[nd - 2] and ks[nd - 1] == vs[nd - 2]:
        alpha = 1.0 if scale is None else 1.0 / float(scale) if divide else float(scale)
        return _attention(q, nbops.transpose(k_t, nd - 2, nd - 1), v, alpha)
    y = nbops.matmul(q, k_t) if scale is None else scaled_matmul(rt, q, k_t, scale, divide)
    return nbops.matmul(nbops.softmax(y, dim=-1), v)


# The session lets these activations overwrite their input when it dies at them and was produced, as a buffer of
# its own, by one of FRESH_OUTPUT (never a view of another value, an input or a constant).
IN_PLACE = {"Relu": lambda rt, x: nbops.relu(x, inplace=True)}
FRESH_OUTPUT = {"Conv", "Gemm", "MatMul", "MatMul+Add", "MatMul+Mul", "MatMul+Div", "Attention", "Add", "Sub",
                "Mul", "Div", "BatchNormalization", "InstanceNormalization", "LayerNormalization", "GroupNormalization"}


@converter("MatMul")
def _matmul(node):
    return lambda rt, a, b: nbops.matmul(a, b)


@converter("Gemm", since=7)
def _gemm(node):
    alpha, beta = node.attr("alpha", 1.0), node.attr("beta", 1.0)
    ta, tb = node.attr("transA", 0), node.attr("transB", 0)

    def fn(rt, a, b, c=None):
        a = nbops.transpose(a, 0, 1) if ta else a
        b = nbops.transpose(b, 0, 1) if tb else b
        if c is None or beta == 0.0:
            y = nbops.matmul(a, b)
            return y if alpha == 1.0 else nbops.mul(y, rt.like(y, np.array(alpha, y.dtype)))
        if np.dtype(a.dtype) not in FLOATS:
            y = nbops.matmul(a, b)
            if alpha != 1.0:
                y = nbops.mul(y, rt.like(y, np.array(alpha, y.dtype)))
            cb = c if beta == 1.0 else nbops.mul(c, rt.like(c, np.array(beta, c.dtype)))
            return nbops.add(y, cb)
        return nbops.addmm(c, a, b, beta=beta, alpha=alpha)
    return fn


def _conv_params(node, n):
    return ([int(s) for s in node.attr("strides", [1] * n)], [int(d) for d in node.attr("dilations", [1] * n)],
            node.attr("pads"), int(node.attr("group", 1)))


@converter("Conv")
def _conv(node):
    node.require_float(0)
    n = _spatial(node, 0, 1)
    strides, dilations, pads, group = _conv_params(node, n)
    f = nbops.conv1d if n == 1 else nbops.conv2d

    def fn(rt, x, w, b=None):
        if x.ndim != n + 2:
            raise ValueError(f"expected a {n + 2}-D input, got shape {tuple(x.shape)}")
        begin, end = _spatial_pads(node, x.shape, w.shape[2:], strides, dilations, pads)
        if begin != end:
            x = _pad(rt, x, {2 + i: (begin[i], end[i]) for i in range(n)}, 0.0)
            begin = [0] * n
        return f(x, w, b, stride=tuple(strides), padding=tuple(begin), dilation=tuple(dilations), groups=group)
    return fn


@converter("ConvTranspose")
def _conv_transpose(node):
    node.require_float(0)
    n = _spatial(node, 0, 1)
    strides, dilations, pads, group = _conv_params(node, n)
    out_pad = [int(p) for p in node.attr("output_padding", [0] * n)]
    out_shape = node.attr("output_shape")
    auto = node.attr("auto_pad", "NOTSET")
    f = nbops.conv_transpose1d if n == 1 else nbops.conv_transpose2d

    def fn(rt, x, w, b=None):
        if x.ndim != n + 2:
            raise ValueError(f"expected a {n + 2}-D input, got shape {tuple(x.shape)}")
        k = w.shape[2:]
        full = [strides[i] * (x.shape[2 + i] - 1) + (k[i] - 1) * dilations[i] + 1 for i in range(n)]
        if out_shape is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
            want = list(out_shape)[-n:] if out_shape is not None else [x.shape[2 + i] * strides[i]
                                                                      for i in range(n)]
            total = [full[i] + out_pad[i] - want[i] for i in range(n)]
            begin = [t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in total]
            end = [total[i] - begin[i] for i in range(n)]
        else:
            p = list(pads) if pads is not None else [0] * (2 * n)
            begin, end = p[:n], p[n:]
        size = [full[i] + out_pad[i] - begin[i] - end[i] for i in range(n)]
        if begin == end and all(0 <= o < max(s, d) for o, s, d in zip(out_pad, strides, dilations)):
            return f(x, w, b, stride=tuple(strides), padding=tuple(begin), output_padding=tuple(out_pad),
                     groups=group, dilation=tuple(dilations))
        extra = [max(0, begin[i] + size[i] - full[i]) for i in range(n)]
        if any(e >= max(s, d) for e, s, d in zip(extra, strides, dilations)) or min(begin) < 0:
            raise ValueError(f"pads {begin + end} with output_padding {out_pad} are outside what nbops computes")
        y = f(x, w, b, stride=tuple(strides), padding=0, output_padding=tuple(extra), groups=group,
              dilation=tuple(dilations))
        return y[(slice(None), slice(None)) + tuple(slice(begin[i], begin[i] + size[i]) for i in range(n))]
    return fn


# pooling -------------------------------------------------------------------------------------------------------

def _pool_setup(node):
    node.require_float(0)
    n = _spatial(node, 0)
    kernel = [int(k) for k in node.attr("kernel_shape")]
    strides = [int(s) for s in node.attr("strides", [1] * n)]
    dilations = [int(d) for d in node.attr("dilations", [1] * n)]
    return n, kernel, strides, dilations, node.attr("pads"), bool(node.attr("ceil_mode", 0))


@converter("MaxPool", since=8)
def _max_pool(node):
    if node.has_output(1):
        node.fail("the Indices output is not supported")
    if node.attr("storage_order", 0):
        node.fail("storage_order=1 is not supported")
    n, kernel, strides, dilations, pads, ceil = _pool_setup(node)
    f = nbops.max_pool1d if n == 1 else nbops.max_pool2d

    def fn(rt, x):
        begin, end = _spatial_pads(node, x.shape, kernel, strides, dilations, pads)
        if begin != end or any(b > k // 2 for b, k in zip(begin, kernel)):
            x = _pad(rt, x, {2 + i: (begin[i], end[i]) for i in range(n)}, -np.inf)
            begin = [0] * n
        return f(x, tuple(kernel), tuple(strides), tuple(begin), tuple(dilations), ceil)
    return fn


@converter("AveragePool", since=7)
def _avg_pool(node):
    n, kernel, strides, dilations, pads, ceil = _pool_setup(node)
    if any(d != 1 for d in dilations):
        node.fail("dilations > 1 (nbops' avg_pool has none)")
    include = bool(node.attr("count_include_pad", 0))
    f = nbops.avg_pool1d if n == 1 else nbops.avg_pool2d

    def fn(rt, x):
        begin, end = _spatial_pads(node, x.shape, kernel, strides, dilations, pads)
        if begin == end and all(b <= k // 2 for b, k in zip(begin, kernel)):
            return f(x, tuple(kernel), tuple(strides), tuple(begin), ceil, include)
        pairs = {2 + i: (begin[i], end[i]) for i in range(n)}
        y = f(_pad(rt, x, pairs, 0.0), tuple(kernel), tuple(strides), 0, ceil, True)
        if include:
            return y
        ones = _pad(rt, _full(rt, x, 1.0, x.shape[2:], x.dtype), {i: pairs[2 + i] for i in range(n)}, 0.0)
        share = f(nbops.reshape(nbops.contiguous(ones), (1, 1) + tuple(ones.shape)), tuple(kernel),
                  tuple(strides), 0, ceil, True)
        return nbops.div(y, share)
    return fn


@converter("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(node):
    node.require_float(0)
    f = nbops.mean if node.op == "GlobalAveragePool" else nbops.amax
    return lambda rt, x: f(x, tuple(range(2, x.ndim)), keepdim=True)


# normalization -------------------------------------------------------------------------------------------------

@converter("BatchNormalization", since=9)
def _batch_norm(node):
    node.require_float(0)
    if node.attr("training_mode", 0) or any(node.has_output(i) for i in (1, 2)):
        node.fail("training_mode=1 (running statistics outputs) is not supported; nbops.onnx runs inference")
    eps = node.attr("epsilon", 1e-5)
    return lambda rt, x, scale, b, mean, var: nbops.batch_norm(x, mean, var, scale, b, eps=eps)


@converter("InstanceNormalization")
def _instance_norm(node):
    node.require_float(0)
    eps = node.attr("epsilon", 1e-5)
    return lambda rt, x, scale, b: nbops.instance_norm(x, weight=scale, bias=b, eps=eps)


def _affine(y, scale, bias):
    """``y * scale + bias`` with broadcasting, for parameters that do not have the normalized shape."""
    out = y if scale is None else nbops.mul(y, scale)
    return out if bias is None else nbops.add(out, bias)


@converter("LayerNormalization", "RMSNormalization", since=17)
def _layer_norm(node):
    node.require_float(0)
    axis, eps = node.attr("axis", -1), node.attr("epsilon", 1e-5)
    rms = node.op == "RMSNormalization"
    stats = node.has_output(1) or node.has_output(2)
    if rms and stats:
        node.fail("RMSNormalization has one output")

    def fn(rt, x, scale=None, b=None):
        a = _axis(axis, x.ndim)
        shape = tuple(x.shape[a:])
        fits = (scale is None or tuple(scale.shape) == shape) and (b is None or tuple(b.shape) == shape)
        if rms:
            if fits:
                return nbops.rms_norm(x, shape, scale, eps=eps)
            return _affine(nbops.rms_norm(x, shape, None, eps=eps), scale, None)
        y = nbops.layer_norm(x, shape, scale, b, eps=eps) if fits else _affine(
            nbops.layer_norm(x, shape, None, None, eps=eps), scale, b)
        if not stats:
            return y
        dims = tuple(range(a, x.ndim))
        mean = nbops.mean(x, dims, keepdim=True)
        var = nbops.var(x, dims, keepdim=True, correction=0)
        inv = nbops.div(rt.like(var, np.ones((), var.dtype)),
                        nbops.sqrt(nbops.add(var, rt.like(var, np.array(eps, var.dtype)))))
        return y, mean, inv
    return fn


@converter("GroupNormalization", since=18)
def _group_norm(node):
    node.require_float(0)
    groups, eps = int(node.attr("num_groups")), node.attr("epsilon", 1e-5)
    per_group = node.opset < 21  # opset 18's scale and bias have one entry per group

    def fn(rt, x, scale, b):
        if per_group:
            c = x.shape[1]
            scale, b = (nbops.reshape(nbops.expand(nbops.reshape(p, (groups, 1)), groups, c // groups), (c,))
                        for p in (scale, b))
        return nbops.group_norm(x, groups, scale, b, eps=eps)
    return fn


@converter("Dropout", since=7)
def _dropout(node):
    if node.has(2) and (node.const(2) is None or bool(node.const(2))):
        node.fail("training_mode must be a constant False: nbops.onnx runs inference")

    def fn(rt, x, ratio=None, training=None):
        if node.has_output(1):
            return x, nbops.contiguous(_full(rt, x, True, x.shape, np.bool_))
        return x
    return fn, frozenset({1, 2})


# reductions ----------------------------------------------------------------------------------------------------

_REDUCE_EMPTY = {"ReduceSum": 0, "ReduceMean": np.nan, "ReduceMax": -np.inf, "ReduceMin": np.inf, "ReduceProd": 1,
                 "ReduceLogSumExp": -np.inf, "ReduceSumSquare": 0, "ReduceL1": 0, "ReduceL2": 0,
                 "ReduceLogSum": -np.inf}
_AXES_AS_INPUT = {"ReduceSum": 13}


def _reduce_body(op, x, dims, keep):
    if op == "ReduceSum":
        return nbops.sum(x, dims, keep)
    if op == "ReduceMean":
        return nbops.mean(x, dims, keep)
    if op == "ReduceMax":
        return nbops.amax(x, dims, keep)
    if op == "ReduceMin":
        return nbops.amin(x, dims, keep)
    if op == "ReduceProd":  # nbops.prod takes one dim at a time, as torch.prod
        if len(dims) == x.ndim and not keep:
            return nbops.prod(x)
        for d in reversed(dims):
            x = nbops.prod(x, d, keep)
        return x
    if op == "ReduceLogSumExp":
        return nbops.logsumexp(x, dims, keep)
    if op == "ReduceSumSquare":
        return nbops.sum(nbops.mul(x, x), dims, keep)
    if op == "ReduceL1":
        return nbops.sum(nbops.abs(x), dims, keep)
    if op == "ReduceL2":
        return nbops.sqrt(nbops.sum(nbops.mul(x, x), dims, keep))
    return nbops.log(nbops.sum(x, dims, keep))


def _reduce_scalar(op, x):
    """The reduction over no axis of a 0-D input: the elementwise part only."""
    if op in ("ReduceSumSquare",):
        return nbops.mul(x, x)
    if op in ("ReduceL1", "ReduceL2"):
        return nbops.abs(x)
    if op == "ReduceLogSum":
        return nbops.log(x)
    return x


@converter(*_REDUCE_EMPTY)
def _reduce(node):
    op = node.op
    if op in ("ReduceMean", "ReduceLogSumExp", "ReduceL2", "ReduceLogSum"):
        node.require_float(0)
    keep, noop = bool(node.attr("keepdims", 1)), bool(node.attr("noop_with_empty_axes", 0))
    attr_axes = node.attr("axes")
    from_input = node.opset >= _AXES_AS_INPUT.get(op, 18)

    def fn(rt, x, axes=None):
        ax = [] if (from_input and axes is None) else (rt.host(axes).tolist() if from_input else attr_axes or [])
        if not ax:
            if noop:
                return x
            ax = list(range(x.ndim))
        dims = tuple(sorted({_axis(a, x.ndim) for a in ax})) if x.ndim else ()
        if not dims:
            return _cast(_reduce_scalar(op, x), x.dtype)
        if any(x.shape[d] == 0 for d in dims):
            shape = tuple(1 if d in dims else s for d, s in enumerate(x.shape) if keep or d not in dims)
            fill = _REDUCE_EMPTY[op]
            dtype = x.dtype
            if np.dtype(dtype) == np.bool_:
                fill = fill > 0 if np.isinf(fill) else bool(fill)
            elif np.dtype(dtype) not in FLOATS and not np.isfinite(fill):
                fill = np.iinfo(dtype).min if fill < 0 else np.iinfo(dtype).max
            return nbops.contiguous(_full(rt, x, fill, shape, dtype))
        return _cast(_reduce_body(op, x, dims, keep), x.dtype)
    return fn, frozenset({1})


@converter("ArgMax", "ArgMin")
def _arg_reduce(node):
    axis, keep, last = node.attr("axis", 0), bool(node.attr("keepdims", 1)), bool(node.attr("select_last_index", 0))
    f = nbops.argmax if node.op == "ArgMax" else nbops.argmin

    def fn(rt, x):
        a = _axis(axis, x.ndim)
        if not last:
            return f(x, a, keep)
        flipped = nbops.contiguous(x[(slice(None),) * a + (slice(None, None, -1),)])
        i = f(flipped, a, keep)
        return nbops.sub(rt.like(i, np.array(x.shape[a] - 1, np.int64)), i)
    return fn


# shape ---------------------------------------------------------------------------------------------------------

def _host_ints(rt, v):
    return [int(i) for i in rt.host(v).reshape(-1)]


@converter("Reshape", since=5)
def _reshape(node):
    allowzero = bool(node.attr("allowzero", 0))

    def fn(rt, x, shape):
        shape = _host_ints(rt, shape)
        if not allowzero:
            shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
        return nbops.reshape(x, tuple(shape))
    return fn, frozenset({1})


@converter("Flatten")
def _flatten(node):
    axis = node.attr("axis", 1)

    def fn(rt, x):
        a = axis + x.ndim if axis < 0 else axis
        if not 0 <= a <= x.ndim:
            raise ValueError(f"axis {axis} is out of range for rank {x.ndim}")
        return nbops.reshape(x, (int(np.prod(x.shape[:a], dtype=np.int64)),
                                 int(np.prod(x.shape[a:], dtype=np.int64))))
    return fn


@converter("Transpose")
def _transpose(node):
    perm = node.attr("perm")
    return lambda rt, x: nbops.permute(x, tuple(perm) if perm is not None else tuple(range(x.ndim))[::-1])


@converter("Squeeze", "Unsqueeze")
def _squeeze(node):
    attr_axes = node.attr("axes")
    squeeze = node.op == "Squeeze"

    def fn(rt, x, axes=None):
        ax = attr_axes if node.opset < 13 else (None if axes is None else _host_ints(rt, axes))
        if squeeze:
            drop = {i for i, s in enumerate(x.shape) if s == 1} if ax is None else {_axis(a, x.ndim) for a in ax}
            for d in drop:
                if x.shape[d] != 1:
                    raise ValueError(f"cannot squeeze axis {d} of size {x.shape[d]}")
            return nbops.reshape(x, tuple(s for i, s in enumerate(x.shape) if i not in drop))
        rank = x.ndim + len(ax)
        new = {_axis(a, rank) for a in ax}
        if len(new) != len(ax):
            raise ValueError(f"repeated axes {ax}")
        dims = iter(x.shape)
        return nbops.reshape(x, tuple(1 if i in new else next(dims) for i in range(rank)))
    return fn, frozenset({1})


@converter("Concat", since=4)
def _concat(node):
    axis = node.attr("axis")
    return lambda rt, *xs: nbops.cat(list(xs), _axis(axis, xs[0].ndim))


@converter("Split", since=2)
def _split(node):
    axis, attr_split, parts = node.attr("axis", 0), node.attr("split"), node.attr("num_outputs")
    count = len(node.outputs)

    def fn(rt, x, split=None):
        a = _axis(axis, x.ndim)
        size = x.shape[a]
        sizes = _host_ints(rt, split) if split is not None else attr_split
        if sizes is None:
            n = parts or count
            if parts is None and size % n:
                raise ValueError(f"axis of size {size} does not split into {n} equal parts")
            step = -(-size // n)
            sizes = [min(step, size - i * step) for i in range(n)]
        if sum(sizes) != size:
            raise ValueError(f"split sizes {sizes} do not add up to {size}")
        return tuple(nbops.split(x, list(sizes), a))
    return fn, frozenset({1})


def _slice_view(x, starts, ends, axes, steps):
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = _axis(a, x.ndim)
        d = x.shape[a]
        if st == 0:
            raise ValueError("a slice step of 0")
        s = s + d if s < 0 else s
        e = e + d if e < 0 else e
        if st > 0:
            s, e = min(max(s, 0), d), min(max(e, 0), d)
        else:
            s, e = min(max(s, 0), d - 1), min(max(e, -1), d - 1)
        index[a] = slice(s, e if e >= 0 else None, st)
    return x[tuple(index)]


@converter("Slice")
def _slice(node):
    if node.opset < 10:
        starts, ends = node.attr("starts"), node.attr("ends")
        axes = node.attr("axes", list(range(len(starts))))
        return lambda rt, x: _slice_view(x, starts, ends, axes, [1] * len(starts))

    def fn(rt, x, starts, ends, axes=None, steps=None):
        s, e = _host_ints(rt, starts), _host_ints(rt, ends)
        a = list(range(len(s))) if axes is None else _host_ints(rt, axes)
        st = [1] * len(s) if steps is None else _host_ints(rt, steps)
        v = _slice_view(x, s, e, a, st)
        return nbops.contiguous(v) if any(k < 0 for k in st) else v
    return fn, frozenset({1, 2, 3, 4})


@converter("Gather")
def _gather(node):
    axis = node.attr("axis", 0)

    def fn(rt, x, indices):
        a = _axis(axis, x.ndim)
        d = x.shape[a]
        idx = rt.host(indices).astype(np.int64)
        if idx.size and (idx.min() < -d or idx.max() >= d):
            raise IndexError(f"Gather index out of range for axis {a} of size {d}")
        idx = np.where(idx < 0, idx + d, idx)
        if isinstance(x, np.ndarray) and np.dtype(x.dtype) not in FLOATS:
            return np.asarray(np.take(x, idx, axis=a))  # integer data on the host: shape arithmetic
        if np.dtype(x.dtype) not in FLOATS:
            raise TypeError(f"Gather of {x.dtype} data on CUDA is not supported (nbops.embedding: float32/float64)")
        rest = tuple(x.shape[:a]) + tuple(x.shape[a + 1:])
        front = nbops.permute(x, (a,) + tuple(i for i in range(x.ndim) if i != a))
        rows = nbops.reshape(front, (d, int(np.prod(rest, dtype=np.int64))))
        flat = idx.reshape(-1)
        got = nbops.embedding(flat if isinstance(x, np.ndarray) else rt.put(flat), rows)
        got = nbops.reshape(got, idx.shape + rest)
        k = idx.ndim
        perm = tuple(range(k, k + a)) + tuple(range(k)) + tuple(range(k + a, k + len(rest)))
        return nbops.permute(got, perm)
    return fn, frozenset({1})


@converter("Expand", since=8)
def _expand(node):
    def fn(rt, x, shape):
        shape = _host_ints(rt, shape)
        out = list(np.broadcast_shapes(tuple(x.shape), tuple(shape)))
        return nbops.expand(x, *out) if out != list(x.shape) else x
    return fn, frozenset({1})


@converter("Tile", since=6)
def _tile(node):
    def fn(rt, x, repeats):
        reps = _host_ints(rt, repeats)
        inter = tuple(v for s in x.shape for v in (1, s))
        wide = tuple(v for r, s in zip(reps, x.shape) for v in (r, s))
        y = nbops.expand(nbops.reshape(x, inter), *wide)
        return nbops.reshape(y, tuple(r * s for r, s in zip(reps, x.shape)))
    return fn, frozenset({1})


@converter("DepthToSpace", "SpaceToDepth", since=13)
def _depth_space(node):
    bs = int(node.attr("blocksize"))
    mode = node.attr("mode", "DCR")

    def fn(rt, x):
        n, c, h, w = x.shape
        if node.op == "SpaceToDepth":
            perm = (0, 3, 5, 1, 2, 4) if mode == "DCR" else (0, 1, 3, 5, 2, 4)
            y = nbops.permute(nbops.reshape(x, (n, c, h // bs, bs, w // bs, bs)), perm)
            return nbops.reshape(y, (n, c * bs * bs, h // bs, w // bs))
        if mode == "DCR":
            y = nbops.permute(nbops.reshape(x, (n, bs, bs, c // (bs * bs), h, w)), (0, 3, 4, 1, 5, 2))
        else:
            y = nbops.permute(nbops.reshape(x, (n, c // (bs * bs), bs, bs, h, w)), (0, 1, 4, 2, 5, 3))
        return nbops.reshape(y, (n, c // (bs * bs), h * bs, w * bs))
    return fn


@converter("Pad", since=11)
def _pad_node(node):
    mode = node.attr("mode", "constant")
    if mode != "constant":
        node.fail(f"mode={mode!r}; only 'constant' is supported")

    def fn(rt, x, pads, value=None, axes=None):
        p = _host_ints(rt, pads)
        ax = list(range(x.ndim)) if axes is None else [_axis(a, x.ndim) for a in _host_ints(rt, axes)]
        n = len(ax)
        if len(p) != 2 * n:
            raise ValueError(f"pads has {len(p)} entries for {n} axes")
        v = 0 if value is None or rt.host(value).size == 0 else rt.host(value).reshape(-1)[0].item()
        return _pad(rt, x, {a: (p[i], p[n + i]) for i, a in enumerate(ax)}, v)
    return fn, frozenset({1, 2, 3})


# constants, metadata, casts ------------------------------------------------------------------------------------

@converter("Constant")
def _constant(node):
    for name in ("sparse_value", "value_string", "value_strings"):
        if node.attr(name) is not None:
            node.fail(f"attribute {name!r} is not supported")
    if node.attr("value") is not None:
        v = np.asarray(node.attr("value"))
    elif node.attr("value_float") is not None:
        v = np.array(node.attr("value_float"), np.float32)
    elif node.attr("value_floats") is not None:
        v = np.array(node.attr("value_floats"), np.float32)
    elif node.attr("value_int") is not None:
        v = np.array(node.attr("value_int"), np.int64)
    else:
        v = np.array(node.attr("value_ints"), np.int64)
    return lambda rt: v


@converter("ConstantOfShape")
def _constant_of_shape(node):
    value = node.attr("value")
    value = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)

    def fn(rt, shape):
        s = tuple(_host_ints(rt, shape))
        one = rt.constant(value[:1].reshape(()))
        n = int(np.prod(s, dtype=np.int64))
        return nbops.reshape(nbops.cat([nbops.expand(one, n)], 0), s)  # cat: a fresh buffer, even for one element
    return fn, frozenset({0})


@converter("Range")
def _range(node):
    def fn(rt, start, limit, delta):
        s, lim, d = (rt.host(v) for v in (start, limit, delta))
        n = max(int(math.ceil((lim.item() - s.item()) / d.item())), 0)
        return rt.put((s + np.arange(n, dtype=s.dtype) * d).astype(s.dtype))
    return fn, frozenset({0, 1, 2})


@converter("Shape")
def _shape(node):
    start, end = node.attr("start", 0), node.attr("end")
    return lambda rt, x: np.array(x.shape[start:end], dtype=np.int64)


@converter("Size")
def _size(node):
    return lambda rt, x: np.array(int(np.prod(x.shape, dtype=np.int64)), dtype=np.int64)


@converter("Cast", since=6)
def _cast_node(node):
    import onnx

    to = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(node.attr("to")))
    return lambda rt, x: _cast(x, to)


@converter("CastLike", since=15)
def _cast_like(node):
    return lambda rt, x, like: _cast(x, like.dtype)
