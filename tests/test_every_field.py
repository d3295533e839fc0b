"""Every spec field changes something, or is documented as a label.

For each bundled target and each field of the schema (walked from the pydantic model, so a new
field is covered the day it is added), the field is turned (another choice, a flipped flag, a
number doubled or nudged, a table scaled) and the digits CNN is compiled with data before and
after: some number of the compile result — the report (energy, latency, area, per layer), the
accuracy under the hardware, or the program image — must change. A field that only matters in
a given setting (a gaussian-only noise figure, a write figure under --overflow reload) is
turned in that setting (CONTEXT, each with its reason). `search.*` fields bound the search:
they must change the search space. Labels that change no number by design are listed in LABELS
and documented as such in docs/spec-format.md.
"""

from __future__ import annotations

import hashlib
import math
import os
from typing import Any, Literal, get_args, get_origin

import pytest

from imccompile.compiler import compile as compile_model
from imccompile.errors import SpecError
from imccompile.outputs import build_report
from imccompile.spec import bundled_targets, load_target
from imccompile.spec.schema import Target, leaf_paths

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "examples", "digits_cnn.onnx")
DATA = os.path.join(ROOT, "examples", "digits_cnn.npz")

#: Fields that name things and change no number (docs/spec-format.md says so).
LABELS = {"array.device"}

_NOISY = {"noise.model": "gaussian", "noise.t_inference_s": 3600.0, "noise.t0_s": 20.0}
_DRIFT = {**_NOISY, "noise.drift_nu": 0.005}
#: activations spill, so the DRAM figures are in use (one tile per chip: a chip of thousands of
#: cores, mnsim-rram130's, would hold the small test model's activations even at 1 byte per core)
_SPILL = {"buffers.size_bytes": 1, "hierarchy.tiles_per_chip": 1}
_RELOAD = {"hierarchy.arrays_per_core": 1, "hierarchy.cores_per_tile": 1,
           "hierarchy.tiles_per_chip": 1}


def _adc_bound(t) -> dict[str, Any]:
    """One ADC per array and a 10 ns conversion: the conversions, not the read, set the pace."""
    return {"adc.columns_per_adc": t.array.cols, "adc.latency_s": 1e-8}


def _dram(t) -> dict[str, Any]:
    if t.dram.energy_per_byte_j is not None:
        return {}
    return {"dram.energy_per_byte_j": 1.6e-10, "dram.bytes_per_s": 1.71e10, "dram.latency_s": 1e-7}


def _converting(t) -> dict[str, Any]:
    return {"adc.type": "sar"} if t.adc.type == "digital" else {}


