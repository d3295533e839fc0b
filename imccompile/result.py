"""`CompileResult`: what one compile produced, as plain typed data.

Nothing here computes: the report (`imccompile.outputs.report`), the simulation model
(`imccompile.simulate.simulation_model_of`), the float model (`imccompile.emit.emit`) and the
program image (`imccompile.program.files`) are functions that read a result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypedDict

from imccompile.options import CompileOptions

if TYPE_CHECKING:
    from imccompile.cost import Cost
    from imccompile.ir import Graph
    from imccompile.mapper import Mapping
    from imccompile.schedule import Schedule
    from imccompile.sensitivity import Sensitivity
    from imccompile.simulate import Calibration
    from imccompile.spec.schema import Target

# One metric of one output over the noise seeds. Functional form: a field is called "float".
MetricStats = TypedDict("MetricStats", {
    "float": float,  # the float (uncompressed) model's value
    "mean": float,
    "std": float,
    "per_seed": list[float],
})


class OutputAccuracy(TypedDict):
    """The metrics of one graph output (`imccompile.metrics`)."""

    name: str
    shape: list[int]
    kind: str  # class_scores or values
    metrics: dict[str, MetricStats]  # top1 (first output, labels), agreement, cosine, relerr, snr


# The accuracy under the hardware (imccompile.simulate.evaluate).
Accuracy = TypedDict("Accuracy", {
    "metric": str,  # the headline: top1 (labels), agreement, cosine, relerr or snr
    "direction": str,  # maximize, or minimize (relerr)
    "float": float,  # the float (uncompressed) model's score
    "mean": float,  # over the noise seeds
    "std": float,
    "per_seed": list[float],
    "relative_error": float,  # ||out - float out|| / ||float out||, mean over outputs and seeds
    "samples": int,
    "seeds": list[int],
    "outputs": list[OutputAccuracy],  # every graph output, its metrics
})


@dataclass(frozen=True)
class CompileResult:
    """Everything one compile produced.

    Attributes:
        model_name: the graph's name.
        graph: the compiled graph (after the passes).
        target: the resolved target (overrides applied).
        mapping, cost, schedule: the physical layout and what it costs.
        pipeline: the canonical pipeline text of the passes that ran ("" for none).
        options: the options the compile ran with.
        accuracy: the accuracy under the hardware, when data was given.
        calibration: DAC and ADC steps calibrated on the data, when data was given.
        sensitivity: every crossbar layer's accuracy drop alone on the hardware, when asked
            for (``sensitivity=True``).

    In a notebook: a short ``repr``, an HTML summary (``_repr_html_``), ``layers_frame()``
    (pandas) and ``to_csv(path)`` (one row per layer, `imccompile.tables.layer_rows`).
    """

    model_name: str
    graph: Graph
    target: Target
    mapping: Mapping
    cost: Cost
    schedule: Schedule
    pipeline: str = ""
    options: CompileOptions = field(default_factory=CompileOptions)
    accuracy: Accuracy | None = None
    calibration: Calibration | None = None
    sensitivity: Sensitivity | None = None

    def _summary(self) -> list[tuple[str, str]]:
        items = [("model", self.model_name), ("target", self.target.name),
                 ("pipeline", self.pipeline or "(none)"), ("arrays", str(self.mapping.arrays)),
                 ("energy_j", f"{self.cost.energy_j:.4g}"),
                 ("latency_s", f"{self.schedule.latency_s:.4g}"),
                 ("area_mm2", f"{self.cost.area_mm2:.4g}")]
        if self.accuracy is not None:
            a = self.accuracy
            items.append((f"accuracy ({a['metric']})",
                          f"{a['mean']:.4f} ± {a['std']:.4f} (float {a['float']:.4f})"))
        if self.sensitivity is not None and self.sensitivity.layers:
            top = self.sensitivity.layers[0]
            items.append(("most sensitive layer", f"{top.name} ({top.drop:.3g})"))
        return items

    def __repr__(self) -> str:
        return "CompileResult(" + ", ".join(f"{k}={v!r}" if k in ("model", "target", "pipeline")
                                            else f"{k}={v}" for k, v in self._summary()) + ")"

    def _repr_html_(self) -> str:
        from html import escape

        rows = "".join(f"<tr><th style='text-align:left'>{escape(k)}</th><td>{escape(v)}</td></tr>"
                       for k, v in self._summary())
        return f"<table><caption>CompileResult</caption>{rows}</table>"

    def layer_rows(self) -> list[dict]:
        """One dict per op (`imccompile.tables.layer_rows`)."""
        from imccompile.tables import layer_rows

        return layer_rows(self)

    def layers_frame(self):
        """The per-layer table as a pandas DataFrame (needs the ``pandas`` extra)."""
        from imccompile.tables import frame

        return frame(self.layer_rows())

    def to_csv(self, path=None) -> str:
        """The per-layer table as CSV text; written to ``path`` when given."""
        from imccompile.tables import csv_text

        text = csv_text(self.layer_rows())
        if path is not None:
            with open(path, "w", encoding="utf-8", newline="") as f:
                f.write(text)
        return text
