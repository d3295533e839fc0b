"""Accuracy guardrails (issue 17 item 1): the default budget of 1 point below the float model.

References: the budget rule by hand (points = 100 x the top-1 difference; dB for snr; percent of
relative error for relerr), and the search's stored trials (every trial's accuracy is in the
study, so the chosen trial can be checked against all of them).
"""

from __future__ import annotations

import json
import warnings

import pytest

import imccompile
from imccompile.errors import UsageError
from imccompile.guardrails import AccuracyWarning, accuracy_warning, parse_budget

from cli_helpers import cli
from search_helpers import ROOT

CNN = ROOT / "examples" / "digits_cnn.onnx"
DATA = ROOT / "examples" / "digits_cnn.npz"
README_PASSES = "prune{ratio=0.3,granularity=column},quantize{weight_bits=4}"


def acc(metric: str, float_value: float, mean: float) -> dict:
    return {"metric": metric, "float": float_value, "mean": mean}


def test_budget_units_by_hand() -> None:
    assert accuracy_warning(acc("top1", 0.99, 0.981), 1.0) is None  # 0.9 point
    text = accuracy_warning(acc("top1", 0.99, 0.979), 1.0)  # 1.1 points
    assert text is not None and "1.1 points below" in text and "--sensitivity" in text
    assert accuracy_warning(acc("top1", 0.99, 0.5), None) is None  # no budget
    assert accuracy_warning(acc("snr", 40.0, 39.5), 1.0) is None  # 0.5 dB
    assert "1.5 dB below" in accuracy_warning(acc("snr", 40.0, 38.5), 1.0)
    # relerr is better when lower: 0.0 -> 0.02 is 2 % of relative error
    assert "2 % of relative error" in accuracy_warning(acc("relerr", 0.0, 0.02), 1.0)
    sens = {"layers": [{"name": "conv9", "drop": 30.0}]}
    assert "biggest contributor: conv9" in accuracy_warning(acc("top1", 0.99, 0.5), 1.0, sens)


def test_parse_budget() -> None:
    assert parse_budget("none") is None and parse_budget("2.5") == 2.5
    for bad in ("-1", "nan", "inf", "x"):
        with pytest.raises(UsageError, match="--max-accuracy-drop"):
            parse_budget(bad)


def test_readme_python_example_warns_naming_the_layer() -> None:
    with pytest.warns(AccuracyWarning, match=r"points below the float model.*biggest "
                                             r"contributor: /classifier/classifier.3/Gemm"):
        res = imccompile.compile(CNN, "pcm", overrides={"adc.bits": 6}, passes=README_PASSES,
                                 data=DATA, seeds=2, sensitivity=True)
    assert 100 * (res.accuracy["float"] - res.accuracy["mean"]) > 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the quick start's compile stays within the budget
        res = imccompile.compile(CNN, "pcm", data=DATA, seeds=2)
    assert 100 * (res.accuracy["float"] - res.accuracy["mean"]) <= 1.0


def test_cli_compile_over_budget_warns_and_the_report_says_so(tmp_path) -> None:
    out = tmp_path / "r.json"
    r = cli(CNN, "--target", "pcm", "--data", DATA, "--passes", README_PASSES, "--json", out)
    assert r.returncode == 0, r.stderr
    assert "warning: accuracy (top1)" in r.stderr and "run with --sensitivity" in r.stderr
    rep = json.loads(out.read_text())
    assert rep["max_accuracy_drop"] == 1.0
    assert any("below the float model" in w for w in rep["warnings"])
    r = cli(CNN, "--target", "pcm", "--data", DATA, "--passes", README_PASSES,
            "--max-accuracy-drop", "none", "--json", out)
    assert r.returncode == 0 and "below the float model" not in r.stderr


def test_search_chooses_within_the_budget_by_default(tmp_path) -> None:
    out = tmp_path / "out"
    r = cli(CNN, "--target", "pcm", "--data", DATA, "--samples", "120", "--search", "6",
            "-o", out)
    assert r.returncode == 0, r.stderr
    search = json.loads((out / "report.json").read_text())["search"]
    drops = {t["trial"]: t["values"]["accuracy_drop"] for t in search["trials"]}
    energy = {t["trial"]: t["values"]["energy"] for t in search["trials"]}
    within = [t for t, d in drops.items() if d <= 1.0]
    assert any(d > 1.0 for d in drops.values())  # the study holds trials the budget rules out
    best = min(within, key=lambda t: (energy[t], t))
    assert search["chosen"] == best
    assert search["rule"].startswith("lowest energy trial within 1 point of the float model's "
                                     "top1")
    assert "chosen: trial" in r.stdout and "within 1 point" in r.stdout
    # disabled: the lowest energy on the front, whatever its accuracy
    out2 = tmp_path / "out2"
    r = cli(CNN, "--target", "pcm", "--data", DATA, "--samples", "120", "--search", "6",
            "--max-accuracy-drop", "none", "-o", out2)
    assert r.returncode == 0, r.stderr
    search = json.loads((out2 / "report.json").read_text())["search"]
    assert search["chosen"] == min(energy, key=lambda t: (energy[t], t))
    assert "no accuracy budget" in search["rule"]


def test_budget_without_data_is_refused() -> None:
    r = cli(CNN, "--target", "pcm", "--search", "2", "--objectives", "energy",
            "--max-accuracy-drop", "1")
    assert r.returncode == 1 and "--max-accuracy-drop needs --data" in r.stderr


def test_cli_prints_the_warning_once_with_python_warnings_on(tmp_path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    r = subprocess.run([sys.executable, "-m", "imccompile.cli", str(CNN), "--target", "pcm",
                        "--data", str(DATA), "--samples", "60", "--passes", README_PASSES],
                       capture_output=True, text=True, env=dict(env, COLUMNS="300"), timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("below the float model") == 1 and "AccuracyWarning" not in r.stderr
