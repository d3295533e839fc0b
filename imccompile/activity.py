"""Input bit activity of the matrix layers, and the energy law it enters.

Activity of a layer = the fraction of its DAC input bits that are 1 (bit-serial inputs), or the
mean pulse length relative to the longest pulse (PWM): 1.0 is every row driven in every read.

The law, read in DNN+NeuroSim V1.4 (``SubArray.cpp``, conventional parallel mode): a read charges
the word line and discharges the bit-line capacitance only of the rows whose input bit is 1
(``readDynamicEnergyArray = capRow1 * vdd^2 * numRow * activityRowRead``; the word-line switch
matrix is priced with ``activityRowRead`` too), while the sense amplifiers with their reference
columns, the column mux and its decoder, the adders, shift-adders and buffers fire on every read
whatever the input. So here the ``array`` and ``dac`` energies of a layer scale with its
activity (`scaled_by_activity`); converters, shift-add, accumulation, buffers and the network do
not. (A PWM row driver and its cells draw current for the pulse's length: the same factor.)

Where the activity of a layer comes from, first that applies (`resolve`):

1. ``given``: per-layer values passed to the compile (``compile(..., activity={...})``, e.g.
   a peer's trace densities);
2. ``data``: measured on the calibration data (``Calibration.activity``, when the simulation
   provides it);
3. ``spec``: the target's stated default ``dac.input_activity`` (with its source);
4. ``worst_case``: the spec states none: 1.0 (every input bit 1), said so in the report.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from imccompile.errors import UsageError

if TYPE_CHECKING:
    from imccompile.spec import Target

__all__ = ["SCALED", "SOURCES", "Activity", "check_activity", "resolve", "scaled_by_activity"]

#: Energy components that scale with the input bit activity (see the module docstring).
SCALED = frozenset({"array", "dac"})
SOURCES = ("given", "data", "spec", "worst_case")


@dataclass(frozen=True)
class Activity:
    """The activity used for every matrix layer and where each value came from."""

    values: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def of(self, layer: str) -> float:
        return self.values.get(layer, 1.0)

    def source(self, layer: str) -> str:
        return self.sources.get(layer, "worst_case")


def check_activity(activity: Mapping[str, float], known: Iterable[str] | None = None) -> None:
    """Values in [0, 1], and (with ``known``) only layer names of the graph: else UsageError."""
    names = None if known is None else set(known)
    for name, value in activity.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                0.0 <= float(value) <= 1.0):
            raise UsageError(f"activity {name}={value!r}: expected a fraction of 1 bits in 0..1")
        if names is not None and name not in names:
            close = sorted(names)[:5]
            raise UsageError(f"activity {name}={value!r}: no matrix layer {name!r} in the graph "
                             f"(matrix layers: {', '.join(close)}{' ...' if len(names) > 5 else ''})")


def resolve(layers: Iterable[str], target: Target, given: Mapping[str, float] | None = None,
            measured: Mapping[str, float] | None = None) -> Activity:
    """The activity of each layer: given, else measured on the data, else the spec's default,
    else 1.0 (worst case)."""
    default = target.dac.input_activity
    values: dict[str, float] = {}
    sources: dict[str, str] = {}
    for name in layers:
        if given and name in given:
            values[name], sources[name] = float(given[name]), "given"
        elif measured and name in measured:
            values[name], sources[name] = float(measured[name]), "data"
        elif default is not None:
            values[name], sources[name] = float(default), "spec"
        else:
            values[name], sources[name] = 1.0, "worst_case"
    return Activity(values, sources)


def scaled_by_activity(energy: Mapping[str, float], activity: float) -> dict[str, float]:
    """The layer's energy with its activity-driven components (`SCALED`) times ``activity``;
    the component figures are those of a fully active input (every bit 1)."""
    return {k: (v * activity if k in SCALED else v) for k, v in energy.items()}
