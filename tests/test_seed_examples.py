"""Every code example of the seed document (the operator survey, ../shared/seed.md), transcribed with
``torch.nn`` -> ``nbops.nn``, ``torch.<fn>`` / ``F.<fn>`` -> ``nbops.<fn>`` and ``torch.randn(...)`` -> NumPy arrays,
run and compared with torch on the same data and weights. The note's hand-written NumPy layers are kept too, with
their typos fixed (``keepdims=True0``, the undefined ``momentum``, GroupNorm's hard-coded ``/16``), as oracles.
"""

import warnings

import numpy as np
import pytest
import torch
from helpers import assert_same, make, to_numpy, to_target

import nbops
import nbops.nn as nn

# direct convolutions over hundreds of terms in float32: summation order differs from oneDNN's
CONV_TOL = dict(rtol=1e-4, atol=1e-4)


def randn(*shape, seed=0):
    """The note's ``torch.randn(*shape)``, as a NumPy array."""
    return make(shape, np.float32, seed)


def same_module(ctor, seed=0):
    """``(nbops module, torch module)`` built from one constructor call, with torch's weights in both."""
    torch.manual_seed(seed)
    t = eval(f"M.{ctor}", {"M": torch.nn})
    m = eval(f"M.{ctor}", {"M": nn})
    m.load_state_dict(t.state_dict())
    return m, t


def T(x):
    return torch.from_numpy(np.array(x))


# -------------------------------------------------------------------------------------------- 1 convolution
@pytest.mark.parametrize("ctor", [
    "Conv2d(16, 33, 3, stride=2)",
    "Conv2d(16, 33, (3, 5), stride=(2, 1), padding=(4, 2))",
    "Conv2d(16, 33, (3, 5), stride=(2, 1), padding=(4, 2), dilation=(3, 1))",
])
def test_1_1_conv2d(ctor):
    m, t = same_module(ctor)
    input = randn(20, 16, 50, 100)
    output = m(input)
    assert_same(output, t(T(input)).detach(), **CONV_TOL)


@pytest.mark.parametrize("ctor", [
    "ConvTranspose2d(16, 33, 3, stride=2)",
    "ConvTranspose2d(16, 33, (3, 5), stride=(2, 1), padding=(4, 2))",
])
def test_1_2_conv_transpose2d(ctor):
    m, t = same_module(ctor)
    input = randn(20, 16, 50, 100)
    output = m(input)
    assert_same(output, t(T(input)).detach(), **CONV_TOL)


def test_1_2_exact_output_size():
    downsample, t_down = same_module("Conv2d(16, 16, 3, stride=2, padding=1)")
    upsample, t_up = same_module("ConvTranspose2d(16, 16, 3, stride=2, padding=1)", seed=1)
    input = randn(1, 16, 12, 12)
    h = downsample(input)
    assert h.shape == (1, 16, 6, 6)
    output = upsample(h, output_size=input.shape)
    assert output.shape == (1, 16, 12, 12)
    expected = t_up(t_down(T(input)), output_size=T(input).size()).detach()
    assert_same(output, expected, **CONV_TOL)


# ------------------------------------------------------------------------------------------------ 2 linear
def test_2_1_linear():
    m, t = same_module("Linear(20, 30)")
    input = randn(128, 20)
    output = m(input)
    assert output.shape == (128, 30)
    assert_same(output, t(T(input)).detach(), rtol=1e-5, atol=1e-5)


def test_2_2_matmul_mm_bmm():
    tensor1, tensor2 = randn(10, 3, 4), randn(10, 4, 5, seed=1)
    assert nbops.matmul(tensor1, tensor2).shape == (10, 3, 5)
    assert_same(nbops.matmul(tensor1, tensor2), torch.matmul(T(tensor1), T(tensor2)))
    mat1, mat2 = randn(2, 3), randn(3, 3, seed=1)
    assert_same(nbops.mm(mat1, mat2), torch.mm(T(mat1), T(mat2)))
    input, mat2 = randn(10, 3, 4), randn(10, 4, 5, seed=1)
    res = nbops.bmm(input, mat2)
    assert res.shape == (10, 3, 5)
    assert_same(res, torch.bmm(T(input), T(mat2)))


# ----------------------------------------------------------------------------------------- 3 normalization
def note_batchnorm(x, gamma, beta, bn_param, momentum=0.1):
    """The note's NumPy BatchNorm, fixed: torch's momentum convention and the unbiased variance in the running
    update."""
    eps = 1e-5
    x_mean = np.mean(x, axis=(0, 2, 3), keepdims=True)
    x_var = np.var(x, axis=(0, 2, 3), keepdims=True)
    results = gamma * (x - x_mean) / np.sqrt(x_var + eps) + beta
    n = x.size / x.shape[1]
    bn_param["running_mean"] = (1 - momentum) * bn_param["running_mean"] + momentum * x_mean.ravel()
    bn_param["running_var"] = (1 - momentum) * bn_param["running_var"] + momentum * x_var.ravel() * n / (n - 1)
    return results, bn_param


