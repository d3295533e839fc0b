"""Per-layer sensitivity (issue 17 item 3): each crossbar layer alone on the hardware.

The reference is a hand computation in numpy: a 2-layer MLP where layer A is quantized to 2 bits
(per-column symmetric: codes in [-1, 1], step = the column's max |w|) and layer B to 8 bits
(codes in [-127, 127]); with noise, DAC and ADC off, "A alone on the hardware" is the MLP with
A's weights quantized and B's exact, and its top-1 agreement with the float MLP gives A's drop.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import helper

import imccompile
from imccompile.simulate import SimOptions

from cli_helpers import cli
from onnx_builders import init, model, vi

N = 300


def mlp(tmp_path):
    rng = np.random.default_rng(7)
    wa = rng.standard_normal((16, 32)).astype(np.float32)
    ba = (0.1 * rng.standard_normal(32)).astype(np.float32)
    wb = rng.standard_normal((32, 10)).astype(np.float32)
    bb = (0.1 * rng.standard_normal(10)).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "WA", "BA"], ["h"], name="A"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", "WB", "BB"], ["y"], name="B")]
    m = model(nodes, [vi("x", [1, 16])], [vi("y", [1, 10])],
              [init("WA", wa), init("BA", ba), init("WB", wb), init("BB", bb)])
    path = tmp_path / "mlp.onnx"
    path.write_bytes(m.SerializeToString())
    x = rng.standard_normal((N, 16)).astype(np.float32)
    data = tmp_path / "mlp.npz"
    np.savez(data, x=x)
    return path, data, (wa, ba, wb, bb), x


def quantized(w: np.ndarray, bits: int) -> np.ndarray:
    """By hand: per-column symmetric, codes in [-(2^(b-1)-1), 2^(b-1)-1]."""
    q = 2 ** (bits - 1) - 1
    step = np.abs(w).max(axis=0) / q
    return np.clip(np.rint(w / step), -q, q) * step


def forward(x, wa, ba, wb, bb) -> np.ndarray:
    return np.maximum(x.astype(np.float64) @ wa + ba, 0) @ wb + bb


def test_the_fragile_layer_ranks_first_with_the_hand_computed_drop(tmp_path) -> None:
    path, data, (wa, ba, wb, bb), x = mlp(tmp_path)
    ref = forward(x, wa, ba, wb, bb).argmax(1)
    a_alone = forward(x, quantized(wa, 2), ba, wb, bb).argmax(1)
    b_alone = forward(x, wa, ba, quantized(wb, 8), bb).argmax(1)
    drop_a, drop_b = 100 * (1 - (a_alone == ref).mean()), 100 * (1 - (b_alone == ref).mean())
    assert drop_a > 5 > drop_b  # the model is built so: A at 2 bits is fragile

    res = imccompile.compile(path, "pcm", overrides={"precision.weight_bits": 8},
                             passes="quantize{weight_bits=2,match=A}", data=data,
                             sim_options=SimOptions(noise=False, adc=False, dac=False),
                             sensitivity=True, max_accuracy_drop=None)
    sens = res.sensitivity
    assert sens is not None and sens.metric == "agreement"
    assert [r.name for r in sens.layers] == ["A", "B"]
    one_sample = 100 / N + 1e-9  # float32 onnxruntime vs float64 numpy: at most one argmax tie
    by = {r.name: r for r in sens.layers}
    assert abs(by["A"].drop - drop_a) <= one_sample
    assert abs(by["B"].drop - drop_b) <= one_sample  # B's row does not include A's 2 bits
    assert (by["A"].label, by["B"].label) == ("L1", "L2")


def test_with_noise_and_converters_the_two_bit_layer_still_leads(tmp_path) -> None:
    path, data, *_ = mlp(tmp_path)
    res = imccompile.compile(path, "pcm", passes="quantize{weight_bits=2,match=A}", data=data,
                             seeds=2, sensitivity=True, max_accuracy_drop=None)
    assert [r.name for r in res.sensitivity.layers][0] == "A"
    assert res.sensitivity.seeds == 2 and all(r.std >= 0 for r in res.sensitivity.layers)


def test_cli_report_json_and_terminal(tmp_path) -> None:
    path, data, *_ = mlp(tmp_path)
    out = tmp_path / "r.json"
    r = cli(path, "--target", "pcm", "--data", data, "--passes",
            "quantize{weight_bits=2,match=A}", "--sensitivity", "--json", out)
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    sens = rep["sensitivity"]
    assert [x["name"] for x in sens["layers"]] == ["A", "B"]
    assert [x["rank"] for x in sens["layers"]] == [1, 2]
    assert sens["unit"] == "percentage points"
    assert "sensitivity" in r.stdout and "L1" in r.stdout
    # the guardrail names the biggest contributor from the sensitivity
    assert "biggest contributor: A" in r.stderr


def test_sensitivity_needs_data(tmp_path) -> None:
    path, _, *_ = mlp(tmp_path)
    r = cli(path, "--target", "pcm", "--sensitivity")
    assert r.returncode == 1 and "--sensitivity needs --data" in r.stderr
    assert "Traceback" not in r.stderr
    r = cli(path, "--sensitivity")
    assert r.returncode == 1 and "--sensitivity needs a --target" in r.stderr
