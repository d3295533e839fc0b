"""The search's objectives and samplers: names only, no heavy import (the CLI's --help reads
them, and must start in a fraction of a second)."""

from __future__ import annotations

OBJECTIVES = {  # name -> (direction, report key, unit)
    "accuracy": ("maximize", "accuracy", ""),
    "energy": ("minimize", "energy_j", "J"),
    "latency": ("minimize", "latency_s", "s"),
    "area": ("minimize", "area_mm2", "mm²"),
}
SAMPLERS = ("nsga2", "tpe", "random")
