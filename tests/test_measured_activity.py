"""Input bit activity measured on --data (imccompile.activity source "data"): the fraction of 1
bits of the quantized DAC input codes, checked against a hand count (numpy popcount), on the
first `simulate.ACTIVITY_SAMPLES` samples."""

from __future__ import annotations

import numpy as np
import pytest

from imccompile.compiler import compile as compile_model
from imccompile.outputs import build_report
from imccompile.simulate import ACTIVITY_SAMPLES
from tests.onnx_builders import gemm_model

K, N, BITS = 16, 4, 8  # neurosim-sram22: 8-bit unsigned inputs, bit-serial


def _layer_rows(report) -> list[dict]:
    rows: list[dict] = []

    def walk(o):
        if isinstance(o, dict):
            if "activity_source" in o:
                rows.append(o)
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    walk(report)
    return rows


@pytest.mark.parametrize("samples", [5, ACTIVITY_SAMPLES + 6])
def test_data_activity_is_the_hand_count_of_dac_code_bits(samples: int) -> None:
    rng = np.random.default_rng(3)
    w = rng.standard_normal((K, N)).astype(np.float32)
    # non-negative integer inputs whose largest is 255: an 8-bit unsigned DAC whose top code
    # is the range has step 1, so the DAC codes are the inputs themselves
    x = rng.integers(0, 256, size=(samples, 1, K)).astype(np.float32)
    x[0, 0, 0] = 255.0
    res = compile_model(gemm_model((1, K), w), "neurosim-sram22", data={"a": x},
                        max_accuracy_drop=None)
    measured = x[:ACTIVITY_SAMPLES].astype(np.uint8)
    ones = np.unpackbits(measured[..., None], axis=-1).sum()  # popcount, by hand
    want = ones / (measured.size * BITS)
    rows = _layer_rows(build_report(res))
    assert rows and all(r["activity_source"] == "data" for r in rows)
    assert rows[0]["input_activity"] == pytest.approx(want, rel=1e-6)
    assert res.cost.layer("gemm").energy  # the cost was re-priced with it


def test_pwm_activity_counts_the_first_samples_only_with_more_data() -> None:
    """With more samples than ACTIVITY_SAMPLES (one calibration run for the ADC ranges and
    the activity on pcm): the activity is the mean pulse length of the first
    ACTIVITY_SAMPLES, by hand; the later samples (all at the longest pulse) do not count."""
    rng = np.random.default_rng(6)
    w = rng.standard_normal((K, N)).astype(np.float32)
    x = rng.integers(0, 64, size=(ACTIVITY_SAMPLES + 16, 1, K)).astype(np.float32)
    x[0, 0, 0] = 255.0
    x[ACTIVITY_SAMPLES:] = 255.0
    res = compile_model(gemm_model((1, K), w), "pcm", data={"a": x},
                        overrides=["noise.model=none"], max_accuracy_drop=None)
    rows = _layer_rows(build_report(res))
    want = x[:ACTIVITY_SAMPLES].mean() / 255.0
    assert rows[0]["input_activity"] == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("signed", [False, True])
def test_pwm_activity_is_the_mean_pulse_length(signed: bool) -> None:
    """A PWM DAC drives a row for a time proportional to its code: the activity is the mean
    |code| over the longest code (pcm: 8-bit PWM inputs), not a count of 1 bits; a negative
    code drives its row as long as its magnitude."""
    rng = np.random.default_rng(4)
    w = rng.standard_normal((K, N)).astype(np.float32)
    # small codes (0..63) and one 255 (signed: 127) that sets the range (step 1): mean pulse
    # 0.12, while the same codes' fraction of 1 bits would be about 0.37
    x = rng.integers(0, 64, size=(8, 1, K)).astype(np.float32)
    longest = 127.0 if signed else 255.0
    if signed:
        x[:, :, ::2] *= -1.0
    x[0, 0, 0] = longest
    res = compile_model(gemm_model((1, K), w), "pcm", data={"a": x},
                        overrides=["noise.model=none"], max_accuracy_drop=None)
    rows = _layer_rows(build_report(res))
    assert rows and rows[0]["activity_source"] == "data"
    assert rows[0]["input_activity"] == pytest.approx(np.abs(x).mean() / longest, rel=1e-5)


def test_activity_of_a_layer_with_several_rows_per_sample_stays_a_fraction() -> None:
    """A product over several rows per sample (a GCN's nodes, a sequence): the activity is the
    mean over every row of every sample, not their sum (it was 10.4 on the karate GCN)."""
    rng = np.random.default_rng(5)
    w = rng.standard_normal((K, N)).astype(np.float32)
    x = rng.integers(0, 256, size=(3, 7, K)).astype(np.float32)
    x[0, 0, 0] = 255.0
    res = compile_model(gemm_model((7, K), w), "neurosim-sram22", data={"a": x},
                        max_accuracy_drop=None)
    codes = x.astype(np.uint8)
    want = np.unpackbits(codes[..., None], axis=-1).sum() / (codes.size * BITS)
    rows = _layer_rows(build_report(res))
    assert rows[0]["input_activity"] == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("opset", [11, 17])
def test_signed_codes_count_their_twos_complement_bits(opset: int) -> None:
    """Negative DAC codes are driven in two's complement (bit-serial, rram: signed inputs);
    the count is by hand on the codes, also on an opset-11 model (no integer Clip there)."""
    from onnx import helper

    from tests.onnx_builders import init, model, vi

    rng = np.random.default_rng(5)
    w = rng.standard_normal((K, N)).astype(np.float32)
    x = rng.normal(0.0, 40.0, size=(12, 1, K)).astype(np.float32)
    node = helper.make_node("Gemm", ["a", "B"], ["y"], name="gemm")
    m = model([node], [vi("a", (1, K))], [vi("y", None)], [init("B", w)], opset=opset)
    res = compile_model(m, "rram", data={"a": x}, overrides=["noise.model=none"],
                        max_accuracy_drop=None)
    step, lo, hi = res.calibration.act["gemm"]
    assert lo < 0 < hi
    bits = res.target.precision.input_bits
    codes = np.clip(np.rint(x / np.float32(step)), lo, hi).astype(np.int64)
    assert (codes < 0).any() and (codes > 0).any()
    words = (codes % (1 << bits)).astype(np.uint64)
    ones = sum(int(bin(int(c)).count("1")) for c in words.ravel())  # popcount, by hand
    rows = _layer_rows(build_report(res))
    assert rows[0]["activity_source"] == "data"
    assert rows[0]["input_activity"] == pytest.approx(ones / (codes.size * bits), rel=1e-6)
