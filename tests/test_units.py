"""One unit system (issue 17, item 5): SI prefixes with units wherever people read numbers,
base SI units with the unit in the key in machine outputs. Expected texts are written by hand."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from cli_helpers import run_module
from imccompile.outputs.display import quantity, si, unit_of

ROOT = Path(__file__).resolve().parents[1]
CNN = ROOT / "examples" / "digits_cnn.onnx"
DATA = ROOT / "examples" / "digits_cnn.npz"


@pytest.mark.parametrize("value, unit, text", [
    (1.157e5, "inferences/s", "116 k inferences/s"),
    (9690, "inferences/s", "9.69 k inferences/s"),
    (42, "inferences/s", "42 inferences/s"),
    (3.508e-7, "J", "351 nJ"),
    (5e-6, "s", "5 µs"),
    (999.7e-9, "J", "1 µJ"),  # rounds into the next prefix, never "1e+03 nJ"
    (2.0012625e-05, "s", "20 µs"),
    (1.5e13, "J", "15 TJ"),
    (2.7e-19, "J", "0.27 aJ"),
    (0, "J", "0 J"),
    (4.41, "mm²", "4.41 mm²"),
    (0.0441, "mm²", "0.0441 mm²"),  # areas stay in mm²
    (-3.2e-3, "s", "-3.2 ms"),
])
def test_si_formats_by_hand(value: float, unit: str, text: str) -> None:
    assert si(value, unit) == text


@pytest.mark.parametrize("key, unit", [
    ("energy_j", "J"), ("latency_s", "s"), ("area_mm2", "mm²"), ("inferences_per_s", "inferences/s"),
    ("energy", "J"), ("latency", "s"), ("area", "mm²"), ("accuracy", ""), ("tops_per_w", ""),
    ("arrays", ""),
])
def test_units_of_machine_keys_and_objectives(key: str, unit: str) -> None:
    assert unit_of(key) == unit


def test_quantity_of_counts_and_figures() -> None:
    assert quantity("energy_j", 3.508e-7) == "351 nJ"
    assert quantity("arrays", 38.0) == "38"
    assert quantity("tops_per_w", 2.765) == "2.765"


def test_compile_terminal_prints_throughput_and_area_with_units() -> None:
    res = run_module(CNN, "-t", "pcm")
    assert res.returncode == 0, res.stderr
    assert "107 k inferences/s" in res.stdout  # was 1.07e+05 inferences/s
    assert "4.41 mm² / 40.3 mm²" in res.stdout
    assert not re.search(r"\de[+-]\d", res.stdout)


def test_search_output_and_pareto_csv_use_the_unit_system(tmp_path: Path) -> None:
    out = tmp_path / "s"
    res = run_module(CNN, "-t", "pcm", "--data", DATA, "--samples", "20", "--search", "3",
                     "-o", out)
    assert res.returncode == 0, res.stderr
    baseline = next(ln for ln in res.stdout.splitlines() if ln.startswith("baseline"))
    assert re.search(r"energy \d[\d.]* nJ", baseline), baseline  # not 3.508e-07
    assert not re.search(r"\de[+-]\d", res.stdout)
    with (out / "pareto.csv").open(newline="") as f:
        header = next(csv.reader(f))
    assert "energy_j" in header and "energy" not in header  # the unit in the column name
    html = (out / "report.html").read_text()
    pareto = re.search(r'id="plot-pareto">(.*?)</svg>', html, flags=re.S)
    assert pareto and re.search(r">\d[\d.]* nJ<", pareto.group(1))  # axis ticks in nJ
