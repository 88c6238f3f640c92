"""CPU kernels of the activation family.

Elementwise activations work on flat, C-contiguous 1-D views (the launcher flattens). Each activation is one small
scalar ``@njit`` function holding its formula, written as torch writes it and computed in the input's dtype (float32
stays float32, as in torch's CPU kernels; ``_like`` types every literal), plus one parallel kernel that streams
CHUNKs of the array through it. The transcendental functions are our own branch-free polynomials rather than libm
calls, so that every kernel's loop compiles to SIMD code: exp, expm1, tanh and log1p for both dtypes and erf for
float32 (1 to 3 ulp, tested against float64 / libm references); float64 erf comes from libm, per element.

softmax and log_softmax see the input as (O, D, K) (D is the reduced dim, O and K the dims before and after it) and
read it once for the running max and the rescaled sum (online softmax, in blocks so that the max and the sum both
vectorise; each block is read twice, from L1), then finish the output in a second pass over the row.
"""

import math
import warnings

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core.errors import NumbaIRAssumptionWarning
from numba.extending import intrinsic, overload

from .._dispatch import register
from ._util import run_parallel, stack_empty, stream_copy, stream_fence, vector_bytes, wide_vectors

# Inlining the bodies below at numba's IR level (``overload(..., inline="always")``) makes numba's SSA pass warn
# that a variable of a conditional expression in them "is not in scope" (numba issue 7802: a pedantic check on the
# inliner's renamed variables; the compiled code is right, and the tests check every function's values). A user's
# first softplus, elu, gelu or tanh printed 2-14 of these, each asking for a bug report. Only those naming the
# variables of these bodies are silenced.
warnings.filterwarnings("ignore", r"variable '_(expm1_32|expm1_64|erf32|log1p32|log1p64|tanh32|tanh64)_v\d+_",
                        NumbaIRAssumptionWarning)

CHUNK = 16384  # elements per prange iteration: large enough to amortise scheduling, small enough to balance
BLOCK = 64  # elements of x an in-place-capable kernel stages on the stack at a time (a multiple of the vector)
# Outputs of at least this many bytes are written with non-temporal stores (``_streams``; relu so far). relu over
# 4096^2 float32, 2 threads, same process, ms, plain / non-temporal: the kernel alone 7.19 / 5.10, nbops.relu 7.46 /
# 5.93; torch 5.6 in a spell without page faults (18-20 otherwise); a bare loop of vmovntps 3.6. Smaller outputs
# keep plain stores: the next op may find them in cache.
STREAM_BYTES = 32 << 20
LANES = 64  # independent running maxima that a block-max loop keeps (4 AVX-512 registers of float32)
ROW_BLOCK = 1024  # elements of a softmax row per online step (the block is read twice, from L1)
COL_TILE = 256  # columns (K) of an (O, D, K) softmax handled by one prange iteration
DEPTH_BLOCK = 64  # rows (D) per online step of an (O, D, K) softmax (fewer steps: each pays a rescale per column)
SOFTMAX_SERIAL_BELOW = 4096  # elements below which softmax runs its serial twin; rows of 64 float32, us per call,
# serial twin / both threads, idle 2-core host: 2 Ki 9.7 / 8.8, 4 Ki 15.4 / 11.0, 16 Ki 49.3 / 26.4 (gelu, for the
# elementwise kernels' SERIAL_BELOW of 64 Ki: 16 Ki 11.4 / 12.8, 32 Ki 21.0 / 15.0)


# ----------------------------------------------------------------------------------------------------------------
# scalar building blocks


def _like(v, c):
    """The Python number ``c`` as a scalar of ``v``'s type (compiled code uses the overload below)."""
    return type(v)(c)


@overload(_like, inline="always")
def _like_typed(v, c):
    t = v

    def impl(v, c):
        return t(c)

    return impl


@intrinsic
def _times_pow2(typingctx, p, n):
    """p * 2.0 ** h * 2.0 ** (n - h), h = floor(n / 2), for an integer-valued float ``n`` of p's type: exp's
    last step, 2 ** n as two factors, each built from its exponent bits, so that each stays a normal float even
    where 2 ** n is not (the product underflows through the subnormals and overflows to inf as one rounding each).
    h and n - h are integer arithmetic on n converted once (an arithmetic shift is the floor of a halving), not a
    halving, a floor and two conversions in float. With that and the clamps as max / min (``_exp32``), the float32
    exp loop went from 162 to 135 instructions per 4 vectors: exp rows of 4096 values in L1, one thread, 1.8 ->
    1.4 us, every result bit for bit the same (all 2 ** 32 float32 inputs; 75 M float64 ones)."""
    if not (isinstance(p, types.Float) and n == p):
        return None

    def codegen(context, builder, sig, args):
        fty = context.get_value_type(sig.return_type)
        bits, mant, bias = (32, 23, 127) if sig.return_type == types.float32 else (64, 52, 1023)
        ity = ir.IntType(bits)
        whole = builder.fptosi(args[1], ity)
        half = builder.ashr(whole, ir.Constant(ity, 1))

        def power(k):
            biased = builder.add(k, ir.Constant(ity, bias))
            return builder.bitcast(builder.shl(biased, ir.Constant(ity, mant)), fty)

        return builder.fmul(builder.fmul(args[0], power(half)), power(builder.sub(whole, half)))

    return p(p, n), codegen


@njit(inline="always", fastmath={"contract"}, error_model="numpy")
def _exp32_reduced(xc, n):
    """exp(xc - n * ln(2)) for float32, |xc - n * ln(2)| <= ln(2) / 2: the reduction (ln(2) in two parts, Cody-Waite)
    and Cephes' degree-6 polynomial that ``_exp32`` and ``_exp_shifted32`` share, before their scaling by 2 ** n."""
    f = np.float32
    r = xc - n * f(0.693359375)
    r = r + n * f(2.12194440e-4)
    p = f(1.9875691500e-4)
    p = p * r + f(1.3981999507e-3)
    p = p * r + f(8.3334519073e-3)
    p = p * r + f(4.1665795894e-2)
    p = p * r + f(1.6666665459e-1)
    p = p * r + f(5.0000001201e-1)
    p = p * r * r + r + f(1.0)
    return p


