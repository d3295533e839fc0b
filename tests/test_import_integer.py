"""Integer models from onnxruntime's dynamic quantization (issue 15).

``quantize_dynamic`` writes DynamicQuantizeLinear on the activation, ConvInteger / MatMulInteger
with the int8/uint8 weight, then Cast and a Mul by the scales. The frontend puts the integer
weight (minus its zero point) on the crossbar with its bits recorded as the op's weight_bits,
and the activation quantization (DynamicQuantizeLinear, the zero-point subtraction, casts) as
digital ops. Checked on the bundled examples quantized both per tensor and per channel: counts
by walking the quantized ONNX graph, numerics against onnxruntime on the quantized model, and an
``--ideal`` simulation.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))

import onnx_builders as ob  # noqa: E402

from imccompile.cli import main as cli_main  # noqa: E402
from imccompile.emit import emit  # noqa: E402
from imccompile.errors import UnsupportedOpError  # noqa: E402
from imccompile.frontend import import_model  # noqa: E402

quantization = pytest.importorskip("onnxruntime.quantization")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module", params=[
    ("digits_cnn", "QInt8", False), ("digits_cnn", "QUInt8", True),
    ("digits_transformer", "QInt8", False), ("digits_transformer", "QUInt8", True)],
    ids=["cnn-int8", "cnn-uint8-per-channel", "transformer-int8", "transformer-uint8-per-channel"])
def quantized(request, tmp_path_factory) -> tuple[Path, str]:
    name, wtype, per_channel = request.param
    out = tmp_path_factory.mktemp("q") / f"{name}_{wtype}.onnx"
    quantization.quantize_dynamic(str(EXAMPLES / f"{name}.onnx"), str(out),
                                  weight_type=getattr(quantization.QuantType, wtype),
                                  per_channel=per_channel, op_types_to_quantize=["Conv", "MatMul"])
    return out, name


def _hand_counts(path: Path) -> tuple[int, int, int, int]:
    """(matrix ops, weights, MACs, integer ops) from the ONNX graph: every Conv/Gemm/MatMul/
    ConvInteger/MatMulInteger whose second operand is an initializer; MACs from onnx's shape
    inference (output elements x reduction length)."""
    m = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    inf = onnx.shape_inference.infer_shapes(m, data_prop=True)
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(inf.graph.value_info) + list(inf.graph.output)}
    ops = weights = macs = integer = 0
    for n in m.graph.node:
        if n.op_type not in ("Conv", "Gemm", "MatMul", "ConvInteger", "MatMulInteger") \
                or n.input[1] not in inits:
            continue
        w = inits[n.input[1]]
        ops += 1
        integer += n.op_type.endswith("Integer")
        weights += w.size
        y = dims[n.output[0]]
        if n.op_type.startswith("Conv"):
            macs += math.prod(y) * math.prod(w.shape[1:])
        else:
            macs += math.prod(y) * w.shape[0]
    return ops, weights, macs, integer


def test_integer_model_counts(quantized) -> None:
    path, name = quantized
    ops, weights, macs, integer = _hand_counts(path)
    assert integer > 0
    g = import_model(path)
    assert (len(g.matrix_ops), g.total_weights, g.total_macs) == (ops, weights, macs)
    ints = [o for o in g.matrix_ops if o.compression.weight_bits is not None]
    assert len(ints) == integer
    signed = "QInt8" in path.stem
    for o in ints:  # int8 symmetric: 8 bits; uint8 minus a zero point: up to 9
        assert o.compression.weight_bits <= (8 if signed else 9)
        assert np.array_equal(o.weight, np.round(o.weight))  # integer-valued
    kinds = {o.op_type for o in g.digital_ops}
    assert {"DynamicQuantizeLinear", "Cast", "Sub"} <= kinds


def test_integer_model_matches_exact_integer_semantics(quantized) -> None:
    """The re-emitted IR (run in onnxruntime) against onnx's reference evaluator on the
    quantized model. Not against onnxruntime's own ConvInteger/MatMulInteger: its x86 u8s8
    kernel saturates pair sums at int16 (VPMADDUBSW; the reason for quantize_dynamic's
    reduce_range), which changes a few of these outputs by up to 4%."""
    from onnx.reference import ReferenceEvaluator

    path, name = quantized
    g = import_model(path)
    with np.load(EXAMPLES / f"{name}.npz") as z:
        xs = z["input"][:16]
    ours_m, ref = emit(g)[0], ReferenceEvaluator(onnx.load(str(path)))
    for x in xs:
        x = x.reshape(g.tensors["input"].shape).astype(np.float32)
        (want,) = ref.run(None, {"input": x})
        (ours,) = ob.run(ours_m, {"input": x})
        np.testing.assert_allclose(ours, want, rtol=1e-5, atol=1e-5)


def test_integer_model_ideal_simulation(quantized, capsys, tmp_path: Path) -> None:
    path, name = quantized
    with np.load(EXAMPLES / f"{name}.npz") as z:  # inputs only: scored as agreement
        np.savez(tmp_path / "x.npz", input=z["input"][:32])
    code = cli_main([str(path), "--target", "pcm", "--data", str(tmp_path / "x.npz"), "--ideal"])
    out = capsys.readouterr().out
    assert code == 0, out
    m = re.search(r"\(agreement\): float 1.0000, hardware ([0-9.]+) ±", out)
    assert m and float(m.group(1)) == 1.0, out


def test_matmul_integer_of_two_activations_is_refused() -> None:
    nodes = [helper.make_node("MatMulInteger", ["a", "b"], ["y"], name="mmi")]
    m = ob.model(nodes, [ob.vi("a", (2, 3), onnx.TensorProto.UINT8),
                         ob.vi("b", (3, 4), onnx.TensorProto.UINT8)],
                 [ob.vi("y", (2, 4), onnx.TensorProto.INT32)])
    with pytest.raises(UnsupportedOpError, match=r"'mmi' \(MatMulInteger\).*not constant"):
        import_model(m)
