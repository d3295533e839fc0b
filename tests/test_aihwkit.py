"""The read-out chain aihwkit users expect, and the aihwkit-pcm preset against aihwkit's figures.

Each law is checked against a hand calculation in numpy (not the simulator's code), on the
simulation model that onnxruntime runs: read-out noise (std relative to the ADC full scale), per
vector abs_max input scaling, the output bound, drift compensation as a digital gain after the
ADC from a one-hot reference read through the converters, and times below t0 (no drift).
The acceptance: aihwkit's reference protocol (benchmarks/aihwkit_ref.py, numpy seeds) with the
converters off within 10 % of aihwkit 1.2.0's figures (shared/reference/peer-vgg8.md).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from imccompile import noise as nz
from imccompile.errors import DataError
from imccompile.frontend import import_model
from imccompile.simulate import Dataset, SimOptions, evaluate, simulation_parts
from imccompile.spec import load_target
from onnx_builders import conv_model, gemm_model, matmul_left_model, matmul_right_model
from cli_helpers import cli

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("aihwkit_ref", ROOT / "benchmarks" / "aihwkit_ref.py")
assert _spec and _spec.loader
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

LEVELS = 255  # the preset's 9-bit signed ADC: codes -255..255 (aihwkit out_res 1/(2^9 - 2))
IDEAL_DEVICES = ["noise.model=none"]


def _run(model, x: np.ndarray, overrides: list[str], opts: SimOptions, seed: int = 0,
         name: str = "a") -> np.ndarray:
    """The simulation model's output for input ``x`` (one sample) under aihwkit-pcm."""
    graph = import_model(model)
    target = load_target("aihwkit-pcm", overrides)
    data = Dataset([{name: x}], None, "<test>")
    res, cal = evaluate(graph, target, data, seeds=1, opts=opts, base_seed=seed, metric="relerr")
    from imccompile.simulate import Runner

    out: list[np.ndarray] = []
    Runner(simulation_parts(graph, target, cal, opts, seed), list(graph.outputs)).run(
        data, lambda i, o: out.append(o[0]))
    return out[0]


# -- read-out noise ----------------------------------------------------------------------------

def test_read_noise_std_is_relative_to_the_adc_full_scale():
    """Zero inputs read only the converter chain's noise: with full scale FS = out_bound x
    w_max x 1 (device units, abs_max inputs) and read_noise r, every output is a Gaussian of
    std r x FS rounded to the ADC step FS / 255: std sqrt((r FS)^2 + step^2 / 12) by hand."""
    w = np.full((128, 64), 0.25, np.float32)  # (K=128, N=64) Gemm B, w_max = 0.25
    x = np.zeros((256, 128), np.float32)
    r, bound = 10 / LEVELS, 8.0  # sigma = 10 ADC steps
    ov = IDEAL_DEVICES + ["adc.out_bound_unit=device", f"adc.out_bound={bound}",
                          f"adc.read_noise={r}"]
    y = _run(gemm_model([256, 128], w), x, ov, SimOptions())
    step = bound * 0.25 / LEVELS
    want = math.sqrt((r * LEVELS * step) ** 2 + step ** 2 / 12)
    assert y.std() == pytest.approx(want, rel=0.03)  # 16384 reads
    assert abs(y.mean()) < 0.05 * want
    np.testing.assert_allclose(np.round(y / step), y / step, atol=1e-3)  # on the ADC grid
    again = _run(gemm_model([256, 128], w), x, ov, SimOptions())
    np.testing.assert_array_equal(y, again)  # seeded: the same seed, the same draw
    other = _run(gemm_model([256, 128], w), x, ov, SimOptions(), seed=1)
    assert not np.array_equal(y, other)
    quiet = _run(gemm_model([256, 128], w), x, ov, SimOptions(noise=False))
    assert not quiet.any()  # noise off: no read-out noise either


# -- abs_max input scaling ---------------------------------------------------------------------

