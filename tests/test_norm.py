import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nbops
from helpers import DTYPES, assert_same, check, make, outside_simulator, to_numpy, to_target
from nbops.cpu import norm as cpu_norm


def grid(cases):
    """(target, case) params: every case on cpu, the cases with every dim <= 32 also on cuda (the simulator runs
    one Python thread per CUDA thread)."""
    out = [pytest.param("cpu", c, id=f"cpu-{c}") for c in cases]
    out += [pytest.param("cuda", c, id=f"cuda-{c}", marks=pytest.mark.cuda) for c in cases
            if all(d <= 32 for d in c[0])]
    return out


def t64(x):
    return torch.from_numpy(np.array(x, np.float64))


# ---------------------------------------------------------------------------------------------------------------
# layer norm, RMS norm

ROW_CASES = [  # (shape, normalized_shape)
    ((4, 7), (7,)),
    ((2, 3, 5), (3, 5)),
    ((3, 1), (1,)),
    ((6,), (6,)),
    ((5, 300), (300,)),  # several statistics blocks per row
    ((2, 1, 1000), (1, 1000)),
    ((1, 70000), (70000,)),  # few long rows: split into chunks
    ((0, 4), (4,)),
    ((2, 0), (0,)),
]


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target,case", grid(ROW_CASES))
def test_layer_norm(target, case, dtype, affine):
    shape, ns = case
    w = make(ns, dtype, seed=1) if affine else None
    b = make(ns, dtype, seed=2) if affine else None
    check(nbops.layer_norm, F.layer_norm, target, make(shape, dtype), ns, w, b, eps=1e-5)


@pytest.mark.parametrize("eps", [None, 1e-3])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target,case", grid(ROW_CASES))
def test_rms_norm(target, case, dtype, eps):
    shape, ns = case
    w = make(ns, dtype, seed=1) if eps is None else None
    check(nbops.rms_norm, F.rms_norm, target, make(shape, dtype, scale=1e-3), ns, w, eps=eps)


@pytest.mark.parametrize("dtype", DTYPES)
def test_few_long_rows_propagate_nan_and_inf(dtype, monkeypatch):
    # rows split into chunks (forced: the policy depends on the thread count) take the chunk statistics and
    # ``_finish_rows`` / ``_finish_rms``; a NaN or inf in one chunk poisons its row only
    monkeypatch.setattr(cpu_norm, "_few_long_rows", lambda M, K: True)
    x = make((3, 70000), dtype, seed=4)
    x[0, 40000] = np.nan
    x[1, 5] = np.inf
    check(nbops.layer_norm, F.layer_norm, "cpu", x, (70000,))
    check(nbops.rms_norm, F.rms_norm, "cpu", x, (70000,))
    got = nbops.layer_norm(x, (70000,), eps=0.0)
    assert np.isnan(got[:2]).all() and np.isfinite(got[2]).all()


def test_missing_affine_parameters_are_kept_filled_and_bounded(monkeypatch):
    # a missing weight or bias is a filled array kept for the next call (ops/norm.py ``_filled``): never changed by a
    # kernel, at most FILLS_KEPT of them, and none larger than FILLS_MAX_BYTES
    from nbops.ops import norm as ops

    monkeypatch.setattr(ops, "_fills", {})
    sizes = list(range(3, 3 + ops.FILLS_KEPT + 3))
    for _ in range(2):
        for k in sizes:
            x = make((5, k), np.float32, seed=k)
            check(nbops.layer_norm, F.layer_norm, "cpu", x, (k,))
            check(nbops.group_norm, F.group_norm, "cpu", make((2, 4, k), np.float64, seed=k), 2)
    assert len(ops._fills) == ops.FILLS_KEPT
    for (n, fill, dt), a in ops._fills.items():
        assert a.shape == (n,) and a.dtype == dt and (a == fill).all()
    assert ops._filled(4, 1, np.dtype(np.float32)) is ops._filled(4, 1, np.dtype(np.float32))
    monkeypatch.setattr(ops, "FILLS_MAX_BYTES", 64)
    big = ops._filled(17, 0, np.dtype(np.float32))
    assert (big == 0).all() and big is not ops._filled(17, 0, np.dtype(np.float32))
    assert (17, 0, np.dtype(np.float32)) not in ops._fills


def test_rms_norm_default_eps_is_the_dtype_epsilon():
    x = np.zeros((2, 4), np.float32)
    x[0, 0] = 1e-4
    got = nbops.rms_norm(x, (4,))
    np.testing.assert_allclose(got[0, 0], 1e-4 / np.sqrt(1e-8 / 4 + np.finfo(np.float32).eps), rtol=1e-6)
    assert_same(got, F.rms_norm(torch.from_numpy(x), (4,)))


