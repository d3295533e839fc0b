"""Weight quantization and device non-idealities, in numpy, on the mapped representation.

A weight column is quantized symmetrically to b bits (integer codes in [-Q, Q], Q = 2^(b-1)-1,
one step per column). What the cells store (the magnitude with differential schemes, q + Q with
offset) is split into the layout's slices of base-2^c digits (c bits per cell; the rules are in
imccompile.layout); the digit of slice s is programmed as a normalized conductance
g = digit / full_scale[s] on the device(s) of its polarity, so the largest code reaches g_max
(differential: the other polarity's device is at 0 and still noisy). Noise then acts on the
conductances; the effective code is rebuilt from them.

PCM statistics follow aihwkit's PCMLikeNoiseModel (Nandakumar et al. 2019), see
shared/reference/hardware.md: programming noise sigma(g) in µS (fitted at g_max = 25 µS and
scaled by g_max / 25 µS), drift exponent nu drawn from the *target* conductance (|mu + sigma z|),
1/f read noise whose size follows the *programmed* conductance and grows with log time. Time
``t`` counts from programming (aihwkit counts its t_inference from t0 = 20 s, i.e. our t = its
t_inference + t0); nothing drifts before t0 (``max(t, t0)``), so any t >= 0 is accepted.

Global drift compensation (aihwkit's GlobalDriftCompensation) is a digital gain after the ADC,
from a reference read of the arrays through the converters (`imccompile.readout`); here,
`device_codes` gives the codes at t0 and at t it needs, and `noisy_codes` / `noisy_slices` fold
the gain of an ideal (converter-free) reference read into the codes.
"""

from __future__ import annotations

import math

import numpy as np

from imccompile.layout import n_slices, qmax, slice_full_scale

T_READ_S = 250e-9  # aihwkit PCM read time t_r
CHUNK = 1 << 21  # weights per noise draw of a big layer (bounds the float64 temporaries)


