"""Per-layer accuracy sensitivity: what each crossbar layer costs when it alone is on the hardware.

For every crossbar layer L of a compiled graph, the simulation is run with L as the hardware
makes it (its device noise, DAC and ADC, its weight quantization and pruning) and every other
crossbar layer an exact float product; the accuracy drop of that model against the float model
(`imccompile.guardrails` units) is L's sensitivity. The other layers run with their weights
before the passes (so a row shows L alone); a layer the passes created or reshaped (no layer of
that name and shape before them) runs with its weight after the passes, exactly. The DAC and
ADC ranges are the compile's calibration (the chip's, as programmed). Over ``seeds`` noise draws
(seed s draws L's devices as ``np.random.default_rng(s)``), the mean is reported.

Layers are ranked by drop, largest first: the first is the biggest contributor the accuracy
guardrail names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from imccompile import metrics
from imccompile.guardrails import accuracy_drop

if TYPE_CHECKING:
    from imccompile.ir import Graph
    from imccompile.mapper import Mapping as ChipMapping
    from imccompile.simulate import Calibration, Dataset, SimOptions


@dataclass(frozen=True)
class LayerSensitivity:
    """One crossbar layer alone on the hardware.

    Attributes:
        name: the layer.
        label: its short label in the reports (L1, L2... in graph order, as the heat map).
        accuracy: the headline metric with only this layer on the hardware, mean over seeds.
        std: its standard deviation over the seeds (0 for one seed).
        drop: float minus accuracy in budget units (points; relerr: % of relative error; dB).
    """

    name: str
    label: str
    accuracy: float
    std: float
    drop: float


@dataclass(frozen=True)
class Sensitivity:
    """Every crossbar layer's sensitivity, ranked (largest drop first)."""

    metric: str
    float_value: float
    seeds: int
    layers: tuple[LayerSensitivity, ...]


def layer_labels(graph: Graph) -> dict[str, str]:
    """L1, L2, ... for the crossbar layers in graph order (the reports' short names)."""
    return {op.name: f"L{i + 1}" for i, op in enumerate(graph.matrix_ops)}


def float_weights(graph: Graph, original: Graph | None) -> dict[str, np.ndarray]:
    """The float weight each crossbar layer has before the passes (same name and shape in
    ``original``), else its weight after them."""
    before = {op.name: op for op in original.matrix_ops} if original is not None else {}
    out = {}
    for op in graph.matrix_ops:
        src = before.get(op.name)
        out[op.name] = (src.weight if src is not None and src.weight.shape == op.weight.shape
                        else op.weight)
    return out


def layer_sensitivity(graph: Graph, target, data: Dataset, cal: Calibration, opts: SimOptions,
                      *, seeds: int = 1, metric: str = "auto", original: Graph | None = None,
                      mapping: ChipMapping | None = None) -> Sensitivity:
    """Sensitivity of every crossbar layer of a compiled ``graph`` (module docstring).
    ``cal``: the compile's calibration (its reference: the float model's outputs)."""
    from imccompile.simulate import one_layer_parts, run_outputs

    kinds = metrics.output_kinds(graph)
    name = metrics.resolve(metric, kinds, data.labels)
    ref = cal.reference
    float_value = metrics.headline(name, metrics.output_metrics(graph.outputs, kinds, ref, ref,
                                                                data.labels, name))
    others = float_weights(graph, original)
    labels = layer_labels(graph)
    rows = []
    for op in graph.matrix_ops:
        values = []
        for s in range(seeds):
            model = one_layer_parts(graph, target, cal, opts, s, op.name, others, mapping)
            out = run_outputs(graph, model, data)
            per = metrics.output_metrics(graph.outputs, kinds, out, ref, data.labels, name)
            values.append(metrics.headline(name, per))
        arr = np.array(values, dtype=float)
        mean = float(arr.mean())
        rows.append(LayerSensitivity(op.name, labels[op.name], mean,
                                     float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
                                     float(accuracy_drop(name, float_value, mean))))
    rows.sort(key=lambda r: (-r.drop, int(r.label[1:])))  # ties: graph order
    return Sensitivity(name, float(float_value), seeds, tuple(rows))


def sensitivity_dict(sens: Sensitivity) -> dict[str, Any]:
    """The report's ``sensitivity`` section."""
    return {"metric": sens.metric, "float": sens.float_value, "seeds": sens.seeds,
            "unit": "dB" if sens.metric == "snr" else
            ("percent of relative error" if sens.metric == "relerr" else "percentage points"),
            "layers": [{"rank": i + 1, "name": r.name, "label": r.label, "accuracy": r.accuracy,
                        "std": r.std, "drop": r.drop} for i, r in enumerate(sens.layers)]}