@njit(fastmath={"contract"}, error_model="numpy")
def _exp32(x):
    """exp(x) for float32 within about 1 ulp (Cody-Waite reduction, Cephes' degree-6 polynomial); branch-free so
    that loops calling it vectorise. Overflows to inf, underflows through the subnormals to 0, NaN stays NaN."""
    f = np.float32
    xc = min(max(x, f(-104.0)), f(89.0))  # vmaxps / vminps; what a NaN becomes here is discarded at the end
    n = np.rint(xc * f(1.44269504088896341))
    y = _times_pow2(_exp32_reduced(xc, n), n)
    return y if x == x else x


@intrinsic
def _times_pow2_rounded(typingctx, p, t):
    """p * 2.0 ** n for float32 p and t = n + ROUNDER (n an integer in [-127, 0]: its bits are ROUNDER's plus n):
    n's bits shifted into the exponent field plus the bias, 2 vector integer ops (vpslld, vpaddd) and no float to
    integer conversion. 2 ** -127 comes out as +0.0 (the biased exponent wraps to 0), so p * 2 ** n is 0 there."""
    if not (p == types.float32 and t == types.float32):
        return None

    def codegen(context, builder, sig, args):
        i32 = ir.IntType(32)
        bits = builder.shl(builder.bitcast(args[1], i32), ir.Constant(i32, 23))
        power = builder.bitcast(builder.add(bits, ir.Constant(i32, 127 << 23)), ir.FloatType())
        return builder.fmul(args[0], power)

    return p(p, t), codegen


ROUNDER = 12582912.0  # 1.5 * 2 ** 23: x + ROUNDER rounds x to an integer n, held in the low bits of the sum


@njit(fastmath={"contract"}, error_model="numpy")
def _exp_shifted32(x):
    """exp(x) for float32 x <= 0, NaN or -inf: the exps of a softmax row, x = value - the row's max. Where 2 ** n
    is normal (n >= -126, x >= -87.68) it is ``_exp32``'s value (same reduction and polynomial; n, the integer
    nearest x * log2(e), comes from one FMA with ROUNDER rather than a multiply and a rounding, which can pick the
    other neighbour at a tie and so differ in the last bit: 12 of the 1.1e9 float32 in [-88, 0]); below, 0
    (``_exp32`` gives subnormals there, at most 2 ** -126 of the row's largest term, exp(0) = 1). Without
    ``_exp32``'s upper clamp, two-factor scaling and NaN select (a NaN x gives NaN through the polynomial), the
    loop takes 21 vector instructions a zmm vector, not 30: rows of 512 in L1, one thread, 0.33 -> 0.25 ns an
    element."""
    f = np.float32
    xc = max(x, f(-88.0))  # n >= -127; vmaxps keeps a NaN x
    t = xc * f(1.44269504088896341) + f(ROUNDER)
    n = t - f(ROUNDER)
    return _times_pow2_rounded(_exp32_reduced(xc, n), t)


@njit(fastmath={"contract"}, error_model="numpy")
def _exp64(x):
    """exp(x) for float64 within about 1 ulp (Cody-Waite reduction, Taylor polynomial of degree 13 on
    |r| <= ln(2)/2); branch-free like ``_exp32``."""
    xc = min(max(x, -746.0), 710.0)
    n = np.rint(xc * 1.4426950408889634)
    r = xc - n * 6.93147180369123816490e-01
    r = r - n * 1.90821492927058770002e-10
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r * r + r + 1.0
    y = _times_pow2(p, n)
    return y if x == x else x


@intrinsic
def _float_bits(typingctx, x):
    """The bits of a float32 (float64) as an int32 (int64)."""
    if x not in (types.float32, types.float64):
        return None
    ity = types.int32 if x == types.float32 else types.int64

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], context.get_value_type(ity))

    return ity(x), codegen


@intrinsic
def _float_from_bits(typingctx, b):
    """The float32 (float64) whose bits are the int32 (int64) ``b``."""
    if b not in (types.int32, types.int64):
        return None
    fty = types.float32 if b == types.int32 else types.float64

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], context.get_value_type(fty))

    return fty(b), codegen


# The bodies below are plain functions that the overloads further down inline into their callers at the
# Numba IR level: compiled as separate njit functions they grow too large for LLVM to inline, and a loop holding a
# call does not vectorise.


def _expm1_32(x):
    """exp(x) - 1 for float32 without the cancellation near 0: Taylor polynomial of degree 8 for |x| < 1/2
    (relative error < 2e-8), ``_exp32(x) - 1`` elsewhere."""
    f = np.float32
    p = f(1.0 / 40320.0)
    p = p * x + f(1.0 / 5040.0)
    p = p * x + f(1.0 / 720.0)
    p = p * x + f(1.0 / 120.0)
    p = p * x + f(1.0 / 24.0)
    p = p * x + f(1.0 / 6.0)
    p = p * x + f(0.5)
    p = p * x * x + x
    return p if abs(x) < f(0.5) else _exp32(x) - f(1.0)


def _tanh32(x):
    """tanh(x) for float32: Cephes' odd polynomial for |x| < 0.625, 1 - 2 / (exp(2|x|) + 1) with x's sign
    elsewhere; branch-free."""
    f = np.float32
    a = abs(x)
    z = x * x
    p = f(-5.70498872745e-3)
    p = p * z + f(2.06390887954e-2)
    p = p * z - f(5.37397155531e-2)
    p = p * z + f(1.33314422036e-1)
    p = p * z - f(3.33332819422e-1)
    small = p * z * x + x
    big = f(1.0) - f(2.0) / (_exp32(a + a) + f(1.0))
    big = big if x >= f(0.0) else -big
    return small if a < f(0.625) else big


def _log1p32(x):
    """log(1 + x) for float32: u = 1 + x split as m * 2**e (m in [sqrt(1/2), sqrt(2)) read from its bits),
    Cephes' logf polynomial for log(m), plus the first-order correction (x - (u - 1)) / u for the rounding of u.
    -1 gives -inf, below -1 NaN, inf stays inf; branch-free."""
    f = np.float32
    u = f(1.0) + x
    b = _float_bits(u)
    e = f((b >> 23) & 0xFF) - f(126.0)
    m = _float_from_bits(np.int32((b & 0x007FFFFF) | 0x3F000000))
    low = m < f(0.70710678118654752440)
    e = e - f(1.0) if low else e
    t = m + m - f(1.0) if low else m - f(1.0)
    z = t * t
    p = f(7.0376836292e-2)
    p = p * t - f(1.1514610310e-1)
    p = p * t + f(1.1676998740e-1)
    p = p * t - f(1.2420140846e-1)
    p = p * t + f(1.4249322787e-1)
    p = p * t - f(1.6668057665e-1)
    p = p * t + f(2.0000714765e-1)
    p = p * t - f(2.4999993993e-1)
    p = p * t + f(3.3333331174e-1)
    y = p * t * z - e * f(2.12194440e-4) - f(0.5) * z
    r = (t + y + e * f(0.693359375)) + (x - (u - f(1.0))) / u
    if u > f(0.0) and u < f(np.inf):
        return r
    return f(-np.inf) if u == f(0.0) else (u if u > f(0.0) else f(np.nan))


