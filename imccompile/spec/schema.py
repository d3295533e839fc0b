"""The typed, frozen model of an IMC target spec (the `hwspecs/*.json` files).

Every section is a frozen pydantic model with ``extra="forbid"``; scalars are strict (an
integer field rejects ``"6"``, ``6.5`` and ``true``; a number field accepts integers). Units are
in the field names: ``_j`` joules, ``_s`` seconds, ``_hz`` hertz, ``_v`` volts, ``_mm2`` mm²,
``_us`` µS.
The meaning of every field is documented in ``docs/spec-format.md``.

Cross-field rules (raised as :class:`SpecProblems`, which the loader turns into messages naming the
field): ``g_min_us < g_max_us``; ADC tables monotone and all-zero or all-positive, and present (one point at least) for a type whose law is relative; every search list
contains the spec's own value; no ``adc.out_bound`` / ``adc.read_noise`` with a digital ADC; every numeric field of the hardware sections has an entry in
``sources``; every key of ``sources`` names a field.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Le, MinLen
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    WithJsonSchema,
    model_validator,
)

from imccompile.spec import adc_laws

__all__ = [
    "ADC_MAX_BITS",
    "SOURCED_SECTIONS",
    "AdcSpec",
    "Anchor",
    "ArraySpec",
    "BufferSpec",
    "DacSpec",
    "DramSpec",
    "Expect",
    "HierarchySpec",
    "NocSpec",
    "NoiseSpec",
    "PeripherySpec",
    "PrecisionSpec",
    "SearchSpec",
    "SpecProblems",
    "Target",
    "TechnologySpec",
    "leaf_paths",
]

ADC_MAX_BITS = 16

#: Sections whose every numeric field (and table) must have an entry in ``Target.sources``.
SOURCED_SECTIONS: tuple[str, ...] = (
    "technology", "array", "dac", "adc", "periphery", "buffers", "noc", "dram", "hierarchy",
    "noise",
)


class Expect:
    """Annotation metadata: the phrase error messages use for what a field accepts."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Expect({self.text!r})"


class SpecProblems(ValueError):
    """Cross-field violations found by a model validator.

    Each problem is ``(path, message, got)`` or ``(path, message, got, related)``: ``path`` is
    relative to the model that raised, a tuple of field names (and dict keys); ``message`` says
    what is expected; ``got`` is the bad value (or ``None`` to omit it); ``related`` are other
    field paths (tuples, relative likewise) the rule involves, so an error caused by overriding
    one of them is attributed to that override.
    """

    def __init__(self, problems: list[tuple[Any, ...]]) -> None:
        self.problems: list[tuple[tuple[str | int, ...], str, Any, tuple[tuple[str, ...], ...]]]
        self.problems = [(tuple(p[0]), p[1], p[2], tuple(p[3]) if len(p) > 3 else ())
                         for p in problems]
        super().__init__("; ".join(f"{'.'.join(map(str, p[0]))}: {p[1]}" for p in problems))


# ----------------------------------------------------------------------------- scalar types

Int = Annotated[int, Strict()]
PosInt = Annotated[int, Strict(), Ge(1)]
NonNegInt = Annotated[int, Strict(), Ge(0)]
Bits16 = Annotated[int, Strict(), Ge(1), Le(ADC_MAX_BITS)]
CellBits = Annotated[int, Strict(), Ge(1), Le(8)]
Dim = Annotated[int, Strict(), Ge(1), Le(4096)]
Num = Annotated[float, Strict()]
NonNeg = Annotated[float, Strict(), Ge(0)]
Pos = Annotated[float, Strict(), Gt(0)]
Text = Annotated[str, Strict(), MinLen(1)]
AnyText = Annotated[str, Strict()]
Flag = Annotated[bool, Strict()]

_INT_KEY = re.compile(r"^-?[0-9]{1,6}$")


def _int_keys(value: Any) -> Any:
    """JSON object keys are strings: turn decimal-integer keys into ints (others fail later)."""
    if isinstance(value, dict):
        return {int(k) if isinstance(k, str) and _INT_KEY.match(k) else k: v
                for k, v in value.items()}
    return value


