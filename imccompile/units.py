"""The one unit system of what people read: SI prefixes with units (terminal, HTML, search
progress). Machine outputs (JSON, CSV) keep base SI units, the unit in the key (``energy_j``).

Kept free of heavy imports so the core (the search's progress line) and the presentation
(``imccompile.outputs.display``, which re-exports it) share it.
"""

from __future__ import annotations

import math

from imccompile.objectives import OBJECTIVES

PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"),
             (1e-6, "µ"), (1e-9, "n"), (1e-12, "p"), (1e-15, "f"), (1e-18, "a"))
UNITS = (("_mm2", "mm²"), ("_j", "J"), ("_per_s", "/s"), ("_s", "s"), ("_w", "W"))  # key suffixes


def si(value: float, unit: str) -> str:
    """The one formatter of quantities people read (terminal and HTML): 3 significant digits and
    an SI prefix — 1.23 µJ, 45.6 ns, 116 k inferences/s (a unit that is a word stands apart from
    its prefix). Areas stay in mm² (4.41 mm², 0.0441 mm²): the unit every figure is given in."""
    value = float(value)
    if value == 0 or not math.isfinite(value):
        return f"{value:g} {unit}".strip()
    if unit == "mm²":
        return f"{value:.3g} mm²"
    factor, prefix = PREFIXES[-1]
    for factor, prefix in PREFIXES:
        if abs(value) >= factor * 0.9995:  # 999.7 nJ prints as 1 µJ, not 1e+03 nJ
            break
    word = len(unit.split("/")[0]) > 3
    return f"{value / factor:.3g} {prefix}{' ' if word and prefix else ''}{unit}".strip()


def unit_of(key: str) -> str:
    """The unit of a machine key (``energy_j`` -> J, ``inferences_per_s`` -> inferences/s) or
    of a search objective (``energy`` -> J)."""
    if key in OBJECTIVES:
        return OBJECTIVES[key][2]
    if key == "inferences_per_s":
        return "inferences/s"
    if key.startswith("tops"):  # TOPS, TOPS/W, TOPS/mm²: figures of merit, no prefix
        return ""
    return next((unit for suffix, unit in UNITS if key.endswith(suffix)), "")
