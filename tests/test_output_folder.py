"""-o/--out: what the folder holds, refusal of an existing folder, --force replacing it whole."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import onnx
import pytest

from imccompile.cli import main

ROOT = Path(__file__).resolve().parents[1]
CNN = str(ROOT / "examples" / "digits_cnn.onnx")
DATA = str(ROOT / "examples" / "digits_cnn.npz")


def test_folder_contents_with_data(tmp_path, capsys):
    out = tmp_path / "out"
    assert main([CNN, "-t", "pcm", "--data", DATA, "--samples", "20", "-o", str(out), "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        ".imccompile-output", "program", "report.html", "report.json", "simulation.onnx"]
    report = json.loads((out / "report.json").read_text())
    assert report["accuracy"]["samples"] == 20
    onnx.checker.check_model(onnx.load(str(out / "simulation.onnx")))
    assert (out / "report.html").read_text().lstrip().lower().startswith("<!doctype html")
    assert sorted(p.name for p in (out / "program").iterdir()) == [
        "conductances.npz", "graph.onnx", "placement.json", "schedule.json"]
    assert not list(tmp_path.glob(".out.*"))  # no temporary folder left


def test_folder_without_data_has_no_simulation_model(tmp_path, capsys):
    out = tmp_path / "o"
    assert main([CNN, "-t", "rram", "-o", str(out), "-q"]) == 0
    assert not (out / "simulation.onnx").exists()
    assert (out / "report.json").exists() and (out / "report.html").exists()


def test_existing_folder_is_refused_then_replaced_with_force(tmp_path, capsys):
    out = tmp_path / "out"
    assert main([CNN, "-t", "pcm", "-o", str(out), "-q"]) == 0
    (out / "mine.txt").write_text("keep me")
    assert main([CNN, "-t", "pcm", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "--force" in err
    assert (out / "mine.txt").read_text() == "keep me"  # untouched
    assert main([CNN, "-t", "pcm", "-o", str(out), "--force", "-q"]) == 0
    assert not (out / "mine.txt").exists()  # replaced as a whole
    assert json.loads((out / "report.json").read_text())["model"] == "digits_cnn"


@pytest.mark.parametrize("flag", ["-o", "--program"])
def test_force_replaces_only_a_folder_imccompile_wrote(tmp_path, capsys, flag):
    """A folder without imccompile's marker file is the user's: --force refuses it, naming the
    marker; an empty folder holds nothing to lose and is written."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    assert main([CNN, "-t", "pcm", flag, str(out), "--force", "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{flag} {out}: --force replaces only a folder" in err
    assert ".imccompile-output" in err
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]
    (out / "thesis.tex").unlink()
    assert main([CNN, "-t", "pcm", flag, str(out), "--force", "-q"]) == 0  # empty: written
    assert (out / ".imccompile-output").is_file()
    assert main([CNN, "-t", "rram", flag, str(out), "--force", "-q"]) == 0  # marked: replaced


def test_search_folder_has_the_pareto_csv(tmp_path, capsys):
    out = tmp_path / "s"
    assert main([CNN, "-t", "pcm", "--data", DATA, "--samples", "30", "--search", "4",
                 "-o", str(out), "-q"]) == 0
    rows = list(csv.DictReader((out / "pareto.csv").open()))
    report = json.loads((out / "report.json").read_text())
    assert [int(r["trial"]) for r in rows] == [p["trial"] for p in report["search"]["pareto"]]
    assert sum(int(r["chosen"]) for r in rows) == 1
    assert "Pareto" in (out / "report.html").read_text()