#: An ADC table that may be empty (no points: the law of ``adc.type`` in its absolute form).
LawTable = Annotated[
    dict[Bits16, NonNeg],
    BeforeValidator(_int_keys),
    Expect("a table {bits: value} with integer keys in 1..16 and numbers >= 0"),
    WithJsonSchema({"type": "object",
                    "propertyNames": {"pattern": "^([1-9]|1[0-6])$"},
                    "additionalProperties": {"type": "number", "minimum": 0}}),
]


def _json_value(value: Any) -> Any:
    """Anchor overrides: plain JSON values only (what ``--set`` could give)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise ValueError("not a JSON value") from None
    return value


JsonValue = Annotated[Any, BeforeValidator(_json_value), Expect("a JSON value")]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False,
                              validate_default=True)

    def __hash__(self) -> int:  # dict-valued fields make the generated hash fail
        return hash(json.dumps(self.model_dump(mode="json"), sort_keys=True))


# ----------------------------------------------------------------------------- sections


class TechnologySpec(_Frozen):
    """CMOS process and operating point."""

    node_nm: Annotated[int, Strict(), Ge(1), Le(1000)] = Field(
        description="CMOS technology node, nm.")
    clock_hz: Pos = Field(description=(
        "Digital clock frequency, Hz: times the buffers (buffers.bytes_per_cycle per cycle)."))
    vdd_v: Pos = Field(description="Core supply voltage, V.")
    figures_node_nm: Annotated[int, Strict(), Ge(1), Le(1000)] | None = Field(
        default=None, description=(
            "Node at which the spec's digital figures (periphery and buffer energies and "
            "areas, router area) are given, nm; at another node_nm they scale by classical "
            "scaling (energy x node_nm / figures_node_nm, area x its square: "
            "imccompile.technology). Absent = node_nm (no scaling)."))


class ArraySpec(_Frozen):
    """One crossbar array. ``rows`` x ``cols`` counts unit cells; a unit cell holds one weight slice
    (with ``differential_cell`` both polarities live in it)."""

    rows: Dim = Field(description="Crossbar rows (inputs, one DAC each), 1..4096.")
    cols: Dim = Field(description="Crossbar columns of unit cells, 1..4096.")
    device: Literal["pcm", "rram", "sram"] = Field(description="Memory device technology.")
    bits_per_cell: CellBits = Field(description="Weight bits stored per unit cell (slice), 1..8.")
    signed_scheme: Literal["differential", "differential_cell", "offset", "twos_complement"] = (
        Field(description=(
            "How signed weights are stored: 'differential' = a positive and a negative device "
            "column per slice (2 columns, subtracted before the ADC); 'differential_cell' = both "
            "polarities inside one unit cell (HERMES); 'offset' = one column per slice plus one "
            "shared reference column per array; 'twos_complement' = digital two's complement "
            "across 1-bit slices (digital SRAM).")))
    devices_per_slice: Annotated[int, Strict(), Ge(1), Le(64)] = Field(
        description="Devices in parallel per polarity per slice (HERMES: 2).")
    g_min_us: NonNeg = Field(description="Lowest programmable conductance per device, µS.")
    g_max_us: Pos = Field(description="Highest programmable conductance per device, µS.")
    read_energy_per_cell_j: NonNeg = Field(
        description="Energy of one unit cell in one read (one MVM step), J.")
    read_latency_s: Pos = Field(
        description=("One array read (MVM integration), s. For PWM inputs: the read at the full "
                     "dac.bits-bit pulse length."))
    parallel_rows: Dim | None = Field(default=None, description=(
        "Rows driven and summed in one read, <= rows (NeuroSim's parallelRead); null or absent = "
        "all rows. A tile of R rows takes ceil(R / parallel_rows) reads per input cycle, each "
        "converted and shift-added; its partial sums span fewer levels."))
    area_mm2: NonNeg = Field(description=(
        "Area of one array's rows x cols cells (no periphery), mm². An override of array.rows "
        "or array.cols (--set, a search or sweep knob) scales it by the new cell count (its "
        "area_per_row_mm2 part by the rows) unless it sets area_mm2 too (fixed cell pitch)."))
    area_per_row_mm2: NonNeg | None = Field(default=None, description=(
        "Of area_mm2, the part that is per row (row drivers counted in the array's footprint, "
        "MNSIM's 1150 µm² per row), mm²; absent = 0 (all per cell). Only read when an "
        "override changes the geometry."))
    write_energy_per_cell_j: NonNeg = Field(
        description="Energy to program one unit cell (all its devices, with verify), J.")
    write_latency_per_row_s: NonNeg = Field(
        description="Time to program one row (row-parallel, with verify), s.")
    leakage_w: NonNeg | None = Field(default=None, description=(
        "Static power of one array's cells and drivers while powered, W; absent = not "
        "modelled (0). Scaled by the cell count like area_mm2 when an override changes the "
        "geometry."))

    @model_validator(mode="after")
    def _check(self) -> ArraySpec:
        problems: list[tuple[Any, ...]] = []
        if self.g_min_us >= self.g_max_us:
            problems.append((("g_min_us",),
                             f"expected a number below g_max_us ({self.g_max_us:g})",
                             self.g_min_us, [("g_max_us",)]))
        if self.area_per_row_mm2 is not None and \
                self.area_per_row_mm2 * self.rows > self.area_mm2 * (1 + 1e-9):
            problems.append((("area_per_row_mm2",),
                             f"expected at most area_mm2 / rows ({self.area_mm2 / self.rows:g})",
                             self.area_per_row_mm2, [("area_mm2",), ("rows",)]))
        if self.parallel_rows is not None and self.parallel_rows > self.rows:
            problems.append((("parallel_rows",), f"expected at most rows ({self.rows})",
                             self.parallel_rows, [("rows",)]))
        if self.signed_scheme == "offset" and self.cols < 2:
            problems.append((("cols",), ("expected at least 2 columns with signed_scheme "
                             "'offset' (one is the reference column)"), self.cols,
                             [("signed_scheme",)]))
        if problems:
            raise SpecProblems(problems)
        return self


class DacSpec(_Frozen):
    """Input drivers, one per row."""

    bits: Bits16 = Field(description="Input bits applied per read (1 = bit-serial), 1..16.")
    mode: Literal["bit_serial", "pwm"] = Field(
        description=("'bit_serial': ceil(input_bits / bits) reads per input vector; 'pwm': the "
                     "value is a pulse length, one read of up to 2^bits steps."))
    energy_per_conversion_j: NonNeg = Field(
        description="Energy of one DAC (one row) for one read, J.")
    area_mm2: NonNeg = Field(description="Area of one DAC (one per row), mm².")
    input_scaling: Literal["calibrated", "abs_max"] = Field(default="calibrated", description=(
        "The DAC's input range: 'calibrated' = one range per layer, calibrated on the data "
        "(max |x| or a percentile); 'abs_max' = every input vector scaled by its own max |x| "
        "before the DAC and the output scaled back digitally after the ADC (aihwkit "
        "noise_management abs_max)."))
    input_activity: Annotated[float, Strict(), Ge(0), Le(1)] | None = Field(
        default=None, description=(
            "Default input bit activity, 0..1: the fraction of input bits that are 1 "
            "(bit-serial) or the mean pulse length over the longest (PWM), used for the array "
            "and DAC energy when no per-layer activity is given or measured on --data "
            "(imccompile.activity); absent = 1.0, every input bit 1 (worst case, the report "
            "says so)."))


def _table_value(table: dict[int, float], bits: int) -> float:
    """Log-linear interpolation in bits; extrapolation keeps the end slopes (never decreasing).

    An all-zero table stays zero. (A one-entry table is read through the ADC type's law by
    `_priced`, not here.)
    """
    if bits in table:
        return float(table[bits])
    pts = sorted(table.items())
    if all(v == 0 for _, v in pts):
        return 0.0
    if bits < pts[0][0]:
        (b0, v0), (b1, v1) = pts[0], pts[1]
    elif bits > pts[-1][0]:
        (b0, v0), (b1, v1) = pts[-2], pts[-1]
    else:
        i = next(i for i, (b, _) in enumerate(pts) if b > bits)
        (b0, v0), (b1, v1) = pts[i - 1], pts[i]
    slope = max(0.0, (math.log(v1) - math.log(v0)) / (b1 - b0))
    return float(math.exp(math.log(v0) + slope * (bits - b0)))


def _priced(table: dict[int, float], bits: int,
            shape: Callable[[int], float]) -> float:
    """A table of two or more points is interpolated; one point anchors the law; none = the
    law's absolute form."""
    if len(table) > 1 or bits in table:
        return _table_value(table, bits)
    anchor = next(iter(table.items())) if table else None
    return adc_laws.law_value(shape, bits, anchor)


