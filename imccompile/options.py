"""`CompileOptions`: everything besides the model, the target and the data that changes a compile.

One frozen object is built once (from keyword arguments, the command line, or a stored study) and
handed to the one compile driver (`imccompile.compiler`): a single compile and every trial of a
search go through the same function with it, so a flag cannot mean one thing in one and another
thing (or nothing) in the other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Mapping, Sequence

from imccompile.errors import UsageError
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
        threads: onnxruntime intra-op threads of the accuracy simulation (``--threads``; the
            results do not depend on it).
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

    def __post_init__(self) -> None:
        from imccompile.metrics import check_metric

        check_metric(self.metric)
        if self.overflow not in OVERFLOW_POLICIES:
            raise UsageError(f"--overflow {self.overflow}: expected one of "
                             f"{', '.join(OVERFLOW_POLICIES)}")
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise UsageError(f"--seeds must be >= 1, got {self.seeds}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {self.threads}")
        if self.samples is not None and (isinstance(self.samples, bool)
                                         or not isinstance(self.samples, int) or self.samples < 1):
            raise UsageError(f"--samples must be >= 1, got {self.samples}")
        for name, size in self.dims:
            if not isinstance(name, str) or not name:
                raise UsageError(f"--dim {name!r}={size!r}: expected NAME=VALUE with a dim name")
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise UsageError(f"--dim {name}={size!r}: the size must be a positive integer")
        for layer, copies in self.replicate:
            if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
                raise UsageError(f"--replicate {layer}={copies}: expected a number of copies >= 1")

    @classmethod
    def make(cls, *, overrides: Sequence[str] | Mapping[str, Any] = (), passes: str | None = None,
             input_shapes: Mapping[str, Sequence[int]] | None = None,
             dims: Mapping[str, int] | None = None,
             overflow: OverflowPolicy = "chips", replicate: Mapping[str, int] | None = None,
             auto_replicate: bool = False, samples: int | None = None, seeds: int = 1,
             sim: SimOptions | None = None, metric: str = "auto",
             threads: int = 1) -> CompileOptions:
        """Build options from the loose forms the Python API and the CLI accept."""
        return cls(overrides=parse_overrides(overrides), passes=passes or "",
                   input_shapes=tuple((str(k), tuple(int(d) for d in v))
                                      for k, v in (input_shapes or {}).items()),
                   dims=tuple((k, v) for k, v in (dims or {}).items()),
                   overflow=overflow,
                   replicate=tuple((str(k), v) for k, v in (replicate or {}).items()),
                   auto_replicate=bool(auto_replicate), samples=samples, seeds=seeds,
                   sim=sim if sim is not None else SimOptions(), metric=metric,
                   threads=threads)

    def replace(self, **changes: Any) -> CompileOptions:
        return replace(self, **changes)



def parse_overrides(overrides: Sequence[str] | Mapping[str, Any]) -> tuple[str, ...]:
    """``["adc.bits=6"]`` or ``{"adc.bits": 6}`` -> ``("adc.bits=6",)``. Each text is checked
    by the spec loader's `parse_override` (which also parses it when the target is loaded)."""
    from imccompile.spec import parse_override

    if isinstance(overrides, str):
        overrides = [overrides]
    if isinstance(overrides, Mapping):
        return tuple(f"{k}={json.dumps(v)}" for k, v in overrides.items())
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
