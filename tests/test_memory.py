"""Data movement, memory hierarchy and technology scaling, by hand from the spec numbers.

Laws under test (imccompile/memory.py, imccompile/technology.py, docs/spec-format.md):
digital traffic at the activation precision; buffer / NoC / DRAM time beside compute time;
activations beyond the chip's buffers and reloaded weights through DRAM; the node scaling of
the digital figures; the clock times the buffers.
"""

from __future__ import annotations

import numpy as np
import pytest

from imccompile.compiler import compile_graph
from imccompile.ir import Compression, DigitalOp, Graph, MatrixOp, TensorInfo
from imccompile.outputs import build_report
from imccompile.spec import load_target


def _gemm(name: str, k: int, n: int, inp: str, out: str, act_bits: int | None = None,
          vectors: int = 1) -> MatrixOp:
    w = np.ones((k, n), np.float32)
    return MatrixOp(name, "gemm", (inp,), (out,), w, None, 1, vectors,
                    compression=Compression(act_bits=act_bits))


def fc_relu_fc(bits1: int | None = None, bits2: int | None = None) -> Graph:
    """x(16) -> fc1 -> h(8) -> Relu -> r(8) -> fc2 -> y(4)."""
    fc1 = _gemm("fc1", 16, 8, "x", "h", bits1)
    relu = DigitalOp("relu", "Relu", ("h",), ("r",), ops=8, bytes=64)  # ONNX: 16 floats
    fc2 = _gemm("fc2", 8, 4, "r", "y", bits2)
    tensors = {"x": TensorInfo("x", (1, 16)), "h": TensorInfo("h", (1, 8)),
               "r": TensorInfo("r", (1, 8)), "y": TensorInfo("y", (1, 4))}
    return Graph("g", (fc1, relu, fc2), tensors, ("x",), ("y",))


# -- item 4: digital work at its real precision ----------------------------------------------
def test_digital_op_bytes_at_the_bits_of_the_layer_that_reads_them():
    t = load_target("pcm")  # buffers 0.5 pJ/byte
    res = compile_graph(fc_relu_fc(bits1=8, bits2=4), t)
    relu = res.cost.layer("relu")
    # 8 + 8 elements at the 4 bits fc2 reads (not 64 float bytes)
    assert relu.traffic.buffer_bytes == pytest.approx(16 * 4 / 8)
    assert relu.energy["buffer"] == pytest.approx(8 * 5e-13)
    # fc1 reads x at its 8 bits (16 B) and writes h at fc2's 4 bits (8 x 4 / 8 = 4 B)
    fc1 = res.cost.layer("fc1")
    assert fc1.traffic.buffer_bytes == pytest.approx(16 + 4)
    assert fc1.traffic.noc_bytes == pytest.approx(4)
    # y, read by no matrix layer, stays at fc2's own 4 bits: 8 x 4/8 + 4 x 4/8 = 6 B
    assert res.cost.layer("fc2").traffic.buffer_bytes == pytest.approx(6)


def test_digital_op_bytes_at_the_declared_digital_width():
    t = load_target("pcm", ["periphery.digital_bits=16"])
    res = compile_graph(fc_relu_fc(bits1=8, bits2=4), t)
    assert res.cost.layer("relu").traffic.buffer_bytes == pytest.approx(16 * 2)
    # the matrix layers keep their activation bits
    assert res.cost.layer("fc1").traffic.buffer_bytes == pytest.approx(16 + 4)


def test_report_shows_bytes_and_both_latencies():
    res = compile_graph(fc_relu_fc(), load_target("pcm"))
    rep = build_report(res)
    for row, lc in zip(rep["layers"], res.cost.layers):
        assert row["latency_s"] == pytest.approx(row["compute_latency_s"]
                                                 + row["movement_latency_s"])
        assert row["buffer_bytes"] == lc.traffic.buffer_bytes
    assert rep["layers"][1]["bytes"] == 64  # the ONNX figure is kept, the priced one beside it
    assert rep["layers"][1]["buffer_bytes"] == 16  # 16 elements at 8 bits


# -- item 5: time of the data movement -------------------------------------------------------
def test_buffer_time_is_bytes_over_port_width_times_clock():
    t = load_target("pcm")  # 16 B/cycle at 1 GHz, 1 array per core
    res = compile_graph(fc_relu_fc(), t)
    relu = res.cost.layer("relu")
    # 16 elements at 8 bits = 16 B on one core: 1 ns; compute: 8 ops / 16 Gops/s = 0.5 ns
    assert relu.traffic.buffer_s == pytest.approx(16 / (16 * 1e9))
    assert relu.compute_s == pytest.approx(8 / 16e9)
    assert relu.latency_s == pytest.approx(1e-9 + 0.5e-9)
    fc1 = res.cost.layer("fc1")
    # 24 B buffer + one hop 2 ns + 8 output bytes / 16 GB/s
    assert fc1.movement_s == pytest.approx(24 / 16e9 + 2e-9 + 8 / 16e9)
    slow = compile_graph(fc_relu_fc(), t.replace_path("technology.clock_hz", 5e8))
    assert slow.cost.layer("relu").traffic.buffer_s == pytest.approx(2e-9)
    # the schedule runs on the sum
    assert res.schedule.serial_latency_s == pytest.approx(
        sum(lc.compute_s + lc.movement_s for lc in res.cost.layers))