def _erf32(x):
    """erf(x) for float32 by two polynomials, no division and no exp: within 2.5 ulp of libm's float64 erf on every
    float32 from 1e-6 to 8 and its negative (the worst at |x| = 0.9944; the tests hold it to 3).

    |x| < 1: x * P(x^2), P of degree 6 with its constant split into a float32 pair so the leading product rounds
    once. 1 <= |x| < 3.92: 1 - Q(t) with Q of degree 12 fitting erfc in t = (|x| - 2.46) / 1.46, which spans
    [-1, 1] there. From 3.92 on, erfc is below half an ulp of 1 and erf(x) is +-1. Both fits are Chebyshev
    interpolants converted to the power basis (``scripts/fit_erf32.py`` reproduces the coefficients). Branch-free:
    both polynomials run and selects pick one, so loops over it vectorise; NaN stays NaN.

    Cost per element: 22 multiply-adds and 7 other operations, where 1 - erfc from a Chebyshev fit of erfc times
    exp(-x^2) took a division, an exp and 29 more (gelu 4096^2 float32, one thread in L2: 1.20 -> 0.62 ns)."""
    f = np.float32
    z = x * x
    p = f(7.882500358391553e-05)
    p = p * z - f(0.0008018859080038965)
    p = p * z + f(0.005189312621951103)
    p = p * z - f(0.02685432881116867)
    p = p * z + f(0.11283597350120544)
    p = p * z - f(0.3761262595653534)
    p = p * z + f(5.936172442488896e-08)
    small = x * f(1.1283791065216064) + x * p
    a = abs(x)
    t = (a - f(2.46)) * f(0.6849315166473389)
    q = f(0.000859892345033586)
    q = q * t - f(0.0016296114772558212)
    q = q * t - f(0.0022837661672383547)
    q = q * t + f(0.009083875454962254)
    q = q * t - f(0.008065786212682724)
    q = q * t - f(0.006526901386678219)
    q = q * t + f(0.028699008747935295)
    q = q * t - f(0.04509779065847397)
    q = q * t + f(0.04500536620616913)
    q = q * t - f(0.030601097270846367)
    q = q * t + f(0.013931602239608765)
    q = q * t - f(0.0038780649192631245)
    q = q * t + f(0.0005033268826082349)
    big = f(1.0) if a >= f(3.92) else f(1.0) - q
    big = big if x >= f(0.0) else -big
    return small if a < f(1.0) else big


@njit(fastmath={"contract"}, error_model="numpy")
def _expm1_taylor64(x):
    """exp(x) - 1 by its Taylor polynomial of degree 16: truncation below 1e-17 relative for |x| < 1/2."""
    p = 1.0 / 20922789888000.0
    for c in (1.0 / 1307674368000.0, 1.0 / 87178291200.0, 1.0 / 6227020800.0, 1.0 / 479001600.0,
              1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0,
              1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5):
        p = p * x + c
    return p * x * x + x


def _expm1_64(x):
    """exp(x) - 1 for float64 without the cancellation near 0: Taylor polynomial for |x| < 1/2,
    ``_exp64(x) - 1`` elsewhere; about 2 ulp."""
    return _expm1_taylor64(x) if abs(x) < 0.5 else _exp64(x) - 1.0


def _tanh64(x):
    """tanh(x) for float64 as -t / (2 + t) with t = expm1(-2|x|), x's sign restored: no cancellation anywhere
    (2 + t lies in [1, 2]); about 3 ulp."""
    y = -2.0 * abs(x)
    t = _expm1_taylor64(y) if y > -0.5 else _exp64(y) - 1.0
    r = -t / (2.0 + t)
    return r if x > 0.0 else (-r if x < 0.0 else x)  # zeros keep their sign, NaN stays NaN


def _log1p64(x):
    """log(1 + x) for float64: u = 1 + x split as m * 2**e (m in [sqrt(1/2), sqrt(2)) read from its bits),
    log(m) = 2 atanh(f) with f = (m - 1) / (m + 1), |f| < 0.172, summed to f**23, e * ln 2 in two parts, plus the
    first-order correction (x - (u - 1)) / u for the rounding of u. -1 gives -inf, below -1 NaN, inf stays inf."""
    u = 1.0 + x
    b = _float_bits(u)
    e = np.float64((b >> 52) & 0x7FF) - 1022.0
    m = _float_from_bits(np.int64((b & 0x000FFFFFFFFFFFFF) | 0x3FE0000000000000))
    low = m < 0.70710678118654752440
    e = e - 1.0 if low else e
    m = m + m if low else m
    f = (m - 1.0) / (m + 1.0)
    z = f * f
    p = 1.0 / 23.0
    for c in (1.0 / 21.0, 1.0 / 19.0, 1.0 / 17.0, 1.0 / 15.0, 1.0 / 13.0, 1.0 / 11.0, 1.0 / 9.0, 1.0 / 7.0,
              1.0 / 5.0, 1.0 / 3.0):
        p = p * z + c
    logm = 2.0 * f + 2.0 * f * z * p
    r = (e * 6.93147180369123816490e-01 + (logm + (e * 1.90821492927058770002e-10 + (x - (u - 1.0)) / u)))
    if u > 0.0 and u < np.inf:
        return r
    return -np.inf if u == 0.0 else (u if u > 0.0 else np.nan)


def _exp(x):
    """exp(x) in ``x``'s float type (compiled code: ``_exp32`` / ``_exp64``)."""
    return math.exp(x)


@overload(_exp, inline="always")
def _exp_typed(x):
    if x == types.float32:
        return lambda x: _exp32(x)
    if x == types.float64:
        return lambda x: _exp64(x)
    return None


def _exp_shifted(x):
    """exp(x) of a softmax's shifted value x <= 0 (NaN, -inf) in ``x``'s float type (compiled code:
    ``_exp_shifted32`` / ``_exp64``)."""
    return math.exp(x)


@overload(_exp_shifted, inline="always")
def _exp_shifted_typed(x):
    if x == types.float32:
        return lambda x: _exp_shifted32(x)
    if x == types.float64:
        return lambda x: _exp64(x)
    return None


