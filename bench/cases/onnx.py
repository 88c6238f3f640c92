"""Whole models through nbops.onnx against onnxruntime's CPU provider, fp32, batch 8, cpu only.

Both models are exported from torch in this process (TorchScript exporter, opset 20; eval mode, which folds every
BatchNorm into its convolution) and loaded once by each runtime: ResNet-18 at 224x224, and a BERT-base-sized
post-norm encoder layer on (8, 512, 768) (written out with Linear, LayerNorm, softmax attention and GELU, because
torch's own TransformerEncoderLayer does not export with the TorchScript exporter in torch 2.13).

The runner's reference column is called ``torch``: in this family it is onnxruntime (``InferenceSession`` with
``CPUExecutionProvider``), run on the same NumPy input, and the parity check compares the two runtimes' outputs.
FLOPs count 2 per multiply-add of the convolutions, linear layers and attention products.
"""

import io
import warnings

import torch

from ..core import Case
from .models import ENC_E, ENC_FF, ENC_H, ENC_L, ENC_N, ENCODER_FLOPS, RESNET18_GFLOP_PER_IMAGE, RESNET_HW, \
    RESNET_N, _torch_resnet18

tnn = torch.nn
_sessions = {}


class _EncoderLayer(tnn.Module):
    def __init__(self, e, heads, ff):
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = tnn.Linear(e, 3 * e), tnn.Linear(e, e)
        self.n1, self.n2 = tnn.LayerNorm(e), tnn.LayerNorm(e)
        self.ff1, self.ff2, self.act = tnn.Linear(e, ff), tnn.Linear(ff, e), tnn.GELU()

    def forward(self, x):
        n, length, e = x.shape
        q, k, v = self.qkv(x).reshape(n, length, 3, self.heads, e // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        a = torch.softmax(q @ k.transpose(-2, -1) / (e // self.heads) ** 0.5, dim=-1) @ v
        x = self.n1(x + self.proj(a.transpose(1, 2).reshape(n, length, e)))
        return self.n2(x + self.ff2(self.act(self.ff1(x))))


def _exported(name):
    """(nbops.onnx session, onnxruntime session) for model ``name``, exported and loaded once per process."""
    if name not in _sessions:
        import onnxruntime

        import nbops.onnx

        torch.manual_seed(0)
        if name == "resnet18":
            model, shape = _torch_resnet18(), (RESNET_N, 3, RESNET_HW, RESNET_HW)
        else:
            model, shape = _EncoderLayer(ENC_E, ENC_H, ENC_FF), (ENC_N, ENC_L, ENC_E)
        f = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model.eval(), (torch.zeros(shape),), f, dynamo=False, opset_version=20,
                              input_names=["x"], output_names=["y"])
        blob = f.getvalue()
        options = onnxruntime.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        _sessions[name] = (nbops.onnx.load(blob),
                           onnxruntime.InferenceSession(blob, options, providers=["CPUExecutionProvider"]))
    return _sessions[name]


def _setup(name, shape):
    def setup(rng, dtype):
        _exported(name)
        return (rng.standard_normal(shape).astype(dtype),)
    return setup


def _nbops(name):
    return lambda x: _exported(name)[0].run(None, {"x": x})[0]


def _onnxruntime(name):
    return lambda x: _exported(name)[1].run(None, {"x": x.numpy()})[0]


_T = ENC_N * ENC_L

CASES = [
    Case(
        name=f"onnx resnet18 N{RESNET_N} {RESNET_HW}x{RESNET_HW} (reference: onnxruntime CPU)", family="onnx",
        setup=_setup("resnet18", (RESNET_N, 3, RESNET_HW, RESNET_HW)), nbops=_nbops("resnet18"),
        torch=_onnxruntime("resnet18"), flops=RESNET18_GFLOP_PER_IMAGE * 1e9 * RESNET_N,
        bytes=4.0 * (RESNET_N * 3 * RESNET_HW ** 2 + 11689512 + RESNET_N * 1000), quick=False, targets=("cpu",),
        rtol=1e-3, atol=1e-3,  # 20 float32 layers, each summing up to 4608 terms in another order than MLAS
    ),
    Case(
        name=f"onnx encoder layer ({ENC_N}, {ENC_L}, {ENC_E}) h{ENC_H} ff{ENC_FF} (reference: onnxruntime CPU)",
        family="onnx", setup=_setup("encoder", (ENC_N, ENC_L, ENC_E)), nbops=_nbops("encoder"),
        torch=_onnxruntime("encoder"), flops=ENCODER_FLOPS,
        bytes=4.0 * (2 * _T * ENC_E + 4 * ENC_E * ENC_E + 2 * ENC_E * ENC_FF), quick=False, targets=("cpu",),
        rtol=1e-3, atol=1e-3,  # sums of 768-3072 float32 terms through two residual blocks
    ),
]
