"""Mapper: exact array counts on hand-computed cases, packing, pruning, array-size monotonicity and
overflow of a model larger than one chip.

Every expected number below is computed by hand in the comment next to it, from the rules in the
mapper's module docstring; none is read back from the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper
from onnx_builders import init, model, vi

from imccompile.errors import MappingError
from imccompile.frontend import import_model
from imccompile.ir import Compression, Graph, MatrixOp, TensorInfo
from imccompile.layout import column_devices, map_layer
from imccompile.mapper import map_graph
from imccompile.spec import load_target


# -- helpers -------------------------------------------------------------------------------------
def mop(name: str, k: int, n: int, *, groups: int = 1, vectors: int = 1, kind: str = "gemm",
        inp: str = "x", out: str | None = None, weight_bits: int | None = None,
        mask: np.ndarray | None = None) -> MatrixOp:
    """A MatrixOp with a (K, N) weight of ones (a zero-stride view: big layers cost no memory)."""
    w = np.broadcast_to(np.float32(1.0), (k, n))
    return MatrixOp(name, kind, (inp,), (out or f"{name}_out",), w, None, groups, vectors,
                    compression=Compression(weight_bits=weight_bits, mask=mask))


def stored_bits(weight_bits: int, scheme: str) -> int:
    """Bits the cells hold per weight: differential schemes store the magnitude (the sign is
    the polarity), b - 1 bits (1 for b <= 2); offset and two's complement all b bits."""
    if scheme in ("differential", "differential_cell"):
        return max(1, weight_bits - 1)
    return weight_bits


def one_layer_graph(op: MatrixOp) -> Graph:
    tensors = {op.inputs[0]: TensorInfo(op.inputs[0], (1, op.rows * op.groups)),
               op.outputs[0]: TensorInfo(op.outputs[0], (1, op.cols))}
    return Graph("g", (op,), tensors, op.inputs, op.outputs)


def rram(*overrides: str):
    return load_target("rram", list(overrides))


# -- hand-computed array counts ------------------------------------------------------------------
def test_gemm_300x200_differential_on_rram_target():
    # 8-bit weights on 2-bit cells: slices = ceil(8/2) = 4; differential: x2 device columns
    # physical columns = 200 * 4 * 2 = 1600
    # column tiles = ceil(1600 / 128) = ceil(12.5) = 13; row tiles = ceil(300 / 128) = 3
    # arrays = 13 * 3 = 39
    t = rram("array.signed_scheme=differential", "precision.weight_bits=8",
             "array.bits_per_cell=2", "array.rows=128", "array.cols=128")
    m = map_graph(one_layer_graph(mop("fc", 300, 200)), t)
    lm = m.layer("fc")
    assert lm.slices == 4
    assert lm.column_devices == 2
    assert lm.phys_cols == 1600
    assert lm.col_tiles == 13
    assert lm.row_tiles == 3
    assert lm.arrays == 39 and lm.total_arrays == 39 and m.arrays == 39
    assert not lm.packed
    # cells holding weights: 300 * 1600 = 480000 of 39 * 128 * 128 = 638976
    assert lm.used_cells == 300 * 1600
    assert lm.utilization(128, 128) == pytest.approx(480000 / 638976)
    # conversions per input cycle: every row tile digitizes 200 * 4 slice columns = 3 * 800 = 2400
    assert lm.converted_cols == 2400
    # driven rows: every column tile gets all 300 inputs = 300 * 13 = 3900
    assert lm.driven_rows == 3900


def test_gemm_same_shape_other_schemes():
    # differential_cell and twos_complement: no column doubling -> 200 * 4 = 800 columns,
    # ceil(800/128) = ceil(6.25) = 7 column tiles x 3 row tiles = 21 arrays
    for scheme in ("differential_cell", "twos_complement"):
        assert column_devices(scheme) == 1
        lm = map_layer(mop("fc", 300, 200), 128, 128, 2, scheme, 8, 8)
        assert (lm.phys_cols, lm.col_tiles, lm.row_tiles, lm.arrays) == (800, 7, 3, 21), scheme
    # offset: 800 columns on 127 usable columns -> ceil(800/127) = ceil(6.30) = 7 -> 21 arrays
    lm = map_layer(mop("fc", 300, 200), 128, 128, 2, "offset", 8, 8)
    assert (lm.phys_cols, lm.col_tiles, lm.arrays) == (800, 7, 21)


