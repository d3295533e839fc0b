"""How a column converter's energy, area and latency scale with its bits, by architecture.

`AdcSpec` (imccompile.spec.schema) prices the ADC from its tables over bits when the spec gives
two or more points; otherwise from the law of its ``adc.type`` here: through the spec's one point
(``value(b) = value(b0) * shape(b) / shape(b0)``), or, with no point at all, from the law's
absolute form where it has one (``sar``, ``zigzag``, ``digital``). Latency is always anchored at
``adc.latency_s``, given at ``adc.latency_bits`` (default ``adc.bits``).

The laws and their sources (``docs/spec-format.md`` repeats them):

* ``sar`` — energy: the lower envelope of the Murmann ADC survey (725 designs),
  E = 0.27 pJ + 1.45e-19 J * 4^ENOB (ENOB taken as the bits; reference/hardware.md); area: the
  ZigZag AIMC fit 10^(-0.0369 B + 1.206) * 2^B um² (a capacitive DAC of 2^B unit capacitors;
  ZigZag, reference/hardware.md); latency: one comparator cycle per bit, so ∝ B (successive
  approximation; ZigZag's delay B * (0.00653 rows + 0.64) ns is ∝ B too).
* ``flash`` — 2^B - 1 comparators convert at once: energy and area ∝ 2^B - 1, latency constant
  (Razavi, *Principles of Data Conversion System Design*, 1995, ch. 3).
* ``cco`` (time-based) — a current-controlled oscillator counts for a time of 2^B LSB periods
  (300 ps/LSB, Khaddam-Aljameh et al., JSSC 2022, HERMES core): energy and latency ∝ 2^B; area
  ∝ B (the B-bit counter; assumption: the oscillator is shared or small against it).
* ``sense_amp`` (multi-level current sense amplifier) — NeuroSim's MultilevelSenseAmp: a read of
  L = 2^B levels uses L - 1 sense amplifiers against L - 1 references in parallel: energy and area
  ∝ 2^B - 1, latency constant (DNN+NeuroSim V1.4, MultilevelSenseAmp.cpp).
* ``digital`` (adder tree) — no conversion: energy and area 0 with no point (the adder tree's
  cost sits in the array's read energy and the shift-add); one point stays constant; latency
  constant.
* ``zigzag`` — the ZigZag AIMC model (28 nm, fitted to 3 chips; reference/hardware.md):
  E = (100 B + 0.001 4^B) fF * V² at ``technology.vdd_v``; area 10^(-0.0369 B + 1.206) * 2^B um²;
  latency ∝ B (its delay B * (0.00653 rows + 0.64) ns at fixed rows).

Every shape is non-decreasing in B, so more bits never cost less.
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["ABSOLUTE_AREA", "ABSOLUTE_ENERGY", "ADC_TYPES", "area_shape", "energy_shape",
           "latency_shape", "law_value"]

ADC_TYPES = ("sar", "flash", "cco", "sense_amp", "digital", "zigzag")

#: Types whose energy (resp. area) law is absolute, so a spec may give no table for it.
ABSOLUTE_ENERGY = frozenset({"sar", "zigzag", "digital"})
ABSOLUTE_AREA = frozenset({"sar", "zigzag", "digital"})

MURMANN_FIXED_J = 0.27e-12
MURMANN_PER_4B_J = 1.45e-19
ZIGZAG_LINEAR_F = 100e-15
ZIGZAG_QUAD_F = 0.001e-15


def _zigzag_area_mm2(b: int) -> float:
    return 10.0 ** (-0.0369 * b + 1.206) * 2.0 ** b * 1e-6


def energy_shape(kind: str, b: int, vdd_v: float | None = None) -> float:
    """Energy per conversion at ``b`` bits: J for absolute laws, else a relative shape."""
    if kind == "sar":
        return MURMANN_FIXED_J + MURMANN_PER_4B_J * 4.0 ** b
    if kind == "zigzag":
        if vdd_v is None:
            raise ValueError("the zigzag ADC energy law needs technology.vdd_v")
        return (ZIGZAG_LINEAR_F * b + ZIGZAG_QUAD_F * 4.0 ** b) * vdd_v ** 2
    if kind in ("flash", "sense_amp"):
        return 2.0 ** b - 1.0
    if kind == "cco":
        return 2.0 ** b
    if kind == "digital":
        return 0.0
    raise ValueError(f"unknown ADC type {kind!r}")


def area_shape(kind: str, b: int) -> float:
    """Area of one converter at ``b`` bits: mm² for absolute laws, else a relative shape."""
    if kind in ("sar", "zigzag"):
        return _zigzag_area_mm2(b)
    if kind in ("flash", "sense_amp"):
        return 2.0 ** b - 1.0
    if kind == "cco":
        return float(b)
    if kind == "digital":
        return 0.0
    raise ValueError(f"unknown ADC type {kind!r}")


def latency_shape(kind: str, b: int) -> float:
    """Relative conversion time at ``b`` bits (always anchored at the spec's latency)."""
    if kind in ("sar", "zigzag"):
        return float(b)
    if kind == "cco":
        return 2.0 ** b
    if kind in ("flash", "sense_amp", "digital"):
        return 1.0
    raise ValueError(f"unknown ADC type {kind!r}")


def law_value(shape: Callable[[int], float], bits: int,
              anchor: tuple[int, float] | None) -> float:
    """The law at ``bits``: through ``anchor`` (bits0, value0) when given, else absolute.

    A zero shape (digital) anchored at a point keeps the point's value at every bits."""
    if anchor is None:
        return float(shape(bits))
    b0, v0 = anchor
    s0 = shape(b0)
    if s0 == 0 or v0 == 0:
        return float(v0)
    value = v0 * shape(bits) / s0
    return float(value) if math.isfinite(value) else float(v0)
