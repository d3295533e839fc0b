"""The cost model moves the way the circuits do when one knob turns (hypothesis properties).

Each property turns one knob on random layers and bundled targets: more ADC bits never lower
ADC energy or area; fewer rows read at once never lower latency; more weight bits never lower
the arrays; a bigger buffer never raises DRAM traffic or energy; more activation bits never
lower buffer energy; a faster clock or more DRAM bandwidth never raises latency; a smaller node
never raises digital energy or area.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imccompile.compiler import compile_graph
from imccompile.ir import Compression, DigitalOp, Graph, MatrixOp, TensorInfo
from imccompile.spec import bundled_targets, load_target
from imccompile.spec.adc_laws import ABSOLUTE_ENERGY

TARGETS = bundled_targets()
SETTINGS = settings(max_examples=20, deadline=None)


def chain(k: int, n: int, m: int, vectors: int, weight_bits: int | None = None) -> Graph:
    """x(k) -> fc1 -> h(n) -> Relu -> r(n) -> fc2 -> y(m), ``vectors`` input vectors."""
    c = Compression(weight_bits=weight_bits)
    rng = np.random.default_rng(k * 7919 + n)
    fc1 = MatrixOp("fc1", "gemm", ("x",), ("h",), rng.standard_normal((k, n)).astype(np.float32),
                   None, 1, vectors, compression=c)
    relu = DigitalOp("relu", "Relu", ("h",), ("r",), ops=vectors * n, bytes=8 * vectors * n)
    fc2 = MatrixOp("fc2", "gemm", ("r",), ("y",), rng.standard_normal((n, m)).astype(np.float32),
                   None, 1, vectors, compression=c)
    tensors = {"x": TensorInfo("x", (vectors, k)), "h": TensorInfo("h", (vectors, n)),
               "r": TensorInfo("r", (vectors, n)), "y": TensorInfo("y", (vectors, m))}
    return Graph("g", (fc1, relu, fc2), tensors, ("x",), ("y",))


layers = st.tuples(st.integers(1, 600), st.integers(1, 600), st.integers(1, 64),
                   st.integers(1, 16))


def _with(t, changes: dict):
    """The target with ``changes``; a knob's value joins its search list."""
    lists = {"adc.bits": "search.adc_bits", "precision.input_bits": "search.input_bits",
             "precision.weight_bits": "search.weight_bits"}
    full = dict(changes)
    for path, value in changes.items():
        if path in lists:
            full[lists[path]] = sorted(set(t.get_path(lists[path])) | {value})
    return t.replace_paths(full)


@SETTINGS
@given(st.sampled_from(TARGETS), st.sampled_from(("sar", "flash", "cco", "sense_amp", "zigzag",
                                                   "digital")),
       st.integers(1, 16), st.integers(1, 16))
def test_more_adc_bits_never_lower_adc_energy_or_area(name, kind, b1, b2):
    lo, hi = sorted((b1, b2))
    t = load_target(name)
    if kind != t.adc.type:
        change = {"adc.type": kind}
        if kind in ABSOLUTE_ENERGY:  # its own law, no table
            change.update({"adc.energy_table_j": {}, "adc.area_table_mm2": {}})
        if kind == "digital":  # an adder tree has no analog read-out to bound or add noise to
            change.update({"adc.out_bound": None, "adc.read_noise": None})
        t = t.replace_paths(change)
    assert t.adc.energy_j(lo, vdd_v=t.technology.vdd_v) <= t.adc.energy_j(
        hi, vdd_v=t.technology.vdd_v) * (1 + 1e-12)
    assert t.adc.area_mm2(lo) <= t.adc.area_mm2(hi) * (1 + 1e-12)
    assert t.adc.latency(lo) <= t.adc.latency(hi) * (1 + 1e-12)


@SETTINGS
@given(st.sampled_from(TARGETS), layers, st.integers(1, 4096), st.integers(1, 4096))
def test_fewer_parallel_rows_never_lower_latency(name, case, p1, p2):
    t = load_target(name)
    lo, hi = sorted((min(p1, t.array.rows), min(p2, t.array.rows)))
    g = chain(*case)
    few = compile_graph(g, t.replace_path("array.parallel_rows", lo))
    many = compile_graph(g, t.replace_path("array.parallel_rows", hi))
    for a, b in zip(few.cost.layers, many.cost.layers):
        assert a.compute_s >= b.compute_s * (1 - 1e-12)
    assert few.schedule.latency_s >= many.schedule.latency_s * (1 - 1e-12)