def test_3_1_batchnorm_train_and_eval():
    m = nn.Module()
    assert m.train(mode=False) is m and m.training is False  # the note's train(mode) API
    input = randn(20, 100, 35, 45)
    for ctor in ("BatchNorm2d(100)", "BatchNorm2d(100, affine=False)"):
        m, t = same_module(ctor)
        output = m(input)
        assert_same(output, t(T(input)).detach(), rtol=1e-5, atol=1e-5)
        assert_same(m.running_mean, t.running_mean, rtol=1e-5, atol=1e-6)
        assert_same(m.running_var, t.running_var, rtol=1e-5, atol=1e-6)
        m.eval()
        t.eval()
        assert_same(m(input), t(T(input)).detach(), rtol=1e-5, atol=1e-5)
    x = input.astype(np.float64)
    params = {"running_mean": np.zeros(100), "running_var": np.ones(100)}
    ref, params = note_batchnorm(x, 1.0, 0.0, params)
    m = nn.BatchNorm2d(100).double()
    assert_same(m(x), ref)
    assert_same(m.running_mean, params["running_mean"])
    assert_same(m.running_var, params["running_var"])


def test_3_2_layernorm():
    batch, sentence_length, embedding_dim = 20, 5, 10
    embedding = randn(batch, sentence_length, embedding_dim)
    layer_norm, t = same_module(f"LayerNorm({embedding_dim})")
    output = layer_norm(embedding)
    assert_same(output, t(T(embedding)).detach())
    x = randn(4, 3, 5, 6).astype(np.float64)
    mean, var = x.mean(axis=(1, 2, 3), keepdims=True), x.var(axis=(1, 2, 3), keepdims=True)
    assert_same(nn.LayerNorm((3, 5, 6)).double()(x), (x - mean) / np.sqrt(var + 1e-5))  # the note's Layernorm


def test_3_3_instancenorm():
    input = randn(20, 100, 35, 45)
    for ctor in ("InstanceNorm2d(100)", "InstanceNorm2d(100, affine=True)"):
        m, t = same_module(ctor)
        output = m(input)
        assert_same(output, t(T(input)).detach(), rtol=1e-5, atol=1e-5)
    x = input[:2, :5].astype(np.float64)
    mean, var = x.mean(axis=(2, 3), keepdims=True), x.var(axis=(2, 3), keepdims=True)
    assert_same(nn.InstanceNorm2d(5).double()(x), (x - mean) / np.sqrt(var + 1e-5))  # the note's Instancenorm


def test_3_4_groupnorm():
    input = randn(20, 6, 10, 10)
    outputs = {}
    for groups in (3, 6, 1):
        m, t = same_module(f"GroupNorm({groups}, 6)")
        output = m(input)
        assert_same(output, t(T(input)).detach(), rtol=1e-5, atol=1e-5)
        outputs[groups] = output
    # 6 groups of 6 channels is instance norm; 1 group is layer norm over (C, H, W)
    assert_same(outputs[6], nn.InstanceNorm2d(6)(input), rtol=1e-5, atol=1e-5)
    assert_same(outputs[1], nn.LayerNorm((6, 10, 10))(input), rtol=1e-5, atol=1e-5)
    x = input.astype(np.float64)
    g = x.reshape(20, 3, 2, 10, 10)  # the note's GroupNorm with G=3 (its reshape hard-coded /16)
    ref = ((g - g.mean(axis=(2, 3, 4), keepdims=True)) / np.sqrt(g.var(axis=(2, 3, 4), keepdims=True) + 1e-5))
    assert_same(nn.GroupNorm(3, 6).double()(x), ref.reshape(x.shape))


def test_3_8_dyt_as_written_in_the_note():
    from numpy import ones, zeros

    from nbops import tanh
    from nbops.nn import Module, Parameter

    class DyT(Module):
        def __init__(self, C, init_alpha):
            super().__init__()
            self.alpha = Parameter(ones(1) * init_alpha)
            self.gamma = Parameter(ones(C))
            self.beta = Parameter(zeros(C))

        def forward(self, x):
            x = tanh(self.alpha * x)
            return self.gamma * x + self.beta

    x = randn(2, 7, 16).astype(np.float64)
    note = DyT(16, 0.5)
    note.gamma[:] = np.linspace(0.5, 1.5, 16)
    assert [k for k, _ in note.named_parameters()] == ["alpha", "gamma", "beta"]
    module = nn.DyT(16, alpha_init_value=0.5).double()
    module.load_state_dict({"alpha": note.alpha, "weight": note.gamma, "bias": note.beta})
    assert_same(module(x), note(x))
    assert_same(note(x), np.linspace(0.5, 1.5, 16) * np.tanh(0.5 * x))