def test_offset_reference_column_leaves_127_usable():
    # 4-bit weights on 4-bit cells: 1 slice, 1 device column per slice
    # N = 127 -> 127 physical columns = exactly the 127 usable ones -> 1 column tile
    lm = map_layer(mop("a", 128, 127), 128, 128, 4, "offset", 4, 8)
    assert (lm.slices, lm.phys_cols, lm.col_tiles, lm.row_tiles, lm.arrays) == (1, 127, 1, 1, 1)
    # the reference column is digitized too: 127 weight columns + 1 reference = 128 conversions;
    # and its 128 cells hold reference conductances: 128*127 + 128 = 16384 cells = full array
    assert lm.converted_cols == 128
    assert lm.used_cells == 128 * 127 + 128
    assert lm.utilization(128, 128) == pytest.approx(1.0)
    # N = 128 -> 128 physical columns > 127 usable -> ceil(128/127) = 2 column tiles
    lm = map_layer(mop("b", 128, 128), 128, 128, 4, "offset", 4, 8)
    assert (lm.col_tiles, lm.arrays) == (2, 2)
    assert lm.converted_cols == 128 + 2  # one reference column per array
    # the same N = 128 with differential_cell fits one array
    assert map_layer(mop("c", 128, 128), 128, 128, 4, "differential_cell", 4, 8).arrays == 1
    # through a target: rram's own scheme is offset
    t = rram("precision.weight_bits=4", "array.bits_per_cell=4")
    assert t.array.signed_scheme == "offset"
    assert map_graph(one_layer_graph(mop("a", 128, 127)), t).arrays == 1
    assert map_graph(one_layer_graph(mop("b", 128, 128)), t).arrays == 2


def test_one_bit_cells():
    # 8-bit signed weights stored as 7-bit magnitudes (the sign is the device polarity):
    # on 1-bit cells slices = ceil(7/1) = 7; differential_cell: 1 device column per slice
    # physical columns = 100 * 7 = 700 -> ceil(700/128) = ceil(5.47) = 6; rows 64 -> 1 row tile
    lm = map_layer(mop("fc", 64, 100), 128, 128, 1, "differential_cell", 8, 8)
    assert (lm.slices, lm.phys_cols, lm.col_tiles, lm.row_tiles, lm.arrays) == (7, 700, 6, 1, 6)
    # differential on 1-bit cells: 7 slices x 2 columns = 14 columns per weight:
    # 100 * 14 = 1400 -> ceil(1400/128) = ceil(10.9) = 11 column tiles -> 11 arrays
    lm = map_layer(mop("fc", 64, 100), 128, 128, 1, "differential", 8, 8)
    assert (lm.slices, lm.phys_cols, lm.arrays) == (7, 1400, 11)
    # offset stores q + Q, all 8 bits: 8 slices + the reference column: 800 columns on 127
    # usable -> ceil(800/127) = ceil(6.3) = 7 arrays; two's complement keeps 8 bits: 800 -> 7
    lm = map_layer(mop("fc", 64, 100), 128, 128, 1, "offset", 8, 8)
    assert (lm.slices, lm.phys_cols, lm.arrays) == (8, 800, 7)
    lm = map_layer(mop("fc", 64, 100), 128, 128, 1, "twos_complement", 8, 8)
    assert (lm.slices, lm.phys_cols, lm.arrays) == (8, 800, 7)
    # on the sram target (1-bit cells, two's complement, 256x256, 8-bit weights):
    # 300 x 200 -> 200 * 8 = 1600 columns -> ceil(1600/256) = ceil(6.25) = 7; ceil(300/256) = 2
    t = load_target("sram")
    assert (t.array.bits_per_cell, t.array.signed_scheme, t.array.rows) == (1, "twos_complement", 256)
    lm = map_graph(one_layer_graph(mop("fc", 300, 200)), t).layer("fc")
    assert (lm.slices, lm.phys_cols, lm.col_tiles, lm.row_tiles, lm.arrays) == (8, 1600, 7, 2, 14)


