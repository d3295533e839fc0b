"""IR-level fusions done at import: constant bias Add and BatchNormalization into the matrix op.

Both keep the model's function exactly (up to float rounding) and only apply when the matrix op's
output feeds nothing else and is not a graph output.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from imccompile.ir import DigitalOp, Graph, MatrixOp


def output_channel_of_column(op: MatrixOp) -> np.ndarray:
    """For each of the op's N columns, the output channel (or feature) it contributes to."""
    n = np.arange(op.cols)
    if op.kind == "conv_transpose":
        cout = int(op.attrs["out_channels"])
        cout_g = cout // op.groups
        kk = op.cols_per_group // cout_g
        g = n // op.cols_per_group
        return g * cout_g + (n % op.cols_per_group) // kk
    if op.kind in ("matmul", "matmul_left") and op.groups > 1:
        return n % op.cols_per_group
    return n


def _uses(graph: Graph) -> Counter:
    c: Counter = Counter()
    for o in graph.ops:
        c.update(t for t in o.inputs if t)
    c.update(graph.outputs)
    return c


def _channel_vector(op: MatrixOp, value: np.ndarray, out_rank: int) -> np.ndarray | None:
    """The per-output-channel vector a constant broadcasts to, or None if it is not one."""
    nch = int(op.attrs.get("out_channels", op.cols_per_group if op.kind != "gemm" else op.cols))
    v = np.asarray(value, np.float32)
    if op.kind in ("conv", "conv_transpose"):
        # channel axis is 1 of (B, C, *spatial)
        if v.ndim > out_rank:
            return None
        full = v.reshape((1,) * (out_rank - v.ndim) + v.shape)
        if any(d != 1 for i, d in enumerate(full.shape) if i != 1):
            return None
        flat = full.reshape(-1)
    else:
        if v.ndim > out_rank or any(d != 1 for d in v.shape[:-1]):
            return None
        flat = v.reshape(-1)
    if flat.size == 1:
        return np.full(nch, flat[0], np.float32)
    return flat if flat.size == nch else None


def _fusion_state(graph: Graph) -> tuple[Counter, list, dict[str, int], set[int]]:
    """(uses per tensor, ops, index of the matrix op writing each tensor, removed op indices)."""
    ops = list(graph.ops)
    by_out = {o.outputs[0]: i for i, o in enumerate(ops) if isinstance(o, MatrixOp)}
    return _uses(graph), ops, by_out, set()


def fuse_bias_add(graph: Graph) -> Graph:
    """Fold ``Add(matrix_out, const)`` with a per-channel constant into the matrix op's bias."""
    uses, ops, by_out, removed = _fusion_state(graph)
    for j, op in enumerate(ops):
        if not (isinstance(op, DigitalOp) and op.op_type == "Add" and len(op.inputs) == 2):
            continue
        for a, c in ((0, 1), (1, 0)):
            src, cst = op.inputs[a], op.inputs[c]
            if src in by_out and cst in op.constants and uses[src] == 1:
                i = by_out[src]
                m = ops[i]
                assert isinstance(m, MatrixOp)
                if m.kind == "matmul_left":  # its crossbar columns are not the last axis
                    continue
                rank = len(graph.tensors[src].shape)
                vec = _channel_vector(m, op.constants[cst], rank)
                if vec is None or graph.tensors[op.outputs[0]].shape != graph.tensors[src].shape:
                    continue
                ch_bias = vec if m.kind == "conv_transpose" else vec[output_channel_of_column(m)]
                bias = ch_bias if m.bias is None else m.bias + ch_bias
                ops[i] = m.replace(bias=bias.astype(np.float32), outputs=op.outputs,
                                   source=m.source + op.source)
                removed.add(j)
                del by_out[src]
                break
    tensors = dict(graph.tensors)
    return graph.replace(ops=tuple(o for k, o in enumerate(ops) if k not in removed), tensors=tensors)


def fold_batchnorm(graph: Graph) -> Graph:
    """Fold inference-mode BatchNormalization that follows a Conv/ConvTranspose/Gemm/MatMul."""
    uses, ops, by_out, removed = _fusion_state(graph)
    for j, op in enumerate(ops):
        if not (isinstance(op, DigitalOp) and op.op_type == "BatchNormalization"):
            continue
        x = op.inputs[0]
        if x not in by_out or uses[x] != 1 or len([o for o in op.outputs if o]) != 1:
            continue
        if not all(t in op.constants for t in op.inputs[1:5]):
            continue
        i = by_out[x]
        m = ops[i]
        assert isinstance(m, MatrixOp)
        shape = graph.tensors[x].shape
        if m.kind == "matmul_left" or m.kind not in ("conv", "conv_transpose") and len(shape) != 2:
            continue  # BN over dim 1 of a >2-D matmul output is not per column
        scale, beta, mean, var = (np.asarray(op.constants[t], np.float64) for t in op.inputs[1:5])
        eps = float(op.attrs.get("epsilon", 1e-5))
        s = scale / np.sqrt(var + eps)
        col = output_channel_of_column(m)
        if s.size != int(col.max()) + 1:
            continue
        w = (m.weight.astype(np.float64) * s[col][None, :]).astype(np.float32)
        nb = m.cols if m.kind != "conv_transpose" else s.size
        b = np.zeros(nb) if m.bias is None else m.bias.astype(np.float64)
        ch = np.arange(nb) if m.kind == "conv_transpose" else col
        b = ((b - mean[ch]) * s[ch] + beta[ch]).astype(np.float32)
        ops[i] = m.replace(weight=np.ascontiguousarray(w), bias=b, outputs=(op.outputs[0],),
                           weight_id=None,  # the folded weight is this op's own
                           source=m.source + op.source)
        removed.add(j)
        del by_out[x]
    return graph.replace(ops=tuple(o for k, o in enumerate(ops) if k not in removed))
