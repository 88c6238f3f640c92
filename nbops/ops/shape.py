"""Shape ops: views where torch returns views, copies where it copies.

Mirrors :func:`torch.reshape`, :meth:`torch.Tensor.view`, :func:`torch.permute`, :func:`torch.transpose`,
:func:`torch.squeeze`, :func:`torch.unsqueeze`, :func:`torch.cat`, :func:`torch.stack`,
:meth:`torch.Tensor.expand`, :func:`torch.flatten`, :func:`torch.split`, :func:`torch.chunk`, :func:`torch.narrow`
and :meth:`torch.Tensor.contiguous`.

Views are built from shape and element strides only, with the same rules as torch (its ``computeStride`` for
``view``/``reshape``): on cpu they are NumPy views of the input's memory (of the caller's CPU torch tensor too), on
cuda device-array views of the same device memory. A copy is made only where torch makes one: ``reshape``/
``flatten`` of a layout that no strides can express, ``cat``, ``stack`` and ``contiguous``; it runs the shape
family's strided-copy kernel on the input's target. Pure views launch no kernel (``kernels=()``).
"""

import math
import numbers
import sys

import numpy as np

from .._arrays import cuda_as_strided, kind_of, native, target_of_kind
from .. import _hostpool
from .._dispatch import BOOL_DTYPES, FLOAT_DTYPES, INT_DTYPES, Call, dtype_names, launch_cpu, public
from .._shapes import normalize_dim, normalize_dims
from .pointwise import _operand, _promote, _view_as

DTYPES = FLOAT_DTYPES + INT_DTYPES + BOOL_DTYPES
_DTYPE_SET = frozenset(np.dtype(d) for d in DTYPES)  # what a fast path tests a NumPy array's dtype against


def _start(op, input):
    call = Call(op, input=input)
    call.check_dtype("input", DTYPES)
    return call, call["input"]


def _estrides(x):
    """Element strides of a kernel-side array."""
    item = np.dtype(x.dtype).itemsize
    return tuple(int(s) // item for s in x.strides)


def _contiguous_strides(shape):
    st, acc = [], 1
    for n in reversed(shape):
        st.append(acc)
        acc *= max(n, 1)
    return tuple(reversed(st))


def _view(call, x, shape, strides):
    """A view of ``x``'s memory with ``shape`` and element ``strides`` (caller keeps it inside ``x``'s extent)."""
    shape = tuple(int(s) for s in shape)
    item = np.dtype(x.dtype).itemsize
    bstrides = tuple(int(s) * item for s in strides)
    if call.target == "cpu":
        return np.lib.stride_tricks.as_strided(x, shape, bstrides)
    return cuda_as_strided(x, shape, bstrides)


def _is_int(v):
    """An integer that is not a bool (a plain int first: the ABC check costs ~0.3 us a value)."""
    return type(v) is int or isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))


def _int_sequence(op, name, value):
    """``value`` (an int, or a sequence of ints) as a tuple of Python ints."""
    if _is_int(value):
        return (int(value),)
    try:
        out = tuple(value)
    except TypeError:
        raise TypeError(f"{op}(): argument '{name}' must be a tuple of ints, got {value!r}") from None
    if not all(_is_int(v) for v in out):
        raise TypeError(f"{op}(): argument '{name}' must be a tuple of ints, got {value!r}")
    return tuple(int(v) for v in out)


def _sizes_args(op, sizes):
    """``f(x, 2, 3)`` and ``f(x, (2, 3))`` both give (2, 3)."""
    if len(sizes) == 1 and not _is_int(sizes[0]):
        return _int_sequence(op, "size", sizes[0])
    return _int_sequence(op, "size", sizes)


