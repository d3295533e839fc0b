"""Sweeps: the grid of compiles over one or more spec knobs (``adc.bits=4..8``, ``array.rows=
64,128,256``), each point a full compile (passes, mapping, cost, and with data the accuracy) by
the one compile driver, in parallel worker processes.

A point's figures are read from its report (`imccompile.outputs.report.build_report`), so a sweep
row holds exactly what ``report.json`` of that compile would: machine units (J, s, mm²).
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from imccompile.errors import ImcCompileError, UsageError

if TYPE_CHECKING:
    from imccompile.compiler import Prepared
    from imccompile.options import CompileOptions

# the figures of a point: column -> (report totals key or accuracy key, unit of the column)
METRICS: dict[str, tuple[str, str]] = {
    "arrays": ("arrays", ""),
    "chips": ("chips", ""),
    "energy_j": ("energy_j", "J"),
    "latency_s": ("latency_s", "s"),
    "inferences_per_s": ("inferences_per_s", "inferences/s"),
    "area_mm2": ("area_mm2", "mm²"),
    "tops_per_w": ("tops_per_w", "TOPS/W"),
    "accuracy_float": ("float", ""),
    "accuracy": ("mean", ""),
    "accuracy_std": ("std", ""),
}
MAX_POINTS = 1000  # a grid larger than this is surely a typo (4..800)


@dataclass(frozen=True)
class Knob:
    """One varied spec field and the values it takes, in order."""

    field: str
    values: tuple[Any, ...]

    @staticmethod
    def parse(text: str) -> Knob:
        """``adc.bits=4..8`` (integers, both ends included) or ``array.rows=64,128,256`` (each
        value JSON, else a plain string, like ``--set``)."""
        name, sep, spec = text.partition("=")
        name, spec = name.strip(), spec.strip()
        if not sep or not name or not spec:
            raise UsageError(f"--vary {text!r}: expected FIELD=LOW..HIGH or FIELD=V1,V2,... "
                             "(e.g. --vary adc.bits=4..8 or --vary array.rows=64,128,256)")
        if ".." in spec:
            lo, _, hi = spec.partition("..")
            try:
                a, b = int(lo), int(hi)
            except ValueError:
                raise UsageError(f"--vary {text!r}: a range LOW..HIGH takes integers") from None
            if b < a:
                raise UsageError(f"--vary {text!r}: the range is empty ({a} > {b})")
            values: tuple[Any, ...] = tuple(range(a, b + 1))
        else:
            values = tuple(_value(v.strip()) for v in spec.split(",") if v.strip())
        if len(set(map(json.dumps, values))) != len(values):
            raise UsageError(f"--vary {text!r}: a value is given twice")
        return Knob(name, values)


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


@dataclass(frozen=True)
class SweepPoint:
    """One compile of the grid: its knob settings and its figures (see `METRICS`)."""

    settings: tuple[tuple[str, Any], ...]
    metrics: tuple[tuple[str, float], ...]

    @property
    def overrides(self) -> tuple[str, ...]:
        return tuple(f"{f}={json.dumps(v)}" for f, v in self.settings)

    def value(self, name: str) -> float | None:
        return dict(self.metrics).get(name)


@dataclass(frozen=True)
class Sweep:
    """A finished sweep: the knobs in order and one point per grid cell (first knob slowest)."""

    model: str
    target: str
    knobs: tuple[Knob, ...]
    points: tuple[SweepPoint, ...]
    metric: str | None  # the accuracy metric's name, None without data

    @property
    def columns(self) -> list[str]:
        """The figure columns every point has (accuracy ones only with data)."""
        return [m for m in METRICS if all(p.value(m) is not None for p in self.points)]


def grid(knobs: Sequence[Knob]) -> list[tuple[tuple[str, Any], ...]]:
    """Every combination of the knobs' values (the first knob varies slowest)."""
    fields = [k.field for k in knobs]
    if len(set(fields)) != len(fields):
        raise UsageError(f"--vary: a field is varied twice ({', '.join(fields)})")
    cells = [tuple(zip(fields, combo)) for combo in itertools.product(*(k.values for k in knobs))]
    if len(cells) > MAX_POINTS:
        raise UsageError(f"--vary: {len(cells)} points in the grid, more than {MAX_POINTS}; "
                         "narrow the ranges")
    return cells