class AdcSpec(_Frozen):
    """Column ADCs. Energy and area are tables over bits, or follow the law of ``type``
    (imccompile.spec.adc_laws) where the spec gives one point or none; latency follows the law
    from ``latency_s`` at ``latency_bits``. Changing ``bits`` (an override or the search)
    re-prices all three: see :meth:`energy_j`, :meth:`area_mm2` and :meth:`latency`."""

    bits: Bits16 = Field(description="ADC resolution, bits, 1..16.")
    type: Literal["sar", "flash", "cco", "sense_amp", "digital", "zigzag"] = Field(
        description=("ADC architecture, which selects the law over bits (docs/spec-format.md): "
                     "'sar', 'flash', 'cco' (time-based), 'sense_amp' (multi-level sense "
                     "amplifier), 'digital' (exact adder tree), 'zigzag' (the ZigZag AIMC "
                     "model)."))
    energy_table_j: LawTable = Field(default_factory=dict, description=(
        "Energy per conversion by resolution {bits: J}; two or more points are interpolated "
        "log-linearly and extrapolated with the end slopes; one point anchors the law of "
        "`type`; absent or empty = the law's absolute form (sar, zigzag, digital only); all zeros = "
        "free."))
    area_table_mm2: LawTable = Field(default_factory=dict, description=(
        "Area of one ADC by resolution {bits: mm²}, read like energy_table_j."))
    latency_s: NonNeg = Field(description="Time of one conversion at latency_bits, s.")
    latency_bits: Bits16 | None = Field(default=None, description=(
        "Resolution at which latency_s is given; absent = bits. Other resolutions follow the "
        "latency law of `type`."))
    columns_per_adc: Annotated[int, Strict(), Ge(1), Le(4096)] = Field(
        description="Columns multiplexed onto one ADC (conversions serialize), >= 1.")
    leakage_w: NonNeg | None = Field(default=None, description=(
        "Static power of one ADC while the arrays are powered, W; absent = not modelled (0)."))
    out_bound: Pos | None = Field(default=None, description=(
        "The ADC's full-scale range, as a multiple of the output of one device at g_max driven "
        "at the full DAC input (aihwkit out_bound); partial sums beyond it clip. Absent = the "
        "range is calibrated per row group by the simulation (SimOptions.adc_range)."))
    out_bound_unit: Literal["device", "weight"] = Field(default="device", description=(
        "The unit of out_bound: 'device' = one device at g_max at the full DAC input; 'weight' "
        "= a model weight of 1 at an input of 1, as aihwkit's tile computes with its default "
        "weight_scaling_omega = 0 (raw weights: a layer whose largest weight is w_max sees a "
        "full scale of out_bound / w_max devices)."))
    read_noise: NonNeg | None = Field(default=None, description=(
        "Read-out noise of the converter chain: std of an additive Gaussian at every ADC read, "
        "relative to the ADC's full-scale range (aihwkit out_noise / out_bound). Absent = none."))
    mux_energy_per_read_j: NonNeg | None = Field(default=None, description=(
        "Energy of one array's column multiplexers and their decoder for one input cycle "
        "(one input bit), whatever the ADC bits and the rows read at once (NeuroSim's mux and "
        "muxDecoder), priced in the adc component, J; absent = not modelled (0)."))

    def energy_j(self, bits: int | None = None, *, vdd_v: float | None = None) -> float:
        """Energy of one conversion at ``bits`` (default: this ADC's ``bits``), J. ``vdd_v``
        is needed only by the absolute zigzag law (the cost model passes technology.vdd_v)."""
        b = self.bits if bits is None else bits
        if self.energy_table_j and vdd_v is None:
            vdd_v = 1.0  # through a point of the table: the supply cancels
        return _priced(self.energy_table_j, b,
                       lambda k: adc_laws.energy_shape(self.type, k, vdd_v))

    def area_mm2(self, bits: int | None = None) -> float:
        """Area of one ADC at ``bits`` (default: this ADC's ``bits``), mm²."""
        b = self.bits if bits is None else bits
        return _priced(self.area_table_mm2, b, lambda k: adc_laws.area_shape(self.type, k))

    def latency(self, bits: int | None = None) -> float:
        """Time of one conversion at ``bits`` (default: this ADC's ``bits``), s."""
        b = self.bits if bits is None else bits
        b0 = self.bits if self.latency_bits is None else self.latency_bits
        return adc_laws.law_value(lambda k: adc_laws.latency_shape(self.type, k), b,
                                  (b0, self.latency_s))

    @property
    def static_w(self) -> float:
        """Static power of one ADC, W (0 when not modelled)."""
        return 0.0 if self.leakage_w is None else self.leakage_w

    @model_validator(mode="after")
    def _check(self) -> AdcSpec:
        problems: list[tuple[Any, ...]] = []
        for name in ("energy_table_j", "area_table_mm2"):
            table: dict[int, float] = getattr(self, name)
            absolute = (adc_laws.ABSOLUTE_ENERGY if name == "energy_table_j"
                        else adc_laws.ABSOLUTE_AREA)
            if not table:
                if self.type not in absolute:
                    problems.append(((name,), (f"expected a table {{bits: value}} (at least one "
                                     f"point): the {self.type!r} law is relative; only "
                                     f"{', '.join(sorted(absolute))} have absolute laws"), None,
                                     [("type",)]))
                continue
            pts = sorted(table.items())
            zeros = [b for b, v in pts if v == 0]
            if zeros and len(zeros) != len(pts):
                problems.append(((name, zeros[0]), ("expected a number > 0 (a table is either "
                                 "all zero or all positive)"), 0))
                continue
            for (_, v0), (b1, v1) in itertools.pairwise(pts):
                if v1 < v0:
                    problems.append(((name, b1), (f"expected a number >= {v0:g} (the value at "
                                     "fewer bits): tables must not decrease with bits"), v1))
                    break
        if self.type == "digital":  # an exact adder tree has no analog range or read-out
            for name in ("out_bound", "read_noise"):
                if getattr(self, name) is not None:
                    problems.append(((name,), ("expected no value (null) with type 'digital': "
                                     "an exact adder tree has no analog read-out"),
                                     getattr(self, name), [("type",)]))
        if problems:
            raise SpecProblems(problems)
        return self


