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
CHUNK = 1 << 16  # weights per noise draw of a big layer: its float32 temporaries (8 devices x 3
# draws per weight, 6 MB) stay in the caches, about 1.4 x faster than 1 M-weight blocks


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


def pcm_drift_params(g_norm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) of the drift exponent nu of devices programmed to target ``g_norm``."""
    gl = np.log(np.maximum(g_norm, 1e-12))
    mu = np.clip(-0.0155 * gl + 0.0244, 0.049, 0.1)
    sd = np.clip(-0.0125 * gl - 0.0059, 0.008, 0.045)
    return mu, sd


def pcm_drift_nu(g_norm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    mu, sd = pcm_drift_params(g_norm)
    return np.abs(mu + sd * _normal(rng, g_norm))


def _normal(rng: np.random.Generator, like: np.ndarray) -> np.ndarray:
    """Standard normal draws of ``like``'s shape, in its precision (float32 or float64);
    float32 ones by `box_muller32`."""
    if like.dtype == np.float32:
        return box_muller32(rng, like.shape)
    return rng.standard_normal(like.shape, dtype=np.float64)


_WORDS64 = (np.random.PCG64, np.random.PCG64DXSM, np.random.SFC64, np.random.Philox)  # whose
# random_raw gives 64 random bits a word


def box_muller32(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """float32 standard normal draws by the Box-Muller transform (Box & Muller 1958):
    r = sqrt(-2 ln u1), z = (r cos 2 pi u2, r sin 2 pi u2) for independent uniforms u1 in
    (0, 1], u2 in [0, 1), both from one 64-bit word of ``rng``'s bit generator: u1 from its
    top 40 bits (evaluated in float64, so the tails reach 7.4 sigma: a draw beyond has
    probability 1e-13), u2 from its low 24. Exact in distribution up to that resolution, and
    2.5-3 x faster than numpy's float32 ziggurat on this kind of machine (measured: 10 ns a
    draw against 3.5-4)."""
    if not isinstance(rng.bit_generator, _WORDS64):  # e.g. MT19937: 32-bit raw values
        return rng.standard_normal(shape, dtype=np.float32)
    n = math.prod(shape)
    m = (n + 1) // 2
    raw = rng.bit_generator.random_raw(m)
    r = (raw >> np.uint64(24)).astype(np.float64)
    r += 1.0
    r *= 2.0 ** -40
    np.log(r, out=r)
    r *= -2.0
    np.sqrt(r, out=r)
    r32 = r.astype(np.float32)
    del r
    theta = (raw & np.uint64(0xFFFFFF)).astype(np.float32)
    del raw
    theta *= np.float32(2.0 * math.pi / 2 ** 24)
    out = np.empty(n, np.float32)
    np.cos(theta, out=out[:m])
    out[:m] *= r32
    np.sin(theta[:n - m], out=out[m:])
    out[m:] *= r32[:n - m]
    return out.reshape(shape)


def pcm_read_sigma_rel(g_norm: np.ndarray, t: float) -> np.ndarray:
    """min(0.0088 / g^0.65, 0.2) * sqrt(ln((t + t_r) / (2 t_r))), in g_norm's precision.

    g^-0.65 as exp(-0.65 ln g) (several times faster than a float32 power); aihwkit's floor
    g^0.65 >= 1e-3 never binds under the 0.2 cap (0.0088 / 1e-3 > 0.2)."""
    g = np.asarray(g_norm)
    dt = g.dtype.type if g.dtype in (np.float32, np.float64) else np.float64
    q = np.asarray(np.log(np.maximum(g, dt(1e-30))))  # an array also for a scalar g
    q *= dt(-0.65)
    np.exp(q, out=q)
    q *= dt(0.0088)
    np.minimum(q, dt(0.2), out=q)
    q *= dt(math.sqrt(max(math.log((t + T_READ_S) / (2 * T_READ_S)), 0.0)))
    return q


def device_read(g_norm: np.ndarray, noise, g_max_us: float, rng: np.random.Generator,
                t: float, index: np.ndarray | None = None, copies: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """Programmed-and-drifted conductance (normalized) at t0 and at t, for targets g_norm
    (any shape: every element one device; float32 targets are drawn in float32).

    ``index``: the devices' targets are ``g_norm[index]`` (``g_norm`` a table of the few
    target levels): what depends on the target alone is evaluated once per level; the result
    has ``index``'s shape. ``copies`` > 0: that many devices per target, each drawn on its own
    (the result has shape ``(copies, *index.shape)``); the target tables are looked up once."""
    if index is None:
        index = np.arange(g_norm.size).reshape(g_norm.shape)
        g_norm = g_norm.reshape(-1)
    shape = index.shape if copies <= 0 else (copies, *index.shape)
    like = np.empty(shape, g_norm.dtype)  # shape and precision of the draws
    dt = g_norm.dtype.type
    if noise.model == "pcm":
        sigma = pcm_programming_sigma_us(g_norm, g_max_us).astype(g_norm.dtype)
        g_prog = _normal(rng, like)
        g_prog *= np.take(sigma, index)
        g_prog += np.take(g_norm * dt(g_max_us), index)
        np.maximum(g_prog, dt(0.0), out=g_prog)  # µS
        mu, sd = (v.astype(g_norm.dtype) for v in pcm_drift_params(np.maximum(g_norm, 1e-12)))
        nu = _normal(rng, like)  # from the target conductance
        nu *= np.take(sd, index)
        nu += np.take(mu, index)
        np.abs(nu, out=nu)
        nu *= dt(-math.log(max(t, noise.t0_s) / noise.t0_s))
        g_t = np.exp(nu, out=nu)  # (t / t0) ** -nu
        g_t *= g_prog  # >= 0
        g_prog /= dt(g_max_us)
        gp_norm = g_prog
        read = pcm_read_sigma_rel(gp_norm, t)  # from the programmed conductance
        read *= g_t
        read *= _normal(rng, like)
        g_t += read
        del read
        np.maximum(g_t, dt(0.0), out=g_t)
        g_t /= dt(g_max_us)
        return gp_norm, g_t
    if copies > 0:
        index = np.broadcast_to(index, shape)
    g = g_norm[index]
    if noise.model == "gaussian":
        g_prog = g + dt(noise.programming_sigma) * _normal(rng, like)
        g_t = g_prog
        if noise.drift_nu > 0:
            g_t = g_prog * dt((max(t, noise.t0_s) / noise.t0_s) ** (-noise.drift_nu))
        g_t = g_t + dt(noise.read_sigma) * _normal(rng, like)
        return g_prog, g_t
    return g, g


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
    return list(eff0), list(eff_t), base, offset


def _slices(q: np.ndarray, bits: int, target, rng: np.random.Generator | None,
            t: float | None) -> tuple[list[np.ndarray], int, int]:
    e0, et, base, offset, ideal = _device_slices(q, bits, target, rng, t)
    eff0, eff_t = list(e0), list(et)
    if not ideal and target.noise.drift_compensation:
        code0 = _codes(e0, base, offset)
        code_t = _codes(et, base, offset)
        if np.abs(code_t).sum(dtype=np.float64) > 0:
            alpha = np.float32(exact_gain(code0, code_t))
            eff_t = [e * alpha for e in eff_t]
            # compensation is a digital gain on the output, after the offset is subtracted:
            # alpha * (sum - offset) == sum(base^s * eff_t[s]) - offset with this correction
            if offset:
                eff_t[0] = eff_t[0] + offset * (1.0 - alpha)
    return eff_t, base, offset


def _device_slices(q: np.ndarray, bits: int, target, rng: np.random.Generator | None,
                   t: float | None) -> tuple[np.ndarray, np.ndarray, int, int, bool]:
    """(digits at t0, digits at t, base, offset, ideal) per slice (arrays of shape
    (slices, *q.shape)), before drift compensation.

    The noisy read is one vectorized float32 draw over every (device, polarity, slice,
    weight): no Python loop over slices or devices."""
    noise = target.noise
    a = target.array
    c = a.bits_per_cell
    scheme = a.signed_scheme
    q_max = qmax(bits)
    base = 2 ** c
    full_scale = np.asarray(slice_full_scale(bits, c, scheme), np.float32)
    slices = n_slices(bits, c, scheme)
    t = noise.t_inference_s if t is None else t
    n_dev = a.devices_per_slice
    ideal = rng is None or noise.model == "none"
    qi = np.rint(q).astype(np.int32)  # weight bits <= 16
    if scheme == "offset":
        mags = (qi + np.int32(q_max))[None]
        signs = np.ones(1, np.float32)
    else:
        mags = np.stack([np.maximum(qi, 0), np.maximum(-qi, 0)])
        signs = np.array([1.0, -1.0], np.float32)
    del qi
    # digits[p, s] = (mag_p // base^s) % base, by shift and mask (base = 2^c)
    shifts = (c * np.arange(slices, dtype=np.int32)).reshape(1, -1, *([1] * q.ndim))
    digits = (mags[:, None] >> shifts) & np.int32(base - 1)
    del mags
    sgn = signs.reshape(-1, *([1] * (q.ndim + 1)))
    if ideal:
        eff = (sgn * digits.astype(np.float32)).sum(axis=0)
        return eff, eff, base, q_max if scheme == "offset" else 0, True
    assert rng is not None
    # a device's target is one of base levels per slice: index (slice, digit) into a table
    levels = (np.arange(base, dtype=np.float32)[None, :] / full_scale[:, None]).reshape(-1)
    digits += (np.arange(slices, dtype=np.int32) * base).reshape(1, -1, *([1] * q.ndim))
    idx = digits.astype(np.int16 if levels.size < 2 ** 15 else np.int32)
    del digits
    # parallel devices (n_dev per slice) average their errors
    p0, pt = device_read(levels, noise, a.g_max_us, rng, t, index=idx, copies=n_dev)
    del idx
    fs = full_scale.reshape(1, -1, *([1] * q.ndim))
    weight = sgn * fs / np.float32(n_dev)
    eff0 = (weight * p0.sum(axis=0, dtype=np.float32)).sum(axis=0)
    del p0
    eff_t = (weight * pt.sum(axis=0, dtype=np.float32)).sum(axis=0)
    offset = q_max if scheme == "offset" else 0
    return eff0, eff_t, base, offset, False


def _codes(eff: np.ndarray, base: int, offset: int) -> np.ndarray:
    """sum_s base^s * eff[s] - offset: the effective codes from per-slice digits."""
    w = (float(base) ** np.arange(len(eff))).astype(eff.dtype).reshape(-1, *([1] * (eff.ndim - 1)))
    return (w * eff).sum(axis=0) - eff.dtype.type(offset)


def device_codes(q: np.ndarray, bits: int, target, rng: np.random.Generator,
                 t: float | None = None, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Effective (float32) integer codes read back from the devices holding codes ``q``, at t0
    (as programmed) and at ``t``, without drift compensation.

    A layer of more than `CHUNK` weights is drawn in column blocks of about `CHUNK` weights,
    block i from its own generator (the i-th child of ``rng``, `numpy.random.Generator.spawn`),
    so that ``threads`` worker threads can draw blocks at once and the codes do not depend on
    how many do; the blocks bound the draw's temporaries. Layers up to `CHUNK` weights are
    drawn in one piece from ``rng``."""
    if target.noise.model == "none":
        codes = q.astype(np.float32)
        return codes, codes
    if q.size <= CHUNK or q.ndim != 2:
        eff0, eff_t, base, offset, _ = _device_slices(q, bits, target, rng, t)
        return _codes(eff0, base, offset), _codes(eff_t, base, offset)
    width = max(1, CHUNK // max(1, q.shape[0]))
    starts = list(range(0, q.shape[1], width))
    out0 = np.empty(q.shape, np.float32)
    out_t = np.empty(q.shape, np.float32)

    def block(job: tuple[int, np.random.Generator]) -> None:
        c0, gen = job
        eff0, eff_t, base, offset, _ = _device_slices(q[:, c0:c0 + width], bits, target, gen, t)
        out0[:, c0:c0 + width] = _codes(eff0, base, offset)
        out_t[:, c0:c0 + width] = _codes(eff_t, base, offset)

    jobs = list(zip(starts, rng.spawn(len(starts))))
    if threads > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(block, jobs))
    else:
        for j in jobs:
            block(j)
    return out0, out_t


def noisy_codes(q: np.ndarray, bits: int, target, rng: np.random.Generator,
                t: float | None = None, threads: int = 1) -> np.ndarray:
    """Effective (float32) integer codes read back from the devices holding codes ``q``, with
    the drift compensation of an ideal reference read (`exact_gain`, over the whole layer)
    folded in when the target compensates drift (`device_codes`: the draw)."""
    code0, code_t = device_codes(q, bits, target, rng, t, threads)
    if target.noise.model == "none" or not target.noise.drift_compensation:
        return code_t
    return code_t * np.float32(exact_gain(code0, code_t))
