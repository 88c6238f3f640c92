"""nbops.nn: every module against torch.nn with the same weights (loaded through load_state_dict), in training and
evaluation mode, plus the Module machinery (state_dict, load_state_dict, train/eval, to, repr, containers, hooks),
initialisation and from_torch.

A module row is a constructor call written once and evaluated in both namespaces (``nbops.nn`` and ``torch.nn``):
the torch module is built first, its state_dict is loaded into the nbops module, then both run the same input, and
outputs, state_dicts (running statistics after a training forward) and reprs must agree.
"""

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from helpers import TARGETS, assert_same, make, make_int, to_numpy, to_target

import nbops
import nbops.nn as nn

# (constructor, input shape); inputs are float arrays unless the row is in INT_INPUT
MODULES = [
    ("Identity(3, unused=1)", (2, 3)),
    ("Linear(20, 30)", (7, 20)),
    ("Linear(5, 3, bias=False)", (2, 4, 5)),
    ("Conv1d(4, 6, 3, stride=2, padding=1)", (2, 4, 11)),
    ("Conv2d(4, 6, 3, stride=2, padding=1)", (2, 4, 9, 8)),
    ("Conv2d(4, 6, (3, 2), padding='same', dilation=(1, 2), groups=2, bias=False)", (1, 4, 7, 9)),
    ("Conv2d(3, 5, 1)", (3, 6, 5)),
    ("ConvTranspose1d(4, 6, 3, stride=2, padding=1, output_padding=1)", (2, 4, 7)),
    ("ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)", (2, 4, 5, 6)),
    ("ConvTranspose2d(3, 2, (2, 3), dilation=2, bias=False)", (1, 3, 4, 5)),
    ("BatchNorm1d(5)", (8, 5)),
    ("BatchNorm1d(5, momentum=None)", (4, 5, 3)),
    ("BatchNorm2d(3)", (4, 3, 5, 6)),
    ("BatchNorm2d(3, affine=False, momentum=0.3)", (2, 3, 4, 4)),
    ("BatchNorm2d(3, track_running_stats=False)", (2, 3, 4, 4)),
    ("BatchNorm2d(3, bias=False, eps=1e-3)", (2, 3, 4, 4)),
    ("InstanceNorm1d(3)", (2, 3, 7)),
    ("InstanceNorm2d(3, affine=True, track_running_stats=True)", (2, 3, 5, 4)),
    ("InstanceNorm2d(3)", (3, 5, 4)),
    ("LayerNorm(10)", (4, 5, 10)),
    ("LayerNorm((5, 10), elementwise_affine=False)", (3, 5, 10)),
    ("LayerNorm(6, bias=False)", (4, 6)),
    ("GroupNorm(3, 6)", (2, 6, 4, 4)),
    ("GroupNorm(2, 4, affine=False)", (3, 4, 5)),
    ("RMSNorm(10)", (4, 10)),
    ("RMSNorm([5, 10], eps=1e-6)", (2, 5, 10)),
    ("MaxPool1d(3, stride=2, padding=1)", (2, 3, 10)),
    ("MaxPool2d(3, stride=2, padding=1)", (2, 3, 9, 10)),
    ("MaxPool2d((3, 2), stride=(2, 1), ceil_mode=True, return_indices=True)", (1, 2, 8, 7)),
    ("AvgPool1d(3, stride=2)", (2, 3, 10)),
    ("AvgPool2d(3, stride=2, padding=1, count_include_pad=False)", (2, 3, 9, 10)),
    ("AvgPool2d((3, 2), stride=(2, 1), divisor_override=2)", (1, 2, 8, 7)),
    ("AdaptiveAvgPool1d(4)", (2, 3, 10)),
    ("AdaptiveAvgPool2d((5, 7))", (1, 4, 8, 9)),
    ("AdaptiveAvgPool2d((None, 7))", (1, 4, 10, 9)),
    ("AdaptiveMaxPool1d(3)", (2, 3, 10)),
    ("AdaptiveMaxPool2d(3, return_indices=True)", (1, 4, 10, 9)),
    ("Dropout(p=0.2)", (20, 16)),
    ("Dropout1d(0.3)", (4, 6, 5)),
    ("Dropout2d(0.3)", (4, 6, 5, 3)),
    ("AlphaDropout(0.2)", (20, 16)),
    ("Flatten()", (2, 3, 4, 5)),
    ("Flatten(0, 1)", (2, 3, 4)),
    ("ReLU()", (3, 7)),
    ("ReLU6()", (3, 7)),
    ("LeakyReLU(0.2)", (3, 7)),
    ("ELU(0.5)", (3, 7)),
    ("SELU()", (3, 7)),
    ("CELU(0.7)", (3, 7)),
    ("GELU()", (3, 7)),
    ("GELU(approximate='tanh')", (3, 7)),
    ("SiLU()", (3, 7)),
    ("Mish()", (3, 7)),
    ("Sigmoid()", (3, 7)),
    ("Tanh()", (3, 7)),
    ("Hardtanh(-2.0, 2.0)", (3, 7)),
    ("Hardsigmoid()", (3, 7)),
    ("Hardswish()", (3, 7)),
    ("Softplus(beta=2.0, threshold=5.0)", (3, 7)),
    ("Softsign()", (3, 7)),
    ("GLU(1)", (3, 8)),
    ("PReLU()", (3, 7)),
    ("PReLU(4, init=0.1)", (2, 4, 3)),
    ("Softmax(dim=1)", (3, 7)),
    ("LogSoftmax(dim=-1)", (2, 3, 7)),
    ("Embedding(10, 3)", (2, 4)),
    ("Embedding(10, 3, padding_idx=-2)", (3, 5)),
    ("Embedding(10, 3, max_norm=1.0)", (2, 6)),
]
INT_INPUT = {"Embedding"}
RANDOM_IN_TRAINING = {"Dropout", "Dropout1d", "Dropout2d", "AlphaDropout"}  # tested by their properties below
# rows also run in float64 (the module cast with .double() on both sides)
FLOAT64_ROWS = ["Linear(20, 30)", "Conv2d(4, 6, 3, stride=2, padding=1)", "BatchNorm2d(3)", "LayerNorm(10)",
                "GroupNorm(3, 6)", "RMSNorm(10)", "MaxPool2d(3, stride=2, padding=1)", "GELU()",
                "Softmax(dim=1)", "Embedding(10, 3)"]
