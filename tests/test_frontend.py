"""The ONNX frontend on small onnx.helper-built models.

* Matrix-op geometry (K, N, groups, vectors, MACs, weights) is checked against numbers computed
  by hand in this file (output sizes from the conv formulas, never from the code under test).
* Weight folding, BatchNorm folding and quantized formats are checked numerically: the original
  model runs in onnxruntime, and so does a one-op reference model rebuilt here from the IR op's
  weight and bias (`onnx_builders.reference_*` undo the (K, N) layout by hand), on the same
  random input; relative error (L2 norm) <= 1e-5.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))

import onnx_builders as ob  # noqa: E402

from imccompile.errors import ModelImportError, UnsupportedOpError  # noqa: E402
from imccompile.frontend import import_model  # noqa: E402
from imccompile.ir import DigitalOp, Graph, MatrixOp  # noqa: E402

RTOL = 1e-5


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _only_matrix(graph: Graph) -> MatrixOp:
    mats = graph.matrix_ops
    assert len(mats) == 1, [(o.name, type(o).__name__) for o in graph.ops]
    return mats[0]


def _op_types(graph: Graph) -> list[str]:
    return [f"matrix.{o.kind}" if isinstance(o, MatrixOp) else o.op_type for o in graph.ops]


def assert_close(got: np.ndarray, ref: np.ndarray, rtol: float = RTOL) -> None:
    """Shape and dtype first, then relative L2 error."""
    assert got.shape == ref.shape, (got.shape, ref.shape)
    assert got.dtype == ref.dtype, (got.dtype, ref.dtype)
    err = float(np.linalg.norm((got.astype(np.float64) - ref.astype(np.float64)).ravel()))
    scale = float(np.linalg.norm(ref.astype(np.float64).ravel()))
    assert scale > 0
    assert err <= rtol * scale, f"relative error {err / scale:.3g} > {rtol}"


def assert_geometry(op: MatrixOp, *, kind: str, K: int, N: int, groups: int, vectors: int,
                    macs: int, weights: int) -> None:
    got = dict(kind=op.kind, K=op.rows, N=op.cols, groups=op.groups, vectors=op.vectors,
               macs=op.macs, weights=op.weights, shape=tuple(op.weight.shape))
    want = dict(kind=kind, K=K, N=N, groups=groups, vectors=vectors, macs=macs, weights=weights,
                shape=(K, N))
    assert got == want


# ---------------------------------------------------------------------------------------------
# Conv geometry: every number below is computed by hand.
#   out = floor((in + pad_total - dil*(k-1) - 1) / stride) + 1;  SAME_UPPER: out = ceil(in/stride)
# ---------------------------------------------------------------------------------------------
CONV_CASES = {
    # x (2,3,10,10), w (8,3,3,3), pad 1: out 10x10; K=3*9=27, N=8, vectors=2*100
    "groups1": dict(x=(2, 3, 10, 10), w=(8, 3, 3, 3), attrs=dict(pads=[1, 1, 1, 1]), bias=True,
                    y=(2, 8, 10, 10), K=27, N=8, groups=1, vectors=200, macs=43200, weights=216),
    # x (1,8,6,6), w (12,2,3,3), group 4: out 4x4; K=(8/4)*9=18, N=12
    "groups4": dict(x=(1, 8, 6, 6), w=(12, 2, 3, 3), attrs=dict(group=4), bias=False,
                    y=(1, 12, 4, 4), K=18, N=12, groups=4, vectors=16, macs=3456, weights=216),
    # depthwise x (1,6,7,7), w (6,1,3,3), group 6, pad 1: out 7x7; K=9, N=6
    "depthwise": dict(x=(1, 6, 7, 7), w=(6, 1, 3, 3), attrs=dict(group=6, pads=[1, 1, 1, 1]),
                      bias=True, y=(1, 6, 7, 7), K=9, N=6, groups=6, vectors=49, macs=2646,
                      weights=54),
    # stride 2: x (1,3,9,9), w (4,3,3,3): out floor((9-3)/2)+1 = 4
    "stride2": dict(x=(1, 3, 9, 9), w=(4, 3, 3, 3), attrs=dict(strides=[2, 2]), bias=False,
                    y=(1, 4, 4, 4), K=27, N=4, groups=1, vectors=16, macs=1728, weights=108),
    # dilation 2: x (1,2,10,10), w (5,2,3,3): effective kernel 5, out 10-5+1 = 6
    "dilation2": dict(x=(1, 2, 10, 10), w=(5, 2, 3, 3), attrs=dict(dilations=[2, 2]), bias=True,
                      y=(1, 5, 6, 6), K=18, N=5, groups=1, vectors=36, macs=3240, weights=90),
    # SAME_UPPER, stride 2: x (1,3,11,13): out ceil(11/2)=6, ceil(13/2)=7 -> 42 positions
    "same_upper": dict(x=(1, 3, 11, 13), w=(4, 3, 3, 3),
                       attrs=dict(strides=[2, 2], auto_pad="SAME_UPPER"), bias=True,
                       y=(1, 4, 6, 7), K=27, N=4, groups=1, vectors=42, macs=4536, weights=108),
    # SAME_UPPER, stride 1, even kernel (asymmetric padding): out = in
    "same_upper_even_kernel": dict(x=(1, 2, 5, 6), w=(3, 2, 2, 2),
                                   attrs=dict(auto_pad="SAME_UPPER"), bias=False,
                                   y=(1, 3, 5, 6), K=8, N=3, groups=1, vectors=30, macs=720,
                                   weights=24),
    # 1-D: x (2,4,20), w (6,4,5): out 16; K=4*5=20, vectors=2*16
    "conv1d": dict(x=(2, 4, 20), w=(6, 4, 5), attrs={}, bias=True,
                   y=(2, 6, 16), K=20, N=6, groups=1, vectors=32, macs=3840, weights=120),
}


@pytest.mark.parametrize("case", list(CONV_CASES), ids=list(CONV_CASES))
def test_conv_geometry_and_numerics(case: str) -> None:
    c = CONV_CASES[case]
    rng = _rng(1)
    w = ob.rand(rng, *c["w"])
    b = ob.rand(rng, c["w"][0]) if c["bias"] else None
    m = ob.conv_model(c["x"], w, b, **c["attrs"])
    op = _only_matrix(import_model(m))
    assert_geometry(op, kind="conv", K=c["K"], N=c["N"], groups=c["groups"],
                    vectors=c["vectors"], macs=c["macs"], weights=c["weights"])
    # the hand-computed output shape is also what onnxruntime produces
    x = ob.rand(rng, *c["x"])
    (y,) = ob.run(m, {"x": x})
    assert y.shape == c["y"]
    # and the IR weight, put back into ONNX layout by hand, computes the same function
    if b is None:
        assert op.bias is None
    ref = ob.reference_conv(c["x"], op.weight, op.bias, cout=c["w"][0], cin=c["x"][1],
                            kernel=c["w"][2:], **c["attrs"])
    (y_ref,) = ob.run(ref, {"x": x})
    assert_close(y_ref, y)


def test_conv_weight_layout_is_row_per_input_feature() -> None:
    """W[(ci, kh, kw), co] == w[co, ci, kh, kw]: checked element by element."""
    w = np.arange(4 * 3 * 2 * 2, dtype=np.float32).reshape(4, 3, 2, 2)
    op = _only_matrix(import_model(ob.conv_model((1, 3, 5, 5), w)))
    for co in range(4):
        for ci in range(3):
            for i in range(2):
                for j in range(2):
                    assert op.weight[ci * 4 + i * 2 + j, co] == w[co, ci, i, j]


# ---------------------------------------------------------------------------------------------
# ConvTranspose (scatter form: K = Cin/g, N = Cout*kh*kw, vectors = batch * input positions)
# ---------------------------------------------------------------------------------------------
CONVT_CASES = {
    # x (1,4,5,5), w (4,3,3,3), stride 2: y = (5-1)*2+3 = 11; K=4, N=3*9=27, vectors=25
    "groups1": dict(x=(1, 4, 5, 5), w=(4, 3, 3, 3), attrs=dict(strides=[2, 2]), bias=True,
                    y=(1, 3, 11, 11), cout=3, K=4, N=27, groups=1, vectors=25, macs=2700,
                    weights=108),
    # x (1,4,5,5), w (4,3,2,2), group 2, stride 2: Cout = 3*2 = 6, y = 4*2+2 = 10;
    # K = 4/2 = 2, N = 6*4 = 24; true MACs = Cin*Cout/g*k*k*25 = 4*3*4*25 = 1200
    "groups2": dict(x=(1, 4, 5, 5), w=(4, 3, 2, 2), attrs=dict(strides=[2, 2], group=2), bias=True,
                    y=(1, 6, 10, 10), cout=6, K=2, N=24, groups=2, vectors=25, macs=1200,
                    weights=48),
    # batch 2, no bias, padding: vectors = 2*4*4
    "batch2_pads": dict(x=(2, 2, 4, 4), w=(2, 5, 3, 3),
                        attrs=dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]),
                        bias=False, y=(2, 5, 8, 8), cout=5, K=2, N=45, groups=1, vectors=32,
                        macs=2880, weights=90),
}


@pytest.mark.parametrize("case", list(CONVT_CASES), ids=list(CONVT_CASES))
def test_conv_transpose_geometry_and_numerics(case: str) -> None:
    c = CONVT_CASES[case]
    rng = _rng(2)
    w = ob.rand(rng, *c["w"])
    b = ob.rand(rng, c["cout"]) if c["bias"] else None
    m = ob.conv_transpose_model(c["x"], w, b, **c["attrs"])
    op = _only_matrix(import_model(m))
    assert_geometry(op, kind="conv_transpose", K=c["K"], N=c["N"], groups=c["groups"],
                    vectors=c["vectors"], macs=c["macs"], weights=c["weights"])
    x = ob.rand(rng, *c["x"])
    (y,) = ob.run(m, {"x": x})
    assert y.shape == c["y"]
    ref = ob.reference_conv_transpose(c["x"], op.weight, op.bias, cout=c["cout"],
                                      kernel=c["w"][2:], **c["attrs"])
    (y_ref,) = ob.run(ref, {"x": x})
    assert_close(y_ref, y)


# ---------------------------------------------------------------------------------------------
# Gemm / MatMul
# ---------------------------------------------------------------------------------------------
def test_gemm_transb_alpha_beta() -> None:
    rng = _rng(3)
    B = ob.rand(rng, 4, 6)  # (N, K) with transB=1
    C = ob.rand(rng, 4)
    m = ob.gemm_model((3, 6), B, C, transB=1, alpha=0.5, beta=2.0)
    op = _only_matrix(import_model(m))
    assert_geometry(op, kind="gemm", K=6, N=4, groups=1, vectors=3, macs=72, weights=24)
    np.testing.assert_allclose(op.weight, 0.5 * B.T, rtol=1e-7, atol=0)
    assert op.bias is not None
    np.testing.assert_allclose(op.bias, 2.0 * C, rtol=1e-7, atol=0)
    x = ob.rand(rng, 3, 6)
    (y,) = ob.run(m, {"a": x})
    (y_ref,) = ob.run(ob.reference_matmul((3, 6), op.weight, op.bias), {"x": x})
    assert_close(y_ref, y)


def test_gemm_without_bias_transb0() -> None:
    rng = _rng(4)
    B = ob.rand(rng, 5, 7)
    op = _only_matrix(import_model(ob.gemm_model((2, 5), B)))
    assert_geometry(op, kind="gemm", K=5, N=7, groups=1, vectors=2, macs=70, weights=35)
    assert op.bias is None
    np.testing.assert_array_equal(op.weight, B)


def test_matmul_constant_right_3d_activation() -> None:
    rng = _rng(5)
    W = ob.rand(rng, 8, 6)
    m = ob.matmul_right_model((2, 5, 8), W)
    op = _only_matrix(import_model(m))
    # vectors = batch * seq = 2 * 5
    assert_geometry(op, kind="matmul", K=8, N=6, groups=1, vectors=10, macs=480, weights=48)
    np.testing.assert_array_equal(op.weight, W)
    x = ob.rand(rng, 2, 5, 8)
    (y,) = ob.run(m, {"x": x})
    (y_ref,) = ob.run(ob.reference_matmul((2, 5, 8), op.weight, op.bias), {"x": x})
    assert_close(y_ref, y)


def test_matmul_constant_left_adjacency() -> None:
    """y = A @ X with constant A (5, 7), activation X (7, 3): W = A^T (7, 5), vectors = 3."""
    rng = _rng(6)
    A = (rng.random((5, 7)) < 0.4).astype(np.float32) * ob.rand(rng, 5, 7)
    m = ob.matmul_left_model(A, (7, 3))
    g = import_model(m)
    op = _only_matrix(g)
    assert_geometry(op, kind="matmul_left", K=7, N=5, groups=1, vectors=3, macs=105, weights=35)
    np.testing.assert_array_equal(op.weight, A.T)
    assert op.inputs == ("x",)
    x = ob.rand(rng, 7, 3)
    (y,) = ob.run(m, {"x": x})
    (y_ref,) = ob.run(ob.reference_matmul_left((7, 3), op.weight), {"x": x})
    assert_close(y_ref, y)


def test_batched_matmul_constant_weight_is_groups() -> None:
    """x (3,5,4) @ W (3,4,6): groups=3, K=4, N=3*6=18, vectors per group = 5."""
    rng = _rng(7)
    W = ob.rand(rng, 3, 4, 6)
    m = ob.matmul_right_model((3, 5, 4), W)
    op = _only_matrix(import_model(m))
    # true MACs: 3 * 5 * 4 * 6 = 360
    assert_geometry(op, kind="matmul", K=4, N=18, groups=3, vectors=5, macs=360, weights=72)
    for b in range(3):
        np.testing.assert_array_equal(op.weight[:, b * 6:(b + 1) * 6], W[b])
    x = ob.rand(rng, 3, 5, 4)
    (y,) = ob.run(m, {"x": x})
    (y_ref,) = ob.run(ob.reference_matmul((3, 5, 4), op.weight, op.bias, groups=op.groups),
                      {"x": x})
    assert_close(y_ref, y)


def test_gemm_trans_a() -> None:
    """Gemm(transA=1): A is (K, M); vectors = M = A's second dim."""
    rng = _rng(8)
    B, C = ob.rand(rng, 6, 4), ob.rand(rng, 1, 4)
    m = ob.gemm_model((6, 3), B, C, transA=1)
    op = _only_matrix(import_model(m))
    assert_geometry(op, kind="gemm", K=6, N=4, groups=1, vectors=3, macs=72, weights=24)
    assert op.attrs["trans_input"] is True
    x = ob.rand(rng, 6, 3)
    (y,) = ob.run(m, {"a": x})
    (y_ref,) = ob.run(ob.reference_matmul((3, 6), op.weight, op.bias),
                      {"x": np.ascontiguousarray(x.T)})
    assert_close(y_ref, y)


