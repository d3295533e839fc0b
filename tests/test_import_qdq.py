"""QDQ graphs from onnxruntime's static quantization (issue 15, item 5).

``quantize_static`` (QDQ format) writes DequantizeLinear of int8 initializers as the weights of
Conv / Gemm / MatMul and QuantizeLinear/DequantizeLinear pairs on the activations. The frontend
puts the integer weights on crossbars with their bits as the layer's weight_bits, runs the product
on the integer activation codes, and applies the scales digitally. Checked on the bundled
examples quantized per tensor and per channel: counts by walking the quantized ONNX graph,
cost on pcm, numerics against onnxruntime running the quantized model as written (graph
optimizations off: with them on, onnxruntime fuses the pairs into QLinearConv, whose x86 u8s8
kernel saturates pair sums at int16 — see tests/test_import_integer.py), and an ``--ideal``
simulation at agreement 1.0.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))

import onnx_builders as ob  # noqa: E402

import imccompile  # noqa: E402
from imccompile.emit import emit  # noqa: E402
from imccompile.frontend import import_model  # noqa: E402
from imccompile.simulate import SimOptions  # noqa: E402

quantization = pytest.importorskip("onnxruntime.quantization")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
IDEAL = SimOptions(noise=False, adc=False, dac=False, weights=False)


def _inputs(name: str, n: int) -> np.ndarray:
    m = onnx.load(str(EXAMPLES / f"{name}.onnx"))
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    with np.load(EXAMPLES / f"{name}.npz") as z:
        return z["input"][:n].reshape((-1, *dims[1:])).astype(np.float32)


class _Reader(quantization.CalibrationDataReader):
    def __init__(self, xs: np.ndarray) -> None:
        self._it = iter([{"input": x[None]} for x in xs])

    def get_next(self):
        return next(self._it, None)


@pytest.fixture(scope="module", params=[("digits_cnn", False), ("digits_cnn", True),
                                        ("digits_transformer", False),
                                        ("digits_transformer", True)],
                ids=["cnn", "cnn-per-channel", "transformer", "transformer-per-channel"])
def qdq(request, tmp_path_factory) -> tuple[Path, str]:
    name, per_channel = request.param
    out = tmp_path_factory.mktemp("qdq") / f"{name}_{int(per_channel)}.onnx"
    quantization.quantize_static(str(EXAMPLES / f"{name}.onnx"), str(out),
                                 _Reader(_inputs(name, 32)),
                                 quant_format=quantization.QuantFormat.QDQ,
                                 per_channel=per_channel)
    return out, name


def _hand_counts(path: Path) -> tuple[int, int, int, int]:
    """(matrix ops, weights, MACs, QDQ weights) from the ONNX graph: every Conv/Gemm/MatMul whose
    second operand is an initializer or a DequantizeLinear of an integer initializer; MACs from
    onnx's shape inference (output elements x reduction length)."""
    m = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    dq_of = {n.output[0]: inits[n.input[0]] for n in m.graph.node
             if n.op_type == "DequantizeLinear" and n.input[0] in inits
             and inits[n.input[0]].dtype.kind in "iu"}
    inf = onnx.shape_inference.infer_shapes(m, data_prop=True)
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(inf.graph.value_info) + list(inf.graph.output)}
    ops = weights = macs = integer = 0
    for n in m.graph.node:
        if n.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        w = dq_of.get(n.input[1], inits.get(n.input[1]))
        if w is None:
            continue
        ops += 1
        integer += n.input[1] in dq_of
        weights += w.size
        y = dims[n.output[0]]
        if n.op_type == "Conv":
            macs += math.prod(y) * math.prod(w.shape[1:])
        elif n.op_type == "Gemm":
            transb = any(a.name == "transB" and a.i for a in n.attribute)
            macs += math.prod(y) * w.shape[1 if transb else 0]
        else:
            macs += math.prod(y) * w.shape[0]
    return ops, weights, macs, integer


def test_qdq_counts_and_integer_weights(qdq) -> None:
    path, _ = qdq
    ops, weights, macs, integer = _hand_counts(path)
    assert integer == ops > 0
    g = import_model(path)
    assert (len(g.matrix_ops), g.total_weights, g.total_macs) == (ops, weights, macs)
    for o in g.matrix_ops:  # quantize_static's default: symmetric int8 weights, 8 bits
        assert o.compression.weight_bits == 8, o.name
        assert np.array_equal(o.weight, np.round(o.weight)) and np.abs(o.weight).max() <= 127
    q = onnx.load(str(path))
    constant = {i.name for i in q.graph.initializer} | {
        o for n in q.graph.node if n.op_type == "Constant" for o in n.output}
    n_q = sum(n.op_type == "QuantizeLinear" and n.input[0] not in constant
              for n in q.graph.node)  # a Q of a constant (LayerNorm's scale) folds away
    kinds = [o.op_type for o in g.digital_ops]
    assert kinds.count("QuantizeLinear") == n_q  # the activations' quantizations stay digital
    assert kinds.count("Mul") >= ops  # one output scale per product


def test_qdq_matches_onnxruntime_on_the_quantized_model(qdq) -> None:
    import onnxruntime as ort

    path, name = qdq
    g = import_model(path)
    ours = emit(g)[0]
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ref = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    xs = _inputs(name, 64)
    close = 0
    for x in xs:
        (want,) = ref.run(None, {"input": x[None]})
        (got,) = ob.run(ours, {"input": x[None]})
        assert want.shape == got.shape
        assert int(want.argmax()) == int(got.argmax())
        close += bool(np.allclose(got, want, rtol=1e-5, atol=1e-5))
    # integer partial sums are exact; an activation sitting on a rounding boundary of a later
    # QuantizeLinear may still flip by one code in a rare sample
    assert close >= 0.95 * len(xs)


def test_qdq_cost_and_ideal_simulation(qdq) -> None:
    path, name = qdq
    res = imccompile.compile(path, "pcm")
    assert res.cost.energy_j > 0 and res.mapping.arrays > 0
    assert {lm.weight_bits for lm in res.mapping.layers} == {8}  # the mapper uses the int bits
    ideal = imccompile.compile(path, "pcm", data={"input": _inputs(name, 32)},
                               sim_options=IDEAL)
    assert ideal.accuracy is not None and ideal.accuracy["mean"] == 1.0