def test_512x512_arrays():
    # 1000 x 1000, 8-bit weights on 2-bit cells, differential: 1000 * 4 * 2 = 8000 columns
    # column tiles = ceil(8000/512) = ceil(15.625) = 16; row tiles = ceil(1000/512) = 2 -> 32
    lm = map_layer(mop("fc", 1000, 1000), 512, 512, 2, "differential", 8, 8)
    assert (lm.phys_cols, lm.col_tiles, lm.row_tiles, lm.arrays) == (8000, 16, 2, 32)
    # the same on 128 x 128: ceil(8000/128) = 63 (62.5) x ceil(1000/128) = 8 -> 504
    assert map_layer(mop("fc", 1000, 1000), 128, 128, 2, "differential", 8, 8).arrays == 504
    # pcm allows 512 in its search lists: 4-bit weights on 4-bit cells, differential_cell
    # 1000 columns -> ceil(1000/512) = 2; ceil(1000/512) = 2 -> 4 arrays
    t = load_target("pcm", ["array.rows=512", "array.cols=512"])
    lm = map_graph(one_layer_graph(mop("fc", 1000, 1000)), t).layer("fc")
    assert (lm.slices, lm.phys_cols, lm.col_tiles, lm.row_tiles, lm.arrays) == (1, 1000, 2, 2, 4)


def test_depthwise_conv_packing():
    # 32 channels, 3x3 depthwise: K = 9 rows per group, N = 32, groups = 32 (1 column per group)
    # 8-bit on 2-bit cells, differential: block = 9 rows x (1 * 4 * 2) = 8 columns
    # blocks per array = min(128 // 9, 128 // 8) = min(14, 16) = 14 -> ceil(32/14) = 3 arrays
    lm = map_layer(mop("dw", 9, 32, groups=32, kind="conv"), 128, 128, 2, "differential", 8, 8)
    assert lm.packed
    assert lm.phys_cols == 8
    assert lm.blocks_per_array == 14
    assert lm.arrays == 3
    # used cells = 32 blocks * 9 * 8 = 2304; utilization = 2304 / (3 * 128 * 128) = 0.046875
    assert lm.used_cells == 2304
    assert lm.utilization(128, 128) == pytest.approx(2304 / (3 * 128 * 128))
    assert lm.utilization(128, 128) == pytest.approx(0.046875)
    # without packing it would be 32 groups x 1 array each
    assert lm.arrays < 32
    # conversions: 32 columns x 4 slices = 128; driven rows: 32 x 9 = 288
    assert lm.converted_cols == 128
    assert lm.driven_rows == 288


def test_depthwise_conv_imported_from_onnx():
    # the same depthwise conv through the frontend (weight layout by the importer) and a target
    rng = np.random.default_rng(0)
    w = rng.standard_normal((32, 1, 3, 3)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], group=32, kernel_shape=[3, 3],
                            pads=[1, 1, 1, 1], name="dw")
    g = import_model(model([node], [vi("x", [1, 32, 8, 8])], [vi("y", [1, 32, 8, 8])],
                           [init("w", w)]))
    (op,) = g.matrix_ops
    assert (op.rows, op.cols, op.groups) == (9, 32, 32)
    t = rram("array.signed_scheme=differential", "precision.weight_bits=8", "array.bits_per_cell=2")
    m = map_graph(g, t)
    lm = m.layer(op.name)
    assert (lm.packed, lm.blocks_per_array, lm.arrays) == (True, 14, 3)
    assert m.utilization == pytest.approx(2304 / (3 * 128 * 128))


def test_grouped_conv_packing_with_several_columns_per_group():
    # groups = 8, 16 in / 16 out channels per group, 1x1: K = 16, N = 128, 16 columns per group
    # 4-bit on 4-bit cells, differential_cell: block = 16 rows x 16 columns
    # blocks per array = min(128 // 16, 128 // 16) = 8 -> ceil(8/8) = 1 array
    lm = map_layer(mop("g8", 16, 128, groups=8, kind="conv"), 128, 128, 4, "differential_cell", 4, 8)
    assert (lm.packed, lm.blocks_per_array, lm.arrays) == (True, 8, 1)
    # 8 blocks of 16 x 16 = 2048 cells of 16384 -> 1/8
    assert lm.utilization(128, 128) == pytest.approx(0.125)
    # 8-bit on 2-bit cells, differential: block = 16 x (16*4*2 = 128) -> min(8, 1) = 1 per array
    lm = map_layer(mop("g8", 16, 128, groups=8, kind="conv"), 128, 128, 2, "differential", 8, 8)
    assert (lm.packed, lm.blocks_per_array, lm.arrays) == (True, 1, 8)