def test_gemm_full_c_is_a_digital_add() -> None:
    """A (M, N) C is not a bias: the crossbar product is followed by a digital Add."""
    rng = _rng(9)
    B, C = ob.rand(rng, 6, 4), ob.rand(rng, 3, 4)
    m = ob.gemm_model((3, 6), B, C)
    g = import_model(m)
    assert _op_types(g) == ["matrix.gemm", "Add"]
    op, add = g.ops
    assert isinstance(op, MatrixOp) and isinstance(add, DigitalOp)
    assert op.bias is None and add.inputs[0] == op.outputs[0] and add.outputs == ("y",)
    np.testing.assert_array_equal(add.constants[add.inputs[1]], C)
    x = ob.rand(rng, 3, 6)
    (y,) = ob.run(m, {"a": x})
    (h,) = ob.run(ob.reference_matmul((3, 6), op.weight, None), {"x": x})
    assert_close(h + C, y)


@pytest.mark.parametrize("kind", ["gemm", "matmul", "matmul_left"])
def test_inner_dimension_mismatch_is_an_import_error(kind: str) -> None:
    """Shape inference is not strict, so the converter itself must refuse K mismatches."""
    rng = _rng(9)
    if kind == "gemm":
        node = helper.make_node("Gemm", ["x", "W"], ["y"], name="bad")
        x_shape, w, y_shape = (2, 3), ob.rand(rng, 5, 4), (2, 4)
    elif kind == "matmul":
        node = helper.make_node("MatMul", ["x", "W"], ["y"], name="bad")
        x_shape, w, y_shape = (2, 3), ob.rand(rng, 5, 4), (2, 4)
    else:
        node = helper.make_node("MatMul", ["W", "x"], ["y"], name="bad")
        x_shape, w, y_shape = (3, 2), ob.rand(rng, 4, 5), (4, 2)
    m = ob.model([node], [ob.vi("x", x_shape)], [ob.vi("y", y_shape)], [ob.init("W", w)])
    with pytest.raises(ModelImportError, match=r"node 'bad' \((Gemm|MatMul)\).*(match|multiplied)"):
        import_model(m)


