"""torch semantics a torch user relies on across families (issue 17): a Python number as the first operand of a
binary op, dtype promotion of mixed inputs in cat/stack (float16 and bfloat16 inputs included), and what the norm,
pooling and reduction families return (or raise) for empty and degenerate inputs. Every case compares with torch's
own call, result dtype included, on cpu and on the CUDA simulator."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nbops
from helpers import TARGETS, assert_same, check, make, make_int, to_numpy, to_target, to_torch

# the CUDA simulator runs kernels as NumPy scalar code, which warns where integers wrap and where inf arises; torch
# warns for a variance over fewer elements than the correction
pytestmark = [pytest.mark.filterwarnings(f"ignore:{m}:RuntimeWarning")
              for m in ("overflow encountered", "invalid value encountered", "divide by zero encountered")]
pytestmark.append(pytest.mark.filterwarnings("ignore:.*degrees of freedom is <= 0:UserWarning"))  # torch's, on purpose

ALL_DTYPES = [np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.bool_]


def _array(shape, dtype, seed, nonzero=False):
    """Fresh random data of ``dtype``: normal floats, small integers (never 0 when ``nonzero``: divisors), bools."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return make(shape, dtype, seed)
    if dtype == np.bool_:
        return np.ones(shape, np.bool_) if nonzero else make_int(shape, 0, 2, np.int64, seed).astype(np.bool_)
    low = 0 if dtype.kind == "u" else -5
    x = make_int(shape, low, 6, dtype, seed)
    if nonzero:
        x[x == 0] = 3
    return x


def _same_outcome(nb_fn, torch_fn, target, *args, **kwargs):
    """torch's result (shape, dtype, values) when torch accepts the call; an error naming the op when it refuses."""
    try:
        torch_fn(*[to_torch(a) for a in args], **{k: to_torch(v) for k, v in kwargs.items()})
    except (RuntimeError, TypeError, ValueError, IndexError, ZeroDivisionError):
        with pytest.raises((TypeError, ValueError, IndexError, ZeroDivisionError), match=nb_fn.__name__):
            nb_fn(*[to_target(a, target) for a in args], **{k: to_target(v, target) for k, v in kwargs.items()})
        return
    check(nb_fn, torch_fn, target, *args, **kwargs)


# ------------------------------------------------------------------------------------- a number as the first operand
NUMBER_FIRST = [  # (nbops op, torch op, keyword arguments)
    (nbops.add, torch.add, {}),
    (nbops.add, torch.add, {"alpha": 2}),
    (nbops.sub, torch.sub, {}),
    (nbops.sub, torch.sub, {"alpha": -3}),
    (nbops.mul, torch.mul, {}),
    (nbops.div, torch.div, {}),
    (nbops.div, torch.div, {"rounding_mode": "trunc"}),
    (nbops.div, torch.div, {"rounding_mode": "floor"}),
    (nbops.pow, torch.pow, {}),
]
# (number, shape, layout): each number kind on a 2-D non-contiguous array and on a 0-d array, then size 1 and empty
NUMBER_OPERANDS = [(n, shape, layout) for n in (3, -2.5, True) for shape, layout in (((3, 4), "strided"), ((), None))]
NUMBER_OPERANDS += [(-7, (1,), None), (0.5, (0, 3), None)]


# every dtype on cpu; on the (slow) simulator one of each kind of integer
DTYPE_TARGETS = [(np.dtype(d), "cpu") for d in ALL_DTYPES] + [
    pytest.param(np.dtype(d), "cuda", marks=pytest.mark.cuda) for d in (np.float32, np.float64, np.int32, np.uint8,
                                                                         np.bool_)]


@pytest.mark.parametrize("dtype, target", DTYPE_TARGETS, ids=str)
@pytest.mark.parametrize("case", NUMBER_FIRST, ids=lambda c: f"{c[0].__name__}{c[2] or ''}")
def test_number_as_first_operand(case, dtype, target):
    nb_fn, torch_fn, kwargs = case
    for i, (number, shape, layout) in enumerate(NUMBER_OPERANDS):
        x = _array(shape[:-1] + (2 * shape[-1],) if layout else shape, dtype, i, nonzero=True)
        x = x[..., ::2] if layout else x
        _same_outcome(nb_fn, torch_fn, target, number, x, **kwargs)


