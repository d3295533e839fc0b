"""Constant folding of weight subgraphs, so a weight is found however the exporter wrote it.

Every node whose inputs are all constant (Constant, ConstantOfShape, Cast, Reshape/Transpose of
initializers, DequantizeLinear, Expand/GatherElements of buffers, shape arithmetic...) is
evaluated, and ``Shape``/``Size`` of a tensor whose shape onnx's shape inference knows fold too,
which turns the dynamic reshapes of exported attention into constants once the input shape is
fixed.

No op semantics are written here: the constant subgraph of one round is run in **onnxruntime**
(the runtime the accuracy is measured with) in one session, constants fed as inputs so nothing
is serialized. Where onnxruntime has no kernel for a node (an old or exotic type), that node
alone goes to onnx's reference evaluator; a node neither can evaluate is refused by name.
"""

from __future__ import annotations

from typing import Iterable, Mapping

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


def _has_subgraph(node: onnx.NodeProto) -> bool:
    return any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
               for a in node.attribute)


def _session(nodes: list[onnx.NodeProto], feeds: Mapping[str, np.ndarray],
             outputs: Iterable[str], opset: int):
    import onnxruntime as ort

    g = onnx.GraphProto(name="constants")
    g.node.extend(nodes)
    for name, arr in feeds.items():
        et = onnx.helper.np_dtype_to_tensor_dtype(arr.dtype)
        g.input.append(onnx.helper.make_tensor_value_info(name, et, list(arr.shape)))
    g.output.extend(onnx.ValueInfoProto(name=o) for o in outputs)
    op = onnx.helper.make_opsetid("", opset)
    m = onnx.helper.make_model(g, opset_imports=[op])
    m.ir_version = onnx.helper.find_min_ir_version_for([op], True)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 4  # failures fall back (or are raised) here, not logged
    so.intra_op_num_threads = 1
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _run_ort(nodes: list[onnx.NodeProto], consts: Mapping[str, np.ndarray],
             outputs: list[str], opset: int) -> dict[str, np.ndarray]:
    produced = {o for n in nodes for o in n.output}
    feeds = {i: np.asarray(consts[i], order="C") for n in nodes for i in n.input
             if i and i not in produced}
    sess = _session(nodes, feeds, outputs, opset)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def _run_reference(node: onnx.NodeProto, feeds: list[np.ndarray | None],
                   opset: int) -> list[np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    inputs = [f"i{k}" if f is not None else "" for k, f in enumerate(feeds)]
    outputs = [f"o{k}" for k in range(len(node.output))]
    clone = onnx.helper.make_node(node.op_type, inputs, outputs, domain=node.domain)
    clone.attribute.extend(node.attribute)
    ref = ReferenceEvaluator(clone, opsets={"": opset})
    res = ref.run(None, {f"i{k}": f for k, f in enumerate(feeds) if f is not None})
    return [np.asarray(r) for r in res]


def evaluate_node(node: onnx.NodeProto, consts: Mapping[str, np.ndarray], opset: int,
                  display: str) -> dict[str, np.ndarray]:
    """One constant node's outputs: onnxruntime, else onnx's reference evaluator."""
    if node.op_type == "Identity":  # an alias (tied weights): no copy of a big weight
        return {node.output[0]: consts[node.input[0]]}
    if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
        return {node.output[0]: numpy_helper.to_array(node.attribute[0].t)}
    outs = [o for o in node.output if o]
    try:
        return _run_ort([node], consts, outs, opset)
    except Exception as first:
        try:
            res = _run_reference(node, [consts[i] if i else None for i in node.input], opset)
        except Exception:  # report onnxruntime's reason: it is the runtime the user has
            e = first
            msg = " ".join(str(e).split())[:240]
            raise ModelImportError(
                f"{display}: cannot fold constant node {node.name or '(unnamed)'!r} "
                f"({node.op_type}): {type(e).__name__}: {msg}") from None
        return {n: v for n, v in zip(node.output, res) if n}


def fold_constants(nodes: list[onnx.NodeProto], consts: dict[str, np.ndarray],
                   infos: Mapping[str, onnx.ValueInfoProto], opset: int, display: str,
                   keep: Iterable[str] = ()) -> tuple[list[onnx.NodeProto], bool]:
    """Evaluate every node whose inputs are constant; returns remaining nodes and whether any
    node was folded. ``consts`` is extended in place with the folded outputs that remaining
    nodes read or that are in ``keep`` (the graph outputs)."""
    kept: list[onnx.NodeProto] = []
    foldable: list[onnx.NodeProto] = []
    known = set(consts)
    shapes: dict[str, np.ndarray] = {}
    for node in nodes:
        if node.domain not in ("", "ai.onnx") or node.op_type in NONDETERMINISTIC \
                or _has_subgraph(node):
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
            shapes[node.output[0]] = value
            known.add(node.output[0])
            continue
        if node.op_type == "CastLike" and node.input[0] in known and node.input[1] not in known:
            vi = infos.get(node.input[1])  # only the dtype of the second input matters
            if vi is not None and vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
                to = vi.type.tensor_type.elem_type
                cast = onnx.helper.make_node("Cast", [node.input[0]], [node.output[0]],
                                             name=node.name, to=to)
                foldable.append(cast)
                known.add(node.output[0])
                continue
        if any(i and i not in known for i in node.input):
            kept.append(node)
            continue
        foldable.append(node)
        known.update(o for o in node.output if o)
    if not foldable and not shapes:
        return nodes, False
    consts.update(shapes)
    wanted = {i for n in kept for i in n.input} | set(keep)
    outs = [o for n in foldable for o in n.output if o and o in wanted]
    aliases, plain, aliased = [], [], set(consts)
    for n in foldable:  # Identity chains on constants (tied weights) are aliases, not copies
        if n.op_type == "Identity" and n.input[0] in aliased:
            aliases.append(n)
            aliased.add(n.output[0])
        else:
            plain.append(n)
    wanted |= {a.input[0] for a in aliases}
    inner = sorted({o for n in plain for o in n.output if o} & wanted)
    values: dict[str, np.ndarray] = {}
    if inner:
        try:  # the whole constant subgraph of this round in one session
            values = _run_ort(plain, consts, inner, opset)
        except Exception:  # a kernel onnxruntime lacks: node by node, with a fallback
            scratch: dict[str, np.ndarray] = dict(consts)
            for node in plain:
                scratch.update(evaluate_node(node, scratch, opset, display))
            values = {o: scratch[o] for o in inner}
    for a in aliases:
        values[a.output[0]] = consts[a.input[0]] if a.input[0] in consts else values[a.input[0]]
    for name, value in values.items():
        consts[name] = np.asarray(value)
    return kept, True
