"""``imccompile sweep`` (issue 17, item 2): the grid of compiles, its table, CSV and HTML.

The reference is a hand count: on ``pcm`` (one CCO ADC per column, 8-bit PWM inputs read in one
pass, 4-bit weights in one differential 4-bit slice) the digits CNN converts, per inference,
conv0 64 vectors x 16 columns = 1024, conv3 64 x 32 = 2048, conv7 16 x 32 x 2 row tiles (K = 288
> 256 rows) = 1024, gemm1 1 x 64 x 2 row tiles (K = 512) = 128 and gemm3 10: 4234 conversions,
on 7 arrays of 256 columns (1792 ADCs). Changing only ``adc.bits`` changes only the ADC's
energy per conversion and area, which ``hwspecs/pcm.json`` tabulates per bit count.
"""

from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cli_helpers import run_module
from imccompile.errors import UsageError
from imccompile.sweep import Knob, grid

ROOT = Path(__file__).resolve().parents[1]
CNN = ROOT / "examples" / "digits_cnn.onnx"
DATA = ROOT / "examples" / "digits_cnn.npz"
CONVERSIONS = 4234  # per inference, counted by hand above
ADCS = 7 * 256
PCM_ADC = json.loads((ROOT / "hwspecs" / "pcm.json").read_text())["adc"]


