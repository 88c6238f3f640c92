"""nbops.onnx: whole models against torch (exported with torch.onnx) and against onnx's reference evaluator (built
with onnx.helper), on both targets; the session API; bad models and bad inputs; the command line."""

import io
import os
import subprocess
import sys
import warnings

import numpy as np
import onnx
import pytest
import torch
from helpers import TARGETS, make, to_numpy, to_target
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

import nbops.onnx

tnn = torch.nn
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Block(tnn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1, self.b1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False), tnn.BatchNorm2d(cout)
        self.c2, self.b2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False), tnn.BatchNorm2d(cout)
        self.down = (tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else None)

    def forward(self, x):
        y = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class ResNetish(tnn.Module):
    """A ResNet in miniature: 7x7 stride-2 stem, BN, ReLU, max pool, two basic blocks, global pool, linear."""

    def __init__(self, width=8, classes=10):
        super().__init__()
        self.stem = tnn.Sequential(tnn.Conv2d(3, width, 7, 2, 3, bias=False), tnn.BatchNorm2d(width), tnn.ReLU(),
                                   tnn.MaxPool2d(3, 2, 1))
        self.layers = tnn.Sequential(Block(width, width, 1), Block(width, 2 * width, 2))
        self.pool, self.fc = tnn.AdaptiveAvgPool2d(1), tnn.Linear(2 * width, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


class EncoderLayer(tnn.Module):
    """A post-norm transformer encoder layer (multi-head self-attention, GELU feed-forward). torch's own
    TransformerEncoderLayer does not export with the TorchScript exporter in torch 2.13 (its attention passes a
    traced is_causal), and the dynamo exporter needs onnxscript, so the layer is spelled out with the same ops."""

    def __init__(self, e=16, heads=2, ff=32):
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


def randomize_norms(model):
    """Non-trivial BatchNorm statistics and affine parameters (fresh ones are the identity)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, tnn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model


def export(model, x):
    """The model exported with torch.onnx (TorchScript exporter, opset 20), batch dim dynamic."""
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), f, dynamo=False, opset_version=20, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    return onnx.load_from_string(f.getvalue())


MODELS = {  # name: (module, input shape on cpu, input shape on cuda under the simulator)
    "resnetish": (lambda: randomize_norms(ResNetish()), (3, 3, 29, 29), (1, 3, 12, 12)),
    "encoder": (lambda: EncoderLayer(), (3, 7, 16), (1, 3, 16)),
}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_exported_model_matches_torch_with_dynamic_batch(name, target):
    build, shape, tiny = MODELS[name]
    torch.manual_seed(0)
    model = build().eval()
    shape = shape if target == "cpu" else tiny
    session = nbops.onnx.load(export(model, torch.from_numpy(make(shape))))
    assert session.get_inputs()[0].shape[0] == "batch"
    if name == "encoder":  # the linear layers' MatMul + Add run as nbops.linear
        assert "MatMul+Add" in {s.op for s in session._steps}
    else:  # every ReLU overwrites the conv or residual sum it follows
        assert all(s.fn is nbops.onnx.converters.IN_PLACE["Relu"] for s in session._steps if s.op == "Relu")
    for batch in (shape[0], 1, 2) if target == "cpu" else (shape[0],):
        x = make((batch,) + shape[1:], seed=batch, offset=0.5)
        (y,) = session.run(None, {"x": to_target(x, target)})
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        torch.testing.assert_close(to_numpy(y), want, rtol=1e-4, atol=1e-5)


def _mixed_model(dtype):
    """A graph built with onnx.helper of the ops where ONNX and torch differ: asymmetric and SAME_UPPER pads,
    Gemm's transposes, Slice with steps, Gather with negative indices, ArgMax with select_last_index, Pad, Cast,
    a multi-axis ReduceMean, Split, Where, Clip with a constant bound."""
    T = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    rng = np.random.default_rng(3)
    inits = [
        helper.make_tensor("w", T, (4, 3, 3, 2), rng.standard_normal((4, 3, 3, 2)).astype(dtype).ravel()),
        helper.make_tensor("gw", T, (6, 5), rng.standard_normal((6, 5)).astype(dtype).ravel()),
        helper.make_tensor("idx", TensorProto.INT64, (2,), [-1, 1]),
        helper.make_tensor("starts", TensorProto.INT64, (2,), [5, 0]),
        helper.make_tensor("ends", TensorProto.INT64, (2,), [-100, 100]),
        helper.make_tensor("axes", TensorProto.INT64, (2,), [3, 2]),
        helper.make_tensor("steps", TensorProto.INT64, (2,), [-2, 3]),
        helper.make_tensor("pads", TensorProto.INT64, (8,), [0, 0, 1, 0, 0, 0, 0, 2]),
        helper.make_tensor("pval", T, (), [0.25]),
        helper.make_tensor("lo", T, (), [-0.5]),
        helper.make_tensor("raxes", TensorProto.INT64, (2,), [-1, 2]),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 0, 0, 2], strides=[1, 2]),
        helper.make_node("MaxPool", ["c"], ["mp"], kernel_shape=[2, 3], auto_pad="SAME_UPPER", strides=[2, 1]),
        helper.make_node("AveragePool", ["c"], ["ap"], kernel_shape=[3, 2], pads=[0, 1, 2, 0]),
        helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["sl"]),
        helper.make_node("Pad", ["sl", "pads", "pval"], ["pd"]),
        helper.make_node("Gather", ["x", "idx"], ["ga"], axis=3),
        helper.make_node("ArgMax", ["ga"], ["am"], axis=1, keepdims=0, select_last_index=1),
        helper.make_node("Cast", ["am"], ["amf"], to=T),
        helper.make_node("ReduceMean", ["ap", "raxes"], ["rm"], keepdims=1),
        helper.make_node("Flatten", ["x"], ["fl"], axis=3),
        helper.make_node("Gemm", ["gw", "fl"], ["gm"], transA=1, transB=1, alpha=0.5),
        helper.make_node("Split", ["mp"], ["s0", "s1"], axis=1, num_outputs=2),
        helper.make_node("Sub", ["s0", "s1"], ["d"]),
        helper.make_node("Relu", ["d"], ["r"]),
        helper.make_node("Cast", ["r"], ["rb"], to=TensorProto.BOOL),
        helper.make_node("Where", ["rb", "s0", "s1"], ["wh"]),
        helper.make_node("Clip", ["wh", "lo"], ["cl"]),
    ]
    outs = {"cl": [2, 2, 3, 4], "pd": [2, 3, 4, 5], "amf": [2, 7, 2], "rm": [2, 4, 1, 1], "gm": [5, 42]}
    graph = helper.make_graph(nodes, "mixed", [helper.make_tensor_value_info("x", T, [2, 3, 7, 6])],
                              [helper.make_tensor_value_info(n, T, s) for n, s in outs.items()], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_onnx_semantics_match_reference_evaluator(dtype, target):
    model = _mixed_model(dtype)
    x = make((2, 3, 7, 6), dtype, seed=1, layout="strided")  # a non-contiguous input
    session = nbops.onnx.load(model)
    want = ReferenceEvaluator(model).run(None, {"x": np.ascontiguousarray(x)})
    got = session.run(None, {"x": to_target(x, target)})
    for g, w, vi in zip(got, want, session.get_outputs()):
        g = to_numpy(g)
        assert g.shape == w.shape and g.dtype == w.dtype, vi.name
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=vi.name)


def test_session_api_and_output_selection():
    session = nbops.onnx.load(_mixed_model(np.float32))
    (x,) = session.get_inputs()
    assert (x.name, x.shape, x.type, x.dtype) == ("x", [2, 3, 7, 6], "tensor(float)", np.float32)
    assert [o.name for o in session.get_outputs()] == ["cl", "pd", "amf", "rm", "gm"]
    inp = make((2, 3, 7, 6), seed=4)
    everything = session.run(None, {"x": inp})
    pd, gm = session.run(["pd", "gm"], {"x": inp})
    np.testing.assert_array_equal(pd, everything[1])
    np.testing.assert_array_equal(gm, everything[4])
    (t,) = session.run(["gm"], {"x": torch.from_numpy(inp)})  # a torch tensor in, a torch tensor out
    assert isinstance(t, torch.Tensor)
    np.testing.assert_array_equal(t.numpy(), gm)


def test_intermediates_are_released_after_their_last_reader():
    session = nbops.onnx.load(_mixed_model(np.float32))
    released = [s for step in session._steps for s in step.release]
    names = {v: k for k, v in session._slots.items()}
    assert len(released) == len(set(released))
    assert {names[s] for s in released} == {"c", "mp", "ap", "sl", "ga", "am", "fl", "s0", "s1", "d", "r", "rb",
                                            "wh", "x"}


def _graph(nodes, inputs, outputs, inits=(), opset=21):
    return helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, list(inits)),
                             opset_imports=[helper.make_opsetid("", opset)])


X = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
Y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])


def test_unknown_operator_fails_at_load_naming_node_op_and_opset():
    model = _graph([helper.make_node("Erf", ["x"], ["y"], name="erf1")], [X], [Y])
    with pytest.raises(nbops.onnx.UnsupportedModelError, match=r"node 'erf1' \(Erf, opset 21\): operator not"):
        nbops.onnx.load(model)


def test_unsupported_attribute_fails_at_load():
    x4 = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])
    model = _graph([helper.make_node("Pad", ["x", "p"], ["y"], mode="reflect", name="pad")], [x4],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])],
                   [helper.make_tensor("p", TensorProto.INT64, (8,), [0] * 8)])
    with pytest.raises(nbops.onnx.UnsupportedModelError, match=r"'pad' \(Pad, opset 21\): mode='reflect'"):
        nbops.onnx.load(model)


def test_missing_initializer_fails_at_load():
    model = _graph([helper.make_node("Add", ["x", "bias"], ["y"], name="add")], [X], [Y])
    with pytest.raises(nbops.onnx.UnsupportedModelError, match=r"'add' \(Add\): input 'bias' is not a graph input"):
        nbops.onnx.load(model)


def test_unsorted_graph_is_ordered_once_at_load():
    nodes = [helper.make_node("Relu", ["t"], ["y"]), helper.make_node("Neg", ["x"], ["t"])]
    session = nbops.onnx.load(_graph(nodes, [X], [Y]))
    x = make((2, 3))
    np.testing.assert_array_equal(session.run(None, {"x": x})[0], np.maximum(-x, 0))


def test_bad_inputs_at_run_raise_clear_errors():
    session = nbops.onnx.load(_graph([helper.make_node("Relu", ["x"], ["y"])], [X], [Y]))
    with pytest.raises(ValueError, match=r"input 'x' has shape \(3, 2\), the model declares \(2, 3\)"):
        session.run(None, {"x": make((3, 2))})
    with pytest.raises(TypeError, match=r"input 'x' has dtype float64, the model declares tensor\(float\)"):
        session.run(None, {"x": make((2, 3), np.float64)})
    with pytest.raises(ValueError, match=r"missing inputs \['x'\]"):
        session.run(None, {})
    with pytest.raises(ValueError, match=r"'z' is not a graph output"):
        session.run(["z"], {"x": make((2, 3))})
    with pytest.raises(TypeError, match=r"input 'x' must be an array"):
        session.run(None, {"x": [[1.0] * 3] * 2})


def test_bad_index_at_run_names_the_node():
    model = _graph([helper.make_node("Gather", ["x", "i"], ["y"], name="g")],
                   [X, helper.make_tensor_value_info("i", TensorProto.INT64, [1])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    session = nbops.onnx.load(model)
    with pytest.raises(IndexError, match=r"node 'g' \(Gather\): Gather index out of range"):
        session.run(None, {"x": make((2, 3)), "i": np.array([2])})


def test_import_nbops_does_not_import_onnx():
    code = "import sys, nbops; assert 'onnx' not in sys.modules and 'onnxruntime' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_command_line_runs_and_checks_against_onnxruntime(tmp_path):
    path = tmp_path / "relu.onnx"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])
    onnx.save(_graph([helper.make_node("Relu", ["x"], ["y"])], [x],
                     [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])]), str(path))
    run = subprocess.run([sys.executable, "-m", "nbops.onnx", str(path), "--dim", "n=4", "--check", "--repeat", "2"],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert "y: shape (4, 3) float32" in run.stdout and "check y: ok" in run.stdout
    run = subprocess.run([sys.executable, "-m", "nbops.onnx", str(path)], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode != 0 and "--dim n=VALUE" in run.stderr


def test_relu_overwrites_only_a_fresh_buffer_that_dies_at_it():
    """Conv -> Relu -> Add(conv, relu): the conv output is read again after the Relu, so the Relu must not run in
    place there; the second Relu's input (the Add's fresh output) dies at it and is overwritten."""
    rng = np.random.default_rng(5)
    w = helper.make_tensor("w", TensorProto.FLOAT, (2, 3, 3, 3), rng.standard_normal(54).astype(np.float32))
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Add", ["c", "r"], ["a"]), helper.make_node("Relu", ["a"], ["y"])]
    model = _graph(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 5])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 5, 5])], [w])
    session = nbops.onnx.load(model)
    in_place = [s.fn is nbops.onnx.converters.IN_PLACE["Relu"] for s in session._steps if s.op == "Relu"]
    assert in_place == [False, True]
    x = make((1, 3, 5, 5), seed=6)
    np.testing.assert_allclose(session.run(None, {"x": x})[0], ReferenceEvaluator(model).run(None, {"x": x})[0],
                               rtol=1e-5, atol=1e-6)


def test_matmul_then_bias_add_runs_as_one_linear():
    rng = np.random.default_rng(7)
    inits = [helper.make_tensor("w", TensorProto.FLOAT, (4, 6), rng.standard_normal(24).astype(np.float32)),
             helper.make_tensor("b", TensorProto.FLOAT, (6,), rng.standard_normal(6).astype(np.float32))]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["b", "m"], ["y"])]
    model = _graph(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 6])], inits)
    session = nbops.onnx.load(model)
    assert [s.op for s in session._steps] == ["MatMul+Add"]
    x = make((2, 3, 4), seed=8, layout="transposed")
    np.testing.assert_allclose(session.run(None, {"x": x})[0], ReferenceEvaluator(model).run(None, {"x": x})[0],
                               rtol=1e-5, atol=1e-6)


def test_a_constant_output_is_a_copy():
    model = _graph([helper.make_node("Identity", ["c"], ["y"]), helper.make_node("Relu", ["x"], ["z"])],
                   [X], [Y, helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3])],
                   [helper.make_tensor("c", TensorProto.FLOAT, (2, 3), np.arange(6, dtype=np.float32))])
    session = nbops.onnx.load(model)
    y, _ = session.run(None, {"x": make((2, 3))})
    y += 1
    np.testing.assert_array_equal(session.run(None, {"x": make((2, 3))})[0], np.arange(6).reshape(2, 3))


@pytest.mark.cuda
def test_a_cuda_run_goes_on_the_stream_in_force():
    """Every op on the stream, and the ConstantOfShape's shape, which arrives on the device, read back on it."""
    from numba import cuda

    nodes = [helper.make_node("ConstantOfShape", ["n"], ["c"], value=helper.make_tensor("v", TensorProto.FLOAT, [1],
                                                                                         [0.5])),
             helper.make_node("Slice", ["c", "st", "en"], ["cs"]), helper.make_node("Add", ["x", "cs"], ["y"])]
    model = _graph(nodes, [X, helper.make_tensor_value_info("n", TensorProto.INT64, [2])], [Y],
                   [helper.make_tensor("st", TensorProto.INT64, (2,), [0, 1]),
                    helper.make_tensor("en", TensorProto.INT64, (2,), [2, 4])])
    session = nbops.onnx.load(model)
    x = make((2, 3), seed=9)
    stream = cuda.stream()
    with nbops.cuda_stream(stream):
        feed = {"x": cuda.to_device(x, stream=stream), "n": cuda.to_device(np.array([2, 4]), stream=stream)}
        (y,) = session.run(None, feed)
    stream.synchronize()
    np.testing.assert_allclose(y.copy_to_host(), x + 0.5)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("shape", [[], [0, 2], [2, 1, 3]])
