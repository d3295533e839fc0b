"""The co-optimization search space: knobs, their ranges, and how a point becomes a compile.

A *point* is a dict of knob values. It turns into exactly two things, stored with every trial:
  * a pipeline text (per-layer ``prune{...,match=LAYER}`` and ``quantize{...,match=LAYER}``),
  * spec overrides (``adc.bits=6``, ``array.rows=128``, ...),
so that any point is re-created with ``imccompile MODEL --target T --passes TEXT --set ...``.

Knobs (names as given to ``--fix`` and in ``--space`` files):
  * ``weight_bits:<layer>`` — per-layer weight bits (layers reading one weight tensor, which
    the mapper places once, share the knobs of the first of them) (choices: the quantize pass's space, which
    reads the target's ``search.weight_bits``); ``--fix weight_bits=4`` pins every layer;
  * ``prune:<layer>`` — per-layer prune ratio in [low, high] (prune pass's space), steps of 0.05;
  * ``granularity`` — pruning granularity for all layers (prune pass's space);
  * ``act_bits`` — activation (DAC input) bits of every layer (target ``search.input_bits``);
  * ``adc.bits``, ``array.rows``, ``array.cols``, ``array.bits_per_cell`` — hardware knobs, from
    the target's ``search`` lists (what the device allows);
  * ``replicate`` — give spare arrays to the pipeline bottleneck (bool).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from imccompile.errors import UsageError
from imccompile.ir import Graph, MatrixOp

HW_KNOBS = {"adc.bits": "adc_bits", "array.rows": "rows", "array.cols": "cols",
            "array.bits_per_cell": "bits_per_cell"}
PRUNE_STEP = 0.05


@dataclass(frozen=True)
class Knob:
    """One searchable dimension: a categorical list or a float range with a step."""

    name: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None

    def suggest(self, trial) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        return trial.suggest_float(self.name, self.low, self.high, step=self.step)

    def bounds(self) -> tuple[float, float]:
        """(low, high) of a range knob."""
        if self.low is None or self.high is None:
            raise ValueError(f"knob {self.name} is categorical, not a range")
        return self.low, self.high

    def describe(self) -> dict[str, Any]:
        if self.choices is not None:
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high, "step": self.step}


@dataclass(frozen=True)
class Space:
    """Knobs, pinned values, the layers that have knobs, and for each of them every layer that
    reads the same weight tensor (``tied``: they share one set of arrays, so one knob sets the
    compression of all of them)."""

    knobs: tuple[Knob, ...]
    fixed: dict[str, Any]
    layers: tuple[str, ...]
    tied: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"knobs": {k.name: k.describe() for k in self.knobs}, "fixed": dict(self.fixed),
                "layers": list(self.layers)}


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def build_space(graph: Graph, target, fix: Mapping[str, Any] | None = None,
                narrow: Mapping[str, Any] | None = None) -> Space:
    """All knobs for this graph and target; ``fix`` pins knobs, ``narrow`` restricts ranges."""
    from imccompile.passes import Prune, Quantize

    tied = tied_layers(graph)
    layers = tuple(tied)
    qspace = Quantize.search_space(target)
    pspace = Prune.search_space(target)
    s = target.search
    knobs: dict[str, Knob] = {}
    for layer in layers:
        knobs[f"weight_bits:{layer}"] = Knob(f"weight_bits:{layer}", tuple(qspace["weight_bits"]))
    for layer in layers:
        lo, hi = pspace["ratio"]
        knobs[f"prune:{layer}"] = Knob(f"prune:{layer}", low=float(lo), high=float(hi), step=PRUNE_STEP)
    knobs["granularity"] = Knob("granularity", tuple(pspace["granularity"]))
    knobs["act_bits"] = Knob("act_bits", tuple(s.input_bits))
    for path, field in HW_KNOBS.items():
        knobs[path] = Knob(path, tuple(getattr(s, field)))
    knobs["replicate"] = Knob("replicate", (False, True))

    follower = {name: first for first, names in tied.items() for name in names[1:]}

    def tied_knob(name: str, where: str) -> None:
        kind, _, layer = name.partition(":")
        if layer in follower:
            raise UsageError(f"{where} {name}: layer {layer!r} reads the same weight as "
                             f"{follower[layer]!r} (placed once, one set of knobs): use "
                             f"{kind}:{follower[layer]}")

    fixed: dict[str, Any] = {}
    for name, value in (fix or {}).items():
        tied_knob(name, "--fix")
        value = _parse_value(value) if isinstance(value, str) else value
        targets = [k for k in knobs if k == name or k.split(":", 1)[0] == name and ":" in k]
        if name in ("weight_bits", "prune"):
            targets = [k for k in knobs if k.startswith(name + ":")]
        if not targets:
            raise UsageError(f"--fix {name}={value}: unknown knob (knobs: weight_bits, "
                             f"weight_bits:LAYER, prune, prune:LAYER, granularity, act_bits, "
                             f"{', '.join(HW_KNOBS)}, replicate)")
        for k in targets:
            _check_value(knobs[k], value, f"--fix {name}")
            fixed[k] = value
            knobs.pop(k)
    for name, rng in (narrow or {}).items():
        tied_knob(name, "--space")
        targets = [k for k in knobs if k == name] or \
            [k for k in knobs if k.startswith(name + ":")]
        pinned = [f for f in fixed if f == name or f.startswith(name + ":")]
        if pinned:  # a knob both pinned and narrowed: which one was meant is not ours to guess
            given = dict(fix or {})
            flag = next((f"--fix {k}={given[k]}" for k in given
                         if k == name or k in pinned or name.startswith(k + ":")), "--fix")
            raise UsageError(f"--space {name}: the knob is pinned by {flag}; give it in --space "
                             "or in --fix, not both")
        if not targets:
            raise UsageError(f"--space: unknown knob {name!r} (knobs: {', '.join(sorted(knobs))})")
        for k in targets:
            knobs[k] = _narrow(knobs[k], rng)
    return Space(tuple(knobs.values()), fixed, layers, tied)


def _check_value(knob: Knob, value: Any, where: str) -> None:
    if knob.choices is not None:
        if value not in knob.choices:
            raise UsageError(f"{where}: {knob.name} must be one of {list(knob.choices)}, got {value!r}")
    elif not isinstance(value, (int, float)) or isinstance(value, bool) or \
            not knob.bounds()[0] <= value <= knob.bounds()[1]:
        raise UsageError(f"{where}: {knob.name} must be a number in [{knob.low}, {knob.high}], "
                         f"got {value!r}")


def _narrow(knob: Knob, rng: Any) -> Knob:
    where = f"--space {knob.name}"
    if knob.choices is not None:
        if not isinstance(rng, list) or not rng:
            raise UsageError(f"{where}: expected a non-empty list of choices from "
                             f"{list(knob.choices)}, got {_json(rng)}")
        for v in rng:
            _check_value(knob, v, where)
        return Knob(knob.name, tuple(rng))
    k_low, k_high = knob.bounds()
    if not (isinstance(rng, dict) and set(rng) <= {"low", "high", "step"}):
        raise UsageError(f'{where}: expected {{"low": x, "high": y, "step": s}} within '
                         f"[{k_low}, {k_high}], got {_json(rng)}")
    low = _number(rng.get("low", k_low), f"{where} low")
    high = _number(rng.get("high", k_high), f"{where} high")
    if not k_low <= low <= high <= k_high:
        raise UsageError(f"{where}: range [{low}, {high}] is not within [{k_low}, {k_high}]")
    step = rng.get("step", knob.step)
    if step is not None:
        step = _number(step, f"{where} step")
        if step <= 0 or (high > low and step > high - low):
            raise UsageError(f"{where} step: expected a number > 0 and at most high - low "
                             f"({high - low:g}), got {step:g}")
    return Knob(knob.name, low=low, high=high, step=step)


def _number(value: Any, where: str) -> float:
    """A finite JSON number, or a UsageError naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value):
        raise UsageError(f"{where}: expected a finite number, got {_json(value)}")
    return float(value)


