"""QDQ graphs (``onnxruntime.quantization.quantize_static``, QDQ format): integer weights on
crossbars at their integer bits.

In a QDQ graph a weight is ``DequantizeLinear(q, scale, zero_point)`` of an integer initializer
feeding a Conv / ConvTranspose / Gemm / MatMul. Folded as it stands, the crossbar would hold the
float ``(q - zp) * scale``; instead, before folding, each such product is rewritten as

    y = op(x, q - zp) * scale           (bias B becomes B / scale inside the product)

with ``q - zp`` an integer-valued constant (what is programmed into the devices) and the scale
a per-output-channel (or per-tensor) digital multiply after the product, which is where an
integer accelerator applies it. The integer weight's signed bits are returned by constant name
so the converter records them as the layer's ``compression.weight_bits`` (8 for symmetric int8,
up to 9 for uint8 with a zero point), as for ConvInteger / MatMulInteger.

A weight whose scale does not factor out of the product per output channel (per-input-channel
axes, blocked quantization, a weight read by a non-matrix node, Gemm with alpha != 1) is left to
the folder: it goes on the crossbar as float, with no recorded bits.

The activations' QuantizeLinear / DequantizeLinear pairs stay digital ops (one op per element):
they round with an asymmetric zero point, which the symmetric DAC quantization of the
simulation does not reproduce, so folding them into the DAC would change the numerics.
"""

from __future__ import annotations

import numpy as np
import onnx

MATRIX_WEIGHT = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def signed_bits(w: np.ndarray) -> int:
    """Bits (sign included) of an integer-valued array: magnitude bits + 1, at least 2."""
    peak = int(np.abs(w).max()) if w.size else 0
    return max(2, peak.bit_length() + 1)


def _output_scale(consumer: onnx.NodeProto, q: np.ndarray, scale: np.ndarray,
                  axis: int) -> np.ndarray | None:
    """The scale as a constant broadcasting over ``consumer``'s output, or None when it does
    not factor out of the product per output channel."""
    if scale.size == 1:
        return scale.reshape(()).astype(np.float32)
    s = scale.reshape(-1).astype(np.float32)
    axis = axis % q.ndim
    op = consumer.op_type
    if op == "Conv" and axis == 0:  # W [C_out, C_in/g, k...]; y [N, C_out, ...]
        return s.reshape((-1,) + (1,) * (q.ndim - 2))
    if op == "ConvTranspose" and axis == 1 and int(_attr(consumer, "group", 1)) == 1:
        return s.reshape((-1,) + (1,) * (q.ndim - 2))  # W [C_in, C_out, k...]
    if op == "Gemm" and q.ndim == 2 and axis == (0 if _attr(consumer, "transB", 0) else 1):
        return s  # y [M, N]
    if op == "MatMul" and axis == q.ndim - 1:
        return s  # y [..., N]
    return None


