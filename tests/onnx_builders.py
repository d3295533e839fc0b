"""Small onnx.helper-built models for the frontend and CLI tests, and reference models rebuilt
from IR ops.

The reference builders are the independent side of the numeric checks: they turn an IR
`MatrixOp`'s (K, N) weight back into the ONNX layout by hand (not with frontend code) and
produce a one-op ONNX model that onnxruntime runs on the same input as the original model.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
FLOAT = TensorProto.FLOAT


# -- generic construction ---------------------------------------------------------------------
def vi(name: str, shape: Sequence[int | str | None] | None,
       elem: int = FLOAT) -> onnx.ValueInfoProto:
    """A tensor value info; str dims are symbolic, None dims unknown, shape None = no shape."""
    return helper.make_tensor_value_info(name, elem, None if shape is None else list(shape))


def init(name: str, arr: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(arr), name)


def model(nodes: Sequence[onnx.NodeProto], inputs: Sequence[onnx.ValueInfoProto],
          outputs: Sequence[onnx.ValueInfoProto], initializers: Sequence[onnx.TensorProto] = (),
          name: str = "g", opset: int = OPSET, extra_opsets: dict[str, int] | None = None,
          check: bool = True) -> onnx.ModelProto:
    graph = helper.make_graph(list(nodes), name, list(inputs), list(outputs), list(initializers))
    opsets = [helper.make_opsetid("", opset)]
    for dom, ver in (extra_opsets or {}).items():
        opsets.append(helper.make_opsetid(dom, ver))
    m = helper.make_model(graph, opset_imports=opsets, producer_name="onnx_builders")
    m.ir_version = 8
    _fill_output_shapes(m)
    if check:
        onnx.checker.check_model(m)
    return m


def _fill_output_shapes(m: onnx.ModelProto) -> None:
    """Give shapeless graph outputs their inferred type (the checker wants output shapes); only
    graph.output changes, no value_info is added, so the frontend still infers the rest."""
    if all(o.type.tensor_type.HasField("shape") for o in m.graph.output):
        return
    try:
        inferred = onnx.shape_inference.infer_shapes(m, strict_mode=False)
    except Exception:
        return
    by_name = {o.name: o for o in inferred.graph.output}
    for o in m.graph.output:
        new = by_name.get(o.name)
        if not o.type.tensor_type.HasField("shape") and new is not None \
                and new.type.tensor_type.HasField("shape"):
            o.CopyFrom(new)


def rand(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


# -- onnxruntime --------------------------------------------------------------------------------
def run(m: onnx.ModelProto, feeds: dict[str, np.ndarray],
        outputs: Sequence[str] | None = None) -> list[np.ndarray]:
    """Run a model in onnxruntime with graph optimizations off (no fusion changes numerics)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(list(outputs) if outputs is not None else None, feeds)


def with_extra_output(m: onnx.ModelProto, tensor: str) -> onnx.ModelProto:
    """A copy of `m` that also outputs intermediate `tensor` (type left to onnxruntime)."""
    c = onnx.ModelProto()
    c.CopyFrom(m)
    c.graph.output.append(onnx.ValueInfoProto(name=tensor))
    return c


# -- single-op models ---------------------------------------------------------------------------
def conv_model(x_shape: Sequence[int | str], w: np.ndarray, b: np.ndarray | None = None,
               **attrs: Any) -> onnx.ModelProto:
    ins = ["x", "w"] + (["b"] if b is not None else [])
    inits = [init("w", w)] + ([init("b", b)] if b is not None else [])
    node = helper.make_node("Conv", ins, ["y"], name="conv", **attrs)
    return model([node], [vi("x", x_shape)], [vi("y", None)], inits)


def conv_transpose_model(x_shape: Sequence[int], w: np.ndarray, b: np.ndarray | None = None,
                         **attrs: Any) -> onnx.ModelProto:
    ins = ["x", "w"] + (["b"] if b is not None else [])
    inits = [init("w", w)] + ([init("b", b)] if b is not None else [])
    node = helper.make_node("ConvTranspose", ins, ["y"], name="convt", **attrs)
    return model([node], [vi("x", x_shape)], [vi("y", None)], inits)


def gemm_model(a_shape: Sequence[int], b: np.ndarray, c: np.ndarray | None = None,
               **attrs: Any) -> onnx.ModelProto:
    ins = ["a", "B"] + (["C"] if c is not None else [])
    inits = [init("B", b)] + ([init("C", c)] if c is not None else [])
    node = helper.make_node("Gemm", ins, ["y"], name="gemm", **attrs)
    return model([node], [vi("a", a_shape)], [vi("y", None)], inits)


