"""VGG-8 for CIFAR-10 as NeuroSim's ``NetWork_VGG8.csv`` describes it, written with onnx.helper.

Input 1x3x32x32; conv3x3 128, conv3x3 128, maxpool 2, conv3x3 256, conv3x3 256, maxpool 2,
conv3x3 512, conv3x3 512, maxpool 2, FC 8192->1024, FC 1024->10; ReLU after each conv/FC.

``convention="physics"`` pads every conv ('same'): every output position of the full map is
computed (32², 16², 8²). ``convention="neurosim"`` reproduces NeuroSim's counting of the work:
each conv is unpadded ((H-k+1)² = 30², 14², 6² positions) and a zero Pad of 1 restores the map
size the next layer (or pool) reads, so the input sizes stay those of the CSV.

Layer names are L1..L8, the names NeuroSim's per-layer results use.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CONVS = ((3, 128), (128, 128), "pool", (128, 256), (256, 256), "pool", (256, 512), (512, 512),
         "pool")


def vgg8(convention: str = "physics", seed: int = 0) -> onnx.ModelProto:
    """The VGG-8 model (random weights: the cost does not depend on them)."""
    if convention not in ("physics", "neurosim"):
        raise ValueError(f"convention: expected 'physics' or 'neurosim', got {convention!r}")
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    x, n = "input", 0

    def w(name: str, shape: tuple[int, ...]) -> str:
        arr = (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)
        inits.append(numpy_helper.from_array(arr, name))
        return name

    for item in CONVS:
        if item == "pool":
            nodes.append(helper.make_node("MaxPool", [x], [x + "_pool"], kernel_shape=[2, 2],
                                          strides=[2, 2], name=x + "_pool"))
            x += "_pool"
            continue
        cin, cout = item
        n += 1
        pad = 1 if convention == "physics" else 0
        nodes.append(helper.make_node("Conv", [x, w(f"W{n}", (cout, cin, 3, 3)),
                                               w(f"B{n}", (cout,))], [f"L{n}"], name=f"L{n}",
                                      kernel_shape=[3, 3], pads=[pad] * 4))
        nodes.append(helper.make_node("Relu", [f"L{n}"], [f"R{n}"], name=f"R{n}"))
        x = f"R{n}"
        if convention == "neurosim":
            pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
                                           f"P{n}_pads")
            inits.append(pads)
            nodes.append(helper.make_node("Pad", [x, f"P{n}_pads"], [f"P{n}"], name=f"P{n}"))
            x = f"P{n}"
    inits.append(numpy_helper.from_array(np.array([1, 8192], np.int64), "flat_shape"))
    nodes.append(helper.make_node("Reshape", [x, "flat_shape"], ["flat"], name="flat"))
    x = "flat"
    for din, dout in ((8192, 1024), (1024, 10)):
        n += 1
        nodes.append(helper.make_node("Gemm", [x, w(f"W{n}", (dout, din)), w(f"B{n}", (dout,))],
                                      [f"L{n}"], name=f"L{n}", transB=1))
        nodes.append(helper.make_node("Relu", [f"L{n}"], [f"R{n}"], name=f"R{n}"))
        x = f"R{n}"
    graph = helper.make_graph(nodes, f"vgg8_{convention}",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                             [1, 3, 32, 32])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 10])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model
