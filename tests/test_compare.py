"""``imccompile compare`` (issue 17, item 2): reports, or one model on several targets, side by
side. The references are the single compiles' own report.json files (made by the compile
command, independently of the comparison), and ratios recomputed here from them."""

from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cli_helpers import run_module

ROOT = Path(__file__).resolve().parents[1]
CNN = ROOT / "examples" / "digits_cnn.onnx"
DATA = ROOT / "examples" / "digits_cnn.npz"


@pytest.fixture(scope="module")
def singles(tmp_path_factory) -> dict[str, dict]:
    """report.json of `imccompile CNN -t T --data DATA --samples 60` for pcm and rram."""
    out = {}
    for t in ("pcm", "rram"):
        path = tmp_path_factory.mktemp(t) / "r.json"
        res = run_module(CNN, "-t", t, "--data", DATA, "--samples", "60", "--json", path, "-q")
        assert res.returncode == 0, res.stderr
        out[t] = json.loads(path.read_text())
    return out


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("cmp") / "c"
    res = run_module("compare", CNN, "--target", "pcm", "--target", "rram", "--data", DATA,
                     "--samples", "60", "-o", out)
    assert res.returncode == 0, res.stderr
    return out, res.stdout


def _csv(path: Path) -> dict[str, list[str]]:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    return {r[0]: r[1:] for r in rows}


def test_compare_of_two_targets_matches_their_single_compiles(compared, singles) -> None:
    out, _ = compared
    table = _csv(out / "compare.csv")
    assert table["figure"] == ["pcm", "rram"]
    for key in ("energy_j", "latency_s", "area_mm2", "arrays", "inferences_per_s"):
        assert [float(v) for v in table[key]] == \
            [float(singles[t]["totals"][key]) for t in ("pcm", "rram")], key
    assert [float(v) for v in table["accuracy_mean"]] == \
        [singles[t]["accuracy"]["mean"] for t in ("pcm", "rram")]
    layer = "/features/features.3/Conv"
    got = [float(v) for v in table[f"layer:{layer}:energy_j"]]
    want = [next(r["energy_j"] for r in singles[t]["layers"] if r["name"] == layer)
            for t in ("pcm", "rram")]
    assert got == want


def test_compare_prints_totals_and_per_layer_ratios(compared, singles) -> None:
    _, stdout = compared
    e = {t: singles[t]["totals"]["energy_j"] for t in singles}
    assert f"(×{e['rram'] / e['pcm']:.3g})" in stdout  # the ratio to the first target
    assert "per layer" in stdout and "/classifier/classifier.1/Gemm" in stdout
    arrays = {t: singles[t]["totals"]["arrays"] for t in singles}
    row = next(ln for ln in stdout.splitlines() if ln.startswith("│ arrays "))
    assert f"{arrays['rram']} (×{arrays['rram'] / arrays['pcm']:.3g})" in row
    assert not re.search(r"\de[+-]\d", stdout)


def test_compare_html_has_totals_layer_charts_and_the_l_labels(compared) -> None:
    out, _ = compared
    html = (out / "compare.html").read_text()
    for svg in re.findall(r"<svg.*?</svg>", html, flags=re.S):
        ET.fromstring(svg)
    assert "Comparison: pcm, rram" in html
    assert 'id="plot-layers-energy_j"' in html and ">L5<" in html
    assert "energy per inference (µJ)" in html or "energy per inference (nJ)" in html
    assert (out / "reports" / "pcm.json").exists() and (out / "reports" / "rram.json").exists()


def test_compare_of_saved_reports_equals_the_compare_of_targets(compared, tmp_path) -> None:
    out, _ = compared
    res = run_module("compare", out / "reports" / "pcm.json", out / "reports" / "rram.json",
                     "-o", tmp_path / "again")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "again" / "compare.csv").read_text() == (out / "compare.csv").read_text()


def test_compare_takes_output_folders(tmp_path: Path) -> None:
    for t in ("pcm", "sram"):
        assert run_module(CNN, "-t", t, "-o", tmp_path / t, "-q").returncode == 0
    res = run_module("compare", tmp_path / "pcm", tmp_path / "sram")
    assert res.returncode == 0, res.stderr
    assert "sram" in res.stdout and "pcm" in res.stdout


@pytest.mark.parametrize("argv, match", [
    (["compare", CNN, "-t", "pcm"], "two or more --target"),
    (["compare", CNN], "two or more --target"),
    (["compare", "nope.json", "nope2.json"], "no such report"),
    (["compare", CNN, CNN, "-t", "pcm", "-t", "rram"], "takes one model"),
])
def test_compare_misuse_is_one_clear_error(argv: list, match: str) -> None:
    res = run_module(*argv)
    assert res.returncode == 1
    assert match in res.stderr and "Traceback" not in res.stderr


def test_a_json_that_is_not_a_report_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"model": "x"}')
    (tmp_path / "b.json").write_text("[1, 2")
    res = run_module("compare", tmp_path / "a.json", tmp_path / "a.json")
    assert res.returncode == 1 and "not a compile report" in res.stderr
    res = run_module("compare", tmp_path / "b.json", tmp_path / "a.json")
    assert res.returncode == 1 and "not JSON" in res.stderr