def _expm1(x):
    """expm1(x) in ``x``'s float type (compiled code: ``_expm1_32`` / ``_expm1_64``)."""
    return math.expm1(x)


@overload(_expm1, inline="always")
def _expm1_typed(x):
    if x == types.float32:
        return _expm1_32
    if x == types.float64:
        return _expm1_64
    return None


def _tanh(x):
    """tanh(x) in ``x``'s float type (compiled code: ``_tanh32`` / ``_tanh64``)."""
    return math.tanh(x)


@overload(_tanh, inline="always")
def _tanh_typed(x):
    if x == types.float32:
        return _tanh32
    if x == types.float64:
        return _tanh64
    return None


def _log1p(x):
    """log1p(x) in ``x``'s float type (compiled code: ``_log1p32`` / ``_log1p64``)."""
    return math.log1p(x)


@overload(_log1p, inline="always")
def _log1p_typed(x):
    if x == types.float32:
        return _log1p32
    if x == types.float64:
        return _log1p64
    return None


def _erf(x):
    """erf(x) in ``x``'s float type (compiled code: ``_erf32`` for float32, libm for float64)."""
    return math.erf(x)


@overload(_erf, inline="always")
def _erf_typed(x):
    if x == types.float32:
        return _erf32
    if x == types.float64:
        return lambda x: math.erf(x)
    return None


# ----------------------------------------------------------------------------------------------------------------
# one scalar function per activation: torch's formula, in the input's dtype; NaN propagates through each


@njit(inline="always", fastmath={"contract"}, error_model="numpy")
def _relu(v):
    return _like(v, 0.0) if v < 0 else v  # NaN compares false and passes through


@njit(inline="always", fastmath={"contract"}, error_model="numpy")
def _hardtanh(v, lo, hi):
    if v < lo:
        return lo
    if v > hi:
        return hi
    return v  # NaN compares false both ways and passes through


@njit(inline="always", fastmath={"contract"}, error_model="numpy")
def _leaky_relu(v, slope):
    return v if v > 0 else v * slope


@njit(inline="always", fastmath={"contract"}, error_model="numpy")
def _elu(v, negcoef, poscoef, negiptcoef):
    """torch's one ELU formula behind elu, selu and celu."""
    return _expm1(v * negiptcoef) * negcoef if v <= 0 else v * poscoef


@njit(inline="always", fastmath={"contract"}, error_model="numpy")
def _gelu(v):
    half = _like(v, 0.5)
    return v * half * (_like(v, 1.0) + _erf(v * _like(v, 0.7071067811865476)))


@njit(inline="always", fastmath={"contract"}, error_model="numpy")
def _gelu_tanh(v):
    inner = _like(v, 0.7978845608028654) * (v + _like(v, 0.044715) * v * v * v)
    return _like(v, 0.5) * v * (_like(v, 1.0) + _tanh(inner))


@njit(inline="always", fastmath={"contract"}, error_model="numpy")
def _sigmoid(v):
    one = _like(v, 1.0)
    return one / (one + _exp(-v))


@njit(inline="always", fastmath={"contract"}, error_model="numpy")
def _silu(v):
    return v / (_like(v, 1.0) + _exp(-v))


@njit(inline="always", fastmath={"contract"}, error_model="numpy")
def _mish(v):
    """v * tanh(log1p(exp(v))) as v * n / (n + 2) with e = exp(v), n = e * (e + 2) (tanh(log(u)) = (u^2 - 1) /
    (u^2 + 1) at u = 1 + e): one exp and one division instead of exp, log1p and tanh's exp and division (4096^2
    float32, 2 threads: 7.4 ns an element a core, 0.9x torch, before). No cancellation: n + 2 >= 2; for v > 20
    the ratio is 1 in float64 too (2 / (n + 2) < 1e-17), and e * e would overflow float32 past 44, so v itself."""
    e = _exp(v)
    n = e * (e + _like(v, 2.0))
    return v if v > _like(v, 20.0) else v * (n / (n + _like(v, 2.0)))


@njit(inline="always", fastmath={"contract"}, error_model="numpy")
def _hardsigmoid(v):
    return _hardtanh(v + _like(v, 3.0), _like(v, 0.0), _like(v, 6.0)) / _like(v, 6.0)


@njit(inline="always", fastmath={"contract"}, error_model="numpy")
def _hardswish(v):
    return v * _hardtanh(v + _like(v, 3.0), _like(v, 0.0), _like(v, 6.0)) / _like(v, 6.0)


@njit(inline="always", fastmath={"contract"}, error_model="numpy")
def _softplus(v, beta, threshold):
    z = v * beta
    return v if z > threshold else _log1p(_exp(z)) / beta


@njit(inline="always", fastmath={"contract"}, error_model="numpy")
def _softsign(v):
    return v / (_like(v, 1.0) + abs(v))


# ----------------------------------------------------------------------------------------------------------------
# elementwise kernels: x, out are (M,) C-contiguous; one prange iteration maps one CHUNK of elements
#
# The kernels of ops with an ``inplace`` flag are also called with out and x the same array. LLVM vectorises a loop
# ``out[i] = f(x[i])`` behind a runtime check that the two do not overlap, and an exact overlap fails it: the
# in-place call ran the scalar loop, 3-10x slower. Those kernels first copy each BLOCK of x into a stack buffer
# (which aliases nothing), then map the buffer into out; the copy costs a few L1 accesses per element.


@njit(inline="always", fastmath={"contract"}, error_model="numpy")
def _span(c, M):
    lo = c * CHUNK
    return lo, min(lo + CHUNK, M)


@njit(inline="always")
def _stage(buf, x, b):
    """buf[:BLOCK] = x[b:b + BLOCK] (the stack copy an aliasing-safe elementwise kernel maps from). Through a
    slice: indexing x[b + i] would wrap negative indices per element and not vectorise."""
    xs = x[b:b + BLOCK]
    for i in range(BLOCK):
        buf[i] = xs[i]


