"""The JSON report is a public interface: every report validates against the shipped schema,
which is generated from the typed report model (imccompile.outputs.report_model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import imccompile
from imccompile.outputs import build_report, to_json
from imccompile.outputs.gen_schema import SCHEMA_PATH, render_schema

jsonschema = pytest.importorskip("jsonschema", reason="pip install jsonschema (test extra)")

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "imccompile" / "schemas" / "report.schema.json").read_text())
EXAMPLES = ["digits_cnn", "digits_transformer", "karate_gcn"]


def test_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("target", ["pcm", "rram", "sram"])
@pytest.mark.parametrize("model", EXAMPLES)
def test_reports_validate(model, target):
    res = imccompile.compile(ROOT / "examples" / f"{model}.onnx", target,
                             data=ROOT / "examples" / f"{model}.npz", samples=20)
    report = json.loads(to_json(res))
    jsonschema.validate(report, SCHEMA)
    assert report["accuracy"]["samples"] == (1 if model == "karate_gcn" else 20)  # GCN: one graph


def test_schema_rejects_a_broken_report():
    res = imccompile.compile(ROOT / "examples" / "digits_cnn.onnx", "pcm")
    report = json.loads(to_json(res))
    report["totals"]["energy_j"] = -1.0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, SCHEMA)
    del report["layers"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, SCHEMA)


def test_shipped_schema_is_generated_from_the_report_model():
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render_schema(), \
        "run: python -m imccompile.outputs.gen_schema"


def test_search_and_from_trial_sections_validate():
    res = imccompile.compile(ROOT / "examples" / "digits_cnn.onnx", "pcm", overrides=["adc.bits=6"],
                             data=ROOT / "examples" / "digits_cnn.npz", samples=10)
    trial = {"trial": 3, "stored_values": {"energy": 1e-6}, "values": {"energy": 1e-6},
             "pipeline": "", "overrides": ["adc.bits=6"], "same": True}
    report = json.loads(json.dumps(build_report(res, search={"study": "s", "pareto": []},
                                                from_trial=trial)))
    jsonschema.validate(report, SCHEMA)
    assert report["search"] == {"study": "s", "pareto": []} and report["from_trial"] == trial
    report["from_trial"]["trial"] = -1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, SCHEMA)


def test_a_search_without_feasible_point_writes_a_valid_report(tmp_path):
    """--max-arrays 0 leaves no feasible trial: the report holds the search section alone."""
    import subprocess
    import sys

    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, "-m", "imccompile.cli", str(ROOT / "examples" / "digits_cnn.onnx"),
                        "--target", "pcm", "--search", "2", "--objectives", "energy",
                        "--max-arrays", "0", "--json", str(out), "-q"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    assert "layers" not in report and report["search"]["chosen"] is None
    jsonschema.validate(report, SCHEMA)
