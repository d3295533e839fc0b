"""Constant folding of weight subgraphs, so a weight is found however the exporter wrote it.

Any node whose inputs are all constant is evaluated (Constant, ConstantOfShape, Identity, Cast,
Reshape/Transpose/Unsqueeze of initializers, DequantizeLinear, Cast->Mul dequantization, shape
arithmetic...). ``Shape``/``Size`` of a tensor whose shape is statically known fold too, which
turns the dynamic reshapes of exported attention into constants once the input shape is fixed.
Common ops use numpy directly; the rest go through onnx's reference evaluator.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from imccompile.errors import ModelImportError
from imccompile.frontend.load import dims_of

NONDETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                    "Multinomial", "Bernoulli", "Dropout"}


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _transpose(node: onnx.NodeProto, x: np.ndarray) -> np.ndarray:
    perm = _attr(node, "perm")
    return np.ascontiguousarray(np.transpose(x, perm if perm is not None else None))


def _reshape(node: onnx.NodeProto, x: np.ndarray, shape: np.ndarray) -> np.ndarray:
    shape = [int(s) for s in shape]
    if not _attr(node, "allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _unsqueeze(node: onnx.NodeProto, x: np.ndarray, axes: np.ndarray | None = None) -> np.ndarray:
    ax = [int(a) for a in (axes if axes is not None else _attr(node, "axes"))]
    rank = x.ndim + len(ax)
    out = x
    for a in sorted(a % rank for a in ax):
        out = np.expand_dims(out, a)
    return out


def _dequantize(node: onnx.NodeProto, x: np.ndarray, scale: np.ndarray,
                zp: np.ndarray | None = None) -> np.ndarray:
    axis = _attr(node, "axis", 1)
    block = _attr(node, "block_size", 0)
    if block:
        return None  # type: ignore[return-value]  # let the reference evaluator handle blocks
    xf = x.astype(np.float32)
    if zp is not None and zp.size:
        zpf = zp.astype(np.float32)
    else:
        zpf = np.zeros((), np.float32)
    if scale.ndim == 1 and scale.size > 1:
        shape = [1] * x.ndim
        shape[axis % x.ndim] = scale.size
        scale = scale.reshape(shape)
        zpf = zpf.reshape(shape) if zpf.size > 1 else zpf
    return ((xf - zpf) * scale.astype(np.float32)).astype(scale.dtype)


FAST: dict[str, Callable[..., np.ndarray]] = {
    "Identity": lambda n, x: x,
    "Cast": lambda n, x: x.astype(onnx.helper.tensor_dtype_to_np_dtype(_attr(n, "to"))),
    "Transpose": _transpose,
    "Reshape": _reshape,
    "Unsqueeze": _unsqueeze,
    "DequantizeLinear": _dequantize,
    "Mul": lambda n, a, b: np.multiply(a, b),
    "Add": lambda n, a, b: np.add(a, b),
    "Sub": lambda n, a, b: np.subtract(a, b),
}


def _evaluate(node: onnx.NodeProto, feeds: list[np.ndarray | None], opset: int) -> list[np.ndarray]:
    if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
        return [numpy_helper.to_array(node.attribute[0].t)]
    if node.op_type in FAST and all(f is not None for f in feeds):
        try:
            out = FAST[node.op_type](node, *feeds)
        except Exception:
            out = None
        if out is not None:
            if node.op_type in ("Mul", "Add", "Sub") and feeds[0].dtype != feeds[1].dtype:
                out = None  # mixed dtypes: let the reference evaluator apply ONNX's rules
        if out is not None:
            return [np.asarray(out)]
    from onnx.reference import ReferenceEvaluator

    inputs = [f"i{k}" if f is not None else "" for k, f in enumerate(feeds)]
    outputs = [f"o{k}" for k in range(len(node.output))]
    clone = onnx.helper.make_node(node.op_type, inputs, outputs, domain=node.domain)
    clone.attribute.extend(node.attribute)
    ref = ReferenceEvaluator(clone, opsets={"": opset})
    res = ref.run(None, {f"i{k}": f for k, f in enumerate(feeds) if f is not None})
    return [np.asarray(r) for r in res]


def fold_constants(nodes: list[onnx.NodeProto], consts: dict[str, np.ndarray],
                   infos: Mapping[str, onnx.ValueInfoProto], opset: int,
                   display: str) -> tuple[list[onnx.NodeProto], bool]:
    """Evaluate every node whose inputs are constant; returns remaining nodes and whether any
    node was folded. ``consts`` is extended in place with the folded outputs."""
    kept: list[onnx.NodeProto] = []
    changed = False
    for node in nodes:
        if node.domain not in ("", "ai.onnx") or node.op_type in NONDETERMINISTIC:
            kept.append(node)
            continue
        if node.op_type in ("Shape", "Size"):
            vi = infos.get(node.input[0])
            dims = dims_of(vi) if vi is not None else None
            if node.input[0] in consts:  # small constants have no value info
                dims = tuple(int(d) for d in np.shape(consts[node.input[0]]))
            if dims is None or not all(isinstance(d, int) for d in dims):
                kept.append(node)
                continue
            shape = np.array(dims, dtype=np.int64)
            if node.op_type == "Size":
                value = np.array(int(np.prod(shape)), dtype=np.int64)
            else:
                start, end = _attr(node, "start", 0), _attr(node, "end", None)
                value = shape[start:end] if end is not None else shape[start:]
            consts[node.output[0]] = value
            changed = True
            continue
        if node.op_type == "CastLike" and node.input[0] in consts and node.input[1] not in consts:
            vi = infos.get(node.input[1])  # only the dtype of the second input matters
            if vi is not None and vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
                dt = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
                consts[node.output[0]] = np.asarray(consts[node.input[0]]).astype(dt)
                changed = True
                continue
        if node.op_type == "Dropout" or any(i and i not in consts for i in node.input):
            kept.append(node)
            continue
        feeds = [consts[i] if i else None for i in node.input]
        try:
            outs = _evaluate(node, feeds, opset)
        except Exception as e:
            raise ModelImportError(
                f"{display}: cannot fold constant node {node.name or '(unnamed)'!r} "
                f"({node.op_type}): {type(e).__name__}: {str(e)[:200]}") from None
        for name, value in zip(node.output, outs):
            if name:
                consts[name] = value
        changed = True
    return kept, changed

