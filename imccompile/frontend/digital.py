"""Operation counts for ops executed by the digital periphery.

Each ONNX op type the frontend accepts as digital has a cost rule here; an op type absent from
every table is refused by the converter (named, with its node), never silently priced at zero.
Counts are per inference: ``ops`` arithmetic operations (a multiply-accumulate counts 2),
``bytes`` read and written.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

# One arithmetic op per output element.
ELEMENTWISE = {
    "Add", "Sub", "Mul", "Div", "Relu", "LeakyRelu", "PRelu", "Neg", "Abs", "Max", "Min", "Sum",
    "Mean", "Clip", "Sign", "Floor", "Ceil", "Round", "Equal", "Less", "Greater", "LessOrEqual",
    "GreaterOrEqual", "And", "Or", "Not", "Xor", "Where", "Pow", "Mod", "BitShift", "Reciprocal",
    "Sqrt", "IsNaN", "IsInf", "QuantizeLinear", "DequantizeLinear", "Cast", "CastLike",
    "ThresholdedRelu", "Shrink", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot",
    "DynamicQuantizeLinear",
}
# Transcendental functions: a few ops per element (polynomial / LUT on the digital unit).
TRANSCENDENTAL = {
    "Exp": 4, "Log": 4, "Tanh": 4, "Sigmoid": 4, "HardSigmoid": 2, "HardSwish": 3, "Erf": 4,
    "Gelu": 8, "Softplus": 5, "Softsign": 3, "Elu": 4, "Selu": 5, "Celu": 5, "Mish": 10,
    "Sin": 4, "Cos": 4, "Tan": 4, "Asin": 4, "Acos": 4, "Atan": 4, "Sinh": 4, "Cosh": 4,
    "Asinh": 4, "Acosh": 4, "Atanh": 4,
}
# Normalizations and softmax: ops per element.
NORMALIZATION = {
    "Softmax": 5, "LogSoftmax": 6, "Hardmax": 2, "LayerNormalization": 8,
    "BatchNormalization": 2, "InstanceNormalization": 8, "GroupNormalization": 8,
    "LpNormalization": 3, "MeanVarianceNormalization": 6, "SimplifiedLayerNormalization": 6,
    "RMSNormalization": 6,
}
# Ops with their own rule in `digital_ops_count`.
WINDOWED = {"LRN"}
# Reductions and global pooling: one op per input element.
REDUCTION = {
    "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
    "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "GlobalAveragePool", "GlobalMaxPool",
    "GlobalLpPool", "ArgMax", "ArgMin", "CumSum", "TopK",
}
# Windowed pooling: one op per output element per kernel element.
POOLING = {"MaxPool", "AveragePool", "LpPool"}
# Data movement only: no arithmetic, bytes moved.
MOVEMENT = {
    "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Split", "Slice",
    "Gather", "GatherElements", "GatherND", "ScatterND", "ScatterElements", "Scatter", "Expand",
    "Tile", "Pad", "Identity", "Dropout", "Shape", "Size", "ConstantOfShape", "Range",
    "DepthToSpace", "SpaceToDepth", "Compress", "NonZero", "OneHot", "Trilu", "EyeLike",
    "ReverseSequence", "SplitToSequence", "Constant", "Upsample", "Resize",
}
# Products of two activations (attention) or dynamic weights: counted as MACs.
PRODUCTS = {"MatMul", "Gemm", "Einsum", "Conv", "ConvTranspose"}

DIGITAL_OPS = ELEMENTWISE | set(TRANSCENDENTAL) | set(NORMALIZATION) | REDUCTION | POOLING \
    | MOVEMENT | PRODUCTS | WINDOWED


def _size(shape: Sequence[int]) -> int:
    return int(np.prod(shape, dtype=np.int64)) if len(shape) else 1


def digital_ops_count(op_type: str, attrs: dict, in_shapes: Sequence[Sequence[int] | None],
                      out_shapes: Sequence[Sequence[int]]) -> int:
    """Arithmetic operations of one digital op per inference."""
    out = sum(_size(s) for s in out_shapes)
    first_in = _size(in_shapes[0]) if in_shapes and in_shapes[0] is not None else out
    if op_type in ELEMENTWISE:
        return out
    if op_type in TRANSCENDENTAL:
        return TRANSCENDENTAL[op_type] * out
    if op_type in NORMALIZATION:
        return NORMALIZATION[op_type] * out
    if op_type in REDUCTION:
        return first_in
    if op_type == "LRN":
        # per output element: `size` squares and adds over the channel window, then the scale
        # and bias (2), the power (as exp/log, 4) and the division (1).
        return out * (2 * int(attrs.get("size", 1)) + 7)
    if op_type in POOLING:
        return out * _size(attrs.get("kernel_shape", [1]))
    if op_type == "Resize" or op_type == "Upsample":
        return 4 * out
    if op_type in MOVEMENT:
        return 0
    if op_type in ("MatMul", "Gemm"):
        a = in_shapes[0] or (1,)
        k = a[-1] if op_type == "MatMul" or not attrs.get("transA") else a[0]
        return 2 * out * int(k)
    if op_type in ("Conv", "ConvTranspose"):
        w = in_shapes[1] or (1, 1)
        per_out = _size(w[1:]) if op_type == "Conv" else _size(w[2:]) * int(w[0]) // max(1, int(attrs.get("group", 1)))
        return 2 * out * per_out
    if op_type == "Einsum":
        # 2 * product of every index extent (contracted ones included).
        eq = str(attrs.get("equation", "")).replace(" ", "")
        lhs = eq.split("->")[0].split(",")
        extent: dict[str, int] = {}
        for term, shape in zip(lhs, in_shapes):
            if shape is None:
                continue
            letters = [c for c in term if c.isalpha()]
            for c, d in zip(letters, list(shape)[-len(letters):] if letters else []):
                extent[c] = int(d)
        return 2 * _size(list(extent.values()))
    raise KeyError(op_type)
