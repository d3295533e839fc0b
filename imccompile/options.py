"""`CompileOptions`: everything besides the model, the target and the data that changes a compile.

One frozen object is built once (from keyword arguments, the command line, or a stored study) and
handed to the one compile driver (`imccompile.compiler`): a single compile and every trial of a
search go through the same function with it, so a flag cannot mean one thing in one and another
thing (or nothing) in the other.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Mapping, Sequence

from imccompile.errors import UsageError
from imccompile.guardrails import DEFAULT_MAX_ACCURACY_DROP
from imccompile.simulate import SimOptions

OverflowPolicy = Literal["chips", "reload", "error"]
OVERFLOW_POLICIES: tuple[str, ...] = ("chips", "reload", "error")

IDEAL = SimOptions(noise=False, adc=False, dac=False, weights=False)


@dataclass(frozen=True)
class CompileOptions:
    """What one compile does, besides model, target and data.

    Attributes:
        overrides: spec overrides as ``PATH=VALUE`` texts (``adc.bits=6``; the value is JSON,
            else a plain string), applied in order by the spec loader (a later one wins);
            `CompileOptions.make` also takes ``{"adc.bits": 6}``.
        passes: pipeline text ("" for none).
        input_shapes: static dims for dynamic inputs, (input name, dims) pairs.
        dims: sizes of symbolic input dims, (dim name, size) pairs, applied to every input
            with that dim (``--dim batch=1``; onnxruntime's free-dimension overrides).
        overflow: what to do when the model needs more arrays than one chip has.
        replicate: (layer name or glob, copies) pairs, applied before auto-replication.
        auto_replicate: give the chip's spare arrays to the pipeline's bottleneck layers.
        samples: use only the first N samples of the data (None: all).
        seeds: noise draws of the accuracy simulation (mean ± std over them).
        sim: what the accuracy simulation includes (`imccompile.simulate.SimOptions`).
        metric: the headline accuracy metric (`imccompile.metrics`): "auto" (top1 with labels,
            agreement for class-score outputs, else cosine), top1, agreement, cosine, relerr,
            snr. Every output is scored with the metrics that fit it in any case.
        threads: onnxruntime calls of the accuracy simulation run at once (one thread each),
            and threads drawing device noise (``--threads``; the results do not depend on it).
        activity: (matrix layer name, input bit activity 0..1) pairs: the fraction of 1 bits
            at the layer's DAC inputs, used for its array and DAC energy before any value
            measured on the data or the spec's default (`imccompile.activity`).
        sensitivity: also measure every crossbar layer's accuracy drop when it alone is on
            the hardware (`imccompile.sensitivity`; needs data).
        max_accuracy_drop: the accuracy budget (`imccompile.guardrails`: points; relerr: % of
            relative error; snr: dB): a compile whose headline drops more below float warns.
            None: no budget. It changes no number of the compile.
    """

    overrides: tuple[str, ...] = ()
    passes: str = ""
    input_shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()
    dims: tuple[tuple[str, int], ...] = ()
    overflow: OverflowPolicy = "chips"
    replicate: tuple[tuple[str, int], ...] = ()
    auto_replicate: bool = False
    samples: int | None = None
    seeds: int = 1
    sim: SimOptions = field(default_factory=SimOptions)
    metric: str = "auto"
    threads: int = 1
    activity: tuple[tuple[str, float], ...] = ()
    sensitivity: bool = False
    max_accuracy_drop: float | None = DEFAULT_MAX_ACCURACY_DROP

    def __post_init__(self) -> None:
        _check_fields(self)
        from imccompile.activity import check_activity
        from imccompile.guardrails import check_budget

        check_budget(self.max_accuracy_drop)
        check_activity(dict(self.activity))

    @classmethod
    def make(cls, *, overrides: Sequence[str] | Mapping[str, Any] = (), passes: str | None = None,
             input_shapes: Mapping[str, Sequence[int]] | None = None,
             dims: Mapping[str, int] | None = None,
             overflow: OverflowPolicy = "chips", replicate: Mapping[str, int] | None = None,
             auto_replicate: bool = False, samples: int | None = None, seeds: int = 1,
             sim: SimOptions | None = None, metric: str = "auto",
             activity: Mapping[str, float] | None = None, sensitivity: bool = False,
             max_accuracy_drop: float | None = DEFAULT_MAX_ACCURACY_DROP,
             threads: int = 1) -> CompileOptions:
        """Build options from the loose forms the Python API and the CLI accept; every value is
        checked here (type, range), an error naming the parameter and what is accepted."""
        if overrides is None:
            overrides = ()
        if activity is not None and not isinstance(activity, Mapping):
            raise UsageError(f"activity {_show(activity)}: expected a dict of name -> value")
        return cls(overrides=parse_overrides(overrides),
                   passes="" if passes is None else passes,
                   input_shapes=_shapes(input_shapes),
                   dims=_pairs(dims, "dims"),
                   overflow=overflow,
                   replicate=_pairs(replicate, "replicate"),
                   auto_replicate=auto_replicate, samples=samples, seeds=seeds,
                   sim=sim if sim is not None else SimOptions(), metric=metric,
                   activity=tuple((str(k), v) for k, v in (activity or {}).items()),
                   sensitivity=sensitivity, max_accuracy_drop=max_accuracy_drop,
                   threads=threads)

    def replace(self, **changes: Any) -> CompileOptions:
        return replace(self, **changes)


# Bounds on counts the user gives, checked before any work (each costs time or memory in
# proportion): assumptions, far beyond real use, that turn a typo (1e9) into a clear error.
MAX_SEEDS = 1000      # the std of the mean over 1000 noise draws is ~3% of one draw's
MAX_COPIES = 65536    # copies of one layer: 1024 chips of 64 arrays; every copy is listed in the
                      # program image and the schedule
MAX_THREADS = 256     # simulation threads: beyond any machine this runs on


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shapes(shapes: Any) -> tuple[tuple[str, tuple[int, ...]], ...]:
    if shapes is None:
        return ()
    if not isinstance(shapes, Mapping):
        raise UsageError(f"input_shapes {_show(shapes)}: expected a dict of input name -> dims, "
                         "e.g. {'x': (1, 3, 224, 224)}")
    out = []
    for name, dims in shapes.items():
        if isinstance(dims, (str, bytes)) or not isinstance(dims, Sequence):
            raise UsageError(f"--input-shape {name}={_show(dims)}: expected a sequence of "
                             "positive integers")
        out.append((name, tuple(_int(d) for d in dims)))
    return tuple(out)


def _pairs(pairs: Any, what: str) -> tuple[tuple[Any, Any], ...]:
    if pairs is None:
        return ()
    if not isinstance(pairs, Mapping):
        raise UsageError(f"{what} {_show(pairs)}: expected a dict of name -> integer")
    return tuple((k, _int(v)) for k, v in pairs.items())


def _int(value: Any) -> Any:
    """A numpy or other integral number as a Python int; anything else as given (checked)."""
    return int(value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) \
        else value


def _check_fields(o: CompileOptions) -> None:
    """Every field of `CompileOptions` of the right type and in range: a UsageError naming the
    option (as its command-line flag) and what it accepts. The one check of the options, for the
    CLI, the API and stored studies alike."""
    from imccompile.metrics import check_metric

    if not isinstance(o.overrides, tuple) or not all(isinstance(t, str) for t in o.overrides):
        raise UsageError(f"overrides {_show(o.overrides)}: expected PATH=VALUE texts "
                         "(CompileOptions.make also takes a dict)")
    if not isinstance(o.passes, str):
        raise UsageError(f"passes {_show(o.passes)}: expected a pipeline text, e.g. "
                         "'prune{ratio=0.5},quantize{weight_bits=4}'")
    for name, dims in o.input_shapes:
        if not isinstance(name, str) or not name:
            raise UsageError(f"--input-shape {_show(name)}: expected an input name")
        if not isinstance(dims, tuple) or not all(_is_int(d) and d >= 1 for d in dims):
            raise UsageError(f"--input-shape {name}={_show(dims)}: expected positive integer "
                             "dims")
    if o.overflow not in OVERFLOW_POLICIES:
        raise UsageError(f"--overflow {o.overflow}: expected one of "
                         f"{', '.join(OVERFLOW_POLICIES)}")
    if not _is_int(o.seeds) or not 1 <= o.seeds <= MAX_SEEDS:
        raise UsageError(f"--seeds {_show(o.seeds)}: expected an integer in 1..{MAX_SEEDS} "
                         "(noise draws of the accuracy simulation)")
    if not _is_int(o.threads) or not 1 <= o.threads <= MAX_THREADS:
        raise UsageError(f"--threads {_show(o.threads)}: expected an integer in 1..{MAX_THREADS} "
                         "(onnxruntime threads of the accuracy simulation)")
    if o.samples is not None and (not _is_int(o.samples) or o.samples < 1):
        raise UsageError(f"--samples must be >= 1, got {_show(o.samples)} (an integer, or None "
                         "for all samples)")
    for name, size in o.dims:
        if not isinstance(name, str) or not name:
            raise UsageError(f"--dim {name!r}={size!r}: expected NAME=VALUE with a dim name")
        if not _is_int(size) or size < 1:
            raise UsageError(f"--dim {name}={size!r}: the size must be a positive integer")
    for layer, copies in o.replicate:
        if not isinstance(layer, str) or not layer:
            raise UsageError(f"--replicate {layer!r}={copies!r}: expected a layer name or glob")
        if not _is_int(copies) or not 1 <= copies <= MAX_COPIES:
            raise UsageError(f"--replicate {layer}={copies}: expected a number of copies in "
                             f"1..{MAX_COPIES}")
    if not isinstance(o.auto_replicate, bool):
        raise UsageError(f"auto_replicate {_show(o.auto_replicate)}: expected True or False")
    if not isinstance(o.sensitivity, bool):
        raise UsageError(f"sensitivity {_show(o.sensitivity)}: expected True or False")
    if not isinstance(o.sim, SimOptions):
        raise UsageError(f"sim {_show(o.sim)}: expected an imccompile.simulate.SimOptions")
    if not isinstance(o.metric, str):
        raise UsageError(f"--metric {_show(o.metric)}: expected a metric name")
    check_metric(o.metric)


def parse_overrides(overrides: Sequence[str] | Mapping[str, Any]) -> tuple[str, ...]:
    """``["adc.bits=6"]`` or ``{"adc.bits": 6}`` -> ``("adc.bits=6",)``. Each text is checked
    by the spec loader's `parse_override` (which also parses it when the target is loaded)."""
    from imccompile.spec import parse_override

    if isinstance(overrides, str):
        overrides = [overrides]
    if isinstance(overrides, Mapping):
        out = []
        for k, v in overrides.items():
            try:
                out.append(f"{k}={json.dumps(v, allow_nan=False)}")
            except (TypeError, ValueError):
                raise UsageError(f"overrides {k}={_show(v)}: expected a JSON value (number, "
                                 "text, list, object)") from None
        return tuple(out)
    if not isinstance(overrides, Sequence) or isinstance(overrides, bytes):
        raise UsageError(f"overrides {_show(overrides)}: expected a list of PATH=VALUE texts "
                         "or a dict of PATH -> value")
    texts = tuple(overrides)
    for text in texts:
        parse_override(text)  # PATH=VALUE syntax, as --set reports it
    return texts


def sim_options(*, ideal: bool = False, bit_accurate: bool = False,
                adc_range: Literal["calibrated", "full_scale"] = "calibrated") -> SimOptions:
    """The simulation the CLI flags ``--ideal``, ``--bit-accurate``, ``--adc-range`` ask for."""
    if ideal:
        if bit_accurate:
            raise UsageError("--ideal and --bit-accurate exclude each other")
        return replace(IDEAL, adc_range=adc_range)
    return SimOptions(adc_range=adc_range, bit_accurate=bit_accurate)