@pytest.fixture(scope="module")
def adc_sweep(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("sweep") / "s"
    res = run_module("sweep", CNN, "--target", "pcm", "--vary", "adc.bits=4..8", "--data", DATA,
                     "--jobs", "2", "-o", out)
    assert res.returncode == 0, res.stderr
    return out, res.stdout


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_sweep_writes_a_csv_in_base_si_units_that_follows_the_adc_table(adc_sweep) -> None:
    out, _ = adc_sweep
    rows = _rows(out / "sweep.csv")
    assert [r["adc.bits"] for r in rows] == ["4", "5", "6", "7", "8"]
    assert {"energy_j", "latency_s", "inferences_per_s", "area_mm2", "arrays", "accuracy",
            "accuracy_std", "accuracy_float"} <= set(rows[0])
    by_bits = {int(r["adc.bits"]): r for r in rows}
    e8, a8 = float(by_bits[8]["energy_j"]), float(by_bits[8]["area_mm2"])
    energy_table, area_table = PCM_ADC["energy_table_j"], PCM_ADC["area_table_mm2"]
    for b, r in by_bits.items():
        want_e = e8 + CONVERSIONS * (energy_table[str(b)] - energy_table["8"])
        assert float(r["energy_j"]) == pytest.approx(want_e, rel=1e-9)
        assert float(r["area_mm2"]) == pytest.approx(a8 + ADCS * (area_table[str(b)]
                                                                  - area_table["8"]), rel=1e-9)
        assert r["arrays"] == "7"
        assert 0.0 <= float(r["accuracy"]) <= 1.0
        assert float(r["accuracy_float"]) == float(rows[0]["accuracy_float"])  # the same model


def test_sweep_prints_one_table_row_per_point_with_si_units(adc_sweep) -> None:
    _, stdout = adc_sweep
    lines = [ln for ln in stdout.splitlines() if re.match(r"^│\s+[4-8] │", ln)]
    assert len(lines) == 5
    assert "adc.bits" in stdout and "energy per inference" in stdout
    assert "93.6 nJ" in lines[0] and "221 nJ" in lines[4]  # as the CSV: 8 bits = the compile
    assert "107 k inferences/s" in lines[0]
    assert not re.search(r"\de[+-]\d", stdout)  # no raw exponents for people to read


def test_sweep_html_plots_each_varying_figure_against_the_knob(adc_sweep) -> None:
    out, _ = adc_sweep
    html = (out / "sweep.html").read_text()
    svgs = re.findall(r"<svg.*?</svg>", html, flags=re.S)
    for svg in svgs:
        ET.fromstring(svg)  # well-formed
    ids = re.findall(r'id="plot-([a-z0-9_]+)"', html)
    assert {"energy_j", "area_mm2", "tops_per_w", "accuracy"} <= set(ids)
    assert "arrays" not in ids and "Unchanged across the sweep" in html  # 7 arrays throughout
    energy = svgs[ids.index("energy_j")]
    assert "energy per inference (nJ)" in energy and "adc.bits" in energy
    assert "<script" not in html and "http" not in html.replace("http://www.w3.org/2000/svg", "")


def test_workers_and_one_process_give_the_same_figures(adc_sweep, tmp_path: Path) -> None:
    out, _ = adc_sweep
    # the same sweep in this one process (the data's measured activity prices both alike)
    res = run_module("sweep", CNN, "-t", "pcm", "--vary", "adc.bits=4..8", "--data", DATA,
                     "-o", tmp_path / "x", "-q")
    assert res.returncode == 0, res.stderr
    one = {r["adc.bits"]: r for r in _rows(tmp_path / "x" / "sweep.csv")}
    for r in _rows(out / "sweep.csv"):
        for col in ("energy_j", "latency_s", "area_mm2", "arrays", "accuracy"):
            assert one[r["adc.bits"]][col] == r[col]


def test_a_sweep_without_data_has_no_accuracy_column(tmp_path: Path) -> None:
    res = run_module("sweep", CNN, "-t", "pcm", "--vary", "adc.bits=6,8", "-o", tmp_path / "x",
                     "-q")
    assert res.returncode == 0, res.stderr
    assert "accuracy" not in _rows(tmp_path / "x" / "sweep.csv")[0]


def test_two_knobs_make_the_grid_of_every_combination(tmp_path: Path) -> None:
    res = run_module("sweep", CNN, "-t", "pcm", "--vary", "array.rows=128,256",
                     "--vary", "adc.bits=6,8", "-o", tmp_path / "g", "-q")
    assert res.returncode == 0, res.stderr
    rows = _rows(tmp_path / "g" / "sweep.csv")
    assert [(r["array.rows"], r["adc.bits"]) for r in rows] == [
        ("128", "6"), ("128", "8"), ("256", "6"), ("256", "8")]
    # 256-row arrays: 7 (above); 128 rows: conv3 (144 rows) and conv7 (288) and gemm1 (512) take
    # 2, 3 and 4 row tiles of 128: 1 + 2 + 3 + 4 + 1 = 11 arrays
    assert [r["arrays"] for r in rows] == ["11", "11", "7", "7"]


def test_knob_values_parse_as_ranges_or_lists() -> None:
    assert Knob.parse("adc.bits=4..8") == Knob("adc.bits", (4, 5, 6, 7, 8))
    assert Knob.parse("array.rows=64,128,256") == Knob("array.rows", (64, 128, 256))
    assert Knob.parse("noise.model=none,pcm") == Knob("noise.model", ("none", "pcm"))
    assert grid([Knob("a", (1, 2)), Knob("b", ("x", "y"))]) == [
        (("a", 1), ("b", "x")), (("a", 1), ("b", "y")), (("a", 2), ("b", "x")),
        (("a", 2), ("b", "y"))]


@pytest.mark.parametrize("text, match", [
    ("adc.bits", "expected FIELD=LOW..HIGH"), ("adc.bits=", "expected FIELD"),
    ("adc.bits=8..4", "empty"), ("adc.bits=a..b", "integers"), ("adc.bits=4,4", "twice"),
])
def test_bad_vary_values_are_usage_errors(text: str, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        Knob.parse(text)


def test_a_field_varied_twice_is_refused() -> None:
    with pytest.raises(UsageError, match="varied twice"):
        grid([Knob("adc.bits", (4,)), Knob("adc.bits", (8,))])


def test_an_invalid_point_stops_the_sweep_before_any_compile(tmp_path: Path) -> None:
    res = run_module("sweep", CNN, "-t", "pcm", "--vary", "adc.bits=8..40", "-o", tmp_path / "z")
    assert res.returncode == 1
    assert "adc.bits" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "z").exists()


def test_sweep_needs_a_target_and_a_vary() -> None:
    for argv in (["sweep", CNN, "--vary", "adc.bits=4..5"], ["sweep", CNN, "-t", "pcm"]):
        res = run_module(*argv)
        assert res.returncode == 1 and "required" in res.stderr


def test_ctrl_c_stops_a_parallel_sweep_with_one_line_and_no_workers_left() -> None:
    import signal
    import subprocess
    import sys
    import time

    p = subprocess.Popen([sys.executable, "-m", "imccompile", "sweep", str(CNN), "-t", "pcm",
                          "--vary", "adc.bits=4..10", "--vary", "array.rows=64,128,256",
                          "--data", str(DATA), "--seeds", "5", "--jobs", "2"],
                         stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(4)
    assert p.poll() is None, "the sweep ended before the interrupt: give it more work"
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130
    assert err.strip().splitlines()[-1] == "imccompile: interrupted" and "Traceback" not in err
