"""Bit-accurate simulation: splitting by input bit and weight slice is exact without the ADC,
and the ADC acts on each partial sum when it is on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import imccompile
from imccompile.errors import DataError
from imccompile.simulate import SimOptions, load_data, simulation_model_of

ROOT = Path(__file__).resolve().parents[1]
CASES = [  # (target, overrides): bit-serial offset scheme, PWM in-cell differential, digital
    ("rram", ["precision.weight_bits=8", "precision.input_bits=8"]),
    ("pcm", ["array.bits_per_cell=2", "search.bits_per_cell=[1,2,3,4]"]),
    ("sram", []),
]


def _outputs(model, graph, data):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.stack([sess.run([graph.outputs[0]], f)[0] for f in data.feeds])


@pytest.mark.parametrize("target,overrides", CASES)
@pytest.mark.parametrize("name", ["digits_cnn", "digits_transformer", "karate_gcn"])
def test_bit_planes_and_slices_recombine_exactly(name, target, overrides):
    kw = dict(overrides=overrides, data=ROOT / "examples" / f"{name}.npz", samples=8)
    model = ROOT / "examples" / f"{name}.onnx"
    plain = imccompile.compile(model, target, sim_options=SimOptions(noise=False, adc=False), **kw)
    bits = imccompile.compile(model, target,
                              sim_options=SimOptions(noise=False, adc=False, bit_accurate=True), **kw)
    data = load_data(ROOT / "examples" / f"{name}.npz", plain.graph, limit=8)
    a = _outputs(simulation_model_of(plain, 0), plain.graph, data)
    b = _outputs(simulation_model_of(bits, 0), bits.graph, data)
    assert a.shape == b.shape
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * float(np.abs(a).max()))


def test_adc_on_partials_changes_the_result_and_more_bits_help():
    model = ROOT / "examples" / "digits_cnn.onnx"
    data = ROOT / "examples" / "digits_cnn.npz"
    ov = ["precision.weight_bits=8", "precision.input_bits=8", "search.adc_bits=[3,4,8,10]"]
    errs = {}
    for bits in (3, 4, 8, 10):
        r = imccompile.compile(model, "rram", overrides=ov + [f"adc.bits={bits}"], data=data,
                               samples=30, sim_options=SimOptions(noise=False, bit_accurate=True))
        errs[bits] = r.accuracy["relative_error"]
    assert errs[3] > errs[4] > errs[8] >= errs[10]
    assert errs[3] > 5 * errs[10]


def test_bit_accurate_needs_integer_codes():
    with pytest.raises(DataError, match="bit-accurate"):
        SimOptions(dac=False, bit_accurate=True)
