"""ONNX frontend: any ONNX model to the matrix-op IR.

Besides the frontend, only the modules that build or run ONNX models touch onnx / onnxruntime:
the emitter and the accuracy simulation, the program image's graph writer and executor. The IR,
layout, mapper, schedule and cost model never do (an import-linter contract in pyproject.toml,
checked by .ci/run)."""

from __future__ import annotations

import math
import os
from typing import Callable, Mapping

import numpy as np
import onnx

from imccompile.errors import ModelImportError
from imccompile.frontend.convert import Converter
from imccompile.frontend.control import inline_constant_ifs, refuse_control_flow
from imccompile.frontend.fold import fold_constants
from imccompile.frontend.recurrent import unroll_recurrent
from imccompile.frontend.optable import refuse_unsupported
from imccompile.frontend.qdq import integer_weights
from imccompile.frontend.upgrade import upgrade_opset
from imccompile.fuse import fold_batchnorm, fuse_bias_add
from imccompile.frontend.load import (
    InputShapes, check_model, dims_of, elem_dtype, fix_input_shapes, infer_shapes,
    initializer_arrays, parse_dim, parse_input_shape, read_model, shell_of,
)
from imccompile.ir import Graph, TensorInfo

__all__ = ["import_model", "parse_dim", "parse_input_shape"]

MAX_FOLD_ROUNDS = 8
MAX_TENSOR_ELEMENTS = 2**40  # 4 TiB of float32 in one activation


def _opset(proto: onnx.ModelProto) -> int:
    for o in proto.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 17


def _shapes_by_running(proto: onnx.ModelProto, nodes: list[onnx.NodeProto],
                       consts: Mapping[str, np.ndarray], missing: list[str],
                       tensors: dict[str, TensorInfo], display: str) -> None:
    """Last resort for shapes onnx cannot infer: run the graph once in onnxruntime."""
    import onnxruntime as ort
    from onnx import numpy_helper

    m = onnx.ModelProto()
    m.ir_version = proto.ir_version
    m.opset_import.extend(proto.opset_import)
    g = m.graph
    g.node.extend(nodes)
    g.input.extend(i for i in proto.graph.input if i.name not in consts)
    g.initializer.extend(numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items())
    used = {i for n in nodes for i in n.input}
    g.output.extend(proto.graph.output)
    g.output.extend(onnx.ValueInfoProto(name=n) for n in missing if n not in
                    {o.name for o in proto.graph.output})
    feeds = {}
    rng = np.random.default_rng(0)
    for vi in g.input:
        if vi.name not in used:
            continue
        info = tensors[vi.name]
        if np.dtype(info.dtype).kind == "f":
            feeds[vi.name] = rng.standard_normal(info.shape).astype(info.dtype)
        else:
            feeds[vi.name] = np.zeros(info.shape, info.dtype)
    try:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        so.log_severity_level = 4  # failures are raised (and explained) here, not logged
        sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        res = sess.run(names, feeds)
    except Exception as e:
        raise ModelImportError(
            f"{display}: shapes of {', '.join(missing[:5])} are unknown and running the model to "
            f"find them failed ({str(e).splitlines()[0][:200]}); give static input dims with "
            "--input-shape") from None
    for n, r in zip(names, res):
        if n in missing:
            tensors[n] = TensorInfo(n, tuple(int(d) for d in r.shape), str(r.dtype))


