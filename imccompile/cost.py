"""Cost model: energy, latency and area per layer and in total, from a Mapping and a Target.

Per matrix layer and inference, with ``cycles`` input cycles per vector (bit-serial: one read and
one round of conversions per DAC step, ``ceil(input_bits / dac.bits)``; PWM: one read whose
duration scales with 2^input_bits):

* array  = vectors x cycles x used cells x read energy per cell
* dac    = vectors x cycles x driven rows x DAC energy per conversion
* adc    = vectors x cycles x converted columns x ADC energy at adc.bits, plus every array's
  column mux and decoder once per input cycle (``adc.mux_energy_per_read_j``: neither the ADC
  bits nor the rows read at once change it)
* shift_add = one shift-add per ADC conversion; accumulate = one add per partial sum: every
  kept output column of every ADC row group
* buffer = (input bytes read + output bytes written) x buffer energy per byte, every byte at
  its activation precision (imccompile.memory: inputs at the layer's input bits, outputs at the
  bits their readers take; digital ops at ``periphery.digital_bits`` or their activations' bits)
* noc    = output bytes x hops x hop energy: from the layer's last tile to its readers' first
  tiles under ``noc.topology``, at least one hop (imccompile.memory.layer_hops)
* dram   = bytes moved off-chip x ``dram.energy_per_byte_j``: the part of a layer's working set
  beyond the chip's buffers, and under ``--overflow reload`` the weights a pooled layer reloads
  (imccompile.memory)
* write  = under ``--overflow reload``, every cell of a layer on the reload pool, every
  inference (its latency adds the rounds' write times: see `matrix_layer_cost`)
* array and dac scale with the layer's input bit activity (imccompile.activity: the spec
  figures are those of a '1' input bit; the activity is given, measured on the data, the spec's
  ``dac.input_activity``, or 1.0); the other components fire on every read
* leakage = static power of every placed array (cells, ADCs, periphery: `static_power_w`) x the
  layer's latency, for matrix and digital layers alike: the arrays hold the weights and stay
  powered while any layer runs, so the total is static power x the serial latency (sum of the
  layers' latencies: one inference at a time, no power gating). That is an upper bound for a
  schedule whose branches overlap or whose layers pipeline (there, per inference, the arrays
  leak for one pipeline period).

A layer's latency is its compute time plus its data-movement time (buffer, NoC and DRAM bytes
over their bandwidths, plus the hop and DRAM latencies: `imccompile.memory`), both kept in the
LayerCost. Periphery, buffer and router figures are scaled to ``technology.node_nm`` first
(`imccompile.technology.at_node`).

ADC energy, area and conversion time at ``adc.bits`` come from the spec's tables or the law of
``adc.type`` (imccompile.spec.adc_laws), so changing the bits re-prices all three.

Every count (used cells, driven rows, conversions, partial sums) is read from the layer's layout
(imccompile.layout); none is re-derived here.

Cycle time = max(array read time, serialized conversions per ADC x ADC latency) — the
sample-and-hold pipelining ISAAC assumes — plus ``periphery.read_overhead_s``, the work the
spec says does not overlap the conversions (NeuroSim's unhidden accumulation, MNSIM's
sequential DAC/crossbar/digital steps), per read; an array whose rows are read
``array.parallel_rows`` at a time takes one read per group of rows per input cycle (its
conversions are counted per read in the layout). Digital ops (attention, softmax, norms, pooling...) are
priced by the digital unit: ops x energy per op, bytes (at their width: imccompile.memory) x
buffer energy, ops / throughput plus the bytes' buffer time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from imccompile.activity import Activity, resolve, scaled_by_activity
from imccompile.ir import DigitalOp, Graph, MatrixOp
from imccompile.layout import LayerLayout, column_devices, n_slices
from imccompile.mapper import Mapping, ReloadPlan
from imccompile.memory import (
    Traffic,
    activation_bits,
    capacity_bytes,
    cores_spanned,
    digital_bytes,
    layer_hops,
    reload_bytes,
    spill_bytes,
    tensor_bytes,
    traffic,
    unpriced_warning,
)
from imccompile.technology import at_node

if TYPE_CHECKING:
    from imccompile.spec import Target

COMPONENTS = ("array", "dac", "adc", "shift_add", "accumulate", "digital", "buffer", "noc", "dram",
              "write", "leakage")


@dataclass(frozen=True)
class LayerCost:
    name: str
    kind: str
    energy: dict[str, float]
    latency_s: float
    area_mm2: float = 0.0
    ops: int = 0  # arithmetic ops of the layer per inference (2 per MAC)
    compute_s: float = 0.0  # latency_s = compute_s + movement_s
    traffic: Traffic = field(default_factory=Traffic)

    @property
    def energy_j(self) -> float:
        return float(sum(self.energy.values()))

    @property
    def movement_s(self) -> float:
        """Time of the layer's data movement (buffers, NoC, DRAM), s."""
        return self.traffic.time_s