def _infer_shape(op, shape, numel):
    """Resolve one -1 in ``shape`` against ``numel`` elements, with torch's errors."""
    infer = None
    known = 1
    for i, s in enumerate(shape):
        if s == -1:
            if infer is not None:
                raise ValueError(f"{op}(): only one dimension can be inferred")
            infer = i
        elif s < 0:
            raise ValueError(f"{op}(): invalid shape dimension {s} at index {i} of shape {list(shape)}")
        else:
            known *= s
    if infer is None:
        if known != numel:
            raise ValueError(f"{op}(): shape {list(shape)} is invalid for input of size {numel}")
        return tuple(shape)
    if known == 0:
        if numel == 0:
            raise ValueError(f"{op}(): cannot reshape an array of 0 elements into shape {list(shape)} because the "
                             "unspecified dimension size -1 can be any value and is ambiguous")
        raise ValueError(f"{op}(): shape {list(shape)} is invalid for input of size {numel}")
    if numel % known:
        raise ValueError(f"{op}(): shape {list(shape)} is invalid for input of size {numel}")
    return tuple(shape[:infer]) + (numel // known,) + tuple(shape[infer + 1:])


def _view_strides(oldshape, oldstride, newshape):
    """Strides that let ``newshape`` view memory laid out as (oldshape, oldstride), or None when no strides can
    (torch's ``computeStride``: dims merge or split only inside runs that are contiguous with each other)."""
    numel = math.prod(oldshape)
    if numel == 0:
        return tuple(oldstride) if tuple(oldshape) == tuple(newshape) else _contiguous_strides(newshape)
    if not oldshape:
        return (1,) * len(newshape)
    newstride = [0] * len(newshape)
    view_d = len(newshape) - 1
    chunk_base = oldstride[-1]
    tensor_numel = view_numel = 1
    for tensor_d in range(len(oldshape) - 1, -1, -1):
        tensor_numel *= oldshape[tensor_d]
        if tensor_d == 0 or (oldshape[tensor_d - 1] != 1 and oldstride[tensor_d - 1] != tensor_numel * chunk_base):
            while view_d >= 0 and (view_numel < tensor_numel or newshape[view_d] == 1):
                newstride[view_d] = view_numel * chunk_base
                view_numel *= newshape[view_d]
                view_d -= 1
            if view_numel != tensor_numel:
                return None
            if tensor_d > 0:
                chunk_base = oldstride[tensor_d - 1]
                tensor_numel = view_numel = 1
    if view_d != -1:
        return None
    return tuple(newstride)


def _reshape(call, x, shape):
    """The reshape of ``x`` to ``shape`` (already inferred): a view when strides allow, else a C-contiguous copy."""
    st = _view_strides(tuple(x.shape), _estrides(x), shape)
    if st is None:
        x = call.contiguous(x)
        st = _contiguous_strides(shape)
    return _view(call, x, shape, st)


def _size(x):
    return math.prod(x.shape)


@public("shape", kernels=("copy",))
def reshape(input, shape):
    """Returns an array with ``input``'s elements in ``shape``: a view when the strides allow one, else a copy.

    Mirrors :func:`torch.reshape`.

    Args:
        input: array of any shape.
        shape: tuple of ints (an int is taken as a 1-tuple); one entry may be -1, inferred from the others.

    Returns:
        array of ``shape`` and ``input``'s dtype, sharing ``input``'s memory when possible; same kind of array and
        device as input.

    Targets: cpu, cuda. Dtypes: float32, float64, int8, int16, int32, int64, uint8, bool.

    >>> import numpy as np, nbops
    >>> nbops.reshape(np.arange(6), (2, -1))
    array([[0, 1, 2],
           [3, 4, 5]])
    """
    call, x = _start("reshape", input)
    shape = _infer_shape("reshape", _int_sequence("reshape", "shape", shape), _size(x))
    return call.wrap(_reshape(call, x, shape))


@public("shape", kernels=())
def view(input, *shape):
    """Returns a view of ``input`` with a new shape; raises when no strides can express it.

    Mirrors :meth:`torch.Tensor.view` (the shape form; ``view(dtype)`` is not supported).

    Args:
        input: array of any shape.
        *shape: ints, or one tuple of ints; one entry may be -1.

    Returns:
        a view of ``input``'s memory with the new shape; same kind of array and device as input.

    Raises:
        ValueError: when the shape does not match the size, or when the layout cannot be viewed so (use
        :func:`reshape`).

    Targets: cpu, cuda. Dtypes: float32, float64, int8, int16, int32, int64, uint8, bool.

    >>> import numpy as np, nbops
    >>> nbops.view(np.arange(6), 3, 2).shape
    (3, 2)
    """
    call, x = _start("view", input)
    if len(shape) == 1 and (isinstance(shape[0], (type, np.dtype, str)) or type(shape[0]).__name__ == "dtype"):
        raise NotImplementedError("view(): viewing as another dtype is not supported; pass a shape")
    shape = _infer_shape("view", _sizes_args("view", shape), _size(x))
    st = _view_strides(tuple(x.shape), _estrides(x), shape)
    if st is None:
        raise ValueError("view(): view size is not compatible with input's size and stride (at least one dimension "
                         "spans across two contiguous subspaces). Use reshape(...) instead.")
    return call.wrap(_view(call, x, shape, st))


def _fast_permute(x, dims):
    """``x.transpose(dims)`` when ``dims`` holds plain ints that permute x's dims (negative ones from the end), else
    None: the general path then checks the call and names what is wrong. A NumPy caller's permute, 4.0 -> 0.7 us."""
    nd = x.ndim
    if len(dims) != nd:
        return None
    seen = 0
    for d in dims:
        if type(d) is not int or not -nd <= d < nd:
            return None
        seen |= 1 << (d % nd)
    return x.transpose(dims) if seen == (1 << nd) - 1 else None


@public("shape", kernels=())
def permute(input, dims):
    """Returns a view of ``input`` with its dimensions reordered.

    Mirrors :func:`torch.permute`.

    Args:
        input: array of any shape.
        dims: the new order, a permutation of ``range(input.ndim)`` (negative dims count from the end).

    Returns:
        a view of ``input``'s memory of shape ``[input.shape[d] for d in dims]``; same kind of array and device as
        input.

    Targets: cpu, cuda. Dtypes: float32, float64, int8, int16, int32, int64, uint8, bool.

    >>> import numpy as np, nbops
    >>> nbops.permute(np.zeros((2, 3, 4)), (2, 0, 1)).shape
    (4, 2, 3)
    """
    if type(input) is np.ndarray and type(dims) in (tuple, list) and input.dtype in _DTYPE_SET:
        out = _fast_permute(input, dims)
        if out is not None:
            return out
    call, x = _start("permute", input)
    dims = _int_sequence("permute", "dims", dims)
    nd = len(x.shape)
    if len(dims) != nd:
        raise ValueError(f"permute(): number of dims don't match: input has {nd} dims but dims has {len(dims)}")
    dims = tuple(normalize_dim("permute", d, nd) for d in dims) if nd else ()
    if len(set(dims)) != len(dims):
        raise ValueError("permute(): duplicate dims are not allowed")
    if call.target == "cpu":
        return call.wrap(x.transpose(dims))  # NumPy's own view: 2 us less than as_strided's
    shape, st = tuple(x.shape), _estrides(x)
    return call.wrap(_view(call, x, [shape[d] for d in dims], [st[d] for d in dims]))


@public("shape", kernels=())
def transpose(input, dim0, dim1):
    """Returns a view of ``input`` with dimensions ``dim0`` and ``dim1`` swapped.

    Mirrors :func:`torch.transpose`.

    Args:
        input: array of any shape.
        dim0: the first dimension to swap.
        dim1: the second dimension to swap.

    Returns:
        a view of ``input``'s memory; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64, int8, int16, int32, int64, uint8, bool.

    >>> import numpy as np, nbops
    >>> nbops.transpose(np.zeros((2, 3)), 0, 1).shape
    (3, 2)
    """
    if type(input) is np.ndarray and type(dim0) is int and type(dim1) is int and input.dtype in _DTYPE_SET \
            and -input.ndim <= min(dim0, dim1) and max(dim0, dim1) < input.ndim:
        return input.swapaxes(dim0, dim1)  # NumPy's own view of a plain call: 6.9 -> 0.5 us (torch 1.0)
    call, x = _start("transpose", input)
    nd = len(x.shape)
    d0, d1 = normalize_dim("transpose", dim0, nd, "dim0"), normalize_dim("transpose", dim1, nd, "dim1")
    shape, st = list(x.shape), list(_estrides(x))
    if nd:
        shape[d0], shape[d1] = shape[d1], shape[d0]
        st[d0], st[d1] = st[d1], st[d0]
    return call.wrap(_view(call, x, shape, st))


@public("shape", kernels=())
def squeeze(input, dim=None):
    """Returns a view of ``input`` without its size-1 dimensions (all of them, or those in ``dim``).

    Mirrors :func:`torch.squeeze`.

    Args:
        input: array of any shape.
        dim: None (every size-1 dim), an int or a tuple of ints; named dims that are not size 1 stay.
            Default: None.

    Returns:
        a view of ``input``'s memory; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64, int8, int16, int32, int64, uint8, bool.

    >>> import numpy as np, nbops
    >>> nbops.squeeze(np.zeros((1, 3, 1)), 0).shape
    (3, 1)
    """
    call, x = _start("squeeze", input)
    nd = len(x.shape)
    if dim is None:
        dims = set(range(nd))
    else:
        if not _is_int(dim):
            dim = _int_sequence("squeeze", "dim", dim)
        dims = set(normalize_dims("squeeze", dim, nd))
    keep = [d for d in range(nd) if not (d in dims and x.shape[d] == 1)]
    st = _estrides(x)
    return call.wrap(_view(call, x, [x.shape[d] for d in keep], [st[d] for d in keep]))


@public("shape", kernels=())
def unsqueeze(input, dim):
    """Returns a view of ``input`` with a size-1 dimension inserted at ``dim``.

    Mirrors :func:`torch.unsqueeze`.

    Args:
        input: array of any shape.
        dim: where the new dimension goes, in ``[-input.ndim - 1, input.ndim]``.

    Returns:
        a view of ``input``'s memory with one more dimension; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64, int8, int16, int32, int64, uint8, bool.

    >>> import numpy as np, nbops
    >>> nbops.unsqueeze(np.zeros(3), -1).shape
    (3, 1)
    """
    call, x = _start("unsqueeze", input)
    return call.wrap(_unsqueeze(call, x, normalize_dim("unsqueeze", dim, len(x.shape) + 1)))


def _unsqueeze(call, x, d):
    shape, st = list(x.shape), list(_estrides(x))
    inner = st[d] * shape[d] if d < len(shape) else 1
    return _view(call, x, shape[:d] + [1] + shape[d:], st[:d] + [inner] + st[d:])


class _BFloat16:
    """torch's bfloat16 (no NumPy dtype) in dtype promotion; its tensors come in as views of their int16 bits."""

    kind, itemsize = "f", 2

    def __str__(self):
        return "bfloat16"


BFLOAT16 = _BFloat16()
_F16 = np.dtype(np.float16)
_HALVES = (_F16, BFLOAT16)


def _promote_with_halves(a, b):
    """torch.promote_types over nbops' dtypes, float16 and BFLOAT16: float16 with bfloat16 is float32, a wider
    float wins, and integers or bools with a half float give that half float."""
    if a is None or b is None:
        return b if a is None else a
    if a is b:
        return a
    if a in _HALVES and b in _HALVES:
        return FLOAT_DTYPES[0]
    if a is BFLOAT16 or b is BFLOAT16:
        other = b if a is BFLOAT16 else a
        return other if other.kind == "f" else BFLOAT16
    return _promote(a, b)


def _bfloat16_bits(t):
    """The int16 bits of a torch bfloat16 tensor (a zero-copy view, any device and strides), else None."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(t, torch.Tensor) and t.dtype == torch.bfloat16:
        return t.view(torch.int16)
    return None


def _bfloat16_to_float32(call, bits):
    """float32 values of the bfloat16 numbers whose int16 ``bits`` are given (an array on the call's target).

    A bfloat16 is the upper half of a float32, so the float32 bit pattern is ``bits << 16``: computed as
    ``int32(bits) * 65536`` (the sign-extended high half wraps into place) by the pointwise kernel, then
    reinterpreted as float32. Exact, on either target; NaN and inf stay NaN and inf."""
    wide = call.astype(bits, np.int32)
    out = call.empty(wide.shape, np.int32)
    if out.size:
        call.launch("pointwise_binary", out, wide, _operand(call, "shift", 1 << 16, wide.dtype), op="mul")
    return _view_as(call, out, FLOAT_DTYPES[0])


def _sequence_call(op, tensors):
    """The ``Call`` of cat/stack, the kernel-side arrays, and torch's promoted result dtype. float16 inputs and
    torch bfloat16 tensors are taken where the result is a dtype nbops supports (bfloat16 ones are turned into
    float32 here; every input is cast to the result by the copy kernel); any other result is a TypeError."""
    if isinstance(tensors, (str, bytes)) or not hasattr(tensors, "__len__") or hasattr(tensors, "shape"):
        raise TypeError(f"{op}(): argument 'tensors' must be a sequence of arrays, got {type(tensors).__name__}")
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{op}(): expected a non-empty sequence of arrays")
    bits = [_bfloat16_bits(t) for t in tensors]
    names = [f"tensors[{i}]" for i in range(len(tensors))]
    call = Call(op, **{n: t if b is None else b for n, t, b in zip(names, tensors, bits)})
    dtype = None
    for n, b in zip(names, bits):
        dtype = _promote_with_halves(dtype, BFLOAT16 if b is not None else call.check_dtype(n, DTYPES + (_F16,)))
    if dtype not in DTYPES:
        raise TypeError(f"{op}(): the result dtype {dtype} (torch's promotion of the inputs' dtypes) is not "
                        f"supported; supported: {dtype_names(DTYPES)}")
    xs = [call[n] if b is None else _bfloat16_to_float32(call, call[n]) for n, b in zip(names, bits)]
    return call, xs, dtype


def _cat(call, xs, dim, dtype):
    """Concatenate kernel-side arrays ``xs`` (same rank, dims checked) along ``dim`` into a new array."""
    shape = list(xs[0].shape)
    shape[dim] = sum(int(x.shape[dim]) for x in xs)
    out = call.empty(shape, dtype)
    at = 0
    for x in xs:
        n = int(x.shape[dim])
        if n and _size(x):
            index = (slice(None),) * dim + (slice(at, at + n),)
            call.launch("copy", out[index], x)
        at += n
    return out


def _fast_cat(tensors, dim):
    """The common CPU call without the general path: a list or tuple of NumPy arrays of one supported dtype and one
    rank (>= 1) whose shapes match but along a Python int ``dim`` in range. The same copies into the same result as
    ``_cat``'s, without the sequence's argument objects, promotion and messages: two (8, 64) float32 arrays, 14.9-15.6
    -> 6.0-7.2 us a call (torch 2.1). Returns the result, or None for any other call, which then takes the general path
    (and its errors)."""
    if type(tensors) not in (list, tuple) or not tensors or type(dim) is not int:
        return None
    first = tensors[0]
    if type(first) is not np.ndarray or first.dtype not in _DTYPE_SET or not -first.ndim <= dim < first.ndim:
        return None
    d = dim % first.ndim
    shape = list(first.shape)
    shape[d] = 0
    for x in tensors:
        if type(x) is not np.ndarray or x.dtype != first.dtype or x.ndim != first.ndim:
            return None
        for k, n in enumerate(x.shape):
            if k != d and n != shape[k]:
                return None
        shape[d] += x.shape[d]
    out = _hostpool.empty(tuple(shape), first.dtype)
    lead = (slice(None),) * d
    at = 0
    for x in tensors:
        n = x.shape[d]
        if x.size:
            launch_cpu("cat", "copy", out[lead + (slice(at, at + n),)], x)
        at += n
    return out


@public("shape", kernels=("copy", "fill", "pointwise_binary"))
def cat(tensors, dim=0):
    """Concatenates arrays along an existing dimension into a new array.

    Mirrors :func:`torch.cat`.

    Args:
        tensors: non-empty sequence of arrays of one rank (>= 1) whose shapes match except along ``dim``; 1-D
            empty arrays are skipped, as in torch. Dtypes are promoted as torch does (float16 and torch bfloat16
            inputs too, where the result is a dtype below; any other result raises TypeError naming it).
        dim: the dimension to concatenate along. Default: 0.

    Returns:
        a new C-contiguous array; same kind of array and device as the first array.

    Targets: cpu, cuda. Dtypes: float32, float64, int8, int16, int32, int64, uint8, bool.

    >>> import numpy as np, nbops
    >>> nbops.cat([np.zeros((1, 2)), np.ones((2, 2))]).shape
    (3, 2)
    """
    out = _fast_cat(tensors, dim)
    if out is not None:
        return out
    call, xs, dtype = _sequence_call("cat", tensors)
    for i, x in enumerate(xs):
        if not len(x.shape):
            raise ValueError(f"cat(): zero-dimensional array (at position {i}) cannot be concatenated")
    kept = [x for x in xs if not (len(x.shape) == 1 and x.shape[0] == 0)]
    if not kept:
        return call.wrap(call.empty((0,), dtype))
    ref = tuple(kept[0].shape)
    d = normalize_dim("cat", dim, len(ref))
    for i, x in enumerate(xs):
        if len(x.shape) == 1 and x.shape[0] == 0:
            continue
        if len(x.shape) != len(ref):
            raise ValueError(f"cat(): arrays must have the same number of dimensions: got {len(ref)} and "
                             f"{len(x.shape)}")
        for k, (a, b) in enumerate(zip(ref, x.shape)):
            if k != d and a != b:
                raise ValueError(f"cat(): sizes of arrays must match except in dimension {d}. Expected size {a} "
                                 f"but got size {b} for array number {i} in the list.")
    return call.wrap(_cat(call, kept, d, dtype))


@public("shape", kernels=("copy", "fill", "pointwise_binary"))
def stack(tensors, dim=0):
    """Stacks arrays of one shape along a new dimension into a new array.

    Mirrors :func:`torch.stack`.

    Args:
        tensors: non-empty sequence of arrays of the same shape; dtypes are promoted as torch does (float16 and
            torch bfloat16 inputs too, where the result is a dtype below; any other result raises TypeError).
        dim: where the new dimension goes, in ``[-ndim - 1, ndim]``. Default: 0.

    Returns:
        a new C-contiguous array with one more dimension; same kind of array and device as the first array.

    Targets: cpu, cuda. Dtypes: float32, float64, int8, int16, int32, int64, uint8, bool.

    >>> import numpy as np, nbops
    >>> nbops.stack([np.zeros(3), np.ones(3)], dim=1).shape
    (3, 2)
    """
    call, xs, dtype = _sequence_call("stack", tensors)
    ref = tuple(xs[0].shape)
    for i, x in enumerate(xs):
        if tuple(x.shape) != ref:
            raise ValueError(f"stack(): expects each array to be equal size, but got {list(ref)} at entry 0 and "
                             f"{list(x.shape)} at entry {i}")
    d = normalize_dim("stack", dim, len(ref) + 1)
    return call.wrap(_cat(call, [_unsqueeze(call, x, d) for x in xs], d, dtype))


@public("shape", kernels=())
def expand(input, *sizes):
    """Returns a view of ``input`` broadcast to ``sizes`` (no copy: expanded dims have stride 0).

    Mirrors :meth:`torch.Tensor.expand`.

    Args:
        input: array of any shape.
        *sizes: ints, or one tuple of ints, at least ``input.ndim`` of them; -1 keeps an existing size, new
            leading dims may be added. Only size-1 dims can grow.

    Returns:
        a view of ``input``'s memory (write to it with care: elements alias); same kind of array and device as
        input.

    Targets: cpu, cuda. Dtypes: float32, float64, int8, int16, int32, int64, uint8, bool.

    >>> import numpy as np, nbops
    >>> nbops.expand(np.array([[1], [2]]), 2, 3)
    array([[1, 1, 1],
           [2, 2, 2]])
    """
    call, x = _start("expand", input)
    sizes = _sizes_args("expand", sizes)
    shape, st = tuple(x.shape), _estrides(x)
    if len(sizes) < len(shape):
        raise ValueError(f"expand(): the number of sizes provided ({len(sizes)}) must be greater or equal to the "
                         f"number of dimensions in the array ({len(shape)})")
    lead = len(sizes) - len(shape)
    new_shape, new_st = [], []
    for i, s in enumerate(sizes):
        if i < lead:
            if s < 0:
                raise ValueError(f"expand(): the expanded size of the array ({s}) isn't allowed in a leading, "
                                 f"non-existing dimension {i}")
            new_shape.append(s)
            new_st.append(0)
            continue
        have, stride = shape[i - lead], st[i - lead]
        if s == -1:
            s = have
        if s < 0 or (have != s and have != 1):
            raise ValueError(f"expand(): the expanded size of the array ({s}) must match the existing size ({have}) "
                             f"at non-singleton dimension {i}. Target sizes: {list(sizes)}. Array sizes: "
                             f"{list(shape)}")
        new_shape.append(s)
        new_st.append(stride if have == s else 0)
    return call.wrap(_view(call, x, new_shape, new_st))


@public("shape", kernels=("copy",))
def flatten(input, start_dim=0, end_dim=-1):
    """Flattens dimensions ``start_dim`` to ``end_dim`` into one: a view when possible, else a copy.

    Mirrors :func:`torch.flatten`.

    Args:
        input: array of any shape (a 0-d array gives a 1-element 1-D array).
        start_dim: first dimension to flatten. Default: 0.
        end_dim: last dimension to flatten. Default: -1.

    Returns:
        array with the dims merged; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64, int8, int16, int32, int64, uint8, bool.

    >>> import numpy as np, nbops
    >>> nbops.flatten(np.zeros((2, 3, 4)), 1).shape
    (2, 12)
    """
    call, x = _start("flatten", input)
    nd = len(x.shape)
    s = normalize_dim("flatten", start_dim, nd, "start_dim")
    e = normalize_dim("flatten", end_dim, nd, "end_dim")
    if s > e:
        raise ValueError("flatten(): invalid args: start_dim cannot come after end_dim")
    if nd == 0:
        return call.wrap(_view(call, x, (1,), (1,)))
    if s == e:
        return call.wrap(x)
    shape = tuple(x.shape)
    inner = math.prod(shape[s:e + 1])
    return call.wrap(_reshape(call, x, shape[:s] + (inner,) + shape[e + 1:]))


def _narrow(call, x, d, start, length):
    shape = list(x.shape)
    shape[d] = length
    if 0 in shape:
        # an empty piece holds no memory; real numba device arrays refuse to slice the (NULL) memory of an empty
        # array, so the piece is a zero-size view rather than a slice
        return _view(call, x, shape, _estrides(x))
    index = (slice(None),) * d + (slice(start, start + length),)
    return x[index]


def _check_split_dim(op, x, dim):
    if not len(x.shape):
        raise ValueError(f"{op}(): expects at least a 1-dimensional array")
    return normalize_dim(op, dim, len(x.shape))


@public("shape", kernels=())
def split(tensor, split_size_or_sections, dim=0):
    """Splits an array into views along ``dim``.

    Mirrors :func:`torch.split`.

    Args:
        tensor: array with at least one dimension.
        split_size_or_sections: an int (every piece that size, the last one smaller if needed), or a sequence of
            sizes summing to ``tensor.shape[dim]``.
        dim: the dimension to split. Default: 0.

    Returns:
        tuple of views of ``tensor``'s memory; same kind of array and device as tensor.

    Targets: cpu, cuda. Dtypes: float32, float64, int8, int16, int32, int64, uint8, bool.

    >>> import numpy as np, nbops
    >>> [p.tolist() for p in nbops.split(np.arange(5), 2)]
    [[0, 1], [2, 3], [4]]
    """
    call = Call("split", tensor=tensor)
    call.check_dtype("tensor", DTYPES)
    x = call["tensor"]
    d = _check_split_dim("split", x, dim)
    n = int(x.shape[d])
    if _is_int(split_size_or_sections):
        size = int(split_size_or_sections)
        if size < 0:
            raise ValueError(f"split(): expects split_size be non-negative, but got split_size={size}")
        if size == 0 and n:
            raise ValueError(f"split(): split_size can only be 0 if dimension size is 0, but got dimension size of {n}")
        sizes = [size] * (n // size) + ([n % size] if n % size else []) if size else []
        sizes = sizes or [n]
    else:
        sizes = list(_int_sequence("split", "split_size_or_sections", split_size_or_sections))
        if any(s < 0 for s in sizes):
            raise ValueError(f"split(): split_sizes must be non-negative, got {sizes}")
        if sum(sizes) != n:
            raise ValueError(f"split(): split_sizes must sum exactly to {n} (the size of dimension {d}), but got "
                             f"split_sizes={sizes}")
    return _pieces(call, x, d, sizes)


def _pieces(call, x, d, sizes):
    out, at = [], 0
    for s in sizes:
        out.append(call.wrap(_narrow(call, x, d, at, s)))
        at += s
    return tuple(out)


@public("shape", kernels=())
def chunk(input, chunks, dim=0):
    """Splits an array into at most ``chunks`` views of equal size along ``dim`` (the last may be smaller).

    Mirrors :func:`torch.chunk`.

    Args:
        input: array with at least one dimension.
        chunks: number of pieces wanted (> 0); fewer come back when the size does not allow more, as in torch.
        dim: the dimension to split. Default: 0.

    Returns:
        tuple of views of ``input``'s memory; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64, int8, int16, int32, int64, uint8, bool.

    >>> import numpy as np, nbops
    >>> [p.tolist() for p in nbops.chunk(np.arange(5), 3)]
    [[0, 1], [2, 3], [4]]
    """
    call, x = _start("chunk", input)
    if not _is_int(chunks):
        raise TypeError(f"chunk(): argument 'chunks' must be an int, got {chunks!r}")
    if chunks <= 0:
        raise ValueError(f"chunk(): expects 'chunks' to be greater than 0, got: {chunks}")
    d = _check_split_dim("chunk", x, dim)
    n = int(x.shape[d])
    size = (n + chunks - 1) // chunks
    if n == 0:
        return _pieces(call, x, d, [0] * int(chunks))
    sizes = [size] * (n // size) + ([n % size] if n % size else [])
    return _pieces(call, x, d, sizes)


def _start_index(start):
    """narrow's ``start``: an int, or (as torch takes a 0-d tensor) a 0-d integer array in host memory. A device
    array is refused: reading its value would synchronise with the device."""
    if _is_int(start):
        return int(start)
    kind = kind_of(start)
    on_host = kind is not None and target_of_kind(start, kind) == "cpu"
    if on_host:
        value = native(start, kind)
        if value.shape == () and value.dtype.kind in "iu":
            return int(value)
    where = " (a device array: reading it would synchronise; pass an int)" if kind and not on_host else ""
    raise TypeError(f"narrow(): argument 'start' must be an int or a 0-d integer array in host memory, got "
                    f"{start!r}{where}")


@public("shape", kernels=())
def narrow(input, dim, start, length):
    """Returns a view of ``input`` restricted to ``[start, start + length)`` along ``dim``.

    Mirrors :func:`torch.narrow`.

    Args:
        input: array with at least one dimension.
        dim: the dimension to narrow.
        start: first index kept, in ``[-size, size]`` (negative counts from the end): an int or a 0-d integer
            array in host memory (NumPy, CPU torch tensor).
        length: number of indices kept (>= 0, ``start + length <= size``).

    Returns:
        a view of ``input``'s memory; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64, int8, int16, int32, int64, uint8, bool.

    >>> import numpy as np, nbops
    >>> nbops.narrow(np.arange(6), 0, 2, 3)
    array([2, 3, 4])
    """
    call, x = _start("narrow", input)
    if not len(x.shape):
        raise ValueError("narrow(): cannot be applied to a 0-dim array")
    d = normalize_dim("narrow", dim, len(x.shape))
    start = _start_index(start)
    if not _is_int(length):
        raise TypeError(f"narrow(): argument 'length' must be an int, got {length!r}")
    n = int(x.shape[d])
    if not -n <= start <= n:
        raise IndexError(f"narrow(): start out of range (expected to be in range of [{-n}, {n}], but got {start})")
    start = int(start) + n if start < 0 else int(start)
    if length < 0:
        raise ValueError("narrow(): length must be non-negative")
    if start + length > n:
        raise ValueError(f"narrow(): start ({start}) + length ({length}) exceeds dimension size ({n})")
    return call.wrap(_narrow(call, x, d, start, int(length)))


@public("shape", kernels=("copy",))
def contiguous(input):
    """Returns ``input`` itself when it is C-contiguous, else a C-contiguous copy.

    Mirrors :meth:`torch.Tensor.contiguous`.

    Args:
        input: array of any shape and strides.

    Returns:
        C-contiguous array with ``input``'s values; same kind of array and device as input.

    Targets: cpu, cuda. Dtypes: float32, float64, int8, int16, int32, int64, uint8, bool.

    >>> import numpy as np, nbops
    >>> nbops.contiguous(np.zeros((2, 3)).T).flags.c_contiguous
    True
    """
    if type(input) is np.ndarray and input.dtype in _DTYPE_SET:  # the general path's copy without its Call (a (64, 8)
        # transposed float32 view: 5.8 -> 3.2 us, torch 2.4)
        if input.flags.c_contiguous:
            return input
        out = _hostpool.empty(input.shape, input.dtype)
        if out.size:
            launch_cpu("contiguous", "copy", out, input)
        return out
    call, x = _start("contiguous", input)
    return call.wrap(call.contiguous(x))