def test_constant_of_shape_gives_a_fresh_array_each_run(shape, target):
    """The shape arrives as a graph input (on the device for cuda: read back on the host)."""
    shape_in = helper.make_tensor_value_info("s", TensorProto.INT64, [len(shape)])
    node = helper.make_node("ConstantOfShape", ["s"], ["y"], value=helper.make_tensor("v", TensorProto.FLOAT, [1],
                                                                                         [2.5]))
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [f"d{i}" for i in range(len(shape))])
    session = nbops.onnx.load(_graph([node], [shape_in], [out]))
    s = to_target(np.array(shape, np.int64), target)
    y = session.run(None, {"s": s})[0]
    assert y.shape == tuple(shape) and y.dtype == np.float32
    if target == "cpu":
        y[...] = 0
    np.testing.assert_array_equal(to_numpy(session.run(None, {"s": s})[0]), np.full(shape, 2.5, np.float32))


@pytest.mark.cuda
def test_gather_of_a_constant_table_by_device_indices_runs_on_the_device():
    from numba import cuda

    table = make((5, 4), seed=10)
    model = _graph([helper.make_node("Gather", ["w", "i"], ["y"])],
                   [helper.make_tensor_value_info("i", TensorProto.INT64, [2, 3])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4])],
                   [helper.make_tensor("w", TensorProto.FLOAT, (5, 4), table.ravel())])
    session = nbops.onnx.load(model)
    idx = np.array([[0, -1, 2], [4, 4, -5]])
    (y,) = session.run(None, {"i": cuda.to_device(idx)})
    assert getattr(y, "__cuda_ndarray__", False)
    np.testing.assert_array_equal(y.copy_to_host(), table[idx])
    assert set(session._device_copies) == {session._slots["w"]}  # the table went to the device once


