"""Accuracy metrics that fit the output: how the hardware's outputs compare with the float model's.

Every graph output is scored on its own (outputs stacked over the samples, as the simulation
gives them):

* ``agreement``: top-1 agreement, the fraction of rows whose argmax along the last axis is the
  float model's. Computed for *class-score* outputs (`is_class_scores`: a (batch, classes)
  output of >= 2 columns made by a crossbar layer (logits) or a Softmax/LogSoftmax, through
  shape-only ops and ops by constants), or for every output with ``metric="agreement"``.
* ``cosine``: cosine similarity of hardware and float output, per sample, averaged over the
  samples (1 when equal; 1 when both are all zero).
* ``relerr``: ||out - ref|| / ||ref|| over all samples (0 when equal).
* ``snr``: 10 log10(||ref||² / ||out - ref||²) in dB over all samples, clipped to
  [-SNR_MAX_DB, SNR_MAX_DB] (equal outputs give SNR_MAX_DB: reports hold no Inf).
* ``top1``: with labels, the accuracy of the first output's argmax against them.

The headline metric (``metric="auto"``): top-1 accuracy against the labels when given; else
top-1 agreement when every output is a class-score output; else cosine. An explicit metric is
the headline instead. The headline value is the mean over the outputs of that metric (top1: the
first output). relerr is the only one that is better when lower; the search maximizes
`objective_value` (-relerr for relerr).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np

from imccompile.errors import DataError, UsageError
from imccompile.ir import MatrixOp

if TYPE_CHECKING:
    from imccompile.ir import Graph

Metric = Literal["top1", "agreement", "cosine", "relerr", "snr"]
METRICS: tuple[str, ...] = ("top1", "agreement", "cosine", "relerr", "snr")
METRIC_CHOICES: tuple[str, ...] = ("auto",) + METRICS
SNR_MAX_DB = 100.0  # equal outputs (float32 rounding gives ~140 dB); "perfect" is >= 60 dB
PERFECT_SNR_DB = 60.0
OutputKind = Literal["class_scores", "values"]

_SHAPE_ONLY = {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Cast", "Dropout"}
_SCORES = {"Softmax", "LogSoftmax"}
_AFFINE = {"Add", "Sub", "Mul", "Div", "DequantizeLinear", "QuantizeLinear"}  # by constants


def check_metric(metric: str) -> str:
    if metric not in METRIC_CHOICES:
        raise UsageError(f"--metric {metric}: expected one of {', '.join(METRIC_CHOICES)}")
    return metric


def direction(metric: str) -> Literal["maximize", "minimize"]:
    return "minimize" if metric == "relerr" else "maximize"


def is_class_scores(graph: Graph, name: str) -> bool:
    """A (batch, classes) score output: 2-D, >= 2 columns, made by a crossbar layer (logits) or
    by Softmax/LogSoftmax, through shape-only ops (Reshape, Flatten, Squeeze, Identity...) and
    ops by constants or small (per-column or scalar) tensors (a bias Add, a scale Mul,
    DequantizeLinear)."""
    info = graph.tensors.get(name)
    if info is None or len(info.shape) != 2 or info.shape[1] < 2:
        return False
    producers = {t: op for op in graph.ops for t in op.outputs}
    t = name
    for _ in range(16):
        op = producers.get(t)
        if op is None:
            return False
        if isinstance(op, MatrixOp) or op.op_type in _SCORES:
            return True
        if op.op_type in _AFFINE:  # bias, scale, dequantization of logits: follow the operand
            shape = graph.tensors[t].shape if t in graph.tensors else None
            rest = [i for i in op.inputs if i and i not in op.constants]
            main = [i for i in rest if i in graph.tensors and graph.tensors[i].shape == shape]
            small = all(i in graph.tensors and int(np.prod(graph.tensors[i].shape)) <= info.shape[1]
                        for i in rest if i not in main)
            if len(main) != 1 or not small:
                return False
            t = main[0]
            continue
        if op.op_type not in _SHAPE_ONLY or not op.inputs:
            return False
        t = op.inputs[0]
    return False


def output_kinds(graph: Graph) -> list[OutputKind]:
    return ["class_scores" if is_class_scores(graph, n) else "values" for n in graph.outputs]


def resolve(metric: str, kinds: Sequence[OutputKind], labels: np.ndarray | None) -> str:
    """The headline metric: ``metric``, or for "auto" the one that fits the outputs."""
    check_metric(metric)
    if metric == "top1" and labels is None:
        raise UsageError("--metric top1 is the accuracy against labels: give 'labels' in the "
                         "data, or use --metric agreement (top-1 agreement with the float model)")
    if metric != "auto":
        return metric
    if labels is not None:
        return "top1"
    return "agreement" if kinds and all(k == "class_scores" for k in kinds) else "cosine"


def agreement(out: np.ndarray, ref: np.ndarray) -> float:
    c = out.shape[-1] if out.ndim else 1
    a = out.reshape(-1, c).argmax(axis=-1)
    b = ref.reshape(-1, c).argmax(axis=-1)
    return float((a == b).mean()) if a.size else 1.0


def cosine(out: np.ndarray, ref: np.ndarray) -> float:
    n = out.shape[0] if out.ndim else 1
    x = out.reshape(n, -1).astype(np.float64)
    y = ref.reshape(n, -1).astype(np.float64)
    nx, ny = np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1)
    dot = np.einsum("ij,ij->i", x, y)
    both = nx * ny
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.where(both > 0, dot / np.where(both > 0, both, 1.0), np.where(nx + ny == 0, 1.0, 0.0))
    return float(np.clip(c, -1.0, 1.0).mean())


def relerr(out: np.ndarray, ref: np.ndarray) -> float:
    r = ref.astype(np.float64)
    e = float(np.linalg.norm((out.astype(np.float64) - r).ravel()))
    return e / max(float(np.linalg.norm(r.ravel())), 1e-30) if e > 0 else 0.0


def snr_db(out: np.ndarray, ref: np.ndarray) -> float:
    r = ref.astype(np.float64).ravel()
    noise = float(np.sum((out.astype(np.float64).ravel() - r) ** 2))
    signal = float(np.sum(r ** 2))
    if noise == 0.0:
        return SNR_MAX_DB
    if signal == 0.0:
        return -SNR_MAX_DB
    return float(np.clip(10.0 * np.log10(signal / noise), -SNR_MAX_DB, SNR_MAX_DB))


def top1(out: np.ndarray, labels: np.ndarray) -> float:
    pred = out.reshape(-1, out.shape[-1]).argmax(axis=-1)
    lab = np.asarray(labels).reshape(-1)
    if pred.size != lab.size:
        raise DataError(f"{lab.size} labels for {pred.size} predictions of the first output "
                        f"(shape {list(out.shape[1:])} per sample)")
    return float((pred == lab).mean())


def output_metrics(names: Sequence[str], kinds: Sequence[OutputKind], outs: Sequence[np.ndarray],
                   refs: Sequence[np.ndarray], labels: np.ndarray | None,
                   metric: str) -> list[dict[str, float]]:
    """Per output, the metrics that fit it (see the module docstring) plus ``metric``."""
    res = []
    for i, (name, kind, out, ref) in enumerate(zip(names, kinds, outs, refs)):
        m: dict[str, float] = {}
        if i == 0 and labels is not None:
            m["top1"] = top1(out, labels)
        if kind == "class_scores" or metric == "agreement":
            if metric == "agreement" and (out.ndim < 2 or out.shape[-1] < 2):
                raise UsageError(f"--metric agreement: output {name!r} has one value along its "
                                 f"last axis (shape {list(out.shape[1:])} per sample); top-1 "
                                 "agreement needs >= 2 classes: use cosine, relerr or snr")
            m["agreement"] = agreement(out, ref)
        m["cosine"] = cosine(out, ref)
        m["relerr"] = relerr(out, ref)
        m["snr"] = snr_db(out, ref)
        res.append(m)
    return res


def headline(metric: str, per_output: Sequence[dict[str, float]]) -> float:
    """The headline value: the mean of ``metric`` over the outputs (top1: the first output)."""
    if metric == "top1":
        return per_output[0]["top1"]
    return float(np.mean([m[metric] for m in per_output]))


def objective_value(metric: str, value: float) -> float:
    """The search's accuracy objective (maximized): the value, or -relerr."""
    return -value if direction(metric) == "minimize" else value


def drop(metric: str, float_value: float, value: float) -> float:
    """Loss against the float model in the units of ``--max-accuracy-drop``: percentage points
    (top1, agreement, cosine x 100), percent of relative error (relerr x 100), dB (snr)."""
    if metric == "snr":
        return float_value - value
    if metric == "relerr":
        return 100.0 * (value - float_value)
    return 100.0 * (float_value - value)