# a few tiny modules under the CUDA simulator (every dim <= 32)
CUDA_ROWS = ["Linear(20, 30)", "Conv2d(4, 6, 3, stride=2, padding=1)", "BatchNorm2d(3)", "LayerNorm(10)",
             "ReLU()", "Embedding(10, 3)"]


def build(ctor, seed=0):
    """The torch module (seeded draw) and the nbops module with torch's weights and buffers loaded."""
    torch.manual_seed(seed)
    t = eval(f"M.{ctor}", {"M": torch.nn})
    n = eval(f"M.{ctor}", {"M": nn})
    result = n.load_state_dict(t.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    return t, n


def module_input(ctor, shape, dtype, seed=1):
    if ctor.split("(")[0] in INT_INPUT:
        return make_int(shape, 0, 10, np.int64, seed)
    return make(shape, dtype, seed)


def assert_state_equal(n, t, rtol=None, atol=None):
    ns, ts = n.state_dict(), t.state_dict()
    assert list(ns) == list(ts)
    for key in ts:
        assert_same(to_numpy(ns[key]), ts[key].detach(), rtol=rtol, atol=atol)


def run_pair(t, n, x, target):
    expected = t(torch.from_numpy(np.array(x)))
    actual = n(to_target(x, target))
    if isinstance(expected, tuple):
        expected = tuple(e.detach() for e in expected)
    else:
        expected = expected.detach()
    return to_numpy(actual), expected


PARITY_CASES = [
    (ctor, shape, mode)
    for ctor, shape in MODULES
    for mode in ("train", "eval")
    if not (mode == "train" and ctor.split("(")[0] in RANDOM_IN_TRAINING)
]


@pytest.mark.parametrize("ctor,shape,mode", PARITY_CASES, ids=[f"{c[0]}-{c[2]}" for c in PARITY_CASES])
def test_module_parity(ctor, shape, mode):
    t, n = build(ctor)
    assert repr(n) == repr(t)
    t.train(mode == "train")
    n.train(mode == "train")
    x = module_input(ctor, shape, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        actual, expected = run_pair(t, n, x, "cpu")
    assert_same(actual, expected)
    assert_state_equal(n, t)


@pytest.mark.parametrize("ctor", FLOAT64_ROWS)
def test_module_parity_float64(ctor):
    shape = dict(MODULES)[ctor]
    t, n = build(ctor)
    t.double()
    n.double()
    x = module_input(ctor, shape, np.float64)
    for mode in (True, False):
        t.train(mode)
        n.train(mode)
        actual, expected = run_pair(t, n, x, "cpu")
        assert_same(actual, expected)
        assert_state_equal(n, t)


@pytest.mark.cuda
@pytest.mark.parametrize("ctor", CUDA_ROWS)
def test_module_parity_cuda(ctor):
    shape = dict(MODULES)[ctor]
    t, n = build(ctor)
    n.to("cuda")
    assert all(not isinstance(p, np.ndarray) for p in n.parameters())
    x = module_input(ctor, shape, np.float32)
    for mode in (True, False):
        t.train(mode)
        n.train(mode)
        actual, expected = run_pair(t, n, x, "cuda")
        assert_same(actual, expected)
        assert_state_equal(n, t)
    n.to("cpu")
    assert all(isinstance(p, np.ndarray) for p in n.parameters())
    assert_state_equal(n, t)


# ------------------------------------------------------------------------------------------ module-specific checks
def test_batchnorm_running_stats_over_several_batches():
    for momentum in (0.1, None):
        t, n = build(f"BatchNorm2d(4, momentum={momentum})")
        mean_before = n.running_mean
        for step in range(3):
            x = make((3, 4, 5, 5), np.float32, seed=10 + step, offset=step)
            actual, expected = run_pair(t, n, x, "cpu")
            assert_same(actual, expected)
        assert n.running_mean is mean_before  # updated in place
        assert int(n.num_batches_tracked) == 3
        assert_state_equal(n, t)
        t.eval()
        n.eval()
        actual, expected = run_pair(t, n, make((2, 4, 5, 5), np.float32, seed=20), "cpu")
        assert_same(actual, expected)


def test_batchnorm_eval_without_running_stats_uses_batch_stats():
    t, n = build("BatchNorm1d(3, track_running_stats=False)")
    t.eval()
    n.eval()
    actual, expected = run_pair(t, n, make((6, 3), np.float32), "cpu")
    assert_same(actual, expected)


def test_batchnorm_rank_errors():
    with pytest.raises(ValueError, match="expected 4D input"):
        nn.BatchNorm2d(3)(make((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="expected 2D or 3D input"):
        nn.BatchNorm1d(3)(make((2, 3, 4, 4), np.float32))


def test_instance_norm_affine_channel_mismatch():
    with pytest.raises(ValueError, match="num_features"):
        nn.InstanceNorm2d(3, affine=True)(make((2, 4, 5, 5), np.float32))


def test_conv_transpose_output_size():
    t_down, n_down = build("Conv2d(16, 16, 3, stride=2, padding=1)")
    t_up, n_up = build("ConvTranspose2d(16, 16, 3, stride=2, padding=1)", seed=1)
    x = make((1, 16, 12, 12), np.float32)
    h = n_down(x)
    assert h.shape == (1, 16, 6, 6)
    for size in (x.shape, x.shape[2:], torch.Size([11, 11])):
        out = n_up(h, output_size=size)
        expected = t_up(t_down(torch.from_numpy(x)), output_size=list(size)).detach()
        assert_same(out, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="requested an output size of"):
        n_up(h, output_size=(14, 14))
    with pytest.raises(ValueError, match="output_size must have 2 or 4 elements"):
        n_up(h, output_size=(1, 12, 12))


def test_inplace_activation_writes_input():
    x = make((4, 5), np.float32)
    expected = torch.relu(torch.from_numpy(x.copy()))
    out = nn.ReLU(inplace=True)(x)
    assert_same(x, expected)
    assert_same(out, expected)


def test_dropout_module():
    m = nn.Dropout(0.25)
    x = np.ones((200, 100), np.float32)
    y = m(x)
    kept = y != 0
    assert 0.70 < kept.mean() < 0.80
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    m.eval()
    assert_same(m(x), torch.ones(200, 100))
    assert_same(nn.Dropout(1.0)(x), torch.zeros(200, 100))
    y = nn.Dropout2d(0.5)(np.ones((4, 50, 3, 3), np.float32))
    per_channel = y.reshape(4, 50, 9)
    assert (per_channel.min(axis=2) == per_channel.max(axis=2)).all()  # whole channels kept or dropped
    assert set(np.unique(y).tolist()) <= {0.0, 2.0} and 0.3 < (y > 0).mean() < 0.7
    y = nn.AlphaDropout(0.2)(make((100, 100), np.float32))
    assert abs(float(y.mean())) < 0.05 and abs(float(y.std()) - 1) < 0.05  # mean and variance kept
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
        nn.Dropout(1.5)


def test_embedding_from_pretrained_and_padding():
    weight = np.array([[1, 2.3, 3], [4, 5.1, 6.3]], np.float32)
    emb = nn.Embedding.from_pretrained(weight)
    assert repr(emb) == repr(torch.nn.Embedding.from_pretrained(torch.from_numpy(weight)))
    assert_same(emb(np.array([1])), torch.tensor([[4, 5.1, 6.3]]))
    emb = nn.Embedding.from_pretrained(torch.from_numpy(weight), padding_idx=0)
    assert emb.padding_idx == 0 and isinstance(emb.weight, np.ndarray)
    assert_same(emb(np.array([0])), torch.tensor([[1, 2.3, 3]]))  # from_pretrained keeps the padding row
    emb = nn.Embedding(3, 3, padding_idx=0)
    assert_same(emb.weight[0], torch.zeros(3))
    emb.weight[0] = np.ones(3)
    assert_same(emb(np.array([[0, 2, 0]]))[0, 0], torch.ones(3))
    with pytest.raises(ValueError, match="Padding_idx must be within num_embeddings"):
        nn.Embedding(3, 3, padding_idx=3)
    with pytest.raises(ValueError, match="2-dimensional"):
        nn.Embedding.from_pretrained(np.ones(3, np.float32))


def test_softmax_implicit_dim_warns_like_torch():
    x = make((2, 3, 4), np.float32)
    with pytest.warns(UserWarning, match="Implicit dimension choice"):
        actual = nn.Softmax()(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = torch.nn.Softmax()(torch.from_numpy(x))
    assert_same(actual, expected)


def test_constructor_errors():
    with pytest.raises(ValueError, match="in_channels must be divisible by groups"):
        nn.Conv2d(3, 6, 3, groups=2)
    with pytest.raises(ValueError, match="padding='same' is not supported for strided convolutions"):
        nn.Conv2d(3, 6, 3, stride=2, padding="same")
    with pytest.raises(NotImplementedError, match="padding_mode='reflect'"):
        nn.Conv2d(3, 6, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="num_channels must be divisible by num_groups"):
        nn.GroupNorm(4, 6)
    with pytest.raises(ValueError, match="max_val"):
        nn.Hardtanh(1.0, 0.0)


# --------------------------------------------------------------------------------------------------- Module base
def _net(M):
    return M.Sequential(
        M.Conv2d(3, 4, 3, padding=1, bias=False),
        M.BatchNorm2d(4),
        M.ReLU(inplace=True),
        M.Sequential(M.Linear(4, 4), M.Linear(4, 4), M.Linear(4, 2)),
        M.ModuleList([M.Linear(2, 2), M.Linear(2, 2), M.Linear(2, 3)]),
        M.Flatten(),
    )


def test_names_keys_and_repr_match_torch():
    t, n = _net(torch.nn), _net(nn)
    assert repr(n) == repr(t)
    assert [k for k, _ in n.named_parameters()] == [k for k, _ in t.named_parameters()]
    assert [k for k, _ in n.named_buffers()] == [k for k, _ in t.named_buffers()]
    assert [k for k, _ in n.named_modules()] == [k for k, _ in t.named_modules()]
    assert [k for k, _ in n.named_children()] == [k for k, _ in t.named_children()]
    assert list(n.state_dict()) == list(t.state_dict())
    assert len(list(n.parameters())) == len(list(t.parameters()))
    n.load_state_dict(t.state_dict())
    for (key, a), (_, b) in zip(n.state_dict().items(), t.state_dict().items()):
        assert_same(a, b)


def test_state_dict_shares_memory_and_loads_numpy():
    n = nn.Linear(3, 2)
    sd = n.state_dict()
    assert sd["weight"] is n.weight
    new = {"weight": np.arange(6, dtype=np.float64).reshape(2, 3), "bias": np.array([1.0, 2.0])}
    weight = n.weight
    n.load_state_dict(new)
    assert n.weight is weight and n.weight.dtype == np.float32  # copied in place, cast to the parameter's dtype
    np.testing.assert_array_equal(n.weight, new["weight"])
    n.load_state_dict({"weight": np.zeros((2, 3)), "bias": np.zeros(2)}, assign=True)
    assert n.weight is not weight


def test_load_state_dict_errors_like_torch():
    t, n = _net(torch.nn), _net(nn)
    bad = dict(t.state_dict())
    del bad["0.weight"]
    bad["extra.weight"] = torch.zeros(1)
    with pytest.raises(RuntimeError) as t_err:
        t.load_state_dict(bad)
    with pytest.raises(RuntimeError) as n_err:
        n.load_state_dict(bad)
    assert str(n_err.value) == str(t_err.value)
    result = n.load_state_dict(bad, strict=False)
    assert result.missing_keys == ["0.weight"] and result.unexpected_keys == ["extra.weight"]
    wrong = dict(t.state_dict())
    wrong["3.0.weight"] = torch.zeros(5, 4)
    with pytest.raises(RuntimeError, match=r"size mismatch for 3.0.weight: copying a param with shape \(5, 4\)"):
        n.load_state_dict(wrong, strict=False)
    with pytest.raises(TypeError, match="dict-like"):
        n.load_state_dict([1, 2])


def test_batchnorm_counter_missing_from_old_checkpoint():
    n = nn.BatchNorm2d(3)
    sd = {k: v for k, v in torch.nn.BatchNorm2d(3).state_dict().items() if k != "num_batches_tracked"}
    assert n.load_state_dict(sd).missing_keys == []


def test_train_eval_flags():
    n = _net(nn)
    assert n.training and all(m.training for m in n.modules())
    assert n.eval() is n
    assert not any(m.training for m in n.modules())
    n[3].train()
    assert n[3][0].training and not n[0].training
    with pytest.raises(ValueError, match="boolean"):
        n.train("yes")


def test_to_dtype_and_host_counter():
    n = nn.BatchNorm2d(3)
    n.to(torch.float64)
    assert n.weight.dtype == np.float64 and n.running_var.dtype == np.float64
    assert n.num_batches_tracked.dtype == np.int64
    n.float()
    assert n.weight.dtype == np.float32
    with pytest.raises(TypeError, match="floating point"):
        n.to(np.int32)


def test_parameters_buffers_and_attributes():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(np.ones(3, np.float32))
            self.register_buffer("count", np.zeros(1), persistent=False)
            self.register_buffer("stat", np.zeros(2))
            self.lin = nn.Linear(3, 3)
            self.plain = 5

        def forward(self, x):
            return self.lin(x) * self.scale

    net = Net()
    assert isinstance(net.scale, np.ndarray)
    assert [k for k, _ in net.named_parameters()] == ["scale", "lin.weight", "lin.bias"]
    assert list(net.state_dict()) == ["scale", "stat", "lin.weight", "lin.bias"]
    assert [k for k, _ in net.named_buffers()] == ["count", "stat"]
    net.scale = np.full(3, 2.0, np.float32)  # assigning an array to a parameter name keeps it a parameter
    assert "scale" in dict(net.named_parameters())
    assert net(np.ones((1, 3), np.float32)).shape == (1, 3)
    with pytest.raises(TypeError, match="cannot assign"):
        net.scale = "x"
    with pytest.raises(TypeError, match="cannot assign"):
        net.lin = 3
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        net.missing
    del net.lin
    assert "lin" not in dict(net.named_children())
    assert net.get_parameter("scale") is net.scale

    class Early(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(np.ones(1))

    with pytest.raises(AttributeError, match="before Module.__init__"):
        Early()
    with pytest.raises(NotImplementedError, match='missing the required "forward"'):
        nn.Module()(1)


def test_containers():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert len(seq) == 3 and isinstance(seq[-1], nn.Linear)
    assert isinstance(seq[1:], nn.Sequential) and len(seq[1:]) == 2
    seq.append(nn.Sigmoid())
    assert list(dict(seq.named_children())) == ["0", "1", "2", "3"]
    del seq[1]
    assert list(dict(seq.named_children())) == ["0", "1", "2"]
    with pytest.raises(IndexError):
        seq[5]
    from collections import OrderedDict

    named = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 2)), ("act", nn.Tanh())]))
    assert list(named.state_dict()) == ["fc.weight", "fc.bias"]
    ml = nn.ModuleList([nn.Linear(2, 2)])
    ml += [nn.Linear(2, 2)]
    ml.insert(0, nn.ReLU())
    assert [type(m).__name__ for m in ml] == ["ReLU", "Linear", "Linear"]
    assert len(ml[1:]) == 2
    t_seq = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
    n_seq = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    setattr(t_seq, "0", torch.nn.Identity())
    setattr(n_seq, "0", nn.Identity())  # replacing a child keeps its position, as in torch
    assert repr(n_seq) == repr(t_seq)
    md = nn.ModuleDict({"a": nn.Linear(2, 2)})
    md["b"] = nn.ReLU()
    assert list(md.keys()) == ["a", "b"] and "a" in md
    assert repr(md) == repr(torch.nn.ModuleDict({"a": torch.nn.Linear(2, 2), "b": torch.nn.ReLU()}))


def test_forward_hooks():
    seq = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    seen = []
    handle = seq[0].register_forward_hook(lambda m, args, out: seen.append(out.shape))
    seq[1].register_forward_pre_hook(lambda m, args: (np.zeros((1, 2), np.float32),))
    out = seq(np.ones((1, 2), np.float32))
    assert seen == [(1, 2)] and not out.any()
    handle.remove()
    seq(np.ones((1, 2), np.float32))
    assert seen == [(1, 2)]


# ------------------------------------------------------------------------------------------------ initialisation
def test_init_distributions_follow_torch():
    n = nn.Linear(1000, 400)
    bound = 1 / math.sqrt(1000)
    assert n.weight.dtype == np.float32 and n.weight.shape == (400, 1000)
    assert np.abs(n.weight).max() <= bound and abs(n.weight.std() - bound / math.sqrt(3)) < 0.02 * bound
    assert np.abs(n.bias).max() <= bound and n.bias.std() > 0.4 * bound
    c = nn.Conv2d(16, 32, 3)
    bound = 1 / math.sqrt(16 * 9)
    assert np.abs(c.weight).max() <= bound and np.abs(c.bias).max() <= bound
    e = nn.Embedding(2000, 50)
    assert abs(e.weight.std() - 1) < 0.02 and abs(e.weight.mean()) < 0.02
    w = np.empty((300, 400), np.float32)
    nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    assert abs(w.std() - math.sqrt(2 / 300)) < 0.02 * math.sqrt(2 / 300)
    nn.init.xavier_uniform_(w, gain=2.0)
    a = 2.0 * math.sqrt(6 / 700)
    assert np.abs(w).max() <= a and abs(w.std() - a / math.sqrt(3)) < 0.02 * a
    nn.init.trunc_normal_(w, std=2.0, a=-1.0, b=1.5)
    assert w.min() >= -1.0 and w.max() <= 1.5
    assert nn.init.calculate_gain("leaky_relu", 0.2) == math.sqrt(2 / 1.04)
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        nn.init.kaiming_uniform_(np.empty(3))
    g = np.random.default_rng(5)
    w1 = nn.init.normal_(np.empty(4), generator=g).copy()
    w2 = nn.init.normal_(np.empty(4), generator=np.random.default_rng(5))
    np.testing.assert_array_equal(w1, w2)


def test_init_is_seeded_by_manual_seed():
    nbops.manual_seed(123)
    a = nn.Linear(4, 3).weight.copy()
    nbops.manual_seed(123)
    b = nn.Linear(4, 3).weight
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------------------- from_torch
def _convertible(M):
    return M.Sequential(
        M.Conv2d(3, 4, 3, padding=1),
        M.BatchNorm2d(4),
        M.ReLU(),
        M.MaxPool2d(2),
        M.Identity(),
        M.AdaptiveAvgPool2d(1),
        M.Flatten(),
        M.Linear(4, 5),
        M.GELU(approximate="tanh"),
        M.Dropout(0.0),
        M.LayerNorm(5),
        M.ModuleDict({"head": M.Linear(5, 2)}),
    )


def test_from_torch_round_trip():
    torch.manual_seed(0)
    t = _convertible(torch.nn)
    t[1].train()
    t[:11](torch.randn(4, 3, 8, 8))  # move the running statistics away from their initial values
    t.eval()
    t[9].train()
    n = nn.from_torch(t)
    assert repr(n) == repr(t)
    assert_state_equal(n, t)
    assert [m.training for m in n.modules()] == [m.training for m in t.modules()]
    x = make((2, 3, 8, 8), np.float32)
    body_t, body_n = t[:11], n[:11]
    assert_same(body_n(x), body_t(torch.from_numpy(x)).detach(), rtol=1e-5, atol=1e-5)
    back = torch.nn.Linear(5, 2)
    back.load_state_dict({k.split(".", 2)[-1]: torch.from_numpy(np.array(v))
                          for k, v in n.state_dict().items() if k.startswith("11.")})
    assert torch.equal(back.weight, t[11]["head"].weight)


def test_from_torch_float64_and_leaves():
    t = torch.nn.Linear(3, 2).double()
    n = nn.from_torch(t)
    assert n.weight.dtype == np.float64
    for layer in (torch.nn.PReLU(3), torch.nn.Embedding(5, 2, padding_idx=1), torch.nn.GroupNorm(2, 4),
                  torch.nn.ConvTranspose2d(2, 3, 3, stride=2, output_padding=1), torch.nn.RMSNorm(4),
                  torch.nn.InstanceNorm1d(3, affine=True, track_running_stats=True), torch.nn.LogSoftmax(1)):
        n = nn.from_torch(layer)
        assert repr(n) == repr(layer)
        assert_state_equal(n, layer)


def test_from_torch_unsupported_names_type_and_path():
    class Custom(torch.nn.Module):
        def forward(self, x):
            return x

    t = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Sequential(torch.nn.ReLU(), torch.nn.LSTM(2, 2)))
    with pytest.raises(NotImplementedError, match=r"torch\.nn\.modules\.rnn\.LSTM at '1\.1'"):
        nn.from_torch(t)
    with pytest.raises(NotImplementedError, match="Custom at the root"):
        nn.from_torch(Custom())
    with pytest.raises(NotImplementedError, match="padding_mode='reflect'"):
        nn.from_torch(torch.nn.Sequential(torch.nn.Conv2d(2, 2, 3, padding_mode="reflect")))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        nn.from_torch(np.ones(3))