def test_abs_max_scales_every_input_vector_before_the_7_bit_dac():
    """y = s / 63 x round(63 x / s) @ W with s = max |x| of each vector (aihwkit ABS_MAX,
    inp_res 1/(2^7 - 2)); a per-layer range would quantize the small vector on the big one's
    step."""
    rng = np.random.default_rng(3)
    w = rng.uniform(-1, 1, (32, 8)).astype(np.float32)
    x = rng.standard_normal((4, 32)).astype(np.float32)
    x[0] *= 100.0
    x[2] *= 0.01
    y = _run(gemm_model([4, 32], w), x, IDEAL_DEVICES,
             SimOptions(noise=False, adc=False, weights=False))
    s = np.abs(x).max(axis=1, keepdims=True)
    want = (s / 63) * (np.rint(x / s * 63) @ w.astype(np.float64))
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    layer = _run(gemm_model([4, 32], w), x, IDEAL_DEVICES + ["dac.input_scaling=calibrated"],
                 SimOptions(noise=False, adc=False, weights=False))
    assert not np.allclose(layer[2], want[2], rtol=1e-2)


@pytest.mark.parametrize("kind", ["gemm_trans_a", "matmul_3d", "matmul_left"])
def test_abs_max_vectors_follow_the_layer_kind(kind):
    """The vectors scaled are the crossbar's input vectors: Gemm(transA) columns of A, the last
    axis of a MatMul input, the columns of the right operand of W @ X."""
    rng = np.random.default_rng(0)
    w = rng.uniform(-1, 1, (32, 8)).astype(np.float32)
    opts = SimOptions(noise=False, adc=False, weights=False)
    if kind == "gemm_trans_a":
        x = rng.standard_normal((32, 4)).astype(np.float32)
        x[:, 0] *= 50
        y = _run(gemm_model([32, 4], w, transA=1), x, IDEAL_DEVICES, opts)
        s = np.abs(x.T).max(axis=1, keepdims=True)
        want = s / 63 * (np.rint(x.T / s * 63) @ w)
    elif kind == "matmul_3d":
        x = rng.standard_normal((2, 4, 32)).astype(np.float32)
        x[0, 1] *= 30
        y = _run(matmul_right_model([2, 4, 32], w), x, IDEAL_DEVICES, opts, name="x")
        s = np.abs(x).max(axis=-1, keepdims=True)
        want = s / 63 * (np.rint(x / s * 63) @ w)
    else:
        a = w.T.copy()  # (8, 32) @ x (32, 5)
        x = rng.standard_normal((32, 5)).astype(np.float32)
        x[:, 2] *= 40
        y = _run(matmul_left_model(a, [32, 5]), x, IDEAL_DEVICES, opts, name="x")
        s = np.abs(x).max(axis=0, keepdims=True)
        want = a @ (np.rint(x / s * 63) * s / 63)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("attrs, shape", [({"pads": [1, 1, 1, 1]}, (2, 3, 6, 7)),
                                          ({"strides": [2, 1], "dilations": [1, 2]}, (1, 3, 7, 8))])