def test_grouped_conv_groups4_that_does_not_fit_one_array():
    # Conv 256 -> 256 channels, 3x3, groups = 4: per group 64 in x 9 = K = 576 rows, 64 columns
    # 8-bit on 2-bit cells, differential: block = 576 x (64 * 4 * 2 = 512) > one 128 x 128 array
    # -> not packed: per group ceil(576/128) = 5 row tiles x ceil(512/128) = 4 column tiles = 20
    # -> 4 groups x 20 = 80 arrays
    lm = map_layer(mop("gc", 576, 256, groups=4, kind="conv"), 128, 128, 2, "differential", 8, 8)
    assert not lm.packed
    assert (lm.phys_cols, lm.row_tiles, lm.col_tiles, lm.arrays) == (512, 5, 4, 80)
    # used cells: 4 * 576 * 512 = 1179648 of 80 * 16384 = 1310720 -> 0.9
    assert lm.utilization(128, 128) == pytest.approx(0.9)
    # rows alone too many: K = 200 > 128 rows, block 200 x 8 columns (1 column per group)
    # -> per group ceil(200/128) = 2 x 1 -> 4 groups x 2 = 8 arrays
    lm = map_layer(mop("gr", 200, 4, groups=4, kind="conv"), 128, 128, 2, "differential", 8, 8)
    assert (lm.packed, lm.arrays) == (False, 8)
    # columns alone too many: K = 9, 32 columns per group -> 32 * 8 = 256 > 128 columns
    # -> per group 1 x ceil(256/128) = 2 -> 4 x 2 = 8 arrays
    lm = map_layer(mop("gcol", 9, 128, groups=4, kind="conv"), 128, 128, 2, "differential", 8, 8)
    assert (lm.packed, lm.arrays) == (False, 8)


def test_grouped_conv_imported_groups4():
    # ONNX Conv 256 -> 256, 3x3, group=4 through the frontend: K = 64 * 9 = 576, N = 256
    rng = np.random.default_rng(1)
    w = rng.standard_normal((256, 64, 3, 3)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], group=4, kernel_shape=[3, 3], name="gc")
    g = import_model(model([node], [vi("x", [1, 256, 5, 5])], [vi("y", [1, 256, 3, 3])],
                           [init("w", w)]))
    (op,) = g.matrix_ops
    assert (op.rows, op.cols, op.groups, op.vectors) == (576, 256, 4, 9)
    t = rram("array.signed_scheme=differential", "precision.weight_bits=8", "array.bits_per_cell=2")
    assert map_graph(g, t).arrays == 80  # as computed in the test above


# -- compression masks ---------------------------------------------------------------------------
def test_structured_column_pruning_lowers_arrays():
    # 300 x 200, 8/2-bit, differential -> 39 arrays unpruned (see above).
    # Prune 100 of the 200 columns (whole columns False): 100 * 8 = 800 columns -> 7 tiles x 3 = 21
    mask = np.ones((300, 200), dtype=bool)
    mask[:, ::2] = False
    lm = map_layer(mop("fc", 300, 200, mask=mask), 128, 128, 2, "differential", 8, 8)
    assert (lm.cols_logical, lm.phys_cols, lm.col_tiles, lm.arrays) == (100, 800, 7, 21)
    assert lm.arrays < 39
    # and whole rows: keep 128 of 300 rows -> 1 row tile x 7 = 7 arrays
    mask[128:, :] = False
    lm = map_layer(mop("fc", 300, 200, mask=mask), 128, 128, 2, "differential", 8, 8)
    assert (lm.rows_used, lm.row_tiles, lm.arrays) == (128, 1, 7)
    # everything pruned: nothing placed
    lm = map_layer(mop("fc", 300, 200, mask=np.zeros((300, 200), bool)), 128, 128, 2,
                   "differential", 8, 8)
    assert lm.arrays == 0 and lm.used_cells == 0 and lm.converted_cols == 0


