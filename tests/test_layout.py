"""One physical layout: the tiles the cost model prices, the program image's blocks and the
simulation's ADC row groups are the same list; slices and arrays by hand for every signed
scheme; a weight read by several nodes placed once; weight reload serialized.

Every expected count is computed by hand in the comments or, in the property test, from the
program image's own block descriptions (placement.json), never from the mapper's counts.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper
from onnx_builders import init, model, vi

from imccompile.compiler import compile_graph
from imccompile.outputs import build_report
from imccompile.frontend import import_model
from imccompile.ir import Compression, Graph, MatrixOp, TensorInfo
from imccompile.layout import map_layer
from imccompile.passes import run_pipeline
from imccompile.program import files as program_files
from imccompile.simulate import SimOptions, adc_tiles, calibrate, load_data
from imccompile.spec import load_target

SCHEMES = ("differential", "differential_cell", "offset", "twos_complement")


# -- the same list in all three ----------------------------------------------------------------
def _mask(rng: np.random.Generator, k: int, n: int, kind: str, block: tuple[int, int]):
    if kind == "none":
        return None
    m = np.ones((k, n), bool)
    if kind == "element":
        m = rng.random((k, n)) > 0.4
    elif kind == "row":
        m[rng.random(k) < 0.5] = False
    elif kind == "column":
        m[:, rng.random(n) < 0.5] = False
    else:  # block: array-sized blocks of W removed
        br, bc = block
        for r in range(0, k, br):
            for c in range(0, n, bc):
                if rng.random() < 0.5:
                    m[r:r + br, c:c + bc] = False
    if not m.any():
        m[0, 0] = True
    return m


def _graph(k: int, n: int, groups: int, mask, seed: int) -> Graph:
    """A batched constant MatMul: x (groups, 2, K) @ W (groups, K, n/groups)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((k, n)).astype(np.float32) + 0.1
    if mask is not None:
        w = np.where(mask, w, np.float32(0))
    npg = n // groups
    shape = [groups, k, npg] if groups > 1 else [k, n]
    op = MatrixOp("l", "matmul", ("x",), ("y",), w, None, groups, 2,
                  attrs={"weight_shape": shape}, compression=Compression(mask=mask))
    xs = (groups, 2, k) if groups > 1 else (2, k)
    ys = (groups, 2, npg) if groups > 1 else (2, n)
    return Graph("g", (op,), {"x": TensorInfo("x", xs), "y": TensorInfo("y", ys)}, ("x",), ("y",))