def test_attention_matmul_of_two_activations_is_digital() -> None:
    g = import_model(ob.attention_model((2, 4, 8), (2, 8, 4)))
    assert g.matrix_ops == ()
    (op,) = g.ops
    assert isinstance(op, DigitalOp)
    assert op.op_type == "MatMul" and op.attention is True
    # 2 * (2*4*4 outputs) * 8 (contracted) arithmetic ops
    assert op.ops == 2 * 32 * 8


# ---------------------------------------------------------------------------------------------
# Weight-subgraph folding, checked numerically against onnxruntime on the original model
# ---------------------------------------------------------------------------------------------
def test_fold_constant_node_weight() -> None:
    rng = _rng(10)
    W = ob.rand(rng, 8, 5)
    nodes = [
        helper.make_node("Constant", [], ["Wc"], value=ob.init("Wc", W)),
        helper.make_node("MatMul", ["x", "Wc"], ["y"], name="mm"),
    ]
    m = ob.model(nodes, [ob.vi("x", (4, 8))], [ob.vi("y", None)])
    g = import_model(m)
    assert _op_types(g) == ["matrix.matmul"]
    op = g.matrix_ops[0]
    assert_geometry(op, kind="matmul", K=8, N=5, groups=1, vectors=4, macs=160, weights=40)
    x = ob.rand(rng, 4, 8)
    (y,) = ob.run(m, {"x": x})
    (y_ref,) = ob.run(ob.reference_matmul((4, 8), op.weight, op.bias), {"x": x})
    assert_close(y_ref, y)