def matmul_right_model(x_shape: Sequence[int | str], w: np.ndarray) -> onnx.ModelProto:
    node = helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")
    return model([node], [vi("x", x_shape)], [vi("y", None)], [init("W", w)])


def matmul_left_model(a: np.ndarray, x_shape: Sequence[int]) -> onnx.ModelProto:
    node = helper.make_node("MatMul", ["A", "x"], ["y"], name="mm_left")
    return model([node], [vi("x", x_shape)], [vi("y", None)], [init("A", a)])


def attention_model(q_shape: Sequence[int], k_shape: Sequence[int]) -> onnx.ModelProto:
    node = helper.make_node("MatMul", ["q", "k"], ["s"], name="scores")
    return model([node], [vi("q", q_shape), vi("k", k_shape)], [vi("s", None)])


def shapeless_io_model(w: np.ndarray) -> onnx.ModelProto:
    """y = x @ W where neither x nor y declares a shape: onnxruntime runs it, onnx's checker
    refuses it ("Field 'shape' of 'type' is required")."""
    node = helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")
    graph = helper.make_graph([node], "shapeless", [vi("x", None)], [vi("y", None)],
                              [init("W", w)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = 8
    return m


# -- models the frontend refuses ---------------------------------------------------------------
def if_model() -> onnx.ModelProto:
    then_g = helper.make_graph([helper.make_node("Identity", ["x"], ["t"])], "then", [],
                               [vi("t", (2,))])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [],
                               [vi("e", (2,))])
    nodes = [  # the condition depends on the input's values: it cannot fold
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
        helper.make_node("Greater", ["s", "zero"], ["cond"]),
        helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=then_g,
                         else_branch=else_g),
    ]
    return model(nodes, [vi("x", (2,))], [vi("y", (2,))],
                 [init("zero", np.array(0, np.float32))])


def loop_model() -> onnx.ModelProto:
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["v_in", "x"], ["v_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []), vi("v_in", (2,))],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), vi("v_out", (2,))])
    node = helper.make_node("Loop", ["M", "", "x"], ["y"], name="loop1", body=body)
    return model([node], [vi("x", (2,))], [vi("y", (2,))],
                 [init("M", np.array(3, np.int64))])


def scan_model() -> onnx.ModelProto:
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "xi"], ["s_out"]),
         helper.make_node("Identity", ["s_out"], ["yo"])], "sbody",
        [vi("s_in", (2,)), vi("xi", (2,))], [vi("s_out", (2,)), vi("yo", (2,))])
    node = helper.make_node("Scan", ["s0", "x"], ["sf", "ys"], name="scan1", body=body,
                            num_scan_inputs=1)
    return model([node], [vi("x", (3, 2))], [vi("sf", (2,)), vi("ys", (3, 2))],
                 [init("s0", np.zeros(2, np.float32))])


def unknown_op_model(op_type: str, name: str, domain: str = "") -> onnx.ModelProto:
    """One node of an op type onnx does not know (default domain) or of a custom domain."""
    node = helper.make_node(op_type, ["x"], ["y"], name=name, domain=domain)
    return model([node], [vi("x", (2,))], [vi("y", (2,))],
                 extra_opsets={domain: 1} if domain else None, check=False)


# -- reference models rebuilt from IR ops ---------------------------------------------------------
def onnx_conv_weight(weight: np.ndarray, cout: int, cin_per_group: int,
                     kernel: Sequence[int]) -> np.ndarray:
    """IR conv W (K, N) with K = Cin/g * prod(kernel), N = Cout -> ONNX (Cout, Cin/g, *kernel)."""
    assert weight.shape == (cin_per_group * int(np.prod(kernel)), cout), weight.shape
    return np.ascontiguousarray(weight.T.reshape(cout, cin_per_group, *kernel))


def onnx_conv_transpose_weight(weight: np.ndarray, groups: int, cout: int,
                               kernel: Sequence[int]) -> np.ndarray:
    """IR conv_transpose W (Cin/g, g * Cout/g * prod(kernel)) -> ONNX (Cin, Cout/g, *kernel).

    Column block g holds group g; inside a block, columns run over (out channel, *kernel).
    """
    cin_g = weight.shape[0]
    cout_g = cout // groups
    per = cout_g * int(np.prod(kernel))
    assert weight.shape[1] == groups * per, weight.shape
    blocks = [weight[:, g * per:(g + 1) * per].reshape(cin_g, cout_g, *kernel)
              for g in range(groups)]
    return np.ascontiguousarray(np.concatenate(blocks, axis=0))


