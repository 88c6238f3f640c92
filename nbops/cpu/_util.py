"""Helpers the CPU kernel modules share: the vector width the njit kernels compile for, stack-allocated arrays
that LLVM can keep in registers, borrowed views, and the launch of a parallel kernel on a small input."""

import types as types_module

import numba
from llvmlite import binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils, ir_utils
from numba.core.caching import NullCache
from numba.extending import intrinsic
from numba.np.arrayobj import make_array, populate_array

SERIAL_BELOW = 65536  # elements below which a parallel kernel runs on the calling thread: waking the pool costs
# more than it saves


def vector_bytes():
    """Bytes of the widest vector register LLVM will use for the njit kernels: 64 with AVX-512 (32 registers),
    else 32 (AVX2 and narrower, and any CPU named through NUMBA_CPU_NAME without its features, e.g. a portable
    'generic' cache)."""
    features = numba.config.CPU_FEATURES
    if not features:
        if numba.config.CPU_NAME and numba.config.CPU_NAME != "host":
            return 32
        features = llvm.get_host_cpu_features().flatten()
    return 64 if "+avx512f" in features.split(",") else 32


@intrinsic
def wide_vectors(typingctx):
    """Let LLVM's loop vectoriser use 512-bit vectors in the calling compiled function, where AVX-512 is on.

    LLVM tunes many AVX-512 CPUs to prefer 256-bit vectors (this project's Zen 5 VM reports itself as
    'rocketlake'), so auto-vectorised loops ran ymm code. The FMA peak is the same either way on that host, but a
    loop of many cheap operations per element (an exp's clamps, rounding, conversions and shifts, an erf) issues
    half the instructions on zmm: 10-21 % faster for the activations (``_halves``); the GEMM kernels' explicit
    vectors were never affected. The function attribute "prefer-vector-width"="512" (what clang's
    -mprefer-vector-width=512 sets) lifts the preference for one function; the call itself emits no instruction.
    It must stand in the function that holds the loop when LLVM vectorises it: a prange body (numba outlines it
    into its own function) or an njit helper inlined at numba's level (``inline="always"``) into one; a helper
    LLVM inlines later was vectorised on its own before. Setting NUMBA_CPU_FEATURES instead would change every
    numba function of the user's process.
    """
    def codegen(context, builder, sig, args):
        if vector_bytes() == 64:
            set.add(builder.function.attributes, '"prefer-vector-width"="512"')  # llvmlite lists no string attrs
        return context.get_dummy_value()

    return types.none(), codegen


def stack_array_codegen(context, builder, dtype, size, zero):
    """LLVM code for a C-contiguous (size,) array of ``dtype`` on the calling function's stack, zeroed if ``zero``.

    The array has no meminfo: it must not outlive the function that made it.
    """
    lty = context.get_data_type(dtype)
    data = cgutils.alloca_once(builder, lty, size=size)
    itemsize = context.get_abi_sizeof(lty)
    if zero:
        cgutils.memset(builder, data, context.get_constant(types.intp, size * itemsize), 0)
    ary = make_array(types.Array(dtype, 1, "C"))(context, builder)
    intp = context.get_value_type(types.intp)
    populate_array(ary, data=data, shape=[intp(size)], strides=[intp(itemsize)], itemsize=intp(itemsize),
                   meminfo=None)
    return ary._getvalue()


@intrinsic
def stack_empty(typingctx, size, like):
    """A 1-D array of ``size`` (a literal int) elements of ``like``'s dtype, allocated on the stack.

    A stack array cannot alias any other array, so LLVM keeps a small accumulator of this kind in registers across
    the reduction loop; a heap array (np.empty) is reloaded and stored on every tap.
    """
    if not isinstance(size, types.IntegerLiteral) or not isinstance(like, types.Array):
        return None
    n = size.literal_value

    def codegen(context, builder, sig, args):
        return stack_array_codegen(context, builder, like.dtype, n, zero=False)

    return types.Array(like.dtype, 1, "C")(size, like), codegen


@intrinsic
def flat_view(typingctx, a, start, size):
    """A borrowed 1-D view of the flat elements [start, start + size) of the C-contiguous array ``a``.

    A slice of a heap array costs two atomic reference-count updates; the Winograd transforms take ~100 short views
    per 16 tiles and the depthwise kernel ~130 per 28^2 plane, and those updates cost more than the arithmetic.
    This view carries no meminfo: it must not outlive ``a`` or the function that made it. Assign each view from
    a call of its own (hence the Winograd transforms' rows of six): numba's alias analysis follows a flat_view
    assignment (``_flat_view_aliases``) but not a view unpacked from a tuple, so a helper that returned several
    views would let the parallel passes drop stores through them again.
    """
    if not isinstance(a, types.Array) or a.layout != "C" or not isinstance(size, types.Integer):
        return None
    view = types.Array(a.dtype, 1, "C")

    def codegen(context, builder, sig, args):
        src = make_array(a)(context, builder, args[0])
        itemsize = context.get_abi_sizeof(context.get_data_type(a.dtype))
        intp = context.get_value_type(types.intp)
        out = make_array(view)(context, builder)
        populate_array(out, data=builder.gep(src.data, [args[1]]), shape=[context.cast(builder, args[2], size,
                       types.intp)], strides=[intp(itemsize)], itemsize=intp(itemsize), meminfo=None)
        return out._getvalue()

    return view(a, start, size), codegen