# ---------------------------------------------------------------------------------------------- 4 pooling
@pytest.mark.parametrize("ctor", ["MaxPool2d(3, stride=2)", "MaxPool2d((3, 2), stride=(2, 1))",
                                  "AvgPool2d(3, stride=2)", "AvgPool2d((3, 2), stride=(2, 1))"])
def test_4_1_4_2_pooling(ctor):
    m, t = same_module(ctor)
    input = randn(20, 16, 50, 32)
    output = m(input)
    assert_same(output, t(T(input)))


@pytest.mark.parametrize("ctor,shape", [("AdaptiveAvgPool2d((5, 7))", (1, 64, 8, 9)),
                                        ("AdaptiveAvgPool2d(7)", (1, 64, 10, 9)),
                                        ("AdaptiveAvgPool2d((None, 7))", (1, 64, 10, 9))])
def test_4_3_adaptive_avg_pool(ctor, shape):
    m, t = same_module(ctor)
    input = randn(*shape)
    output = m(input)
    assert_same(output, t(T(input)))


# ------------------------------------------------------------------------------- 6-8 reshape, view, permute, ...
def test_6_reshape_view_transpose_permute():
    a = np.arange(4.0)
    assert_same(nbops.reshape(a, (2, 2)), torch.reshape(torch.arange(4.0, dtype=torch.float64), (2, 2)))
    b = np.array([[0, 1], [2, 3]])
    assert_same(nbops.reshape(b, (-1,)), torch.reshape(torch.tensor([[0, 1], [2, 3]]), (-1,)))
    x = randn(4, 4)
    assert x.shape == (4, 4)
    y = nbops.view(x, 16)
    assert y.shape == (16,)
    z = nbops.view(x, -1, 8)  # the size -1 is inferred from other dimensions
    assert z.shape == (2, 8)
    a = randn(1, 2, 3, 4)
    b = nbops.transpose(a, 1, 2)  # swaps 2nd and 3rd dimension
    assert b.shape == (1, 3, 2, 4)
    c = nbops.view(a, 1, 3, 2, 4)  # does not change tensor layout in memory
    assert c.shape == (1, 3, 2, 4)
    assert not np.array_equal(b, c)
    assert torch.equal(T(b), torch.transpose(T(a), 1, 2)) and torch.equal(T(c), T(a).view(1, 3, 2, 4))
    x = randn(2, 3)
    assert_same(nbops.transpose(x, 0, 1), torch.transpose(T(x), 0, 1))
    x = randn(2, 3, 5)
    assert nbops.permute(x, (2, 0, 1)).shape == (5, 2, 3)
    assert_same(nbops.permute(x, (2, 0, 1)), torch.permute(T(x), (2, 0, 1)))


def test_8_cat_stack_expand_flatten():
    x = randn(2, 3)
    assert_same(nbops.cat((x, x, x), 0), torch.cat((T(x), T(x), T(x)), 0))
    assert_same(nbops.cat((x, x, x), 1), torch.cat((T(x), T(x), T(x)), 1))
    a, b = randn(2, 3), randn(2, 3, seed=1)
    c = nbops.stack([a, b], dim=1)
    assert_same(c, torch.stack([T(a), T(b)], dim=1))
    x = np.array([[1], [2], [3]])
    assert x.shape == (3, 1)
    assert_same(nbops.expand(x, 3, 4), T(x).expand(3, 4))
    assert_same(nbops.expand(x, -1, 4), T(x).expand(-1, 4))  # -1 means not changing the size of that dimension
    t = np.array([[[1, 2], [3, 4]], [[5, 6], [7, 8]]])
    assert_same(nbops.flatten(t), torch.flatten(T(t)))
    assert_same(nbops.flatten(t, start_dim=1), torch.flatten(T(t), start_dim=1))


