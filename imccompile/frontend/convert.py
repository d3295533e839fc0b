"""ONNX nodes (after constant folding) to IR ops: MatrixOps for crossbars, DigitalOps otherwise."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import onnx

from imccompile.errors import ModelImportError, UnsupportedOpError
from imccompile.frontend.digital import DIGITAL_OPS, digital_ops_count
from imccompile.frontend.optable import RECURRENT
from imccompile.ir import DigitalOp, MatrixKind, MatrixOp, Op, TensorInfo


def _attrs(node: onnx.NodeProto) -> dict:
    out = {}
    for a in node.attribute:
        if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            raise UnsupportedOpError(
                f"node {node.name!r} ({node.op_type}) has a subgraph attribute {a.name!r}: "
                "control flow and subgraphs are not supported")
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, list):
            v = [x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in v]
        elif isinstance(v, onnx.TensorProto):
            v = onnx.numpy_helper.to_array(v)  # re-emitted as a tensor attribute
        out[a.name] = v
    return out


def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) if len(shape) else 1


@dataclass
class Converter:
    """Builds the IR op list from folded ONNX nodes."""

    consts: Mapping[str, np.ndarray]
    tensors: dict[str, TensorInfo]
    display: str
    ops: list[Op] = field(default_factory=list)
    _names: set[str] = field(default_factory=set)
    _canonical: dict[int, str] = field(default_factory=dict)  # id(constant array) -> first name
    integer_bits: Mapping[str, int] = field(default_factory=dict)  # QDQ integer weights (qdq.py)

    # -- helpers ---------------------------------------------------------------------------
    def unique(self, name: str) -> str:
        base, k = name, 1
        while name in self._names:
            k += 1
            name = f"{base}_{k}"
        self._names.add(name)
        return name

    def shape(self, tensor: str, node: onnx.NodeProto) -> tuple[int, ...]:
        if tensor in self.consts:
            return tuple(self.consts[tensor].shape)
        info = self.tensors.get(tensor)
        if info is None:
            raise ModelImportError(
                f"{self.display}: the shape of tensor {tensor!r} (used by node {node.name!r}, "
                f"{node.op_type}) is unknown; give static input dims with --input-shape")
        return info.shape

    def const(self, tensor: str) -> np.ndarray | None:
        return self.consts.get(tensor) if tensor else None

    def weight_id(self, kind: str, tensor: str, how: str = "") -> str:
        """Identity of a stored weight: the constant tensor (aliases of one constant, e.g. an
        Identity of tied weights, name the first of them) and how the op reads it."""
        arr = self.consts.get(tensor)
        if arr is not None:
            tensor = self._canonical.setdefault(id(arr), tensor)
        return f"{kind}:{tensor}{how}"

    def weight(self, node: onnx.NodeProto, name: str, idx: int, x: str | None) -> np.ndarray | None:
        """The constant weight operand ``node.input[idx]`` (None if not constant), refused when it
        is empty, not numeric, or of another type than the activation ``x``."""
        w = self.const(node.input[idx]) if len(node.input) > idx else None
        if w is None:
            return None
        where = f"{self.display}: node {name!r} ({node.op_type}): weight {node.input[idx]!r}"
        if w.size == 0:
            raise ModelImportError(f"{where} is empty (shape {list(w.shape)})")
        if w.dtype.kind not in "fiu":
            raise ModelImportError(f"{where} has type {w.dtype}; a weight must be numeric")
        info = self.tensors.get(x) if x else None
        if info is not None and np.dtype(info.dtype) != w.dtype:
            raise ModelImportError(f"{where} has type {w.dtype} but input {x!r} has type "
                                   f"{info.dtype}; {node.op_type} needs both of one type")
        return w

    def digital(self, node: onnx.NodeProto, name: str, attention: bool = False,
                inputs: tuple[str, ...] | None = None, outputs: tuple[str, ...] | None = None,
                op_type: str | None = None, attrs: dict | None = None) -> None:
        inputs = tuple(node.input) if inputs is None else inputs
        outputs = tuple(node.output) if outputs is None else outputs
        op_type = op_type or node.op_type
        attrs = _attrs(node) if attrs is None else attrs
        in_shapes = [self.shape(i, node) if i else None for i in inputs]
        out_shapes = [self.shape(o, node) for o in outputs if o]
        consts = {i: np.asarray(self.consts[i]) for i in inputs if i and i in self.consts}
        nbytes = 0
        for t in list(inputs) + list(outputs):
            if not t:
                continue
            if t in self.consts:
                nbytes += self.consts[t].nbytes
            elif t in self.tensors:
                nbytes += self.tensors[t].nbytes
        ops = digital_ops_count(op_type, attrs, in_shapes, out_shapes)
        self.ops.append(DigitalOp(name=name, op_type=op_type, inputs=inputs, outputs=outputs,
                                  attrs=attrs, constants=consts, ops=int(ops), bytes=int(nbytes),
                                  attention=attention, source=(node.name,)))

    # -- dispatch --------------------------------------------------------------------------
    def convert(self, node: onnx.NodeProto, index: int) -> None:
        name = self.unique(node.name or f"{node.op_type}_{index}")
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedOpError(
                f"{self.display}: node {name!r} is {node.domain}::{node.op_type}, a custom-domain "
                "op the frontend cannot classify; export with standard ONNX ops "
                "(e.g. disable onnxruntime graph optimizations before saving)")
        handler = getattr(self, f"_{node.op_type}", None)
        if handler is not None:
            first = len(self.ops)
            handler(node, name)
            bits = self.integer_bits.get(node.input[1]) if len(node.input) > 1 else None
            if bits is not None:  # an integer weight of a QDQ graph: record its bits
                for k in range(first, len(self.ops)):
                    op = self.ops[k]
                    if isinstance(op, MatrixOp):
                        self.ops[k] = op.replace(
                            compression=op.compression.replace(weight_bits=bits))
            return
        if node.op_type in RECURRENT:  # a matrix-op producer: W and R go on crossbars
            raise UnsupportedOpError(
                f"{self.display}: node {name!r} is {node.op_type}: recurrent layers are "
                "converted by frontend/recurrent.py, which this build does not have; export the "
                "model with the recurrence unrolled into MatMul/Gemm nodes")
        if node.op_type not in DIGITAL_OPS:
            raise UnsupportedOpError(
                f"{self.display}: node {name!r} has op type {node.op_type}, which the frontend "
                "cannot classify as a crossbar or digital op; it is not supported yet")
        self.digital(node, name)

    # -- matrix ops ------------------------------------------------------------------------
    def _bias(self, node: onnx.NodeProto, idx: int, n: int) -> np.ndarray | None:
        if len(node.input) <= idx or not node.input[idx]:
            return None
        b = self.const(node.input[idx])
        if b is None:
            raise UnsupportedOpError(
                f"{self.display}: node {node.name!r} ({node.op_type}) has a non-constant bias "
                f"{node.input[idx]!r}; only constant biases are supported")
        if b.shape != (n,):  # ONNX: B is 1-D with one value per output channel
            raise ModelImportError(
                f"{self.display}: node {node.name!r} ({node.op_type}): bias {node.input[idx]!r} "
                f"has shape {list(b.shape)}; expected [{n}] (one value per output channel)")
        return np.broadcast_to(np.asarray(b, np.float32).reshape(-1), (n,)).copy()

    def _kernel(self, node: onnx.NodeProto, name: str, attrs: dict, w: np.ndarray, x) -> int:
        """Checks common to Conv and ConvTranspose; returns the group count."""
        g = attrs.get("group", 1)
        where = f"{self.display}: node {name!r} ({node.op_type})"
        if not isinstance(g, int) or g < 1:
            raise ModelImportError(f"{where}: group must be a positive integer, got {g!r}")
        if w.ndim < 3 or len(x) != w.ndim:
            raise ModelImportError(f"{where}: input {list(x)} and weight {list(w.shape)} must "
                                   "both be [N, C, spatial...] of one rank >= 3")
        ks = attrs.get("kernel_shape")
        if ks is not None and list(ks) != list(w.shape[2:]):
            raise ModelImportError(f"{where}: kernel_shape {list(ks)} does not match the weight's "
                                   f"spatial dims {list(w.shape[2:])}")
        r = w.ndim - 2
        for field, size, low in (("strides", r, 1), ("dilations", r, 1), ("pads", 2 * r, 0),
                                 ("output_padding", r, 0)):
            v = attrs.get(field)
            if v is None:
                continue
            if not isinstance(v, list) or len(v) != size or any(int(e) < low for e in v):
                raise ModelImportError(f"{where}: {field} must be {size} integers >= {low}, got "
                                       f"{v!r}")
        if node.op_type == "Conv" and attrs.get("auto_pad", "NOTSET") in ("NOTSET", "VALID"):
            pads = attrs.get("pads", [0] * 2 * r) if attrs.get("auto_pad", "NOTSET") == "NOTSET" \
                else [0] * 2 * r
            dil = attrs.get("dilations", [1] * r)
            for i in range(r):
                span = (int(w.shape[2 + i]) - 1) * dil[i] + 1
                if span > x[2 + i] + pads[i] + pads[i + r]:
                    raise ModelImportError(
                        f"{where}: the kernel spans {span} (kernel {w.shape[2 + i]}, dilation "
                        f"{dil[i]}) along spatial dim {i}, more than the padded input's "
                        f"{x[2 + i] + pads[i] + pads[i + r]}")
        return g

    def _Conv(self, node: onnx.NodeProto, name: str) -> None:
        w = self.weight(node, name, 1, node.input[0])
        if w is None:
            self.digital(node, name)
            return
        x = self.shape(node.input[0], node)
        y = self.shape(node.output[0], node)
        attrs = _attrs(node)
        g = self._kernel(node, name, attrs, w, x)
        cout = int(w.shape[0])
        if len(x) != w.ndim or x[1] != w.shape[1] * g or cout % g:
            raise ModelImportError(
                f"{self.display}: node {name!r} (Conv): input {list(x)} does not match weight "
                f"{list(w.shape)} with group={g}")
        k = _size(w.shape[1:])
        wkn = np.asarray(w, np.float32).reshape(cout, k).T  # a view: big weights stay mapped
        attrs.update(in_channels=int(x[1]), out_channels=cout, kernel_shape=list(w.shape[2:]))
        self.ops.append(MatrixOp(
            name=name, kind="conv", inputs=(node.input[0],), outputs=(node.output[0],), weight=wkn,
            bias=self._bias(node, 2, cout), groups=g, vectors=int(y[0]) * _size(y[2:]),
            attrs=attrs, source=(node.name,), weight_id=self.weight_id("conv", node.input[1])))

    def _ConvTranspose(self, node: onnx.NodeProto, name: str) -> None:
        w = self.weight(node, name, 1, node.input[0])
        if w is None:
            self.digital(node, name)
            return
        x = self.shape(node.input[0], node)
        attrs = _attrs(node)
        g = self._kernel(node, name, attrs, w, x)
        cin, cout_g = int(w.shape[0]), int(w.shape[1])
        if x[1] != cin or cin % g:
            raise ModelImportError(
                f"{self.display}: node {name!r} (ConvTranspose): input {list(x)} does not match "
                f"weight {list(w.shape)} with group={g}")
        cin_g = cin // g
        wf = np.asarray(w, np.float32)
        blocks = [wf[i * cin_g:(i + 1) * cin_g].reshape(cin_g, -1) for i in range(g)]
        wkn = np.ascontiguousarray(np.concatenate(blocks, axis=1))
        attrs.update(in_channels=cin, out_channels=cout_g * g, kernel_shape=list(w.shape[2:]))
        bias = self._bias(node, 2, cout_g * g)  # per output channel, not per column
        self.ops.append(MatrixOp(
            name=name, kind="conv_transpose", inputs=(node.input[0],), outputs=(node.output[0],),
            weight=wkn, bias=bias, groups=g, vectors=int(x[0]) * _size(x[2:]), attrs=attrs,
            source=(node.name,), weight_id=self.weight_id("conv_transpose", node.input[1])))

    def _Gemm(self, node: onnx.NodeProto, name: str) -> None:
        attrs = _attrs(node)
        a_c, b_c = self.const(node.input[0]), self.weight(node, name, 1, node.input[0])
        if b_c is None or a_c is not None:
            if a_c is not None and b_c is None:
                raise UnsupportedOpError(
                    f"{self.display}: node {name!r} is a Gemm with a constant first operand; "
                    "rewrite it as MatMul (constant-left MatMul is supported)")
            self.digital(node, name, attention=True)
            return
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        w = np.asarray(b_c, np.float32)
        w = w.T if attrs.get("transB", 0) else w
        w = w * np.float32(alpha) if alpha != 1.0 else w  # transB: a view, not a copy
        a = self.shape(node.input[0], node)
        if len(a) != 2 or w.ndim != 2 or (a[0] if attrs.get("transA", 0) else a[1]) != w.shape[0]:
            raise ModelImportError(
                f"{self.display}: node {name!r} (Gemm): input {list(a)} does not match weight "
                f"{list(b_c.shape)} with transA={attrs.get('transA', 0)}, "
                f"transB={attrs.get('transB', 0)}")
        m = a[1] if attrs.get("transA", 0) else a[0]
        n = int(w.shape[1])
        out = node.output[0]
        bias = None
        extra_add = None
        if len(node.input) > 2 and node.input[2]:
            c = self.const(node.input[2])
            if c is not None and (c.size == 1 or c.shape[-1:] == (n,) and c.size == n):
                bias = np.broadcast_to(np.asarray(c, np.float32).reshape(-1) * np.float32(beta), (n,)).copy()
            else:  # a full (M, N) or dynamic C: add it digitally after the crossbar product
                cs = tuple(c.shape) if c is not None else self.shape(node.input[2], node)
                try:
                    ok = np.broadcast_shapes(cs, (int(m), n)) == (int(m), n)
                except ValueError:
                    ok = False
                if not ok:
                    raise ModelImportError(
                        f"{self.display}: node {name!r} (Gemm): C {node.input[2]!r} has shape "
                        f"{list(cs)}, which does not broadcast to the output [{m}, {n}]")
                out = node.output[0] + "__gemm"
                self.tensors[out] = TensorInfo(out, (int(m), n), "float32")
                extra_add = node.input[2]
        keep = {"trans_input": bool(attrs.get("transA", 0)), "alpha": alpha, "beta": beta}
        self.ops.append(MatrixOp(
            name=name, kind="gemm", inputs=(node.input[0],), outputs=(out,), weight=w, bias=bias,
            groups=1, vectors=int(m), attrs=keep, source=(node.name,),
            weight_id=self.weight_id(
                "gemm", node.input[1], f":transB={int(attrs.get('transB', 0))}:alpha={alpha!r}")))
        if extra_add is not None:
            if beta != 1.0:
                raise UnsupportedOpError(
                    f"{self.display}: node {name!r}: Gemm with a non-bias C and beta={beta} is not "
                    "supported")
            self.digital(node, self.unique(name + "_addC"), inputs=(out, extra_add),
                         outputs=(node.output[0],), op_type="Add", attrs={})

    def _MatMul(self, node: onnx.NodeProto, name: str) -> None:
        a_c, b_c = self.const(node.input[0]), self.const(node.input[1])
        if a_c is None and b_c is None:
            self.digital(node, name, attention=True)
            return
        if a_c is not None and b_c is not None:  # folding normally removes these
            self.digital(node, name)
            return
        if b_c is not None:
            b_c = self.weight(node, name, 1, node.input[0])
        else:
            a_c = self.weight(node, name, 0, node.input[1])
        y = self.shape(node.output[0], node)
        kind: MatrixKind
        if b_c is not None:
            w = np.asarray(b_c, np.float32)
            if w.ndim == 1:
                blocks, groups = [w.reshape(-1, 1)], 1
            else:
                blocks = list(w.reshape(-1, *w.shape[-2:]))
                groups = len(blocks)
            kind, x = "matmul", node.input[0]
        else:
            a = np.asarray(a_c, np.float32)
            if a.ndim == 1:
                blocks, groups = [a.reshape(-1, 1)], 1
            else:
                blocks = [blk.T for blk in a.reshape(-1, *a.shape[-2:])]
                groups = len(blocks)
            kind, x = "matmul_left", node.input[1]
        xs = self.shape(x, node)
        kx = (xs[-1] if kind == "matmul" else xs[-2] if len(xs) > 1 else xs[0]) if xs else 0
        if kx != blocks[0].shape[0]:
            shapes = [list(self.shape(t, node)) for t in node.input[:2]]
            raise ModelImportError(
                f"{self.display}: node {name!r} (MatMul): shapes {shapes[0]} and {shapes[1]} "
                "cannot be multiplied")
        wkn = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)
        vectors = _size(y) // wkn.shape[1] if y else 1
        w_src = b_c if b_c is not None else a_c
        assert w_src is not None
        self.ops.append(MatrixOp(
            name=name, kind=kind, inputs=(x,), outputs=(node.output[0],), weight=wkn, bias=None,
            groups=groups, vectors=int(vectors),
            attrs={"weight_shape": list(w_src.shape)},
            source=(node.name,),
            weight_id=self.weight_id(kind, node.input[1] if kind == "matmul" else node.input[0])))

    # -- quantized operator formats: dequantize, crossbar op, requantize --------------------
    def _dq_weight(self, node: onnx.NodeProto, w: str, s: str, zp: str, axis: int) -> np.ndarray:
        wq, sc, z = self.const(w), self.const(s), self.const(zp)
        if wq is None or sc is None:
            raise UnsupportedOpError(
                f"{self.display}: node {node.name!r} ({node.op_type}) has non-constant weights")
        z = np.zeros((), np.float32) if z is None else z.astype(np.float32)
        sc = sc.astype(np.float32)
        if sc.size > 1 and sc.ndim < wq.ndim:  # 1-D per-axis params; same-rank ones broadcast
            shape = [1] * wq.ndim
            shape[axis] = sc.size
            sc = sc.reshape(shape)
            z = z.reshape(shape) if z.size > 1 else z
        return (wq.astype(np.float32) - z) * sc

    def _quant_wrapped(self, node: onnx.NodeProto, name: str, kind: str) -> None:
        i = list(node.input)
        xf, yf = node.output[0] + "__xf", node.output[0] + "__yf"
        x = self.shape(i[0], node)
        y = self.shape(node.output[0], node)
        self.tensors[xf] = TensorInfo(xf, x, "float32")
        self.tensors[yf] = TensorInfo(yf, y, "float32")
        self.digital(node, self.unique(name + "_dequant"), inputs=(i[0], i[1], i[2]), outputs=(xf,),
                     op_type="DequantizeLinear", attrs={})
        if kind == "conv":
            w = self._dq_weight(node, i[3], i[4], i[5], 0)
            fake = onnx.helper.make_node("Conv", [xf, "__w"], [yf], name=name)
            fake.attribute.extend(node.attribute)
            consts = dict(self.consts)
            consts["__w"] = w
            sub = Converter(consts, self.tensors, self.display, self.ops, self._names)
            sub._Conv(fake, name)
            op = self.ops[-1]
            if len(i) > 8 and i[8]:
                b = self.const(i[8])
                xs, ws = self.const(i[1]), self.const(i[4])
                if b is None or xs is None or ws is None:
                    raise UnsupportedOpError(f"{self.display}: node {name!r}: non-constant bias/scales")
                bias = b.astype(np.float32) * np.float32(xs.reshape(-1)[0]) * ws.astype(np.float32).reshape(-1)
                assert isinstance(op, MatrixOp)
                self.ops[-1] = op.replace(bias=np.broadcast_to(bias, (op.cols,)).copy())
        else:
            w = self._dq_weight(node, i[3], i[4], i[5], -1)  # per column: b's last axis
            fake = onnx.helper.make_node("MatMul", [xf, "__w"], [yf], name=name)
            consts = dict(self.consts)
            consts["__w"] = w
            Converter(consts, self.tensors, self.display, self.ops, self._names)._MatMul(fake, name)
        self.ops[-1] = self.ops[-1].replace(source=(node.name,))
        yi = 6 if kind == "conv" else 6
        self.digital(node, self.unique(name + "_quant"), inputs=(yf, i[yi], i[yi + 1]),
                     outputs=(node.output[0],), op_type="QuantizeLinear", attrs={})

    def _QLinearConv(self, node: onnx.NodeProto, name: str) -> None:
        self._quant_wrapped(node, name, "conv")

    def _QLinearMatMul(self, node: onnx.NodeProto, name: str) -> None:
        if self.const(node.input[3]) is None:
            raise UnsupportedOpError(
                f"{self.display}: node {name!r} is a QLinearMatMul of two activations; "
                "dequantize it to float MatMul first")
        self._quant_wrapped(node, name, "matmul")

    # -- integer formats (onnxruntime's quantize_dynamic): integer weights on crossbars --------
    def _integer_weight(self, node: onnx.NodeProto, name: str, w_idx: int, zp_idx: int,
                        axis: int) -> tuple[np.ndarray, int]:
        """(w - w_zero_point) as an integer-valued float32 array, and the signed bits it needs."""
        where = f"{self.display}: node {name!r} ({node.op_type})"
        wq = self.const(node.input[w_idx]) if len(node.input) > w_idx else None
        if wq is None:
            raise UnsupportedOpError(
                f"{where}: the weight {node.input[w_idx]!r} is not constant; only integer "
                "products with a constant weight go on crossbars (quantize the weights offline, "
                "e.g. onnxruntime.quantization.quantize_dynamic)")
        if wq.dtype.kind not in "iu":
            raise ModelImportError(f"{where}: weight {node.input[w_idx]!r} has type {wq.dtype}; "
                                   "expected an 8-bit integer")
        zp_name = node.input[zp_idx] if len(node.input) > zp_idx else ""
        zp = self.const(zp_name) if zp_name else np.zeros((), wq.dtype)
        if zp is None:
            raise UnsupportedOpError(f"{where}: the weight zero point {zp_name!r} is not constant")
        z = zp.astype(np.float32)
        if z.size > 1:  # per output channel (ConvInteger: axis 0) or per column (last axis)
            shape = [1] * wq.ndim
            shape[axis] = z.size
            z = z.reshape(shape)
        w = wq.astype(np.float32) - z
        peak = int(np.abs(w).max()) if w.size else 0
        return w, max(2, peak.bit_length() + 1)  # magnitude bits + sign

    def _integer_input(self, node: onnx.NodeProto, name: str, zp_idx: int) -> str:
        """Digital ops turning the integer activation into float (x - x_zero_point)."""
        x = node.input[0]
        xs = self.shape(x, node)
        xf = self.unique(x + "__float")
        self.tensors[xf] = TensorInfo(xf, xs, "float32")
        to_float = {"to": int(onnx.TensorProto.FLOAT)}
        self.digital(node, self.unique(name + "_cast_in"), inputs=(x,), outputs=(xf,),
                     op_type="Cast", attrs=to_float)
        zp = node.input[zp_idx] if len(node.input) > zp_idx else ""
        if not zp:
            return xf
        zs = self.shape(zp, node)
        if _size(zs) != 1:
            raise UnsupportedOpError(
                f"{self.display}: node {name!r} ({node.op_type}): the input zero point {zp!r} "
                f"has shape {list(zs)}; only a per-tensor (scalar) zero point is supported")
        zf, xc = self.unique(zp + "__float"), self.unique(x + "__centered")
        self.tensors[zf] = TensorInfo(zf, tuple(zs), "float32")
        self.tensors[xc] = TensorInfo(xc, xs, "float32")
        self.digital(node, self.unique(name + "_cast_zp"), inputs=(zp,), outputs=(zf,),
                     op_type="Cast", attrs=to_float)
        self.digital(node, self.unique(name + "_sub_zp"), inputs=(xf, zf), outputs=(xc,),
                     op_type="Sub", attrs={})
        return xc

    def _integer_op(self, node: onnx.NodeProto, name: str, kind: str) -> None:
        w, bits = self._integer_weight(node, name, 1, 3, 0 if kind == "Conv" else -1)
        x = self._integer_input(node, name, 2)
        y = node.output[0]
        yf = self.unique(y + "__float")
        self.tensors[yf] = TensorInfo(yf, self.shape(y, node), "float32")
        fake = onnx.helper.make_node(kind, [x, "__w"], [yf], name=name)
        if kind == "Conv":
            fake.attribute.extend(node.attribute)
        sub = Converter({**self.consts, "__w": w}, self.tensors, self.display, self.ops,
                        self._names)
        (sub._Conv if kind == "Conv" else sub._MatMul)(fake, name)
        op = self.ops[-1]
        assert isinstance(op, MatrixOp)
        self.ops[-1] = op.replace(source=(node.name,),
                                  compression=op.compression.replace(weight_bits=bits))
        self.digital(node, self.unique(name + "_cast_out"), inputs=(yf,), outputs=(y,),
                     op_type="Cast", attrs={"to": int(onnx.TensorProto.INT32)})

    def _ConvInteger(self, node: onnx.NodeProto, name: str) -> None:
        self._integer_op(node, name, "Conv")

    def _MatMulInteger(self, node: onnx.NodeProto, name: str) -> None:
        if self.const(node.input[0]) is not None:
            raise UnsupportedOpError(
                f"{self.display}: node {name!r} is a MatMulInteger with a constant first "
                "operand; only a constant second operand (the weight) is supported")
        self._integer_op(node, name, "MatMul")
