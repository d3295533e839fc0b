"""Control flow the frontend can resolve: an ``If`` whose condition folds to a constant (after
the given input shapes and constant folding) is replaced by the branch it takes. Any other
If, Loop or Scan is refused, naming the node."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from imccompile.errors import ModelImportError

CONTROL_FLOW = {"If", "Loop", "Scan"}


def _inner_names(g: onnx.GraphProto) -> set[str]:
    names = {i.name for i in g.initializer} | {i.name for i in g.input}
    for n in g.node:
        names.update(o for o in n.output if o)
    return names


def _rename(node: onnx.NodeProto, names: dict[str, str]) -> onnx.NodeProto:
    out = onnx.NodeProto()
    out.CopyFrom(node)
    del out.input[:]
    out.input.extend(names.get(i, i) for i in node.input)
    del out.output[:]
    out.output.extend(names.get(o, o) for o in node.output)
    for a in out.attribute:  # nested subgraphs read outer names too
        for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else
                    list(a.graphs) if a.type == onnx.AttributeProto.GRAPHS else []):
            for k, inner in enumerate(sub.node):
                sub.node[k].CopyFrom(_rename(inner, {o: n for o, n in names.items()
                                                      if o not in _inner_names(sub)}))
    return out


def inline_constant_ifs(nodes: list[onnx.NodeProto], consts: dict[str, np.ndarray]
                        ) -> tuple[list[onnx.NodeProto], bool]:
    """Replace each default-domain If whose condition is in ``consts`` by its taken branch:
    the branch's names get the If's name as a prefix, its initializers join ``consts``, and
    Identity nodes carry its outputs to the If's outputs."""
    out: list[onnx.NodeProto] = []
    changed = False
    for k, node in enumerate(nodes):
        if node.op_type != "If" or node.domain not in ("", "ai.onnx") \
                or node.input[0] not in consts:
            out.append(node)
            continue
        cond = np.asarray(consts[node.input[0]])
        if cond.size != 1:
            out.append(node)
            continue
        attr = {a.name: a.g for a in node.attribute}
        branch = attr["then_branch" if bool(cond.reshape(-1)[0]) else "else_branch"]
        prefix = f"{node.name or f'If_{k}'}/"
        names = {n: prefix + n for n in _inner_names(branch)}
        for init in branch.initializer:
            consts[names[init.name]] = numpy_helper.to_array(init)
        for n in branch.node:
            inner = _rename(n, names)
            inner.name = prefix + (n.name or n.op_type)
            out.append(inner)
        for src, dst in zip(branch.output, node.output):
            if dst:
                out.append(onnx.helper.make_node("Identity", [names.get(src.name, src.name)],
                                                 [dst], name=prefix + "output_" + dst))
        changed = True
    return out, changed


def refuse_control_flow(nodes: list[onnx.NodeProto], display: str) -> None:
    for node in nodes:
        if node.op_type not in CONTROL_FLOW or node.domain not in ("", "ai.onnx"):
            continue
        why = ""
        if node.op_type == "If":
            why = (f" (its condition {node.input[0]!r} is computed from the inputs; an If whose "
                   "condition folds to a constant, e.g. after --input-shape, is inlined)")
        raise ModelImportError(
            f"{display}: node {node.name or '(unnamed)'!r} is {node.op_type}: control flow is "
            f"not supported{why}; export the model with loops unrolled and branches resolved "
            "(e.g. torch.onnx.export on a traced model)")