@pytest.mark.parametrize("target", TARGETS)
def test_number_first_promotes_by_torch_rules(target):
    """The number is a 0-d operand of the lowest priority: it only raises the category (int -> float)."""
    check(nbops.add, torch.add, target, 2.0, np.array([1, 2], np.int32))
    check(nbops.mul, torch.mul, target, 0.5, np.array([1, 2], np.uint8))
    check(nbops.add, torch.add, target, 1000, np.array([1, 2], np.int8))  # wraps, as torch's cast of the number
    check(nbops.sub, torch.sub, target, 1, np.array([1.5, 2.5], np.float64))
    check(nbops.div, torch.div, target, 1.0, np.array([0.0, -0.0, 2.0], np.float32))
    check(nbops.add, torch.add, target, 2, np.array(1.5, np.float64))  # 0-d array and number: the array's dtype
    check(nbops.mul, torch.mul, target, True, np.array([4, 5], np.int16))
    check(nbops.add, torch.add, target, 1e4, make((4, 3), np.float32, 2, offset=1e4))


def test_number_first_keeps_the_array_kind():
    t = torch.randn(3, 2)
    out = nbops.sub(1.0, t, alpha=2)
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, torch.sub(1.0, t, alpha=2))


@pytest.mark.parametrize("fn", [nbops.add, nbops.sub, nbops.mul, nbops.div, nbops.pow])
def test_two_numbers_raise(fn):
    with pytest.raises(TypeError, match=rf"{fn.__name__}\(\): at least one of"):
        fn(2, 3)


# ------------------------------------------------------------------------------------ mixed dtypes in cat and stack
TORCH_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8, torch.int16, torch.int32,
                torch.int64, torch.uint8, torch.bool]
_SUPPORTED = {torch.float32, torch.float64, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool}


def _torch_data(shape, dtype, seed):
    """Random values of torch ``dtype``: normals (NaN and inf among them for floats), small integers, bools."""
    x = torch.from_numpy(make(shape, np.float64, seed) * 4)
    if dtype.is_floating_point:
        x.view(-1)[:2] = torch.tensor([float("nan"), float("-inf")])[: x.numel()]
    return x.to(dtype)


@pytest.mark.parametrize("first", TORCH_DTYPES, ids=str)
def test_cat_stack_promote_every_dtype_pair_cpu(first):
    """torch tensors of every pair of dtypes (bfloat16 has no NumPy view: it comes in as its int16 bits); the result
    has torch's promoted dtype, or is a TypeError naming that dtype when nbops does not compute in it."""
    for second in TORCH_DTYPES:
        a, b = _torch_data((2, 3), first, 1), _torch_data((3, 2), second, 2).t()  # b non-contiguous
        want = torch.promote_types(first, second)
        if want not in _SUPPORTED:
            name = str(want).removeprefix("torch.")
            for fn in (nbops.cat, nbops.stack):
                with pytest.raises(TypeError, match=rf"{fn.__name__}\(\): the result dtype {name} "):
                    fn([a, b])
            continue
        for nb_fn, torch_fn, dim in ((nbops.cat, torch.cat, 1), (nbops.stack, torch.stack, -1)):
            out = nb_fn([a, b], dim)
            assert isinstance(out, torch.Tensor)
            assert_same(out, torch_fn([a, b], dim))