@intrinsic
def copy_elements(typingctx, dst, d_at, src, s_at, n):
    """dst[d_at:d_at + n] = src[s_at:s_at + n] for C-contiguous arrays of one dtype whose ranges do not overlap:
    one ``llvm.memcpy`` (libc's memcpy for a run-time n), no views made. In range: the caller's to ensure. A
    loop of element stores through two borrowed views ran a copy of 200,000-element row pieces 14 % slower than
    this (2 threads, float32)."""
    if not (isinstance(dst, types.Array) and isinstance(src, types.Array) and dst.layout == src.layout == "C"
            and dst.dtype == src.dtype and all(isinstance(v, types.Integer) for v in (d_at, s_at, n))):
        return None

    def codegen(context, builder, sig, args):
        intp = context.get_value_type(types.intp)
        d = make_array(dst)(context, builder, args[0])
        s = make_array(src)(context, builder, args[2])
        at_d, at_s, count = (context.cast(builder, v, t, types.intp) for v, t in
                             ((args[1], sig.args[1]), (args[3], sig.args[3]), (args[4], sig.args[4])))
        itemsize = context.get_abi_sizeof(context.get_data_type(dst.dtype))
        cgutils.raw_memcpy(builder, builder.gep(d.data, [at_d]), builder.gep(s.data, [at_s]), count,
                           intp(itemsize))
        return context.get_dummy_value()

    return types.none(dst, d_at, src, s_at, n), codegen


@intrinsic
def stream_copy(typingctx, dst, d_at, src, s_at, n):
    """dst[d_at:d_at + n] = src[s_at:s_at + n] (C-contiguous arrays of one float dtype, ranges apart) with
    non-temporal vector stores: the destination's whole aligned vectors are written around the caches, without the
    read that a plain store to a line not in cache makes first (write-allocate); an unaligned head and tail take
    plain stores. The caller runs ``stream_fence`` after its last stream copy and before its thread's work ends.
    For outputs far larger than the caches, written once: the source is a block just computed in L1. In range:
    the caller's to ensure."""
    if not (isinstance(dst, types.Array) and isinstance(src, types.Array) and dst.layout == src.layout == "C"
            and dst.dtype == src.dtype and isinstance(dst.dtype, types.Float)
            and all(isinstance(v, types.Integer) for v in (d_at, s_at, n))):
        return None

    def codegen(context, builder, sig, args):
        intp = context.get_value_type(types.intp)
        itemsize = context.get_abi_sizeof(context.get_data_type(dst.dtype))
        vbytes = vector_bytes()
        lanes = vbytes // itemsize
        vty = ir.VectorType(context.get_data_type(dst.dtype), lanes)
        d = make_array(sig.args[0])(context, builder, args[0])
        s = make_array(sig.args[2])(context, builder, args[2])
        at_d, at_s, count = (context.cast(builder, v, t, types.intp) for v, t in
                             ((args[1], sig.args[1]), (args[3], sig.args[3]), (args[4], sig.args[4])))
        dp = builder.gep(d.data, [at_d])
        sp = builder.gep(s.data, [at_s])
        count = builder.select(builder.icmp_signed("<", count, intp(0)), intp(0), count)
        lead = builder.udiv(builder.and_(builder.sub(intp(0), builder.ptrtoint(dp, intp)), intp(vbytes - 1)),
                            intp(itemsize))  # elements before the first aligned vector
        head = builder.select(builder.icmp_signed("<", lead, count), lead, count)
        end = builder.add(head, builder.mul(builder.sdiv(builder.sub(count, head), intp(lanes)), intp(lanes)))
        nontemporal = builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)])

        def plain(lo, hi):
            with cgutils.for_range_slice(builder, lo, hi, intp(1)) as (i, _):
                builder.store(builder.load(builder.gep(sp, [i])), builder.gep(dp, [i]))

        plain(intp(0), head)
        with cgutils.for_range_slice(builder, head, end, intp(lanes)) as (i, _):
            v = builder.load(builder.bitcast(builder.gep(sp, [i]), vty.as_pointer()), align=itemsize)
            store = builder.store(v, builder.bitcast(builder.gep(dp, [i]), vty.as_pointer()), align=vbytes)
            store.set_metadata("nontemporal", nontemporal)
        plain(end, count)
        return context.get_dummy_value()

    return types.none(dst, d_at, src, s_at, n), codegen


