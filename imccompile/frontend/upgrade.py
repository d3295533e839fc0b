"""Old graphs to a current opset with onnx's own version converter.

Opsets 6-10 (the ONNX model zoo's IR-3 / opset-9 graphs, old Caffe2 and CNTK exports) lack
operators the simulation emits (Round, Clip with bounds as inputs: opset 11) and carry
attributes that later opsets moved to inputs (Reshape's shape, Upsample's scales, Slice's
starts...). `upgrade_opset` converts such a graph to `TARGET_OPSET` with
``onnx.version_converter`` on a weight-free copy (big constants become typed inputs), so the
frontend, the emitter and onnxruntime all see one modern form.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from imccompile.errors import ModelImportError

MIN_OPSET = 11  # below this the graph is converted
TARGET_OPSET = 17  # what the torch exporter writes by default; every adapter 6..17 is in onnx
SMALL_CONSTANT = 4096  # elements; smaller constants stay initializers (adapters may read them)


def default_opset(proto: onnx.ModelProto) -> int:
    for o in proto.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return TARGET_OPSET


def upgrade_opset(proto: onnx.ModelProto, consts: dict[str, np.ndarray], display: str,
                  target: int = TARGET_OPSET) -> onnx.ModelProto:
    """Return ``proto`` (a shell without initializers, see `load.shell_of`) converted to opset
    ``target`` if its default-domain opset is older than `MIN_OPSET`; otherwise ``proto``.

    Constants the converter creates (e.g. Reshape's shape moved from an attribute to an input)
    are added to ``consts``. Raises ModelImportError naming the opset when onnx cannot convert.
    """
    old = default_opset(proto)
    if old >= MIN_OPSET:
        return proto
    light = onnx.ModelProto()
    light.CopyFrom(proto)
    light.ir_version = max(int(proto.ir_version), 7)  # IR 3 wanted initializers among inputs
    g = light.graph
    big = set()
    declared = {i.name for i in g.input}
    for name, arr in consts.items():
        if arr.size <= SMALL_CONSTANT:
            g.initializer.append(numpy_helper.from_array(np.asarray(arr), name))
        elif name not in declared:
            big.add(name)
            et = onnx.helper.np_dtype_to_tensor_dtype(arr.dtype)
            g.input.append(onnx.helper.make_tensor_value_info(name, et, list(arr.shape)))
    try:
        new = onnx.version_converter.convert_version(light, target)
    except Exception as e:  # the converter raises RuntimeError / ConvertError with its reason
        msg = " ".join(str(e).split())[:300] or type(e).__name__
        raise ModelImportError(
            f"{display}: the model declares ONNX opset {old}; converting it to opset {target} "
            f"with onnx.version_converter failed ({msg}). Re-export it with opset >= "
            f"{MIN_OPSET}") from None
    for init in new.graph.initializer:
        if init.name not in consts:
            consts[init.name] = numpy_helper.to_array(init)
    del new.graph.initializer[:]
    keep = [i for i in new.graph.input if i.name not in big and i.name not in consts]
    del new.graph.input[:]
    new.graph.input.extend(keep)
    new.ir_version = max(int(new.ir_version), 7)
    return new