@njit(parallel=True, fastmath={"contract"}, error_model="numpy", cache=True)
def _relu_kernel(out, x, stream):
    """out[i] = max(x[i], 0) with NaN kept. With ``stream`` (``_streams``), each block is computed into a stack
    buffer and written by non-temporal stores (``_util.stream_copy``)."""
    for c in prange((x.shape[0] + CHUNK - 1) // CHUNK):
        lo, hi = _span(c, x.shape[0])
        buf = stack_empty(BLOCK, x)
        res = stack_empty(BLOCK, x)
        full = lo + (hi - lo) // BLOCK * BLOCK
        for b in range(lo, full, BLOCK):
            _stage(buf, x, b)
            if stream:
                for i in range(BLOCK):
                    res[i] = _relu(buf[i])
                stream_copy(out, b, res, 0, BLOCK)
            else:
                os = out[b:b + BLOCK]
                for i in range(BLOCK):
                    os[i] = _relu(buf[i])
        for i in range(full, hi):
            out[i] = _relu(x[i])
        if stream:
            stream_fence()


@njit(parallel=True, fastmath={"contract"}, error_model="numpy", cache=True)
def _hardtanh_kernel(out, x, lo_val, hi_val):
    """out[i] = clamp(x[i], lo_val, hi_val) with NaN kept (hardtanh, relu6)."""
    for c in prange((x.shape[0] + CHUNK - 1) // CHUNK):
        lo, hi = _span(c, x.shape[0])
        buf = stack_empty(BLOCK, x)
        full = lo + (hi - lo) // BLOCK * BLOCK
        for b in range(lo, full, BLOCK):
            _stage(buf, x, b)
            os = out[b:b + BLOCK]
            for i in range(BLOCK):
                os[i] = _hardtanh(buf[i], lo_val, hi_val)
        for i in range(full, hi):
            out[i] = _hardtanh(x[i], lo_val, hi_val)


@njit(parallel=True, fastmath={"contract"}, error_model="numpy", cache=True)
def _leaky_relu_kernel(out, x, slope):
    """out[i] = x[i] if x[i] > 0 else x[i] * slope."""
    for c in prange((x.shape[0] + CHUNK - 1) // CHUNK):
        lo, hi = _span(c, x.shape[0])
        buf = stack_empty(BLOCK, x)
        full = lo + (hi - lo) // BLOCK * BLOCK
        for b in range(lo, full, BLOCK):
            _stage(buf, x, b)
            os = out[b:b + BLOCK]
            for i in range(BLOCK):
                os[i] = _leaky_relu(buf[i], slope)
        for i in range(full, hi):
            out[i] = _leaky_relu(x[i], slope)


@njit(parallel=True, fastmath={"contract"}, error_model="numpy", cache=True)
def _elu_kernel(out, x, negcoef, poscoef, negiptcoef):
    """out[i] = expm1(x[i] * negiptcoef) * negcoef if x[i] <= 0 else x[i] * poscoef (elu, selu, celu)."""
    for c in prange((x.shape[0] + CHUNK - 1) // CHUNK):
        wide_vectors()
        lo, hi = _span(c, x.shape[0])
        buf = stack_empty(BLOCK, x)
        full = lo + (hi - lo) // BLOCK * BLOCK
        for b in range(lo, full, BLOCK):
            _stage(buf, x, b)
            os = out[b:b + BLOCK]
            for i in range(BLOCK):
                os[i] = _elu(buf[i], negcoef, poscoef, negiptcoef)
        for i in range(full, hi):
            out[i] = _elu(x[i], negcoef, poscoef, negiptcoef)


@njit(inline="always", fastmath={"contract"}, error_model="numpy")
def _halves(out, x, lo, hi, f):
    """out[i] = f(x[i]) for lo <= i < hi as two interleaved halves: each iteration maps one element of
    each half, two independent dependency chains where the division, polynomial and exp of an activation make one
    long chain a vector (4096^2 float32, 2 threads, same process, warm output, ms: gelu 22.2 -> 15.3, sigmoid
    10.1 -> 5.7, exp 15.2 -> 5.4). With out the same memory as x the vectorised loop's overlap check fails and it
    runs scalar, so kernels that ops call in place keep a staged loop for that case. On 512-bit vectors
    (``wide_vectors``; same process, 2 threads, float32, ms): 4096^2 sigmoid 6.39 -> 5.87, silu 6.59 -> 5.94, gelu
    6.49 -> 5.73, tanh 8.26 -> 6.84; 256 Ki elements (in L2) 1.18-1.21x; values unchanged."""
    wide_vectors()
    h = (hi - lo) // 2
    xa, xb = x[lo:lo + h], x[lo + h:lo + 2 * h]
    oa, ob = out[lo:lo + h], out[lo + h:lo + 2 * h]
    for i in range(h):
        oa[i] = f(xa[i])
        ob[i] = f(xb[i])
    for i in range(lo + 2 * h, hi):
        out[i] = f(x[i])


@njit(parallel=True, fastmath={"contract"}, error_model="numpy", cache=True)
def _gelu_kernel(out, x):
    """out[i] = x/2 * (1 + erf(x / sqrt(2))), each chunk as two interleaved halves (``_halves``: 4096^2 float32,
    2 threads, 22.2 -> 15.3 ms into a warm output, 29.1 -> 22.0 ms into a fresh one; torch 22.2)."""
    for c in prange((x.shape[0] + CHUNK - 1) // CHUNK):
        lo, hi = _span(c, x.shape[0])
        _halves(out, x, lo, hi, _gelu)


@njit(parallel=True, fastmath={"contract"}, error_model="numpy", cache=True)
def _gelu_tanh_kernel(out, x):
    """out[i] = x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))), each chunk as two interleaved halves
    (``_halves``; 4096^2 float32, 2 threads, warm output: 15.2 -> 9.8 ms)."""
    for c in prange((x.shape[0] + CHUNK - 1) // CHUNK):
        lo, hi = _span(c, x.shape[0])
        _halves(out, x, lo, hi, _gelu_tanh)


@njit(parallel=True, fastmath={"contract"}, error_model="numpy", cache=True)
def _sigmoid_kernel(out, x):
    """out[i] = 1 / (1 + exp(-x[i])), each chunk as two interleaved halves (``_halves``; 4096^2 float32, 2
    threads, warm output: 10.1 -> 5.7 ms)."""
    for c in prange((x.shape[0] + CHUNK - 1) // CHUNK):
        lo, hi = _span(c, x.shape[0])
        _halves(out, x, lo, hi, _sigmoid)


@njit(parallel=True, fastmath={"contract"}, error_model="numpy", cache=True)
def _silu_kernel(out, x):
    """out[i] = x[i] / (1 + exp(-x[i]))."""
    for c in prange((x.shape[0] + CHUNK - 1) // CHUNK):
        wide_vectors()
        lo, hi = _span(c, x.shape[0])
        buf = stack_empty(BLOCK, x)
        full = lo + (hi - lo) // BLOCK * BLOCK
        for b in range(lo, full, BLOCK):
            _stage(buf, x, b)
            os = out[b:b + BLOCK]
            for i in range(BLOCK):
                os[i] = _silu(buf[i])
        for i in range(full, hi):
            out[i] = _silu(x[i])


@njit(parallel=True, fastmath={"contract"}, error_model="numpy", cache=True)
def _silu_halves_kernel(out, x):
    """``_silu_kernel`` for an out apart from x: each chunk as two interleaved halves (``_halves``). In-place
    calls keep the staged kernel, which the halves would run scalar (4096^2 float32, 2 threads, warm output, ms,
    staged / halves: silu 10.3 / 5.7 ms, in place 7.9 / 37)."""
    for c in prange((x.shape[0] + CHUNK - 1) // CHUNK):
        lo, hi = _span(c, x.shape[0])
        _halves(out, x, lo, hi, _silu)


@njit(parallel=True, fastmath={"contract"}, error_model="numpy", cache=True)
def _mish_kernel(out, x):
    """out[i] = x[i] * tanh(log1p(exp(x[i])))."""
    for c in prange((x.shape[0] + CHUNK - 1) // CHUNK):
        wide_vectors()
        lo, hi = _span(c, x.shape[0])
        buf = stack_empty(BLOCK, x)
        full = lo + (hi - lo) // BLOCK * BLOCK
        for b in range(lo, full, BLOCK):
            _stage(buf, x, b)
            os = out[b:b + BLOCK]
            for i in range(BLOCK):
                os[i] = _mish(buf[i])
        for i in range(full, hi):
            out[i] = _mish(x[i])


@njit(parallel=True, fastmath={"contract"}, error_model="numpy", cache=True)
def _mish_halves_kernel(out, x):
    """``_mish_kernel`` for an out apart from x: each chunk as two interleaved halves (``_halves``). In-place
    calls keep the staged kernel, which the halves would run scalar (4096^2 float32, 2 threads, warm output, ms,
    staged / halves: mish 10.9 / 6.8 ms, in place 8.7 / 43)."""
    for c in prange((x.shape[0] + CHUNK - 1) // CHUNK):
        lo, hi = _span(c, x.shape[0])
        _halves(out, x, lo, hi, _mish)


@njit(parallel=True, fastmath={"contract"}, error_model="numpy", cache=True)
def _tanh_kernel(out, x):
    """out[i] = tanh(x[i]), each chunk as two interleaved halves (``_halves``; out may be x: each element is read
    before it is written, at its own index)."""
    for c in prange((x.shape[0] + CHUNK - 1) // CHUNK):
        lo, hi = _span(c, x.shape[0])
        _halves(out, x, lo, hi, _tanh)


@njit(parallel=True, fastmath={"contract"}, error_model="numpy", cache=True)
def _hardsigmoid_kernel(out, x):
    """out[i] = clamp(x[i] + 3, 0, 6) / 6."""
    for c in prange((x.shape[0] + CHUNK - 1) // CHUNK):
        lo, hi = _span(c, x.shape[0])
        buf = stack_empty(BLOCK, x)
        full = lo + (hi - lo) // BLOCK * BLOCK
        for b in range(lo, full, BLOCK):
            _stage(buf, x, b)
            os = out[b:b + BLOCK]
            for i in range(BLOCK):
                os[i] = _hardsigmoid(buf[i])
        for i in range(full, hi):
            out[i] = _hardsigmoid(x[i])


@njit(parallel=True, fastmath={"contract"}, error_model="numpy", cache=True)
def _hardswish_kernel(out, x):
    """out[i] = x[i] * clamp(x[i] + 3, 0, 6) / 6."""
    for c in prange((x.shape[0] + CHUNK - 1) // CHUNK):
        lo, hi = _span(c, x.shape[0])
        buf = stack_empty(BLOCK, x)
        full = lo + (hi - lo) // BLOCK * BLOCK
        for b in range(lo, full, BLOCK):
            _stage(buf, x, b)
            os = out[b:b + BLOCK]
            for i in range(BLOCK):
                os[i] = _hardswish(buf[i])
        for i in range(full, hi):
            out[i] = _hardswish(x[i])


@njit(parallel=True, fastmath={"contract"}, error_model="numpy", cache=True)
def _softplus_kernel(out, x, beta, threshold):
    """out[i] = x if x * beta > threshold else log1p(exp(x * beta)) / beta, each chunk as two interleaved halves
    (``_halves``; 4096^2 float32, 2 threads, warm output: 22.6 -> 18.3 ms)."""
    for c in prange((x.shape[0] + CHUNK - 1) // CHUNK):
        wide_vectors()
        lo, hi = _span(c, x.shape[0])
        h = (hi - lo) // 2  # ``_halves`` with the parameters (numba's inliner takes no *args)
        xa, xb = x[lo:lo + h], x[lo + h:lo + 2 * h]
        oa, ob = out[lo:lo + h], out[lo + h:lo + 2 * h]
        for i in range(h):
            oa[i] = _softplus(xa[i], beta, threshold)
            ob[i] = _softplus(xb[i], beta, threshold)
        for i in range(lo + 2 * h, hi):
            out[i] = _softplus(x[i], beta, threshold)


@njit(parallel=True, fastmath={"contract"}, error_model="numpy", cache=True)
def _softsign_kernel(out, x):
    """out[i] = x[i] / (1 + |x[i]|)."""
    for c in prange((x.shape[0] + CHUNK - 1) // CHUNK):
        lo, hi = _span(c, x.shape[0])
        xs, os = x[lo:hi], out[lo:hi]
        for i in range(hi - lo):
            os[i] = _softsign(xs[i])


# ----------------------------------------------------------------------------------------------------------------
# glu and prelu


@njit(parallel=True, fastmath={"contract"}, error_model="numpy", cache=True)
def _glu_kernel(out, x):
    """out[o, j] = x[o, 0, j] * sigmoid(x[o, 1, j]); x: (O, 2, L), out: (O, L).

    One prange iteration maps one CHUNK of one row o (rows split into chunks so that O = 1 still runs parallel).
    """
    O, L = out.shape
    nc = (L + CHUNK - 1) // CHUNK
    for t in prange(O * nc):
        wide_vectors()
        o = t // nc
        lo, hi = _span(t - o * nc, L)
        a, b, os = x[o, 0, lo:hi], x[o, 1, lo:hi], out[o, lo:hi]
        for i in range(hi - lo):
            os[i] = a[i] * _sigmoid(b[i])


@njit(parallel=True, fastmath={"contract"}, error_model="numpy", cache=True)
def _prelu_kernel(out, x, weight):
    """out[n, c, l] = x if x > 0 else weight[c] * x; x, out: (N, C, L), weight: (C,).

    One prange iteration maps one CHUNK of one (n, c) row.
    """
    N, C, L = x.shape
    nc = (L + CHUNK - 1) // CHUNK
    for t in prange(N * C * nc):
        row = t // nc
        n, c = row // C, row - (row // C) * C
        lo, hi = _span(t - row * nc, L)
        w = weight[c]
        xs, os = x[n, c, lo:hi], out[n, c, lo:hi]
        for i in range(hi - lo):
            v = xs[i]
            os[i] = v if v > 0 else w * v


# ----------------------------------------------------------------------------------------------------------------
# softmax / log_softmax


@njit(inline="always", fastmath={"contract"}, error_model="numpy")
def _rescale(s, m_old, m_new):
    """A sum of exp(v - m_old) re-expressed as a sum of exp(v - m_new), m_new >= m_old (unchanged when equal, which
    also keeps an all -inf prefix at 0 rather than NaN)."""
    return s if m_new == m_old else s * _exp(m_old - m_new)


@njit(inline="always", fastmath={"contract"}, error_model="numpy")
def _shift(m):
    """What exp's argument subtracts: the running max, or 0 while only -inf (and NaN) has been seen, so that -inf
    contributes exp(-inf) = 0 and NaN contributes NaN."""
    return m if m > -np.inf else _like(m, 0.0)


@njit(inline="always", fastmath={"contract"}, error_model="numpy")
def _factor(m_then, m, inv):
    """Turns exp(v - shift(m_then)), stored while the running max was m_then, into exp(v - m) * inv for the final
    max m (0 for a block that had seen only -inf: its stored values are 0, or NaN that the NaN sum already
    carries)."""
    if m_then == m:
        return inv
    return _exp(m_then - m) * inv if m_then > -np.inf else _like(m, 0.0)


@njit(inline="always", fastmath={"contract"}, error_model="numpy")
def _block_max(blk, m):
    """max(m, max(blk)) ignoring NaN, kept in LANES independent lanes (a stack array, which LLVM keeps in registers),
    merged by halving (lane j takes the larger of j and j + h, h = LANES / 2 down to 1: one vmaxps a level).
    The lanes are what LLVM's loop vectoriser turns into vmaxps on whole registers; with 16 lanes it unrolled the
    lane loop instead and kept 16 scalar maxima, and a sequential merge of 64 is a chain of 64 dependent vmaxss.
    Rows of 512 float32 in L1, one thread, ns an element: 16 lanes 0.159, 64 merged in turn 0.087, 64 halved
    0.059 (the heap buffer and per-group slice of an earlier version: 0.28)."""
    n = blk.shape[0]
    nl = n - n % LANES
    lanes = stack_empty(LANES, blk)
    for j in range(LANES):
        lanes[j] = m
    for i in range(0, nl, LANES):
        for j in range(LANES):
            v = blk[i + j]
            lanes[j] = v if v > lanes[j] else lanes[j]
    h = LANES // 2
    while h > 0:
        for j in range(h):
            lanes[j] = lanes[j + h] if lanes[j + h] > lanes[j] else lanes[j]
        h //= 2
    m = lanes[0]
    for i in range(nl, n):
        m = blk[i] if blk[i] > m else m
    return m


@njit(parallel=True, fastmath={"contract", "reassoc"}, error_model="numpy", cache=True)
def _softmax_lastdim_kernel(out, x, log):
    """Softmax (``log`` False) or log_softmax (True) along the last dim; x, out: (R, D), D >= 1.

    One prange iteration handles one row, online over ROW_BLOCK-element blocks: the block max (LANES lanes), the
    running sum rescaled when the max grows, then exp(x - max) summed in x's dtype (``reassoc`` lets the sum
    vectorise). softmax stores those exps as it sums them and finishes with one scaling pass over the row (one exp
    per element); log_softmax finishes with x - max - log(sum). A row holding NaN or +inf gives NaN, a row of
    -inf gives NaN (as torch).
    """
    R, D = x.shape
    nb = (D + ROW_BLOCK - 1) // ROW_BLOCK
    for r in prange(R):
        wide_vectors()
        row, orow = x[r], out[r]
        seen = np.empty(nb, dtype=x.dtype)  # running max after each block, for the final scaling
        m = _like(row[0], -np.inf)
        s = _like(row[0], 0.0)
        for b in range(nb):
            lo, hi = b * ROW_BLOCK, min(b * ROW_BLOCK + ROW_BLOCK, D)
            blk = row[lo:hi]
            bm = _block_max(blk, m)
            s = _rescale(s, m, bm)
            m = bm
            sh = _shift(m)
            acc = _like(m, 0.0)
            if log:
                for i in range(hi - lo):
                    acc += _exp(blk[i] - sh)
            else:
                oblk = orow[lo:hi]
                for i in range(hi - lo):
                    e = _exp(blk[i] - sh)
                    oblk[i] = e
                    acc += e
            s += acc
            seen[b] = m
        if log:
            sh = _shift(m)
            lse = math.log(s)
            for i in range(D):
                orow[i] = (row[i] - sh) - lse
        else:
            inv = _like(s, 1.0) / s
            for b in range(nb):
                f = _factor(seen[b], m, inv)
                oblk = orow[b * ROW_BLOCK:min(b * ROW_BLOCK + ROW_BLOCK, D)]
                for i in range(oblk.shape[0]):
                    oblk[i] *= f


@njit(parallel=True, fastmath={"contract", "reassoc"}, error_model="numpy", cache=True)
def _softmax_inner_kernel(out, x, log):
    """Softmax (``log`` False) or log_softmax (True) along axis 1 of x, out: (O, D, K), K > 1.

    One prange iteration handles COL_TILE columns k of one o: per column a running max and sum, updated online
    over DEPTH_BLOCK rows of D at a time (every step vectorises across the columns). As in the last-dim kernel,
    softmax stores the exps while summing and finishes with one scaling pass; log_softmax with x - max - log(sum).
    """
    O, D, K = x.shape
    nt = (K + COL_TILE - 1) // COL_TILE
    nd = (D + DEPTH_BLOCK - 1) // DEPTH_BLOCK
    for t in prange(O * nt):
        wide_vectors()
        o = t // nt
        k0 = (t - o * nt) * COL_TILE
        k1 = min(k0 + COL_TILE, K)
        W = k1 - k0
        m = np.full(W, -np.inf, dtype=x.dtype)
        s = np.zeros(W, dtype=x.dtype)
        bm = np.empty(W, dtype=x.dtype)
        sh = np.empty(W, dtype=x.dtype)
        seen = np.empty((nd, W), dtype=x.dtype)  # running max after each block of rows, for the final scaling
        for b in range(nd):
            d0, d1 = b * DEPTH_BLOCK, min(b * DEPTH_BLOCK + DEPTH_BLOCK, D)
            bm[:] = m
            for d in range(d0, d1):
                row = x[o, d, k0:k1]
                for k in range(W):
                    v = row[k]
                    bm[k] = v if v > bm[k] else bm[k]
            for k in range(W):
                s[k] = _rescale(s[k], m[k], bm[k])
                m[k] = bm[k]
                sh[k] = _shift(m[k])
            for d in range(d0, d1):
                row = x[o, d, k0:k1]
                if log:
                    for k in range(W):
                        s[k] += _exp(row[k] - sh[k])
                else:
                    orow = out[o, d, k0:k1]
                    for k in range(W):
                        e = _exp(row[k] - sh[k])
                        orow[k] = e
                        s[k] += e
            seen[b] = m
        if log:
            for k in range(W):
                s[k] = math.log(s[k])
            for d in range(D):
                row, orow = x[o, d, k0:k1], out[o, d, k0:k1]
                for k in range(W):
                    orow[k] = (row[k] - sh[k]) - s[k]
        else:
            for k in range(W):
                s[k] = _like(s[k], 1.0) / s[k]
            for b in range(nd):
                for k in range(W):
                    bm[k] = _factor(seen[b, k], m[k], s[k])
                for d in range(b * DEPTH_BLOCK, min(b * DEPTH_BLOCK + DEPTH_BLOCK, D)):
                    orow = out[o, d, k0:k1]
                    for k in range(W):
                        orow[k] *= bm[k]


@njit(error_model="numpy", cache=True)
def _softmax_naive(out, x, log):
    """Reference for (O, D, K) arrays: the textbook three passes (max, sum of exp(x - max), write), no blocking."""
    O, D, K = x.shape
    for o in range(O):
        for k in range(K):
            m = x[o, 0, k]
            for d in range(D):
                v = x[o, d, k]
                m = v if v > m or v != v else m
            s = 0.0
            for d in range(D):
                s += math.exp(x[o, d, k] - m)
            for d in range(D):
                out[o, d, k] = (x[o, d, k] - m) - math.log(s) if log else math.exp(x[o, d, k] - m) / s


# ----------------------------------------------------------------------------------------------------------------
# launchers


def _map(kernel, out, x, *params):
    """Run an elementwise kernel over flat views of the C-contiguous ``out`` and ``x``."""
    run_parallel(kernel, x.size, out.reshape(-1), x.reshape(-1), *params)


def _scalar(x, value):
    """A parameter as a scalar of x's dtype, as torch casts scalar arguments to the op's dtype."""
    return x.dtype.type(value)


def _streams(out):
    """Whether an elementwise kernel writes ``out`` with non-temporal stores: STREAM_BYTES or more (an output that
    large leaves the caches anyway, and a plain store first reads each line it writes), starting on a vector
    boundary (nbops' outputs do: ``_hostpool``), so that every block of a chunk is whole aligned vectors."""
    return out.nbytes >= STREAM_BYTES and out.__array_interface__["data"][0] % vector_bytes() == 0


@register("relu", "cpu")
def relu(out, x):
    _map(_relu_kernel, out, x, _streams(out))


@register("hardtanh", "cpu")
def hardtanh(out, x, min_val, max_val):
    _map(_hardtanh_kernel, out, x, _scalar(x, min_val), _scalar(x, max_val))


@register("leaky_relu", "cpu")
def leaky_relu(out, x, negative_slope):
    _map(_leaky_relu_kernel, out, x, _scalar(x, negative_slope))


@register("elu", "cpu")
def elu(out, x, alpha, scale, input_scale):
    _map(_elu_kernel, out, x, _scalar(x, alpha * scale), _scalar(x, scale), _scalar(x, input_scale))


@register("gelu", "cpu")
def gelu(out, x, approximate):
    kernel = _gelu_tanh_kernel if approximate == "tanh" else _gelu_kernel
    _map(kernel, out, x)


@register("sigmoid", "cpu")
def sigmoid(out, x):
    _map(_sigmoid_kernel, out, x)


@register("silu", "cpu")
def silu(out, x):
    _map(_silu_kernel if np.may_share_memory(out, x) else _silu_halves_kernel, out, x)


@register("mish", "cpu")
def mish(out, x):
    _map(_mish_kernel if np.may_share_memory(out, x) else _mish_halves_kernel, out, x)


@register("tanh", "cpu")
def tanh(out, x):
    _map(_tanh_kernel, out, x)


@register("hardsigmoid", "cpu")
def hardsigmoid(out, x):
    _map(_hardsigmoid_kernel, out, x)


@register("hardswish", "cpu")
def hardswish(out, x):
    _map(_hardswish_kernel, out, x)


@register("softplus", "cpu")
def softplus(out, x, beta, threshold):
    _map(_softplus_kernel, out, x, _scalar(x, beta), _scalar(x, threshold))


@register("softsign", "cpu")
def softsign(out, x):
    _map(_softsign_kernel, out, x)


@register("glu", "cpu")
def glu(out, x):
    """out: (O, L), x: (O, 2, L)."""
    run_parallel(_glu_kernel, x.size, out, x)


@register("prelu", "cpu")
def prelu(out, x, weight):
    """out, x: (N, C, L), weight: (C,)."""
    run_parallel(_prelu_kernel, x.size, out, x, weight)


@register("softmax", "cpu")
def softmax(out, x, log):
    """out, x: (O, D, K); ``log`` selects log_softmax."""
    O, D, K = x.shape
    if K == 1:
        run_parallel(_softmax_lastdim_kernel, x.size, out.reshape(O, D), x.reshape(O, D), log,
                     below=SOFTMAX_SERIAL_BELOW)
    else:
        run_parallel(_softmax_inner_kernel, x.size, out, x, log, below=SOFTMAX_SERIAL_BELOW)


@register("store_strided", "cpu")
def store_strided(out, x):
    """out[...] = x for an ``out`` of any strides (the write-back of an in-place op on a non-contiguous input)."""
    np.copyto(out, x)
