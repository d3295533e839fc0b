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