class PeripherySpec(_Frozen):
    """Per-array and per-core digital periphery."""

    shift_add_energy_j: NonNeg = Field(
        description="One shift-and-add of one column output (per read), J.")
    accumulate_energy_j: NonNeg = Field(
        description="One partial-sum accumulation across row tiles, per output, J.")
    digital_energy_per_op_j: NonNeg = Field(
        description="One arithmetic op on the digital unit (activations, softmax, ...), J.")
    digital_ops_per_s: Pos = Field(description="Digital unit throughput per core, ops/s.")
    area_mm2_per_array: NonNeg = Field(
        description="Periphery area per array (shift-add, S&H, adder trees, ...), mm².")
    digital_bits: Bits16 | None = Field(default=None, description=(
        "Declared width of the digital unit's data, bits: digital ops read and write their "
        "tensors at this width; absent = at the activation bits of the layers around them."))
    leakage_w_per_array: NonNeg | None = Field(default=None, description=(
        "Static power of one array's periphery (DACs, S&H, shift-add, ...) while powered, W; "
        "absent = not modelled (0)."))
    read_overhead_s: NonNeg | None = Field(default=None, description=(
        "Time added to every read cycle for work that does not overlap the conversions, s: "
        "NeuroSim's unhidden accumulation (synchronous mode), MNSIM's DAC, crossbar and "
        "digital steps around each ADC pass; absent = 0 (all hidden behind the conversions)."))