def test_element_pruning_keeps_arrays():
    # 90 % of the weights pruned at random, but every row and column keeps one weight:
    # the crossbar footprint (and the array count) cannot shrink
    rng = np.random.default_rng(3)
    mask = rng.random((300, 200)) < 0.1
    mask[np.arange(300), np.arange(300) % 200] = True
    assert mask.any(axis=0).all() and mask.any(axis=1).all()
    assert mask.mean() < 0.2
    full = map_layer(mop("fc", 300, 200), 128, 128, 2, "differential", 8, 8)
    lm = map_layer(mop("fc", 300, 200, mask=mask), 128, 128, 2, "differential", 8, 8)
    assert lm.arrays == full.arrays == 39
    assert (lm.row_tiles, lm.col_tiles) == (3, 13)


def test_grouped_column_pruning_removes_whole_groups():
    # depthwise 32 channels (block 9 x 8, 14 blocks per array, 3 arrays unpruned, see above).
    # Prune 16 channels (their whole columns False): a depthwise channel is a whole group, so
    # 16 blocks are left -> ceil(16/14) = 2 arrays
    mask = np.ones((9, 32), dtype=bool)
    mask[:, 16:] = False
    lm = map_layer(mop("dw", 9, 32, groups=32, kind="conv", mask=mask), 128, 128, 2,
                   "differential", 8, 8)
    assert (lm.rows_used, lm.cols_logical, lm.phys_cols) == (9, 16, 8)
    assert (lm.packed, lm.blocks_per_array, lm.arrays) == (True, 14, 2)
    # 16 blocks of 9 x 8 = 1152 cells; 16 columns x 4 slices converted; 16 x 9 rows driven
    assert lm.used_cells == 1152
    assert lm.converted_cols == 64
    assert lm.driven_rows == 144
    # not packed: groups = 4, K = 200 rows per group, 1 column per group -> 2 arrays per group
    # = 8 arrays; prune group 3's column -> 3 groups left x 2 = 6 arrays
    mask = np.ones((200, 4), dtype=bool)
    mask[:, 3] = False
    full = map_layer(mop("gr", 200, 4, groups=4, kind="conv"), 128, 128, 2, "differential", 8, 8)
    lm = map_layer(mop("gr", 200, 4, groups=4, kind="conv", mask=mask), 128, 128, 2,
                   "differential", 8, 8)
    assert (full.arrays, lm.arrays) == (8, 6)
    assert lm.used_cells == 3 * 200 * 8


def test_grouped_uneven_pruning_block_holds_the_widest_group():
    # groups = 4, K = 9, 32 columns per group (N = 128); 4-bit on 4-bit cells, differential_cell
    # kept columns per group: 32, 8, 8, 0 -> 3 live groups; widest = 32 -> block 9 x 32
    # blocks per array = min(128 // 9, 128 // 32) = min(14, 4) = 4 -> ceil(3/4) = 1 array
    # (the mean, 48 / 3 = 16 columns, would give a block too narrow for group 0)
    mask = np.ones((9, 128), dtype=bool)
    mask[:, 32 + 8:64] = False
    mask[:, 64 + 8:96] = False
    mask[:, 96:] = False
    lm = map_layer(mop("g4", 9, 128, groups=4, kind="conv", mask=mask), 128, 128, 4,
                   "differential_cell", 4, 8)
    assert (lm.groups, lm.cols_logical, lm.phys_cols) == (3, 48, 32)
    assert (lm.packed, lm.blocks_per_array, lm.arrays) == (True, 4, 1)
    # 8-bit on 2-bit cells, differential: 7-bit magnitudes -> ceil(7/2) = 4 slices x 2 columns;
    # widest block 32 * 4 * 2 = 256 columns > 128 -> not packed; each group is tiled on its own
    # kept columns: group 0 ceil(256/128) = 2 column tiles, groups 1 and 2 (8 columns:
    # 8 * 8 = 64 <= 128) 1 each -> 2 + 1 + 1 = 4 arrays
    lm = map_layer(mop("g4", 9, 128, groups=4, kind="conv", mask=mask), 128, 128, 2,
                   "differential", 8, 8)
    assert (lm.packed, lm.phys_cols, lm.col_tiles, lm.arrays) == (False, 256, 2, 4)
    assert lm.used_cells == 9 * (256 + 64 + 64)


