"""Hardware target specs: typed, validated, sourced descriptions of IMC chips.

    >>> from imccompile.spec import load_target
    >>> t = load_target("pcm", ["adc.bits=6"])
    >>> t.adc.energy_j()          # re-priced for 6 bits from the ADC's energy table

Field reference: ``docs/spec-format.md``.
"""

from __future__ import annotations

from imccompile.spec.load import (
    bundled_targets,
    load_target,
    parse_override,
    target_from_dict,
    target_summary,
)
from imccompile.spec.schema import (
    AdcSpec,
    Anchor,
    ArraySpec,
    BufferSpec,
    DacSpec,
    HierarchySpec,
    NocSpec,
    NoiseSpec,
    PeripherySpec,
    PrecisionSpec,
    SearchSpec,
    Target,
    TechnologySpec,
    leaf_paths,
)

__all__ = [
    "AdcSpec",
    "Anchor",
    "ArraySpec",
    "BufferSpec",
    "DacSpec",
    "HierarchySpec",
    "NocSpec",
    "NoiseSpec",
    "PeripherySpec",
    "PrecisionSpec",
    "SearchSpec",
    "Target",
    "TechnologySpec",
    "bundled_targets",
    "leaf_paths",
    "load_target",
    "parse_override",
    "target_from_dict",
    "target_summary",
]