_Figures = tuple[tuple[tuple[str, float], ...], str | None]  # (metrics, accuracy metric name)


def point_metrics(report: dict[str, Any]) -> tuple[tuple[str, float], ...]:
    """A point's figures from its report."""
    totals, acc = report["totals"], report.get("accuracy")
    out = []
    for name, (key, _unit) in METRICS.items():
        if name.startswith("accuracy"):
            if acc is not None:
                out.append((name, float(acc[key])))
        else:
            out.append((name, float(totals[key])))
    return tuple(out)


# ------------------------------------------------------------------------- running

_WORKER: dict[str, Any] = {}


def _init_worker(model: str, options: CompileOptions, data: str | None) -> None:
    import signal

    from imccompile.compiler import prepare

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, which stops us

    _WORKER["prepared"] = prepare(model, options, data)


def _compile_point(prepared: Prepared, target: str, options: CompileOptions,
                   settings: tuple[tuple[str, Any], ...]) -> _Figures:
    from imccompile.compiler import compile_prepared
    from imccompile.outputs.report import build_report

    extra = tuple(f"{f}={json.dumps(v)}" for f, v in settings)
    opts = options.replace(overrides=(*options.overrides, *extra))
    try:
        res = compile_prepared(prepared, target, opts)
    except ImcCompileError as e:
        where = " ".join(extra)
        raise type(e)(f"sweep point {where}: {e}") from None
    report = build_report(res)
    return point_metrics(report), (report["accuracy"]["metric"] if "accuracy" in report else None)


def _worker_point(target: str, options: CompileOptions,
                  settings: tuple[tuple[str, Any], ...]) -> _Figures:
    return _compile_point(_WORKER["prepared"], target, options, settings)


def run_sweep(model: str, target: str, options: CompileOptions, knobs: Sequence[Knob], *,
              data: str | None = None, jobs: int = 1,
              progress: Callable[[int, int], None] | None = None) -> Sweep:
    """Compile every point of the grid of ``knobs`` (their values set after the options'
    overrides), ``jobs`` points at a time in worker processes (each imports the model and
    loads the data once).

    Raises:
        UsageError: a bad grid or job count; SpecError: a point's spec is invalid (checked for
        every point before any compile).
    """
    from imccompile.spec import load_target

    if jobs < 1:
        raise UsageError(f"--jobs {jobs}: expected a positive number of worker processes")
    cells = grid(knobs)
    for settings in cells:  # every point's spec is valid before the first compile starts
        load_target(target, [*options.overrides,
                             *(f"{f}={json.dumps(v)}" for f, v in settings)])
    results: list[_Figures | None] = [None] * len(cells)
    done = 0
    if jobs == 1 or len(cells) == 1:
        from imccompile.compiler import prepare

        prepared = prepare(model, options, data)
        for i, settings in enumerate(cells):
            results[i] = _compile_point(prepared, target, options, settings)
            done += 1
            if progress is not None:
                progress(done, len(cells))
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        workers = min(jobs, len(cells), os.cpu_count() or 1) or 1
        with ProcessPoolExecutor(max_workers=max(workers, 1), mp_context=mp.get_context("spawn"),
                                 initializer=_init_worker,
                                 initargs=(model, options, data)) as pool:
            futures = {pool.submit(_worker_point, target, options, s): i
                       for i, s in enumerate(cells)}
            try:
                for fut in as_completed(futures):
                    results[futures[fut]] = fut.result()
                    done += 1
                    if progress is not None:
                        progress(done, len(cells))
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)  # points not started never run
                raise
    points = tuple(SweepPoint(s, r[0]) for s, r in zip(cells, results) if r is not None)
    metric = next((r[1] for r in results if r is not None), None)
    return Sweep(str(model), str(target), tuple(knobs), points, metric)


def sweep_csv(sweep: Sweep) -> str:
    """One row per point: the knob values, then the figures in base SI units (J, s, mm²; the
    unit in each column name)."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = sweep.columns
    w.writerow([k.field for k in sweep.knobs] + cols)
    for p in sweep.points:
        w.writerow([v if isinstance(v, str) else json.dumps(v) for _, v in p.settings]
                   + [_csv_number(p.value(c)) for c in cols])
    return buf.getvalue()


def _csv_number(v: float | None) -> str:
    if v is None:
        return ""
    return str(int(v)) if float(v).is_integer() and abs(v) < 2**53 else repr(float(v))