CAT_MIXES = [  # dtypes of the inputs, in order: NumPy arrays, so float16 but no bfloat16
    (np.float32, np.float64),
    (np.float16, np.float32),
    (np.float64, np.float16, np.int32),
    (np.int32, np.float32),
    (np.uint8, np.int8),
    (np.bool_, np.int16, np.bool_),
    (np.int64, np.bool_),
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtypes", CAT_MIXES, ids=lambda ds: "-".join(np.dtype(d).name for d in ds))
def test_cat_stack_mixed_dtypes(dtypes, target):
    xs = [_array((2, 3), d, i) for i, d in enumerate(dtypes)]
    xs[0] = _array((3, 2), dtypes[0], 9).T  # non-contiguous
    for d in (0, 1, -1):
        check(nbops.cat, torch.cat, target, xs, d)
    check(nbops.stack, torch.stack, target, xs, 2)
    check(nbops.cat, torch.cat, target, [_array((0, 3), dtypes[-1], 1), xs[-1]])  # an empty input
    check(nbops.stack, torch.stack, target, [_array((), d, i) for i, d in enumerate(dtypes)])  # 0-d inputs


@pytest.mark.parametrize("target", TARGETS)
def test_cat_half_only_result_raises(target):
    for dtypes in ((np.float16, np.float16), (np.float16, np.int64), (np.bool_, np.float16)):
        xs = [to_target(_array((2,), d, i), target) for i, d in enumerate(dtypes)]
        with pytest.raises(TypeError, match=r"cat\(\): the result dtype float16 .* supported: float32"):
            nbops.cat(xs)


@pytest.mark.parametrize("target", TARGETS)
def test_bfloat16_bits_to_float32(target):
    """The bfloat16 conversion on each target (the cuda one is what a CUDA bfloat16 torch tensor takes): int16 bits
    of random values, -0.0, subnormals, inf and NaN, in a non-contiguous 2-D array and a 0-d one."""
    from nbops._dispatch import Call
    from nbops.ops.shape import _bfloat16_to_float32

    values = torch.from_numpy(make((4, 6), np.float64, 3) * 100)
    values.view(-1)[:5] = torch.tensor([-0.0, 1e-40, float("inf"), float("-inf"), float("nan")], dtype=torch.float64)
    bf16 = values.to(torch.bfloat16)
    bits = bf16.view(torch.int16).numpy()
    for b, want in ((bits[:, ::2], bf16[:, ::2]), (bits[1, 1], bf16[1, 1])):
        x = to_target(np.asarray(b), target)
        call = Call("cat", tensors=x)
        got = to_numpy(_bfloat16_to_float32(call, call["tensors"]))
        assert got.dtype == np.float32
        assert_same(got, want.float(), rtol=0, atol=0)
        assert np.array_equal(np.signbit(got), np.signbit(want.float().numpy()))


# ----------------------------------------------------------------------- empty and degenerate inputs: the norm family
def _f(shape, dtype, seed=0):
    return make(shape, dtype, seed)


def _norm_cases(dtype):
    """(label, nbops op, torch op, args, kwargs) for empty batches, empty features, size-1 and 1-D inputs."""
    cases = []
    for shape in [(0, 3), (0, 3, 4), (2, 3, 0), (2, 0, 4), (2, 0), (1, 3), (1, 3, 1), (2, 3, 1), (3,), (0,), (2, 3)]:
        C = shape[1] if len(shape) > 1 else shape[0]
        x = _f(shape, dtype, 1)
        stats = (_f((C,), dtype, 2), _f((C,), dtype, 3) ** 2 + 1)
        affine = (_f((C,), dtype, 4), _f((C,), dtype, 5))
        if shape != (0,):  # torch skips its checks for this one (see test_norm_deviations_on_empty_inputs)
            cases += [
                (f"batch_norm{shape} train", nbops.batch_norm, F.batch_norm, (x, *stats), {"training": True}),
                (f"batch_norm{shape} eval", nbops.batch_norm, F.batch_norm, (x, *stats), {"training": False}),
                (f"batch_norm{shape} no stats", nbops.batch_norm, F.batch_norm, (x, None, None), {"training": True}),
            ]
        cases += [
            (f"instance_norm{shape}", nbops.instance_norm, F.instance_norm, (x,), {}),
            (f"instance_norm{shape} stats", nbops.instance_norm, F.instance_norm, (x, *stats),
             {"use_input_stats": False}),
            (f"layer_norm{shape}", nbops.layer_norm, F.layer_norm, (x, shape[-1:], *_affine(shape[-1:], dtype)), {}),
            (f"layer_norm{shape} all", nbops.layer_norm, F.layer_norm, (x, shape), {}),
            (f"group_norm{shape} G=1", nbops.group_norm, F.group_norm, (x, 1), {}),
            (f"group_norm{shape} G=3", nbops.group_norm, F.group_norm, (x, 3), {}),
        ]
        # torch fails inside its kernel for an affine weight of an empty channel dim or (instance_norm) an empty
        # batch (see test_norm_deviations_on_empty_inputs); with one element a group, both give the bias plus
        # rounding noise times 1/sqrt(eps), which no tolerance bounds
        if C and shape[0] and math.prod(shape[2:]) > 1:
            cases += [
                (f"instance_norm{shape} affine", nbops.instance_norm, F.instance_norm, (x,),
                 dict(zip(("weight", "bias"), affine))),
                (f"group_norm{shape} G=C affine", nbops.group_norm, F.group_norm, (x, C, *affine), {}),
                (f"batch_norm{shape} affine", nbops.batch_norm, F.batch_norm, (x, None, None, *affine),
                 {"training": True}),
            ]
    return cases


def _affine(shape, dtype):
    return _f(shape, dtype, 6), _f(shape, dtype, 7)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_norms_on_empty_and_degenerate_inputs(dtype, target):
    """torch's result, or torch's refusal (as a ValueError/TypeError naming the op), for each case."""
    for label, nb_fn, torch_fn, args, kwargs in _norm_cases(dtype):
        try:
            _same_outcome(nb_fn, torch_fn, target, *args, **kwargs)
        except (AssertionError, pytest.fail.Exception) as e:
            raise AssertionError(f"{label}: {e}") from None


@pytest.mark.parametrize("target", TARGETS)
def test_norm_running_stats_untouched_by_an_empty_batch(target):
    rm, rv = _f((3,), np.float32, 1), _f((3,), np.float32, 2) ** 2 + 1
    rm_t, rv_t = torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy())
    rm_n, rv_n = to_target(rm, target), to_target(rv, target)
    out = nbops.batch_norm(to_target(_f((0, 3, 2), np.float32), target), rm_n, rv_n, training=True)
    F.batch_norm(torch.zeros(0, 3, 2), rm_t, rv_t, training=True)
    assert to_numpy(out).shape == (0, 3, 2)
    assert_same(to_numpy(rm_n), rm_t, rtol=0, atol=0)
    assert_same(to_numpy(rv_n), rv_t, rtol=0, atol=0)