class BufferSpec(_Frozen):
    """On-core activation buffers."""

    size_bytes: NonNegInt = Field(description="Buffer capacity per core, bytes.")
    energy_per_byte_j: NonNeg = Field(description="Energy per byte read or written, J.")
    area_mm2: NonNeg = Field(description="Buffer area per core, mm².")
    bytes_per_cycle: Pos | None = Field(default=None, description=(
        "Bytes one core's buffer reads or writes per clock cycle (port width); a layer's "
        "buffer time = its bytes / (bytes_per_cycle x clock_hz x its cores). Absent = buffer "
        "time not modelled (0)."))


class NocSpec(_Frozen):
    """On-chip network between tiles."""

    topology: Literal["mesh", "bus", "tree"] = Field(description="Network topology.")
    hop_energy_per_byte_j: NonNeg = Field(description="Energy to move one byte one hop, J.")
    hop_latency_s: NonNeg = Field(description="Latency of one hop, s.")
    bytes_per_s: Pos = Field(description="Link bandwidth, bytes/s.")
    router_area_mm2: NonNeg = Field(description="Router area per tile, mm².")


class DramSpec(_Frozen):
    """Off-chip memory: where activations that do not fit the chip's buffers spill and where
    weights reloaded under ``--overflow reload`` come from. Every field absent = no off-chip
    memory modelled (spilled and reloaded bytes are reported but not priced, with a warning)."""

    energy_per_byte_j: NonNeg | None = Field(default=None, description=(
        "Energy to read or write one byte off-chip (interface and DRAM access), J."))
    bytes_per_s: Pos | None = Field(default=None, description="Off-chip bandwidth, bytes/s.")
    latency_s: NonNeg | None = Field(default=None, description=(
        "Access latency of one off-chip transfer (once per layer that moves bytes), s."))

    @property
    def modelled(self) -> bool:
        return self.energy_per_byte_j is not None

    @model_validator(mode="after")
    def _check(self) -> DramSpec:
        given = [f for f in type(self).model_fields if getattr(self, f) is not None]
        if given and len(given) != len(type(self).model_fields):
            missing = [f for f in type(self).model_fields if f not in given]
            raise SpecProblems([((missing[0],), ("expected a value: give all of "
                                 "energy_per_byte_j, bytes_per_s and latency_s, or none"), None,
                                 [(g,) for g in given])])
        return self


