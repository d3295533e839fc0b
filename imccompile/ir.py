"""The matrix-op IR: what the mapper, cost model, passes and search see. No ONNX in here.

A `Graph` is a list of ops in topological order over named tensors with static shapes.

* `MatrixOp` is a weight-stationary matrix-vector product family that goes on crossbars. Its
  weight is kept as a logical matrix W of shape (K, N): K crossbar rows (input features of one
  group), N columns (all output features). With `groups` > 1, columns are split into `groups`
  equal blocks; block g only sees its own K inputs (block-diagonal mapping). Every kind satisfies
  ``macs == vectors * K * N`` and ``weights == K * N``.
* `DigitalOp` is everything else, executed by the digital periphery; it carries operation and byte
  counts for the cost model, and enough (op type, attributes, constant inputs) to be re-emitted.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal, Union

import networkx as nx
import numpy as np

MatrixKind = Literal["conv", "conv_transpose", "gemm", "matmul", "matmul_left"]


@dataclass(frozen=True)
class TensorInfo:
    """A named tensor with a static shape and a numpy dtype name."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class Compression:
    """Compression state of a MatrixOp, set by passes. None means full precision / no scaling.

    Attributes:
        weight_bits: bits of the symmetric per-column weight quantization (sign included);
            None = the target's precision.weight_bits.
        act_bits: bits of the DAC input quantization; None = the target's precision.input_bits.
        act_range: clipping range of the input (calibrated max |x| or a percentile of it); None
            = calibrated at simulation time from the data (max).
        act_signed: False when the input is never negative (unsigned DAC codes 0..2^b-1).
        mask: boolean (K, N) mask of kept weights, or None when nothing is pruned. Structured
            pruning leaves whole rows / columns False, which the mapper does not place.
    """

    weight_bits: int | None = None
    act_bits: int | None = None
    act_range: float | None = None
    act_signed: bool = True
    mask: np.ndarray | None = None

    def replace(self, **kw: Any) -> "Compression":
        return dataclasses.replace(self, **kw)


@dataclass(frozen=True, eq=False)
class MatrixOp:
    """A weight-stationary matrix op mapped onto crossbars.

    Attributes:
        name: unique layer name (the ONNX node name, or a generated one).
        kind: a MatrixKind.
        inputs: the activation input tensor name (one).
        outputs: output tensor names (one).
        weight: logical W, float32 array of shape (K, N).
        bias: float32 array of shape (N,) or None.
        groups: number of block-diagonal groups; N % groups == 0.
        vectors: input vectors per inference *per group* (output positions x batch, or tokens).
        attrs: kind-specific attributes needed to re-emit the op (plain Python values):
            conv / conv_transpose: kernel_shape, strides, pads, dilations, output_padding (ct),
            in_channels, out_channels; gemm: trans_input; matmul / matmul_left: weight_shape
            (the constant operand's original shape).
        source: names of the ONNX nodes this op came from (incl. folded BN, bias Add...).
        compression: the pass-set compression state.
        weight_id: identity of the stored weight tensor (the source constant and how the op reads
            it), or None. Ops with the same weight_id read one tensor: the mapper places it once
            when their stored weights are identical.
    """

    name: str
    kind: MatrixKind
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    weight: np.ndarray
    bias: np.ndarray | None
    groups: int
    vectors: int
    attrs: dict[str, Any] = field(default_factory=dict)
    source: tuple[str, ...] = ()
    compression: Compression = field(default_factory=Compression)
    weight_id: str | None = None

    def __post_init__(self) -> None:
        if self.weight.ndim != 2:
            raise ValueError(f"MatrixOp {self.name}: weight must be 2-D (K, N), got {self.weight.shape}")
        if self.groups < 1 or self.weight.shape[1] % self.groups:
            raise ValueError(f"MatrixOp {self.name}: N={self.weight.shape[1]} not divisible by groups={self.groups}")

    @property
    def rows(self) -> int:
        """K: crossbar rows used by one group."""
        return int(self.weight.shape[0])

    @property
    def cols(self) -> int:
        """N: output columns over all groups."""
        return int(self.weight.shape[1])

    @property
    def cols_per_group(self) -> int:
        return self.cols // self.groups

    @property
    def weights(self) -> int:
        """Number of weight elements placed on crossbars (the weight tensor's size)."""
        return self.rows * self.cols

    @property
    def macs(self) -> int:
        return self.vectors * self.rows * self.cols

    def replace(self, **kw: Any) -> "MatrixOp":
        return dataclasses.replace(self, **kw)