@pytest.mark.parametrize("target", TARGETS)
def test_norm_deviations_on_empty_inputs(target):
    """Where torch fails inside its kernel (an affine weight with no channels, instance_norm's weight over an empty
    batch) nbops returns the empty result; where torch skips its argument checks for an empty input (eval mode
    without running statistics, a 1-D empty input) nbops still checks them. docs/ops.md lists both."""
    x = to_target(_f((2, 0, 4), np.float32), target)
    w = to_target(np.ones(0, np.float32), target)
    assert to_numpy(nbops.batch_norm(x, None, None, w, w, training=True)).shape == (2, 0, 4)
    assert to_numpy(nbops.instance_norm(x, weight=w, bias=w)).shape == (2, 0, 4)
    w3 = to_target(np.ones(3, np.float32), target)
    assert to_numpy(nbops.instance_norm(to_target(_f((0, 3, 4), np.float32), target), weight=w3)).shape == (0, 3, 4)
    with pytest.raises(ValueError, match=r"batch_norm\(\): running_mean and running_var must be defined"):
        nbops.batch_norm(to_target(_f((0, 3), np.float32), target), None, None, training=False)
    with pytest.raises(ValueError, match=r"batch_norm\(\): expected input with at least 2 dims"):
        nbops.batch_norm(to_target(_f((0,), np.float32), target), None, None, training=True)


# -------------------------------------------------------------------- empty inputs: the pooling and reduction families
POOL_SHAPES = {1: [(0, 3, 5), (2, 0, 5), (2, 3, 0), (0, 5), (3, 0), (0, 0, 5), (2, 3, 1)],
               2: [(0, 3, 5, 5), (2, 0, 5, 5), (2, 3, 0, 5), (0, 5, 5), (3, 0, 5), (0, 0, 5, 5), (2, 3, 1, 1)]}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("nd", [1, 2])
def test_pooling_on_empty_inputs(nd, dtype, target):
    """Window pools take an empty batch only; adaptive max pools an empty dim 0 (an unbatched input's channels
    too); adaptive average pools any empty dim before the spatial ones: torch's rules, result or refusal."""
    for i, shape in enumerate(POOL_SHAPES[nd]):
        x = _f(shape, dtype, i)
        for name, args, kwargs in [(f"max_pool{nd}d", (2,), {}), (f"max_pool{nd}d", (2, 1, 1), {"ceil_mode": True}),
                                   (f"max_pool{nd}d", (2,), {"return_indices": True}), (f"avg_pool{nd}d", (2,), {}),
                                   (f"adaptive_avg_pool{nd}d", (2,), {}), (f"adaptive_avg_pool{nd}d", (0,), {}),
                                   (f"adaptive_max_pool{nd}d", (2,), {"return_indices": True})]:
            _same_outcome(getattr(nbops, name), getattr(F, name), target, x, *args, **kwargs)


REDUCTIONS = ["sum", "mean", "prod", "var", "std", "var_mean", "std_mean", "max", "min", "amax", "amin", "argmax",
              "argmin", "logsumexp"]


@pytest.mark.parametrize("dtype, target", [(np.dtype(d), "cpu") for d in (np.float32, np.float64, np.int32, np.bool_)]
                         + [pytest.param(np.dtype(d), "cuda", marks=pytest.mark.cuda) for d in (np.float64, np.int32)],
                         ids=str)