def quantize_columns(w: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-column symmetric quantization: (integer codes as float, step per column)."""
    q_max = qmax(bits)
    wmax = np.abs(w).max(axis=0)
    step = np.where(wmax > 0, wmax / q_max, 1.0).astype(np.float64)
    q = np.clip(np.rint(w / step), -q_max, q_max)
    return q, step


PCM_G_MAX_REF_US = 25.0  # g_max the programming-noise polynomial was fitted at


def pcm_programming_sigma_us(g_norm: np.ndarray, g_max_us: float = PCM_G_MAX_REF_US) -> np.ndarray:
    return (0.26348 + 1.9650 * g_norm - 1.1731 * g_norm ** 2) * (g_max_us / PCM_G_MAX_REF_US)


def pcm_drift_nu(g_norm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    gl = np.log(np.maximum(g_norm, 1e-12))
    mu = np.clip(-0.0155 * gl + 0.0244, 0.049, 0.1)
    sd = np.clip(-0.0125 * gl - 0.0059, 0.008, 0.045)
    return np.abs(mu + sd * rng.standard_normal(g_norm.shape))


def pcm_read_sigma_rel(g_norm: np.ndarray, t: float) -> np.ndarray:
    q = np.minimum(0.0088 / np.maximum(g_norm ** 0.65, 1e-3), 0.2)
    return q * math.sqrt(max(math.log((t + T_READ_S) / (2 * T_READ_S)), 0.0))


def device_read(g_norm: np.ndarray, noise, g_max_us: float, rng: np.random.Generator,
                t: float) -> tuple[np.ndarray, np.ndarray]:
    """Programmed-and-drifted conductance (normalized) at t0 and at t, for targets g_norm."""
    if noise.model == "pcm":
        g = g_norm * g_max_us
        sigma = pcm_programming_sigma_us(g_norm, g_max_us)
        g_prog = np.maximum(g + sigma * rng.standard_normal(g.shape), 0.0)
        gp_norm = g_prog / g_max_us
        nu = pcm_drift_nu(np.maximum(g_norm, 1e-12), rng)  # from the target conductance
        g_t = g_prog * (max(t, noise.t0_s) / noise.t0_s) ** (-nu)
        read = pcm_read_sigma_rel(gp_norm, t)  # from the programmed conductance
        g_t = g_t + np.abs(g_t) * read * rng.standard_normal(g.shape)
        return gp_norm, np.maximum(g_t, 0.0) / g_max_us
    if noise.model == "gaussian":
        g_prog = g_norm + noise.programming_sigma * rng.standard_normal(g_norm.shape)
        g_t = g_prog
        if noise.drift_nu > 0:
            g_t = g_prog * (max(t, noise.t0_s) / noise.t0_s) ** (-noise.drift_nu)
        g_t = g_t + noise.read_sigma * rng.standard_normal(g_norm.shape)
        return g_prog, g_t
    return g_norm, g_norm


def slice_digits(q: np.ndarray, bits: int, target) -> tuple[list[np.ndarray], int, int]:
    """Ideal per-slice signed digits of codes ``q``: (digits per slice, base, offset) with
    ``q == sum(base**s * digits[s]) - offset``; offset is Q for the offset scheme, else 0."""
    return _slices(q, bits, target, None, None)


def noisy_slices(q: np.ndarray, bits: int, target, rng: np.random.Generator,
                 t: float | None = None) -> tuple[list[np.ndarray], int, int]:
    """Per-slice effective signed digits read back from the devices (see `slice_digits`)."""
    return _slices(q, bits, target, rng, t)


def exact_gain(code0: np.ndarray, code_t: np.ndarray) -> float:
    """Drift-compensation gain of an ideal reference read: aihwkit's one-hot (eye) inputs read
    every weight alone, and the gain is mean |w(t0)| / mean |w(t)| (1 when nothing is left)."""
    ref_t = float(np.abs(code_t).sum(dtype=np.float64))
    return float(np.abs(code0).sum(dtype=np.float64)) / ref_t if ref_t > 0 else 1.0


def device_slices(q: np.ndarray, bits: int, target, rng: np.random.Generator,
                  t: float | None = None
                  ) -> tuple[list[np.ndarray], list[np.ndarray], int, int]:
    """(digits at t0, digits at t, base, offset) per slice read back from the devices, without
    drift compensation (see `slice_digits`)."""
    eff0, eff_t, base, offset, _ = _device_slices(q, bits, target, rng, t)
    return eff0, eff_t, base, offset


def _slices(q: np.ndarray, bits: int, target, rng: np.random.Generator | None,
            t: float | None) -> tuple[list[np.ndarray], int, int]:
    eff0, eff_t, base, offset, ideal = _device_slices(q, bits, target, rng, t)
    if not ideal and target.noise.drift_compensation:
        code0 = sum(base ** s * e for s, e in enumerate(eff0)) - offset
        code_t = sum(base ** s * e for s, e in enumerate(eff_t)) - offset
        if np.abs(code_t).sum() > 0:
            alpha = exact_gain(code0, code_t)
            eff_t = [e * alpha for e in eff_t]
            # compensation is a digital gain on the output, after the offset is subtracted:
            # alpha * (sum - offset) == sum(base^s * eff_t[s]) - offset with this correction
            if offset:
                eff_t[0] = eff_t[0] + offset * (1.0 - alpha)
    return eff_t, base, offset


def _device_slices(q: np.ndarray, bits: int, target, rng: np.random.Generator | None,
                   t: float | None) -> tuple[list[np.ndarray], list[np.ndarray], int, int, bool]:
    """(digits at t0, digits at t, base, offset, ideal) per slice, before drift compensation."""
    noise = target.noise
    a = target.array
    c = a.bits_per_cell
    scheme = a.signed_scheme
    q_max = qmax(bits)
    levels = 2 ** c - 1
    full_scale = slice_full_scale(bits, c, scheme)
    slices = n_slices(bits, c, scheme)
    t = noise.t_inference_s if t is None else t
    n_dev = a.devices_per_slice
    ideal = rng is None or noise.model == "none"
    if scheme == "offset":
        mags = {"+": q + q_max}
        signs = {"+": 1.0}
    else:
        mags = {"+": np.where(q > 0, q, 0), "-": np.where(q < 0, -q, 0)}
        signs = {"+": 1.0, "-": -1.0}
    eff0 = [np.zeros(q.shape) for _ in range(slices)]
    eff_t = [np.zeros(q.shape) for _ in range(slices)]
    for pol, mag in mags.items():
        rest = mag.astype(np.int64)
        for s in range(slices):
            digit = rest % (levels + 1)
            rest = rest // (levels + 1)
            if ideal:
                eff0[s] += signs[pol] * digit
                eff_t[s] += signs[pol] * digit
                continue
            assert rng is not None
            g = digit / full_scale[s]  # the slice's largest digit at g_max
            g0 = np.zeros(q.shape)
            gt = np.zeros(q.shape)
            for _ in range(n_dev):  # parallel devices average their errors
                p0, pt = device_read(g, noise, a.g_max_us, rng, t)
                g0 += p0
                gt += pt
            weight = signs[pol] * full_scale[s] / n_dev
            eff0[s] += weight * g0
            eff_t[s] += weight * gt
    offset = q_max if scheme == "offset" else 0
    return eff0, eff_t, levels + 1, offset, ideal


def device_codes(q: np.ndarray, bits: int, target, rng: np.random.Generator,
                 t: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Effective (float) integer codes read back from the devices holding codes ``q``, at t0
    (as programmed) and at ``t``, without drift compensation.

    A layer of more than `CHUNK` weights is drawn in column blocks of about `CHUNK` weights
    (one generator, block after block: deterministic for a seed), which bounds the noise draw's
    temporaries; layers up to `CHUNK` weights are drawn in one piece."""
    if target.noise.model == "none":
        codes = q.astype(np.float64)
        return codes, codes
    if q.size <= CHUNK or q.ndim != 2:
        eff0, eff_t, base, offset, _ = _device_slices(q, bits, target, rng, t)
        return (sum(base ** s * e for s, e in enumerate(eff0)) - offset,
                sum(base ** s * e for s, e in enumerate(eff_t)) - offset)
    width = max(1, CHUNK // max(1, q.shape[0]))
    out0 = np.empty(q.shape, np.float32)
    out_t = np.empty(q.shape, np.float32)
    for c0 in range(0, q.shape[1], width):
        eff0, eff_t, base, offset, _ = _device_slices(q[:, c0:c0 + width], bits, target, rng, t)
        out0[:, c0:c0 + width] = sum(base ** s * e for s, e in enumerate(eff0)) - offset
        out_t[:, c0:c0 + width] = sum(base ** s * e for s, e in enumerate(eff_t)) - offset
    return out0, out_t


def noisy_codes(q: np.ndarray, bits: int, target, rng: np.random.Generator,
                t: float | None = None) -> np.ndarray:
    """Effective (float) integer codes read back from the devices holding codes ``q``, with the
    drift compensation of an ideal reference read (`exact_gain`, over the whole layer) folded
    in when the target compensates drift (`device_codes`: the draw)."""
    code0, code_t = device_codes(q, bits, target, rng, t)
    if target.noise.model == "none" or not target.noise.drift_compensation:
        return code_t
    gain = exact_gain(code0, code_t)
    return code_t * (np.float32(gain) if code_t.dtype == np.float32 else gain)
