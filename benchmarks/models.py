"""Seeded synthetic benchmark models, written with onnx.helper (no torch needed).

* ``vgg``: a VGG-style CNN (13 conv layers + 3 FC), about 13M weights at the default width.
* ``resnet50``: a ResNet-50-style CNN (bottleneck blocks [3,4,6,3]), about 25M weights.
* ``bert``: a BERT-style encoder (embedding-free; d=768, 3 layers → ~22M weights), attention
  products as activation x activation MatMuls, GELU, LayerNorm, Softmax.
* ``resnet18_cifar``: ResNet-18 for CIFAR (3x3 stem, basic blocks [2,2,2,2], 10 classes),
  11.2M weights, input 1x3x32x32.
* ``mobilenetv2``: MobileNetV2 (inverted residuals, depthwise convs, ReLU6), 3.5M weights,
  input 1x3x224x224.
* ``minilm``: a MiniLM-size encoder (`bert` with d=384, 6 layers, 12 heads, seq 128, ff 1536).
* ``wide_transformer``: as ``bert`` with width/depth chosen for >= 100M weights, saved with
  external data (reliability / big-model tests).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class _B:
    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0
        self.weights = 0

    def name(self, base: str) -> str:
        self.n += 1
        return f"{base}_{self.n}"

    def w(self, shape: tuple[int, ...], base: str = "w", scale: float | None = None) -> str:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        s = scale if scale is not None else 1.0 / np.sqrt(max(fan_in, 1))
        arr = (self.rng.standard_normal(shape, dtype=np.float32) * s).astype(np.float32)
        n = self.name(base)
        self.inits.append(numpy_helper.from_array(arr, n))
        return n

    def c(self, value: np.ndarray, base: str = "c") -> str:
        n = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(value), n))
        return n

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, k: int = 3, stride: int = 1, relu: bool = True,
             group: int = 1, relu6: bool = False) -> str:
        self.weights += cout * (cin // group) * k * k
        y = self.op("Conv", [x, self.w((cout, cin // group, k, k)),
                             self.c(np.zeros(cout, np.float32))],
                    kernel_shape=[k, k], pads=[k // 2] * 4, strides=[stride, stride], group=group)
        if relu6:
            return self.op("Clip", [y, self.c(np.array(0, np.float32)),
                                    self.c(np.array(6, np.float32))])
        return self.op("Relu", [y]) if relu else y

    def linear(self, x: str, din: int, dout: int, gemm: bool = False) -> str:
        self.weights += din * dout
        if gemm:
            return self.op("Gemm", [x, self.w((dout, din)), self.c(np.zeros(dout, np.float32))], transB=1)
        y = self.op("MatMul", [x, self.w((din, dout))])
        return self.op("Add", [y, self.c(np.zeros(dout, np.float32))])

    def model(self, x_shape: list[int], x: str, y: str, name: str, y_shape: list[int]) -> onnx.ModelProto:
        g = helper.make_graph(self.nodes, name,
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, y_shape)], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        return m


def vgg(width: float = 1.0, seed: int = 0) -> tuple[onnx.ModelProto, int]:
    b = _B(seed)
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    x, c = "input", 3
    for v in cfg:
        if v == "M":
            x = b.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
        else:
            v = int(v * width)
            x = b.conv(x, c, v)
            c = v
    x = b.op("Flatten", [x])
    x = b.op("Relu", [b.linear(x, c, 512, gemm=True)])
    x = b.op("Relu", [b.linear(x, 512, 512, gemm=True)])
    y = b.linear(x, 512, 10, gemm=True)
    return b.model([1, 3, 32, 32], "input", y, "vgg", [1, 10]), b.weights


def resnet50(seed: int = 0) -> tuple[onnx.ModelProto, int]:
    b = _B(seed)
    x = b.conv("input", 3, 64, k=7, stride=2)
    x = b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    for stage, (blocks, mid) in enumerate(zip([3, 4, 6, 3], [64, 128, 256, 512])):
        for i in range(blocks):
            stride = 2 if i == 0 and stage > 0 else 1
            out = mid * 4
            h = b.conv(x, cin, mid, k=1)
            h = b.conv(h, mid, mid, k=3, stride=stride)
            h = b.conv(h, mid, out, k=1, relu=False)
            sc = b.conv(x, cin, out, k=1, stride=stride, relu=False) if (stride != 1 or cin != out) else x
            x = b.op("Relu", [b.op("Add", [h, sc])])
            cin = out
    x = b.op("GlobalAveragePool", [x])
    x = b.op("Flatten", [x])
    y = b.linear(x, cin, 1000, gemm=True)
    return b.model([1, 3, 224, 224], "input", y, "resnet50", [1, 1000]), b.weights


def resnet18_cifar(seed: int = 0) -> tuple[onnx.ModelProto, int]:
    b = _B(seed)
    x = b.conv("input", 3, 64)
    cin = 64
    for stage, width in enumerate([64, 128, 256, 512]):
        for i in range(2):
            stride = 2 if i == 0 and stage > 0 else 1
            h = b.conv(x, cin, width, stride=stride)
            h = b.conv(h, width, width, relu=False)
            sc = b.conv(x, cin, width, k=1, stride=stride, relu=False) \
                if (stride != 1 or cin != width) else x
            x = b.op("Relu", [b.op("Add", [h, sc])])
            cin = width
    x = b.op("Flatten", [b.op("GlobalAveragePool", [x])])
    y = b.linear(x, cin, 10, gemm=True)
    return b.model([1, 3, 32, 32], "input", y, "resnet18_cifar", [1, 10]), b.weights


def mobilenetv2(seed: int = 0) -> tuple[onnx.ModelProto, int]:
    b = _B(seed)
    x = b.conv("input", 3, 32, stride=2, relu6=True)
    cin = 32
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        for i in range(n):
            stride = s if i == 0 else 1
            hid = cin * t
            h = b.conv(x, cin, hid, k=1, relu6=True) if t != 1 else x
            h = b.conv(h, hid, hid, stride=stride, group=hid, relu6=True)
            h = b.conv(h, hid, c, k=1, relu=False)
            x = b.op("Add", [x, h]) if stride == 1 and cin == c else h
            cin = c
    x = b.conv(x, cin, 1280, k=1, relu6=True)
    x = b.op("Flatten", [b.op("GlobalAveragePool", [x])])
    y = b.linear(x, 1280, 1000, gemm=True)
    return b.model([1, 3, 224, 224], "input", y, "mobilenetv2", [1, 1000]), b.weights


def minilm(seed: int = 0) -> tuple[onnx.ModelProto, int]:
    """MiniLM-size: 6 layers, 384 wide, 12 heads, sequence 128, MLP 1536."""
    return bert(d=384, layers=6, heads=12, seq=128, ff=1536, seed=seed)


def bert(d: int = 768, layers: int = 3, heads: int = 12, seq: int = 128, ff: int = 3072,
         seed: int = 0) -> tuple[onnx.ModelProto, int]:
    b = _B(seed)
    x = "input"
    hd = d // heads
    for _ in range(layers):
        q, k, v = (b.linear(x, d, d) for _ in range(3))
        def split(t: str) -> str:
            r = b.op("Reshape", [t, b.c(np.array([1, seq, heads, hd], np.int64))])
            return b.op("Transpose", [r], perm=[0, 2, 1, 3])
        qh, kh, vh = split(q), split(k), split(v)
        kt = b.op("Transpose", [kh], perm=[0, 1, 3, 2])
        s = b.op("MatMul", [qh, kt])
        s = b.op("Div", [s, b.c(np.array(np.sqrt(hd), np.float32))])
        p = b.op("Softmax", [s], axis=-1)
        ctx = b.op("MatMul", [p, vh])
        ctx = b.op("Transpose", [ctx], perm=[0, 2, 1, 3])
        ctx = b.op("Reshape", [ctx, b.c(np.array([1, seq, d], np.int64))])
        a = b.linear(ctx, d, d)
        x = b.op("LayerNormalization", [b.op("Add", [x, a]), b.c(np.ones(d, np.float32)),
                                        b.c(np.zeros(d, np.float32))], axis=-1)
        h = b.linear(x, d, ff)
        h = b.op("Mul", [h, b.op("Sigmoid", [b.op("Mul", [h, b.c(np.array(1.702, np.float32))])])])
        h = b.linear(h, ff, d)
        x = b.op("LayerNormalization", [b.op("Add", [x, h]), b.c(np.ones(d, np.float32)),
                                        b.c(np.zeros(d, np.float32))], axis=-1)
    y = b.op("ReduceMean", [x, b.c(np.array([1], np.int64))], keepdims=0)  # opset 18 form
    m = b.model([1, seq, d], "input", b.linear(y, d, 2, gemm=True), "bert", [1, 2])
    m.opset_import[0].version = 18
    return m, b.weights


def wide_transformer(seed: int = 0) -> tuple[onnx.ModelProto, int]:
    """>= 100M weights: d=2048, 2 layers of 4d MLP (2 x (4 + 16) x 2048^2 ≈ 168M)."""
    return bert(d=2048, layers=2, heads=16, seq=16, ff=8192, seed=seed)


def save(model: onnx.ModelProto, path: str | os.PathLike[str], external: bool = False) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=1024)
    else:
        onnx.save_model(model, str(path))
    return path