def _python(code):
    """Run ``code`` in a fresh interpreter (a clean ``sys.modules``); assert it succeeds."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_nn_does_not_import_models():
    """nbops.models is built from nbops.nn and registers its converters with from_torch's table: the import arrow
    runs one way, so importing nbops.nn loads no model code."""
    _python("import sys, nbops.nn; assert 'nbops.models' not in sys.modules, 'nbops.nn imported nbops.models'; "
            "import nbops.models; from nbops.nn import convert; "
            "assert convert._COMPOSITES['ResNet'].__module__ == 'nbops.models.resnet'")


def test_from_torch_loads_the_model_converters():
    _python("import torch, nbops.nn as nn; n = nn.from_torch(torch.nn.MultiheadAttention(4, 2)); "
            "assert type(n).__module__ == 'nbops.models.transformer', type(n)")


@pytest.mark.parametrize("target", TARGETS)
def test_to_device_round_trip(target):
    n = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    before = {k: np.array(to_numpy(v)) for k, v in n.state_dict().items()}
    n.to(target)
    on_host = [isinstance(v, np.ndarray) for k, v in n.state_dict().items() if k != "1.num_batches_tracked"]
    assert all(on_host) if target == "cpu" else not any(on_host)
    assert isinstance(n[1].num_batches_tracked, np.ndarray)  # a host-side counter
    n.load_state_dict({k: torch.from_numpy(v) for k, v in before.items()})
    n.cpu()
    for k, v in n.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


# ------------------------------------------------------------------------------ modules torch does not have
class TorchSwitchNorm2d(torch.nn.Module):
    """The authors' reference SwitchNorm2d (Luo et al. 2018), written with torch ops: the oracle for nn.SwitchNorm2d."""

    def __init__(self, C, eps=1e-5, momentum=0.9, using_bn=True):
        super().__init__()
        self.eps, self.momentum, self.using_bn = eps, momentum, using_bn
        k = 3 if using_bn else 2
        self.weight = torch.nn.Parameter(torch.ones(1, C, 1, 1))
        self.bias = torch.nn.Parameter(torch.zeros(1, C, 1, 1))
        self.mean_weight = torch.nn.Parameter(torch.ones(k))
        self.var_weight = torch.nn.Parameter(torch.ones(k))
        if using_bn:
            self.register_buffer("running_mean", torch.zeros(1, C, 1))
            self.register_buffer("running_var", torch.zeros(1, C, 1))

    def forward(self, x):
        N, C, H, W = x.shape
        x = x.view(N, C, -1)
        mean_in, var_in = x.mean(-1, keepdim=True), x.var(-1, keepdim=True)
        mean_ln = mean_in.mean(1, keepdim=True)
        temp = var_in + mean_in**2
        var_ln = temp.mean(1, keepdim=True) - mean_ln**2
        means, variances = [mean_in, mean_ln], [var_in, var_ln]
        if self.using_bn:
            if self.training:
                mean_bn = mean_in.mean(0, keepdim=True)
                var_bn = temp.mean(0, keepdim=True) - mean_bn**2
                self.running_mean.mul_(self.momentum).add_((1 - self.momentum) * mean_bn)
                self.running_var.mul_(self.momentum).add_((1 - self.momentum) * var_bn)
            else:
                mean_bn, var_bn = self.running_mean, self.running_var
            means.append(mean_bn)
            variances.append(var_bn)
        mw, vw = torch.softmax(self.mean_weight, 0), torch.softmax(self.var_weight, 0)
        mean = sum(w * m for w, m in zip(mw, means))
        var = sum(w * v for w, v in zip(vw, variances))
        x = (x - mean) / (var + self.eps).sqrt()
        return x.view(N, C, H, W) * self.weight + self.bias