class HierarchySpec(_Frozen):
    """How arrays are grouped: arrays -> cores -> tiles -> chip."""

    arrays_per_core: Annotated[int, Strict(), Ge(1), Le(1_000_000)] = Field(
        description="Arrays per core, >= 1.")
    cores_per_tile: Annotated[int, Strict(), Ge(1), Le(1_000_000)] = Field(
        description="Cores per tile, >= 1.")
    tiles_per_chip: Annotated[int, Strict(), Ge(1), Le(1_000_000)] = Field(
        description="Tiles per chip, >= 1.")

    @property
    def arrays_per_chip(self) -> int:
        return self.arrays_per_core * self.cores_per_tile * self.tiles_per_chip


class PrecisionSpec(_Frozen):
    """Default precisions of a compile (the search may change them)."""

    weight_bits: Bits16 = Field(description="Weight bits, 1..16.")
    input_bits: Bits16 = Field(description="Input (activation) bits at the DACs, 1..16.")


class NoiseSpec(_Frozen):
    """Device non-idealities for the accuracy simulation."""

    model: Literal["none", "pcm", "gaussian"] = Field(
        description=("'none' = ideal; 'pcm' = aihwkit PCM model (Nandakumar 2019 polynomials for "
                     "programming noise, drift and 1/f read noise, g_max from array.g_max_us); "
                     "'gaussian' = the sigmas and drift_nu below."))
    programming_sigma: NonNeg = Field(
        description="Programming noise std, relative to g_max (gaussian model).")
    read_sigma: NonNeg = Field(description="Read noise std, relative to g_max (gaussian model).")
    drift_nu: NonNeg = Field(
        description="Drift exponent nu, G(t) = G(t0) (t/t0)^-nu (gaussian model); 0 = no drift.")
    t_inference_s: NonNeg = Field(description=(
        "Time from programming to inference, s. Devices do not drift before t0_s (as aihwkit, "
        "whose t_inference counts from t0: its t_inference = t_inference_s - t0_s)."))
    t0_s: Pos = Field(description="Drift reference time t0, s (PCM: 20 s).")
    drift_compensation: Flag = Field(
        description=("Apply global drift compensation: a one-hot reference read through the "
                     "converters at t0 and at t, the gain applied digitally after the ADC (one "
                     "per layer, aihwkit GlobalDriftCompensation)."))
    drift_reference: Literal["adc", "ideal"] = Field(default="adc", description=(
        "How the drift-compensation reference read is taken: 'adc' = through the layer's own "
        "DAC, read-out noise and ADC (aihwkit; a coarse ADC then sees little of a one-hot read "
        "and the gain is poor); 'ideal' = a calibration read without converter error (a "
        "high-precision or averaged reference read). The gain is applied after the ADC in "
        "both."))


