"""onnx's backend conformance suite (``onnx.backend.test``, shipped in the onnx package) on nbops.onnx.

Every node test whose graph uses only operators nbops.onnx claims is included by name (the tests named after an
operator and the ``_expanded`` variants that spell an operator out as a function body of claimed ones); the ones
that use a dtype, a rank or a mode nbops does not run are excluded explicitly below, with the reason (they fail at
load time with UnsupportedModelError, which tests/test_onnx.py checks). All included tests run on cpu; a tiny
subset runs on cuda (under the simulator in CI).
"""

import re
import unittest

import onnx.backend.test
import pytest
from onnx.backend.test.loader import load_model_tests

import nbops.onnx
from nbops.onnx.backend import NbopsBackend

CLAIMED = set(nbops.onnx.claimed())

UNSUPPORTED_DTYPES = ("FLOAT16", "BFLOAT16", "FLOAT8", "FLOAT4", "INT4", "UINT4", "INT2", "UINT2", "UINT16",
                      "UINT32", "UINT64", "STRING", "E8M0", "float16", "bfloat16", "uint16", "uint32", "uint64",
                      "fp16", "bf16")
EXCLUDED = {  # name pattern: why nbops.onnx refuses the model at load time
    "|".join(UNSUPPORTED_DTYPES): "float16, bfloat16, 8/4/2-bit, unsigned 16-64-bit and string tensors",
    "test_(averagepool|maxpool|convtranspose)_3d": "3-D convolution and pooling (nbops has 1-D and 2-D kernels)",
    "test_averagepool_2d_dilations": "AveragePool with dilations (nbops.avg_pool2d has none)",
    "training_mode|test_training_dropout": "training mode (BatchNormalization's running statistics, Dropout)",
    "test_maxpool_2d_uint8": "MaxPool on uint8 (nbops pools float32/float64)",
    "test_maxpool_with_argmax": "MaxPool's Indices output",
    "test_(edge|reflect|wrap)_pad": "Pad modes other than constant",
    "test_identity_(sequence|opt)": "sequence and optional types",
}
CUDA_CASES = ("test_relu", "test_add_bcast", "test_basic_conv_with_padding", "test_maxpool_1d_default",
              "test_averagepool_1d_default", "test_gemm_all_attributes", "test_matmul_3d", "test_softmax_axis_1",
              "test_layer_normalization_3d_axis1_epsilon", "test_batchnorm_example",
              "test_reduce_sum_keepdims_example", "test_gather_0", "test_slice", "test_concat_2d_axis_0",
              "test_reshape_negative_dim", "test_transpose_default", "test_constant_pad", "test_cast_FLOAT_to_DOUBLE",
              "test_where_example", "test_clip", "test_argmax_keepdims_example", "test_convtranspose",
              "test_globalaveragepool", "test_split_equal_parts_1d_opset18", "test_expand_dim_changed",
              "test_instancenorm_example", "test_group_normalization_example", "test_shape",
              "test_unsqueeze_axis_0", "test_flatten_axis1")


def claimed_node_tests():
    """{test name: set of op types} of every node test whose graph uses claimed operators only."""
    out = {}
    for case in load_model_tests(kind="node"):
        ops = {n.op_type for n in case.model.graph.node}
        if ops <= CLAIMED:
            out[case.name] = ops
    return out


def excluded(name):
    return any(re.search(p, name) for p in EXCLUDED)


def _suite(names, device, mark=None):
    """A unittest.TestCase class holding onnx's generated test functions for ``names`` on ``device``.

    Built from the BackendTest's item table rather than its ``test_cases`` property, which keeps every test it was
    not asked for as a unittest skip (some 3400 per run)."""
    items = onnx.backend.test.BackendTest(NbopsBackend, __name__)._test_items["NodeModel"]
    cls = type(f"TestOnnxNode{device.title()}", (unittest.TestCase,),
               {f"{n}_{device}": items[f"{n}_{device}"].func for n in names})
    if mark is not None:
        cls.pytestmark = [mark]
    return cls


NODE_TESTS = claimed_node_tests()
INCLUDED = sorted(n for n in NODE_TESTS if not excluded(n))
assert set(CUDA_CASES) <= set(INCLUDED), sorted(set(CUDA_CASES) - set(INCLUDED))

TestOnnxNodeCpu = _suite(INCLUDED, "cpu")
TestOnnxNodeCuda = _suite(CUDA_CASES, "cuda", pytest.mark.cuda)


def test_every_claimed_operator_has_conformance_tests():
    covered = set().union(*(NODE_TESTS[n] for n in INCLUDED))
    assert covered == CLAIMED, sorted(CLAIMED - covered)


def test_excluded_node_tests_fail_at_load():
    """Every excluded test is one nbops.onnx refuses at load time (none is excluded while it would pass)."""
    cases = {c.name: c for c in load_model_tests(kind="node")}
    names = sorted(n for n in NODE_TESTS if excluded(n))
    assert names
    for name in names:
        with pytest.raises(nbops.onnx.UnsupportedModelError):
            nbops.onnx.load(cases[name].model)