SCALED = [  # (a shape, b shape, reader, constant first, fused op or None)
    ((2, 3, 5, 4), (2, 3, 4, 6), "Div", False, "MatMul+Div"),
    ((5, 4), (4, 6), "Mul", True, "MatMul+Mul"),
    ((1, 5, 4), (3, 4, 6), "Mul", False, "MatMul+Mul"),  # batch dims that broadcast: matmul, then mul
    ((5, 4), (4, 6), "Div", True, None),  # constant / product: not a scaled product
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("a_shape, b_shape, op, const_first, fused", SCALED)
def test_matmul_then_scalar_div_or_mul_runs_as_one_scaled_gemm(a_shape, b_shape, op, const_first, fused, target):
    out = list(np.broadcast_shapes(a_shape[:-2], b_shape[:-2])) + [a_shape[-2], b_shape[-1]]
    ins = ["c", "m"] if const_first else ["m", "c"]
    nodes = [helper.make_node("MatMul", ["a", "b"], ["m"]), helper.make_node(op, ins, ["y"])]
    model = _graph(nodes, [helper.make_tensor_value_info("a", TensorProto.FLOAT, list(a_shape)),
                           helper.make_tensor_value_info("b", TensorProto.FLOAT, list(b_shape))],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)],
                   [helper.make_tensor("c", TensorProto.FLOAT, (), [3.0])])
    session = nbops.onnx.load(model)
    assert [s.op for s in session._steps] == ([fused] if fused else ["MatMul", op])
    a, b = make(a_shape, seed=11, layout="transposed"), make(b_shape, seed=12)
    want = ReferenceEvaluator(model).run(None, {"a": np.ascontiguousarray(a), "b": b})[0]
    got = to_numpy(session.run(None, {"a": to_target(a, target), "b": to_target(b, target)})[0])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