def test_fold_transpose_of_initializer() -> None:
    rng = _rng(11)
    Wt = ob.rand(rng, 5, 8)  # stored (N, K), transposed in the graph
    nodes = [
        helper.make_node("Transpose", ["Wt"], ["W"], perm=[1, 0]),
        helper.make_node("MatMul", ["x", "W"], ["y"], name="mm"),
    ]
    m = ob.model(nodes, [ob.vi("x", (2, 3, 8))], [ob.vi("y", None)], [ob.init("Wt", Wt)])
    g = import_model(m)
    assert _op_types(g) == ["matrix.matmul"]
    op = g.matrix_ops[0]
    assert_geometry(op, kind="matmul", K=8, N=5, groups=1, vectors=6, macs=240, weights=40)
    x = ob.rand(rng, 2, 3, 8)
    (y,) = ob.run(m, {"x": x})
    (y_ref,) = ob.run(ob.reference_matmul((2, 3, 8), op.weight, op.bias), {"x": x})
    assert_close(y_ref, y)


def test_fold_qdq_conv_per_channel() -> None:
    """QDQ: Q of the activation stays digital, the product runs on its integer codes (Cast,
    Sub of the zero point); DQ(int8 weight, per-channel scale, zp) puts the integer weight
    minus its zero point on the crossbar (8 bits) and the scales become a digital Mul."""
    from imccompile.emit import emit

    rng = _rng(12)
    wq = rng.integers(-100, 100, size=(4, 3, 3, 3)).astype(np.int8)
    ws = rng.uniform(0.005, 0.02, size=4).astype(np.float32)
    wzp = np.array([0, 3, -2, 1], np.int8)
    b = ob.rand(rng, 4)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xzp"], ["xq"], name="q_x"),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xzp"], ["xdq"], name="dq_x"),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wzp"], ["w"], name="dq_w", axis=0),
        helper.make_node("Conv", ["xdq", "w", "b"], ["y"], name="conv", pads=[1, 1, 1, 1]),
    ]
    inits = [ob.init("xs", np.float32(0.02)), ob.init("xzp", np.uint8(128)), ob.init("wq", wq),
             ob.init("ws", ws), ob.init("wzp", wzp), ob.init("b", b)]
    m = ob.model(nodes, [ob.vi("x", (1, 3, 8, 8))], [ob.vi("y", None)], inits)
    g = import_model(m)
    assert _op_types(g) == ["QuantizeLinear", "Cast", "Sub", "matrix.conv", "Mul"]
    op = g.matrix_ops[0]
    assert_geometry(op, kind="conv", K=27, N=4, groups=1, vectors=64, macs=6912, weights=108)
    w_hand = wq.astype(np.float32) - wzp.astype(np.float32)[:, None, None, None]
    np.testing.assert_array_equal(op.weight, w_hand.reshape(4, 27).T)
    assert op.compression.weight_bits == 8  # |wq - wzp| <= 102: 7 magnitude bits + sign
    # numeric: the whole imported graph against onnxruntime on the original model
    x = ob.rand(rng, 1, 3, 8, 8)
    (y,) = ob.run(m, {"x": x})
    (ours,) = ob.run(emit(g)[0], {"x": x})
    assert_close(ours, y)


