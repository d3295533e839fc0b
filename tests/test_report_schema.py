"""The JSON report is a public interface: every report validates against the shipped schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import imccompile
from imccompile.outputs import to_json

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