# -- item 7: memory hierarchy ----------------------------------------------------------------
def test_activations_beyond_the_buffers_spill_to_dram():
    # capacity = 2 B x 64 cores = 128 B; fc of 100 -> 50, 3 vectors, 8 bits
    t = load_target("pcm", ["buffers.size_bytes=2"])
    op = _gemm("fc", 100, 50, "x", "y", vectors=3)
    g = Graph("g", (op,), {"x": TensorInfo("x", (3, 100)), "y": TensorInfo("y", (3, 50))},
              ("x",), ("y",))
    res = compile_graph(g, t)
    lc = res.cost.layer("fc")
    spill = 300 + 150 - 128
    assert lc.traffic.dram_bytes == pytest.approx(spill)
    assert lc.energy["dram"] == pytest.approx(spill * 1.6e-10)
    assert lc.traffic.dram_s == pytest.approx(1e-7 + spill / 1.71e10)
    assert res.cost.energy_breakdown_j["dram"] == pytest.approx(spill * 1.6e-10)
    fits = compile_graph(g, load_target("pcm")).cost.layer("fc")
    assert fits.traffic.dram_bytes == 0 and fits.energy["dram"] == 0
    assert lc.latency_s == pytest.approx(fits.latency_s + lc.traffic.dram_s)
    assert build_report(res)["totals"]["dram_bytes"] == pytest.approx(spill)


def test_reloaded_weights_are_read_from_dram():
    # pcm: 4096 x 4096 weights on 256 arrays > 64: every weight reloaded per inference
    op = _gemm("big", 4096, 4096, "x", "y", vectors=4)
    g = Graph("g", (op,), {"x": TensorInfo("x", (4, 4096)), "y": TensorInfo("y", (4, 4096))},
              ("x",), ("y",))
    t = load_target("pcm")
    reload = compile_graph(g, t, overflow="reload")
    chips = compile_graph(g, t, overflow="chips")
    nbytes = 4096 * 4096 * 4 / 8  # 4-bit weight codes
    lc = reload.cost.layer("big")
    assert lc.traffic.dram_bytes == pytest.approx(nbytes)
    assert lc.energy["dram"] == pytest.approx(nbytes * 1.6e-10)
    assert lc.traffic.dram_s == pytest.approx(1e-7 + nbytes / 1.71e10)
    assert chips.cost.layer("big").traffic.dram_bytes == 0


def test_without_a_dram_section_off_chip_bytes_are_reported_not_priced():
    t = load_target("pcm", ["buffers.size_bytes=0"]).replace_path("dram", {})
    res = compile_graph(fc_relu_fc(), t)
    assert res.cost.layer("fc1").traffic.dram_bytes > 0
    assert res.cost.energy_breakdown_j["dram"] == 0
    rep = build_report(res)
    assert any("no dram section" in w for w in rep["warnings"])
    assert not compile_graph(fc_relu_fc(), load_target("pcm")).cost.warnings


def test_dram_fields_all_or_none():
    from imccompile.errors import SpecError

    with pytest.raises(SpecError, match=r"dram\.bytes_per_s: expected a value"):
        load_target("pcm").replace_path("dram", {"energy_per_byte_j": 1e-10})


# -- technology.node_nm and clock_hz ---------------------------------------------------------
def test_node_scales_digital_energy_and_area_by_classical_scaling():
    t = load_target("pcm")  # figures at 14 nm
    half = t.replace_path("technology.node_nm", 7)
    base, small = compile_graph(fc_relu_fc(), t), compile_graph(fc_relu_fc(), half)
    for part in ("shift_add", "accumulate", "buffer"):
        assert small.cost.energy_breakdown_j[part] == pytest.approx(
            base.cost.energy_breakdown_j[part] / 2)
    assert small.cost.layer("relu").energy["digital"] == pytest.approx(8 * 5e-13 / 2)
    for part in ("adc", "dac", "array", "noc"):  # converters, cells and wires do not scale
        assert small.cost.energy_breakdown_j[part] == base.cost.energy_breakdown_j[part]
    b, s = base.cost.area_breakdown_mm2, small.cost.area_breakdown_mm2
    assert s["periphery"] == pytest.approx(b["periphery"] / 4)
    assert s["buffers"] == pytest.approx(b["buffers"] / 4)
    assert s["routers"] == pytest.approx(b["routers"] / 4)
    assert s["adc"] == b["adc"] and s["arrays"] == b["arrays"]
    # figures given at the node: no scaling
    same = t.replace_paths({"technology.node_nm": 7, "technology.figures_node_nm": 7})
    assert compile_graph(fc_relu_fc(), same).cost.energy_j == pytest.approx(base.cost.energy_j)


@pytest.mark.parametrize("topology,hops", [("mesh", 8), ("tree", 8), ("bus", 1)])
def test_noc_hops_follow_the_topology(topology, hops):
    # pcm: one array per tile, 64 tiles on an 8-wide mesh. fc1 (256 x 2048: 8 column tiles)
    # sits on tiles 0..7; fc2 starts on tile 8. Its last tile 7 = (0, 7) to (1, 0): mesh
    # 1 + 7 = 8 hops; tree: 7 XOR 8 = 0b1111, 2 x 4 = 8; bus: 1.
    t = load_target("pcm", [f"noc.topology={topology}"])
    fc1, fc2 = _gemm("fc1", 256, 2048, "x", "h"), _gemm("fc2", 2048, 10, "h", "y")
    g = Graph("g", (fc1, fc2), {"x": TensorInfo("x", (1, 256)), "h": TensorInfo("h", (1, 2048)),
                                "y": TensorInfo("y", (1, 10))}, ("x",), ("y",))
    res = compile_graph(g, t)
    assert res.mapping.layer("fc2").first_array == 8
    lc = res.cost.layer("fc1")
    assert lc.traffic.noc_hops == hops
    assert lc.energy["noc"] == pytest.approx(2048 * hops * 1e-12)
    assert lc.traffic.noc_s == pytest.approx(hops * 2e-9 + 2048 / 16e9)
    assert res.cost.layer("fc2").traffic.noc_hops == 1  # read by no matrix layer: one hop out