def test_abs_max_scales_every_conv_patch(attrs, shape):
    """A conv's input vectors are its patches (zero padding included): each is divided by its
    own max |x| before the 7-bit DAC; the hand calculation cuts the patches out one by one."""
    rng = np.random.default_rng(0)
    w = rng.uniform(-1, 1, (4, 3, 3, 2)).astype(np.float32)
    x = rng.standard_normal(shape).astype(np.float32)
    x[0, :, 0, 0] *= 50
    y = _run(conv_model(list(shape), w, **attrs), x, IDEAL_DEVICES,
             SimOptions(noise=False, adc=False, weights=False), name="x")
    p = attrs.get("pads", [0, 0, 0, 0])
    st, dl = attrs.get("strides", [1, 1]), attrs.get("dilations", [1, 1])
    xp = np.pad(x, [(0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])])
    h = (xp.shape[2] - dl[0] * 2 - 1) // st[0] + 1
    v = (xp.shape[3] - dl[1] - 1) // st[1] + 1
    want = np.zeros((shape[0], 4, h, v))
    for n, i, j in np.ndindex(shape[0], h, v):
        patch = xp[n, :, i * st[0]:i * st[0] + 2 * dl[0] + 1:dl[0],
                   j * st[1]:j * st[1] + dl[1] + 1:dl[1]]
        s = np.abs(patch).max() or 1.0
        want[n, :, i, j] = (w * (np.rint(patch / s * 63) / 63 * s)[None]).reshape(4, -1).sum(1)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_abs_max_refuses_grouped_convs():
    w = np.ones((2, 1, 3, 3), np.float32)
    model = conv_model([1, 2, 5, 5], w, group=2)
    with pytest.raises(DataError, match=r"layer '.*' \(conv, 2 group\(s\)\): dac\.input_scaling "
                                        r"'abs_max' .* convs of one group only"):
        _run(model, np.ones((1, 2, 5, 5), np.float32), IDEAL_DEVICES, SimOptions(), name="x")


# -- output bound ------------------------------------------------------------------------------

@pytest.mark.parametrize("unit, bound", [("weight", 12.0), ("device", 12.0 * 0.5)])
def test_output_bound_clips_partial_sums(unit, bound):
    """x = 1 (abs_max: s = 1): column 0 sums 256 x 0.5 = 128, beyond the bound, and reads the
    bound; column 1 sums 256 x 0.01 = 2.56, rounded to the ADC step bound / 255. The bound is
    12 raw (unit 'weight', aihwkit's default) or 12 devices at g_max = 12 x w_max = 6."""
    w = np.stack([np.full(256, 0.5), np.full(256, 0.01)], axis=1).astype(np.float32)
    x = np.ones((1, 256), np.float32)
    y = _run(gemm_model([1, 256], w), x, [f"adc.out_bound_unit={unit}"], SimOptions(noise=False))
    step = bound / LEVELS
    np.testing.assert_allclose(y[0], [bound, round(2.56 / step) * step], rtol=1e-5)


def test_each_row_tile_has_its_own_bounded_adc():
    """K = 512 rows on 256-row arrays: two ADC reads per output, each rounded to the step and
    clipped at the bound (12 raw) before the digital sum, on abs_max-scaled 7-bit inputs."""
    rng = np.random.default_rng(8)
    w = rng.uniform(-0.2, 0.2, (512, 16)).astype(np.float32)
    w[:256, 0] = 0.3  # column 0's first tile sums past the bound for positive inputs
    x = np.abs(rng.standard_normal((4, 512))).astype(np.float32)
    y = _run(gemm_model([4, 512], w), x, IDEAL_DEVICES + ["adc.read_noise=0"],
             SimOptions(weights=False))
    step = 12.0 / LEVELS
    s = x.max(axis=1, keepdims=True)
    xq = np.rint(x / s * 127) / 127  # x >= 0: the unsigned 7-bit range 0..127

    def adc(v):
        return np.clip(np.rint(v / step), -LEVELS, LEVELS) * step

    want = s * (adc(xq[:, :256] @ w[:256]) + adc(xq[:, 256:] @ w[256:]))
    assert (xq[:, :256] @ w[:256])[:, 0].min() > 12  # the clip is exercised
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_output_bound_is_refused_bit_accurate_and_with_a_worst_case_range():
    w = np.full((16, 4), 0.5, np.float32)
    with pytest.raises(DataError, match=r"--adc-range full_scale: the target fixes the ADC's "
                                        r"range \(adc\.out_bound = 12\)"):
        _run(gemm_model([1, 16], w), np.ones((1, 16), np.float32), IDEAL_DEVICES,
             SimOptions(adc_range="full_scale"))
    assert _run(gemm_model([1, 16], w), np.ones((1, 16), np.float32),
                IDEAL_DEVICES + ["adc.out_bound=null"], SimOptions(adc_range="full_scale")).any()
    with pytest.raises(DataError, match=r"adc\.out_bound .* not simulated bit-accurately"):
        _run(gemm_model([1, 16], w), np.ones((1, 16), np.float32), IDEAL_DEVICES,
             SimOptions(bit_accurate=True))


