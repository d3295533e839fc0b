"""What the frontend does with each operator of the default ONNX domain.

Every op is one of:

* ``matrix``: a weight-stationary product that goes on crossbars when its weight operand is a
  constant (after folding); the converter has a handler for it (and prices it as a digital
  product when the weight is an activation);
* ``recurrent``: LSTM / GRU / RNN, whose W and R go on crossbars (handled by
  ``frontend/recurrent.py``; refused by name where that module is not present);
* ``control``: If / Loop / Scan (``frontend/control.py``: an If on a constant is inlined, the
  rest refused naming the node);
* ``digital``: priced on the digital periphery with an operation count (`frontend.digital`);
* ``refused``: with the reason below, naming the node and the op.

`classify` answers for one op type; ``tests/test_optable.py`` walks
``onnx.defs.get_all_schemas()`` so an onnx release with new operators fails the suite until they
are classified here.
"""

from __future__ import annotations

from typing import Literal

import onnx

from imccompile.errors import UnsupportedOpError
from imccompile.frontend.digital import DIGITAL_OPS

Kind = Literal["matrix", "recurrent", "control", "digital", "refused"]

# The converter's handlers (`Converter._<Op>`): a MatrixOp when the weight is constant.
MATRIX = {"Conv", "ConvTranspose", "Gemm", "MatMul", "ConvInteger", "MatMulInteger",
          "QLinearConv", "QLinearMatMul"}
RECURRENT = {"LSTM", "GRU", "RNN"}
CONTROL = {"If", "Loop", "Scan"}

_RANDOM = ("a random generator: its output changes from run to run, so the accuracy of the "
           "compiled model cannot be compared with the float model's; replace it by a constant "
           "input or remove it (models exported in eval mode have none)")
_SEQUENCE = ("its values are ONNX sequences or optionals, not tensors with a static shape, "
             "which is all the IR holds; export with tensors (e.g. Concat / Split instead of "
             "sequence ops)")
_STRING = ("it works on strings; do the text processing (tokenization) outside the model and "
           "feed it integer or float tensors")
_LOSS = ("a training loss; export the inference graph (the model's outputs without the loss)")

REFUSED: dict[str, str] = {
    **{op: _RANDOM for op in ("RandomNormal", "RandomNormalLike", "RandomUniform",
                              "RandomUniformLike", "Bernoulli", "Multinomial")},
    **{op: _SEQUENCE for op in ("ConcatFromSequence", "SequenceAt", "SequenceConstruct",
                                "SequenceEmpty", "SequenceErase", "SequenceInsert",
                                "SequenceLength", "SequenceMap", "SplitToSequence", "Optional",
                                "OptionalGetElement", "OptionalHasElement")},
    **{op: _STRING for op in ("RegexFullMatch", "StringConcat", "StringNormalizer",
                              "StringSplit")},
    **{op: _LOSS for op in ("NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss")},
    "ImageDecoder": ("it decodes compressed image bytes (JPEG/PNG); decode the images outside "
                     "the model and feed it pixel tensors"),
}


def classify(op_type: str) -> Kind | None:
    """What the frontend does with a default-domain op type; None for an unknown one."""
    if op_type in MATRIX:
        return "matrix"
    if op_type in RECURRENT:
        return "recurrent"
    if op_type in CONTROL:
        return "control"
    if op_type in REFUSED:
        return "refused"
    if op_type in DIGITAL_OPS:
        return "digital"
    return None


def refuse_unsupported(nodes: list[onnx.NodeProto], display: str) -> None:
    """Refuse the first default-domain node whose op is refused or unclassified, naming it."""
    for node in nodes:
        if node.domain not in ("", "ai.onnx"):
            continue  # custom domains are refused by the converter, with their own message
        kind = classify(node.op_type)
        name = node.name or "(unnamed)"
        if kind == "refused":
            raise UnsupportedOpError(
                f"{display}: node {name!r} is {node.op_type}, which is not supported: "
                f"{REFUSED[node.op_type]}")
        if kind is None:
            raise UnsupportedOpError(
                f"{display}: node {name!r} has op type {node.op_type}, which the frontend "
                "cannot classify as a crossbar or digital op; it is not supported yet")
