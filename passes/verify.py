"""Graph invariants the pass manager checks after every pass.

`graph_problems(after, before)` lists what a pass broke:
  * op names unique; every op input is a graph input, an earlier op's output, one of the op's
    constants, or omitted ("");
  * a matrix op keeps its kind, groups and weight shape (K, N) (passes change values, not
    shapes); weights are finite float32;
  * compression: mask None or a bool array of the weight's shape, pruned weights zero;
    weight_bits / act_bits None or ints in 1..16; act_range None or finite and >= 0.
"""

from __future__ import annotations

import numpy as np

from imccompile.ir import DigitalOp, Graph, MatrixOp


def _matrix_problems(op: MatrixOp, old: MatrixOp | None) -> list[str]:
    p: list[str] = []
    w = op.weight
    if not isinstance(w, np.ndarray) or w.ndim != 2:
        return [f"{op.name}: weight is not a 2-D array"]
    if old is not None:
        if w.shape != old.weight.shape:
            p.append(f"{op.name}: weight shape changed from {old.weight.shape} to {w.shape}")
        if op.kind != old.kind or op.groups != old.groups:
            p.append(f"{op.name}: kind/groups changed from {old.kind}/{old.groups} to "
                     f"{op.kind}/{op.groups}")
    if w.dtype != np.float32:
        p.append(f"{op.name}: weight dtype is {w.dtype}, expected float32")
    if not np.all(np.isfinite(w)):
        p.append(f"{op.name}: weight holds NaN or Inf")
    c = op.compression
    if c.mask is not None:
        m = c.mask
        if not isinstance(m, np.ndarray) or m.dtype != np.bool_ or m.shape != w.shape:
            p.append(f"{op.name}: mask must be a bool array of shape {w.shape}, got "
                     f"{getattr(m, 'dtype', type(m).__name__)} {getattr(m, 'shape', '')}")
        elif np.any(w[~m] != 0):
            p.append(f"{op.name}: {int(np.count_nonzero(w[~m]))} pruned weights are not zero")
    for field in ("weight_bits", "act_bits"):
        v = getattr(c, field)
        if v is not None and (not isinstance(v, (int, np.integer)) or isinstance(v, bool)
                              or not 1 <= v <= 16):
            p.append(f"{op.name}: compression.{field}={v!r}, expected None or an int in 1..16")
    if c.act_range is not None and not (np.isfinite(c.act_range) and c.act_range >= 0):
        p.append(f"{op.name}: compression.act_range={c.act_range!r}, expected None or >= 0")
    return p


def graph_problems(graph: Graph, before: Graph | None = None) -> list[str]:
    """What is wrong with ``graph`` (empty when nothing); ``before`` is the pass's input."""
    if not isinstance(graph, Graph):
        return [f"not a Graph but {type(graph).__name__}"]
    problems: list[str] = []
    old = {op.name: op for op in before.matrix_ops} if before is not None else {}
    names = [op.name for op in graph.ops]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        problems.append("duplicate op names: " + ", ".join(dup))
    available = set(graph.inputs)
    for op in graph.ops:
        consts = op.constants if isinstance(op, DigitalOp) else {}
        for t in op.inputs:
            if t and t not in available and t not in consts:
                problems.append(f"{op.name}: input {t!r} is not produced before it")
        available.update(op.outputs)
        if isinstance(op, MatrixOp):
            prev = old.get(op.name)
            problems += _matrix_problems(op, prev if isinstance(prev, MatrixOp) else None)
    for t in graph.outputs:
        if t not in available:
            problems.append(f"graph output {t!r} is produced by no op")
    return problems