ATTENTION = [  # (q, kT, v shapes, scale node (op, constant first) or None, softmax axis, extra output, fused, on cuda)
    ((2, 3, 5, 4), (2, 3, 4, 7), (2, 3, 7, 6), ("Div", False), -1, None, True, True),  # (N, H, L, D): in place
    ((3, 5, 4), (3, 4, 7), (3, 7, 6), ("Mul", True), -1, None, True, False),
    ((3, 5, 4), (3, 4, 7), (3, 7, 6), None, -1, None, True, False),
    ((1, 5, 4), (3, 4, 7), (3, 7, 6), ("Mul", False), -1, None, True, True),  # broadcast batch: nodes one by one
    ((3, 5, 4), (3, 4, 7), (3, 7, 6), ("Div", False), 1, None, False, False),  # softmax over another axis
    ((3, 5, 4), (3, 4, 7), (3, 7, 6), ("Div", False), -1, "w", False, False),  # the weights are a graph output
    ((3, 5, 4), (3, 4, 7), (3, 7, 6), ("Div", True), -1, None, False, False),  # constant / scores: not a scale
    ((5, 4), (4, 7), (7, 6), ("Div", False), -1, None, True, False),  # no batch dim: nodes one by one
    ((4,), (4, 7), (7, 6), None, -1, None, True, False),  # a 1-D query
]


