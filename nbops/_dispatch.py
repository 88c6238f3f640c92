"""All dispatch code: the launcher registry, the table of public ops, and ``Call``, which carries one public call.

A *launcher* has the same contract on both targets: ``launcher(out, *inputs, **consts) -> None``; outputs come
first, preallocated on the target, inputs are canonical (contiguous unless the launcher says otherwise).
Launchers live in ``nbops/cpu/<family>.py`` and ``nbops/cuda/<family>.py`` and register themselves with
``@register(name, target)``. A family's module is imported the first time one of its launchers is asked for on that
target, so ``numba.cuda`` loads only when a CUDA array arrives.
"""

import importlib
import math
import numbers
from dataclasses import dataclass

import numpy as np

from . import _arrays, _runtime

TARGETS = ("cpu", "cuda")
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
INT_DTYPES = tuple(np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64, np.uint8))
BOOL_DTYPES = (np.dtype(np.bool_),)


def plain_float_array(x):
    """True for a C-contiguous float32/float64 NumPy array: the common call that the fast paths of ops called at
    high rates (reductions, global pooling) serve without a ``Call``, since no check can fail for it. The dtype test
    is by identity with numpy's canonical dtypes (cheap; a byte-swapped array is not plain)."""
    return type(x) is np.ndarray and (x.dtype is FLOAT_DTYPES[0] or x.dtype is FLOAT_DTYPES[1]) and \
        x.flags.c_contiguous


_LAUNCHERS = {}  # (kernel name, target) -> launcher
_FAMILY = {}  # kernel name -> family module name under nbops.cpu / nbops.cuda
PUBLIC_OPS = {}  # public name -> PublicOp


@dataclass(frozen=True)
class PublicOp:
    """A public function, its family, and the launchers it calls (all must exist on every target)."""

    name: str
    fn: object
    family: str
    kernels: tuple


