"""Whole networks against torch with the same weights: ResNet-18 (torchvision's architecture) and Transformer encoder
layers (LayerNorm, DeepNorm and DyT variants), in eval and in train mode, plus from_torch on both.

torchvision is not a test dependency: the torch reference ResNet-18 is written below with torch.nn, with
torchvision's class names, module path, attributes and state_dict keys. The networks run on the cpu only: under the
CUDA simulator a ResNet forward takes far too long, so the simulator covers single modules (tests/test_nn.py) and a
tiny encoder layer here.
"""

import math

import numpy as np
import pytest
import torch
from helpers import assert_same, make, to_numpy, to_target

import nbops
import nbops.nn as nn
from nbops.models import DeepNormEncoderLayer, DyTEncoderLayer, MultiheadAttention, TransformerEncoderLayer, resnet18

# float32 through 20 layers with batch statistics: summation-order differences grow to ~1e-5 relative
NET_TOL = dict(rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------- the torch reference ResNet
class BasicBlock(torch.nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(planes)
        self.relu = torch.nn.ReLU(inplace=True)
        self.conv2 = torch.nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet(torch.nn.Module):
    def __init__(self, layers=(2, 2, 2, 2), num_classes=1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = torch.nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(64)
        self.relu = torch.nn.ReLU(inplace=True)
        self.maxpool = torch.nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], 2)
        self.layer3 = self._make_layer(256, layers[2], 2)
        self.layer4 = self._make_layer(512, layers[3], 2)
        self.avgpool = torch.nn.AdaptiveAvgPool2d((1, 1))
        self.fc = torch.nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = torch.nn.Sequential(torch.nn.Conv2d(self.inplanes, planes, 1, stride, bias=False),
                                             torch.nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return torch.nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# stand-ins for torchvision's classes, so that from_torch recognises them as it recognises torchvision's
BasicBlock.__module__ = ResNet.__module__ = "torchvision.models.resnet"


def _perturbed_resnet(num_classes=10):
    """A reference ResNet-18 whose BN affine parameters and running statistics are random (not 1/0), so that
    loading and using them is actually tested."""
    torch.manual_seed(0)
    t = ResNet(num_classes=num_classes)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in t.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(1 + 0.2 * torch.rand(m.running_var.shape, generator=g))
    return t


def test_resnet18_structure_matches_torchvision_layout():
    t = _perturbed_resnet()
    n = resnet18(num_classes=10)
    assert list(n.state_dict()) == list(t.state_dict())
    assert [tuple(v.shape) for v in n.state_dict().values()] == [tuple(v.shape) for v in t.state_dict().values()]
    assert sum(p.size for p in resnet18().parameters()) == 11689512  # torchvision's resnet18 parameter count


def test_resnet18_eval_matches_torch():
    t = _perturbed_resnet().eval()
    n = resnet18(num_classes=10)
    n.load_state_dict(t.state_dict())
    n.eval()
    x = make((1, 3, 32, 32), np.float32, seed=3)
    with torch.no_grad():
        expected = t(torch.from_numpy(x))
    assert_same(n(x), expected, **NET_TOL)


def test_resnet18_train_matches_torch_and_updates_running_stats():
    t = _perturbed_resnet().train()
    n = nn.from_torch(t)
    assert n.training and isinstance(n, nbops.models.ResNet)
    x = make((2, 3, 64, 64), np.float32, seed=4)
    with torch.no_grad():
        expected = t(torch.from_numpy(x))
    assert_same(n(x), expected, **NET_TOL)
    sd_n, sd_t = n.state_dict(), t.state_dict()
    for key in sd_t:
        assert_same(to_numpy(sd_n[key]), sd_t[key], **NET_TOL)
    assert int(n.layer4[1].bn2.num_batches_tracked) == 1


# ------------------------------------------------------------------------------------------------ encoder layers
D_MODEL, NHEAD, FF = 32, 4, 64


def _randomise(module, seed):
    """Random weights everywhere (torch zero-initialises the projection biases and sets norms to 1/0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g) + (1.0 if p.dim() == 1 and p.numel() == 1 else 0.0))
    return module


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_ffn_applies_its_activation_in_linear1(activation, monkeypatch):
    """relu and gelu run in linear1's epilogue (``_linear_act``), with the same bits as linear1 and then the
    activation (which a forward hook on linear1 restores, since the hook must see linear1's own output)."""
    import nbops.models.transformer as transformer

    calls = []
    fused = transformer._linear_act
    monkeypatch.setattr(transformer, "_linear_act", lambda *a: calls.append(a[-1]) or fused(*a))
    n = TransformerEncoderLayer(D_MODEL, NHEAD, FF, dropout=0.0, activation=activation, batch_first=True).eval()
    x = make((3, 40, D_MODEL), np.float32, seed=6)
    out = n(x)
    assert calls == [activation]
    seen = []
    n.linear1.register_forward_hook(lambda m, args, y: seen.append(y.shape))
    np.testing.assert_array_equal(n(x), out)
    assert calls == [activation] and seen == [(3, 40, FF)]


@pytest.mark.parametrize("batch_first,norm_first,activation,bias", [
    (True, False, "gelu", True), (False, True, "relu", True),
    (True, False, "relu", False)])  # post-norm residuals (one deep_norm pass each) without norm biases
def test_encoder_layer_matches_torch(batch_first, norm_first, activation, bias):
    t = torch.nn.TransformerEncoderLayer(D_MODEL, NHEAD, FF, dropout=0.0, activation=activation,
                                         batch_first=batch_first, norm_first=norm_first, bias=bias)
    _randomise(t, 0)
    n = TransformerEncoderLayer(D_MODEL, NHEAD, FF, dropout=0.0, activation=activation, batch_first=batch_first,
                                norm_first=norm_first, bias=bias)
    n.load_state_dict(t.state_dict())
    shape = (3, 10, D_MODEL) if batch_first else (10, 3, D_MODEL)
    x = make(shape, np.float32, seed=5)
    for mode in (True, False):
        t.train(mode)
        n.train(mode)
        with torch.no_grad():
            expected = t(torch.from_numpy(x))
        assert_same(n(x), expected, rtol=1e-5, atol=1e-5)


def test_encoder_layer_masks_match_torch():
    t = _randomise(torch.nn.TransformerEncoderLayer(D_MODEL, NHEAD, FF, dropout=0.0, batch_first=True), 1).train()
    n = nn.from_torch(t)
    assert isinstance(n, TransformerEncoderLayer)
    x = make((2, 6, D_MODEL), np.float32, seed=6)
    float_causal = np.triu(np.full((6, 6), -np.inf, np.float32), 1)
    bool_padding = np.array([[False] * 6, [False] * 4 + [True] * 2])
    float_padding = np.where(bool_padding, -np.inf, 0.0).astype(np.float32)
    # torch wants both masks of one kind: float with float, bool with bool
    for src_mask, padding in ((float_causal, float_padding), (np.isinf(float_causal), bool_padding)):
        with torch.no_grad():
            expected = t(torch.from_numpy(x), src_mask=torch.from_numpy(src_mask),
                         src_key_padding_mask=torch.from_numpy(padding))
        assert_same(n(x, src_mask=src_mask, src_key_padding_mask=padding), expected, rtol=1e-5, atol=1e-5)
    # CPU torch tensors in, a torch tensor out
    out = n(torch.from_numpy(x), src_key_padding_mask=torch.from_numpy(bool_padding))
    with torch.no_grad():
        expected = t(torch.from_numpy(x), src_key_padding_mask=torch.from_numpy(bool_padding))
    assert isinstance(out, torch.Tensor)
    assert_same(out.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_multihead_attention_weights_match_torch():
    t = _randomise(torch.nn.MultiheadAttention(D_MODEL, NHEAD, batch_first=True), 2)
    n = nn.from_torch(t)
    q = make((2, 5, D_MODEL), np.float32, seed=7)
    kv = make((2, 7, D_MODEL), np.float32, seed=8)
    for average in (True, False):
        with torch.no_grad():
            out_t, w_t = t(torch.from_numpy(q), torch.from_numpy(kv), torch.from_numpy(kv),
                           average_attn_weights=average)
        out_n, w_n = n(q, kv, kv, average_attn_weights=average)
        assert_same(out_n, out_t, rtol=1e-5, atol=1e-5)
        assert_same(w_n, w_t, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        out_t, _ = t(torch.from_numpy(q[0]), torch.from_numpy(kv[0]), torch.from_numpy(kv[0]))
    out_n, w_n = n(q[0], kv[0], kv[0])
    assert_same(out_n, out_t, rtol=1e-5, atol=1e-5)
    assert w_n.shape == (5, 7)
    # self-attention (query is key is value): one packed in-projection whose q, k, v are views of one array,
    # batched and unbatched, with weights (matmul and softmax on the views) and without (the fused kernel)
    for x in (q, q[1]):
        for need_weights in (True, False):
            with torch.no_grad():
                out_t, w_t = t(*(torch.from_numpy(x),) * 3, need_weights=need_weights)
            out_n, w_n = n(x, x, x, need_weights=need_weights)
            assert_same(out_n, out_t, rtol=1e-5, atol=1e-5)
            if need_weights:
                assert_same(w_n, w_t, rtol=1e-5, atol=1e-5)
    mask3 = make((2 * NHEAD, 5, 7), np.float32, seed=9)  # a per-head additive mask, (N * H, L, S)
    with torch.no_grad():
        out_t, w_t = t(torch.from_numpy(q), torch.from_numpy(kv), torch.from_numpy(kv),
                       attn_mask=torch.from_numpy(mask3))
    out_n, w_n = n(q, kv, kv, attn_mask=mask3)
    assert_same(out_n, out_t, rtol=1e-5, atol=1e-5)
    assert_same(w_n, w_t, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        MultiheadAttention(30, 4)
    with pytest.raises(RuntimeError, match="Need attn_mask"):
        n(q, q, q, is_causal=True)


class TorchDeepNormLayer(torch.nn.TransformerEncoderLayer):
    """The DeepNorm reference: torch's post-norm layer with ``LN(alpha * x + f(x))`` residuals."""

    def __init__(self, alpha, **kwargs):
        super().__init__(**kwargs)
        self.alpha = alpha

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        x = src
        x = self.norm1(self.alpha * x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
        return self.norm2(self.alpha * x + self._ff_block(x))


class TorchDyT(torch.nn.Module):
    def __init__(self, c, alpha_init_value=0.5):
        super().__init__()
        self.alpha = torch.nn.Parameter(torch.ones(1) * alpha_init_value)
        self.weight = torch.nn.Parameter(torch.ones(c))
        self.bias = torch.nn.Parameter(torch.zeros(c))

    def forward(self, x):
        return self.weight * torch.tanh(self.alpha * x) + self.bias


def test_deepnorm_encoder_layer_matches_reference():
    n = DeepNormEncoderLayer(D_MODEL, NHEAD, FF, dropout=0.0, activation="gelu", batch_first=True, num_layers=6)
    alpha, beta = nbops.deep_norm_coefficients(num_encoder_layers=6)[:2]
    assert n.alpha == alpha and n.beta == beta
    # the paper's init: value/output/FFN weights scaled by beta, query/key not
    v_std = n.self_attn.in_proj_weight[2 * D_MODEL:].std()
    q_std = n.self_attn.in_proj_weight[:D_MODEL].std()
    assert abs(v_std / q_std - beta) < 0.1
    t = TorchDeepNormLayer(alpha, d_model=D_MODEL, nhead=NHEAD, dim_feedforward=FF, dropout=0.0,
                           activation="gelu", batch_first=True)
    _randomise(t, 3)
    n.load_state_dict(t.state_dict())
    x = make((2, 9, D_MODEL), np.float32, seed=9)
    with torch.no_grad():
        expected = t(torch.from_numpy(x))
    assert_same(n(x), expected, rtol=1e-5, atol=1e-5)


def test_dyt_encoder_layer_matches_reference():
    t = torch.nn.TransformerEncoderLayer(D_MODEL, NHEAD, FF, dropout=0.0, batch_first=True, norm_first=True)
    t.norm1, t.norm2 = TorchDyT(D_MODEL), TorchDyT(D_MODEL)
    _randomise(t, 4)
    n = DyTEncoderLayer(D_MODEL, NHEAD, FF, dropout=0.0, batch_first=True, norm_first=True)
    assert isinstance(n.norm1, nn.DyT)
    n.load_state_dict(t.state_dict())
    x = make((2, 9, D_MODEL), np.float32, seed=10)
    with torch.no_grad():
        expected = t(torch.from_numpy(x))
    assert_same(n(x), expected, rtol=1e-5, atol=1e-5)


def test_encoder_layer_dropout_in_training_only():
    n = TransformerEncoderLayer(D_MODEL, NHEAD, FF, dropout=0.5, batch_first=True)
    x = make((2, 6, D_MODEL), np.float32, seed=11)
    n.eval()
    np.testing.assert_array_equal(n(x), n(x))
    n.train()
    assert not np.array_equal(n(x), n(x))


@pytest.mark.cuda
def test_encoder_layer_cuda():
    t = _randomise(torch.nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True), 5).eval()
    n = nn.from_torch(t).to("cuda")
    x = make((2, 4, 16), np.float32, seed=12)
    with torch.no_grad():
        expected = t(torch.from_numpy(x))
    assert_same(to_numpy(n(to_target(x, "cuda"))), expected, rtol=1e-5, atol=1e-5)


def test_from_torch_rejects_unsupported_attention():
    t = torch.nn.MultiheadAttention(8, 2, kdim=4, vdim=4)
    with pytest.raises(NotImplementedError, match="MultiheadAttention at the root"):
        nn.from_torch(t)
    assert math.isclose(nbops.deep_norm_coefficients(num_encoder_layers=8)[0], 2.0)


def test_from_torch_keeps_an_activation_module():
    t = torch.nn.TransformerEncoderLayer(D_MODEL, NHEAD, FF, dropout=0.0, activation=torch.nn.GELU(approximate="tanh"),
                                         batch_first=True)
    _randomise(t, 6).train()  # training mode: torch's eval fast path would treat any GELU module as exact gelu
    n = nn.from_torch(t)
    assert repr(n.activation) == "GELU(approximate='tanh')"
    x = make((2, 5, D_MODEL), np.float32, seed=13)
    with torch.no_grad():
        expected = t(torch.from_numpy(x))
    assert_same(n(x), expected, rtol=1e-5, atol=1e-5)