@SETTINGS
@given(st.sampled_from(TARGETS), layers, st.integers(2, 16), st.integers(2, 16))
def test_more_weight_bits_never_lower_arrays(name, case, w1, w2):
    lo, hi = sorted((w1, w2))
    t = load_target(name)
    a = compile_graph(chain(*case, weight_bits=lo), t).mapping
    b = compile_graph(chain(*case, weight_bits=hi), t).mapping
    assert a.arrays <= b.arrays
    for la, lb in zip(a.layers, b.layers):
        assert la.used_cells <= lb.used_cells


@SETTINGS
@given(st.sampled_from(TARGETS), layers, st.integers(0, 5000), st.integers(0, 5000))
def test_bigger_buffer_never_raises_dram_energy(name, case, s1, s2):
    lo, hi = sorted((s1, s2))
    t = load_target(name)
    g = chain(*case)
    small = compile_graph(g, t.replace_path("buffers.size_bytes", lo)).cost
    big = compile_graph(g, t.replace_path("buffers.size_bytes", hi)).cost
    assert big.energy_breakdown_j["dram"] <= small.energy_breakdown_j["dram"] * (1 + 1e-12)
    for a, b in zip(small.layers, big.layers):
        assert b.traffic.dram_bytes <= a.traffic.dram_bytes
        assert b.latency_s <= a.latency_s * (1 + 1e-12)


@SETTINGS
@given(st.sampled_from(TARGETS), layers, st.integers(1, 16), st.integers(1, 16))
def test_more_activation_bits_never_lower_buffer_energy(name, case, b1, b2):
    lo, hi = sorted((b1, b2))
    t = load_target(name)
    g = chain(*case)
    a = compile_graph(g, _with(t, {"precision.input_bits": lo})).cost
    b = compile_graph(g, _with(t, {"precision.input_bits": hi})).cost
    for la, lb in zip(a.layers, b.layers):
        assert la.energy["buffer"] <= lb.energy["buffer"] * (1 + 1e-12)
        assert la.traffic.buffer_s <= lb.traffic.buffer_s * (1 + 1e-12)


@SETTINGS
@given(st.sampled_from(TARGETS), layers, st.floats(1e7, 5e9), st.floats(1e7, 5e9))
def test_faster_clock_never_raises_latency(name, case, f1, f2):
    lo, hi = sorted((f1, f2))
    t = load_target(name)
    g = chain(*case)
    slow = compile_graph(g, t.replace_path("technology.clock_hz", lo))
    fast = compile_graph(g, t.replace_path("technology.clock_hz", hi))
    assert fast.schedule.latency_s <= slow.schedule.latency_s * (1 + 1e-12)


@SETTINGS
@given(st.sampled_from(TARGETS), layers, st.floats(1e8, 1e11), st.floats(1e8, 1e11))
def test_more_dram_bandwidth_never_raises_latency(name, case, w1, w2):
    lo, hi = sorted((w1, w2))
    t = load_target(name, ["buffers.size_bytes=1"])  # so that activations spill
    if t.dram.bytes_per_s is None:  # a peer preset that models no DRAM: give it one
        t = t.replace_paths({"dram.energy_per_byte_j": 1.6e-10, "dram.bytes_per_s": 1.71e10,
                             "dram.latency_s": 1e-7})
    g = chain(*case)
    narrow = compile_graph(g, t.replace_path("dram.bytes_per_s", lo))
    wide = compile_graph(g, t.replace_path("dram.bytes_per_s", hi))
    assert wide.schedule.latency_s <= narrow.schedule.latency_s * (1 + 1e-12)
    def dynamic(res) -> float:  # leakage is static power x time: it follows the latency
        return sum(v for k, v in res.cost.energy_breakdown_j.items() if k != "leakage")

    assert dynamic(wide) == pytest.approx(dynamic(narrow))  # time only


@SETTINGS
@given(st.sampled_from(TARGETS), layers, st.integers(3, 180), st.integers(3, 180))
def test_smaller_node_never_raises_digital_energy_or_area(name, case, n1, n2):
    lo, hi = sorted((n1, n2))
    t = load_target(name)
    g = chain(*case)
    a = compile_graph(g, t.replace_path("technology.node_nm", lo)).cost
    b = compile_graph(g, t.replace_path("technology.node_nm", hi)).cost
    for part in ("shift_add", "accumulate", "digital", "buffer"):
        assert a.energy_breakdown_j[part] <= b.energy_breakdown_j[part] * (1 + 1e-12)
    assert a.area_mm2 <= b.area_mm2 * (1 + 1e-12)
