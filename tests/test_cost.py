"""Cost model: published anchors (ISAAC ADC share, HERMES peak), hand-computed layer energies,
monotonicity properties, overflow policies, report sanity over the examples, and the CLI."""

from __future__ import annotations

import glob
import itertools
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imccompile import cost
from imccompile.cli import main as cli_main
from imccompile.compiler import compile as compile_model
from imccompile.compiler import compile_graph
from imccompile.outputs import build_report, to_json
from imccompile.ir import Compression, Graph, MatrixOp, TensorInfo
from imccompile.spec import bundled_targets, load_target

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "examples", "*.onnx")))
TARGETS = ("pcm", "rram", "sram")


def mop(name: str, k: int, n: int, *, groups: int = 1, vectors: int = 1, inp: str = "x",
        out: str | None = None, mask: np.ndarray | None = None) -> MatrixOp:
    w = np.broadcast_to(np.float32(1.0), (k, n))
    return MatrixOp(name, "gemm", (inp,), (out or f"{name}_out",), w, None, groups, vectors,
                    compression=Compression(mask=mask))


def one_layer_graph(op: MatrixOp) -> Graph:
    tensors = {op.inputs[0]: TensorInfo(op.inputs[0], (1, op.rows * op.groups)),
               op.outputs[0]: TensorInfo(op.outputs[0], (1, op.cols))}
    return Graph("g", (op,), tensors, op.inputs, op.outputs)


def anchor(t, metric: str, scope: str | None = None):
    found = [a for a in t.anchors if a.metric == metric and a.calibrated
             and (scope is None or a.scope == scope)]
    assert len(found) == 1, found
    return found[0]


# -- published anchors ---------------------------------------------------------------------------
def test_isaac_adc_share_of_one_array_cycle():
    t = load_target("rram")
    assert (t.array.rows, t.array.cols, t.adc.bits) == (128, 128, 8)
    e = cost.array_cycle_energy(t)
    share = e["adc"] / sum(e.values())
    assert 0.70 <= share <= 0.76, share
    # the spec's own anchor, and the published figure it must still hold (ISAAC: ~73 %)
    a = anchor(t, "adc_energy_share")
    assert a.value == pytest.approx(0.73)
    assert share == pytest.approx(a.value, abs=0.03)
    # by hand: 128 conversions (offset: every column read) x 1.67 pJ = 213.76 pJ;
    # DAC 128 x 0.390625 pJ = 50 pJ; cells 16384 x 1.831 fJ = 30.0 pJ; S+A 128 x 20.5 fJ
    assert e["adc"] == pytest.approx(128 * 1.67e-12)
    assert e["dac"] == pytest.approx(50e-12)
    assert e["array"] == pytest.approx(16384 * 1.831e-15)
    assert e["shift_add"] == pytest.approx(128 * 20.5e-15)
    # the 8-bit ADC is the published 1.67 pJ per conversion
    assert cost.adc_energy(t) == pytest.approx(anchor(t, "adc_energy_per_conversion").value * 1e-12)
    assert cost.adc_energy(t) == pytest.approx(1.67e-12)


def test_isaac_adc_share_drops_with_fewer_adc_bits():
    t = load_target("rram")
    shares = []
    for b in t.search.adc_bits:
        e = cost.array_cycle_energy(t.replace_path("adc.bits", b))
        shares.append(e["adc"] / sum(e.values()))
    assert shares == sorted(shares)