@pytest.mark.parametrize("op", REDUCTIONS)
def test_reductions_on_empty_inputs(op, dtype, target):
    """Over an empty dim: the identity (sum 0, prod 1, logsumexp -inf), NaN (mean, var, std) or torch's refusal
    (max, min, amax, amin, argmax, argmin); over a non-empty dim of an empty array: an empty result."""
    nb_fn, torch_fn = getattr(nbops, op), getattr(torch, op)
    for i, shape in enumerate([(0, 3), (3, 0), (2, 0, 3), (0,)]):
        x = _array(shape, dtype, i)
        if op != "logsumexp" and op not in ("prod",):
            _same_outcome(nb_fn, torch_fn, target, x)
        for dim in (0, -1, (0, -1)):
            if isinstance(dim, tuple) and (len(shape) < 2 or op in ("max", "min", "argmax", "argmin")):
                continue
            _same_outcome(nb_fn, torch_fn, target, x, dim)
            _same_outcome(nb_fn, torch_fn, target, x, dim=dim, keepdim=True)


# ------------------------------------------------------------ torch's documented signatures: the sweep, kept as tests
def _signature_cases():
    """(label, nbops op, torch op, args, kwargs): keyword forms with torch's parameter names, negative and tuple
    dims, 0-d and integer inputs, for the pointwise, shape, norm, pooling and reduction families."""
    x, x0, xi = _f((2, 3, 4), np.float32, 1), _f((), np.float64, 2), make_int((2, 3, 4), -5, 6, np.int32, 3)
    y = _f((2, 3, 5, 5), np.float64, 4)
    w3, b3 = _f((3,), np.float32, 5), _f((3,), np.float32, 6)
    view, expand = (lambda t, *s: t.view(*s)), (lambda t, *s: t.expand(*s))
    return [
        ("add kw", nbops.add, torch.add, (), dict(input=x, other=_f((4,), np.float32, 7), alpha=2)),
        ("div kw", nbops.div, torch.div, (), dict(input=xi, other=3, rounding_mode="floor")),
        ("pow 0d", nbops.pow, torch.pow, (x0, _f((), np.float64, 8)), {}),
        ("maximum 0d int", nbops.maximum, torch.maximum, (xi, np.array(2, np.int64)), {}),
        ("where kw", nbops.where, torch.where, (), dict(condition=x > 0, input=xi, other=2.5)),
        ("clamp kw int", nbops.clamp, torch.clamp, (), dict(input=xi, min=-2, max=3)),
        ("clamp float bound int input", nbops.clamp, torch.clamp, (xi, 0.5), {}),
        ("exp int", nbops.exp, torch.exp, (xi,), {}),
        ("abs 0d", nbops.abs, torch.abs, (x0,), {}),
        ("reshape kw", nbops.reshape, torch.reshape, (), dict(input=x, shape=(4, -1))),
        ("reshape 0d", nbops.reshape, torch.reshape, (x0, (1, -1)), {}),
        ("view torch.Size", nbops.view, view, (x, torch.Size([6, 4])), {}),
        ("permute neg", nbops.permute, torch.permute, (), dict(input=x, dims=(-1, 0, -2))),
        ("permute 0d", nbops.permute, torch.permute, (x0, ()), {}),
        ("transpose 0d", nbops.transpose, torch.transpose, (x0, 0, -1), {}),
        ("squeeze tuple", nbops.squeeze, torch.squeeze, (), dict(input=_f((1, 3, 1), np.float32, 9), dim=(0, -1))),
        ("squeeze 0d", nbops.squeeze, torch.squeeze, (x0, -1), {}),
        ("unsqueeze 0d", nbops.unsqueeze, torch.unsqueeze, (x0, -1), {}),
        ("cat kw neg", nbops.cat, torch.cat, (), dict(tensors=(x, xi), dim=-1)),
        ("stack 0d", nbops.stack, torch.stack, ([x0, x0], -1), {}),
        ("expand 0d", nbops.expand, expand, (x0, (2, 3)), {}),
        ("flatten 0d", nbops.flatten, torch.flatten, (), dict(input=x0, start_dim=0, end_dim=-1)),
        ("split kw", nbops.split, torch.split, (), dict(tensor=x, split_size_or_sections=[1, 3], dim=-1)),
        ("chunk kw", nbops.chunk, torch.chunk, (), dict(input=x, chunks=3, dim=-1)),
        ("narrow kw", nbops.narrow, torch.narrow, (), dict(input=x, dim=-1, start=-3, length=2)),
        ("batch_norm kw", nbops.batch_norm, F.batch_norm, (), dict(input=x, running_mean=w3 * 0, running_var=b3 ** 2,
                                                                   weight=w3, bias=b3, training=True, momentum=None,
                                                                   eps=1e-3)),
        ("instance_norm kw", nbops.instance_norm, F.instance_norm, (), dict(input=x, weight=w3, bias=b3, eps=1e-3)),
        ("layer_norm kw", nbops.layer_norm, F.layer_norm, (), dict(input=x, normalized_shape=[3, 4], eps=1e-3)),
        ("layer_norm 0d", nbops.layer_norm, F.layer_norm, (x0, ()), {}),
        ("group_norm kw", nbops.group_norm, F.group_norm, (), dict(input=x, num_groups=3, weight=w3, bias=b3)),
        ("rms_norm 0d", nbops.rms_norm, F.rms_norm, (x0, ()), {}),
        ("max_pool2d kw", nbops.max_pool2d, F.max_pool2d, (), dict(input=y, kernel_size=[3, 2], stride=(2, 1),
                                                                   padding=1, dilation=1, ceil_mode=True)),
        ("avg_pool2d kw", nbops.avg_pool2d, F.avg_pool2d, (), dict(input=y, kernel_size=3, stride=2, padding=1,
                                                                   ceil_mode=True, count_include_pad=False,
                                                                   divisor_override=2)),
        ("avg_pool1d stride ()", nbops.avg_pool1d, F.avg_pool1d, (x, 2, ()), {}),
        ("adaptive_avg_pool2d None", nbops.adaptive_avg_pool2d, F.adaptive_avg_pool2d, (),
         dict(input=y, output_size=(3, None))),
        ("adaptive_max_pool1d kw", nbops.adaptive_max_pool1d, F.adaptive_max_pool1d, (),
         dict(input=x, output_size=3, return_indices=True)),
        ("sum kw tuple", nbops.sum, torch.sum, (), dict(input=x, dim=(0, -1), keepdim=True)),
        ("sum int dtype", nbops.sum, torch.sum, (xi, -1), dict(dtype=torch.float64)),
        ("mean list", nbops.mean, torch.mean, (x, [0, 2]), {}),
        ("prod 0d", nbops.prod, torch.prod, (x0, -1, True), {}),
        ("var kw", nbops.var, torch.var, (), dict(input=x, dim=(0, 2), correction=0, keepdim=True)),
        ("std_mean unbiased", nbops.std_mean, torch.std_mean, (x, 1), dict(unbiased=False)),
        ("var 0d", nbops.var, torch.var, (x0, 0), dict(correction=0)),
        ("max kw", nbops.max, torch.max, (), dict(input=xi, dim=-2, keepdim=True)),
        ("amin 0d", nbops.amin, torch.amin, (x0, -1), {}),
        ("argmax bool", nbops.argmax, torch.argmax, (x > 0, 1), {}),
        ("logsumexp int", nbops.logsumexp, torch.logsumexp, (), dict(input=xi, dim=(0, 1))),
    ]