@pytest.mark.parametrize("using_bn", [True, False])
def test_switchnorm2d_matches_reference(using_bn):
    t = TorchSwitchNorm2d(4, using_bn=using_bn)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in t.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    n = nn.SwitchNorm2d(4, using_bn=using_bn)
    assert list(n.state_dict()) == list(t.state_dict())
    n.load_state_dict(t.state_dict())
    for step in range(2):
        x = make((3, 4, 5, 6), np.float32, seed=30 + step, offset=step)
        with torch.no_grad():
            expected = t(torch.from_numpy(x))
        assert_same(n(x), expected, rtol=1e-5, atol=1e-5)
        assert_state_equal(n, t, rtol=1e-5, atol=1e-6)
    t.eval()
    n.eval()
    x = make((2, 4, 5, 6), np.float32, seed=40)
    with torch.no_grad():
        expected = t(torch.from_numpy(x))
    assert_same(n(x), expected, rtol=1e-5, atol=1e-5)


def test_dyt_module():
    n = nn.DyT(6, alpha_init_value=0.8)
    assert [k for k, _ in n.named_parameters()] == ["alpha", "weight", "bias"]
    assert n.alpha.shape == (1,) and float(n.alpha[0]) == np.float32(0.8)
    n.weight[:] = np.linspace(-1, 1, 6)
    n.bias[:] = 0.5
    x = make((2, 3, 6), np.float64)
    expected = np.linspace(-1, 1, 6) * np.tanh(0.8 * x.astype(np.float32)) + 0.5
    assert_same(n(x.astype(np.float32)), torch.from_numpy(expected.astype(np.float32)), rtol=1e-5, atol=1e-6)
    assert repr(n) == "DyT(6, alpha_init_value=0.8)"


