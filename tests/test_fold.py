"""Constant folding runs the constant subgraph in onnxruntime: weights built by ops whose
hand-written or reference-evaluator semantics were wrong fold to what onnxruntime computes.

Each case builds a weight (or a shape) from constants, feeds it to a crossbar MatMul, and checks
the imported matrix op's weight against onnxruntime's value of that tensor on the original model.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))

import onnx_builders as ob  # noqa: E402

from imccompile.errors import ModelImportError  # noqa: E402
from imccompile.frontend import import_model  # noqa: E402


def _weight_model(nodes, inits, k: int, n: int, opset: int = ob.OPSET):
    """x (2, k) @ W (k, n), W the output 'W' of `nodes` on constant `inits`."""
    nodes = list(nodes) + [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")]
    return ob.model(nodes, [ob.vi("x", (2, k))], [ob.vi("y", (2, n))], inits, opset=opset)


def _check_weight(m, k: int, n: int) -> None:
    g = import_model(m)
    assert [type(o).__name__ for o in g.ops] == ["MatrixOp"]
    (w_ref,) = ob.run(ob.with_extra_output(m, "W"), {"x": np.zeros((2, k), np.float32)}, ["W"])
    assert g.matrix_ops[0].weight.shape == (k, n)
    np.testing.assert_array_equal(g.matrix_ops[0].weight, w_ref)


def test_gather_elements_over_more_than_64_entries() -> None:
    """onnx's reference GatherElements fails past 64 entries along the axis (np.choose); the
    HF BertEmbeddings token-type buffer is gathered this way (issue 15)."""
    rng = np.random.default_rng(0)
    table = rng.standard_normal((8, 100)).astype(np.float32)
    idx = rng.integers(0, 100, (8, 70)).astype(np.int64)
    nodes = [helper.make_node("GatherElements", ["T", "I"], ["W"], axis=1)]
    _check_weight(_weight_model(nodes, [ob.init("T", table), ob.init("I", idx)], 8, 70), 8, 70)


def test_expand_with_where_built_shape() -> None:
    """torch's expand(-1): Where(Equal(shape, -1), ones, shape) then Expand."""
    rng = np.random.default_rng(1)
    row = rng.standard_normal((1, 6)).astype(np.float32)
    nodes = [
        helper.make_node("ConstantOfShape", ["two"], ["ones"],
                         value=helper.make_tensor("v", TensorProto.INT64, [1], [1])),
        helper.make_node("Mul", ["ones", "m1"], ["neg"]),
        helper.make_node("Equal", ["req", "neg"], ["eq"]),
        helper.make_node("Where", ["eq", "ones", "req"], ["shape"]),
        helper.make_node("Expand", ["R", "shape"], ["E"]),  # (1, 6) -> (4, 6)
        helper.make_node("Transpose", ["E"], ["W"], perm=[1, 0]),
    ]
    inits = [ob.init("two", np.array([2], np.int64)), ob.init("m1", np.array(-1, np.int64)),
             ob.init("req", np.array([4, -1], np.int64)), ob.init("R", row)]
    _check_weight(_weight_model(nodes, inits, 6, 4), 6, 4)


def test_dequantize_blockwise_and_cast_chain() -> None:
    rng = np.random.default_rng(2)
    q = rng.integers(-8, 8, (8, 4)).astype(np.int8)
    scale = (0.01 + rng.random((2, 4))).astype(np.float32)
    nodes = [helper.make_node("DequantizeLinear", ["Q", "S"], ["D"], axis=0, block_size=4),
             helper.make_node("Cast", ["D"], ["D16"], to=TensorProto.FLOAT16),
             helper.make_node("Cast", ["D16"], ["W"], to=TensorProto.FLOAT)]
    m = _weight_model(nodes, [ob.init("Q", q), ob.init("S", scale)], 8, 4, opset=21)
    _check_weight(m, 8, 4)


def test_tied_weight_identity_is_not_copied() -> None:
    rng = np.random.default_rng(3)
    w = rng.standard_normal((5, 3)).astype(np.float32)
    nodes = [helper.make_node("Identity", ["W0"], ["W1"]), helper.make_node("Identity", ["W1"], ["W"])]
    _check_weight(_weight_model(nodes, [ob.init("W0", w)], 5, 3), 5, 3)


def test_unfoldable_constant_node_is_named() -> None:
    """A constant node that neither onnxruntime nor the reference evaluator can run."""
    nodes = [helper.make_node("Reshape", ["R", "bad"], ["W"], name="bad_reshape")]
    inits = [ob.init("R", np.ones((2, 3), np.float32)), ob.init("bad", np.array([4, 4], np.int64))]
    m = ob.model(nodes + [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")],
                 [ob.vi("x", (2, 4))], [ob.vi("y", None)], inits, check=False)
    with pytest.raises(ModelImportError, match=r"'bad_reshape' \(Reshape\)"):
        import_model(m)