def import_model(model: str | os.PathLike[str] | onnx.ModelProto,
                 input_shapes: InputShapes | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 dims: Mapping[str, int] | None = None) -> Graph:
    """Import an ONNX model into the IR.

    Args:
        model: a path to an .onnx file (external data is read from its folder) or a ModelProto.
        input_shapes: static dims for inputs with symbolic/dynamic dims, by input name.
        progress: called as progress(done, total) while nodes are converted.
        dims: sizes of symbolic input dims by name, applied to every input that has them
            (onnxruntime's free-dimension overrides); ``input_shapes`` wins for its inputs.

    Raises:
        ModelImportError: unreadable or invalid model, control flow, unknown shapes, ops the
            frontend cannot classify (UnsupportedOpError).
    """
    from imccompile.options import CompileOptions

    # the one check of input_shapes / dims (types, positive sizes), as for a compile
    checked = CompileOptions.make(input_shapes=input_shapes, dims=dims)
    input_shapes, dims = dict(checked.input_shapes), dict(checked.dims)
    full, display, base = read_model(model)
    check_model(full, display)
    consts: dict[str, np.ndarray] = initializer_arrays(full, base, display)
    proto = shell_of(full)  # the caller's proto is never modified; ours is dropped here
    del full
    fix_input_shapes(proto, dict(input_shapes or {}), display, dict(dims or {}))
    proto = upgrade_opset(proto, consts, display)
    opset = _opset(proto)
    nodes, integer_bits = integer_weights(list(proto.graph.node), consts,
                                          {o.name for o in proto.graph.output})
    infos = infer_shapes(proto, nodes, consts, display)
    for _ in range(MAX_FOLD_ROUNDS):
        nodes, changed = fold_constants(nodes, consts, infos, opset, display,
                                        keep=[o.name for o in proto.graph.output])
        nodes, inlined = inline_constant_ifs(nodes, consts)
        if not (changed or inlined):
            break
        infos = infer_shapes(proto, nodes, consts, display)
    refuse_control_flow(nodes, display)
    nodes, unrolled = unroll_recurrent(nodes, consts, infos, display)
    if unrolled:  # the unrolled steps' shapes
        infos = infer_shapes(proto, nodes, consts, display)
    refuse_unsupported(nodes, display)

    inputs = tuple(i.name for i in proto.graph.input if i.name not in consts)
    tensors: dict[str, TensorInfo] = {}
    real_inputs = {i.name for i in proto.graph.input}
    for name, vi in sorted(infos.items(), key=lambda kv: kv[0] not in real_inputs):  # inputs first
        if name in consts:
            continue
        vdims = dims_of(vi)
        if vdims is not None and all(isinstance(d, int) for d in vdims):
            static = tuple(d for d in vdims if isinstance(d, int))
            if math.prod(static) > MAX_TENSOR_ELEMENTS:  # counts would overflow int64 downstream
                raise ModelImportError(
                    f"{display}: tensor {name!r} has shape {list(static)}, "
                    f"{math.prod(static):.3g} elements (more than 2^40): not a model one "
                    "inference can run; check the input dims (--input-shape)")
            tensors[name] = TensorInfo(name, static, elem_dtype(vi))
    needed = [t for n in nodes for t in list(n.input) + list(n.output) if t and t not in consts]
    missing = sorted({t for t in needed if t not in tensors})
    if missing:
        _shapes_by_running(proto, nodes, consts, missing, tensors, display)
    outputs = tuple(o.name for o in proto.graph.output)

    conv = Converter(consts, tensors, display, integer_bits=integer_bits)
    for k, node in enumerate(nodes):
        conv.convert(node, k)
        if progress is not None and (k % 64 == 63 or k == len(nodes) - 1):
            progress(k + 1, len(nodes))
    for out in outputs:  # a graph output that folded to a constant
        if out in consts:
            arr = np.asarray(consts[out])
            tensors[out] = TensorInfo(out, tuple(arr.shape), str(arr.dtype))
            from imccompile.ir import DigitalOp
            conv.ops.append(DigitalOp(name=conv.unique(f"const_{out}"), op_type="Identity",
                                      inputs=(out + "__const",), outputs=(out,),
                                      constants={out + "__const": arr}, bytes=arr.nbytes))
    if not any(True for _ in conv.ops):
        raise ModelImportError(f"{display}: the graph has no operations after constant folding")
    used = {t for o in conv.ops for t in o.inputs + o.outputs} | set(inputs) | set(outputs)
    graph = Graph(name=display, ops=tuple(conv.ops),
                  tensors={k: v for k, v in tensors.items() if k in used},
                  inputs=inputs, outputs=outputs, opset=opset)
    graph = fold_batchnorm(fuse_bias_add(graph))
    used = {t for o in graph.ops for t in o.inputs + o.outputs} | set(inputs) | set(outputs)
    return graph.replace(tensors={k: v for k, v in graph.tensors.items() if k in used})