CellBitsChoices = Annotated[tuple[CellBits, ...], MinLen(1),
                           Expect("a non-empty list of integers in 1..8")]
BitsChoices = Annotated[tuple[Bits16, ...], MinLen(1),
                        Expect("a non-empty list of integers in 1..16")]
DimChoices = Annotated[tuple[Dim, ...], MinLen(1),
                       Expect("a non-empty list of integers in 1..4096")]


class SearchSpec(_Frozen):
    """Values the design-space search may choose from. Each list must contain the spec's own
    value (so the spec itself is a point of the space)."""

    bits_per_cell: CellBitsChoices = Field(
        description="Choices for array.bits_per_cell.")
    adc_bits: BitsChoices = Field(description="Choices for adc.bits.")
    rows: DimChoices = Field(description="Choices for array.rows.")
    cols: DimChoices = Field(description="Choices for array.cols.")
    weight_bits: BitsChoices = Field(
        description="Choices for precision.weight_bits.")
    input_bits: BitsChoices = Field(
        description="Choices for precision.input_bits.")

    @model_validator(mode="after")
    def _check(self) -> SearchSpec:
        problems: list[tuple[Any, ...]] = []
        for name in type(self).model_fields:
            values = getattr(self, name)
            if len(set(values)) != len(values):
                problems.append(((name,), "expected a list without repeated values",
                                 list(values)))
        if problems:
            raise SpecProblems(problems)
        return self


class Anchor(_Frozen):
    """A published figure of the real chip, to compare the tool's estimates against."""

    metric: Text = Field(description="What is measured, e.g. 'peak_tops', 'tops_per_w'.")
    value: Num = Field(description="The published value.")
    unit: AnyText = Field(description="Its unit, e.g. 'TOPS', 'TOPS/W', '%'.")
    conditions: AnyText = Field(description="Operating conditions (precision, mode, workload).")
    source: Text = Field(description="Where the figure is published.")
    scope: Literal["chip", "tile", "core", "macro", "array", "component", "workload"] = Field(
        default="chip", description="What the figure covers.")
    calibrated: Flag = Field(
        default=False,
        description=("True if the spec's constants were chosen so the tool's cost model "
                     "reproduces this figure (within 15 %) with `overrides` applied."))
    overrides: dict[Text, JsonValue] = Field(
        default_factory=dict,
        description="Field overrides {path: value} under which the figure applies.")


# ----------------------------------------------------------------------------- the target

_SECTION_FIELDS = ("technology", "array", "dac", "adc", "periphery", "buffers", "noc",
                   "dram", "hierarchy", "precision", "noise", "search")


def leaf_paths() -> list[str]:
    """Every ``section.field`` path a ``sources`` entry (or an override) may name."""
    out: list[str] = []
    for sec in _SECTION_FIELDS:
        model = Target.model_fields[sec].annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        out.extend(f"{sec}.{f}" for f in model.model_fields)
    return out


def _numeric_paths(target: Target) -> list[str]:
    out = []
    for sec in SOURCED_SECTIONS:
        section = getattr(target, sec)
        for name in type(section).model_fields:
            value = getattr(section, name)
            if isinstance(value, (int, float, dict)) and not isinstance(value, bool) \
                    and value != {}:  # an empty ADC table (the type's law) needs no source
                out.append(f"{sec}.{name}")
    return out


