"""Search outputs (issue 17 item 6): trials.csv, pareto.csv, the re-create command, Optuna names.

References: the stored Optuna study itself (every trial, its state and values, read back with
optuna.load_study), and running the printed command in a shell (its accuracy and energy must be
the chosen trial's).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import subprocess
import sys

import optuna
import pytest

from cli_helpers import cli
from search_helpers import ROOT

CNN = ROOT / "examples" / "digits_cnn.onnx"
DATA = ROOT / "examples" / "digits_cnn.npz"


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("so")
    db = tmp / "s.db"
    out = tmp / "out dir"  # a space: the command must quote it
    r = cli(CNN, "--target", "pcm", "--data", DATA, "--samples", "90", "--search", "6",
            "--storage", f"sqlite:///{db}", "--study", "so", "-o", out,
            "--replicate", "/features/*=1")
    assert r.returncode == 0, r.stderr
    return r, out, db


def rows(path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_trials_csv_holds_every_trial_with_every_column(searched) -> None:
    _, out, db = searched
    study = optuna.load_study(study_name="so", storage=f"sqlite:///{db}")
    trials = rows(out / "trials.csv")
    assert [int(t["trial"]) for t in trials] == [t.number for t in study.trials]
    assert [t["state"] for t in trials] == [t.state.name for t in study.trials]
    header = list(trials[0])
    for col in ("accuracy", "accuracy_drop", "energy_j", "latency_s", "area_mm2", "arrays",
                "feasible", "pareto", "chosen", "pipeline", "overrides"):
        assert col in header
    knobs = {c for c in header if c.startswith("knob:")}
    assert "knob:adc.bits" in knobs and len(knobs) >= 5
    for t, st in zip(trials, study.trials):
        if st.state.name == "COMPLETE":
            assert float(t["accuracy"]) == st.values[0]
            assert float(t["energy_j"]) == st.values[1]
            assert float(t["latency_s"]) > 0 and float(t["area_mm2"]) > 0
            if "adc.bits" in st.params:
                assert int(t["knob:adc.bits"]) == st.params["adc.bits"]
    assert sum(t["chosen"] == "1" for t in trials) == 1


def test_pareto_csv_has_the_same_columns_and_only_the_front(searched) -> None:
    _, out, _ = searched
    trials, front = rows(out / "trials.csv"), rows(out / "pareto.csv")
    assert list(front[0]) == list(trials[0])
    assert {r["trial"] for r in front} == {r["trial"] for r in trials if r["pareto"] == "1"}
    assert all(r["feasible"] == "1" for r in front)


def test_recreate_command_is_one_line_and_reproduces_the_chosen_point(searched, tmp_path) -> None:
    r, out, _ = searched
    report = json.loads((out / "report.json").read_text())
    cmd = report["search"]["recreate_command"]
    assert report["command"].startswith("imccompile ") and "--search 6" in report["command"]
    assert "\n" not in cmd and cmd in r.stdout.splitlines()  # printed on one line, whole
    argv = shlex.split(cmd)
    assert argv[0] == "imccompile" and "--replicate" in argv
    rep_json = tmp_path / "again.json"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    res = subprocess.run([sys.executable, "-m", "imccompile.cli", *argv[1:], "--json",
                          str(rep_json), "-q"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    again = json.loads(rep_json.read_text())
    chosen = next(t for t in report["search"]["trials"]
                  if t["trial"] == report["search"]["chosen"])
    assert again["accuracy"]["mean"] == chosen["values"]["accuracy"]
    assert again["totals"]["energy_j"] == chosen["values"]["energy"]
    # a shell runs it as printed: the quoting holds (an echo through sh gives the same argv)
    echoed = subprocess.run(["sh", "-c", "printf '%s\\n' " + cmd.split(" ", 1)[1]],
                            capture_output=True, text=True)
    assert echoed.stdout.splitlines() == argv[1:]


def test_optuna_study_has_metric_names_and_user_attrs(searched) -> None:
    _, _, db = searched
    study = optuna.load_study(study_name="so", storage=f"sqlite:///{db}")
    assert study.metric_names == ["accuracy", "energy_j"]
    attrs = study.user_attrs
    assert attrs["model"].endswith("digits_cnn.onnx") and attrs["target"] == "pcm"
    assert attrs["objectives"] == "accuracy,energy" and attrs["max_accuracy_drop"] == 1.0
    t = study.trials[0]
    assert {"pipeline", "overrides", "values"} <= set(t.user_attrs)


def test_terminal_front_shows_the_per_layer_settings(searched) -> None:
    from imccompile.cli_search import per_layer

    r, _, _ = searched
    assert "per layer: weight bits/prune" in r.stdout and "L1 4b" in r.stdout  # trial 0
    assert per_layer({"weight_bits:/a": 4, "prune:/a": 0.25, "act_bits": 8,
                      "weight_bits:/b": 8, "prune:/b": 0.0}) == "L1 4b/0.25 L2 8b"


def test_report_command_leaves_out_where_the_report_is_written(tmp_path) -> None:
    """The same compile written to two folders gives the same report (and its command)."""
    reports = []
    for name in ("a", "b"):
        r = cli(CNN, "--target", "pcm", "-o", tmp_path / name, "--force", "-q")
        assert r.returncode == 0, r.stderr
        reports.append((tmp_path / name / "report.json").read_text())
    assert reports[0] == reports[1]
    command = json.loads(reports[0])["command"]
    assert command == f"imccompile {shlex.quote(str(CNN))} --target pcm"