@st.composite
def grouped_layer_and_nested_masks(draw):
    groups = draw(st.sampled_from([1, 2, 3, 4, 8, 16, 32]))
    cpg = draw(st.integers(1, 40))
    k = draw(st.integers(1, 300))
    n = groups * cpg
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    keep1 = rng.random(n) < draw(st.floats(0.0, 1.0))
    keep2 = keep1 & (rng.random(n) < draw(st.floats(0.0, 1.0)))  # prunes a superset
    rows, cols = draw(st.sampled_from([(64, 64), (128, 128), (256, 256), (128, 64)]))
    cell = draw(st.sampled_from([1, 2, 4]))
    wbits = draw(st.sampled_from([4, 8]))
    scheme = draw(st.sampled_from(SCHEMES))
    return k, n, groups, keep1, keep2, rows, cols, cell, wbits, scheme


@settings(max_examples=150, deadline=None)
@given(grouped_layer_and_nested_masks())
def test_column_pruning_never_adds_arrays_and_every_group_fits(case):
    k, n, groups, keep1, keep2, rows, cols, cell, wbits, scheme = case
    mk = lambda keep: np.broadcast_to(keep, (k, n)).copy()
    full = map_layer(mop("l", k, n, groups=groups), rows, cols, cell, scheme, wbits, 8)
    l1 = map_layer(mop("l", k, n, groups=groups, mask=mk(keep1)), rows, cols, cell, scheme, wbits, 8)
    l2 = map_layer(mop("l", k, n, groups=groups, mask=mk(keep2)), rows, cols, cell, scheme, wbits, 8)
    for a, b in ((full, l1), (l1, l2)):
        assert b.arrays <= a.arrays
        assert b.used_cells <= a.used_cells
        assert b.converted_cols <= a.converted_cols
        assert b.driven_rows <= a.driven_rows
    slices = math.ceil(stored_bits(wbits, scheme) / cell)
    usable = cols - 1 if scheme == "offset" else cols
    for keep, lm in ((keep1, l1), (keep2, l2)):
        per_group = keep.reshape(groups, -1).sum(axis=1)
        if groups > 1:
            assert lm.groups == int((per_group > 0).sum())
        assert lm.cols_logical == int(keep.sum())
        if lm.arrays:
            # the widest kept group fits the block, and the blocks fit the arrays
            assert lm.phys_cols >= per_group.max() * slices * column_devices(scheme)
            if lm.packed:
                assert lm.blocks_per_array * lm.rows_used <= rows
                assert lm.blocks_per_array * lm.phys_cols <= usable
                assert lm.arrays * lm.blocks_per_array >= lm.groups
            else:
                assert lm.col_tiles * usable >= lm.phys_cols
                assert lm.row_tiles * rows >= lm.rows_used
        else:
            assert not keep.any()


# -- replication ---------------------------------------------------------------------------------
def test_replication_multiplies_arrays():
    t = rram("array.signed_scheme=differential", "precision.weight_bits=8", "array.bits_per_cell=2")
    g = one_layer_graph(mop("fc", 300, 200, vectors=10))
    m = map_graph(g, t, replicate={"f*": 3})
    lm = m.layer("fc")
    assert (lm.arrays, lm.replicas, lm.total_arrays, m.arrays) == (39, 3, 117, 117)
    with pytest.raises(MappingError):
        map_graph(g, t, replicate={"fc": 0})


# -- larger arrays never need more arrays ---------------------------------------------------------
SCHEMES = ("differential", "differential_cell", "offset", "twos_complement")