class Target(_Frozen):
    """An IMC hardware target: what the mapper, cost model, emitter and search read."""

    name: Text = Field(description="Short name of the target, e.g. 'pcm'.")
    description: AnyText = Field(description="What chip or design this spec models.")
    technology: TechnologySpec
    array: ArraySpec
    dac: DacSpec
    adc: AdcSpec
    periphery: PeripherySpec
    buffers: BufferSpec
    noc: NocSpec
    dram: DramSpec = Field(default_factory=DramSpec, description=(
        "Off-chip memory (absent: not modelled; spills are reported, not priced)."))
    hierarchy: HierarchySpec
    precision: PrecisionSpec
    noise: NoiseSpec
    search: SearchSpec
    anchors: tuple[Anchor, ...] = Field(description="Published figures of the real chip.")
    sources: dict[Text, Text] = Field(
        description=("Source of every constant: {'section.field': citation or 'assumption: "
                     "<reasoning>'}. Every numeric field of technology, array, dac, adc, "
                     "periphery, buffers, noc, dram, hierarchy and noise needs one."))

    # -- validation -------------------------------------------------------------------------

    @model_validator(mode="after")
    def _check(self) -> Target:
        problems: list[tuple[Any, ...]] = []
        own = {
            "bits_per_cell": ("array.bits_per_cell", self.array.bits_per_cell),
            "adc_bits": ("adc.bits", self.adc.bits),
            "rows": ("array.rows", self.array.rows),
            "cols": ("array.cols", self.array.cols),
            "weight_bits": ("precision.weight_bits", self.precision.weight_bits),
            "input_bits": ("precision.input_bits", self.precision.input_bits),
        }
        for knob, (path, value) in own.items():
            choices = getattr(self.search, knob)
            if value not in choices:
                sec, field = path.split(".")
                problems.append(((sec, field), (f"expected one of search.{knob} "
                                 f"{list(choices)} (or add it to that list)"), value,
                                 [("search", knob)]))
        known = set(leaf_paths())
        for key, text in self.sources.items():
            if key not in known:
                problems.append((("sources", key), "unknown field path"
                                 + _suggest(key, known), None))
            elif text.strip().lower().startswith("assumption") and not re.match(
                    r"(?i)^\s*assumption:\s*\S", text):
                problems.append((("sources", key),
                                 "expected 'assumption: <the reasoning>'", text))
        for path in _numeric_paths(self):
            if path not in self.sources:
                problems.append((("sources",), (f"missing source for {path} (add \"{path}\": "
                                 "\"<citation>\" or \"assumption: <reasoning>\")"), None))
        for i, anchor in enumerate(self.anchors):
            for key in anchor.overrides:
                if key not in known:
                    problems.append((("anchors", i, "overrides", key),
                                     "unknown field path" + _suggest(key, known), None))
        if problems:
            raise SpecProblems(problems)
        return self

    # -- conveniences -------------------------------------------------------------------------

    @property
    def arrays_per_chip(self) -> int:
        return self.hierarchy.arrays_per_chip

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict; ``Target.model_validate(t.to_dict()) == t``."""
        return self.model_dump(mode="json")

    def source(self, path: str) -> str | None:
        """The source recorded for ``section.field``, or None."""
        return self.sources.get(path)

    def get_path(self, path: str) -> Any:
        """The value at a dotted path, e.g. ``t.get_path("adc.bits")``."""
        obj: Any = self
        parts = path.split(".")
        for i, part in enumerate(parts):
            if isinstance(obj, dict):
                key = ".".join(parts[i:])
                return obj[int(key)] if key.lstrip("-").isdigit() and key not in obj else obj[key]
            obj = getattr(obj, part)
        return obj

    def replace_path(self, path: str, value: Any) -> Target:
        """A new Target with one field changed (``"adc.bits"``, 6), validated like a spec file.

        Raises:
            SpecError: unknown path or invalid value, naming the field.
        """
        return self.replace_paths({path: value})

    def replace_paths(self, changes: dict[str, Any]) -> Target:
        """A new Target with several fields changed at once (validated together)."""
        from imccompile.spec.load import _replace

        return _replace(self, changes)


def _suggest(key: str, known: set[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""
