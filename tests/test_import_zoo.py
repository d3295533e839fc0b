"""Old ONNX graphs: the model-zoo graphs shipped inside the ``onnx`` package, and opset 6-10.

* Every ``onnx/backend/test/data/light/*.onnx`` (IR 3, opset 9; initializers listed as graph
  inputs; weights made by ConstantOfShape) imports with the matrix-op count, weight count and
  MACs counted here independently: by walking the ONNX graph (Conv/Gemm weight shapes given by
  the ConstantOfShape shape initializers) and onnx's own shape inference for the output sizes.
* Each costs on every bundled target.
* A few simulate with ``--ideal`` at agreement 1.0 (the big ones take minutes, see below).
* A hand-built opset-6/7/9 graph with random weights imports (converted with
  onnx.version_converter) and its re-emitted float model matches onnxruntime on the original.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))

import imccompile  # noqa: E402
from imccompile.cli import main as cli_main  # noqa: E402
from imccompile.emit import emit  # noqa: E402
from imccompile.frontend import import_model  # noqa: E402

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
ZOO = sorted(LIGHT.glob("*.onnx"))
TARGETS = ("pcm", "rram", "sram")


def zoo_counts(path: Path) -> tuple[int, int, int]:
    """(matrix ops, weights, MACs) of a light zoo graph from the ONNX graph alone.

    Conv: weights = prod(W dims) (Cout x Cin/groups x kh x kw); MACs = weights x output
    positions x batch (every output position uses each weight once).
    Gemm: weights = prod(B dims); MACs = weights x M (rows of the output).
    """
    m = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    shape_of = {}  # weight tensor -> its dims (from ConstantOfShape's shape input)
    for n in m.graph.node:
        if n.op_type == "ConstantOfShape":
            shape_of[n.output[0]] = [int(d) for d in inits[n.input[0]]]
    inferred = onnx.shape_inference.infer_shapes(m, data_prop=True)
    out_dims = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
                for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    ops = weights = macs = 0
    for n in m.graph.node:
        if n.op_type not in ("Conv", "Gemm"):
            continue
        w = shape_of.get(n.input[1]) or out_dims[n.input[1]]  # Inception v1: Reshape of one
        y = out_dims[n.output[0]]
        assert all(d > 0 for d in y), (n.name, y)
        ops += 1
        weights += math.prod(w)
        positions = y[0] * math.prod(y[2:]) if n.op_type == "Conv" else y[0]
        macs += math.prod(w) * positions
    return ops, weights, macs


@pytest.mark.parametrize("path", ZOO, ids=[p.stem for p in ZOO])
def test_zoo_graph_imports_with_independent_counts(path: Path) -> None:
    ops, weights, macs = zoo_counts(path)
    g = import_model(path)
    assert (len(g.matrix_ops), g.total_weights, g.total_macs) == (ops, weights, macs)
    assert g.opset >= 11  # converted from opset 9
    if "alexnet" in path.stem or "zfnet" in path.stem or "inception_v1" in path.stem:
        lrn = [o for o in g.digital_ops if o.op_type == "LRN"]
        assert len(lrn) == 2 and all(o.ops > 0 and o.bytes > 0 for o in lrn)


def test_zoo_known_totals() -> None:
    """Published parameter counts (weights without biases) of two of them."""
    alex = import_model(LIGHT / "light_bvlc_alexnet.onnx")
    assert alex.total_weights == 60_954_656  # AlexNet: 60,965,224 params - 10,568 biases
    res = import_model(LIGHT / "light_resnet50.onnx")
    assert len(res.matrix_ops) == 54  # 53 convs + fc


@pytest.mark.parametrize("path", ZOO, ids=[p.stem for p in ZOO])
def test_zoo_graph_costs_on_every_target(path: Path) -> None:
    _, weights, _ = zoo_counts(path)
    for target in TARGETS:
        r = imccompile.compile(str(path), target)
        assert r.graph.total_weights == weights
        assert math.isfinite(r.cost.energy_j) and r.cost.energy_j > 0, target
        assert r.cost.area_mm2 > 0, target


def _ideal(path: Path, tmp_path: Path, capsys, name: str = "data_0") -> float:
    """Agreement of an --ideal simulation run through the CLI, with random data."""
    g = import_model(path)
    x = np.random.default_rng(0).standard_normal((2, *g.tensors[g.inputs[0]].shape))
    data = tmp_path / "x.npz"
    np.savez(data, **{g.inputs[0]: x.astype(np.float32)})
    code = cli_main([str(path), "--target", "pcm", "--data", str(data), "--ideal"])
    out = capsys.readouterr().out
    assert code == 0, out
    m = re.search(r"hardware ([0-9.]+) ±", out)
    assert m, out
    return float(m.group(1))


# Every light zoo graph, VGG-19 (144 M weights: its big weights are fed to onnxruntime, not
# serialized) included: about 40 s for the nine on 2 cores.
@pytest.mark.parametrize("path", ZOO, ids=[p.stem for p in ZOO])
def test_zoo_graph_ideal_simulation_agrees(path: Path, tmp_path: Path, capsys) -> None:
    assert _ideal(path, tmp_path, capsys) == 1.0


# -- a hand-built old graph with random weights ------------------------------------------------
def old_model(opset: int) -> onnx.ModelProto:
    """IR 3, initializers also graph inputs: Conv, BatchNorm, Relu, MaxPool, LRN, Reshape (shape
    input), Gemm, Dropout, Softmax, written with the attributes of ``opset``."""
    rng = np.random.default_rng(0)
    inits = {
        "w": rng.standard_normal((8, 3, 3, 3)), "b": rng.standard_normal(8),
        "sc": 0.5 + rng.random(8), "bb": rng.standard_normal(8), "mu": rng.standard_normal(8),
        "var": 0.5 + rng.random(8), "fw": 0.1 * rng.standard_normal((10, 128)),
        "fb": rng.standard_normal(10),
    }
    inits = {k: v.astype(np.float32) for k, v in inits.items()}
    inits["shape"] = np.array([1, 128], np.int64)
    legacy = {"is_test": 1} if opset < 7 else {}
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                         name="conv"),
        helper.make_node("BatchNormalization", ["c", "sc", "bb", "mu", "var"], ["n"],
                         epsilon=1e-5, name="bn", **legacy),
        helper.make_node("Relu", ["n"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
        helper.make_node("LRN", ["p"], ["l"], size=3, alpha=1e-3, beta=0.75, bias=1.0, name="lrn"),
        helper.make_node("Reshape", ["l", "shape"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["g"], transB=1, name="fc",
                         **({"broadcast": 1} if opset < 7 else {})),
        helper.make_node("Dropout", ["g"], ["d"], name="drop", **legacy),
        helper.make_node("Softmax", ["d"], ["y"], name="softmax"),
    ]
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])]
    ins += [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype),
                                          list(v.shape)) for k, v in inits.items()]
    g = helper.make_graph(nodes, "old", ins, [helper.make_tensor_value_info(
        "y", TensorProto.FLOAT, [1, 10])], [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 3
    onnx.checker.check_model(m)
    return m


def _run(m: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("opset", [6, 7, 9])
def test_old_opset_graph_converts_and_matches_onnxruntime(opset: int) -> None:
    g = import_model(old_model(opset))
    # Hand count: conv 8x(3*3*3) on 8x8 positions, fc 128x10 on one row; BN folds, LRN digital.
    assert len(g.matrix_ops) == 2
    assert g.total_weights == 8 * 27 + 128 * 10
    assert g.total_macs == 8 * 27 * 64 + 128 * 10
    assert [o.op_type for o in g.digital_ops if o.op_type == "LRN"] == ["LRN"]
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    ours = _run(emit(g)[0], x)
    ref = _run(old_model(9), x)  # onnxruntime does not run BatchNormalization-6: use opset 9
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


def test_old_opset_graph_ideal_simulation(tmp_path: Path, capsys) -> None:
    path = tmp_path / "old6.onnx"
    onnx.save(old_model(6), str(path))
    assert _ideal(path, tmp_path, capsys) == 1.0