# -- drift compensation ------------------------------------------------------------------------

def test_drift_compensation_is_a_gain_after_the_adc():
    """Gaussian devices that only drift: every weight is d = (t/t0)^-nu of itself. The reference
    read (one-hot rows at the full input, through the ADC of step FS / 255) gives the gain
    g = mean|ADC(w)| / mean|ADC(d w)|; the layer outputs g x ADC(d x @ W) (by hand), not
    ADC(g d x @ W) (the gain folded into the weights)."""
    nu, t0, t = 0.25, 20.0, 200.0  # d = 10^-0.25 = 0.562 (no rounding ties)
    d = (t / t0) ** -nu
    rng = np.random.default_rng(5)
    w = (rng.integers(-255, 256, (64, 16)) / 255 * 0.3).astype(np.float64)
    w[0] = 0.3  # every column reaches 0.3: 9-bit codes are exact (step 0.3 / 255)
    x = rng.standard_normal((8, 64)).astype(np.float32)
    ov = ["noise.model=gaussian", "noise.programming_sigma=0", "noise.read_sigma=0",
          f"noise.drift_nu={nu}", f"noise.t0_s={t0}", f"noise.t_inference_s={t}",
          "adc.out_bound_unit=device", "adc.out_bound=4.1234", "adc.read_noise=0"]
    y = _run(gemm_model([8, 64], w.astype(np.float32)), x, ov, SimOptions())
    step = 4.1234 * 0.3 / LEVELS  # (no rounding ties) device units: out_bound x w_max x x_full (abs_max: 1)

    def adc(v):
        return np.clip(np.rint(v / step), -LEVELS, LEVELS) * step

    gain = np.abs(adc(w)).mean() / np.abs(adc(d * w)).mean()
    s = np.abs(x).max(axis=1, keepdims=True)
    xq = np.rint(x / s * 63) / 63
    want = gain * s * adc(xq @ (d * w))
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    folded = s * adc(xq @ (gain * d * w))
    assert np.abs(folded - want).max() > 10 * np.abs(y - want).max()
    assert gain != pytest.approx(1 / d, rel=1e-3)  # the quantized reference is not exact


def test_ideal_reference_read_gives_the_exact_gain_after_the_adc():
    """noise.drift_reference = ideal: the same layer, its reference read without converter
    error: the gain is mean|w| / mean|d w| = 1 / d exactly, still applied after the ADC."""
    nu, t0, t = 0.25, 20.0, 200.0
    d = (t / t0) ** -nu
    rng = np.random.default_rng(5)
    w = (rng.integers(-255, 256, (64, 16)) / 255 * 0.3).astype(np.float64)
    w[0] = 0.3
    x = rng.standard_normal((8, 64)).astype(np.float32)
    ov = ["noise.model=gaussian", "noise.programming_sigma=0", "noise.read_sigma=0",
          f"noise.drift_nu={nu}", f"noise.t0_s={t0}", f"noise.t_inference_s={t}",
          "adc.out_bound_unit=device", "adc.out_bound=4.1234", "adc.read_noise=0",
          "noise.drift_reference=ideal"]
    y = _run(gemm_model([8, 64], w.astype(np.float32)), x, ov, SimOptions())
    step = 4.1234 * 0.3 / LEVELS

    def adc(v):
        return np.clip(np.rint(v / step), -LEVELS, LEVELS) * step

    s = np.abs(x).max(axis=1, keepdims=True)
    xq = np.rint(x / s * 63) / 63
    want = (1 / d) * s * adc(xq @ (d * w))
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_exact_reference_gain_is_mean_abs_ratio():
    """aihwkit reads the reference with one-hot inputs (eye): the exact gain is
    mean |w(t0)| / mean |w(t)|, not the ratio of the all-ones column sums."""
    w0 = np.array([[1.0, -2.0], [3.0, 4.0]])
    wt = np.array([[0.5, -1.0], [1.0, 4.0]])
    assert nz.exact_gain(w0, wt) == pytest.approx(10 / 6.5)


