"""ADC laws over bits by adc.type, and leakage: hand-computed values (from the formulas in
docs/spec-format.md and the spec's anchor point, not from the code), monotonicity in bits for
every type, and static power x time on a small model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imccompile import cost
from imccompile.compiler import compile_graph
from imccompile.errors import SpecError
from imccompile.ir import Compression, Graph, MatrixOp, TensorInfo
from imccompile.spec import load_target

TYPES = ("sar", "flash", "cco", "sense_amp", "digital", "zigzag")


def _law(kind: str, energy: dict | None = None, area: dict | None = None, **more) -> list[str]:
    """Overrides on the rram spec (ADC latency 0.78125 ns given at 8 bits) for one ADC type."""
    sets = [f'adc.type="{kind}"', f"adc.energy_table_j={json.dumps(energy or {})}",
            f"adc.area_table_mm2={json.dumps(area or {})}"]
    return sets + [f"{k}={v}" for k, v in more.items()]


LAT8 = 7.8125e-10  # rram adc.latency_s at adc.latency_bits = 8


def test_sar_law_by_hand() -> None:
    t = load_target("rram", _law("sar", {"8": 1e-12}))
    env = lambda b: 0.27e-12 + 1.45e-19 * 4.0 ** b  # noqa: E731  Murmann envelope
    assert t.adc.energy_j(8) == 1e-12
    assert t.adc.energy_j(12) == pytest.approx(1e-12 * env(12) / env(8), rel=1e-12)
    assert t.adc.energy_j(4) == pytest.approx(1e-12 * env(4) / env(8), rel=1e-12)
    # no area table: the ZigZag area fit in absolute form, µm² -> mm²
    assert t.adc.area_mm2(6) == pytest.approx(10 ** (-0.0369 * 6 + 1.206) * 64 * 1e-6)
    # no energy table either: the envelope itself
    free = load_target("rram", _law("sar"))
    assert free.adc.energy_j(10) == pytest.approx(0.27e-12 + 1.45e-19 * 4 ** 10)
    # one cycle per bit, anchored at 8 bits
    assert t.adc.latency(4) == pytest.approx(LAT8 * 4 / 8)
    assert t.adc.latency(10) == pytest.approx(LAT8 * 10 / 8)


def test_flash_law_by_hand() -> None:
    t = load_target("rram", _law("flash", {"8": 2e-12}, {"8": 1e-3}))
    assert t.adc.energy_j(4) == pytest.approx(2e-12 * 15 / 255)
    assert t.adc.energy_j(10) == pytest.approx(2e-12 * 1023 / 255)
    assert t.adc.area_mm2(6) == pytest.approx(1e-3 * 63 / 255)
    assert t.adc.latency(4) == t.adc.latency(12) == LAT8


def test_cco_law_by_hand() -> None:
    t = load_target("pcm", _law("cco", {"8": 4e-11}, {"8": 4e-4}))
    assert t.adc.energy_j(6) == pytest.approx(4e-11 / 4)
    assert t.adc.energy_j(10) == pytest.approx(4e-11 * 4)
    assert t.adc.area_mm2(10) == pytest.approx(4e-4 * 10 / 8)
    # pcm: 5 ns at 8 bits, time per LSB: x 2^(b - 8)
    assert t.adc.latency(10) == pytest.approx(5e-9 * 4)
    assert load_target("pcm").adc.latency(4) == pytest.approx(5e-9 / 16)


def test_sense_amp_law_by_hand() -> None:
    t = load_target("rram", _law("sense_amp", {"5": 1e-12}, {"5": 2e-4}))
    # 2^b levels, 2^b - 1 sense amps: 31 at 5 bits
    assert t.adc.energy_j(3) == pytest.approx(1e-12 * 7 / 31)
    assert t.adc.energy_j(6) == pytest.approx(1e-12 * 63 / 31)
    assert t.adc.area_mm2(4) == pytest.approx(2e-4 * 15 / 31)
    assert t.adc.latency(3) == t.adc.latency(9) == LAT8


def test_digital_law() -> None:
    t = load_target("rram", _law("digital"))
    assert t.adc.energy_j(4) == t.adc.energy_j(16) == 0.0 and t.adc.area_mm2(9) == 0.0
    one = load_target("rram", _law("digital", {"8": 1e-13}))
    assert one.adc.energy_j(4) == one.adc.energy_j(16) == 1e-13
    assert t.adc.latency(2) == t.adc.latency(16) == LAT8
    s = load_target("sram")
    assert s.adc.energy_j(4) == 0.0 and s.adc.latency(4) == 0.0


def test_zigzag_law_by_hand() -> None:
    t = load_target("rram", _law("zigzag", **{"technology.vdd_v": 0.8}))
    e8 = (100 * 8 + 0.001 * 4 ** 8) * 1e-15 * 0.8 ** 2
    assert cost.adc_energy(t) == pytest.approx(e8)
    assert t.adc.energy_j(6, vdd_v=0.8) == pytest.approx((600 + 0.001 * 4 ** 6) * 1e-15 * 0.64)
    assert t.adc.area_mm2(8) == pytest.approx(10 ** (-0.0369 * 8 + 1.206) * 256 * 1e-6)
    assert t.adc.latency(4) == pytest.approx(LAT8 / 2)
    with pytest.raises(ValueError, match="vdd_v"):
        t.adc.energy_j(8)
    # one point: the law through it (vdd cancels)
    one = load_target("rram", _law("zigzag", {"8": 1e-12}))
    ratio = (1000 + 0.001 * 4 ** 10) / (800 + 0.001 * 4 ** 8)
    assert one.adc.energy_j(10) == pytest.approx(1e-12 * ratio)


@pytest.mark.parametrize("kind", ["flash", "cco", "sense_amp"])
def test_relative_law_without_a_point_is_an_error(kind: str) -> None:
    with pytest.raises(SpecError, match=(r"adc\.energy_table_j: expected a table \{bits: value\} "
                                         rf"\(at least one point\): the '{kind}' law is relative")):
        load_target("rram", _law(kind, area={"8": 1e-3}))


def test_two_point_tables_win_over_the_law() -> None:
    t = load_target("rram")  # Accelergy table 4..10 bits, sar
    assert t.adc.energy_j(6) == 1.2e-12 and t.adc.area_mm2(10) == 0.003002


def test_adc_bits_override_retimes_the_conversion_and_the_cycle() -> None:
    # rram: one ADC serves 128 columns; cycle = max(100 ns read, 128 x conversion time)
    ten = load_target("rram", ["adc.bits=10", "search.adc_bits=[4,6,8,10]"])
    assert ten.adc.latency() == pytest.approx(LAT8 * 10 / 8)
    assert cost.cycle_time_s(ten, 8, 128) == pytest.approx(128 * LAT8 * 10 / 8)
    four = load_target("rram", ["adc.bits=4", "search.adc_bits=[4,6,8]"])
    assert cost.cycle_time_s(four, 8, 128) == pytest.approx(100e-9)


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(TYPES), b0=st.integers(1, 16),
       v=st.floats(1e-15, 1e-9), a=st.floats(1e-6, 1e-2),
       lo=st.integers(1, 16), hi=st.integers(1, 16), one_point=st.booleans())
def test_more_bits_never_cost_less(kind, b0, v, a, lo, hi, one_point) -> None:
    lo, hi = min(lo, hi), max(lo, hi)
    if kind in ("sar", "zigzag", "digital") and not one_point:
        sets = _law(kind)
    else:
        sets = _law(kind, {str(b0): v}, {str(b0): a})
    t = load_target("rram", sets + [f"adc.latency_bits={b0}"])
    vdd = t.technology.vdd_v
    assert t.adc.energy_j(lo, vdd_v=vdd) <= t.adc.energy_j(hi, vdd_v=vdd) * (1 + 1e-12)
    assert t.adc.area_mm2(lo) <= t.adc.area_mm2(hi) * (1 + 1e-12)
    assert t.adc.latency(lo) <= t.adc.latency(hi) * (1 + 1e-12)


# -- leakage ---------------------------------------------------------------------------------------
def _fc(k: int, n: int, vectors: int) -> Graph:
    w = np.broadcast_to(np.float32(1.0), (k, n))
    op = MatrixOp("fc", "gemm", ("x",), ("y",), w, None, 1, vectors, compression=Compression())
    return Graph("g", (op,), {"x": TensorInfo("x", (1, k)), "y": TensorInfo("y", (1, n))},
                 ("x",), ("y",))


def test_leakage_by_hand_on_rram() -> None:
    # the fc of test_cost.test_layer_cost_by_hand_on_rram: 4 arrays of 128x128, one ADC each
    # (128 columns per ADC); latency 3 vectors x 16 cycles x 100 ns + hop 2.34 ns + 300 B/5.12 GB/s
    # + its 600 + 300 buffer bytes at 2.67 B/cycle x 1.28 GHz
    t = load_target("rram", ["array.leakage_w=1e-3", "adc.leakage_w=2e-4",
                             "periphery.leakage_w_per_array=5e-4"])
    res = compile_graph(_fc(100, 50, 3), t)
    assert res.mapping.layer("fc").arrays == 4
    lat = 3 * 16 * 100e-9 + 2.34e-9 + 300 / 5.12e9 + 900 / (2.67 * 1.28e9)
    watts = 4 * (1e-3 + 1 * 2e-4 + 5e-4)
    lc = res.cost.layer("fc")
    assert lc.latency_s == pytest.approx(lat)
    assert lc.energy["leakage"] == pytest.approx(watts * lat)
    assert res.cost.energy_breakdown_j["leakage"] == pytest.approx(watts * lat)
    base = compile_graph(_fc(100, 50, 3), load_target("rram"))
    assert base.cost.energy_breakdown_j["leakage"] == 0.0
    assert res.cost.energy_j - base.cost.energy_j == pytest.approx(watts * lat)


def test_leakage_is_charged_over_every_layer_including_digital() -> None:
    from imccompile.ir import DigitalOp

    t = load_target("rram", ["adc.leakage_w=1e-3"])
    g = _fc(100, 50, 1)
    relu = DigitalOp("relu", "Relu", ("y",), ("z",), ops=50, bytes=200)
    g = Graph("g", (*g.ops, relu), {**g.tensors, "z": TensorInfo("z", (1, 50))}, ("x",), ("z",))
    res = compile_graph(g, t)
    watts = 4 * 1e-3
    d = res.cost.layer("relu")
    # 50 ops, and 50 + 50 elements at 16 bits = 200 B at 2.67 B/cycle x 1.28 GHz
    assert d.latency_s == pytest.approx(50 / t.periphery.digital_ops_per_s + 200 / (2.67 * 1.28e9))
    assert d.energy["leakage"] == pytest.approx(watts * d.latency_s)
    total = sum(lc.latency_s for lc in res.cost.layers)
    assert res.cost.energy_breakdown_j["leakage"] == pytest.approx(watts * total)
