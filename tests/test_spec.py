"""Target specs: contract over every bundled spec, one test per error kind, overrides, calibration
of the bundled numbers against the published anchors, and a fuzz test of the loader."""

from __future__ import annotations

import copy
import importlib.resources
import itertools
import json
import math
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imccompile.errors import SpecError
from imccompile.spec import (
    Target,
    bundled_targets,
    leaf_paths,
    load_target,
    parse_override,
    target_from_dict,
    target_summary,
)
from imccompile.spec.gen_schema import SCHEMA_PATH, render_schema
from imccompile.spec.schema import SOURCED_SECTIONS

REPO = Path(__file__).resolve().parent.parent
HWSPECS = REPO / "hwspecs"
SPEC_FILES = sorted(HWSPECS.glob("*.json"))
NAMES = [p.stem for p in SPEC_FILES]


def _raw(name: str) -> dict[str, Any]:
    return json.loads((HWSPECS / f"{name}.json").read_text(encoding="utf-8"))


def _write(tmp_path: Path, data: Any, name: str = "spec.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- contract


def test_bundled_targets_are_the_hwspecs_files() -> None:
    assert bundled_targets() == NAMES
    assert {"pcm", "rram", "sram"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
class TestBundledSpecContract:
    def test_loads_by_name_and_by_path(self, name: str) -> None:
        by_name = load_target(name)
        assert isinstance(by_name, Target)
        assert by_name.name == name
        assert load_target(HWSPECS / f"{name}.json") == by_name
        assert load_target(str(HWSPECS / f"{name}.json")) == by_name

    def test_every_numeric_field_is_sourced(self, name: str) -> None:
        t = load_target(name)
        for sec in SOURCED_SECTIONS:
            section = getattr(t, sec)
            for field in type(section).model_fields:
                value = getattr(section, field)
                if isinstance(value, (int, float, dict)) and not isinstance(value, bool):
                    text = t.source(f"{sec}.{field}")
                    assert text and text.strip(), f"{name}: {sec}.{field} has no source"
                    if text.lower().startswith("assumption"):
                        assert re.match(r"assumption: \S", text), (sec, field, text)

    def test_search_lists_contain_own_values(self, name: str) -> None:
        t = load_target(name)
        assert t.array.bits_per_cell in t.search.bits_per_cell
        assert t.adc.bits in t.search.adc_bits
        assert t.array.rows in t.search.rows
        assert t.array.cols in t.search.cols
        assert t.precision.weight_bits in t.search.weight_bits
        assert t.precision.input_bits in t.search.input_bits

    def test_round_trip(self, name: str) -> None:
        t = load_target(name)
        d = t.to_dict()
        text = json.dumps(d)  # plain JSON-able
        again = target_from_dict(json.loads(text))
        assert again == t
        assert Target.model_validate(d) == t
        assert hash(again) == hash(t)

    def test_every_search_point_validates(self, name: str) -> None:
        t = load_target(name)
        s = t.search
        for path, values in [("array.bits_per_cell", s.bits_per_cell), ("adc.bits", s.adc_bits),
                             ("array.rows", s.rows), ("array.cols", s.cols),
                             ("precision.weight_bits", s.weight_bits),
                             ("precision.input_bits", s.input_bits)]:
            for v in values:
                assert t.replace_path(path, v).get_path(path) == v

    def test_anchors(self, name: str) -> None:
        t = load_target(name)
        assert t.anchors, "a bundled spec carries the real chip's published figures"
        assert any(a.calibrated for a in t.anchors)
        for a in t.anchors:
            assert a.source and a.metric and math.isfinite(a.value)
            t.replace_paths(a.overrides)  # the anchor's conditions are a valid target

    def test_summary(self, name: str) -> None:
        t = load_target(name)
        line = target_summary(t)
        assert "\n" not in line
        assert f"{t.array.rows}x{t.array.cols}" in line
        assert f"ADC {t.adc.bits}-bit" in line
        assert str(t.arrays_per_chip) in line

    def test_file_is_tidy_json(self, name: str) -> None:
        text = (HWSPECS / f"{name}.json").read_text(encoding="utf-8")
        assert text.endswith("\n")
        assert json.loads(text)["name"] == name


def test_package_data_is_reachable() -> None:
    root = importlib.resources.files("imccompile.hwspecs")
    assert sorted(p.name for p in root.iterdir() if p.name.endswith(".json")) == \
        [p.name for p in SPEC_FILES]


def test_shipped_schema_is_generated() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render_schema(), \
        "run: python -m imccompile.spec.gen_schema"


def test_docs_cover_every_field() -> None:
    doc = (REPO / "docs" / "spec-format.md").read_text(encoding="utf-8")
    missing = [p for p in leaf_paths() if f"`{p}`" not in doc]
    assert not missing, missing
    for field in ("metric", "value", "unit", "conditions", "source", "scope", "calibrated",
                  "overrides"):
        assert f"`{field}`" in doc


# ----------------------------------------------------------------------------- calibration
# Hand arithmetic from the spec numbers (independent of the cost model), against the anchors.


def _anchor(t: Target, metric: str, scope: str) -> Any:
    (a,) = [a for a in t.anchors if a.metric == metric and a.scope == scope and a.calibrated]
    return a


def test_isaac_adc_share_of_crossbar_cycle() -> None:
    t = load_target("rram")
    a = t.array
    conversions = a.cols  # offset scheme: every column is converted once per read
    adc = conversions * t.adc.energy_j()
    dac = a.rows * t.dac.energy_per_conversion_j
    cells = a.rows * a.cols * a.read_energy_per_cell_j
    shift_add = conversions * t.periphery.shift_add_energy_j
    share = adc / (adc + dac + cells + shift_add)
    assert adc == pytest.approx(128 * 1.67e-12)
    assert 0.70 <= share <= 0.76
    assert share == pytest.approx(_anchor(t, "adc_energy_share", "array").value, abs=0.02)
    # ADC serialization matches the 100 ns read: 128 conversions at 1.28 GS/s
    assert t.adc.columns_per_adc * t.adc.latency_s == pytest.approx(a.read_latency_s)


def test_hermes_peak_matches_published_chip_figures() -> None:
    t = load_target("pcm")
    a, h = t.array, t.hierarchy
    assert a.signed_scheme == "differential_cell"
    assert math.ceil(t.precision.weight_bits / a.bits_per_cell) == 1
    assert t.dac.mode == "pwm" and t.precision.input_bits <= t.dac.bits  # 1-phase: one read
    ops = 2 * a.rows * a.cols
    mvm_s = max(a.read_latency_s, t.adc.latency_s)  # the CCO converts during integration
    cols = a.cols
    energy = (a.rows * a.cols * a.read_energy_per_cell_j + a.rows * t.dac.energy_per_conversion_j
              + cols * t.adc.energy_j() + cols * t.periphery.shift_add_energy_j)
    tops = h.arrays_per_chip * ops / mvm_s / 1e12
    tops_per_w = ops / energy / 1e12
    assert h.arrays_per_chip == 64
    assert tops == pytest.approx(_anchor(t, "peak_tops", "chip").value, rel=0.15)
    assert tops_per_w == pytest.approx(_anchor(t, "tops_per_w", "chip").value, rel=0.15)
    # also when the ADC time is added to the read instead of overlapped
    assert h.arrays_per_chip * ops / (a.read_latency_s + t.adc.latency_s) / 1e12 == \
        pytest.approx(63.1, rel=0.15)
    core_energy = energy - cols * t.periphery.shift_add_energy_j
    assert ops / core_energy / 1e12 == pytest.approx(_anchor(t, "tops_per_w", "core").value,
                                                     rel=0.15)
    core_area = (a.area_mm2 + a.rows * t.dac.area_mm2 + cols * t.adc.area_mm2()
                 + t.periphery.area_mm2_per_array + t.buffers.area_mm2)
    assert ops / mvm_s / 1e12 / core_area == pytest.approx(
        _anchor(t, "tops_per_mm2", "core").value, rel=0.15)


def test_sram_macro_matches_published_figures() -> None:
    base = load_target("sram")
    anchor = _anchor(base, "tops_per_w", "macro")
    t = base.replace_paths(anchor.overrides)
    a = t.array
    slices = math.ceil(t.precision.weight_bits / a.bits_per_cell)
    reads = math.ceil(t.precision.input_bits / t.dac.bits)
    ops = 2 * a.rows * (a.cols // slices)
    per_read = (a.rows * a.cols * a.read_energy_per_cell_j + a.rows * t.dac.energy_per_conversion_j
                + a.cols * t.adc.energy_j() + a.cols * t.periphery.shift_add_energy_j)
    assert ops / (reads * per_read) / 1e12 == pytest.approx(anchor.value, rel=0.15)
    area = a.area_mm2 + a.rows * t.dac.area_mm2 + t.periphery.area_mm2_per_array
    tops = ops / (reads * a.read_latency_s) / 1e12
    assert tops / area == pytest.approx(_anchor(base, "tops_per_mm2", "macro").value, rel=0.15)
    assert t.adc.energy_j() == 0.0 and t.noise.model == "none"


# ----------------------------------------------------------------------------- ADC tables


def test_adc_table_interpolation_and_override() -> None:
    t = load_target("rram")
    table = t.adc.energy_table_j
    for bits, joules in table.items():
        assert t.adc.energy_j(bits) == joules
    values = [t.adc.energy_j(b) for b in range(1, 17)]
    assert all(x <= y for x, y in itertools.pairwise(values))
    assert table[4] < t.adc.energy_j(4) * 1.0000001
    mid = t.adc.energy_j(7)
    assert table[6] <= mid <= table[8]
    # log-linear beyond the table, with the last slope
    assert t.adc.energy_j(11) == pytest.approx(table[10] * table[10] / table[9])
    six = load_target("rram", ["adc.bits=6"])
    assert six.adc.energy_j() == pytest.approx(1.20e-12)
    assert six.adc.area_mm2() == pytest.approx(627e-6)


def test_adc_single_entry_and_zero_tables() -> None:
    # one entry anchors the sar law (Murmann envelope 0.27 pJ + 1.45e-19 J * 4^b) at that point
    t = load_target("rram", ['adc.energy_table_j={"8": 1e-12}', 'adc.area_table_mm2={"8": 1e-3}'])
    assert t.adc.energy_j(8) == 1e-12
    env = {b: 0.27e-12 + 1.45e-19 * 4 ** b for b in (6, 8, 10)}
    assert t.adc.energy_j(10) == pytest.approx(1e-12 * env[10] / env[8])
    assert t.adc.energy_j(6) == pytest.approx(1e-12 * env[6] / env[8])
    s = load_target("sram")
    assert s.adc.type == "digital"
    assert s.adc.energy_j(4) == 0.0 and s.adc.area_mm2(12) == 0.0


# ----------------------------------------------------------------------------- overrides


def test_overrides_change_nested_fields() -> None:
    base = load_target("pcm")
    t = load_target("pcm", ["adc.bits=6", "noise.model=none", "array.rows=128",
                            "noise.drift_compensation=false", "adc.energy_table_j.8=5e-11"])
    assert (t.adc.bits, t.noise.model, t.array.rows) == (6, "none", 128)
    assert t.noise.drift_compensation is False
    assert t.adc.energy_table_j[8] == 5e-11 and t.adc.energy_table_j[4] == 1e-11
    assert t.adc.energy_j() == pytest.approx(16e-12)
    assert t.array.cols == base.array.cols
    assert {k: v for k, v in t.sources.items() if k != "array.area_mm2"} == \
        {k: v for k, v in base.sources.items() if k != "array.area_mm2"}
    d = load_target("pcm", {"adc.bits": 6, "search.rows": [256, 1024], "array.rows": 1024})
    assert d.adc.bits == 6 and d.array.rows == 1024
    assert load_target(base, ["adc.bits=4"]).adc.bits == 4
    assert base.adc.bits == 8  # frozen: the original is untouched


@pytest.mark.parametrize("name", ["pcm", "rram", "sram"])
def test_array_cell_area_and_leakage_follow_an_override_of_the_geometry(name: str) -> None:
    """The spec's array area is that of its rows x cols cells (fixed pitch): an override of
    array.rows / array.cols (the search's knobs) scales it and the cells' static power by the
    cell count, by hand here; an override that also sets them wins; the source says so."""
    base = load_target(name, ["array.leakage_w=0.001"])  # the bundled specs model none
    a = base.array
    rows, cols = min(base.search.rows), min(base.search.cols)  # sizes the target allows
    assert (rows, cols) != (a.rows, a.cols)
    t = load_target(base, [f"array.rows={rows}", f"array.cols={cols}"])
    ratio = rows * cols / (a.rows * a.cols)
    assert t.array.area_mm2 == pytest.approx(a.area_mm2 * ratio, rel=1e-12)
    assert t.array.leakage_w == pytest.approx(0.001 * ratio, rel=1e-12)
    assert f"{rows}x{cols} cells" in t.source("array.area_mm2")
    same = load_target(base, [f"array.rows={a.rows}"])  # no change of geometry
    assert same.array.area_mm2 == a.area_mm2 and same.sources == base.sources
    pinned = load_target(base, [f"array.rows={rows}", "array.area_mm2=0.5"])
    assert pinned.array.area_mm2 == 0.5 and pinned.array.leakage_w == pytest.approx(
        0.001 * rows / a.rows)
    back = load_target(t, [f"array.rows={a.rows}", f"array.cols={a.cols}"])
    assert back.array.area_mm2 == pytest.approx(a.area_mm2, rel=1e-12)
    # the compile's chip area: the cells of every array at the overridden size
    from imccompile.cost import array_area_mm2
    assert array_area_mm2(t)["arrays"] == pytest.approx(array_area_mm2(base)["arrays"] * ratio)


def test_mnsim_array_area_keeps_its_per_row_term() -> None:
    """MNSIM's crossbar area (Crossbar.py): rows x cols x 1.44 um2 + 1150 um2 x rows, by
    hand for other geometries."""
    def mnsim_mm2(r: int, c: int) -> float:
        return (r * c * 1.44 + 1150.0 * r) * 1e-6
    base = load_target("mnsim-rram130")
    assert base.array.area_mm2 == pytest.approx(mnsim_mm2(256, 256), rel=1e-6)  # as rounded
    for r, c in [(128, 256), (256, 128), (128, 128), (128, 512)]:  # in its search lists
        ov = [f"array.rows={r}", f"array.cols={c}"]
        t = load_target("mnsim-rram130", ov)
        assert t.array.area_mm2 == pytest.approx(mnsim_mm2(r, c), rel=1e-6), (r, c)


def test_a_whole_array_section_is_taken_as_given() -> None:
    """An override of the whole array section brings its own area: a geometry override before
    it does not scale it (nor leave a note), one after it scales the section's values."""
    raw = _raw("rram")
    section = dict(raw["array"], rows=64)
    whole = f"array={json.dumps(section)}"
    t = load_target("rram", ["array.cols=64", whole])
    assert t.array.area_mm2 == section["area_mm2"] and t.array.cols == section["cols"]
    assert "follows the geometry" not in t.source("array.area_mm2")
    u = load_target("rram", [whole, "array.cols=64"])
    assert u.array.area_mm2 == pytest.approx(section["area_mm2"] * 64 / section["cols"])


def test_override_of_a_whole_section_and_sources() -> None:
    raw = _raw("rram")
    noc = dict(raw["noc"], topology="tree")
    t = load_target("rram", [f"noc={json.dumps(noc)}",
                             'sources.noc.topology="assumption: a tree for the test"'])
    assert t.noc.topology == "tree"
    assert t.source("noc.topology") == "assumption: a tree for the test"


def test_replace_path() -> None:
    t = load_target("rram")
    u = t.replace_path("adc.bits", 6)
    assert u.adc.bits == 6 and t.adc.bits == 8
    v = t.replace_paths({"array.rows": 64, "array.cols": 256, "precision.input_bits": 8})
    assert (v.array.rows, v.array.cols, v.precision.input_bits) == (64, 256, 8)
    with pytest.raises(SpecError, match=r"^replace adc\.bits=0: adc\.bits: expected an integer "
                                        r"in 1\.\.16, got 0$"):
        t.replace_path("adc.bits", 0)
    with pytest.raises(SpecError, match=r"replace adc\.bitz: adc\.bitz: unknown field"):
        t.replace_path("adc.bitz", 6)


def test_parse_override() -> None:
    assert parse_override("adc.bits=6") == ("adc.bits", 6)
    assert parse_override("noise.model=none") == ("noise.model", "none")
    assert parse_override('adc.energy_table_j={"8":1e-12}') == \
        ("adc.energy_table_j", {"8": 1e-12})
    assert parse_override("description=a=b") == ("description", "a=b")
    assert parse_override("description=") == ("description", "")


# ----------------------------------------------------------------------------- error kinds


def test_error_unknown_key(tmp_path: Path) -> None:
    data = _raw("pcm")
    data["array"]["colz"] = 3
    path = _write(tmp_path, data, "pcm.json")
    with pytest.raises(SpecError, match=r"^" + re.escape(str(path)) + r": array\.colz: unknown "
                       r"field \(known: rows, cols, .*\); did you mean cols\?$"):
        load_target(path)


def test_error_unknown_top_level_key(tmp_path: Path) -> None:
    data = _raw("pcm")
    data["arrays"] = {}
    with pytest.raises(SpecError, match=r"spec\.json: arrays: unknown field \(known: name, "
                                        r"description, technology, .*did you mean array\?"):
        load_target(_write(tmp_path, data))


def test_error_missing_field(tmp_path: Path) -> None:
    data = _raw("pcm")
    del data["noise"]["t0_s"]
    with pytest.raises(SpecError, match=r"^.*spec\.json: noise\.t0_s: missing field$"):
        load_target(_write(tmp_path, data))


def test_error_missing_section(tmp_path: Path) -> None:
    data = _raw("sram")
    del data["hierarchy"]
    with pytest.raises(SpecError, match=r"spec\.json: hierarchy: missing field"):
        load_target(_write(tmp_path, data))


@pytest.mark.parametrize("value, shown", [("6", '"6"'), (6.5, "6.5"), (True, "true"),
                                          (None, "null"), ([6], r"\[6\]")])
def test_error_wrong_type_for_int(tmp_path: Path, value: Any, shown: str) -> None:
    data = _raw("rram")
    data["adc"]["bits"] = value
    with pytest.raises(SpecError, match=r"spec\.json: adc\.bits: expected an integer in 1\.\.16, "
                                        rf"got {shown}$"):
        load_target(_write(tmp_path, data))


def test_error_wrong_type_for_number(tmp_path: Path) -> None:
    data = _raw("rram")
    data["adc"]["latency_s"] = "1ns"
    with pytest.raises(SpecError, match=r'adc\.latency_s: expected a number >= 0 \(s\), '
                                        r'got "1ns"'):
        load_target(_write(tmp_path, data))
    data["adc"]["latency_s"] = 1  # an int is a fine number
    assert load_target(_write(tmp_path, data)).adc.latency_s == 1.0


def test_error_wrong_literal(tmp_path: Path) -> None:
    data = _raw("rram")
    data["array"]["device"] = "mram"
    with pytest.raises(SpecError, match=r'array\.device: expected one of "pcm", "rram", "sram", '
                                        r'got "mram"'):
        load_target(_write(tmp_path, data))


def test_error_out_of_range() -> None:
    rram = HWSPECS / "rram.json"
    with pytest.raises(SpecError, match=r"^--set adc\.bits=-1: adc\.bits: expected an integer in "
                                        r"1\.\.16, got -1$"):
        load_target(rram, ["adc.bits=-1"])


def test_error_out_of_range_in_file_names_bundled_file(tmp_path: Path) -> None:
    data = _raw("rram")
    data["array"]["cols"] = 5000
    path = _write(tmp_path, data, "rram.json")
    with pytest.raises(SpecError, match=r"rram\.json: array\.cols: expected an integer in "
                                        r"1\.\.4096, got 5000"):
        load_target(path)
    # an error is attributed to the override that caused it, else to the file
    with pytest.raises(SpecError, match=r"^--set search\.rows=\[64\]: array\.rows: expected one "
                                        r"of search\.rows \[64\]"):
        load_target("rram", ["adc.bits=6", "search.rows=[64]"])
    data["array"]["cols"] = 128
    data["noise"]["t0_s"] = 0
    with pytest.raises(SpecError, match=r"^.*rram\.json: noise\.t0_s: expected a number > 0 "):
        load_target(_write(tmp_path, data, "rram.json"), ["adc.bits=6"])


def test_error_cross_field(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"array\.g_min_us: expected a number below g_max_us "
                                        r"\(25\), got 30"):
        load_target("pcm", ["array.g_min_us=30"])
    with pytest.raises(SpecError, match=r"array\.rows: expected one of search\.rows "
                                        r"\[64, 128, 256\] .*got 100"):
        load_target("rram", ["array.rows=100"])
    with pytest.raises(SpecError, match=r'adc\.energy_table_j\["8"\]: expected a number >= '
                                        r"2e-12 .* got 1e-12"):
        load_target("rram", ['adc.energy_table_j={"4": 2e-12, "8": 1e-12}'])


def test_error_bad_json(tmp_path: Path) -> None:
    path = _write(tmp_path, '{\n  "name": "x",\n  "array": {"rows": 1,}\n}')
    with pytest.raises(SpecError, match=r"^" + re.escape(str(path)) + r": not valid JSON: .* at "
                                        r"line 3 column \d+$"):
        load_target(path)


@pytest.mark.parametrize("text, what", [
    ('{"name": NaN}', "NaN is not allowed"),
    ('{"name": "a", "name": "b"}', 'duplicate key "name"'),
    ("[1, 2]", "expected a JSON object at the top level, got \\[1, 2\\]"),
    ("", "not valid JSON: Expecting value at line 1 column 1"),
])
def test_error_bad_json_kinds(tmp_path: Path, text: str, what: str) -> None:
    with pytest.raises(SpecError, match=r"spec\.json: .*" + what):
        load_target(_write(tmp_path, text))


def test_error_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"is a directory, expected a JSON file"):
        load_target(tmp_path)  # a directory
    bad = tmp_path / "latin1.json"
    bad.write_bytes(b'{"name": "\xe9"}')
    with pytest.raises(SpecError, match=r"latin1\.json: cannot read: not UTF-8 text"):
        load_target(bad)
    with pytest.raises(SpecError, match=r"nothere\.json: no such file \(bundled targets: "
                                        r".*pcm.*\)"):
        load_target(tmp_path / "nothere.json")


def test_error_unknown_target_name() -> None:
    names = ", ".join(bundled_targets())
    with pytest.raises(SpecError, match=r'^unknown target "pcmx": not a bundled target '
                                        r'\(' + re.escape(names) + r'\) and no file of that name; '
                                        r'did you mean pcm\?$'):
        load_target("pcmx")
    with pytest.raises(SpecError, match=r'and no file of that name$'):  # nothing close
        load_target("memristor")


def test_error_missing_source(tmp_path: Path) -> None:
    data = _raw("pcm")
    del data["sources"]["adc.latency_s"]
    with pytest.raises(SpecError, match=r'spec\.json: sources: missing source for adc\.latency_s '
                                        r'\(add "adc\.latency_s": '):
        load_target(_write(tmp_path, data))


def test_error_unknown_source_key(tmp_path: Path) -> None:
    data = _raw("pcm")
    data["sources"]["adc.bitz"] = "somewhere"
    with pytest.raises(SpecError, match=r'spec\.json: sources\["adc\.bitz"\]: unknown field path '
                                        r"\(did you mean adc\.bits\?\)"):
        load_target(_write(tmp_path, data))


def test_error_assumption_without_reasoning() -> None:
    with pytest.raises(SpecError, match=r"sources\[\"adc\.bits\"\]: expected 'assumption: "
                                        r"<the reasoning>', got \"assumption\""):
        load_target("rram", ['sources.adc.bits="assumption"'])


@pytest.mark.parametrize("override, message", [
    ("array.colz=3", r"--set array\.colz=3: array\.colz: unknown field \(known: rows, cols"),
    ("adcc.bits=3", r"--set adcc\.bits=3: adcc: unknown field .*did you mean adc\?"),
    ("adc.bits.x=3", r"--set adc\.bits\.x=3: adc\.bits\.x: adc\.bits is not an object"),
    ("anchors.0.value=1", r"--set anchors\.0\.value=1: anchors\.0: anchors is a list"),
    ("adcbits", r"--set adcbits: expected PATH=VALUE, e\.g\. adc\.bits=6"),
    ("adc..bits=1", r"--set adc\.\.bits=1: expected PATH=VALUE with a dotted field path"),
])
def test_error_bad_override_path(override: str, message: str) -> None:
    with pytest.raises(SpecError, match="^" + message):
        load_target("pcm", [override])


@pytest.mark.parametrize("override, message", [
    ("adc.bits=abc", r'adc\.bits: expected an integer in 1\.\.16, got "abc"'),
    ('adc.bits="6"', r'adc\.bits: expected an integer in 1\.\.16, got "6"'),
    ("adc.bits=6.0", r"adc\.bits: expected an integer in 1\.\.16, got 6\.0"),
    ("noise.model=foo", r'noise\.model: expected one of "none", "pcm", "gaussian", got "foo"'),
    ("technology.clock_hz=NaN", r"technology\.clock_hz: expected a number > 0 \(Hz\), got NaN"),
    ("search.rows=[]", r"search\.rows: expected a non-empty list of integers in 1\.\.4096, got"),
    ("search.rows=[64,64,256]", r"search\.rows: expected a list without repeated values"),
    ("array=5", r"array: expected an object with fields rows, cols, .*got 5"),
    ('adc.energy_table_j={"x": 1}', (r'adc\.energy_table_j\["x"\]: expected a key that is an '
                                    r'integer in 1\.\.16, got "x"')),
    ("noise.drift_compensation=1", r"noise\.drift_compensation: expected true or false, got 1"),
])
def test_error_bad_override_value(override: str, message: str) -> None:
    with pytest.raises(SpecError, match="^" + re.escape(f"--set {override}: ") + message):
        load_target("pcm", [override])


def test_several_errors_one_per_line(tmp_path: Path) -> None:
    data = _raw("rram")
    data["adc"]["bits"] = 0
    del data["noise"]["t0_s"]
    with pytest.raises(SpecError) as info:
        load_target(_write(tmp_path, data))
    lines = str(info.value).splitlines()
    assert len(lines) == 2
    assert all(line.startswith(str(tmp_path)) for line in lines)


# ----------------------------------------------------------------------------- fuzzing

JSON_SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
                | st.integers(-3, 5000) | st.floats(allow_nan=False, allow_infinity=False)
                | st.text(max_size=8))
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=6,
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, prefix + (i,))
    return out


