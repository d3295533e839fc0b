"""Property (issue 18): any combination of valid command-line options ends in exit 0 with a
report that says what was asked, or in exit 1 with one clean line; never exit 2, never a
traceback, never a file of the user's lost. Small on purpose (digits model, two samples, a few
examples) so it runs in well under a minute.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from imccompile.cli import main

ROOT = Path(__file__).resolve().parent.parent
CNN = str(ROOT / "examples" / "digits_cnn.onnx")

SETS = ["adc.bits=6", "adc.bits=4", "array.rows=128", "array.cols=64", "precision.input_bits=4",
        "precision.weight_bits=4", "array.bits_per_cell=1", "noise.model=none",
        "technology.clock_hz=1", "hierarchy.tiles_per_chip=1"]
PASSES = ["", "fold-bn", "prune{ratio=0.5}", "prune{ratio=1.0}", "quantize{weight_bits=2}",
          "quantize{act_bits=1}", "prune{ratio=0.3,granularity=column},quantize{weight_bits=4}"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    d = dict(np.load(ROOT / "examples" / "digits_cnn.npz"))
    path = tmp_path_factory.mktemp("tiny") / "tiny.npz"
    np.savez(path, **{k: v[:2] for k, v in d.items()})
    return path


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.data())
def test_valid_option_combinations_end_cleanly(tmp_path, tiny, capsys, data):
    argv = [CNN, "-t", data.draw(st.sampled_from(["pcm", "rram", "sram"]), label="target")]
    for s in data.draw(st.lists(st.sampled_from(SETS), max_size=3, unique=True), label="sets"):
        argv += ["--set", s]
    passes = data.draw(st.sampled_from(PASSES), label="passes")
    if passes:
        argv += ["--passes", passes]
    argv += ["--overflow", data.draw(st.sampled_from(["chips", "reload", "error"]))]
    if data.draw(st.booleans(), label="replicate"):
        argv += ["--replicate", data.draw(st.sampled_from(["*=2", "/features/features.0/Conv=3"]))]
    if data.draw(st.booleans(), label="auto-replicate"):
        argv.append("--auto-replicate")
    with_data = data.draw(st.booleans(), label="data")
    if with_data:
        argv += ["--data", str(tiny), "--seeds", str(data.draw(st.integers(1, 2))),
                 "--samples", str(data.draw(st.integers(1, 3)))]
        argv += data.draw(st.sampled_from([[], ["--ideal"], ["--bit-accurate"],
                                           ["--adc-range", "full_scale"]]), label="sim")
        argv += ["--metric", data.draw(st.sampled_from(["auto", "top1", "agreement", "cosine"]))]
    out = tmp_path / "out"
    if data.draw(st.booleans(), label="-o"):
        argv += ["-o", str(out), "--force"]
    report = tmp_path / "r.json"
    report.unlink(missing_ok=True)
    argv += ["--json", str(report), "-q"]
    code = main(argv)
    err = capsys.readouterr().err
    event(f"exit {code}")
    assert code in (0, 1), (code, argv, err)
    assert "Traceback" not in err and "internal error" not in err, (argv, err)
    if code == 1:
        assert err.startswith("imccompile: error: ") and err.count("\n") == 1, (argv, err)
        return
    rep = json.loads(report.read_text())
    # prune{ratio=1.0} is defined: every weight pruned, no arrays, the outputs are the biases
    assert rep["model"] == "digits_cnn"
    assert (rep["totals"]["arrays"] == 0) == (passes == "prune{ratio=1.0}"), rep["totals"]
    if with_data:
        acc = rep["accuracy"]
        assert acc["samples"] in (1, 2) and np.isfinite(acc["mean"]), acc
    if "-o" in argv:
        assert (out / ".imccompile-output").is_file() and (out / "report.json").is_file()
