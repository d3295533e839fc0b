"""Accuracy guardrails: the accuracy-drop budget, one rule for the search and the compile.

The drop is measured against the **float model** (the uncompressed model run ideally on the same
data), not against the search's trial 0: trial 0 (the target's own settings) is itself a point
of the hardware, and the budget says how much the hardware and the compression together may
cost. Units, from the headline metric (`imccompile.metrics`): percentage points for top1,
agreement and cosine (× 100: 1 point = 0.01 of top-1), percent of relative error for relerr,
dB for snr.

A search chooses, by default, the lowest-energy trial (the first cost objective) within
`DEFAULT_MAX_ACCURACY_DROP` of float; a compile whose hardware accuracy drops more than the
budget warns, naming the layer that costs the most when the per-layer sensitivity
(`imccompile.sensitivity`) was computed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from imccompile.errors import UsageError

if TYPE_CHECKING:
    from imccompile.result import CompileResult

DEFAULT_MAX_ACCURACY_DROP = 1.0  # 1 percentage point (0.01 of top-1): the issue-17 default


class AccuracyWarning(UserWarning):
    """A compile's accuracy under the hardware dropped more than the budget below float."""


def drop_unit(metric: str | None, value: float = 2.0) -> str:
    """The unit of a drop in ``metric``: points, percent of relative error, or dB."""
    if metric == "snr":
        return "dB"
    if metric == "relerr":
        return "% of relative error"
    return "point" if value == 1 else "points"


def accuracy_drop(metric: str, float_value: float, value: float) -> float:
    """How far ``value`` is below ``float_value`` in budget units (`imccompile.metrics.drop`)."""
    from imccompile.metrics import drop

    return drop(metric, float_value, value)


def parse_budget(text: str) -> float | None:
    """``--max-accuracy-drop`` text: a finite number >= 0, or ``none`` (no budget)."""
    if text.strip().lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"--max-accuracy-drop {text}: expected a number of points >= 0 or "
                         "'none'") from None
    check_budget(value)
    return value


def check_budget(value: float | None) -> None:
    import math

    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0:
        raise UsageError(f"--max-accuracy-drop must be a finite number >= 0 or none, got {value}")


def fmt_drop(metric: str | None, drop: float) -> str:
    return f"{drop:.3g} {drop_unit(metric, drop)}"


def accuracy_warning(accuracy: Mapping[str, Any] | None, budget: float | None,
                     sensitivity: Mapping[str, Any] | None = None) -> str | None:
    """The warning of a compile whose headline accuracy drops more than ``budget`` below
    float (None when within it, without data, or with no budget), naming the biggest
    contributor from ``sensitivity`` (the report's section) or saying how to get it."""
    if accuracy is None or budget is None:
        return None
    metric = accuracy["metric"]
    drop = accuracy_drop(metric, accuracy["float"], accuracy["mean"])
    if drop <= budget:
        return None
    text = (f"accuracy ({metric}) {accuracy['mean']:.4g} is {fmt_drop(metric, drop)} below the "
            f"float model's {accuracy['float']:.4g}, over the budget of "
            f"{fmt_drop(metric, budget)} (--max-accuracy-drop); ")
    layers = (sensitivity or {}).get("layers") or []
    if layers:
        top = layers[0]
        text += (f"biggest contributor: {top['name']} (alone on the hardware it costs "
                 f"{fmt_drop(metric, top['drop'])})")
    else:
        text += "run with --sensitivity (Python: sensitivity=True) to see which layer costs it"
    return text


def result_warning(res: CompileResult) -> str | None:
    """`accuracy_warning` of a compile, with its options' budget and its sensitivity."""
    from imccompile.sensitivity import sensitivity_dict

    sens = sensitivity_dict(res.sensitivity) if res.sensitivity is not None else None
    return accuracy_warning(res.accuracy, res.options.max_accuracy_drop, sens)