def test_hermes_peak_performance():
    t = load_target("pcm")
    p = cost.peak_performance(t)
    tops = anchor(t, "peak_tops", "chip")
    tpw = anchor(t, "tops_per_w", "chip")
    # published figures (Le Gallo et al. 2023, 1-phase 8-bit): 63.1 TOPS, 9.76 TOPS/W
    assert tops.value == pytest.approx(63.1) and tops.unit == "TOPS"
    assert tpw.value == pytest.approx(9.76) and tpw.unit == "TOPS/W"
    for ref in (63.1e12, tops.value * 1e12):
        assert p["ops_per_s"] == pytest.approx(ref, rel=0.15)
    for ref in (9.76e12, tpw.value * 1e12):
        assert p["ops_per_j"] == pytest.approx(ref, rel=0.15)
    # by hand: 64 cores x 2 x 256 x 256 ops per 133 ns read = 63.07 TOPS
    assert p["ops_per_s"] == pytest.approx(64 * 2 * 256 * 256 / 133e-9, rel=1e-9)
    # one MVM: 256 rows x 8.5 pJ + 256 ADC x 40 pJ + 256 x 3.7 pJ + 65536 x 1 fJ = 13.43 nJ
    mvm = 256 * 8.5e-12 + 256 * 40e-12 + 256 * 3.7e-12 + 65536 * 1e-15
    assert p["mvm_energy_j"] == pytest.approx(mvm, rel=1e-9)
    assert p["ops_per_j"] == pytest.approx(2 * 256 * 256 / mvm, rel=1e-9)


# -- hand-computed layer cost --------------------------------------------------------------------
def test_layer_cost_by_hand_on_rram():
    # rram: 16-bit weights on 2-bit cells = 8 slices, offset; 16-bit inputs on 1-bit DACs
    # -> 16 input cycles. Gemm K = 100, N = 50, 3 vectors.
    # columns 50 * 8 = 400 on 127 usable -> ceil(3.15) = 4 column tiles x 1 row tile = 4 arrays
    # converted = 50 * 8 + 4 reference = 404; driven = 100 x 4 = 400
    # used cells = 100 * 400 weight cells + the reference column's cells on the 100 driven rows
    # of each of the 4 arrays = 40000 + 400 = 40400 (cells on undriven rows draw no current)
    t = load_target("rram")
    g = one_layer_graph(mop("fc", 100, 50, vectors=3))
    res = compile_graph(g, t)
    lm = res.mapping.layer("fc")
    assert (lm.arrays, lm.converted_cols, lm.driven_rows, lm.used_cells) == (4, 404, 400, 40400)
    e = res.cost.layer("fc").energy
    reads = 3 * 16
    assert e["array"] == pytest.approx(reads * 40400 * 1.831e-15)
    assert e["dac"] == pytest.approx(reads * 400 * 3.90625e-13)
    assert e["adc"] == pytest.approx(reads * 404 * 1.67e-12)
    assert e["shift_add"] == pytest.approx(reads * 404 * 2.05e-14)
    assert e["accumulate"] == pytest.approx(3 * 50 * 1 * 5e-14)
    # bytes: in 3 x 100 x 2 = 600, out 3 x 50 x 2 = 300
    assert e["buffer"] == pytest.approx(900 * 1.8e-12)
    assert e["noc"] == pytest.approx(300 * 2.05e-12)
    assert e["write"] == 0.0 and e["digital"] == 0.0
    # cycle: max(100 ns read, 101 conversions per array x 0.78125 ns = 78.9 ns) = 100 ns
    # latency = compute 3 vectors x 16 cycles x 100 ns + data movement: one hop 2.34 ns +
    # 300 B / 5.12 GB/s + the 900 buffer bytes at 2.67 B/cycle x 1.28 GHz on its one core
    # (4 arrays, 8 per core)
    compute = 3 * 16 * 100e-9
    move = 2.34e-9 + 300 / 5.12e9 + 900 / (2.67 * 1.28e9)
    lc = res.cost.layer("fc")
    assert lc.compute_s == pytest.approx(compute)
    assert lc.movement_s == pytest.approx(move)
    assert lc.latency_s == pytest.approx(compute + move)
    assert res.cost.energy_j == pytest.approx(sum(e.values()))