@st.composite
def layouts(draw):
    scheme = draw(st.sampled_from(SCHEMES))
    rows, cols = draw(st.sampled_from([(32, 32), (64, 64), (64, 32), (128, 128)]))
    cell = 1 if scheme == "twos_complement" else draw(st.sampled_from([1, 2, 4]))
    wbits = draw(st.sampled_from([2, 4, 8]))
    groups = draw(st.sampled_from([1, 1, 2, 3, 8]))
    k = draw(st.integers(1, 150))
    n = groups * draw(st.integers(1, 24))
    kind = draw(st.sampled_from(["none", "element", "row", "column", "block"]))
    replicas = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31 - 1))
    return scheme, rows, cols, cell, wbits, groups, k, n, kind, replicas, seed


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layouts())
def test_priced_tiles_image_blocks_and_adc_row_groups_are_one_list(case):
    scheme, rows, cols, cell, wbits, groups, k, n, kind, replicas, seed = case
    t = load_target("rram", [f"array.signed_scheme={scheme}", f"array.rows={rows}",
                             f"array.cols={cols}", f"array.bits_per_cell={cell}",
                             f"precision.weight_bits={wbits}", "precision.input_bits=4",
                             f"search.rows=[{rows}]", f"search.cols=[{cols}]",
                             f"search.bits_per_cell=[{cell}]", f"search.weight_bits=[{wbits}]",
                             "search.input_bits=[4]"])
    rng = np.random.default_rng(seed)
    g = _graph(k, n, groups, _mask(rng, k, n, kind, (rows, max(1, cols // 8))), seed)
    op = g.matrix_ops[0]
    res = compile_graph(g, t, replicate={"l": replicas})
    lm = res.mapping.layer("l")
    placement = json.loads(program_files(res)["placement.json"])
    arrays = [a for a in placement["arrays"] if a["layer"] == "l"]
    assert len(arrays) == lm.total_arrays == res.mapping.arrays
    one = [a for a in arrays if a["replica"] == 0]
    blocks = [b for a in one for b in a["blocks"]]

    def expand(runs):
        return [i for lo, hi in runs for i in range(lo, hi)]

    # 1. the priced tiles: the cost model's counts are the image's, block by block
    cdev = 2 if scheme == "differential" else 1
    used = sum((b["array_rows"][1] - b["array_rows"][0]) * (b["array_cols"][1] - b["array_cols"][0])
               for b in blocks)
    driven = sum(b["array_rows"][1] - b["array_rows"][0] for b in blocks)
    conv = sum(len({p // cdev for p in range(*b["layout_cols"])}) for b in blocks)
    if scheme == "offset":
        used += driven  # the reference column's cells on the driven rows
        conv += len(one)  # and its conversion
    assert (lm.arrays, lm.used_cells, lm.driven_rows, lm.converted_cols) == \
        (len(one), used, driven, conv)
    energy = res.cost.layer("l").energy
    reads = op.vectors * math.ceil(4 / t.dac.bits)
    assert energy["adc"] == pytest.approx(reads * conv * t.adc.energy_j())
    assert energy["dac"] == pytest.approx(reads * driven * t.dac.energy_per_conversion_j)
    # 2. the image's row groups: (group, row tile) -> the W rows its arrays sum over
    image_groups: dict[tuple[int, int], list[int]] = {}
    for b in blocks:
        rows_b = expand(b["weight_rows"])
        prev = image_groups.setdefault((b["group"], b["row_tile"]), rows_b)
        assert prev == rows_b  # every column tile of a row tile sums the same rows
    # 3. the simulation's ADC row groups: the tiles the emitter zeroes rows outside of
    tiles = adc_tiles(op, lm)
    kept = op.compression.mask.any(axis=1) if op.compression.mask is not None else None
    npg = n // groups
    sim_groups: dict[tuple[int, int], list[int]] = {}
    for ti, tile in enumerate(tiles):
        for grp, lo, hi in tile:
            rows_t = range(lo, hi)
            if op.compression.mask is not None:
                gmask = op.compression.mask[:, grp * npg:(grp + 1) * npg].any(axis=1)
                rows_t = [r for r in rows_t if gmask[r]]
            sim_groups[(grp, ti)] = list(rows_t)
    if image_groups:
        assert sorted(sim_groups) == sorted((gr, sorted({rt for (g2, rt) in image_groups
                                                         if g2 == gr}).index(rt))
                                            for gr, rt in image_groups)
        by_group_tile = {}
        for gr in {gr for gr, _ in image_groups}:
            for i, rt in enumerate(sorted(rt for g2, rt in image_groups if g2 == gr)):
                by_group_tile[(gr, i)] = image_groups[(gr, rt)]
        assert sim_groups == by_group_tile
    else:  # nothing placed: one all-zero product
        assert kept is not None and len(tiles) == 1
    # the calibration quantizes one ADC range per tile
    x = np.random.default_rng(1).standard_normal((3,) + g.tensors["x"].shape).astype(np.float32)
    cal = calibrate(g, t, load_data({"x": x}, g), SimOptions(noise=False), res.mapping)
    assert len(cal.adc["l"]) == len(tiles)


def _gemm_onnx(k: int, n: int, seed: int = 0):
    w = np.random.default_rng(seed).standard_normal((k, n)).astype(np.float32) + 0.05
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")]
    return model(nodes, [vi("x", [1, k])], [vi("y", [1, n])], [init("w", w)])


def test_row_pruned_gemm_on_rram_has_one_row_tile_everywhere():
    # 256 x 64 Gemm, half its rows pruned: 128 kept rows on 128-row rram arrays = 1 row tile
    t = load_target("rram")
    g = import_model(_gemm_onnx(256, 64))
    pruned, _ = run_pipeline(g, "prune{ratio=0.5,granularity=row}", target=t)
    op = pruned.matrix_ops[0]
    assert int(op.compression.mask.any(axis=1).sum()) == 128
    res = compile_graph(pruned, t)
    lm = res.mapping.layer("fc")
    assert lm.row_tiles == 1  # priced
    placement = json.loads(program_files(res)["placement.json"])
    assert {b["row_tile"] for a in placement["arrays"] for b in a["blocks"]} == {0}  # image
    assert len(adc_tiles(op, lm)) == 1  # simulated
    x = np.random.default_rng(0).standard_normal((4, 1, 256)).astype(np.float32)
    cal = calibrate(pruned, t, load_data({"x": x}, pruned), SimOptions(), res.mapping)
    assert len(cal.adc["fc"]) == 1


# -- slices and arrays by hand, every scheme ---------------------------------------------------
def _ones(k: int, n: int) -> MatrixOp:
    return MatrixOp("fc", "gemm", ("x",), ("y",), np.broadcast_to(np.float32(1), (k, n)), None, 1, 1)


@pytest.mark.parametrize("scheme,slices,per_weight,arrays", [
    # 8-bit weights on 1-bit cells, a 64 x 100 layer on 128 x 128 arrays:
    # differential: 7-bit magnitude -> 7 slices x 2 device columns = 14 columns per weight;
    #   100 * 14 = 1400 columns -> ceil(1400 / 128) = 11 arrays
    ("differential", 7, 14, 11),
    # differential_cell: 7 slices, both polarities in the cell: 700 columns -> ceil(5.47) = 6
    ("differential_cell", 7, 7, 6),
    # offset: q + Q takes all 8 bits -> 8 slices, 800 columns on 127 usable (one reference
    #   column per array) -> ceil(6.30) = 7
    ("offset", 8, 8, 7),
    # two's complement: 8 bits -> 8 slices, 800 columns on 128 -> ceil(6.25) = 7
    ("twos_complement", 8, 8, 7),
])
def test_eight_bit_weights_on_one_bit_cells(scheme, slices, per_weight, arrays):
    lm = map_layer(_ones(64, 100), 128, 128, 1, scheme, 8, 8)
    assert (lm.slices, lm.per_col, lm.phys_cols, lm.arrays) == \
        (slices, per_weight, 100 * per_weight, arrays)
    # every slice is a full 0/1 digit on 1-bit cells: all at g_max
    assert lm.full_scale == (1,) * slices


@pytest.mark.parametrize("scheme,bits,cell,full", [
    # 4-bit weights, Q = 7, on 4-bit cells (15 levels): a 3-bit magnitude, one slice whose
    # largest digit is 7 -> 7 is programmed at g_max (not 7/15 of it)
    ("differential_cell", 4, 4, (7,)),
    # 4-bit on 2-bit cells (3 levels): ceil(3/2) = 2 slices; top slice holds 7 >> 2 = 1
    ("differential", 4, 2, (3, 1)),
    # offset: q + Q in 0..14, 4 bits -> 2 slices of 2 bits; top digit 14 >> 2 = 3
    ("offset", 4, 2, (3, 3)),
    # 8-bit (Q = 127) on 4-bit cells, differential: 7 bits -> 2 slices; top 127 >> 4 = 7
    ("differential", 8, 4, (15, 7)),
])
def test_largest_code_at_g_max(scheme, bits, cell, full):
    assert map_layer(_ones(8, 4), 128, 128, cell, scheme, bits, 8).full_scale == full


# -- a weight read by several nodes is placed once ----------------------------------------------
def _chain(uses: int, shared: bool):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((300, 300)).astype(np.float32)
    nodes, inits = [], [init("w", w)]
    x = "x"
    for i in range(uses):
        name = "w" if shared else f"w{i}"
        if not shared:
            inits.append(init(name, w.copy() if i == 0 else rng.standard_normal((300, 300))
                              .astype(np.float32)))
        nodes.append(helper.make_node("MatMul", [x, name], [f"h{i}"], name=f"mm{i}"))
        x = f"h{i}"
    if not shared:
        inits = inits[1:]
    return model(nodes, [vi("x", [1, 300])], [vi(x, [1, 300])], inits)


def test_one_weight_read_by_three_matmuls_is_placed_once():
    t = load_target("pcm")
    one = compile_graph(import_model(_chain(1, True)), t)
    three = compile_graph(import_model(_chain(3, True)), t)
    apart = compile_graph(import_model(_chain(3, False)), t)
    # pcm: 300 x 300 4-bit weights, one slice per weight in the cell: ceil(300/256)^2 = 4 arrays
    assert one.mapping.arrays == 4
    assert three.mapping.arrays == 4 and apart.mapping.arrays == 12
    assert three.cost.area_mm2 == pytest.approx(one.cost.area_mm2)
    assert apart.cost.area_mm2 > 2.9 * one.cost.area_mm2
    lms = [three.mapping.layer(f"mm{i}") for i in range(3)]
    assert [lm.shares for lm in lms] == [None, "mm0", "mm0"]
    assert [lm.placed_arrays for lm in lms] == [4, 0, 0]
    # every use is charged its reads: array energy and conversions of three reads
    for comp in ("array", "adc", "dac"):
        assert three.cost.energy_breakdown_j[comp] == pytest.approx(
            3 * one.cost.energy_breakdown_j[comp])
    # the uses take turns on the same arrays: the pipeline period is their sum
    lat = [three.cost.layer(f"mm{i}").latency_s for i in range(3)]
    assert three.schedule.period_s == pytest.approx(sum(lat))
    assert apart.schedule.period_s == pytest.approx(max(
        apart.cost.layer(f"mm{i}").latency_s for i in range(3)))
    # the report counts the arrays once and names the sharing
    rep = build_report(three)
    assert rep["totals"]["arrays"] == 4
    assert [lay.get("shares") for lay in rep["layers"]] == [None, "mm0", "mm0"]
    assert any("placed once" in w and "mm0 is also read by mm1, mm2" in w for w in rep["warnings"])


def test_uses_compressed_differently_are_placed_apart():
    t = load_target("pcm")
    g = import_model(_chain(2, True))
    g2, _ = run_pipeline(g, "prune{ratio=0.5,granularity=column,match=mm1}", target=t)
    res = compile_graph(g2, t)
    assert [res.mapping.layer(n).shares for n in ("mm0", "mm1")] == [None, None]
    assert any("compressed differently" in w for w in res.mapping.warnings)


# -- weight reload runs serially -----------------------------------------------------------------
def test_reload_on_a_one_array_chip_by_hand():
    # rram with one array per chip: 128 x 128 cells, 16-bit weights on 2-bit cells (8 slices,
    # offset: 127 usable columns), 16-bit inputs on 1-bit DACs -> 16 input cycles.
    t = load_target("rram", ["hierarchy.arrays_per_core=1", "hierarchy.cores_per_tile=1",
                             "hierarchy.tiles_per_chip=1"])
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((200, 30)).astype(np.float32)
    w2 = rng.standard_normal((30, 10)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
             helper.make_node("MatMul", ["h", "w2"], ["y"], name="fc2")]
    m = model(nodes, [vi("x", [1, 200])], [vi("y", [1, 10])], [init("w1", w1), init("w2", w2)])
    res = compile_graph(import_model(m), t, overflow="reload")
    # fc1: K = 200 -> 2 row tiles (128 + 72 rows); 30 * 8 = 240 columns -> ceil(240/127) = 2
    #   column tiles -> 4 arrays; fc2: K = 30, 10 * 8 = 80 columns -> 1 array. 5 > 1: nothing
    #   fits with room for the largest layer, so both run on a pool of the chip's 1 array.
    fc1, fc2 = res.mapping.layer("fc1"), res.mapping.layer("fc2")
    assert (fc1.arrays, fc2.arrays) == (4, 1)
    assert res.mapping.reload.pool_arrays == 1 and not res.mapping.reload.resident
    read = 100e-9  # rram array read; the 1 vector x 16 cycles of a round are read-bound:
    # conversions per array <= 128 / 128 ADC columns x 0.78 ns each = 100 ns at most
    t_row = 1e-6  # write latency per row
    compute = {"fc1": 4 * 1 * 16 * read, "fc2": 1 * 1 * 16 * read}
    # every array is written row by row before its round: fc1 128 + 128 + 72 + 72 rows, fc2 30
    writes = {"fc1": (128 + 128 + 72 + 72) * t_row, "fc2": 30 * t_row}
    out_bytes = {"fc1": 30 * 2, "fc2": 10 * 2}  # 16-bit outputs
    in_bytes = {"fc1": 200 * 2, "fc2": 30 * 2}
    # data movement: buffer bytes at 2.67 B/cycle x 1.28 GHz on the pool's one core, and every
    # 16-bit weight code read from DRAM each inference (100 ns + bytes / 17.1 GB/s)
    weight_bytes = {"fc1": 200 * 30 * 2, "fc2": 30 * 10 * 2}
    for name in ("fc1", "fc2"):
        move = (2.34e-9 + out_bytes[name] / 5.12e9
                + (in_bytes[name] + out_bytes[name]) / (2.67 * 1.28e9)
                + 1e-7 + weight_bytes[name] / 1.71e10)
        lat = compute[name] + writes[name] + move
        assert res.cost.layer(name).latency_s == pytest.approx(lat)
        assert res.cost.layer(name).traffic.dram_bytes == weight_bytes[name]
    total = sum(compute.values()) + sum(writes.values())
    assert res.schedule.latency_s >= total
    assert res.schedule.period_s >= total  # the next inference waits for the pool
    # every cell of both layers written every inference: 200 x 240 + 30 x 80 weight cells and
    # the reference cells of the driven rows (fc1: 400 rows over its 4 arrays; fc2: 30)
    cells = 200 * 240 + 30 * 80 + 400 + 30
    assert res.cost.energy_breakdown_j["write"] == pytest.approx(cells * 1e-11)
    # the same model that fits keeps everything resident: no writes, pipelined layers
    fits = compile_graph(import_model(m), load_target("rram"), overflow="reload")
    assert fits.mapping.reload is None and fits.cost.energy_breakdown_j["write"] == 0


def test_reload_keeps_a_resident_prefix():
    # 6 arrays on a chip of 5: fc1 (4 arrays) + fc2 (1) + fc3 (1). The longest prefix that
    # leaves a pool for the largest remaining layer: fc1 + fc2 resident (5 - 5 = 0 left) fails;
    # fc1 resident leaves a pool of 1 for fc2 and fc3 (1 array each).
    t = load_target("rram", ["hierarchy.arrays_per_core=5", "hierarchy.cores_per_tile=1",
                             "hierarchy.tiles_per_chip=1"])
    rng = np.random.default_rng(0)
    shapes = [(200, 30), (30, 10), (10, 10)]
    nodes, inits, x = [], [], "x"
    for i, (k, n) in enumerate(shapes):
        inits.append(init(f"w{i}", rng.standard_normal((k, n)).astype(np.float32)))
        nodes.append(helper.make_node("MatMul", [x, f"w{i}"], [f"h{i}"], name=f"fc{i + 1}"))
        x = f"h{i}"
    m = model(nodes, [vi("x", [1, 200])], [vi(x, [1, 10])], inits)
    res = compile_graph(import_model(m), t, overflow="reload")
    plan = res.mapping.reload
    assert plan.resident == {"fc1"} and plan.pool_arrays == 1
    assert res.cost.layer("fc1").energy["write"] == 0
    assert res.cost.layer("fc2").energy["write"] > 0 and res.cost.layer("fc3").energy["write"] > 0
    pool = res.cost.layer("fc2").latency_s + res.cost.layer("fc3").latency_s
    assert res.schedule.period_s == pytest.approx(max(pool, res.cost.layer("fc1").latency_s))


def test_uses_of_a_shared_weight_read_the_same_noisy_devices():
    """One set of devices holds a shared weight: its uses see one noise draw, not three."""
    from onnx import numpy_helper

    from imccompile.simulate import simulation_model

    t = load_target("pcm")
    g = import_model(_chain(3, True))
    x = np.random.default_rng(0).standard_normal((4, 1, 300)).astype(np.float32)
    data = load_data({"x": x}, g)

    def noise_factors(graph):
        """Per use, emitted noisy weights / emitted noise-free weights (the DAC and ADC steps
        each use folds into its weights cancel)."""
        res = compile_graph(graph, t)
        cal = calibrate(graph, t, data, SimOptions(), res.mapping)
        out = {}
        for noise in (True, False):
            sim = simulation_model(graph, t, cal, SimOptions(noise=noise), seed=0,
                                   mapping=res.mapping)
            for tensor in sim.graph.initializer:
                for i in range(3):
                    if tensor.name.startswith(f"mm{i}_W"):
                        out.setdefault((i, noise), []).append(numpy_helper.to_array(tensor))
        ratios = {}
        for i in range(3):
            noisy = np.concatenate([a.ravel() for a in out[(i, True)]])
            ideal = np.concatenate([a.ravel() for a in out[(i, False)]])
            keep = np.abs(ideal) > 1e-6
            ratios[i] = noisy[keep] / ideal[keep]
        return ratios

    shared = noise_factors(g)
    assert np.std(shared[0]) > 1e-3  # there is noise
    for i in (1, 2):
        np.testing.assert_allclose(shared[i], shared[0], rtol=1e-5)
    apart = noise_factors(g.with_ops([o.replace(weight_id=None) if isinstance(o, MatrixOp) else o
                                      for o in g.ops]))
    assert np.abs(apart[1] - apart[0]).max() > 1e-2  # separate devices, separate draws


def test_search_knobs_are_tied_across_uses_of_one_weight():
    """A trial never splits a shared weight: its readers share one set of knobs."""
    from imccompile.errors import UsageError
    from imccompile.space import build_space, point_to_compile

    t = load_target("pcm")
    g = import_model(_chain(3, True))
    space = build_space(g, t)
    assert space.layers == ("mm0",) and space.tied == {"mm0": ("mm0", "mm1", "mm2")}
    assert {k.name for k in space.knobs} >= {"weight_bits:mm0", "prune:mm0"}
    assert not any(k.name.endswith(("mm1", "mm2")) for k in space.knobs)
    text, _, _ = point_to_compile({"weight_bits:mm0": 2, "prune:mm0": 0.5,
                                   "granularity": "column"}, space.layers, space.tied)
    compressed, _ = run_pipeline(g, text, target=t)
    res = compile_graph(compressed, t)
    # the three readers got the same compression, so they still share one set of arrays
    assert [res.mapping.layer(f"mm{i}").shares for i in range(3)] == [None, "mm0", "mm0"]
    assert {op.compression.weight_bits for op in compressed.matrix_ops} == {2}
    with pytest.raises(UsageError, match=r"'mm2' reads the same weight as 'mm0'.*weight_bits:mm0"):
        build_space(g, t, fix={"weight_bits:mm2": 4})
    apart = build_space(import_model(_chain(3, False)), t)
    assert apart.layers == ("mm0", "mm1", "mm2")


def test_tied_weights_through_an_identity_are_placed_once():
    """Exporters tie weights with Identity nodes on one initializer: still one tensor."""
    w = np.random.default_rng(5).standard_normal((64, 64)).astype(np.float32)
    nodes = [helper.make_node("Identity", ["w"], ["w_tied"], name="tie"),
             helper.make_node("MatMul", ["x", "w"], ["h"], name="mm0"),
             helper.make_node("MatMul", ["h", "w_tied"], ["y"], name="mm1")]
    m = model(nodes, [vi("x", [1, 64])], [vi("y", [1, 64])], [init("w", w)])
    res = compile_graph(import_model(m), load_target("pcm"))
    assert res.mapping.layer("mm1").shares == "mm0" and res.mapping.arrays == 1