# -- times shorter than t0 ---------------------------------------------------------------------

def test_times_below_t0_are_accepted_without_drift():
    """t = 5 s < t0 = 20 s: accepted; a PCM device at g_max keeps its programmed value on
    average (no drift: (t/t0)^-nu would raise it by ~7 %), with 1/f read noise of relative std
    0.0088 x sqrt(ln((5 s + 250 ns) / 500 ns)) = 0.0353 (aihwkit, by hand)."""
    t = load_target("pcm", ["noise.t_inference_s=5"])
    assert t.noise.t_inference_s == 5
    g = np.ones(200_000)
    g0, gt = nz.device_read(g, t.noise, 25.0, np.random.default_rng(0), 5.0)
    ratio = gt / np.where(g0 > 0, g0, 1)
    assert ratio.mean() == pytest.approx(1.0, abs=0.002)
    assert ratio.std() == pytest.approx(0.0088 * math.sqrt(math.log((5 + 250e-9) / 500e-9)),
                                        rel=0.03)
    gauss = load_target("pcm", ["noise.model=gaussian", "noise.drift_nu=0.1",
                                "noise.read_sigma=0", "noise.t_inference_s=0"])
    p0, pt = nz.device_read(g, gauss.noise, 25.0, np.random.default_rng(1), 0.0)
    np.testing.assert_array_equal(p0, pt)


# -- the preset --------------------------------------------------------------------------------

def test_a_digital_adc_has_no_read_out_chain():
    from imccompile.errors import SpecError

    with pytest.raises(SpecError, match=r"adc\.read_noise: expected no value \(null\) with type "
                                        r"'digital'"):
        load_target("sram", ["adc.read_noise=0.01"])
    with pytest.raises(SpecError, match=r"adc\.out_bound: expected no value"):
        load_target("aihwkit-pcm", ["adc.type=digital", "adc.read_noise=null"])


def test_preset_is_listed_and_carries_aihwkit_defaults():
    t = load_target("aihwkit-pcm")
    assert (t.dac.bits, t.precision.input_bits, t.adc.bits) == (7, 7, 9)
    assert 2 ** (t.dac.bits - 1) - 1 == (2 ** 7 - 2) // 2  # inp_res 1/(2^7 - 2) on [-1, 1]
    assert 2 ** (t.adc.bits - 1) - 1 == (2 ** 9 - 2) // 2  # out_res 1/(2^9 - 2)
    assert t.adc.out_bound == 12 and t.adc.read_noise == pytest.approx(0.06 / 12)
    assert t.dac.input_scaling == "abs_max" and t.array.devices_per_slice == 1
    assert t.array.g_max_us == 25 and t.noise.t0_s == 20 and t.noise.drift_compensation
    out = cli("targets")
    assert out.returncode == 0 and "aihwkit-pcm" in out.stdout


@pytest.mark.parametrize("t_aihwkit", sorted(ref.AIHWKIT))
def test_device_noise_only_matches_aihwkit(t_aihwkit):
    """Acceptance: the reference protocol with the converters off, mean over 10 seeds, within
    10 % of aihwkit 1.2.0's relative error at 1 s, 1 h, 1 day and 1 year."""
    mean, _ = ref.relative_error(t_aihwkit, converters=False)
    assert mean == pytest.approx(ref.AIHWKIT[t_aihwkit][0], rel=0.10)