def test_9_pointwise_sqrt():
    a = randn(4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_same(nbops.sqrt(a), torch.sqrt(T(a)))


def test_10_split_and_slice():
    a = np.arange(10).reshape(5, 2)
    ta = torch.arange(10).reshape(5, 2)
    for parts, expected in ((nbops.split(a, 2), torch.split(ta, 2)), (nbops.split(a, [1, 4]), torch.split(ta, [1, 4]))):
        assert len(parts) == len(expected)
        for p, e in zip(parts, expected):
            assert_same(p, e)
    tensor = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    assert tensor[2:7].tolist() == [3, 4, 5, 6, 7]
    assert tensor[1:9:2].tolist() == [2, 4, 6, 8]
    assert_same(nbops.narrow(tensor, 0, 2, 5), torch.tensor(tensor.tolist())[2:7])


def test_11_reductions():
    a = randn(4, 4)
    assert_same(nbops.mean(a, 1), torch.mean(T(a), 1))
    assert_same(nbops.mean(a, 1, True), torch.mean(T(a), 1, True))
    a = np.array([[0.2035, 1.2959, 1.8101, -0.4644], [1.5027, -0.3270, 0.5905, 0.6538],
                  [-1.5745, 1.3330, -0.5596, -0.6548], [0.1264, -0.5080, 1.6420, 0.1992]], np.float32)
    assert_same(nbops.var(a, dim=1, keepdim=True), torch.var(T(a), dim=1, keepdim=True))
    a = randn(4, 4)
    assert_same(nbops.sum(a, 1), torch.sum(T(a), 1))
    b = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    assert_same(nbops.sum(b, (2, 1)), torch.sum(torch.arange(4 * 5 * 6).view(4, 5, 6), (2, 1)))
    for name in ("max", "min"):
        values, indices = getattr(nbops, name)(a, 1)
        expected = getattr(torch, name)(T(a), 1)
        assert_same(values, expected.values)
        assert_same(indices, expected.indices)


# --------------------------------------------------------------------------------------------- 12 embedding
def test_12_embedding():
    embedding, t = same_module("Embedding(10, 3)")  # an Embedding module containing 10 tensors of size 3
    input = np.array([[1, 2, 4, 5], [4, 3, 2, 9]])  # a batch of 2 samples of 4 indices each
    assert_same(embedding(input), t(T(input)).detach())

    embedding, t = same_module("Embedding(10, 3, padding_idx=0)")
    input = np.array([[0, 2, 0, 5]])
    assert_same(embedding(input), t(T(input)).detach())
    assert not embedding(input)[0, 0].any()

    padding_idx = 0
    embedding = nn.Embedding(3, 3, padding_idx=padding_idx)
    assert not embedding.weight[padding_idx].any()
    embedding.weight[padding_idx] = np.ones(3)  # no torch.no_grad() needed: there is no autograd
    assert embedding.weight[padding_idx].tolist() == [1.0, 1.0, 1.0]

    weight = np.array([[1, 2.3, 3], [4, 5.1, 6.3]], np.float32)  # the note's FloatTensor of pretrained weights
    embedding = nn.Embedding.from_pretrained(weight)
    input = np.array([1])
    assert_same(embedding(input), torch.nn.Embedding.from_pretrained(T(weight))(T(input)))


# ----------------------------------------------------------------------------------------------- 13 dropout
def test_13_dropout():
    m = nn.Dropout(p=0.2)
    input = randn(20, 16)
    output = m(input)
    kept = output != 0
    assert 0.65 < kept.mean() < 0.95
    assert_same(output[kept], T(input[kept] / 0.8))
    m.eval()  # inference: the identity
    assert_same(m(input), T(input))


# ---------------------------------------------------------------------------------- the same on CUDA arrays
@pytest.mark.cuda
def test_examples_on_cuda_arrays():
    """A few of the examples with their shapes shrunk for the simulator (every dim <= 32)."""
    linear, t = same_module("Linear(20, 30)")
    x = randn(8, 20)
    out = linear.to("cuda")(to_target(x, "cuda"))
    assert not isinstance(out, np.ndarray)
    assert_same(to_numpy(out), t(T(x)).detach(), rtol=1e-5, atol=1e-5)

    down, t_down = same_module("Conv2d(4, 4, 3, stride=2, padding=1)")
    up, t_up = same_module("ConvTranspose2d(4, 4, 3, stride=2, padding=1)", seed=1)
    x = randn(1, 4, 12, 12)
    h = down.to("cuda")(to_target(x, "cuda"))
    out = up.to("cuda")(h, output_size=x.shape)
    assert_same(to_numpy(out), t_up(t_down(T(x)), output_size=x.shape).detach(), **CONV_TOL)

    bn, t_bn = same_module("BatchNorm2d(3)")
    x = randn(4, 3, 5, 5)
    out = bn.to("cuda")(to_target(x, "cuda"))
    assert_same(to_numpy(out), t_bn(T(x)).detach(), rtol=1e-5, atol=1e-5)
    assert_same(to_numpy(bn.running_var), t_bn.running_var, rtol=1e-5, atol=1e-6)
