"""Every operator of the default ONNX domain is classified (issue 15, item 3).

The walk over ``onnx.defs.get_all_schemas()`` fails when an onnx release brings an op that
`imccompile.frontend.optable` does not know; the digital counts of a few ops are checked against
counts made by hand from the op's definition; refused ops name the node and the op.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))

import onnx_builders as ob  # noqa: E402

from imccompile.errors import UnsupportedOpError  # noqa: E402
from imccompile.frontend import import_model  # noqa: E402
from imccompile.frontend.convert import Converter  # noqa: E402
from imccompile.frontend.optable import REFUSED, classify  # noqa: E402
from imccompile.ir import DigitalOp  # noqa: E402

DEFAULT_OPS = sorted({s.name for s in onnx.defs.get_all_schemas() if s.domain == ""})


def test_every_default_domain_op_is_classified() -> None:
    unclassified = [op for op in DEFAULT_OPS if classify(op) is None]
    assert not unclassified, f"classify these in imccompile/frontend/optable.py: {unclassified}"


@pytest.mark.parametrize("op", DEFAULT_OPS)
def test_classification_has_its_implementation(op: str) -> None:
    kind = classify(op)
    if kind == "matrix":
        assert hasattr(Converter, f"_{op}")
    elif kind == "refused":
        assert len(REFUSED[op]) > 20  # a reason, not a placeholder
    else:
        assert kind in ("digital", "recurrent", "control")


def test_the_named_ops_are_digital() -> None:
    for op in ("InstanceNormalization", "GroupNormalization", "LayerNormalization", "Resize",
               "TopK", "NonMaxSuppression", "RoiAlign", "GridSample", "Einsum", "LRN",
               "Attention", "DFT"):
        assert classify(op) == "digital", op
    assert {classify(op) for op in ("LSTM", "GRU", "RNN")} == {"recurrent"}
    assert {classify(op) for op in ("If", "Loop", "Scan")} == {"control"}


def _one_op(op: str, inputs: list[tuple[str, tuple[int, ...]]], out, inits=None,
            opset: int = 21, outputs: int = 1, out_type: int = TensorProto.FLOAT,
            **attrs) -> DigitalOp:
    names = [n for n, _ in inputs] + list(inits or {})
    node = helper.make_node(op, names, [f"y{k}" for k in range(outputs)], name="the_op", **attrs)
    outs = [out] * outputs
    m = ob.model([node], [ob.vi(n, s) for n, s in inputs],
                 [ob.vi(f"y{k}", o, TensorProto.INT64 if k else out_type)
                  for k, o in enumerate(outs)],
                 [ob.init(k, v) for k, v in (inits or {}).items()], opset=opset)
    g = import_model(m)
    (d,) = [o for o in g.digital_ops if o.op_type == op]
    return d


# Hand counts from each op's definition (the derivations in frontend/digital.py).
def test_normalization_counts() -> None:
    # Instance norm on [1, 4, 8, 8]: mean 1 + variance 3 + normalize 2 + affine 2 per element.
    d = _one_op("InstanceNormalization", [("x", (1, 4, 8, 8))], (1, 4, 8, 8),
                {"s": np.ones(4, np.float32), "b": np.zeros(4, np.float32)})
    assert d.ops == 8 * 256
    d = _one_op("GroupNormalization", [("x", (1, 4, 3, 3))], (1, 4, 3, 3),
                {"s": np.ones(4, np.float32), "b": np.zeros(4, np.float32)}, num_groups=2)
    assert d.ops == 8 * 36
    d = _one_op("LayerNormalization", [("x", (2, 5, 8))], (2, 5, 8),
                {"s": np.ones(8, np.float32)}, axis=-1)
    assert d.ops == 8 * 80


def test_resize_topk_einsum_counts() -> None:
    # Bilinear 2x upsampling [1,2,4,4] -> [1,2,8,8]: 128 outputs x 4 taps x (multiply + add).
    d = _one_op("Resize", [("x", (1, 2, 4, 4))], (1, 2, 8, 8),
                {"roi": np.zeros(0, np.float32),
                 "scales": np.array([1, 1, 2, 2], np.float32)}, mode="linear")
    assert d.ops == 128 * 4 * 2
    # TopK k=3 over [2, 10]: every element compared into a 3-heap, ceil(log2 4) = 2 steps.
    d = _one_op("TopK", [("x", (2, 10))], (2, 3), {"k": np.array([3], np.int64)}, outputs=2)
    assert d.ops == 20 * 2
    # bij,bjk->bik on [2,3,4] x [2,4,5]: 2*3*4*5 MACs = 240 ops.
    d = _one_op("Einsum", [("a", (2, 3, 4)), ("b", (2, 4, 5))], (2, 3, 5),
                equation="bij,bjk->bik")
    assert d.ops == 2 * 2 * 3 * 4 * 5


def test_detection_op_counts() -> None:
    # NMS over 6 boxes, 1 batch, 2 classes: a sort (6 x ceil(log2 6) = 18 compares) and 15 pairs
    # of IoU at 15 ops, per class.
    d = _one_op("NonMaxSuppression", [("boxes", (1, 6, 4)), ("scores", (1, 2, 6))], (None, 3),
                {"max_out": np.array([3], np.int64)}, out_type=TensorProto.INT64)
    assert d.ops == 2 * (6 * math.ceil(math.log2(6)) + 15 * 15)
    # GridSample bilinear: output [1, 3, 5, 5] = 75 elements x 4 taps x 2 ops.
    d = _one_op("GridSample", [("x", (1, 3, 4, 4)), ("grid", (1, 5, 5, 2))], (1, 3, 5, 5),
                mode="linear")
    assert d.ops == 75 * 4 * 2
    # RoiAlign, 2 RoIs x 3 channels x 2x2 bins, 2x2 samples per bin: 24 x (4 x 8 + 1).
    d = _one_op("RoiAlign", [("x", (1, 3, 8, 8)), ("rois", (2, 4))], (2, 3, 2, 2),
                {"idx": np.zeros(2, np.int64)}, output_height=2, output_width=2,
                sampling_ratio=2)
    assert d.ops == 24 * 33


def _refused_model(op: str, **attrs) -> onnx.ModelProto:
    node = helper.make_node(op, ["x"], ["r"], name="gen", **attrs)
    add = helper.make_node("Add", ["x", "r"], ["y"], name="add")
    return ob.model([node, add], [ob.vi("x", (2, 3))], [ob.vi("y", (2, 3))])


@pytest.mark.parametrize("op,why", [
    ("RandomNormalLike", "random generator"),
    ("RandomUniformLike", "random generator"),
])
def test_random_generators_are_refused_naming_node_and_op(op: str, why: str) -> None:
    with pytest.raises(UnsupportedOpError, match=rf"node 'gen' is {op}, which is not supported: "
                                                 rf"a {why}"):
        import_model(_refused_model(op))


def test_sequences_strings_and_losses_are_refused() -> None:
    seq = [helper.make_node("SequenceConstruct", ["x", "x"], ["s"], name="pack"),
           helper.make_node("ConcatFromSequence", ["s"], ["y"], name="unpack", axis=0)]
    m = ob.model(seq, [ob.vi("x", (2, 3))], [ob.vi("y", (4, 3))])
    with pytest.raises(UnsupportedOpError, match=r"node 'pack' is SequenceConstruct.*sequences"):
        import_model(m)
    s = helper.make_node("StringNormalizer", ["x"], ["y"], name="norm", case_change_action="LOWER")
    m = ob.model([s], [ob.vi("x", (1, 3), TensorProto.STRING)],
                 [ob.vi("y", (1, 3), TensorProto.STRING)])
    with pytest.raises(UnsupportedOpError, match=r"node 'norm' is StringNormalizer.*strings"):
        import_model(m)
    loss = helper.make_node("SoftmaxCrossEntropyLoss", ["x", "t"], ["y"], name="loss")
    m = ob.model([loss], [ob.vi("x", (2, 3)), ob.vi("t", (2,), TensorProto.INT64)],
                 [ob.vi("y", ())])
    with pytest.raises(UnsupportedOpError, match=r"node 'loss' is SoftmaxCrossEntropyLoss.*"
                                                 r"training loss"):
        import_model(m)