@dataclass(frozen=True, eq=False)
class DigitalOp:
    """An op executed digitally (not on a crossbar).

    Attributes:
        name: unique name.
        op_type: the operation (ONNX op type names are used, e.g. "Softmax", "MatMul").
        inputs / outputs: tensor names; an empty input name means an omitted optional input.
        attrs: plain-Python attributes (ints, floats, strings, lists) for re-emission.
        constants: constant inputs by tensor name (numpy arrays), for re-emission.
        ops: arithmetic operations per inference (a MAC counts as 2).
        bytes: bytes read and written per inference.
        attention: True for activation x activation MatMul (attention scores / context).
    """

    name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    ops: int = 0
    bytes: int = 0
    attention: bool = False
    source: tuple[str, ...] = ()

    def replace(self, **kw: Any) -> "DigitalOp":
        return dataclasses.replace(self, **kw)


Op = Union[MatrixOp, DigitalOp]


@dataclass(frozen=True, eq=False)
class Graph:
    """A model as ops in topological order over static-shaped tensors."""

    name: str
    ops: tuple[Op, ...]
    tensors: dict[str, TensorInfo]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    opset: int = 17

    def replace(self, **kw: Any) -> "Graph":
        return dataclasses.replace(self, **kw)

    @property
    def matrix_ops(self) -> tuple[MatrixOp, ...]:
        return tuple(op for op in self.ops if isinstance(op, MatrixOp))

    @property
    def digital_ops(self) -> tuple[DigitalOp, ...]:
        return tuple(op for op in self.ops if isinstance(op, DigitalOp))

    def op(self, name: str) -> Op:
        for o in self.ops:
            if o.name == name:
                return o
        raise KeyError(name)

    def with_ops(self, ops: Iterator[Op] | tuple[Op, ...] | list[Op]) -> "Graph":
        return dataclasses.replace(self, ops=tuple(ops))

    def producers(self) -> dict[str, str]:
        """Tensor name -> name of the op that writes it."""
        return {t: o.name for o in self.ops for t in o.outputs if t}

    def dag(self) -> nx.DiGraph:
        """Op dependency graph: an edge u -> v when v reads a tensor u writes."""
        g = nx.DiGraph()
        prod = self.producers()
        for o in self.ops:
            g.add_node(o.name)
            for t in o.inputs:
                if t in prod:
                    g.add_edge(prod[t], o.name)
        return g

    @property
    def total_weights(self) -> int:
        return sum(o.weights for o in self.matrix_ops)

    @property
    def total_macs(self) -> int:
        return sum(o.macs for o in self.matrix_ops)


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _fmt_attr(v: Any) -> str:
    if isinstance(v, float):
        return repr(float(v))
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_fmt_attr(x) for x in v) + "]"
    if isinstance(v, bytes):
        return repr(v.decode("utf-8", "replace"))
    if isinstance(v, str):
        return repr(v)
    return str(v)


def print_graph(graph: Graph) -> str:
    """Deterministic text form of a graph, one op per line (for --print-ir and tests)."""

    def t(name: str) -> str:
        if not name:
            return "_"
        info = graph.tensors.get(name)
        return f"%{name}:{_fmt_shape(info.shape)}" if info else f"%{name}"

    lines = [f"graph {graph.name} (opset {graph.opset})"]
    lines.append("  inputs:  " + ", ".join(t(n) for n in graph.inputs))
    for op in graph.ops:
        outs = ", ".join(t(n) for n in op.outputs)
        ins = ", ".join(t(n) for n in op.inputs)
        if isinstance(op, MatrixOp):
            c = op.compression
            extra = ""
            if c.weight_bits or c.act_bits or c.mask is not None:
                extra = (f" wbits={c.weight_bits} abits={c.act_bits}"
                         f" kept={int(c.mask.sum()) if c.mask is not None else op.weights}")
            attrs = " ".join(f"{k}={_fmt_attr(v)}" for k, v in sorted(op.attrs.items()))
            lines.append(
                f"  {outs} = matrix.{op.kind} {ins} W[{op.rows}x{op.cols}] groups={op.groups} "
                f"vectors={op.vectors} macs={op.macs} bias={'yes' if op.bias is not None else 'no'}"
                f"{extra} {{{attrs}}}  # {op.name}"
            )
        else:
            attrs = " ".join(f"{k}={_fmt_attr(v)}" for k, v in sorted(op.attrs.items()))
            flag = " attention" if op.attention else ""
            lines.append(
                f"  {outs} = digital.{op.op_type} {ins} ops={op.ops} bytes={op.bytes}{flag}"
                f" {{{attrs}}}  # {op.name}"
            )
    lines.append("  outputs: " + ", ".join(t(n) for n in graph.outputs))
    return "\n".join(lines) + "\n"