@pytest.mark.parametrize("target", TARGETS)
def test_documented_signatures(target):
    for label, nb_fn, torch_fn, args, kwargs in _signature_cases():
        try:
            _same_outcome(nb_fn, torch_fn, target, *args, **kwargs)
        except (AssertionError, pytest.fail.Exception) as e:
            raise AssertionError(f"{label}: {e}") from None


def test_narrow_start_from_an_array():
    """torch.narrow takes a 0-d tensor as start: nbops takes a 0-d integer array in host memory."""
    check(nbops.narrow, torch.narrow, "cpu", _f((2, 3, 4), np.float64), 2, np.array(1), 2)
    x = torch.arange(10.0)
    torch.testing.assert_close(nbops.narrow(x, 0, torch.tensor(-4), 3), torch.narrow(x, 0, torch.tensor(-4), 3))
    for bad in (np.array(1.0), np.array([1])):
        with pytest.raises(TypeError, match=r"narrow\(\): argument 'start' must be an int or a 0-d integer array"):
            nbops.narrow(x.numpy(), 0, bad, 2)


@pytest.mark.cuda
def test_narrow_start_on_the_device_is_refused():
    x = to_target(_f((5,), np.float32), "cuda")
    with pytest.raises(TypeError, match="synchronise"):
        nbops.narrow(x, 0, to_target(np.array(1), "cuda"), 2)