@st.composite
def layer_and_sizes(draw):
    target = draw(st.sampled_from(["pcm", "rram", "sram"]))
    search = load_target(target).search
    r1, r2 = sorted(draw(st.lists(st.sampled_from(list(search.rows)), min_size=2, max_size=2)))
    c1, c2 = sorted(draw(st.lists(st.sampled_from(list(search.cols)), min_size=2, max_size=2)))
    groups = draw(st.sampled_from([1, 1, 2, 4, 8, 16]))
    k = draw(st.integers(1, 1200))
    n_per_group = draw(st.integers(1, 600 // groups + 1))
    cell = draw(st.sampled_from(list(search.bits_per_cell)))
    wbits = draw(st.sampled_from(list(search.weight_bits)))
    scheme = draw(st.sampled_from(SCHEMES))
    return (r1, c1), (r2, c2), k, n_per_group * groups, groups, cell, wbits, scheme


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layer_and_sizes())
def test_larger_arrays_never_need_more_arrays(case):
    (r1, c1), (r2, c2), k, n, groups, cell, wbits, scheme = case
    op = mop("l", k, n, groups=groups)
    small = map_layer(op, r1, c1, cell, scheme, wbits, 8)
    big = map_layer(op, r2, c2, cell, scheme, wbits, 8)
    assert big.arrays <= small.arrays, (small, big)
    # both hold every weight cell: arrays x usable cells >= cells needed
    usable = lambda c: c - 1 if scheme == "offset" else c
    need = k * n * math.ceil(stored_bits(wbits, scheme) / cell) * column_devices(scheme)
    for lm, r, c in ((small, r1, c1), (big, r2, c2)):
        assert lm.arrays * r * usable(c) >= need
        assert 0 < lm.utilization(r, c) <= 1.0 + 1e-12


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["pcm", "rram", "sram"]), st.integers(1, 700), st.integers(1, 700))
def test_larger_arrays_through_targets(target, k, n):
    t = load_target(target)
    rows, cols = sorted(t.search.rows), sorted(t.search.cols)
    g = one_layer_graph(mop("l", k, n))
    counts = [map_graph(g, t.replace_paths({"array.rows": r, "array.cols": c})).arrays
              for r, c in zip(rows, cols)]
    assert counts == sorted(counts, reverse=True), counts


# -- overflow ------------------------------------------------------------------------------------
def big_gemm_case(target: str):
    """A 4096 x 4096 Gemm on a chip too small for it, and the hand-computed array counts."""
    if target == "rram":
        # 8-bit on 2-bit cells = 4 slices, offset: 4096 * 4 = 16384 columns on 127 usable
        # -> ceil(16384/127) = ceil(129.01) = 130 column tiles x ceil(4096/128) = 32 row tiles
        # = 4160 arrays; chip with 1 tile: 8 arrays/core x 12 cores x 1 tile = 96 arrays
        t = rram("precision.weight_bits=8", "hierarchy.tiles_per_chip=1")
        return t, 4160, 96
    # pcm: 4-bit on 4-bit cells, differential_cell: 4096 columns / 256 = 16 x 4096 / 256 = 16
    # = 256 arrays on a 64-core chip
    return load_target("pcm"), 256, 64


@pytest.mark.parametrize("target", ["rram", "pcm"])
def test_overflow_is_reported(target):
    t, arrays, chip = big_gemm_case(target)
    g = one_layer_graph(mop("big", 4096, 4096, vectors=1))
    m = map_graph(g, t, overflow="chips")
    assert m.arrays == arrays
    assert m.chip_arrays == chip
    assert m.overflow_arrays == arrays - chip > 0
    assert m.chips == math.ceil(arrays / chip)
    over = [w for w in m.warnings if "over" in w and str(arrays - chip) in w]
    assert over, m.warnings  # the warning says by how much
    mr = map_graph(g, t, overflow="reload")
    assert mr.overflow_arrays == arrays - chip and mr.chips == 1
    assert any(str(arrays - chip) in w for w in mr.warnings)
    with pytest.raises(MappingError) as ei:
        map_graph(g, t, overflow="error")
    msg = str(ei.value)
    assert str(arrays - chip) in msg and str(arrays) in msg and str(chip) in msg


def test_no_overflow_no_warning():
    t = rram("precision.weight_bits=8")
    m = map_graph(one_layer_graph(mop("fc", 128, 127 // 4 * 4)), t, overflow="error")
    assert m.overflow_arrays == 0 and m.chips == 1
    assert not any("chip" in w for w in m.warnings)


def test_placement_is_consecutive():
    t = rram("array.signed_scheme=differential", "precision.weight_bits=8", "array.bits_per_cell=2")
    a = mop("a", 300, 200, inp="x", out="h")   # 39 arrays (above)
    b = mop("b", 200, 10, inp="h", out="y")    # 10*8 = 80 cols -> 1 col tile x 2 row tiles = 2
    g = Graph("g", (a, b), {"x": TensorInfo("x", (1, 300)), "h": TensorInfo("h", (1, 200)),
                            "y": TensorInfo("y", (1, 10))}, ("x",), ("y",))
    m = map_graph(g, t)
    assert [(lm.first_array, lm.total_arrays) for lm in m.layers] == [(0, 39), (39, 2)]
    assert m.arrays == 41