#: path -> (target -> overrides applied before and after the turn, overflow policy), each with
#: the reason the field only shows in that setting.
CONTEXT: dict[str, tuple[Any, str]] = {
    # the gaussian model's own figures (drift: a drifting model needs t_inference >= t0)
    "noise.programming_sigma": (lambda t: _NOISY, "chips"),
    "noise.read_sigma": (lambda t: _NOISY, "chips"),
    "noise.drift_nu": (lambda t: _NOISY, "chips"),
    "noise.model": (lambda t: {"noise.t_inference_s": 3600.0}, "chips"),
    # drift times and compensation matter when the devices drift
    "noise.t_inference_s": (lambda t: _DRIFT, "chips"),
    "noise.t0_s": (lambda t: _DRIFT, "chips"),
    "noise.drift_compensation": (lambda t: _DRIFT, "chips"),
    # the reference read differs (through the converters or ideal) only where a converting ADC
    # reads a drifting, compensated layer
    "noise.drift_reference": (lambda t: {**_DRIFT, **_converting(t),
                                         "noise.drift_compensation": True}, "chips"),
    # writes happen every inference only when layers take turns on the arrays
    "array.write_energy_per_cell_j": (lambda t: _RELOAD, "reload"),
    "array.write_latency_per_row_s": (lambda t: _RELOAD, "reload"),
    # capacity and off-chip figures matter when activations do not fit
    "buffers.size_bytes": (lambda t: _SPILL, "chips"),
    # (a target without a dram section, as the peer presets that model none, gets one first)
    "dram.energy_per_byte_j": (lambda t: {**_SPILL, **_dram(t)}, "chips"),
    "dram.bytes_per_s": (lambda t: {**_SPILL, **_dram(t)}, "chips"),
    "dram.latency_s": (lambda t: {**_SPILL, **_dram(t)}, "chips"),
    # vdd enters the one law written in fF·V² (energies are otherwise given directly)
    "technology.vdd_v": (lambda t: {"adc.type": "zigzag", "adc.energy_table_j": {}}, "chips"),
    # conversion time shows when conversions, not the read, set the pace; a digital adder
    # tree has no conversion time law over bits (constant), a SAR one does
    "adc.latency_s": (_adc_bound, "chips"),
    "adc.latency_bits": (lambda t: {**_adc_bound(t), "adc.type": "sar"}, "chips"),
    "adc.columns_per_adc": (lambda t: {"adc.latency_s": 1e-8}, "chips"),
    # hops differ by topology once consecutive layers sit in different tiles
    # (and a hop costs something: mnsim-rram130 models no NoC, its hops are free)
    "noc.topology": (lambda t: {"hierarchy.arrays_per_core": 1, "hierarchy.cores_per_tile": 1,
                                **({} if t.noc.hop_energy_per_byte_j else
                                   {"noc.hop_energy_per_byte_j": 1e-12})}, "chips"),
    # the clock times the buffer ports: a target that states no port width gets one
    "technology.clock_hz": (lambda t: {} if t.buffers.bytes_per_cycle else
                            {"buffers.bytes_per_cycle": 1.0}, "chips"),
    # the array's read time shows when it, not the conversions, sets the pace of a read
    "array.read_latency_s": (lambda t: {"adc.latency_s": 1e-15, "periphery.read_overhead_s": 0.0},
                             "chips"),
    # an exact digital adder tree converts nothing: its bits change nothing (docs: the
    # 'digital' law is constant); a converting ADC's bits do
    "adc.bits": (lambda t: {"adc.type": "sar"} if t.adc.type == "digital" else {}, "chips"),
    # with 8-bit inputs on an 8-bit DAC a PWM pulse and a bit-serial step are one read alike
    "dac.mode": (lambda t: {"precision.input_bits": min(t.search.input_bits)}, "chips"),
    # the read-out chain's figures exist only for a converting ADC (a digital adder tree has no
    # range to bound and no analog read-out to add noise to: the schema refuses them there);
    # the bound's unit matters once a bound is set
    "adc.read_noise": (lambda t: _converting(t), "chips"),
    # with both tables given, the type's law shows in the conversion time away from its
    # anchor bits, once the conversions set the pace (aihwkit-pcm: 9 bits, anchored at 8)
    "adc.type": (lambda t: _adc_bound(t) if t.adc.latency_bits not in (None, t.adc.bits) else {},
                 "chips"),
    "adc.out_bound": (lambda t: _converting(t), "chips"),
    "adc.out_bound_unit": (lambda t: {**_converting(t), "adc.out_bound": 2.0}, "chips"),
}

#: Fields constrained to their search list: a turned value joins the list.
KNOB_LISTS = {"array.bits_per_cell": "search.bits_per_cell", "adc.bits": "search.adc_bits",
              "array.rows": "search.rows", "array.cols": "search.cols",
              "precision.weight_bits": "search.weight_bits",
              "precision.input_bits": "search.input_bits"}

#: Values for fields a bundled spec leaves absent (None).
WHEN_ABSENT: dict[str, Any] = {
    "array.leakage_w": 1e-3, "adc.leakage_w": 1e-3, "periphery.leakage_w_per_array": 1e-3,
    "buffers.bytes_per_cycle": 1.0, "adc.read_noise": 0.05, "adc.out_bound": 2.0,
    "adc.mux_energy_per_read_j": 1e-12, "periphery.read_overhead_s": 1e-9,
    "dac.input_activity": 0.5,
}


def _annotation(path: str) -> Any:
    sec, name = path.split(".")
    model = Target.model_fields[sec].annotation
    return model.model_fields[name].annotation  # type: ignore[union-attr]


def _choices(tp: Any) -> tuple[Any, ...]:
    while get_origin(tp) is not Literal and get_args(tp):
        tp = get_args(tp)[0]
    return get_args(tp) if get_origin(tp) is Literal else ()