@dataclass(frozen=True)
class Cost:
    layers: tuple[LayerCost, ...]
    area_mm2: float
    chip_area_mm2: float
    area_breakdown_mm2: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    activity: Activity = field(default_factory=Activity)  # per matrix layer, with its source

    @property
    def energy_j(self) -> float:
        return float(sum(lc.energy_j for lc in self.layers))

    @property
    def energy_breakdown_j(self) -> dict[str, float]:
        out = {c: 0.0 for c in COMPONENTS}
        for lc in self.layers:
            for k, v in lc.energy.items():
                out[k] += v
        return out

    def layer(self, name: str) -> LayerCost:
        for lc in self.layers:
            if lc.name == name:
                return lc
        raise KeyError(name)


def input_cycles(target, input_bits: int) -> int:
    if target.dac.mode == "pwm":
        return 1
    return math.ceil(input_bits / target.dac.bits)


def read_time_s(target, input_bits: int) -> float:
    """One array read; a PWM read lasts 2^bits steps, scaled from the spec's full dac.bits pulse."""
    t = target.array.read_latency_s
    if target.dac.mode == "pwm":
        t *= 2.0 ** (input_bits - target.dac.bits)
    return t


def pwm_energy_factor(target, input_bits: int) -> float:
    """PWM: row drive and cell read energy scale with the pulse length, 2^bits steps, relative to
    the spec's figures for full dac.bits pulses. Bit-serial: 1 (the cycle count does it)."""
    if target.dac.mode != "pwm":
        return 1.0
    return 2.0 ** (input_bits - target.dac.bits)


def adcs_per_array(target) -> int:
    return math.ceil(target.array.cols / target.adc.columns_per_adc)


def cycle_time_s(target, input_bits: int, conversions_per_array: float) -> float:
    serial = math.ceil(conversions_per_array / adcs_per_array(target) - 1e-9)
    unhidden = target.periphery.read_overhead_s or 0.0
    return max(read_time_s(target, input_bits), serial * target.adc.latency()) + unhidden


def adc_energy(target) -> float:
    return float(target.adc.energy_j(target.adc.bits, vdd_v=target.technology.vdd_v))


def static_power_per_array_w(target) -> float:
    """Static power of one placed array while powered: its cells and drivers
    (``array.leakage_w``), its ADCs (``adc.leakage_w`` each) and its periphery
    (``periphery.leakage_w_per_array``); absent fields count 0 (not modelled)."""
    a, adc, p = target.array, target.adc, target.periphery
    return ((a.leakage_w or 0.0) + adcs_per_array(target) * adc.static_w
            + (p.leakage_w_per_array or 0.0))


def static_power_w(mapping: Mapping, target) -> float:
    """Static power of the arrays the model occupies (placed arrays, at most the chips' arrays):
    they hold the weights, so they stay powered for the whole inference."""
    n = min(mapping.arrays, mapping.chip_arrays * mapping.chips)
    return n * static_power_per_array_w(target)


def _write_time_s(target: Target, lm: LayerLayout, plan: ReloadPlan) -> float:
    """Time to write a pooled layer's arrays, round after round on the pool: an array is
    programmed row by row (``write_latency_per_row_s`` per driven row); the arrays of one round
    in different cores are written in parallel, those sharing a core one after another (the
    pool's arrays fill cores of ``arrays_per_core``)."""
    per_core = target.hierarchy.arrays_per_core
    rows = list(lm.rows_per_array) * lm.replicas
    t = 0.0
    for start in range(0, len(rows), plan.pool_arrays):
        chunk = rows[start:start + plan.pool_arrays]
        by_core: dict[int, int] = {}
        for k, r in enumerate(chunk):  # pool array k sits in core (pool_first + k) // per_core
            core = (plan.pool_first + k) // per_core
            by_core[core] = by_core.get(core, 0) + r
        t += max(by_core.values()) * target.array.write_latency_per_row_s
    return t


def matrix_traffic(op: MatrixOp, lm: LayerLayout, graph: Graph, bits: dict[str, int],
                   capacity: float, target: Target, mapping: Mapping | None = None,
                   hops: int = 1) -> Traffic:
    """Bytes a matrix layer moves (at their precision: `imccompile.memory`) and their time."""
    in_bytes = lm.vectors * lm.input_rows * lm.input_bits / 8.0
    out_bytes = lm.vectors * lm.cols_logical * bits.get(op.outputs[0], lm.input_bits) / 8.0
    working = tensor_bytes(graph, op.inputs[0], bits) + tensor_bytes(graph, op.outputs[0], bits)
    dram = spill_bytes(working, capacity)
    arrays = lm.total_arrays
    if mapping is not None and mapping.reload is not None and mapping.pooled(lm.name):
        dram += reload_bytes(lm)
        arrays = min(arrays, mapping.reload.pool_arrays)  # its rounds run on the pool
    return traffic(in_bytes + out_bytes, out_bytes, dram, cores_spanned(arrays, target),
                   target, hops=hops if lm.arrays > 0 else 0)