def _dq_params(dq: onnx.NodeProto, consts: dict[str, np.ndarray]
               ) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, zero point) of a DequantizeLinear whose parameters are constants."""
    scale = consts.get(dq.input[1]) if len(dq.input) > 1 else None
    zp_name = dq.input[2] if len(dq.input) > 2 else ""
    zp = consts.get(zp_name) if zp_name else np.zeros((), np.int8)
    if scale is None or zp is None or _attr(dq, "block_size", 0):
        return None
    return scale, zp


def _centered(q: np.ndarray, zp: np.ndarray, axis: int) -> np.ndarray:
    z = zp.astype(np.float32)
    if z.size > 1:
        shape = [1] * q.ndim
        shape[axis % q.ndim] = z.size
        z = z.reshape(shape)
    return q.astype(np.float32) - z


def integer_weights(nodes: list[onnx.NodeProto], consts: dict[str, np.ndarray],
                    outputs: set[str]) -> tuple[list[onnx.NodeProto], dict[str, int]]:
    """Rewrite the QDQ weight products of ``nodes`` (see the module doc); ``consts`` gains the
    integer weights, scales and biases. Returns the new node list and the signed bits of each
    integer weight constant.

    When the product's input is itself ``DequantizeLinear(xq, x_scale, x_zp)`` with a
    per-tensor scale, the product runs on ``xq - x_zp`` (digital Cast and Sub) and
    the output scale is ``x_scale * w_scale``: every partial sum is then an integer (exact in
    float32 below 2^24), so the result does not depend on the order the crossbar tiles' sums
    are added in, and an int32 bias (``DequantizeLinear(b, x_scale * w_scale)``) is added as
    the integer it is, as an integer accelerator (and onnxruntime's QLinearConv) does."""
    producers = {o: n for n in nodes for o in n.output}
    readers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for n in nodes:
        for k, i in enumerate(n.input):
            readers.setdefault(i, []).append((n, k))
    replace: dict[int, list[onnx.NodeProto]] = {}
    bits: dict[str, int] = {}
    int_inputs: dict[str, str] = {}  # activation DQ output -> its scale-1 twin
    for dq in nodes:
        if dq.op_type != "DequantizeLinear" or dq.domain not in ("", "ai.onnx"):
            continue
        q = consts.get(dq.input[0])
        params = _dq_params(dq, consts)
        if q is None or params is None or q.dtype.kind not in "iu" or dq.output[0] in outputs:
            continue
        scale, zp = params
        uses = readers.get(dq.output[0], [])
        if not uses or any(n.op_type not in MATRIX_WEIGHT or k != MATRIX_WEIGHT[n.op_type]
                           or n.domain not in ("", "ai.onnx") or id(n) in replace
                           or (n.op_type == "Gemm" and float(_attr(n, "alpha", 1.0)) != 1.0)
                           for n, k in uses):
            continue
        axis = int(_attr(dq, "axis", 1))
        scales = [_output_scale(n, q, scale, axis) for n, _ in uses]
        if any(s is None for s in scales):
            continue
        w_int = _centered(q, zp, axis)
        wname = dq.output[0] + "__int"
        consts[wname] = w_int
        bits[wname] = signed_bits(w_int)
        for (node, _), s in zip(uses, scales):
            assert s is not None
            base = node.name or node.output[0]
            new = onnx.NodeProto()
            new.CopyFrom(node)
            new.input[1] = wname
            new.output[0] = f"{node.output[0]}__int"
            extra: list[onnx.NodeProto] = []
            xdq = producers.get(node.input[0])
            xparams = _dq_params(xdq, consts) if xdq is not None \
                and xdq.op_type == "DequantizeLinear" and xdq.input[0] not in consts else None
            if xparams is not None and xparams[0].size == 1:
                x_int = int_inputs.get(node.input[0])
                assert xdq is not None
                if x_int is None:  # one integer twin per activation
                    # a Cast and a Sub, not a DequantizeLinear of scale 1: onnxruntime would
                    # fuse DequantizeLinear -> Conv into its int16-saturating QLinearConv
                    x_int = int_inputs[node.input[0]] = node.input[0] + "__int"
                    xname = xdq.name or xdq.output[0]
                    x_f = x_int if not np.any(xparams[1]) else x_int + "_uncentered"
                    extra.append(onnx.helper.make_node(
                        "Cast", [xdq.input[0]], [x_f], name=xname + "_to_float",
                        to=onnx.TensorProto.FLOAT))
                    if x_f != x_int:
                        zf = x_int + "_zero_point"
                        consts[zf] = xparams[1].astype(np.float32).reshape(())
                        extra.append(onnx.helper.make_node("Sub", [x_f, zf], [x_int],
                                                           name=xname + "_center"))
                new.input[0] = x_int
                s = (s * xparams[0].astype(np.float32).reshape(())).astype(np.float32)
            s_name = f"{base}__out_scale"
            consts[s_name] = s
            if len(node.input) > 2 and node.input[2]:  # the bias, in the integer domain
                b_int = f"{node.input[2]}__int_{base}"
                bdq = producers.get(node.input[2])
                bparams = _dq_params(bdq, consts) if bdq is not None \
                    and bdq.op_type == "DequantizeLinear" else None
                bq = consts.get(bdq.input[0]) if bdq is not None else None
                s_flat = s.reshape(-1) if s.ndim else s
                if bdq is not None and bparams is not None and bq is not None \
                        and bq.dtype.kind in "iu" \
                        and np.allclose(bparams[0].astype(np.float32).reshape(-1), s_flat,
                                        rtol=1e-6, atol=0):  # the int32 bias itself
                    consts[b_int] = _centered(bq, bparams[1], int(_attr(bdq, "axis", 1)))
                else:
                    consts[f"{base}__out_scale_flat"] = s_flat
                    extra.append(onnx.helper.make_node(
                        "Div", [node.input[2], f"{base}__out_scale_flat"], [b_int],
                        name=f"{base}_bias_to_integer"))
                new.input[2] = b_int
            mul = onnx.helper.make_node("Mul", [new.output[0], s_name], [node.output[0]],
                                        name=f"{base}_output_scale")
            replace[id(node)] = extra + [new, mul]
    if not replace:
        return nodes, {}
    for name in int_inputs:  # an activation dequantization only rewritten products read
        if name not in outputs and all(id(n) in replace for n, _ in readers.get(name, [])):
            replace[id(producers[name])] = []
    out: list[onnx.NodeProto] = []
    for n in nodes:
        out.extend(replace.get(id(n), [n]))
    return out, bits