def test_module_on_torch_tensors_returns_torch_tensors():
    t, n = build("Conv2d(3, 4, 3)")
    x = torch.from_numpy(make((1, 3, 6, 6), np.float32))
    out = n(x)
    assert isinstance(out, torch.Tensor)
    assert_same(out.numpy(), t(x).detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.cuda
def test_device_factory_argument():
    lin = nn.Linear(3, 2, device="cuda")
    bn = nn.BatchNorm1d(2, device="cuda", dtype=np.float64)
    assert not isinstance(lin.weight, np.ndarray) and not isinstance(bn.running_mean, np.ndarray)
    assert bn.running_var.dtype == np.float64 and isinstance(bn.num_batches_tracked, np.ndarray)
    x = make((4, 3), np.float32)
    y = to_numpy(lin(to_target(x, "cuda")))
    assert_same(y, torch.from_numpy(x @ to_numpy(lin.weight).T + to_numpy(lin.bias)), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="one target"):
        lin(x)  # a cpu input for a cuda module: never copied behind the caller's back


@pytest.mark.parametrize("transpose", [False, True])
def test_fuse_conv_bn_eval_matches_torch(transpose):
    from torch.nn.utils.fusion import fuse_conv_bn_eval as torch_fuse

    from nbops.nn.utils import fuse_conv_bn_eval

    conv_ctor = "ConvTranspose2d(3, 4, 3, stride=2)" if transpose else "Conv2d(3, 4, 3, padding=1, bias=False)"
    t_conv, conv = build(conv_ctor)
    t_bn = torch.nn.BatchNorm2d(4)
    with torch.no_grad():
        t_bn.running_mean.copy_(torch.randn(4))
        t_bn.running_var.copy_(torch.rand(4) + 0.5)
        t_bn.weight.copy_(torch.randn(4))
        t_bn.bias.copy_(torch.randn(4))
    bn = nn.from_torch(t_bn)
    t_conv.eval(), t_bn.eval(), conv.eval(), bn.eval()
    fused = fuse_conv_bn_eval(conv, bn, transpose=transpose)
    t_fused = torch_fuse(t_conv, t_bn, transpose=transpose)
    assert_state_equal(fused, t_fused, rtol=1e-6, atol=1e-6)
    assert conv.bias is None or conv.bias is not fused.bias  # the original is untouched
    x = make((2, 3, 5, 5), np.float32)
    assert_same(fused(x), bn(conv(x)), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="Fusion only for eval"):
        fuse_conv_bn_eval(conv.train(), bn)