def _movement_energy(tr: Traffic, target: Target) -> dict[str, float]:
    dram = target.dram.energy_per_byte_j
    return {"buffer": tr.buffer_bytes * target.buffers.energy_per_byte_j,
            "noc": tr.noc_bytes * tr.noc_hops * target.noc.hop_energy_per_byte_j,
            "dram": tr.dram_bytes * (dram or 0.0)}


def matrix_layer_cost(op: MatrixOp, lm: LayerLayout, target: Target,
                      mapping: Mapping | None = None, tr: Traffic | None = None,
                      activity: float = 1.0) -> LayerCost:
    """Energy and latency of one matrix layer on its layout (``lm``); ``tr``: its data
    movement (`matrix_traffic`; None = none priced); ``activity``: its input bit activity
    (fraction of 1 bits; `imccompile.activity`).

    Under ``--overflow reload``, a pooled layer (``mapping.pooled``) computes in rounds of the
    pool's size, each round writing its arrays first: every one of its cells is written every
    inference, and its latency is the rounds' writes plus their computes."""
    p = target.periphery
    cycles = input_cycles(target, lm.input_bits)
    reads = lm.vectors * cycles  # per copy; replicas split the vectors, totals stay
    pulse = pwm_energy_factor(target, lm.input_bits)
    e = dict.fromkeys(COMPONENTS, 0.0)
    e["array"] = reads * lm.used_cells * target.array.read_energy_per_cell_j * pulse
    e["dac"] = reads * lm.driven_rows * target.dac.energy_per_conversion_j * pulse
    e["adc"] = (reads * lm.converted_cols * adc_energy(target)
                + reads * lm.arrays * (target.adc.mux_energy_per_read_j or 0.0))
    e["shift_add"] = reads * lm.converted_cols * p.shift_add_energy_j
    e["accumulate"] = lm.vectors * lm.partial_sums * p.accumulate_energy_j
    tr = Traffic() if tr is None else tr
    e.update(_movement_energy(tr, target))
    latency = 0.0
    if lm.arrays:
        # arrays read in parallel, each its rows parallel_rows at a time: the array with the
        # most reads sets the pace; every read converts its columns (conversions serialize on
        # the shared ADCs)
        reads = max(lm.reads_per_array)
        conv_per_read = lm.converted_cols / sum(lm.reads_per_array)
        per_copy = math.ceil(lm.vectors / lm.replicas)
        compute = per_copy * cycles * reads * cycle_time_s(target, lm.input_bits, conv_per_read)
        plan = mapping.reload if mapping is not None else None
        if plan is not None and mapping is not None and mapping.pooled(lm.name):
            e["write"] = lm.used_cells * lm.replicas * target.array.write_energy_per_cell_j
            latency = plan.rounds(lm) * compute + _write_time_s(target, lm, plan)
        else:
            latency = compute
    return LayerCost(op.name, op.kind, scaled_by_activity(e, activity), latency + tr.time_s,
                     ops=2 * op.macs, compute_s=latency, traffic=tr)


def digital_traffic(op: DigitalOp, graph: Graph, bits: dict[str, int], capacity: float,
                    target: Target) -> Traffic:
    """A digital op's bytes at its width (`imccompile.memory.digital_bytes`), on one core."""
    nbytes = digital_bytes(op, graph, bits, target)
    return traffic(nbytes, 0.0, spill_bytes(nbytes, capacity), 1, target, hops=0)


def digital_layer_cost(op: DigitalOp, target, tr: Traffic | None = None) -> LayerCost:
    tr = Traffic() if tr is None else tr
    e = dict.fromkeys(COMPONENTS, 0.0)
    e["digital"] = op.ops * target.periphery.digital_energy_per_op_j
    e.update(_movement_energy(tr, target))
    compute = op.ops / target.periphery.digital_ops_per_s
    return LayerCost(op.name, "digital", e, compute + tr.time_s, ops=op.ops, compute_s=compute,
                     traffic=tr)


