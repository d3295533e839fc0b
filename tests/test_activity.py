"""Input bit activity (imccompile.activity): the energy law by hand, where each layer's activity
comes from (given > measured on data > spec default > worst case), the report, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imccompile.activity import Activity, resolve
from imccompile.compiler import compile as compile_model
from imccompile.compiler import compile_graph
from imccompile.errors import UsageError
from imccompile.outputs import build_report
from imccompile.spec import load_target
from tests.onnx_builders import gemm_model

# one Gemm 16 -> 4 on neurosim-sram22 (128x128, 1-bit cells, 8-bit weights in two's complement:
# 8 slices; 8-bit inputs bit-serial: 8 reads per vector), with a cell energy so both laws show
CELL_J = 1e-15
OVERRIDES = {"array.read_energy_per_cell_j": CELL_J}
K, N, BITS = 16, 4, 8


def gemm() -> object:
    rng = np.random.default_rng(0)
    return gemm_model((1, K), rng.standard_normal((K, N)).astype(np.float32))


def layer_energy(activity: dict[str, float] | None = None, overrides=None) -> dict[str, float]:
    res = compile_model(gemm(), "neurosim-sram22", overrides=overrides or OVERRIDES,
                        activity=activity)
    return dict(res.cost.layer("gemm").energy)


def test_hand_computed_energy_at_an_activity() -> None:
    t = load_target("neurosim-sram22", [f"{k}={v}" for k, v in OVERRIDES.items()])
    reads = 1 * BITS  # one vector, one read per input bit (16 rows < parallel rows)
    cells = K * N * BITS  # 16 rows x 32 one-bit columns
    conversions = N * BITS
    for a in (1.0, 0.25, 0.0):
        e = layer_energy({"gemm": a})
        # the spec figures are those of a '1' input bit: array and row drive x activity
        assert e["array"] == pytest.approx(reads * cells * CELL_J * a, rel=1e-12, abs=1e-30)
        assert e["dac"] == pytest.approx(reads * K * t.dac.energy_per_conversion_j * a,
                                         rel=1e-12, abs=1e-30)
        # the sense amps, the array's column mux, shift-adders fire on every read whatever
        # the input
        assert e["adc"] == pytest.approx(reads * conversions * t.adc.energy_j()
                                         + reads * 1 * t.adc.mux_energy_per_read_j, rel=1e-12)
        assert e["shift_add"] == pytest.approx(
            reads * conversions * t.periphery.shift_add_energy_j, rel=1e-12)


def test_spec_default_then_worst_case() -> None:
    t = load_target("neurosim-sram22")
    assert t.dac.input_activity == pytest.approx(0.294)
    spec = layer_energy()
    given = layer_energy({"gemm": 0.294})
    assert spec == pytest.approx(given)
    worst = layer_energy(overrides={**OVERRIDES, "dac.input_activity": None})
    full = layer_energy({"gemm": 1.0})
    assert worst == pytest.approx(full)
    assert worst["dac"] > spec["dac"]


def test_resolution_order_and_sources() -> None:
    t = load_target("neurosim-sram22")
    act = resolve(["a", "b", "c"], t, given={"a": 0.1}, measured={"a": 0.9, "b": 0.2})
    assert (act.of("a"), act.source("a")) == (0.1, "given")
    assert (act.of("b"), act.source("b")) == (0.2, "data")
    assert (act.of("c"), act.source("c")) == (pytest.approx(0.294), "spec")
    none = resolve(["a"], t.replace_path("dac.input_activity", None))
    assert (none.of("a"), none.source("a")) == (1.0, "worst_case")


def test_measured_activity_is_used_where_none_is_given() -> None:
    import onnx

    from imccompile.frontend import import_model

    graph = import_model(onnx.load_from_string(gemm().SerializeToString()), {})
    t = load_target("neurosim-sram22")
    measured = compile_graph(graph, t, measured_activity={"gemm": 0.5})
    assert measured.cost.activity.source("gemm") == "data"
    assert measured.cost.activity.of("gemm") == 0.5
    from imccompile.options import CompileOptions

    opts = CompileOptions.make(activity={"gemm": 0.125})
    both = compile_graph(graph, t, options=opts, measured_activity={"gemm": 0.5})
    assert (both.cost.activity.of("gemm"), both.cost.activity.source("gemm")) == (0.125, "given")


def test_report_says_where_the_activity_came_from() -> None:
    rep = build_report(compile_model(gemm(), "neurosim-sram22"))
    row = next(r for r in rep["layers"] if r["name"] == "gemm")
    assert row["activity_source"] == "spec"
    assert row["input_activity"] == pytest.approx(0.294)
    rep = build_report(compile_model(gemm(), "rram"))  # states no default
    row = next(r for r in rep["layers"] if r["name"] == "gemm")
    assert (row["activity_source"], row["input_activity"]) == ("worst_case", 1.0)


@pytest.mark.parametrize("bad", [1.5, -0.1, "x", True])
def test_activity_out_of_range_is_a_usage_error(bad) -> None:
    with pytest.raises(UsageError, match=r"^activity gemm=.*expected a fraction of 1 bits in 0\.\.1$"):
        compile_model(gemm(), "neurosim-sram22", activity={"gemm": bad})


def test_activity_for_an_unknown_layer_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"^activity conv9=0\.3: no matrix layer 'conv9' in the "
                                         r"graph \(matrix layers: gemm\)$"):
        compile_model(gemm(), "neurosim-sram22", activity={"conv9": 0.3})


def test_spec_activity_out_of_range_names_the_field() -> None:
    from imccompile.errors import SpecError

    with pytest.raises(SpecError, match=r"dac\.input_activity: expected a number in 0\.\.1, "
                                        r"or null, got 1\.2"):
        load_target("neurosim-sram22", ["dac.input_activity=1.2"])


def test_activity_default_object() -> None:
    assert Activity().of("x") == 1.0 and Activity().source("x") == "worst_case"


def test_search_trials_keep_the_given_activity() -> None:
    from imccompile.options import CompileOptions
    from imccompile.search import SearchConfig

    opts = CompileOptions.make(activity={"gemm": 0.2})
    cfg = SearchConfig.from_options("m.onnx", "neurosim-sram22", None, opts,
                                    objectives=("energy",))
    assert cfg.compile_options("", ["adc.bits=4"]).activity == (("gemm", 0.2),)
    other = SearchConfig.from_options("m.onnx", "neurosim-sram22", None, CompileOptions(),
                                      objectives=("energy",))
    assert other.differences(cfg.key()) == [("activity [['gemm', 0.2]]", "no activity")]


def test_terminal_totals_say_where_the_activity_came_from() -> None:
    from imccompile.outputs.display import activity_text

    rep = build_report(compile_model(gemm(), "neurosim-sram22"))
    assert activity_text(rep["layers"]) == "0.294 (spec default dac.input_activity)"
    rep = build_report(compile_model(gemm(), "rram"))
    assert activity_text(rep["layers"]) == "1 (worst case: the spec states no dac.input_activity)"
    rep = build_report(compile_model(gemm(), "rram", activity={"gemm": 0.25}))
    assert activity_text(rep["layers"]) == "0.25 (given)"


@settings(max_examples=25, deadline=None)
@given(a=st.floats(0.0, 1.0), b=st.floats(0.0, 1.0))
def test_more_activity_never_lowers_energy(a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    e_lo, e_hi = (sum(layer_energy({"gemm": x}).values()) for x in (lo, hi))
    assert e_hi >= e_lo