def register(name, target):
    """Decorator for a launcher: ``@register("relu", "cpu")`` directly above ``def relu(out, x): ...``."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}")

    def deco(fn):
        _LAUNCHERS[(name, target)] = fn
        return fn

    return deco


def declare(family, *kernels):
    """State which family module holds each launcher named in ``kernels``."""
    for k in kernels:
        _FAMILY.setdefault(k, family)


def public(family, kernels=None):
    """Decorator for a public op: records it with the launchers it uses (its own name when ``kernels`` is None)."""

    def deco(fn):
        ks = (fn.__name__,) if kernels is None else tuple(kernels)
        declare(family, *ks)
        PUBLIC_OPS[fn.__name__] = PublicOp(fn.__name__, fn, family, ks)
        return fn

    return deco


def kernel(name, target):
    """The launcher ``name`` for ``target``, importing its family module on first use."""
    fn = _LAUNCHERS.get((name, target))
    if fn is None:
        family = _FAMILY.get(name)
        if family is None:
            raise KeyError(f"no family declares the launcher {name!r}")
        importlib.import_module(f"nbops.{target}.{family}")
        fn = _LAUNCHERS.get((name, target))
        if fn is None:
            raise NotImplementedError(f"{name}: no {target} kernel")
    return fn


def launch_cpu(op, name, /, *args, **consts):
    """Run the cpu launcher ``name`` for the public op ``op`` under the CPU launch guard (``_runtime.cpu_guard``):
    every CPU kernel launch goes through here, a ``Call``'s and an op's fast path for plain NumPy arrays alike.
    ``op`` and ``name`` are positional-only: launchers take keyword arguments of those names (pointwise ``op=``)."""
    with _runtime.cpu_guard(op):
        return kernel(name, "cpu")(*args, **consts)


def _describe(x):
    t = type(x)
    return f"{t.__module__}.{t.__qualname__}" if t.__module__ != "builtins" else t.__qualname__


def is_scalar(x):
    return isinstance(x, (numbers.Number, np.generic)) and not isinstance(x, np.ndarray)


def dtype_names(dtypes):
    return ", ".join(str(np.dtype(d)) for d in dtypes)


class Call:
    """One public call: the op's name, the target its arrays live on, and the caller's array kind.

    ``Call("add", input=x, other=y, scalars=("other",))`` checks that every named argument is an array (or None, or
    a number where ``scalars`` allows it), that all arrays live on one target, and keeps kernel-side views of them
    (``call["input"]``). The first named argument is required (None there is a TypeError); later ones may be None
    (optional arrays such as ``bias``). The first array argument decides the kind of array handed back by ``wrap``.
    On CUDA the call also decides, once, the stream all its kernels go on (``stream``, see ``_arrays.call_stream``):
    ``launch`` makes the call current on its thread while the launcher runs, and the launchers read the stream and
    allocate temporaries through ``nbops/cuda/_util.py`` (``stream()``, ``empty()``).
    """

    def __init__(self, op, scalars=(), **args):
        self.op = op
        self.arrays = {}
        self.kind = self.like = self.target = None
        first_name = None
        for position, (name, value) in enumerate(args.items()):
            if value is None and position:
                continue
            kind = _arrays.kind_of(value)
            if kind is None:
                if name in scalars and is_scalar(value):
                    continue
                allowed = "an array or a number" if name in scalars else "an array"
                raise TypeError(
                    f"{op}(): argument '{name}' must be {allowed} (numpy.ndarray, torch.Tensor or a CUDA array), "
                    f"got {_describe(value)}"
                )
            target = _arrays.target_of_kind(value, kind)
            if target not in TARGETS:
                raise TypeError(f"{op}(): argument '{name}' lives on unsupported device {target!r}")
            if self.target is None:
                self.kind, self.like, self.target, first_name = kind, value, target, name
            elif target != self.target:
                raise ValueError(
                    f"{op}(): expected all arrays on one target, but '{first_name}' is on {self.target} and "
                    f"'{name}' is on {target}; nbops never copies between host and device behind your back"
                )
            self.arrays[name] = _arrays.native(value, kind)
        self.stream = _arrays.call_stream(self.kind, self.like) if self.target == "cuda" else 0

    def __getitem__(self, name):
        return self.arrays[name]

    def __contains__(self, name):
        return name in self.arrays

    def require_target(self, target=None):
        """Set the target when the call has no array argument at all (e.g. every input was a scalar)."""
        if self.target is None:
            self.target, self.kind = target or "cpu", _arrays.NUMPY

    def check_dtype(self, name, allowed=FLOAT_DTYPES):
        """Raise TypeError unless array argument ``name`` has one of the ``allowed`` dtypes; return its dtype."""
        dt = np.dtype(self.arrays[name].dtype)
        if dt not in allowed:
            raise TypeError(f"{self.op}(): argument '{name}' has dtype {dt}; supported: {dtype_names(allowed)}")
        return dt

    def check_ndim(self, name, allowed):
        """Raise ValueError unless array argument ``name`` has a rank in ``allowed``; return the rank."""
        nd = len(self.arrays[name].shape)
        if nd not in allowed:
            want = " or ".join(f"{n}-D" for n in allowed)
            raise ValueError(
                f"{self.op}(): expected argument '{name}' to be {want}, got {nd}-D with shape "
                f"{tuple(self.arrays[name].shape)}"
            )
        return nd

    def require_writeable(self, name, why):
        """Raise ValueError naming the op when argument ``name``, which the op writes in place (``why``), is a
        read-only NumPy array (numba's kernels would fail to compile for it, NumPy's copies to it would raise
        without naming the op)."""
        x = self.arrays.get(name)
        if isinstance(x, np.ndarray) and not x.flags.writeable:
            raise ValueError(f"{self.op}(): argument '{name}' is written in place ({why}) but is a read-only array")

    def empty(self, shape, dtype):
        """A new uninitialised array on this call's target (kernel-side kind)."""
        return _arrays.empty(tuple(int(s) for s in shape), dtype, self.target, self.kind, self.like, self.stream)

    def zeros(self, shape, dtype):
        out = self.empty(shape, dtype)
        if self.target == "cpu":
            out.fill(0)
        elif math.prod(shape) > 0:
            self.launch("fill", out, value=0)
        return out

    def contiguous(self, x):
        """``x`` itself when C-contiguous, else a C-contiguous copy made on the target by its "copy" kernel (on the
        CPU a transposing copy is tiled there: NumPy's own copy walks the input a row stride per element)."""
        if _arrays.is_c_contiguous(x):
            return x
        out = self.empty(x.shape, x.dtype)
        if out.size:
            self.launch("copy", out, x)
        return out

    def astype(self, x, dtype):
        """``x`` cast to ``dtype`` and made C-contiguous, on the target (``x`` itself when nothing is needed)."""
        dtype = np.dtype(dtype)
        if np.dtype(x.dtype) == dtype:
            return self.contiguous(x)
        out = self.empty(x.shape, dtype)
        if out.size:
            self.launch("copy", out, x)
        return out

    def launch(self, name, *args, **consts):
        if self.target != "cpu":
            state = _arrays.LAUNCH
            outer, state.call = state.call, self
            try:
                return kernel(name, self.target)(*args, **consts)
            finally:
                state.call = outer
        return launch_cpu(self.op, name, *args, **consts)

    def wrap(self, out):
        """Return kernel-side result(s) as the caller's array kind, on the caller's device."""
        if isinstance(out, tuple):
            return type(out)(*(self.wrap(o) for o in out)) if hasattr(out, "_fields") else tuple(
                self.wrap(o) for o in out
            )
        if out is None or self.kind is None:
            return out
        return _arrays.wrap(out, self.kind, self.like)


declare("shape", "copy", "fill")