def array_area_mm2(target) -> dict[str, float]:
    """Area of one array with its converters and periphery."""
    target = at_node(target)
    a = target.array
    return {
        "arrays": a.area_mm2,
        "adc": adcs_per_array(target) * target.adc.area_mm2(target.adc.bits),  # table or law
        "dac": a.rows * target.dac.area_mm2,
        "periphery": target.periphery.area_mm2_per_array,
    }


def area(mapping: Mapping, target) -> tuple[float, float, dict[str, float]]:
    """(area used by the model, area of the chips it occupies, breakdown of the used area).

    Used area counts the arrays placed with their converters, plus the buffers of every core and
    the routers of every tile that holds at least one of them.
    """
    target = at_node(target)
    h = target.hierarchy
    per = array_area_mm2(target)
    n = min(mapping.arrays, mapping.chip_arrays * mapping.chips)
    cores = math.ceil(n / h.arrays_per_core)
    tiles = math.ceil(n / (h.arrays_per_core * h.cores_per_tile))
    used = {k: v * n for k, v in per.items()}
    used["buffers"] = cores * target.buffers.area_mm2
    used["routers"] = tiles * target.noc.router_area_mm2
    chip_cores = h.cores_per_tile * h.tiles_per_chip
    chip = (mapping.chip_arrays * sum(per.values()) + chip_cores * target.buffers.area_mm2
            + h.tiles_per_chip * target.noc.router_area_mm2)
    return float(sum(used.values())), float(chip * mapping.chips), used


def cost_graph(graph: Graph, mapping: Mapping, target: Target,
               activity: Activity | None = None) -> Cost:
    """Energy, latency and area of every op of the graph on the mapped target; ``activity``
    per matrix layer (default: the spec's ``dac.input_activity``, else 1.0)."""
    target = at_node(target)
    by_name = {lm.name: lm for lm in mapping.layers}
    if activity is None:
        activity = resolve([op.name for op in graph.matrix_ops], target)
    bits = activation_bits(graph, mapping, target)
    capacity = capacity_bytes(mapping, target)
    hops = layer_hops(graph, mapping, target)
    layers: list[LayerCost] = []
    for op in graph.ops:
        if isinstance(op, MatrixOp):
            lm = by_name[op.name]
            tr = matrix_traffic(op, lm, graph, bits, capacity, target, mapping, hops[op.name])
            layers.append(matrix_layer_cost(op, lm, target, mapping, tr, activity.of(op.name)))
        else:
            tr = digital_traffic(op, graph, bits, capacity, target)
            layers.append(digital_layer_cost(op, target, tr))
    watts = static_power_w(mapping, target)
    if watts:
        layers = [replace(lc, energy={**lc.energy, "leakage": watts * lc.latency_s})
                  for lc in layers]
    used, chip, breakdown = area(mapping, target)
    warnings = unpriced_warning(sum(lc.traffic.dram_bytes for lc in layers), target)
    return Cost(tuple(layers), used, chip, breakdown, warnings, activity)


def array_cycle_energy(target, rows: int | None = None, cols: int | None = None) -> dict[str, float]:
    """Energy of one full read cycle of one array (all rows driven, all columns converted once):
    the figure ISAAC's component table gives (ADC ≈ 3/4 of it)."""
    target = at_node(target)
    a = target.array
    rows = rows or a.rows
    cols = cols or a.cols
    converted = cols // column_devices(a.signed_scheme)
    return {
        "array": rows * cols * a.read_energy_per_cell_j,
        "dac": rows * target.dac.energy_per_conversion_j,
        "adc": converted * adc_energy(target) + (target.adc.mux_energy_per_read_j or 0.0),
        "shift_add": converted * target.periphery.shift_add_energy_j,
    }


def peak_performance(target) -> dict[str, float]:
    """Chip peak for full arrays firing at once: ops/s and ops/J for the spec's input precision.

    One MVM per array per input pass: 2 * rows * weight columns ops, where weight columns =
    cols / (slices x column devices). Energy counts array, DAC, ADC and shift-add per cycle.
    """
    target = at_node(target)
    a, h = target.array, target.hierarchy
    slices = n_slices(target.precision.weight_bits, a.bits_per_cell, a.signed_scheme)
    wcols = a.cols / (slices * column_devices(a.signed_scheme))
    cycles = input_cycles(target, target.precision.input_bits)
    per_cycle = array_cycle_energy(target)
    conv = per_cycle["adc"] / adc_energy(target) if adc_energy(target) else a.cols
    t = cycles * cycle_time_s(target, target.precision.input_bits, conv)
    ops = 2.0 * a.rows * wcols
    energy = cycles * sum(per_cycle.values())
    arrays = h.arrays_per_core * h.cores_per_tile * h.tiles_per_chip
    return {"ops_per_s": arrays * ops / t, "ops_per_j": ops / energy, "mvm_latency_s": t,
            "mvm_energy_j": energy}
