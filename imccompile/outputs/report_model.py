"""The typed model of the JSON report (what `imccompile.outputs.report.build_report` returns).

``imccompile/schemas/report.schema.json`` is generated from `Report`
(``python -m imccompile.outputs.gen_schema``); a test checks the shipped file is current and
that built reports validate against it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import ConfigDict, Field, TypeAdapter
from typing_extensions import NotRequired, TypedDict

REPORT_FORMAT = 1

Count = Annotated[int, Field(ge=0)]
NonNeg = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
ENERGY_PARTS = ("array", "dac", "adc", "shift_add", "accumulate", "digital", "buffer", "noc",
                "dram", "write", "leakage")


def _desc(text: str) -> Any:
    return Field(description=text)


class Totals(TypedDict):
    """Whole-model figures for one inference."""

    matrix_ops: Count
    digital_ops: Count
    arrays: Count
    chips: Annotated[int, Field(ge=1)]
    overflow_arrays: Count
    utilization: Fraction
    weights: Count
    macs: Count
    digital_op_count: Count
    energy_j: Annotated[NonNeg, _desc("Energy per inference, J (= sum of energy_breakdown_j).")]
    latency_s: Annotated[NonNeg, _desc("Latency of one inference: the critical path of the op "
                                       "DAG, s.")]
    serial_latency_s: Annotated[NonNeg, _desc("Sum of all op latencies, s.")]
    pipeline_period_s: Annotated[NonNeg, _desc("Time between inferences in the layer pipeline, "
                                               "s.")]
    area_mm2: Annotated[NonNeg, _desc("Area of the arrays used with their converters, the "
                                      "buffers of their cores and the routers of their tiles, "
                                      "mm².")]
    chip_area_mm2: Annotated[NonNeg, _desc("Area of the whole chip(s) the model occupies, mm².")]
    tops: Annotated[NonNeg, _desc(
        "Single-inference throughput: 2 x MACs / latency (critical path), 1e12 ops/s.")]
    tops_per_w: Annotated[NonNeg, _desc(
        "2 x MACs / energy per inference, 1e12 ops/J (the same pipelined or not).")]
    tops_per_mm2: Annotated[NonNeg, _desc("tops / area_mm2.")]
    pipelined_tops: NotRequired[Annotated[NonNeg, _desc(
        "Pipelined throughput, NeuroSim's definition: 2 x MACs / pipeline period, 1e12 ops/s.")]]
    pipelined_tops_per_mm2: NotRequired[Annotated[NonNeg, _desc("pipelined_tops / area_mm2.")]]
    inferences_per_s: NonNeg
    energy_per_inference_j: NonNeg
    energy_breakdown_j: Annotated[dict[str, NonNeg], Field(
        description="Energy per component, J.", json_schema_extra={"required": list(ENERGY_PARTS)})]
    area_breakdown_mm2: dict[str, NonNeg]
    dram_bytes: NotRequired[Annotated[NonNeg, _desc(
        "Bytes moved off-chip per inference: activations beyond the buffers and weights "
        "reloaded under --overflow reload (imccompile.memory).")]]


class Layer(TypedDict):
    """One op: a matrix op on crossbars, or a digital op (kind 'digital')."""

    name: Annotated[str, _desc("Layer (op) name, from the ONNX node.")]
    kind: Annotated[Literal["conv", "conv_transpose", "gemm", "matmul", "matmul_left", "digital"],
                    _desc("Matrix-op kind, or 'digital' for ops on the digital unit.")]
    rows: Annotated[Count, _desc("K: crossbar rows of one group (0 for digital ops).")]
    cols: Annotated[Count, _desc("N: logical output columns over all groups (0 for digital ops).")]
    groups: Annotated[int, Field(ge=1)]
    weights: Annotated[Count, _desc("Weight elements placed on crossbars (K x N).")]
    vectors: Annotated[Count, _desc("Input vectors per inference per group.")]
    macs: Annotated[Count, _desc("Multiply-accumulates per inference (vectors x K x N).")]
    arrays: Annotated[Count, _desc("Arrays the layer places, replicas included (0 when it reads "
                                   "the arrays of a layer holding the same weight: see shares).")]
    utilization: Annotated[Fraction, _desc("Cells holding weights / cells of the arrays used.")]
    energy_j: Annotated[NonNeg, _desc("Energy per inference, J.")]
    latency_s: Annotated[NonNeg, _desc("Latency of this op for one inference, s.")]
    energy_breakdown_j: Annotated[dict[str, NonNeg], _desc("Energy per component, J.")]
    compute_latency_s: NotRequired[Annotated[NonNeg, _desc(
        "Compute part of latency_s (array reads and conversions, weight writes; digital ops), "
        "s.")]]
    movement_latency_s: NotRequired[Annotated[NonNeg, _desc(
        "Data-movement part of latency_s (buffer, NoC and DRAM bytes over their bandwidths, "
        "plus hop and DRAM latencies), s; latency_s = compute + movement.")]]
    buffer_bytes: NotRequired[Annotated[NonNeg, _desc(
        "Bytes read from and written to the on-chip buffers, at their activation precision.")]]
    noc_bytes: NotRequired[Annotated[NonNeg, _desc("Bytes sent one NoC hop (the output).")]]
    dram_bytes: NotRequired[Annotated[NonNeg, _desc(
        "Bytes moved off-chip (spilled activations, reloaded weights).")]]
    # matrix ops
    replicas: NotRequired[Annotated[int, Field(ge=1)]]
    slices: NotRequired[Count]
    row_tiles: NotRequired[Count]
    col_tiles: NotRequired[Count]
    packed: NotRequired[bool]
    weight_bits: NotRequired[Count]
    input_bits: NotRequired[Count]
    first_array: NotRequired[Count]
    input_activity: NotRequired[Annotated[Fraction, _desc(
        "Input bit activity the array and DAC energy were priced at: fraction of 1 bits "
        "(bit-serial) or mean relative pulse length (PWM).")]]
    activity_source: NotRequired[Annotated[Literal["given", "data", "spec", "worst_case"], _desc(
        "Where input_activity came from: given per layer, measured on the data, the spec's "
        "dac.input_activity, or worst_case (the spec states none: 1.0, every input bit 1).")]]
    label: NotRequired[Annotated[str, _desc(
        "Short label of a crossbar layer, L1, L2... in graph order (the HTML heat map's).")]]
    area_mm2: NotRequired[Annotated[NonNeg, _desc(
        "Area of the arrays the layer places with their converters and periphery, mm² (the "
        "buffers and routers they share are only in totals.area_mm2).")]]
    arrays_read: NotRequired[Annotated[Count, _desc(
        "Arrays the layer computes on (its own, or those of the layer it shares).")]]
    shares: NotRequired[Annotated[str | None, _desc(
        "The layer whose arrays this one reads (the same weight tensor, placed once), or null.")]]
    # digital ops
    op_type: NotRequired[str]
    attention: NotRequired[bool]
    ops: NotRequired[Count]
    bytes: NotRequired[Count]


class ScheduleSection(TypedDict):
    latency_s: NonNeg
    period_s: NonNeg
    critical_path: list[str]


MetricName = Literal["top1", "agreement", "cosine", "relerr", "snr"]
_METRIC_DOC = ("top1: accuracy of the first output against the labels; agreement: top-1 agreement "
               "with the float model (fraction of rows whose argmax is the float model's); "
               "cosine: cosine similarity with the float output per sample, mean over samples; "
               "relerr: ||out - float|| / ||float|| over all samples (lower is better); snr: "
               "10 log10(||float||^2 / ||out - float||^2) in dB over all samples, clipped to "
               "[-100, 100] (100: equal outputs).")

MetricStats = TypedDict("MetricStats", {
    "float": Annotated[float, _desc("The float (uncompressed) model's value.")],
    "mean": Annotated[float, _desc("Mean over the noise seeds.")],
    "std": NonNeg,
    "per_seed": Annotated[list[float], Field(min_length=1)],
})
MetricStats.__doc__ = "One metric of one output over the noise seeds."


class OutputMetrics(TypedDict):
    """The metrics of one output (see accuracy.metric for their definitions)."""

    top1: NotRequired[Annotated[MetricStats, _desc("First output, with labels.")]]
    agreement: NotRequired[Annotated[MetricStats, _desc(
        "Class-score outputs (or every output with --metric agreement).")]]
    cosine: MetricStats
    relerr: MetricStats
    snr: Annotated[MetricStats, _desc("dB.")]


class OutputAccuracy(TypedDict):
    """One graph output under the hardware."""

    name: str
    shape: Annotated[list[Count], _desc("Its shape per sample.")]
    kind: Annotated[Literal["class_scores", "values"], _desc(
        "class_scores: a (batch, classes) output of >= 2 columns made by a crossbar layer or a "
        "(Log)Softmax (scored by top-1 agreement); values: maps, boxes, embeddings, sequences.")]
    metrics: OutputMetrics


AccuracySection = TypedDict("AccuracySection", {
    "metric": Annotated[MetricName, _desc(
        "The headline metric (--metric; auto: top1 with labels, agreement when every output "
        "holds class scores, else cosine). " + _METRIC_DOC)],
    "direction": NotRequired[Annotated[Literal["maximize", "minimize"], _desc(
        "Whether higher (maximize) or lower (minimize: relerr) is better.")]],
    "float": Annotated[float, _desc("The float model's headline value.")],
    "mean": Annotated[float, _desc("Headline value under the hardware, mean over the seeds "
                                   "(mean over the outputs; top1: the first output).")],
    "std": NonNeg,
    "per_seed": Annotated[list[float], Field(min_length=1)],
    "relative_error": NotRequired[Annotated[NonNeg, _desc(
        "relerr, mean over the outputs and the seeds.")]],
    "samples": NotRequired[Count],
    "seeds": NotRequired[list[int]],
    "outputs": NotRequired[Annotated[list[OutputAccuracy], _desc(
        "Every graph output with the metrics that fit it.")]],
})
AccuracySection.__doc__ = "Accuracy under the hardware over the noise seeds (with --data)."


class FromTrial(TypedDict):
    """What --from-trial re-created: the stored and the re-computed objective values."""

    trial: Count
    stored_values: dict[str, float]
    values: dict[str, float]
    pipeline: str
    overrides: list[str]
    same: bool


class SensitivityLayer(TypedDict):
    """One crossbar layer alone on the hardware (noise, DAC, ADC, its quantization and
    pruning), every other layer an exact float product."""

    rank: Annotated[int, Field(ge=1)]
    name: str
    label: Annotated[str, _desc("L1, L2... (graph order).")]
    accuracy: Annotated[float, _desc("Headline metric, mean over the seeds.")]
    std: NonNeg
    drop: Annotated[float, _desc("Float minus accuracy, in the section's unit.")]


class SensitivitySection(TypedDict):
    """Per-layer sensitivity (--sensitivity), ranked: the largest drop first."""

    metric: MetricName
    float: Annotated[float, _desc("The float model's headline value.")]
    seeds: Annotated[int, Field(ge=1)]
    unit: Annotated[Literal["percentage points", "percent of relative error", "dB"], _desc(
        "Unit of drop (that of --max-accuracy-drop).")]
    layers: list[SensitivityLayer]


class Report(TypedDict):
    """The report written by `imccompile MODEL --target T --json PATH` and `-o DIR`
    (report.json). Format 1."""

    format: Literal[1]
    imccompile: Annotated[str, _desc("Version of the tool that wrote it.")]
    model: str
    pipeline: Annotated[str, _desc("Canonical pass pipeline text ('' if none).")]
    overflow_policy: Literal["chips", "reload", "error"]
    target: Annotated[dict[str, Any], _desc("The resolved target spec (target.schema.json).")]
    totals: Totals
    layers: list[Layer]
    schedule: ScheduleSection
    warnings: list[str]
    accuracy: NotRequired[AccuracySection]
    max_accuracy_drop: NotRequired[Annotated[NonNeg | None, _desc(
        "The accuracy budget (--max-accuracy-drop, in the unit of sensitivity.unit; null: "
        "none); a compile over it has a warning naming the biggest contributor.")]]
    sensitivity: NotRequired[SensitivitySection]
    command: NotRequired[Annotated[str, _desc(
        "The command line that computes this report, shell-quoted, on one line (output "
        "options such as -o, --json, --force, -q left out).")]]
    search: NotRequired[Annotated[dict[str, Any], _desc(
        "Present after a search: objectives, Pareto front, chosen trial.")]]
    from_trial: NotRequired[FromTrial]


class SearchOnlyReport(TypedDict):
    """A search that found no feasible point: the search section alone (no compile to report)."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    format: Literal[1]
    imccompile: Annotated[str, _desc("Version of the tool that wrote it.")]
    model: str
    search: Annotated[dict[str, Any], _desc("Objectives, trials, and no chosen point.")]


def report_json_schema() -> dict[str, Any]:
    """The JSON Schema of a report (draft 2020-12): a compile's `Report`, or a
    `SearchOnlyReport` when a search found no feasible point."""
    schema = TypeAdapter(Union[Report, SearchOnlyReport]).json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://imccompile.dev/schemas/report.schema.json",
            **schema, "title": "imccompile compile report"}