def reference_conv(x_shape: Sequence[int], weight: np.ndarray, bias: np.ndarray | None,
                   cout: int, cin: int, kernel: Sequence[int], **attrs: Any) -> onnx.ModelProto:
    group = int(attrs.get("group", 1))
    w = onnx_conv_weight(weight, cout, cin // group, kernel)
    return conv_model(x_shape, w, bias, **attrs)


def reference_conv_transpose(x_shape: Sequence[int], weight: np.ndarray, bias: np.ndarray | None,
                             cout: int, kernel: Sequence[int], **attrs: Any) -> onnx.ModelProto:
    group = int(attrs.get("group", 1))
    w = onnx_conv_transpose_weight(weight, group, cout, kernel)
    return conv_transpose_model(x_shape, w, bias, **attrs)


def reference_matmul(x_shape: Sequence[int], weight: np.ndarray, bias: np.ndarray | None,
                     groups: int = 1) -> onnx.ModelProto:
    """y = x @ W (+ bias); with groups, W's column blocks are the (groups, K, N/groups) batch."""
    if groups > 1:
        k, n = weight.shape
        w = np.stack([weight[:, g * (n // groups):(g + 1) * (n // groups)] for g in range(groups)])
    else:
        w = weight
    nodes = [helper.make_node("MatMul", ["x", "W"], ["xw" if bias is not None else "y"])]
    inits = [init("W", np.ascontiguousarray(w))]
    if bias is not None:
        nodes.append(helper.make_node("Add", ["xw", "bias"], ["y"]))
        inits.append(init("bias", bias))
    return model(nodes, [vi("x", x_shape)], [vi("y", None)], inits)


def reference_matmul_left(x_shape: Sequence[int], weight: np.ndarray) -> onnx.ModelProto:
    """y = A @ x with A = W^T (matmul_left keeps W = A^T so x's columns are the vectors)."""
    return matmul_left_model(np.ascontiguousarray(weight.T), x_shape)


# -- quantized single-op models -----------------------------------------------------------------
def qlinear_conv_model(x_shape: Sequence[int], wq: np.ndarray, w_scale: np.ndarray,
                       w_zp: np.ndarray, bias_q: np.ndarray | None, x_scale: float = 0.05,
                       x_zp: int = 3, y_scale: float = 0.2, y_zp: int = 5,
                       **attrs: Any) -> onnx.ModelProto:
    """QLinearConv with uint8 activations and int8 (per-channel) weights."""
    inits = [
        init("x_scale", np.float32(x_scale)), init("x_zp", np.uint8(x_zp)), init("wq", wq),
        init("w_scale", w_scale), init("w_zp", w_zp), init("y_scale", np.float32(y_scale)),
        init("y_zp", np.uint8(y_zp)),
    ]
    ins = ["x", "x_scale", "x_zp", "wq", "w_scale", "w_zp", "y_scale", "y_zp"]
    if bias_q is not None:
        inits.append(init("bq", bias_q))
        ins.append("bq")
    node = helper.make_node("QLinearConv", ins, ["y"], name="qconv", **attrs)
    return model([node], [vi("x", x_shape, TensorProto.UINT8)],
                 [vi("y", None, TensorProto.UINT8)], inits)


def qlinear_matmul_model(x_shape: Sequence[int], wq: np.ndarray, w_scale: np.ndarray,
                         w_zp: np.ndarray, x_scale: float = 0.05, x_zp: int = 3,
                         y_scale: float = 0.2, y_zp: int = 5) -> onnx.ModelProto:
    inits = [
        init("x_scale", np.float32(x_scale)), init("x_zp", np.uint8(x_zp)), init("wq", wq),
        init("w_scale", w_scale), init("w_zp", w_zp), init("y_scale", np.float32(y_scale)),
        init("y_zp", np.uint8(y_zp)),
    ]
    node = helper.make_node("QLinearMatMul",
                            ["x", "x_scale", "x_zp", "wq", "w_scale", "w_zp", "y_scale", "y_zp"],
                            ["y"], name="qmm")
    return model([node], [vi("x", x_shape, TensorProto.UINT8)],
                 [vi("y", None, TensorProto.UINT8)], inits)