def _attention_params():
    # every form on the cpu; on the simulator (Python per thread) the fused step and one fallback
    out = []
    for i, (*row, on_cuda) in enumerate(ATTENTION):
        out.append(pytest.param(*row, "cpu", id=f"cpu-{i}"))
        if on_cuda:
            out.append(pytest.param(*row, "cuda", id=f"cuda-{i}", marks=pytest.mark.cuda))
    return out


@pytest.mark.parametrize("q_shape, k_shape, v_shape, scale, axis, extra, fused, target", _attention_params())
def test_matmul_softmax_matmul_runs_as_one_attention(q_shape, k_shape, v_shape, scale, axis, extra, fused, target):
    """softmax(q @ kT [/ or * c]) @ v as one fused step where every intermediate is read once; v is computed
    after the scores (a Neg of the graph input, listed last), so the fused step must sit at the last MatMul."""
    nodes = [helper.make_node("MatMul", ["q", "kt"], ["s"])]
    scores = "s"
    if scale is not None:
        op, const_first = scale
        nodes.append(helper.make_node(op, ["c", "s"] if const_first else ["s", "c"], ["s2"]))
        scores = "s2"
    nodes += [helper.make_node("Softmax", [scores], ["w"], axis=axis), helper.make_node("Neg", ["v_in"], ["v"]),
              helper.make_node("MatMul", ["w", "v"], ["y"])]
    out = list(np.broadcast_shapes(q_shape[:-2], v_shape[:-2])) + list(q_shape[-2:-1]) + [v_shape[-1]]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)]
    if extra:
        outputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, out[:-1] + [k_shape[-1]]))  # (N, L, S)
    model = _graph(nodes, [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s))
                           for n, s in (("q", q_shape), ("kt", k_shape), ("v_in", v_shape))], outputs,
                   [helper.make_tensor("c", TensorProto.FLOAT, (), [2.0])])
    session = nbops.onnx.load(model)
    assert ("Attention" in [s.op for s in session._steps]) == fused
    feeds = {"q": make(q_shape, seed=21), "kt": make(k_shape, seed=22, layout="transposed"),
             "v_in": make(v_shape, seed=23)}
    want = ReferenceEvaluator(model).run(None, {n: np.ascontiguousarray(a) for n, a in feeds.items()})
    got = session.run(None, {n: to_target(a, target) for n, a in feeds.items()})
    for g, w in zip(got, want):
        np.testing.assert_allclose(to_numpy(g), w, rtol=1e-5, atol=1e-6)