def _get(obj: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        obj = obj[p]
    return obj


@st.composite
def mutated_specs(draw: st.DrawFn) -> dict[str, Any]:
    data = copy.deepcopy(_raw(draw(st.sampled_from(NAMES))))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(data)[1:]))
        parent = _get(data, path[:-1])
        op = draw(st.sampled_from(["delete", "set", "set", "add"]))
        if op == "delete":
            del parent[path[-1]]
        elif op == "set":
            parent[path[-1]] = draw(JSON_VALUES)
        else:
            target = _get(data, path)
            if isinstance(target, dict):
                target[draw(st.text(max_size=8))] = draw(JSON_VALUES)
            elif isinstance(target, list):
                target.append(draw(JSON_VALUES))
            else:
                parent[path[-1]] = draw(JSON_VALUES)
    return data


def _check_outcome(load: Any, label: str) -> None:
    try:
        result = load()
    except SpecError as e:
        text = str(e)
        assert text
        assert "pydantic" not in text and "Traceback" not in text and "For further" not in text
        for line in text.splitlines():
            assert line.startswith((label, "--set", "..."))
        return
    assert isinstance(result, Target)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_specs())
def test_mutated_specs_load_or_raise_spec_error(data: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "fuzz.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        _check_outcome(lambda: load_target(path), str(path))


@settings(max_examples=100, deadline=None)
@given(name=st.sampled_from(NAMES),
       path=st.sampled_from(leaf_paths()) | st.text(max_size=12),
       value=st.text(max_size=10) | JSON_VALUES.map(json.dumps))
def test_random_overrides_load_or_raise_spec_error(name: str, path: str, value: str) -> None:
    _check_outcome(lambda: load_target(name, [f"{path}={value}"]), "hwspecs/")
