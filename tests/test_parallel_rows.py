"""Rows read at once (array.parallel_rows): reads, conversions, latency and the simulation's ADC
row groups follow it through the layout. Expected numbers computed by hand in the comments."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper
from onnx_builders import init, model, vi

from imccompile.compiler import compile_graph
from imccompile.errors import SpecError
from imccompile.frontend import import_model
from imccompile.layout import map_layer
from imccompile.ir import MatrixOp
from imccompile.simulate import SimOptions, adc_tiles, load_data, calibrate
from imccompile.spec import load_target


def _gemm(k: int, n: int, w: np.ndarray | None = None):
    if w is None:
        w = np.random.default_rng(0).standard_normal((k, n)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")]
    return model(nodes, [vi("x", [3, k])], [vi("y", [3, n])], [init("w", w)])


def test_gemm_on_rram_read_64_rows_at_a_time():
    # rram: 128 x 128, 16-bit weights on 2-bit cells (8 slices), offset (127 usable columns),
    # 16-bit inputs on 1-bit DACs (16 cycles). K = 200, N = 50, 3 vectors.
    # row tiles 128 + 72 rows; 50 * 8 = 400 columns -> 4 column tiles (127, 127, 127, 19) = 8 arrays
    t = load_target("rram", ["array.parallel_rows=64"])
    res = compile_graph(import_model(_gemm(200, 50)), t)
    lm = res.mapping.layer("fc")
    assert lm.arrays == 8
    # every tile is read ceil(128/64) = 2 or ceil(72/64) = 2 times per input cycle
    assert lm.reads_per_array == (2,) * 8
    # conversions: per row tile 400 columns x 2 reads, two row tiles = 1600, plus the
    # reference column of each array in each read: 8 x 2 = 16 -> 1616 (all rows at once: 808)
    assert lm.converted_cols == 1616
    assert compile_graph(import_model(_gemm(200, 50)), load_target("rram")).mapping \
        .layer("fc").converted_cols == 808
    assert lm.driven_rows == 200 * 4  # every row is still driven once per input cycle
    # the ADC row groups: rows 0-63, 64-127 (first row tile), 128-191, 192-199 (second)
    assert adc_tiles(res.graph.matrix_ops[0], lm) == (((0, 0, 64),), ((0, 64, 128),),
                                                       ((0, 128, 192),), ((0, 192, 200),))
    e = res.cost.layer("fc").energy
    reads = 3 * 16
    assert e["adc"] == pytest.approx(reads * 1616 * 1.67e-12)
    assert e["dac"] == pytest.approx(reads * 800 * 3.90625e-13)
    # latency: 3 vectors x 16 cycles x 2 reads x max(100 ns read, 101 conversions per read on
    # the array's one ADC x 0.78125 ns = 78.9 ns) + one hop + 300 output bytes / 5.12 GB/s
    # + 1200 + 300 buffer bytes at 2.67 B/cycle x 1.28 GHz
    lat = 3 * 16 * 2 * 100e-9 + 2.34e-9 + 300 / 5.12e9 + 1500 / (2.67 * 1.28e9)
    assert res.cost.layer("fc").latency_s == pytest.approx(lat)


def test_packed_depthwise_blocks_share_reads():
    # 32 groups of K = 9 rows, 1 column each; 4-bit weights on 4-bit cells, differential_cell:
    # blocks of 9 x 1 packed min(128 // 9, 128 // 1) = 14 per array -> 3 arrays (14, 14, 4)
    op = MatrixOp("dw", "conv", ("x",), ("y",), np.ones((9, 32), np.float32), None, 32, 1)
    full = map_layer(op, 128, 128, 4, "differential_cell", 4, 8)
    assert full.packed and full.reads_per_array == (1, 1, 1)
    # 16 rows at a time: one 9-row block per read -> 14, 14 and 4 reads; each block's column is
    # still converted once (in its own read)
    lm = map_layer(op, 128, 128, 4, "differential_cell", 4, 8, parallel_rows=16)
    assert lm.reads_per_array == (14, 14, 4)
    assert lm.converted_cols == full.converted_cols == 32
    # 8 rows at a time: a 9-row block needs ceil(9/8) = 2 reads -> 28, 28, 8; 64 conversions
    lm = map_layer(op, 128, 128, 4, "differential_cell", 4, 8, parallel_rows=8)
    assert lm.reads_per_array == (28, 28, 8) and lm.converted_cols == 64


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.integers(1, 80), st.sampled_from([1, 1, 2, 8]),
       st.sampled_from(["differential", "differential_cell", "offset", "twos_complement"]),
       st.integers(1, 128), st.integers(1, 128))
def test_fewer_parallel_rows_never_fewer_reads_conversions_or_latency(k, n, groups, scheme,
                                                                     p1, p2):
    lo, hi = sorted((p1, p2))
    op = MatrixOp("l", "gemm", ("x",), ("y",), np.ones((k, n * groups), np.float32), None,
                  groups, 4)
    few = map_layer(op, 128, 128, 1, scheme, 4, 8, parallel_rows=lo)
    many = map_layer(op, 128, 128, 1, scheme, 4, 8, parallel_rows=hi)
    assert few.arrays == many.arrays and few.driven_rows == many.driven_rows
    assert few.converted_cols >= many.converted_cols
    assert max(few.reads_per_array) >= max(many.reads_per_array)
    assert len(few.row_groups) >= len(many.row_groups)


def test_spec_checks_and_sources():
    with pytest.raises(SpecError, match=r"parallel_rows: expected at most rows \(128\), got 256"):
        load_target("rram", ["array.parallel_rows=256"])
    t = load_target("rram", ["array.parallel_rows=64"])
    assert t.sources["array.parallel_rows"] == "override: --set array.parallel_rows=64"
    assert load_target("rram").array.parallel_rows is None


def test_a_read_that_fits_the_adc_is_lossless():
    """1-bit input planes on 1-bit cells: a read of P rows sums digits 0/1, at most P. A 6-bit
    ADC resolves +-31: with P = 31 rows per read and the full-scale range (step = 31 / 31 = 1)
    the bit-accurate simulation equals the one without ADC; with all 62 rows in one read the
    step is 62 / 31 = 2 and odd partial sums are lost."""
    k, n = 62, 8
    rng = np.random.default_rng(1)
    w = rng.standard_normal((k, n)).astype(np.float32)
    w[:, 0] = 1.0  # a column of largest codes: its upper slices hold a digit 1 in every row
    m = import_model(_gemm(k, n, w))
    x = rng.standard_normal((20, 3, k)).astype(np.float32)
    data = load_data({"x": x}, m)
    common = ["array.bits_per_cell=1", "precision.weight_bits=4", "precision.input_bits=4",
              "adc.bits=6", "search.bits_per_cell=[1,2]", "search.weight_bits=[4,16]",
              "search.input_bits=[4,16]", "search.adc_bits=[6,8]"]

    def outputs(parallel: int, adc: bool) -> np.ndarray:
        from imccompile.simulate import Runner, simulation_model

        t = load_target("rram", common + [f"array.parallel_rows={parallel}"])
        res = compile_graph(m, t)
        opts = SimOptions(noise=False, adc=adc, bit_accurate=True, adc_range="full_scale")
        cal = calibrate(m, t, data, opts, res.mapping)
        sim = simulation_model(m, t, cal, opts, 0, res.mapping)
        outs: list[np.ndarray] = []
        Runner(sim, ["y"]).run(data, lambda i, o: outs.append(o[0]))
        return np.stack(outs)

    exact = outputs(31, adc=False)
    np.testing.assert_allclose(outputs(31, adc=True), exact, rtol=1e-5, atol=1e-5)
    assert np.abs(outputs(62, adc=True) - exact).max() > 1e-3