def _json(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def load_space_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``--space`` argument: inline JSON (text starting with ``{``) or a JSON file's path
    (read with a size bound: /dev/zero is refused, not read)."""
    from imccompile.userfile import read_text

    text = str(path)
    inline = text.lstrip().startswith("{")
    where = "--space (inline JSON)" if inline else f"--space {path}"
    if not inline:
        if not os.path.exists(path):
            raise UsageError(f"--space {path}: no such file (give a JSON file or inline JSON "
                             "such as '{\"adc.bits\": [4, 6]}')")
        text = read_text(path, where, UsageError)
    try:
        data = json.loads(text)
    except RecursionError:
        raise UsageError(f"{where}: not JSON (nested too deeply)") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"{where}: not JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{where}: expected an object of knob -> choices or range")
    return data


def tied_layers(graph: Graph) -> dict[str, tuple[str, ...]]:
    """Matrix layers grouped by the weight tensor they read: first reader -> every reader.

    Layers with the same ``weight_id`` and identical weights are placed once by the mapper; a
    search gives them one set of knobs, so a trial never splits them onto separate arrays."""
    from imccompile.mapper import same_weight

    groups: dict[str, list[str]] = {}
    firsts: dict[str, list[MatrixOp]] = {}
    for op in graph.matrix_ops:
        if op.weight_id is not None:
            for first in firsts.setdefault(op.weight_id, []):
                if same_weight(first, op):
                    groups[first.name].append(op.name)
                    break
            else:
                firsts[op.weight_id].append(op)
                groups[op.name] = [op.name]
        else:
            groups[op.name] = [op.name]
    return {k: tuple(v) for k, v in groups.items()}


def point_to_compile(point: Mapping[str, Any], layers: tuple[str, ...],
                     tied: Mapping[str, tuple[str, ...]] | None = None
                     ) -> tuple[str, dict[str, Any], bool]:
    """(pipeline text, spec overrides, auto_replicate) for a point (knobs + fixed values).

    ``tied``: for a knob layer, every layer reading the same weight; they get its settings."""
    from imccompile.passes import Prune, Quantize, pipeline_text

    tied = tied or {}
    passes: list[Any] = []
    gran = point.get("granularity", "element")
    for layer in layers:
        ratio = round(float(point.get(f"prune:{layer}", 0.0)), 6)
        if ratio > 0:
            for name in tied.get(layer, (layer,)):
                passes.append(Prune(ratio=ratio, granularity=gran, match=name))
    act = point.get("act_bits")
    for layer in layers:
        wb = point.get(f"weight_bits:{layer}")
        if wb is not None or act is not None:
            for name in tied.get(layer, (layer,)):
                kw: dict[str, Any] = {"match": name}
                if wb is not None:
                    kw["weight_bits"] = int(wb)
                if act is not None:
                    kw["act_bits"] = int(act)
                passes.append(Quantize(**kw))
    overrides = {path: point[path] for path in HW_KNOBS if path in point}
    if act is not None:
        overrides["precision.input_bits"] = int(act)
    return pipeline_text(passes), overrides, bool(point.get("replicate", False))
