"""Operation counts for ops executed by the digital periphery.

Each ONNX op type the frontend accepts as digital has a cost rule here; an op type absent from
every table is refused (`imccompile.frontend.optable` says why, naming the node), never silently
priced at zero. Counts are per inference: ``ops`` arithmetic operations (a multiply-accumulate
counts 2: one multiply, one add; a comparison, a min/max or a select counts 1), ``bytes`` read
and written (computed by the converter from the tensors' sizes).

How each count is derived is written beside its table or rule. Where a count depends on data
the graph does not give statically (a RoI's size, how many boxes survive NMS), the rule states
the assumption it makes.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

Shape = Sequence[int]

# One arithmetic op per output element: the op itself (a binary op, a compare, a select, a
# clip = one min/max pair counted as 1, a cast or a (de)quantization = one scale-and-round).
ELEMENTWISE = {
    "Add", "Sub", "Mul", "Div", "Relu", "LeakyRelu", "PRelu", "Neg", "Abs", "Max", "Min", "Sum",
    "Mean", "Clip", "Sign", "Floor", "Ceil", "Round", "Equal", "Less", "Greater", "LessOrEqual",
    "GreaterOrEqual", "And", "Or", "Not", "Xor", "Where", "Pow", "Mod", "BitShift", "Reciprocal",
    "Sqrt", "IsNaN", "IsInf", "QuantizeLinear", "DequantizeLinear", "Cast", "CastLike",
    "ThresholdedRelu", "Shrink", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot",
    "DynamicQuantizeLinear",
}
# Transcendental functions: ops per output element. A function evaluated by a short polynomial
# or a LUT with interpolation on the digital unit counts 4 (Exp, Log, Tanh, Sigmoid, Erf, the
# trigonometric family); composites add their extra arithmetic to that: HardSigmoid = a
# multiply-add + a clip (2), HardSwish = HardSigmoid + a multiply (3), Gelu = Erf (4) + scale,
# add, two multiplies (8), Softplus = Exp + Log + an add (... rounded to 5 with the compare
# that guards large x), Softsign = abs, add, divide (3), Elu = Exp + sub, mul, compare... (4),
# Selu / Celu = Elu + a scale (5), Mish = Softplus (5) + Tanh (4) + a multiply (10),
# Swish = Sigmoid (4) + the multiplies by alpha and by x (6).
TRANSCENDENTAL = {
    "Exp": 4, "Log": 4, "Tanh": 4, "Sigmoid": 4, "HardSigmoid": 2, "HardSwish": 3, "Erf": 4,
    "Gelu": 8, "Softplus": 5, "Softsign": 3, "Elu": 4, "Selu": 5, "Celu": 5, "Mish": 10,
    "Sin": 4, "Cos": 4, "Tan": 4, "Asin": 4, "Acos": 4, "Atan": 4, "Sinh": 4, "Cosh": 4,
    "Asinh": 4, "Acosh": 4, "Atanh": 4, "Swish": 6,
}
# Normalizations and softmax: ops per output element.
#   Layer/Instance/Group normalization (8): the mean (1 add), the variance (a subtract, a square
#   and an add: 3), normalizing (a subtract and a multiply by the per-group 1/sqrt: 2), the
#   scale and bias (2); the per-group sqrt and reciprocal are negligible beside the elements.
#   MeanVarianceNormalization (6) and RMS / simplified layer norm (6): without the affine part,
#   resp. mean of squares (2) + multiply (1) + scale (1), rounded up for the rsqrt.
#   BatchNormalization at inference (2): one multiply-add with folded constants.
#   Softmax (5): max (1), subtract (1), exp by LUT (1), sum (1), divide (1); LogSoftmax adds the
#   log of the sum (6); Hardmax: max (1) and the one-hot write (1).
#   LpNormalization (3): square (or abs), add, divide by the norm.
NORMALIZATION = {
    "Softmax": 5, "LogSoftmax": 6, "Hardmax": 2, "LayerNormalization": 8,
    "BatchNormalization": 2, "InstanceNormalization": 8, "GroupNormalization": 8,
    "LpNormalization": 3, "MeanVarianceNormalization": 6, "SimplifiedLayerNormalization": 6,
    "RMSNormalization": 6,
}
# Reductions and global pooling: one op (add, compare, multiply) per *input* element.
REDUCTION = {
    "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
    "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "GlobalAveragePool", "GlobalMaxPool",
    "GlobalLpPool", "ArgMax", "ArgMin", "CumSum", "CumProd",
}
# Windowed pooling: one op per output element per kernel element.
POOLING = {"MaxPool", "AveragePool", "LpPool"}
# Data movement only: no arithmetic, the bytes moved are the cost.
MOVEMENT = {
    "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Split", "Slice",
    "Gather", "GatherElements", "GatherND", "ScatterND", "ScatterElements", "Scatter", "Expand",
    "Tile", "Pad", "Identity", "Dropout", "Shape", "Size", "ConstantOfShape", "Range",
    "DepthToSpace", "SpaceToDepth", "Compress", "NonZero", "OneHot", "Trilu", "EyeLike",
    "ReverseSequence", "Constant", "BitCast", "CenterCropPad", "MaxUnpool", "TensorScatter",
}
# Products of two activations (attention) or of a dynamic weight: counted as MACs (2 ops each).
PRODUCTS = {"MatMul", "Gemm", "Einsum", "Conv", "ConvTranspose"}


def _size(shape: Shape | None) -> int:
    return int(np.prod(shape, dtype=np.int64)) if shape is not None and len(shape) else 1


def _log2(n: int) -> int:
    return max(1, math.ceil(math.log2(max(2, n))))


Rule = Callable[[dict, Sequence["Shape | None"], Sequence[Shape]], int]


def _in(in_shapes: Sequence[Shape | None], k: int) -> Shape | None:
    return in_shapes[k] if len(in_shapes) > k else None


def _lrn(attrs: dict, ins: Sequence[Shape | None], outs: Sequence[Shape]) -> int:
    # per output element: `size` squares and adds over the channel window, then the scale and
    # bias (2), the power (as exp/log, 4) and the division (1).
    return _size(outs[0]) * (2 * int(attrs.get("size", 1)) + 7)


def _resize(attrs: dict, ins: Sequence[Shape | None], outs: Sequence[Shape]) -> int:
    # Interpolation over the r resized axes: nearest reads one source element (its index
    # arithmetic: 1 op per output element); linear blends 2^r neighbours and cubic 4^r, each
    # with a multiply and an add (2 ops per tap).
    x, y = ins[0], outs[0]
    r = sum(1 for a, b in zip(x or (), y) if a != b) or 1
    mode = str(attrs.get("mode", "nearest"))
    taps = {"linear": 2, "bilinear": 2, "cubic": 4}.get(mode)
    return _size(y) * (1 if taps is None else 2 * taps ** r)


def _topk(attrs: dict, ins: Sequence[Shape | None], outs: Sequence[Shape]) -> int:
    # A size-k heap per slice: each input element is compared into it in log2(k+1) steps.
    y = outs[0]
    axis = int(attrs.get("axis", -1))
    k = int(y[axis]) if len(y) else 1
    return _size(ins[0] or y) * max(1, math.ceil(math.log2(k + 1)))


def _pooling(attrs: dict, ins: Sequence[Shape | None], outs: Sequence[Shape]) -> int:
    return sum(_size(s) for s in outs) * _size(attrs.get("kernel_shape", [1]))


def _matmul(attrs: dict, ins: Sequence[Shape | None], outs: Sequence[Shape], gemm: bool) -> int:
    a = ins[0] or (1,)
    k = a[0] if gemm and attrs.get("transA") else a[-1]
    return 2 * _size(outs[0]) * int(k)


def _conv(attrs: dict, ins: Sequence[Shape | None], outs: Sequence[Shape], transpose: bool) -> int:
    # 2 ops per MAC; MACs per output element = the weights one output reads.
    w = _in(ins, 1) or (1, 1)
    if transpose:  # W is [C_in, C_out/g, k...]: an output reads C_in/g x k... weights
        per_out = _size(w[2:]) * int(w[0]) // max(1, int(attrs.get("group", 1)))
    else:  # W is [C_out, C_in/g, k...]
        per_out = _size(w[1:])
    return 2 * _size(outs[0]) * per_out


def _einsum(attrs: dict, ins: Sequence[Shape | None], outs: Sequence[Shape]) -> int:
    # Every combination of index values is one multiply-accumulate: 2 x the product of every
    # index extent, contracted ones included (inputs beyond the second add one multiply each).
    eq = str(attrs.get("equation", "")).replace(" ", "")
    lhs = eq.split("->")[0].split(",")
    extent: dict[str, int] = {}
    for term, shape in zip(lhs, ins):
        if shape is None:
            continue
        letters = [c for c in term if c.isalpha()]
        ell = len(shape) - len(letters)  # dims the ellipsis stands for
        if "..." in term and ell > 0:
            for j, d in enumerate(shape[:ell]):
                extent[f"...{j}"] = max(extent.get(f"...{j}", 1), int(d))
            dims = list(shape[ell:])
        else:
            dims = list(shape)[-len(letters):] if letters else []
        for c, d in zip(letters, dims):
            extent[c] = int(d)
    return 2 * max(1, len(lhs) - 1) * _size(list(extent.values()))


def _attention(attrs: dict, ins: Sequence[Shape | None], outs: Sequence[Shape]) -> int:
    # Scaled dot-product attention over S = B x H x Sq x Skv scores: Q.K^T (2 D per score),
    # scaling and mask (2), softmax (5, as above), and the product with V (2 Dv per score).
    q, k, v = ins[0] or (1, 1, 1), _in(ins, 1) or (1, 1, 1), _in(ins, 2) or (1, 1, 1)
    if len(q) == 4:  # [B, H, Sq, D]
        b, h, sq, d = (int(e) for e in q)
        skv, dv = int(k[-2]), int(v[-1])
    else:  # [B, Sq, H*D] with q_num_heads / kv_num_heads
        h = int(attrs.get("q_num_heads", 1)) or 1
        hkv = int(attrs.get("kv_num_heads", h)) or h
        b, sq, d = int(q[0]), int(q[1]), int(q[2]) // h
        skv, dv = int(k[1]), int(v[-1]) // hkv
    past = _in(ins, 4)
    if past is not None and len(past) == 4:
        skv += int(past[-2])
    return b * h * sq * skv * (2 * d + 2 + 5 + 2 * dv)


def _linear_attention(attrs: dict, ins: Sequence[Shape | None], outs: Sequence[Shape]) -> int:
    # Per token and KV head, the state S (dk x dv) update: linear S += k (x) v (2 dk dv);
    # gated adds the decay multiply (+dk dv); delta adds S^T k (2 dk dv) and the beta-scaled
    # difference (2 dv). Per token and query head, the read-out q^T S (2 dk dv) and scale (dv).
    q, k, v = ins[0] or (1, 1, 1), _in(ins, 1) or (1, 1, 1), _in(ins, 2) or (1, 1, 1)
    hq = int(attrs.get("q_num_heads", 1)) or 1
    hkv = int(attrs.get("kv_num_heads", hq)) or hq
    bt = int(q[0]) * int(q[1])
    dk, dv = int(k[-1]) // hkv, int(v[-1]) // hkv
    rule = str(attrs.get("update_rule", "linear"))
    update = {"linear": 2 * dk * dv, "gated": 3 * dk * dv, "delta": 4 * dk * dv + 2 * dv,
              "gated_delta": 5 * dk * dv + 2 * dv}.get(rule, 5 * dk * dv + 2 * dv)
    return bt * (hkv * update + hq * (2 * dk * dv + dv))


def _grid_sample(attrs: dict, ins: Sequence[Shape | None], outs: Sequence[Shape]) -> int:
    # Per output element, a multiply and an add per tap: nearest reads 1 tap, (bi/tri)linear
    # 2^r and (bi)cubic 4^r over the r spatial dims; plus the coordinate unnormalization
    # (a multiply-add per spatial dim, shared by the channels: ignored).
    y = outs[0]
    r = max(1, len(y) - 2)
    mode = str(attrs.get("mode", "linear"))
    taps = 1 if mode == "nearest" else (4 if mode in ("cubic", "bicubic") else 2) ** r
    return _size(y) * 2 * taps


def _roi_align(attrs: dict, ins: Sequence[Shape | None], outs: Sequence[Shape]) -> int:
    # Each output bin averages s x s bilinear samples (4 taps: 8 ops each) then divides (1).
    # sampling_ratio 0 (adaptive: ceil(roi size / bin count), data dependent) is taken as 2.
    s = int(attrs.get("sampling_ratio", 0)) or 2
    return _size(outs[0]) * (s * s * 8 + 1)


def _max_roi_pool(attrs: dict, ins: Sequence[Shape | None], outs: Sequence[Shape]) -> int:
    # Each output bin is a max over its window; a RoI's size is data dependent, so the bound of a
    # RoI covering the whole map is taken: ceil(H/ph) x ceil(W/pw) compares per output element.
    x = ins[0] or (1, 1, 1, 1)
    y = outs[0]
    window = math.ceil(int(x[-2]) / max(1, int(y[-2]))) * math.ceil(int(x[-1]) / max(1, int(y[-1])))
    return _size(y) * window


def _nms(attrs: dict, ins: Sequence[Shape | None], outs: Sequence[Shape]) -> int:
    # Greedy NMS per (batch, class) over N boxes: a sort by score (N log2 N compares) and, in
    # the worst case (no box suppressed early), the IoU of every pair, N(N-1)/2, at 15 ops each
    # (two areas: 6; the intersection's 4 min/max, 2 subtracts, 2 clips and a multiply: 9 ...
    # minus the areas computed once: union, divide and threshold compare ~ 15 in all).
    boxes, scores = ins[0] or (1, 1, 4), _in(ins, 1) or (1, 1, 1)
    b, c, n = int(scores[0]), int(scores[1]), int(boxes[1])
    return b * c * (n * _log2(n) + 15 * n * (n - 1) // 2)


def _deform_conv(attrs: dict, ins: Sequence[Shape | None], outs: Sequence[Shape]) -> int:
    # The weight product of a conv (2 ops per MAC, as Conv), plus one bilinear sample per input
    # channel, kernel tap and output position (4 taps x 2 ops, 2 for the weights' fractions = 10)
    # and the mask multiply (1). The sampled positions depend on the input (the offsets), so the
    # im2col is digital and so is the product here.
    x, w = ins[0] or (1, 1, 1, 1), _in(ins, 1) or (1, 1, 1, 1)
    y = outs[0]
    positions = int(y[0]) * _size(y[2:])
    samples = positions * int(x[1]) * _size(w[2:])
    return 2 * _size(y) * _size(w[1:]) + 11 * samples


def _causal_conv(attrs: dict, ins: Sequence[Shape | None], outs: Sequence[Shape]) -> int:
    # Depthwise causal conv (weight [C, 1, k]): k MACs per output element (2 ops each), the
    # bias add (1) and the fused SiLU when asked (Swish: 6).
    w = _in(ins, 1) or (1, 1, 1)
    act = 6 if str(attrs.get("activation", "")).lower() in ("silu", "swish") else 0
    return _size(outs[0]) * (2 * int(w[-1]) + 1 + act)


def _dft(attrs: dict, ins: Sequence[Shape | None], outs: Sequence[Shape]) -> int:
    # A radix-2 complex FFT of length L takes 5 L log2 L real ops (Cooley-Tukey's classic count);
    # the output holds P = elements / 2 complex points, P / L transforms of length L.
    y = outs[0]
    axis = int(attrs.get("axis", 1))
    axis = axis if axis >= 0 else len(y) + axis
    length = int(y[axis]) if 0 <= axis < len(y) - 1 else int(y[-2] if len(y) > 1 else 1)
    points = _size(y) // 2
    return 5 * points * _log2(length)


def _stft(attrs: dict, ins: Sequence[Shape | None], outs: Sequence[Shape]) -> int:
    # Output [B, frames, bins, 2]: per frame, the window multiply (L) and an FFT of the frame
    # length L (5 L log2 L, as DFT); L = 2 (bins - 1) for a onesided output, else bins.
    y = outs[0]
    b, frames, bins = int(y[0]), int(y[1]), int(y[2])
    length = 2 * (bins - 1) if int(attrs.get("onesided", 1)) else bins
    length = max(1, length)
    return b * frames * (length + 5 * length * _log2(length))


def _window(per_element: int) -> Rule:
    # Hann / Hamming: one cosine (4) and a multiply-add (2) per sample; Blackman: two cosines and
    # two multiply-adds (12).
    return lambda attrs, ins, outs: per_element * _size(outs[0])


def _col2im(attrs: dict, ins: Sequence[Shape | None], outs: Sequence[Shape]) -> int:
    # Every input column element is added into its image position: one add per input element.
    return _size(ins[0] or outs[0])


def _det(attrs: dict, ins: Sequence[Shape | None], outs: Sequence[Shape]) -> int:
    # LU decomposition of each n x n matrix: 2 n^3 / 3 ops, then the product of the diagonal (n).
    x = ins[0] or (1, 1)
    n = int(x[-1])
    return _size(x[:-2]) * (2 * n ** 3 // 3 + n)


def _rotary(attrs: dict, ins: Sequence[Shape | None], outs: Sequence[Shape]) -> int:
    # y = x cos + rotate_half(x) sin: two multiplies and an add per rotated element (the cos/sin
    # caches are inputs, gathered by position: data movement).
    return 3 * _size(outs[0])


def _swiglu(attrs: dict, ins: Sequence[Shape | None], outs: Sequence[Shape]) -> int:
    # Swish of the gate (6, as Swish) and the multiply by the value (1).
    return 7 * _size(outs[0])


def _unique(attrs: dict, ins: Sequence[Shape | None], outs: Sequence[Shape]) -> int:
    # Sort-based: n log2 n compares, then one compare per element to drop repeats.
    n = _size(ins[0] or outs[0])
    return n * _log2(n) + n


def _affine_grid(attrs: dict, ins: Sequence[Shape | None], outs: Sequence[Shape]) -> int:
    # Each grid point's coordinates are theta (r x (r+1)) times [x, y, (z), 1]: per output
    # coordinate a dot product of length r+1 (2 (r+1) ops).
    y = outs[0]
    r = int(y[-1]) if len(y) else 2
    return _size(y) * 2 * (r + 1)


def _mel(attrs: dict, ins: Sequence[Shape | None], outs: Sequence[Shape]) -> int:
    # The triangular filter bank: per matrix entry the bin frequency, two slope divisions and a
    # clip (4). Its inputs are nearly always constant, so it folds away before this counts.
    return 4 * _size(outs[0])


def _tfidf(attrs: dict, ins: Sequence[Shape | None], outs: Sequence[Shape]) -> int:
    # Per input position one n-gram hash lookup and count per n-gram length up to max_gram_length
    # (skip-grams up to max_skip_count multiply that), then the weighting of every output (1).
    n = _size(ins[0] or (1,))
    grams = int(attrs.get("max_gram_length", 1)) * (int(attrs.get("max_skip_count", 0)) + 1)
    return n * grams + _size(outs[0])


RULES: dict[str, Rule] = {
    "LRN": _lrn, "Resize": _resize, "Upsample": _resize, "TopK": _topk,
    "MatMul": lambda a, i, o: _matmul(a, i, o, False), "Gemm": lambda a, i, o: _matmul(a, i, o, True),
    "Conv": lambda a, i, o: _conv(a, i, o, False),
    "ConvTranspose": lambda a, i, o: _conv(a, i, o, True),
    "Einsum": _einsum, "Attention": _attention, "LinearAttention": _linear_attention,
    "GridSample": _grid_sample, "RoiAlign": _roi_align, "MaxRoiPool": _max_roi_pool,
    "NonMaxSuppression": _nms, "DeformConv": _deform_conv, "CausalConvWithState": _causal_conv,
    "DFT": _dft, "STFT": _stft, "HannWindow": _window(6), "HammingWindow": _window(6),
    "BlackmanWindow": _window(12), "Col2Im": _col2im, "Det": _det, "RotaryEmbedding": _rotary,
    "SwiGLU": _swiglu, "Unique": _unique, "AffineGrid": _affine_grid, "MelWeightMatrix": _mel,
    "TfIdfVectorizer": _tfidf,
}
for _op in POOLING:
    RULES[_op] = _pooling

DIGITAL_OPS = ELEMENTWISE | set(TRANSCENDENTAL) | set(NORMALIZATION) | REDUCTION | MOVEMENT \
    | PRODUCTS | set(RULES)


def digital_ops_count(op_type: str, attrs: dict, in_shapes: Sequence[Shape | None],
                      out_shapes: Sequence[Shape]) -> int:
    """Arithmetic operations of one digital op per inference (KeyError for an op with no rule)."""
    out = sum(_size(s) for s in out_shapes)
    if op_type in ELEMENTWISE:
        return out
    if op_type in TRANSCENDENTAL:
        return TRANSCENDENTAL[op_type] * out
    if op_type in NORMALIZATION:
        return NORMALIZATION[op_type] * out
    if op_type in REDUCTION:
        return _size(in_shapes[0]) if in_shapes and in_shapes[0] is not None else out
    if op_type in RULES:
        return int(RULES[op_type](attrs, in_shapes, out_shapes))
    if op_type in MOVEMENT:
        return 0
    raise KeyError(op_type)