@intrinsic
def stream_fence(typingctx):
    """An sfence: the non-temporal stores before it (``stream_copy``) are ordered before every later store of the
    thread. Once after a run of stream copies: a fence waits for the write-combining buffers to drain (one a 4 KB
    block: no gain left)."""

    def codegen(context, builder, sig, args):
        fence = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                               "llvm.x86.sse.sfence")
        builder.call(fence, [])
        return context.get_dummy_value()

    return types.none(), codegen


def _flat_view_aliases(lhs, args, alias_map, arg_aliases):
    """Tell numba's alias analysis that a flat_view aliases its array: without it the parallel passes take the
    view for a fresh array, and a store through it whose value is not read again in the loop is dead code to them
    (a prange loop that wrote one element per row through a view wrote nothing)."""
    ir_utils._add_alias(lhs, args[0].name, alias_map, arg_aliases)


ir_utils.alias_func_extensions[("flat_view", __name__)] = _flat_view_aliases


_thread_count = []  # (get, set): numba's per-thread thread count, read and written


def _thread_count_calls():
    """numba's compiled getter and setter of the calling thread's thread count, once its pool is up.

    The public ``numba.get_num_threads`` / ``set_num_threads`` wrap the same two C functions, but each first takes
    the pool's start-up locks (a process-wide multiprocessing lock among them) and checks its argument: a get and a
    set pair cost 4.2 us, the bare calls 0.75, against 1.2 us for the whole kernel call on 16 elements. The public
    pair is used where this numba names them differently."""
    if not _thread_count:
        from numba.np.ufunc import parallel

        parallel._launch_threads()
        get, put = getattr(parallel, "_get_num_threads", None), getattr(parallel, "_set_num_threads", None)
        _thread_count.append((get, put) if callable(get) and callable(put) else
                             (numba.get_num_threads, numba.set_num_threads))
    return _thread_count[0]


def thread_count():
    """The calling thread's numba thread count (``numba.get_num_threads()`` without its locks)."""
    return _thread_count_calls()[0]()


_SERIAL = {}  # parallel dispatcher -> its serial twin


def serial(kernel):
    """The serial twin of the ``parallel=True`` dispatcher ``kernel``: the same Python function under the same options
    but ``parallel``, so its prange loops run as plain loops on the calling thread (same source, same order of
    iterations: the results are the parallel kernel's on one thread). Calling it skips what a parallel kernel
    pays even on one thread, the gufunc scheduler and the thread-count mask around it: an 8 x 8 matmul's compiled
    entry 3.1 + 0.4 -> 1.7 us. The twin is its own function for numba's cache (name ``<kernel>_serial``), so the two
    compiled versions never share a cache file; each compiles on its first call, cached where the kernel is."""
    twin = _SERIAL.get(kernel)
    if twin is None:
        py = kernel.py_func
        fn = types_module.FunctionType(py.__code__, py.__globals__, py.__name__ + "_serial", py.__defaults__,
                                       py.__closure__)
        fn.__qualname__ = py.__qualname__ + "_serial"
        fn.__module__, fn.__doc__ = py.__module__, py.__doc__
        options = {k: v for k, v in kernel.targetoptions.items() if k not in ("parallel", "nopython")}
        options["error_model"] = "numpy"  # what numba compiles prange bodies with: x / 0 is inf there, not raised
        cache = not isinstance(kernel._cache, NullCache)  # numba keeps no public flag for it
        twin = _SERIAL[kernel] = numba.njit(cache=cache, **options)(fn)
    return twin


class Compiled:
    """A ``parallel=True`` kernel compiled for one signature, and its serial twin (``serial``) for the same one,
    each on first use: calling an entry skips the dispatcher's typing of the arguments. ``run_parallel`` picks."""

    __slots__ = ("kernel", "sig", "_parallel", "_serial")

    def __init__(self, kernel, sig):
        self.kernel, self.sig, self._parallel, self._serial = kernel, sig, None, None

    def parallel(self):
        if self._parallel is None:
            self._parallel = self.kernel.compile(self.sig)
        return self._parallel

    def serial(self):
        if self._serial is None:
            self._serial = serial(self.kernel).compile(self.sig)
        return self._serial


def run_parallel(kernel, size, *args, below=SERIAL_BELOW):
    """``kernel(*args)`` for a ``parallel=True`` dispatcher or a ``Compiled`` entry over ``size`` elements (or units
    of work); when ``size < below``, its serial twin's instead, on the calling thread alone (waking the pool costs
    more than it saves there). Any other callable (an njit function that calls parallel kernels) runs with the
    calling thread's numba thread count set to 1 for the call instead (the count is per calling thread: other
    threads' launches are unaffected)."""
    if isinstance(kernel, Compiled):
        (kernel.parallel() if size >= below else kernel.serial())(*args)
    elif size >= below:
        kernel(*args)
    elif getattr(kernel, "targetoptions", {}).get("parallel"):
        serial(kernel)(*args)
    else:
        get, put = _thread_count_calls()
        threads = get()
        put(1)
        try:
            kernel(*args)
        finally:
            put(threads)