# -- monotonicity --------------------------------------------------------------------------------
@st.composite
def layer_case(draw):
    target = draw(st.sampled_from(TARGETS))
    groups = draw(st.sampled_from([1, 1, 2, 4, 16]))
    k = draw(st.integers(1, 600))
    n = groups * draw(st.integers(1, 300 // groups + 1))
    vectors = draw(st.integers(1, 64))
    return target, k, n, groups, vectors


_BASE = {name: load_target(name) for name in TARGETS}


def _with_adc_bits(target: str, bits: int):
    return _BASE[target].replace_paths({"search.adc_bits": list(range(1, 17)), "adc.bits": bits})


@settings(max_examples=50, deadline=None)
@given(layer_case(), st.integers(1, 16), st.integers(1, 16))
def test_more_adc_bits_never_lower_adc_energy(case, b1, b2):
    target, k, n, groups, vectors = case
    lo, hi = sorted((b1, b2))
    g = one_layer_graph(mop("l", k, n, groups=groups, vectors=vectors))
    e_lo = compile_graph(g, _with_adc_bits(target, lo)).cost
    e_hi = compile_graph(g, _with_adc_bits(target, hi)).cost
    assert e_hi.layer("l").energy["adc"] >= e_lo.layer("l").energy["adc"]
    assert e_hi.energy_breakdown_j["adc"] >= e_lo.energy_breakdown_j["adc"]
    assert e_hi.energy_j >= e_lo.energy_j * (1 - 1e-12)


def test_adc_bits_in_the_search_list_strictly_raise_adc_energy():
    g = one_layer_graph(mop("l", 200, 100, vectors=4))
    for name in ("pcm", "rram"):
        t = load_target(name)
        adc = [compile_graph(g, t.replace_path("adc.bits", b)).cost.energy_breakdown_j["adc"]
               for b in sorted(t.search.adc_bits)]
        assert all(a < b for a, b in itertools.pairwise(adc)), (name, adc)


@st.composite
def pruning_case(draw):
    target, k, n, groups, vectors = draw(layer_case())
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    keep1 = rng.random(n) < draw(st.floats(0.0, 1.0))
    keep2 = keep1 & (rng.random(n) < draw(st.floats(0.0, 1.0)))
    return target, k, n, groups, vectors, keep1, keep2


@settings(max_examples=60, deadline=None)
@given(pruning_case())
def test_pruned_to_zero_columns_never_cost_more_energy(case):
    target, k, n, groups, vectors, keep1, keep2 = case
    t = _BASE[target]
    energies = []
    for keep in (None, keep1, keep2):  # each prunes a superset of the columns of the one before
        mask = None if keep is None else np.broadcast_to(keep, (k, n)).copy()
        c = compile_graph(one_layer_graph(mop("l", k, n, groups=groups, vectors=vectors,
                                              mask=mask)), t).cost
        energies.append(c.layer("l").energy)
    for before, after in itertools.pairwise(energies):
        assert sum(after.values()) <= sum(before.values()) * (1 + 1e-12)
        for comp in cost.COMPONENTS:
            assert after[comp] <= before[comp] * (1 + 1e-12) + 1e-30, comp


# -- overflow: chips versus reload ---------------------------------------------------------------
def _big_gemm(target: str):
    g = one_layer_graph(mop("big", 4096, 4096, vectors=4))
    if target == "rram":
        # 4160 arrays on a 96-array chip (see test_mapper.big_gemm_case)
        return g, load_target("rram", ["precision.weight_bits=8", "hierarchy.tiles_per_chip=1"])
    return g, load_target("pcm")  # 256 arrays on 64


@pytest.mark.parametrize("target", ["rram", "pcm"])
def test_overflow_policies(target):
    g, t = _big_gemm(target)
    chips = compile_graph(g, t, overflow="chips")
    reload = compile_graph(g, t, overflow="reload")
    for r in (chips, reload):
        assert r.mapping.overflow_arrays > 0
        assert any(str(r.mapping.overflow_arrays) in w for w in r.mapping.warnings)
        assert math.isfinite(r.cost.energy_j) and r.cost.energy_j > 0
        assert math.isfinite(r.schedule.latency_s) and r.schedule.latency_s > 0
    assert chips.mapping.chips > 1 and reload.mapping.chips == 1
    # reload reprograms the arrays beyond the chip every inference: write energy and time
    assert chips.cost.energy_breakdown_j["write"] == 0.0
    assert reload.cost.energy_breakdown_j["write"] > 0.0
    assert reload.cost.energy_j > chips.cost.energy_j
    assert reload.schedule.latency_s > chips.schedule.latency_s
    # apart from the writes, both policies do the same reads
    for comp in ("array", "dac", "adc", "shift_add"):
        assert reload.cost.energy_breakdown_j[comp] == pytest.approx(
            chips.cost.energy_breakdown_j[comp])
    # by hand for pcm: one layer of 256 full arrays (256 x 256 cells each) on a 64-array chip:
    # it does not fit, so nothing stays resident and it runs in ceil(256/64) = 4 rounds on the
    # whole chip, each round's arrays written first: all 256 arrays written every inference at
    # 0.4 nJ per cell
    if target == "pcm":
        assert reload.cost.energy_breakdown_j["write"] == pytest.approx(256 * 65536 * 4e-10)
        assert reload.mapping.reload.pool_arrays == 64 and not reload.mapping.reload.resident
    # the report carries it too
    rep = build_report(reload)
    assert rep["totals"]["overflow_arrays"] == reload.mapping.overflow_arrays
    assert rep["overflow_policy"] == "reload"
    json.dumps(rep)


def test_overflow_error_policy_names_the_overflow():
    from imccompile.errors import MappingError

    g, t = _big_gemm("pcm")
    with pytest.raises(MappingError, match=r"256 arrays .* 64: 192 arrays"):
        compile_graph(g, t, overflow="error")


# -- report sanity over the examples -------------------------------------------------------------
def _numbers(obj, path=""):
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, f"{path}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{path}[{i}]")


def test_examples_and_targets_exist():
    assert len(EXAMPLES) >= 3
    assert set(TARGETS) <= set(bundled_targets())


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_report_sanity(path, target):
    res = compile_model(path, target)
    rep = build_report(res)
    tot = rep["totals"]
    assert tot["energy_j"] > 0
    assert tot["energy_j"] == pytest.approx(sum(tot["energy_breakdown_j"].values()), rel=1e-9)
    assert set(tot["energy_breakdown_j"]) == set(cost.COMPONENTS)
    for section in ("totals", "layers", "schedule"):
        for where, v in _numbers(rep[section], section):
            assert math.isfinite(v) and v >= 0, (where, v)
    assert tot["latency_s"] > 0
    assert tot["latency_s"] <= tot["serial_latency_s"] * (1 + 1e-12)
    assert tot["pipeline_period_s"] <= tot["latency_s"] * (1 + 1e-12)
    layers = rep["layers"]
    assert tot["arrays"] == sum(lay["arrays"] for lay in layers) > 0  # a shared weight once
    assert tot["weights"] == sum(lay["weights"] for lay in layers)
    assert tot["macs"] == sum(lay["macs"] for lay in layers)
    assert tot["serial_latency_s"] == pytest.approx(sum(lay["latency_s"] for lay in layers))
    assert tot["energy_j"] == pytest.approx(sum(lay["energy_j"] for lay in layers), rel=1e-9)
    for lay in layers:
        assert lay["energy_j"] == pytest.approx(sum(lay["energy_breakdown_j"].values()), rel=1e-9)
        assert 0.0 <= lay["utilization"] <= 1.0
        if lay["kind"] != "digital":  # a layer reading a shared weight places no arrays
            assert (lay["arrays"] > 0) != bool(lay["shares"])
            assert lay["arrays_read"] > 0
    # derived figures agree with the totals they come from
    ops = 2.0 * tot["macs"]
    assert tot["tops"] == pytest.approx(ops / tot["latency_s"] / 1e12)
    assert tot["tops_per_w"] == pytest.approx(ops / tot["energy_j"] / 1e12)
    # pipelined (NeuroSim's definition): one inference every pipeline period
    assert tot["pipelined_tops"] == pytest.approx(ops / tot["pipeline_period_s"] / 1e12)
    assert tot["pipelined_tops"] >= tot["tops"] * (1 - 1e-12)
    assert tot["pipelined_tops_per_mm2"] == pytest.approx(tot["pipelined_tops"] / tot["area_mm2"])
    assert tot["inferences_per_s"] == pytest.approx(1.0 / tot["pipeline_period_s"])
    json.loads(to_json(res))  # serializable, no NaN


# -- CLI -----------------------------------------------------------------------------------------
TOTAL_KEYS = {"arrays", "weights", "macs", "energy_j", "latency_s", "area_mm2", "tops",
              "tops_per_w", "tops_per_mm2", "inferences_per_s", "energy_breakdown_j"}
LAYER_KEYS = {"name", "kind", "rows", "cols", "groups", "weights", "arrays", "utilization",
              "energy_j", "latency_s"}
CNN = os.path.join(ROOT, "examples", "digits_cnn.onnx")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imccompile.cli", *args], check=False,
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_cli_json_report(tmp_path):
    out = tmp_path / "out.json"
    p = _cli(CNN, "--target", "rram", "--json", str(out))
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    rep = json.loads(out.read_text())
    assert {"model", "target", "totals", "layers"} <= set(rep)
    assert TOTAL_KEYS <= set(rep["totals"]), TOTAL_KEYS - set(rep["totals"])
    assert rep["layers"] and all(LAYER_KEYS <= set(lay) for lay in rep["layers"])
    assert rep["target"]["name"] == "rram"
    assert rep["totals"]["arrays"] == sum(lay["arrays"] for lay in rep["layers"])
    assert rep["totals"]["energy_j"] == pytest.approx(
        sum(rep["totals"]["energy_breakdown_j"].values()), rel=1e-9)
    # the CLI report is the API's report
    api = build_report(compile_model(CNN, "rram"))
    assert rep["totals"]["energy_j"] == pytest.approx(api["totals"]["energy_j"], rel=1e-12)
    assert rep["totals"]["arrays"] == api["totals"]["arrays"]


def test_cli_set_adc_bits_lowers_adc_energy(tmp_path, capsys):
    default, four = tmp_path / "d.json", tmp_path / "4.json"
    assert cli_main([CNN, "--target", "rram", "--json", str(default), "-q"]) == 0
    assert cli_main([CNN, "--target", "rram", "--set", "adc.bits=4", "--json", str(four),
                     "-q"]) == 0
    d, f = json.loads(default.read_text()), json.loads(four.read_text())
    assert d["target"]["adc"]["bits"] == 8 and f["target"]["adc"]["bits"] == 4
    assert f["totals"]["energy_breakdown_j"]["adc"] < d["totals"]["energy_breakdown_j"]["adc"]
    # 4-bit ADC: 0.79 pJ instead of 1.67 pJ per conversion, same conversions
    assert f["totals"]["energy_breakdown_j"]["adc"] == pytest.approx(
        d["totals"]["energy_breakdown_j"]["adc"] * 0.79 / 1.67)
    assert f["totals"]["energy_j"] < d["totals"]["energy_j"]


def test_cli_invalid_override_exits_1_without_traceback(tmp_path):
    out = tmp_path / "bad.json"
    p = _cli(CNN, "--target", "rram", "--set", "adc.bits=99", "--json", str(out))
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "adc.bits" in p.stderr
    assert "99" in p.stderr
    assert "Traceback" not in p.stderr and "internal error" not in p.stderr
    assert not out.exists()