def test_fold_cast_mul_dequantization() -> None:
    rng = _rng(13)
    wq = rng.integers(-127, 128, size=(6, 4)).astype(np.int8)
    scale = rng.uniform(0.01, 0.05, size=4).astype(np.float32)  # per output column
    nodes = [
        helper.make_node("Cast", ["wq"], ["wf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["wf", "scale"], ["w"]),
        helper.make_node("MatMul", ["x", "w"], ["y"], name="mm"),
    ]
    m = ob.model(nodes, [ob.vi("x", (3, 6))], [ob.vi("y", None)],
                 [ob.init("wq", wq), ob.init("scale", scale)])
    g = import_model(m)
    assert _op_types(g) == ["matrix.matmul"]
    op = g.matrix_ops[0]
    assert_geometry(op, kind="matmul", K=6, N=4, groups=1, vectors=3, macs=72, weights=24)
    np.testing.assert_allclose(op.weight, wq.astype(np.float32) * scale, rtol=1e-7, atol=0)
    x = ob.rand(rng, 3, 6)
    (y,) = ob.run(m, {"x": x})
    (y_ref,) = ob.run(ob.reference_matmul((3, 6), op.weight, op.bias), {"x": x})
    assert_close(y_ref, y)


def test_fold_reshape_unsqueeze_chain() -> None:
    """flat (36,) -Reshape-> (4,3,3) -Unsqueeze(2)-> (4,3,1,3) conv weight (kernel 1x3)."""
    rng = _rng(14)
    flat = ob.rand(rng, 36)
    nodes = [
        helper.make_node("Reshape", ["flat", "shp"], ["w3"]),
        helper.make_node("Unsqueeze", ["w3", "ax"], ["w"]),
        helper.make_node("Conv", ["x", "w"], ["y"], name="conv"),
    ]
    inits = [ob.init("flat", flat), ob.init("shp", np.array([4, 3, 3], np.int64)),
             ob.init("ax", np.array([2], np.int64))]
    m = ob.model(nodes, [ob.vi("x", (1, 3, 6, 6))], [ob.vi("y", None)], inits)
    g = import_model(m)
    assert _op_types(g) == ["matrix.conv"]
    op = g.matrix_ops[0]
    # out 6x(6-3+1) = 6x4 = 24 positions; K = 3*1*3 = 9
    assert_geometry(op, kind="conv", K=9, N=4, groups=1, vectors=24, macs=864, weights=36)
    x = ob.rand(rng, 1, 3, 6, 6)
    (y,) = ob.run(m, {"x": x})
    assert y.shape == (1, 4, 6, 4)
    (y_ref,) = ob.run(ob.reference_conv((1, 3, 6, 6), op.weight, op.bias, cout=4, cin=3,
                                        kernel=(1, 3)), {"x": x})
    assert_close(y_ref, y)


def test_fold_identity_weight_and_bias() -> None:
    rng = _rng(15)
    B, C = ob.rand(rng, 6, 5), ob.rand(rng, 5)
    nodes = [
        helper.make_node("Identity", ["B"], ["B1"]),
        helper.make_node("Identity", ["B1"], ["B2"]),
        helper.make_node("Identity", ["C"], ["C1"]),
        helper.make_node("Gemm", ["a", "B2", "C1"], ["y"], name="gemm"),
    ]
    m = ob.model(nodes, [ob.vi("a", (4, 6))], [ob.vi("y", None)],
                 [ob.init("B", B), ob.init("C", C)])
    g = import_model(m)
    assert _op_types(g) == ["matrix.gemm"]
    op = g.matrix_ops[0]
    assert_geometry(op, kind="gemm", K=6, N=5, groups=1, vectors=4, macs=120, weights=30)
    assert op.bias is not None
    x = ob.rand(rng, 4, 6)
    (y,) = ob.run(m, {"a": x})
    (y_ref,) = ob.run(ob.reference_matmul((4, 6), op.weight, op.bias), {"x": x})
    assert_close(y_ref, y)


def test_fold_bias_add_after_matmul() -> None:
    """MatMul + Add(const per column) becomes the matrix op's bias."""
    rng = _rng(16)
    W, b = ob.rand(rng, 8, 5), ob.rand(rng, 5)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
             helper.make_node("Add", ["h", "b"], ["y"], name="add")]
    m = ob.model(nodes, [ob.vi("x", (2, 3, 8))], [ob.vi("y", None)],
                 [ob.init("W", W), ob.init("b", b)])
    g = import_model(m)
    assert _op_types(g) == ["matrix.matmul"]
    op = g.matrix_ops[0]
    assert op.outputs == ("y",)
    x = ob.rand(rng, 2, 3, 8)
    (y,) = ob.run(m, {"x": x})
    (y_ref,) = ob.run(ob.reference_matmul((2, 3, 8), op.weight, op.bias), {"x": x})
    assert_close(y_ref, y)


@pytest.mark.parametrize("follow", ["Add", "BatchNormalization"])
def test_no_bias_or_bn_fusion_into_matmul_left(follow: str) -> None:
    """y = A @ X + b: b runs along X's columns (the vectors), not along W = A^T's columns, so it
    must stay digital even when the shapes happen to match (square A and X)."""
    rng = _rng(17)
    A = ob.rand(rng, 4, 4)
    if follow == "Add":
        tail = helper.make_node("Add", ["h", "b"], ["y"], name="tail")
        extra = [ob.init("b", ob.rand(rng, 4))]
    else:
        tail = helper.make_node("BatchNormalization", ["h", "bn_s", "bn_b", "bn_m", "bn_v"], ["y"],
                                name="tail")
        extra = _bn_inits(rng, 4)
    nodes = [helper.make_node("MatMul", ["A", "x"], ["h"], name="mm"), tail]
    m = ob.model(nodes, [ob.vi("x", (4, 4))], [ob.vi("y", None)], [ob.init("A", A)] + extra)
    g = import_model(m)
    assert _op_types(g) == ["matrix.matmul_left", follow]
    op = g.matrix_ops[0]
    assert op.bias is None
    x = ob.rand(rng, 4, 4)
    y, h = ob.run(ob.with_extra_output(m, "h"), {"x": x})
    (h_ref,) = ob.run(ob.reference_matmul_left((4, 4), op.weight), {"x": x})
    assert_close(h_ref, h)


def test_shape_of_small_constant_folds() -> None:
    """Shape(W) of a small initializer (no value info of its own) folds to a constant."""
    rng = _rng(18)
    W = ob.rand(rng, 4, 3)  # 12 elements
    nodes = [
        helper.make_node("Shape", ["W"], ["ws"], name="shape_w"),
        helper.make_node("Reshape", ["x", "ws"], ["xr"], name="reshape"),
        helper.make_node("MatMul", ["xr", "Wt"], ["y"], name="mm"),
    ]
    m = ob.model(nodes, [ob.vi("x", (12,))], [ob.vi("y", None)],
                 [ob.init("W", W), ob.init("Wt", ob.rand(rng, 3, 5))])
    g = import_model(m)
    assert _op_types(g) == ["Reshape", "matrix.matmul"]
    reshape = g.op("reshape")
    assert isinstance(reshape, DigitalOp)
    np.testing.assert_array_equal(reshape.constants["ws"], [4, 3])
    assert g.matrix_ops[0].vectors == 4


# ---------------------------------------------------------------------------------------------
# BatchNorm folding
# ---------------------------------------------------------------------------------------------
def _bn_inits(rng: np.random.Generator, c: int) -> list[onnx.TensorProto]:
    return [ob.init("bn_s", rng.uniform(0.5, 2.0, c).astype(np.float32)),
            ob.init("bn_b", ob.rand(rng, c)),
            ob.init("bn_m", ob.rand(rng, c)),
            # small variances so that epsilon matters (a wrong epsilon is caught)
            ob.init("bn_v", rng.uniform(0.001, 0.05, c).astype(np.float32))]


@pytest.mark.parametrize("group", [1, 2])
def test_batchnorm_folds_into_conv(group: int) -> None:
    rng = _rng(20 + group)
    w, b = ob.rand(rng, 6, 4 // group, 3, 3), ob.rand(rng, 6)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1],
                         group=group),
        helper.make_node("BatchNormalization", ["c", "bn_s", "bn_b", "bn_m", "bn_v"], ["y"],
                         name="bn", epsilon=1e-3),
    ]
    m = ob.model(nodes, [ob.vi("x", (2, 4, 6, 6))], [ob.vi("y", None)],
                 [ob.init("w", w), ob.init("b", b)] + _bn_inits(rng, 6))
    g = import_model(m)
    assert _op_types(g) == ["matrix.conv"]
    op = g.matrix_ops[0]
    assert "bn" in op.source and op.outputs == ("y",)
    assert_geometry(op, kind="conv", K=(4 // group) * 9, N=6, groups=group, vectors=72,
                    macs=72 * (4 // group) * 9 * 6, weights=(4 // group) * 9 * 6)
    x = ob.rand(rng, 2, 4, 6, 6)
    (y,) = ob.run(m, {"x": x})
    (y_ref,) = ob.run(ob.reference_conv((2, 4, 6, 6), op.weight, op.bias, cout=6, cin=4,
                                        kernel=(3, 3), pads=[1, 1, 1, 1], group=group), {"x": x})
    assert_close(y_ref, y)


def test_batchnorm_folds_into_conv_without_bias() -> None:
    rng = _rng(25)
    w = ob.rand(rng, 5, 3, 3, 3)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("BatchNormalization", ["c", "bn_s", "bn_b", "bn_m", "bn_v"], ["y"],
                         name="bn"),
    ]
    m = ob.model(nodes, [ob.vi("x", (1, 3, 7, 7))], [ob.vi("y", None)],
                 [ob.init("w", w)] + _bn_inits(rng, 5))
    g = import_model(m)
    assert _op_types(g) == ["matrix.conv"]
    op = g.matrix_ops[0]
    x = ob.rand(rng, 1, 3, 7, 7)
    (y,) = ob.run(m, {"x": x})
    (y_ref,) = ob.run(ob.reference_conv((1, 3, 7, 7), op.weight, op.bias, cout=5, cin=3,
                                        kernel=(3, 3)), {"x": x})
    assert_close(y_ref, y)


def test_batchnorm_folds_into_gemm() -> None:
    rng = _rng(26)
    B, C = ob.rand(rng, 6, 5), ob.rand(rng, 5)
    nodes = [
        helper.make_node("Gemm", ["a", "B", "C"], ["h"], name="gemm"),
        helper.make_node("BatchNormalization", ["h", "bn_s", "bn_b", "bn_m", "bn_v"], ["y"],
                         name="bn", epsilon=1e-4),
    ]
    m = ob.model(nodes, [ob.vi("a", (4, 6))], [ob.vi("y", None)],
                 [ob.init("B", B), ob.init("C", C)] + _bn_inits(rng, 5))
    g = import_model(m)
    assert _op_types(g) == ["matrix.gemm"]
    op = g.matrix_ops[0]
    assert "bn" in op.source
    assert_geometry(op, kind="gemm", K=6, N=5, groups=1, vectors=4, macs=120, weights=30)
    x = ob.rand(rng, 4, 6)
    (y,) = ob.run(m, {"a": x})
    (y_ref,) = ob.run(ob.reference_matmul((4, 6), op.weight, op.bias), {"x": x})
    assert_close(y_ref, y)


def test_batchnorm_folds_into_grouped_conv_transpose() -> None:
    rng = _rng(28)
    w, b = ob.rand(rng, 4, 3, 2, 2), ob.rand(rng, 6)
    attrs = dict(group=2, strides=[2, 2])
    nodes = [
        helper.make_node("ConvTranspose", ["x", "w", "b"], ["c"], name="convt", **attrs),
        helper.make_node("BatchNormalization", ["c", "bn_s", "bn_b", "bn_m", "bn_v"], ["y"],
                         name="bn"),
    ]
    m = ob.model(nodes, [ob.vi("x", (1, 4, 5, 5))], [ob.vi("y", None)],
                 [ob.init("w", w), ob.init("b", b)] + _bn_inits(rng, 6))
    g = import_model(m)
    assert _op_types(g) == ["matrix.conv_transpose"]
    op = g.matrix_ops[0]
    assert_geometry(op, kind="conv_transpose", K=2, N=24, groups=2, vectors=25, macs=1200,
                    weights=48)
    x = ob.rand(rng, 1, 4, 5, 5)
    (y,) = ob.run(m, {"x": x})
    (y_ref,) = ob.run(ob.reference_conv_transpose((1, 4, 5, 5), op.weight, op.bias, cout=6,
                                                  kernel=(2, 2), **attrs), {"x": x})
    assert_close(y_ref, y)


def test_batchnorm_not_folded_when_conv_output_is_shared() -> None:
    """The conv output also feeds a graph output: folding would change it, so BN stays."""
    rng = _rng(27)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("BatchNormalization", ["c", "bn_s", "bn_b", "bn_m", "bn_v"], ["y"],
                         name="bn"),
    ]
    m = ob.model(nodes, [ob.vi("x", (1, 2, 5, 5))], [ob.vi("y", None), ob.vi("c", None)],
                 [ob.init("w", ob.rand(rng, 3, 2, 3, 3))] + _bn_inits(rng, 3))
    g = import_model(m)
    assert _op_types(g) == ["matrix.conv", "BatchNormalization"]


# ---------------------------------------------------------------------------------------------
# Dynamic shapes
# ---------------------------------------------------------------------------------------------
def test_symbolic_batch_needs_input_shape() -> None:
    w = ob.rand(_rng(30), 4, 3, 3, 3)
    m = ob.conv_model(("N", 3, 8, 8), w)
    with pytest.raises(ModelImportError, match=r"input 'x'.*--input-shape x=1,3,8,8"):
        import_model(m)
    # out 6x6 = 36 positions per image
    v1 = _only_matrix(import_model(m, {"x": (1, 3, 8, 8)})).vectors
    v4 = _only_matrix(import_model(m, {"x": (4, 3, 8, 8)})).vectors
    assert (v1, v4) == (36, 144)


def test_symbolic_dims_matmul_vectors_scale() -> None:
    W = ob.rand(_rng(31), 16, 8)
    m = ob.matmul_right_model(("batch", "seq", 16), W)
    with pytest.raises(ModelImportError, match=r"'x'.*--input-shape"):
        import_model(m)
    for b, s in ((1, 1), (2, 7), (3, 5)):
        op = _only_matrix(import_model(m, {"x": (b, s, 16)}))
        assert (op.vectors, op.macs) == (b * s, b * s * 16 * 8)


def test_input_shape_errors() -> None:
    m = ob.conv_model(("N", 3, 8, 8), ob.rand(_rng(32), 4, 3, 3, 3))
    with pytest.raises(ModelImportError, match=r"'nope', which is not an input \(inputs: x\)"):
        import_model(m, {"nope": (1, 3, 8, 8)})
    with pytest.raises(ModelImportError, match=r"rank 4"):
        import_model(m, {"x": (1, 3, 8)})
    with pytest.raises(ModelImportError, match=r"dim 1 is fixed to 3.*got 5"):
        import_model(m, {"x": (1, 5, 8, 8)})


def test_graph_io_without_declared_shapes() -> None:
    """Inputs/outputs without a shape (onnxruntime accepts them): the input's dims come from
    input_shapes, the output's from shape inference."""
    rng = _rng(35)
    W = ob.rand(rng, 6, 4)
    m = ob.shapeless_io_model(W)
    with pytest.raises(ModelImportError, match=r"input 'x' has no shape; give it with "
                                               r"--input-shape x=D1,D2"):
        import_model(m)
    g = import_model(m, {"x": (3, 6)})
    op = _only_matrix(g)
    assert_geometry(op, kind="matmul", K=6, N=4, groups=1, vectors=3, macs=72, weights=24)
    assert g.tensors["y"].shape == (3, 4)
    x = ob.rand(rng, 3, 6)
    (y,) = ob.run(m, {"x": x})
    (y_ref,) = ob.run(ob.reference_matmul((3, 6), op.weight, op.bias), {"x": x})
    assert_close(y_ref, y)


def _attention_reshape_model(heads: int = 4, d: int = 16) -> onnx.ModelProto:
    """h = x @ W; h.reshape(Shape(h)[0], Shape(h)[1], heads, d/heads) as exporters write it."""
    rng = _rng(33)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"], name="proj"),
        helper.make_node("Shape", ["h"], ["hs"], name="shape"),
        helper.make_node("Gather", ["hs", "i0"], ["b"], name="gather_b", axis=0),
        helper.make_node("Gather", ["hs", "i1"], ["s"], name="gather_s", axis=0),
        helper.make_node("Unsqueeze", ["b", "ax0"], ["b1"], name="unsq_b"),
        helper.make_node("Unsqueeze", ["s", "ax0"], ["s1"], name="unsq_s"),
        helper.make_node("Concat", ["b1", "s1", "nh", "hd"], ["shp"], name="concat", axis=0),
        helper.make_node("Reshape", ["h", "shp"], ["r"], name="reshape"),
        helper.make_node("Transpose", ["r"], ["y"], name="transpose", perm=[0, 2, 1, 3]),
    ]
    inits = [ob.init("W", ob.rand(rng, d, d)), ob.init("i0", np.array(0, np.int64)),
             ob.init("i1", np.array(1, np.int64)), ob.init("ax0", np.array([0], np.int64)),
             ob.init("nh", np.array([heads], np.int64)),
             ob.init("hd", np.array([d // heads], np.int64))]
    return ob.model(nodes, [ob.vi("x", ("B", "S", d))], [ob.vi("y", None)], inits)


def test_dynamic_reshape_from_shape_gather_concat_folds() -> None:
    m = _attention_reshape_model()
    with pytest.raises(ModelImportError, match=r"'x'.*--input-shape"):
        import_model(m)
    g = import_model(m, {"x": (2, 3, 16)})
    assert _op_types(g) == ["matrix.matmul", "Reshape", "Transpose"]
    for op in g.ops:
        assert not (isinstance(op, DigitalOp) and op.op_type in
                    ("Shape", "Gather", "Unsqueeze", "Concat"))
    reshape = g.op("reshape")
    assert isinstance(reshape, DigitalOp)
    (shape_const,) = [v for k, v in reshape.constants.items()]
    np.testing.assert_array_equal(shape_const, [2, 3, 4, 4])
    assert g.tensors["y"].shape == (2, 4, 3, 4)
    assert g.matrix_ops[0].vectors == 6
    # the IR's folded reshape reproduces onnxruntime on the original model
    x = ob.rand(_rng(34), 2, 3, 16)
    (y,) = ob.run(m, {"x": x})
    h = x @ g.matrix_ops[0].weight
    assert_close(np.transpose(h.reshape(shape_const), (0, 2, 1, 3)), y)


# ---------------------------------------------------------------------------------------------
# Quantized operator formats: QLinearConv / QLinearMatMul
# ---------------------------------------------------------------------------------------------
def test_qlinear_conv() -> None:
    rng = _rng(40)
    wq = rng.integers(-60, 60, size=(4, 3, 3, 3)).astype(np.int8)
    ws = rng.uniform(0.01, 0.03, size=4).astype(np.float32)
    wzp = np.zeros(4, np.int8)  # onnxruntime requires a zero int8 weight zero point
    bq = rng.integers(-500, 500, size=4).astype(np.int32)
    m = ob.qlinear_conv_model((1, 3, 6, 6), wq, ws, wzp, bq, x_scale=0.05, x_zp=3,
                              pads=[1, 1, 1, 1])
    g = import_model(m)
    assert _op_types(g) == ["DequantizeLinear", "matrix.conv", "QuantizeLinear"]
    op = g.matrix_ops[0]
    assert_geometry(op, kind="conv", K=27, N=4, groups=1, vectors=36, macs=3888, weights=108)
    w_hand = (wq.astype(np.float32) - wzp.astype(np.float32)[:, None, None, None]) \
        * ws[:, None, None, None]
    np.testing.assert_allclose(op.weight, w_hand.reshape(4, 27).T, rtol=1e-6, atol=0)
    assert op.bias is not None
    np.testing.assert_allclose(op.bias, bq.astype(np.float32) * 0.05 * ws, rtol=1e-6)
    dq, q = g.digital_ops
    assert dq.outputs == op.inputs and q.inputs[0] == op.outputs[0]
    # numeric: dequantize x, float conv with the IR weight/bias, requantize == QLinearConv +-1
    x = rng.integers(0, 256, size=(1, 3, 6, 6)).astype(np.uint8)
    (y,) = ob.run(m, {"x": x})
    xf = ((x.astype(np.float32) - 3) * np.float32(0.05)).astype(np.float32)
    (yf,) = ob.run(ob.reference_conv((1, 3, 6, 6), op.weight, op.bias, cout=4, cin=3,
                                     kernel=(3, 3), pads=[1, 1, 1, 1]), {"x": xf})
    y_ref = np.clip(np.rint(yf / np.float32(0.2)) + 5, 0, 255)
    assert y.shape == y_ref.shape
    assert np.abs(y.astype(np.int32) - y_ref.astype(np.int32)).max() <= 1
    assert len(np.unique(y)) > 10  # not saturated: the comparison means something


def test_qlinear_conv_nonzero_weight_zero_point() -> None:
    """The IR weight is (w - zp) * scale per output channel (import only, no onnxruntime)."""
    rng = _rng(41)
    wq = rng.integers(-60, 60, size=(3, 2, 1, 1)).astype(np.int8)
    ws = np.array([0.5, 0.25, 0.125], np.float32)
    wzp = np.array([1, -2, 3], np.int8)
    g = import_model(ob.qlinear_conv_model((1, 2, 4, 4), wq, ws, wzp, None))
    op = g.matrix_ops[0]
    for co in range(3):
        for ci in range(2):
            assert op.weight[ci, co] == (float(wq[co, ci, 0, 0]) - float(wzp[co])) * float(ws[co])


def test_qlinear_matmul() -> None:
    rng = _rng(42)
    wq = rng.integers(-60, 60, size=(6, 4)).astype(np.int8)
    ws = np.float32(0.02)
    wzp = np.int8(2)
    m = ob.qlinear_matmul_model((2, 5, 6), wq, np.array(ws), np.array(wzp))
    g = import_model(m)
    assert _op_types(g) == ["DequantizeLinear", "matrix.matmul", "QuantizeLinear"]
    op = g.matrix_ops[0]
    assert_geometry(op, kind="matmul", K=6, N=4, groups=1, vectors=10, macs=240, weights=24)
    np.testing.assert_allclose(op.weight, (wq.astype(np.float32) - 2) * np.float32(0.02),
                               rtol=1e-6, atol=0)
    x = rng.integers(0, 256, size=(2, 5, 6)).astype(np.uint8)
    (y,) = ob.run(m, {"x": x})
    xf = ((x.astype(np.float32) - 3) * np.float32(0.05)).astype(np.float32)
    (yf,) = ob.run(ob.reference_matmul((2, 5, 6), op.weight, op.bias), {"x": xf})
    y_ref = np.clip(np.rint(yf / np.float32(0.2)) + 5, 0, 255)
    assert np.abs(y.astype(np.int32) - y_ref.astype(np.int32)).max() <= 1
    assert len(np.unique(y)) > 10


def test_qlinear_matmul_per_column_scale() -> None:
    rng = _rng(43)
    wq = rng.integers(-60, 60, size=(6, 4)).astype(np.int8)
    ws = np.array([0.5, 0.25, 0.125, 1.0], np.float32)
    wzp = np.array([0, 1, -1, 2], np.int8)
    op = import_model(ob.qlinear_matmul_model((3, 6), wq, ws, wzp)).matrix_ops[0]
    np.testing.assert_array_equal(op.weight, (wq.astype(np.float32) - wzp.astype(np.float32)) * ws)


def test_qlinear_matmul_batched_weight() -> None:
    """b (2, 6, 4): groups 2; per-column params (1-D (N,) per the ONNX spec, or (B, 1, N) as
    onnxruntime wants them) apply along b's last axis."""
    rng = _rng(44)
    wq = rng.integers(-60, 60, size=(2, 6, 4)).astype(np.int8)
    ws = rng.uniform(0.01, 0.03, size=4).astype(np.float32)
    wzp = np.array([0, 1, -1, 2], np.int8)
    op = import_model(ob.qlinear_matmul_model((2, 5, 6), wq, ws, wzp)).matrix_ops[0]
    assert_geometry(op, kind="matmul", K=6, N=8, groups=2, vectors=5, macs=240, weights=48)
    for b in range(2):
        np.testing.assert_allclose(op.weight[:, 4 * b:4 * (b + 1)],
                                   (wq[b].astype(np.float32) - wzp.astype(np.float32)) * ws,
                                   rtol=1e-6, atol=0)
    # onnxruntime's layout, checked numerically (+-1 LSB after requantization)
    ws3 = rng.uniform(0.01, 0.03, size=(2, 1, 4)).astype(np.float32)
    m = ob.qlinear_matmul_model((2, 5, 6), wq, ws3, np.zeros((2, 1, 4), np.int8))
    op = import_model(m).matrix_ops[0]
    x = rng.integers(0, 256, size=(2, 5, 6)).astype(np.uint8)
    (y,) = ob.run(m, {"x": x})
    xf = ((x.astype(np.float32) - 3) * np.float32(0.05)).astype(np.float32)
    (yf,) = ob.run(ob.reference_matmul((2, 5, 6), op.weight, None, groups=2), {"x": xf})
    y_ref = np.clip(np.rint(yf / np.float32(0.2)) + 5, 0, 255)
    assert np.abs(y.astype(np.int32) - y_ref.astype(np.int32)).max() <= 1
    assert len(np.unique(y)) > 10


# ---------------------------------------------------------------------------------------------
# Import errors raised by the library (the CLI side is in test_cli_import.py)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("build,error,pattern", [
    (ob.if_model, ModelImportError, r"node 'branch' is If: control flow"),
    (ob.loop_model, ModelImportError, r"node 'loop1' is Loop: control flow"),
    (ob.scan_model, ModelImportError, r"node 'scan1' is Scan: control flow"),
    (lambda: ob.unknown_op_model("FooBar", "mystery"), UnsupportedOpError,
     r"node 'mystery' has op type 'FooBar'"),
    (lambda: ob.unknown_op_model("X", "custom1", domain="com.example"), UnsupportedOpError,
     r"node 'custom1' is com\.example::X, a custom-domain op"),
], ids=["if", "loop", "scan", "unknown_op", "custom_domain"])
def test_refused_models(build, error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        import_model(build())


def test_gemm_with_constant_a_is_refused() -> None:
    nodes = [helper.make_node("Gemm", ["A", "x"], ["y"], name="gemm_ca")]
    m = ob.model(nodes, [ob.vi("x", (4, 3))], [ob.vi("y", None)],
                 [ob.init("A", ob.rand(_rng(51), 2, 4))])
    with pytest.raises(UnsupportedOpError, match=r"'gemm_ca' is a Gemm with a constant first"):
        import_model(m)


def test_qlinear_matmul_of_two_activations_is_refused() -> None:
    m = ob.qlinear_matmul_model((2, 6), np.zeros((6, 4), np.int8), np.array(0.1, np.float32),
                                np.array(0, np.int8))
    m.graph.initializer.remove(next(i for i in m.graph.initializer if i.name == "wq"))
    m.graph.input.append(ob.vi("wq", (6, 4), TensorProto.INT8))
    with pytest.raises(UnsupportedOpError, match=r"'qmm' is a QLinearMatMul of two activations"):
        import_model(m)


def test_caller_proto_is_not_mutated() -> None:
    m = ob.conv_model(("N", 3, 8, 8), ob.rand(_rng(50), 4, 3, 3, 3))
    before = m.SerializeToString()
    import_model(m, {"x": (2, 3, 8, 8)})
    assert m.SerializeToString() == before