@pytest.mark.parametrize("target", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
@pytest.mark.parametrize("layout", ["transposed", "strided"])
def test_row_norms_noncontiguous(target, layout):
    x = make((6, 5), np.float32, layout=layout)
    check(nbops.layer_norm, F.layer_norm, target, x, (5,))
    check(nbops.rms_norm, F.rms_norm, target, x, (5,))


# ---------------------------------------------------------------------------------------------------------------
# group norm, instance norm

GROUP_CASES = [  # (shape, num_groups)
    ((2, 6, 5), 3),
    ((3, 4), 2),
    ((1, 4, 3, 3), 4),
    ((2, 6, 2, 3), 1),
    ((2, 8, 700), 2),
    ((0, 4, 3), 2),
    ((2, 4, 0), 2),
]


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target,case", grid(GROUP_CASES))
def test_group_norm(target, case, dtype, affine):
    shape, G = case
    w = make(shape[1:2], dtype, seed=1) if affine else None
    b = make(shape[1:2], dtype, seed=2) if affine else None
    check(nbops.group_norm, F.group_norm, target, make(shape, dtype), G, w, b, eps=1e-5)


INSTANCE_CASES = [  # (shape, with running statistics); torch takes neither running statistics nor affine with N = 0
    ((2, 3, 5), True),
    ((2, 3, 5), False),
    ((1, 4, 3, 3), True),
    ((3, 2, 700), True),
    ((3, 2, 700), False),
    ((2, 3, 0), True),
    ((0, 3, 4), False),
]


def run_with_running(target, nb_fn, torch_fn, x, rm, rv, *args, **kwargs):
    """Run nbops on ``target`` and torch with running statistics (None or arrays updated in place) and compare the
    outputs and the updated running statistics."""
    nb_rm, nb_rv = to_target(rm, target), to_target(rv, target)
    t_rm = None if rm is None else torch.from_numpy(rm.copy())
    t_rv = None if rv is None else torch.from_numpy(rv.copy())
    t_args = [torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in args]
    expected = torch_fn(torch.from_numpy(x), t_rm, t_rv, *t_args, **kwargs)
    nb_args = [to_target(a, target) for a in args]
    actual = nb_fn(to_target(x, target), nb_rm, nb_rv, *nb_args, **kwargs)
    assert_same(to_numpy(actual), expected)
    if rm is not None:
        assert_same(to_numpy(nb_rm), t_rm)
        assert_same(to_numpy(nb_rv), t_rv)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target,case", grid(INSTANCE_CASES))
def test_instance_norm(target, case, dtype):
    shape, running = case
    C = shape[1]
    rm = make((C,), dtype, seed=3) if running else None
    rv = np.abs(make((C,), dtype, seed=4)) if running else None
    w, b = (make((C,), dtype, seed=1), make((C,), dtype, seed=2)) if shape[0] else (None, None)
    run_with_running(target, nbops.instance_norm, F.instance_norm, make(shape, dtype), rm, rv, w, b,
                     use_input_stats=True, momentum=0.3, eps=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_instance_norm_running_stats_only(target, dtype):
    rm, rv = make((3,), dtype, seed=3), np.abs(make((3,), dtype, seed=4))
    run_with_running(target, nbops.instance_norm, F.instance_norm, make((2, 3, 1), dtype), rm, rv,
                     use_input_stats=False)


# ---------------------------------------------------------------------------------------------------------------
# batch norm

BATCH_CASES = [  # (shape,); cpu paths: fused per channel (C >= 8), row chunks (long rows, few C), columns (short rows)
    ((4, 16, 40),),
    ((2, 12, 3, 11),),
    ((3, 2, 50),),
    ((2, 3, 40000),),  # rows split into several chunks
    ((1, 1, 33000),),
    ((5, 3),),
    ((2, 3),),
    ((6, 4, 3),),
    ((300, 5),),
    ((0, 3, 4),),
    ((2, 3, 0),),
]


@pytest.mark.parametrize("affine,running", [(True, True), (False, False)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target,case", grid(BATCH_CASES))
def test_batch_norm_train(target, case, dtype, affine, running):
    (shape,) = case
    C = shape[1]
    rm = make((C,), dtype, seed=3) if running else None
    rv = np.abs(make((C,), dtype, seed=4)) if running else None
    w = make((C,), dtype, seed=1) if affine else None
    b = make((C,), dtype, seed=2) if affine else None
    run_with_running(target, nbops.batch_norm, F.batch_norm, make(shape, dtype), rm, rv, w, b,
                     training=True, momentum=0.2, eps=1e-5)


@pytest.mark.parametrize("affine,running", [(True, False), (False, True)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target,case", grid(BATCH_CASES[:4]))
def test_batch_norm_train_mixed(target, case, dtype, affine, running):
    test_batch_norm_train(target, case, dtype, affine, running)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target,case", grid(BATCH_CASES))
def test_batch_norm_eval(target, case, dtype):
    (shape,) = case
    C = shape[1]
    rm, rv = make((C,), dtype, seed=3), np.abs(make((C,), dtype, seed=4))
    w, b = make((C,), dtype, seed=1), make((C,), dtype, seed=2)
    run_with_running(target, nbops.batch_norm, F.batch_norm, make(shape, dtype), rm, rv, w, b, training=False)


def test_batch_norm_updates_torch_tensors_in_place():
    x = torch.randn(8, 3, 5)
    rm, rv = torch.zeros(3), torch.ones(3)
    rm_ref, rv_ref = rm.clone(), rv.clone()
    out = nbops.batch_norm(x, rm, rv, training=True, momentum=0.25)
    expected = F.batch_norm(x, rm_ref, rv_ref, training=True, momentum=0.25)
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(rm, rm_ref)
    torch.testing.assert_close(rv, rv_ref)
    assert not torch.equal(rm, torch.zeros(3))


@pytest.mark.parametrize("target", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_batch_norm_updates_strided_running_stats(target):
    base_m, base_v = make((6,), np.float32, seed=3), np.abs(make((6,), np.float32, seed=4))
    rm, rv = to_target(base_m, target)[::2], to_target(base_v, target)[::2]
    x = make((4, 3, 5), np.float32)
    t_rm, t_rv = torch.from_numpy(base_m[::2].copy()), torch.from_numpy(base_v[::2].copy())
    assert_same(to_numpy(nbops.batch_norm(to_target(x, target), rm, rv, training=True)),
                F.batch_norm(torch.from_numpy(x), t_rm, t_rv, training=True))
    assert_same(to_numpy(rm), t_rm)
    assert_same(to_numpy(rv), t_rv)


@pytest.mark.parametrize("target", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_batch_norm_noncontiguous_input(target):
    x = make((4, 3, 6), np.float32, layout="transposed")
    check(nbops.batch_norm, F.batch_norm, target, x, None, None, training=True)
    x = make((5, 6), np.float32, layout="strided")
    check(nbops.batch_norm, F.batch_norm, target, x, None, None, training=True)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the simulator computes with NumPy scalars
@pytest.mark.parametrize("target", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_norms_propagate_nan_and_inf(target):
    x = make((3, 4, 5), np.float32)
    x[0, 1, 2] = np.nan
    x[1, 2, 3] = np.inf
    x[2, 0, 0] = -np.inf
    check(nbops.layer_norm, F.layer_norm, target, x, (5,))
    check(nbops.rms_norm, F.rms_norm, target, x, (5,))
    check(nbops.group_norm, F.group_norm, target, x, 2)
    check(nbops.batch_norm, F.batch_norm, target, x, None, None, training=True)


# ---------------------------------------------------------------------------------------------------------------
# large offsets: Welford + Chan keep float32 precision where E[x^2] - E[x]^2 does not

OFFSET_CASES = [  # (op, shape, kwargs, reference reduction dims of a (N, C, L) or (M, K) view)
    ("layer_norm", (16, 1000)),
    ("layer_norm", (3, 70000)),  # few long rows (2 threads): chunk statistics merged by _finish_rows
    ("group_norm", (4, 8, 300)),
    ("instance_norm", (4, 3, 500)),
    ("batch_norm", (8, 16, 200)),  # fused per-channel path
    ("batch_norm", (8, 2, 3000)),  # row chunks
    ("batch_norm", (4000, 3)),  # columns
]


def _offset_reference(op, x):
    """float64 reference of the normalised x (no affine) and the reduction dims of each statistic."""
    xd = t64(x)
    if op == "layer_norm":
        return F.layer_norm(xd, x.shape[-1:]), (-1,)
    if op == "group_norm":
        return F.group_norm(xd, 2), None
    if op == "instance_norm":
        return F.instance_norm(xd), (-1,)
    return F.batch_norm(xd, None, None, training=True), (0, 2) if x.ndim == 3 else (0,)


def _nbops_offset(op, x):
    if op == "layer_norm":
        return nbops.layer_norm(x, x.shape[-1:])
    if op == "group_norm":
        return nbops.group_norm(x, 2)
    if op == "instance_norm":
        return nbops.instance_norm(x)
    return nbops.batch_norm(x, None, None, training=True)


@pytest.mark.parametrize("op,shape", OFFSET_CASES)
def test_large_offset_matches_float64(op, shape):
    x = make(shape, np.float32, seed=5, offset=1e4)
    expected, dims = _offset_reference(op, x)
    got = _nbops_offset(op, x)
    assert_same(got, expected.float())
    if dims is not None:  # naive one-pass moments in float32 lose the variance entirely at this offset
        mean = x.mean(axis=dims, keepdims=True, dtype=np.float32)
        var = (x * x).mean(axis=dims, keepdims=True, dtype=np.float32) - mean * mean
        naive = (x - mean) / np.sqrt(np.maximum(var, 0) + np.float32(1e-5))
        assert not np.allclose(naive, expected.float().numpy(), atol=1e-2)


@pytest.mark.cuda
@pytest.mark.parametrize("op,shape", [("layer_norm", (3, 30)), ("batch_norm", (5, 3, 7)),
                                      ("instance_norm", (2, 3, 20))])
def test_large_offset_matches_float64_cuda(op, shape):
    x = make(shape, np.float32, seed=5, offset=1e4)
    expected, _ = _offset_reference(op, x)
    assert_same(to_numpy(_nbops_offset(op, to_target(x, "cuda"))), expected.float())


def test_large_offset_torch_float32_is_less_precise():
    """torch's float32 kernel rounds the mean to float32 (ulp 1e-3 at 1e4): parity with it needs atol 2e-3."""
    x = make((16, 1000), np.float32, seed=5, offset=1e4)
    check(nbops.layer_norm, F.layer_norm, "cpu", x, (1000,), atol=2e-3, rtol=0)


@pytest.mark.parametrize("n", [1, 7, 256, 257, 1000, 2048, 2049, 5000, 20000])
def test_blocked_moments_match_the_naive_welford(n):
    v = make((n,), np.float32, seed=n, offset=100.0)
    cnt, mean, m2 = cpu_norm._accumulate(v, v[0], 0, 0.0, 0.0)
    ref_mean, ref_m2 = cpu_norm._moments_naive(v)
    assert cnt == n
    np.testing.assert_allclose(np.float64(v[0]) + mean, ref_mean, rtol=0, atol=1e-6)
    np.testing.assert_allclose(m2, ref_m2, rtol=1e-5, atol=1e-9)


# ---------------------------------------------------------------------------------------------------------------
# SwitchNorm, DeepNorm, DyT against reference implementations written with torch ops


def switch_norm_reference(x, weight, bias, mean_weight, var_weight, running_mean, running_var, training, momentum,
                          eps, using_bn=True):
    """The authors' SwitchNorm forward (Luo et al. 2018, reference code) in float64 torch ops, with torch's
    momentum convention; updates the running tensors in place."""
    N, C = x.shape[:2]
    xv = x.reshape(N, C, -1)
    mean_in = xv.mean(-1, keepdim=True)
    var_in = xv.var(-1, keepdim=True)
    mean_ln = mean_in.mean(1, keepdim=True)
    temp = var_in + mean_in ** 2
    var_ln = temp.mean(1, keepdim=True) - mean_ln ** 2
    mw, vw = torch.softmax(mean_weight, 0), torch.softmax(var_weight, 0)
    mean = mw[0] * mean_in + mw[1] * mean_ln
    var = vw[0] * var_in + vw[1] * var_ln
    if using_bn:
        if training:
            mean_bn = mean_in.mean(0, keepdim=True)
            var_bn = temp.mean(0, keepdim=True) - mean_bn ** 2
            if running_mean is not None:
                running_mean.mul_(1 - momentum).add_(momentum * mean_bn.reshape(C))
                running_var.mul_(1 - momentum).add_(momentum * var_bn.reshape(C))
        else:
            mean_bn, var_bn = running_mean.reshape(1, C, 1), running_var.reshape(1, C, 1)
        mean = mean + mw[2] * mean_bn
        var = var + vw[2] * var_bn
    y = (xv - mean) / (var + eps).sqrt()
    if weight is not None:
        y = y * weight.reshape(1, C, 1)
    if bias is not None:
        y = y + bias.reshape(1, C, 1)
    return y.reshape(x.shape)


SWITCH_CASES = [((4, 3, 5),), ((2, 5, 3, 40),), ((3, 2, 700),), ((1, 2, 2),)]


@pytest.mark.parametrize("mode", ["train", "eval", "no_bn"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target,case", grid(SWITCH_CASES))
def test_switch_norm(target, case, dtype, mode):
    (shape,) = case
    C = shape[1]
    k = 2 if mode == "no_bn" else 3
    x = make(shape, dtype, seed=0, offset=0.5)
    w, b = make((C,), dtype, seed=1), make((C,), dtype, seed=2)
    mw, vw = make((k,), dtype, seed=6), make((k,), dtype, seed=7)
    rm, rv = make((C,), dtype, seed=3), np.abs(make((C,), dtype, seed=4))
    training, using_bn = mode == "train", mode != "no_bn"
    t_rm, t_rv = t64(rm), t64(rv)
    expected = switch_norm_reference(t64(x), t64(w), t64(b), t64(mw), t64(vw), t_rm, t_rv, training, 0.3, 1e-5,
                                      using_bn)
    rm0 = rm.copy()
    nb_rm, nb_rv = to_target(rm, target), to_target(rv, target)
    got = nbops.switch_norm(to_target(x, target), to_target(w, target), to_target(b, target), to_target(mw, target),
                            to_target(vw, target), nb_rm, nb_rv, training, 0.3, 1e-5, using_bn=using_bn)
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    assert_same(to_numpy(got), expected.to(tdt))
    assert_same(to_numpy(nb_rm), t_rm.to(tdt))
    assert_same(to_numpy(nb_rv), t_rv.to(tdt))
    if training:
        assert not np.array_equal(to_numpy(nb_rm), rm0)


def test_switch_norm_with_only_instance_statistics_is_instance_norm_with_unbiased_variance():
    x = make((3, 4, 6), np.float32)
    logits = np.array([0.0, -np.inf, -np.inf], np.float32)
    got = nbops.switch_norm(x, None, None, logits, logits, None, None, True, eps=0.0)
    xt = torch.from_numpy(x)
    assert_same(got, (xt - xt.mean(-1, keepdim=True)) / xt.std(-1, keepdim=True))


DEEP_CASES = [((4, 7), (7,)), ((2, 3, 5), (3, 5)), ((5, 300), (300,)), ((0, 3), (3,))]


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target,case", grid(DEEP_CASES))
def test_deep_norm(target, case, dtype, affine):
    shape, ns = case
    w = make(ns, dtype, seed=1) if affine else None
    b = make(ns, dtype, seed=2) if affine else None
    alpha = nbops.deep_norm_coefficients(num_encoder_layers=6).encoder_alpha

    def reference(x, fx, alpha, ns, weight, bias, eps):
        return F.layer_norm(alpha * x + fx, ns, weight, bias, eps)

    check(nbops.deep_norm, reference, target, make(shape, dtype), make(shape, dtype, seed=9), alpha, ns, w, b,
          eps=1e-5)


def test_deep_norm_coefficients():
    c = nbops.deep_norm_coefficients(num_encoder_layers=18)
    assert c.encoder_alpha == pytest.approx(36 ** 0.25) and c.encoder_beta == pytest.approx(144 ** -0.25)
    assert c.decoder_alpha is None and c.decoder_beta is None
    c = nbops.deep_norm_coefficients(num_decoder_layers=12)
    assert c.encoder_alpha is None
    assert (c.decoder_alpha, c.decoder_beta) == pytest.approx((24 ** 0.25, 96 ** -0.25))
    c = nbops.deep_norm_coefficients(6, 6)
    assert c.encoder_alpha == pytest.approx(0.81 * (6 ** 5) ** (1 / 16))
    assert c.encoder_beta == pytest.approx(0.87 * (6 ** 5) ** (-1 / 16))
    assert (c.decoder_alpha, c.decoder_beta) == pytest.approx((18 ** 0.25, 72 ** -0.25))


DYT_CASES = [((4, 7), (7,)), ((2, 3, 5), (3, 5)), ((6,), (6,)), ((5, 3000), (3000,)), ((0, 3), (3,))]


def dyt_reference(x, alpha, weight, bias):
    y = torch.tanh(alpha * x)
    if weight is not None:
        y = weight * y
    return y if bias is None else y + bias


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target,case", grid(DYT_CASES))
def test_dyt(target, case, dtype, affine):
    shape, ps = case
    w = make(ps, dtype, seed=1) if affine else None
    b = make(ps, dtype, seed=2) if affine else None
    check(nbops.dyt, dyt_reference, target, make(shape, dtype, scale=3.0), 0.7, w, b)


@pytest.mark.parametrize("target", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_dyt_alpha_array_and_special_values(target):
    x = np.array([[np.nan, np.inf, -np.inf, -0.0, 1e-30, 0.3, -0.56, 5.0, 12.0, 1e-3]], np.float32)
    alpha = np.array([1.5], np.float32)
    check(nbops.dyt, dyt_reference, target, x, alpha, None, None)


def test_dyt_float32_tanh_is_within_2_ulp():
    x = np.concatenate([np.linspace(-12, 12, 200001), np.geomspace(1e-30, 1, 20001)]).astype(np.float32)
    got = nbops.dyt(x, 1.0, None, None)
    ref = np.tanh(x.astype(np.float64))
    ulp = np.abs(got - ref) / np.spacing(np.abs(ref).astype(np.float32))
    assert ulp.max() <= 2.0


def test_dyt32_kernel_row_loop_is_wide_where_avx512():
    """The float32 DyT rows run on 512-bit vectors where the CPU has AVX-512 (``_dyt32_row`` calls
    ``wide_vectors`` inside the prange body; outside it, the loop stayed on ymm here): the kernel's own source,
    compiled afresh (the cached dispatcher cannot show its assembly), and its values equal to the cached one's."""
    from numba import njit, types

    from nbops.cpu._util import vector_bytes

    fresh = njit(parallel=True, fastmath={"contract"}, error_model="numpy")(cpu_norm._dyt32_kernel.py_func)
    m2, v1 = types.Array(types.float32, 2, "C"), types.Array(types.float32, 1, "C")
    fresh.compile((m2, m2, v1, v1, v1))
    zmm = fresh.inspect_asm(fresh.signatures[0]).count("%zmm")
    x = make((37, 300), np.float32, seed=5, scale=3.0)
    w, b = make((300,), np.float32, seed=6), make((300,), np.float32, seed=7)
    alpha = np.array([0.7], np.float32)
    got, ref = np.empty_like(x), np.empty_like(x)
    fresh(got, x, alpha, w, b)
    cpu_norm._dyt32_kernel(ref, x, alpha, w, b)
    assert np.array_equal(got, ref)
    assert (zmm > 20) if vector_bytes() == 64 else zmm == 0


# ---------------------------------------------------------------------------------------------------------------
# errors

F32 = np.float32
X = np.zeros((2, 4, 3), F32)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: nbops.batch_norm(np.zeros((1, 3), F32), None, None, training=True), ValueError,
     r"batch_norm\(\): Expected more than 1 value per channel when training, got input size \(1, 3\)"),
    (lambda: nbops.batch_norm(np.zeros((1, 3, 1), F32), None, None, training=True), ValueError,
     "more than 1 value per channel"),
    (lambda: nbops.batch_norm(X, None, None), ValueError, r"batch_norm\(\).*evaluation mode"),
    (lambda: nbops.batch_norm(X, np.zeros(3, F32), np.ones(4, F32), training=True), ValueError,
     r"batch_norm\(\): running_mean should be a 1-D array of 4"),
    (lambda: nbops.batch_norm(X, np.zeros(4), np.ones(4, F32), training=True), TypeError,
     r"batch_norm\(\).*running_mean.*dtype"),
    (lambda: nbops.batch_norm(X, None, None, np.ones(3, F32), training=True), ValueError,
     r"batch_norm\(\): weight should contain 4 elements not 3"),
    (lambda: nbops.batch_norm(X, None, None, training=True, eps=0.0), ValueError, r"batch_norm\(\): eps must be"),
    (lambda: nbops.batch_norm(X, None, None, training=True, momentum=None), TypeError, r"batch_norm\(\).*momentum"),
    (lambda: nbops.batch_norm(np.zeros(4, F32), None, None, training=True), ValueError,
     r"batch_norm\(\).*at least 2 dims"),
    (lambda: nbops.batch_norm(np.zeros((2, 4), np.int32), None, None, training=True), TypeError,
     r"batch_norm\(\).*dtype"),
    (lambda: nbops.batch_norm([1.0, 2.0], None, None), TypeError, r"batch_norm\(\): argument 'input'"),
    (lambda: nbops.group_norm(X, 3), ValueError, r"group_norm\(\): Expected number of channels.*divisible"),
    (lambda: nbops.group_norm(X, 0), ValueError, r"group_norm\(\).*divisible"),
    (lambda: nbops.group_norm(X, 2.0), TypeError, r"group_norm\(\).*num_groups"),
    (lambda: nbops.group_norm(X, 2, np.ones(3, F32)), ValueError, r"group_norm\(\): Expected weight to be a vector"),
    (lambda: nbops.instance_norm(np.zeros((2, 3, 1), F32)), ValueError,
     r"instance_norm\(\): Expected more than 1 spatial element when training"),
    (lambda: nbops.instance_norm(X, np.zeros(4, F32), None), ValueError, r"instance_norm\(\).*both be None"),
    (lambda: nbops.instance_norm(X, use_input_stats=False), ValueError, r"instance_norm\(\).*use_input_stats"),
    (lambda: nbops.layer_norm(X, (4,)), ValueError, r"layer_norm\(\): Given normalized_shape=\[4\]"),
    (lambda: nbops.layer_norm(X, ()), ValueError, r"layer_norm\(\).*at least 1-dimensional"),
    (lambda: nbops.layer_norm(X, "3"), TypeError, r"layer_norm\(\).*normalized_shape"),
    (lambda: nbops.layer_norm(X, (3,), np.ones(4, F32)), ValueError,
     r"layer_norm\(\): Expected weight to be of same shape as normalized_shape"),
    (lambda: nbops.layer_norm(X, (3,), np.ones(3)), TypeError, r"layer_norm\(\).*weight.*dtype"),
    (lambda: nbops.layer_norm(X, (3,), eps="x"), TypeError, r"layer_norm\(\).*eps"),
    (lambda: nbops.rms_norm(X, (4, 3), np.ones(3, F32)), ValueError, r"rms_norm\(\): Expected weight"),
    (lambda: nbops.rms_norm(X, (2,)), ValueError, r"rms_norm\(\): Given normalized_shape"),
    (lambda: nbops.switch_norm(np.zeros((2, 4), F32), None, None, np.zeros(3, F32), np.zeros(3, F32), None, None,
                               True), ValueError, r"switch_norm\(\).*at least 3 dims"),
    (lambda: nbops.switch_norm(np.zeros((2, 4, 1), F32), None, None, np.zeros(3, F32), np.zeros(3, F32), None, None,
                               True), ValueError, r"switch_norm\(\).*more than 1 spatial"),
    (lambda: nbops.switch_norm(X, None, None, np.zeros(2, F32), np.zeros(3, F32), None, None, True), ValueError,
     r"switch_norm\(\): mean_weight should have shape \(3,\)"),
    (lambda: nbops.switch_norm(X, None, None, np.zeros(3, F32), None, None, None, True), TypeError,
     r"switch_norm\(\).*var_weight"),
    (lambda: nbops.switch_norm(X, None, None, np.zeros(3, F32), np.zeros(3, F32), None, None, False), ValueError,
     r"switch_norm\(\).*evaluation mode"),
    (lambda: nbops.deep_norm(X, np.zeros((2, 4, 2), F32), 1.0, (3,)), ValueError, r"deep_norm\(\): fx must have"),
    (lambda: nbops.deep_norm(X, None, 1.0, (3,)), TypeError, r"deep_norm\(\).*'fx'"),
    (lambda: nbops.deep_norm(X, X, "a", (3,)), TypeError, r"deep_norm\(\).*alpha"),
    (lambda: nbops.deep_norm_coefficients(0, 0), ValueError, r"deep_norm_coefficients\(\)"),
    (lambda: nbops.deep_norm_coefficients(-1), ValueError, r"deep_norm_coefficients\(\)"),
    (lambda: nbops.deep_norm_coefficients(2.5), TypeError, r"deep_norm_coefficients\(\)"),
    (lambda: nbops.dyt(X, np.ones(2, F32), None, None), ValueError, r"dyt\(\): alpha must be"),
    (lambda: nbops.dyt(X, None, None, None), TypeError, r"dyt\(\).*alpha"),
    (lambda: nbops.dyt(X, 1.0, np.ones(4, F32), None), ValueError, r"dyt\(\): weight and bias must have the shape"),
    (lambda: nbops.dyt(X, 1.0, np.ones(3, F32), np.ones(2, F32)), ValueError,
     r"dyt\(\): weight and bias must have one"),
    (lambda: nbops.dyt(np.zeros((), F32), 1.0, None, None), ValueError, r"dyt\(\).*at least 1 dim"),
])
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.cuda
def test_mixed_targets_raise():
    x = make((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"batch_norm\(\).*one target"):
        nbops.batch_norm(to_target(x, "cuda"), np.zeros(3, np.float32), np.ones(3, np.float32))


def test_momentum_and_eps_reach_the_kernel():
    """A test that would pass if momentum or eps were ignored cannot fail; this one fails then."""
    x = make((6, 3, 4), np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    nbops.batch_norm(x, rm, rv, training=True, momentum=1.0)
    np.testing.assert_allclose(rm, x.mean(axis=(0, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rv, x.var(axis=(0, 2), ddof=1), rtol=1e-5)
    y = nbops.layer_norm(np.array([[0.0, 2.0]], np.float32), (2,), eps=3.0)
    np.testing.assert_allclose(y, [[-1 / math.sqrt(4.0), 1 / math.sqrt(4.0)]], rtol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# CUDA layouts: rows long enough for the four-load main loops, the block-per-row path (threshold lowered), chunked
# batch-norm statistics, and the kernels compiled by the real CUDA compiler


CUDA_ROW_CASES = [((3, 200), (200,)), ((2, 1, 130), (1, 130)), ((1, 33), (33,))]
PATHS = [pytest.param(False, id="warp-per-row"), pytest.param(True, id="block-per-row")]


def _row_path(per_block, monkeypatch):
    if per_block:
        from nbops.cuda import norm as cuda_norm

        monkeypatch.setattr(cuda_norm, "WARP_ROW_MAX", 16)


@pytest.mark.cuda
@pytest.mark.parametrize("per_block", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,ns", CUDA_ROW_CASES)
def test_cuda_row_layouts(shape, ns, dtype, per_block, monkeypatch):
    _row_path(per_block, monkeypatch)
    x = make(shape, dtype, offset=1e4 if dtype == np.float64 else 0.0)
    w, b = make(ns, dtype, seed=1), make(ns, dtype, seed=2)
    check(nbops.layer_norm, F.layer_norm, "cuda", x, ns, w, b)
    check(nbops.rms_norm, F.rms_norm, "cuda", x, ns, w)
    check(nbops.deep_norm, lambda a, f, al, n, ww, bb: F.layer_norm(al * a + f, n, ww, bb), "cuda", x,
          make(shape, dtype, seed=3), 0.5, ns, w, b)


@pytest.mark.cuda
@pytest.mark.parametrize("per_block", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_group_layouts(dtype, per_block, monkeypatch):
    _row_path(per_block, monkeypatch)
    x = make((2, 4, 40), dtype)
    check(nbops.group_norm, F.group_norm, "cuda", x, 2, make((4,), dtype, seed=1), make((4,), dtype, seed=2))
    check(nbops.instance_norm, F.instance_norm, "cuda", x)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_group_norm_split_rows(dtype, monkeypatch):
    """Few long rows split over several blocks each (thresholds lowered): chunks of 34 values crossing channel
    spans of 50, and the per-row statistics instance norm's running update reads (rows of 70 in 2 chunks)."""
    from nbops.cuda import norm as cuda_norm

    monkeypatch.setattr(cuda_norm, "WARP_ROW_MAX", 16)
    monkeypatch.setattr(cuda_norm, "ROW_CHUNK_MIN", 32)
    x = make((1, 4, 50), dtype, offset=1e3 if dtype == np.float64 else 0.0)
    check(nbops.group_norm, F.group_norm, "cuda", x, 2, make((4,), dtype, seed=1), make((4,), dtype, seed=2))
    rm, rv = make((3,), dtype, seed=3), np.abs(make((3,), dtype, seed=4))
    run_with_running("cuda", nbops.instance_norm, F.instance_norm, make((1, 3, 70), dtype), rm, rv,
                     use_input_stats=True, momentum=0.2)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5, 2, 130), (2, 3, 140)])
def test_cuda_batch_norm_chunks(shape, dtype):
    """(5, 2, 130): several (channel, chunk) blocks per channel summed in pass 2; long planes: the main loops."""
    C = shape[1]
    rm, rv = make((C,), dtype, seed=3), np.abs(make((C,), dtype, seed=4))
    w, b = make((C,), dtype, seed=1), make((C,), dtype, seed=2)
    x = make(shape, dtype, offset=100.0)
    run_with_running("cuda", nbops.batch_norm, F.batch_norm, x, rm.copy(), rv.copy(), w, b, training=True,
                     momentum=0.3)
    run_with_running("cuda", nbops.batch_norm, F.batch_norm, x, rm, rv, w, b, training=False)
    check(nbops.dyt, lambda a, al, ww, bb: ww * torch.tanh(al * a) + bb, "cuda", x, 0.7, make((shape[-1],), dtype),
          make((shape[-1],), dtype, seed=1))


def _compile_norm_kernels():
    from numba import types

    from helpers import gpu_ptx
    from nbops.cuda import norm as K

    for dt in (types.float32, types.float64):
        a1, a2, ar = types.Array(dt, 1, "C"), types.Array(dt, 2, "C"), types.Array(dt, 1, "A")
        f1, f3 = types.Array(types.float64, 1, "C"), types.Array(types.float64, 3, "C")
        i, f, b = types.int64, types.float64, types.boolean
        sigs = [
            (K._layer_rows_kernel, (a2, a2, a1, a1, f, b)),
            (K._rms_rows_kernel, (a2, a2, a1, f, b)),
            (K._group_rows_kernel, (a2, a1, a1, a2, a1, a1, i, i, f, b, f, b)),
            (K._group_rows_kernel, (a2, f1, f1, a2, a1, a1, i, i, f, b, f, b)),
            (K._row_partial_kernel, (f3, a2, i, i)),
            (K._group_apply_kernel, (a2, a1, a1, a2, f3, a1, a1, i, i, i, i, f)),
            (K._bn_partial_kernel, (f3, a2, i, i)),
            (K._bn_apply_kernel, (a2, a2, f3, a1, a1, ar, ar, i, i, f, f)),
            (K._bn_eval_kernel, (a2, a2, ar, ar, a1, a1, i, dt)),
            (K._planes_affine_kernel, (a2, a2, a1, a1, a1)),
            (K._deep_rows_kernel, (a2, a2, a2, dt, a1, a1, f, b)),
            (K._dyt_kernel, (a2, a2, a1, a1, a1)),
        ]
        for kernel, sig in sigs:
            ptx = gpu_ptx(kernel, sig)
            assert "ld.local" not in ptx and "st.local" not in ptx, kernel.py_func.__name__
    assert "shfl.sync" in gpu_ptx(K._layer_rows_kernel, sigs[0][1])


@pytest.mark.cuda
def test_cuda_norm_kernels_compile_without_local_memory():
    outside_simulator(_compile_norm_kernels)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cpu_batch_norm_eval_fast_path_matches_the_general_path(dtype):
    # plain NumPy arrays in evaluation skip the general path (ops/norm.py ``_fast_batch_norm_eval``): same launcher
    # and operands, so the values equal the general path's (torch tensors in take it) bit for bit, and torch's
    from nbops.ops import norm as ops

    t = torch.from_numpy
    for shape in [(4, 16, 40), (5, 3), (2, 3, 40000), (1, 2, 3, 11), (3, 7, 1, 1)]:
        C = shape[1]
        x = make(shape, dtype, seed=5)
        rm, rv = make((C,), dtype, seed=6), np.abs(make((C,), dtype, seed=7)) + 0.5
        w, b = make((C,), dtype, seed=8), make((C,), dtype, seed=9)
        for wb, momentum, eps in [((w, b), 0.1, 1e-5), ((None, b), 0.3, 1), ((w, None), 1, 0.25), ((), 0.1, 1e-3)]:
            wb = (wb + (None, None))[:2]
            assert ops._fast_batch_norm_eval(x, rm, rv, *wb, momentum, eps) is not None
            fast = nbops.batch_norm(x, rm, rv, *wb, momentum=momentum, eps=eps)
            args = [t(a) if a is not None else None for a in (x, rm, rv) + wb]
            general = nbops.batch_norm(*args, momentum=momentum, eps=eps).numpy()
            assert fast.dtype == general.dtype == dtype and fast.shape == shape and np.array_equal(fast, general)
            assert_same(fast, F.batch_norm(*args, momentum=momentum, eps=eps))
    x = make((4, 6, 5), dtype, seed=10)
    rm, rv, w = make((6,), dtype, seed=11), np.abs(make((6,), dtype, seed=12)), make((6,), dtype, seed=13)
    other = np.float32 if dtype == np.float64 else np.float64
    for args in [(x, rm.astype(other), rv, None, None, 0.1, 1e-5), (x, rm, rv.reshape(6, 1), None, None, 0.1, 1e-5),
                 (x, rm, rv, w.reshape(1, 6), None, 0.1, 1e-5), (x, rm, rv, None, w[::-1], 0.1, 1e-5),
                 (x, rm, rv, None, None, 0.1, True), (x, rm, rv, None, None, None, 1e-5), (x[:0], rm, rv, None, None,
                 0.1, 1e-5), (x.transpose(0, 2, 1).copy().transpose(0, 2, 1), rm, rv, None, None, 0.1, 1e-5),
                 (x[0, 0], rm[:5], rv[:5], None, None, 0.1, 1e-5), (t(x), rm, rv, None, None, 0.1, 1e-5)]:
        assert ops._fast_batch_norm_eval(*args) is None
    # the general path serves what the fast path declines, with its own checks
    assert_same(nbops.batch_norm(x, rm, rv, w.reshape(1, 6)), F.batch_norm(t(x), t(rm), t(rv), t(w.reshape(1, 6))))
    with pytest.raises(TypeError, match=r"batch_norm\(\)"):
        nbops.batch_norm(x, rm.astype(other), rv)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cpu_group_norm_fast_path_matches_the_general_path(dtype):
    # plain NumPy arrays skip the general path (ops/norm.py ``_fast_group_norm``): same launcher and operands, so
    # the values equal the general path's (torch tensors in take it) bit for bit, and torch's
    from nbops.ops import norm as ops

    t = torch.from_numpy
    for shape, G in [((2, 6, 5), 3), ((1, 8, 4, 4), 8), ((3, 4), 2), ((2, 4, 20000), 1)]:
        C = shape[1]
        x, w, b = make(shape, dtype, seed=5), make((C,), dtype, seed=6), make((C,), dtype, seed=7)
        for wb, eps in [((w, b), 1e-5), ((None, b), 1), ((w, None), 0.5), ((), 1e-3)]:
            wb = (wb + (None, None))[:2]
            assert ops._fast_group_norm(x, G, *wb, eps) is not None
            fast = nbops.group_norm(x, G, *wb, eps=eps)
            args = [t(a) if a is not None else None for a in (x,) + wb]
            general = nbops.group_norm(args[0], G, *args[1:], eps=eps).numpy()
            assert fast.dtype == general.dtype == dtype and fast.shape == shape and np.array_equal(fast, general)
            assert_same(fast, F.group_norm(args[0], G, *args[1:], eps=eps))
    x, w = make((2, 6, 5), dtype, seed=8), make((6,), dtype, seed=9)
    other = np.float32 if dtype == np.float64 else np.float64
    for args in [(x, 4, None, None, 1e-5), (x, 0, None, None, 1e-5), (x, 3.0, None, None, 1e-5),
                 (x, True, None, None, 1e-5), (x, np.int64(3), None, None, 1e-5), (x, 3, w.astype(other), None, 1e-5),
                 (x, 3, None, w.reshape(1, 6), 1e-5), (x, 3, w[::-1], None, 1e-5), (x, 3, None, None, True),
                 (x[:0], 3, None, None, 1e-5), (x.transpose(0, 2, 1).copy().transpose(0, 2, 1), 3, None, None, 1e-5),
                 (x[0, :, :1].reshape(1, 6, 1), 6, None, None, 1e-5), (x[0], 3, None, None, 1e-5),
                 (t(x), 3, None, None, 1e-5)]:
        assert ops._fast_group_norm(*args) is None
    # the general path serves what the fast path declines, with its own checks
    assert_same(nbops.group_norm(x, np.int64(3)), F.group_norm(t(x), 3))
    with pytest.raises(ValueError, match=r"group_norm\(\): Expected number of channels"):
        nbops.group_norm(x, 4)
    with pytest.raises(ValueError, match=r"group_norm\(\): Expected more than 1 value per channel"):
        nbops.group_norm(x[0, :, :1].reshape(1, 6, 1), 6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cpu_layer_norm_fast_path_matches_the_general_path(dtype):
    # plain NumPy float arrays skip the general path (ops/norm.py ``_fast_layer_norm``): same launcher and operands,
    # so the values equal the general path's (torch tensors in take it) bit for bit; other calls keep its checks
    from nbops.ops import norm as ops

    x, w, b = make((3, 4, 6), dtype, seed=1), make((4, 6), dtype, seed=2), make((4, 6), dtype, seed=3)
    for shape, wb, eps in [(6, (w[0], b[0]), 1e-5), ([4, 6], (w, b), 0.1), ((4, 6), (None, b), 1), ((6,), (), 1e-5)]:
        assert ops._fast_layer_norm(x, shape, *(wb + (None, None))[:2], eps) is not None
        fast = nbops.layer_norm(x, shape, *wb, eps=eps)
        general = nbops.layer_norm(torch.from_numpy(x), shape, *(torch.from_numpy(a) if a is not None else None
                                                                 for a in wb), eps=eps).numpy()
        assert fast.dtype == general.dtype == dtype and np.array_equal(fast, general)
    other = np.float32 if dtype == np.float64 else np.float64
    for args in [(x, (4.0, 6), None, None, 1e-5), (x, 5, None, None, 1e-5), (x, 6, w[0].astype(other), None, 1e-5),
                 (x, 6, None, b, 1e-5), (x, 6, None, None, True), (x[:0], 6, None, None, 1e-5), (x, (), None, None, 1)]:
        assert ops._fast_layer_norm(*args) is None
    with pytest.raises(ValueError, match=r"layer_norm\(\): Given normalized_shape=\[5\]"):
        nbops.layer_norm(x, 5)
    with pytest.raises(TypeError, match=r"layer_norm\(\)"):
        nbops.layer_norm(x, (4.0, 6))