def variants(t, path: str) -> list[Any]:
    v = t.get_path(path)
    if v is None:
        if path == "array.parallel_rows":
            return [max(1, t.array.rows // 2)]
        if path == "adc.latency_bits":
            return [b for b in t.search.adc_bits if b != t.adc.bits]
        if path == "technology.figures_node_nm":
            return [t.technology.node_nm * 2]
        if path == "array.area_per_row_mm2":  # half the array's area per row
            return [t.array.area_mm2 / t.array.rows / 2]
        if path == "periphery.digital_bits":  # a width other than the activations'
            return [16 if t.precision.input_bits != 16 else 8]
        return [WHEN_ABSENT[path]]
    if isinstance(v, bool):
        return [not v]
    if isinstance(v, str):
        return [c for c in _choices(_annotation(path)) if c != v]
    if isinstance(v, int):
        return [v * 2, v + 1, v - 1]
    if isinstance(v, float):
        return [v * 2, v / 2] if v else [1e-3, 1.0]
    if isinstance(v, dict):
        if v and any(v.values()):
            return [{str(k): x * 2 for k, x in v.items()}]
        return [{str(t.adc.bits): 1e-12}]  # an all-zero or empty table: a positive point
    raise AssertionError(f"{path}: no rule to turn a {type(v).__name__}")


def _numbers(obj: Any, path: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(obj, bool):
        out[path] = float(obj)
    elif isinstance(obj, (int, float)):
        out[path] = float(obj)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if not (path == "" and k == "target"):  # the spec itself is echoed there
                out.update(_numbers(v, f"{path}.{k}"))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(_numbers(v, f"{path}[{i}]"))
    return out


def _program_digest(res) -> str:
    from imccompile.program import files

    h = hashlib.sha256()
    for name, content in sorted(files(res).items()):
        if isinstance(content, (bytes, str)) and name != "graph.onnx":
            h.update(content.encode() if isinstance(content, str) else content)
    return h.hexdigest()


_CACHE: dict[tuple, Any] = {}


# the spec's default activity is used where nothing is measured: with --data, the activity
# measured on the data takes precedence (imccompile.activity.resolve), so it is turned without
NO_DATA = {"dac.input_activity"}


def _compile(t, overflow: str, data: bool = True):
    key = (hash(t), overflow, data)
    if key not in _CACHE:
        _CACHE[key] = compile_model(MODEL, t, data=DATA if data else None,  # type: ignore[arg-type]
                                    samples=8 if data else None, overflow=overflow)
    return _CACHE[key]


def _differs(a, b) -> bool:
    na, nb = _numbers(build_report(a)), _numbers(build_report(b))
    if na.keys() != nb.keys():
        return True
    if any(not math.isclose(na[k], nb[k], rel_tol=1e-12, abs_tol=0.0) for k in na):
        return True
    return _program_digest(a) != _program_digest(b)


HW_PATHS = [p for p in leaf_paths() if not p.startswith("search.")]


def _other_cols(t) -> dict[str, Any]:
    return {"array.cols": next(c for c in sorted(t.search.cols) if c != t.array.cols)}


#: Fields read only when a later override changes something (applied to both sides).
AFTER: dict[str, Any] = {
    # the per-row part of the array area keeps its size when the columns change
    "array.area_per_row_mm2": _other_cols,
}


@pytest.mark.parametrize("name", bundled_targets())
@pytest.mark.parametrize("path", HW_PATHS)
def test_every_field_changes_a_number(name: str, path: str) -> None:
    if path in LABELS:
        pytest.skip(f"{path} is a label (docs/spec-format.md)")
    make, overflow = CONTEXT.get(path, (lambda t: {}, "chips"))
    base_t = load_target(name)
    ctx = make(base_t)
    if ctx:
        base_t = base_t.replace_paths(ctx)
    with_data = path not in NO_DATA
    after = AFTER.get(path, lambda t: {})(base_t)
    base = _compile(base_t.replace_paths(after) if after else base_t, overflow, with_data)
    tried = []
    for value in variants(base_t, path):
        change = {path: value}
        if path in KNOB_LISTS:
            choices = list(base_t.get_path(KNOB_LISTS[path]))
            change[KNOB_LISTS[path]] = choices if value in choices else [*choices, value]
        try:
            turned = base_t.replace_paths(change)
            if after:
                turned = turned.replace_paths(after)
        except SpecError as e:
            tried.append(f"{value!r}: invalid ({str(e).splitlines()[0]})")
            continue
        if _differs(base, _compile(turned, overflow, with_data)):
            return
        tried.append(f"{value!r}: no change")
    pytest.fail(f"{name}: turning {path} (from {base_t.get_path(path)!r}) changed no number: "
                + "; ".join(tried))


@pytest.mark.parametrize("name", bundled_targets())
@pytest.mark.parametrize("path", [p for p in leaf_paths() if p.startswith("search.")])
def test_every_search_field_changes_the_space(name: str, path: str) -> None:
    from imccompile.frontend import import_model
    from imccompile.space import build_space

    t = load_target(name)
    graph = import_model(MODEL)
    values = list(t.get_path(path))
    hi = 8 if path == "search.bits_per_cell" else 16 if "bits" in path else 4096
    extra = next(v for v in range(1, hi + 1) if v not in values)
    turned = t.replace_path(path, [*values, extra])
    assert build_space(graph, t).knobs != build_space(graph, turned).knobs


def test_labels_are_documented() -> None:
    doc = open(os.path.join(ROOT, "docs", "spec-format.md"), encoding="utf-8").read()
    for path in LABELS:
        line = next(line for line in doc.splitlines() if line.startswith(f"| `{path}`"))
        assert "label" in line, line
