"""Comparisons: several compile reports (``report.json`` files, or one model compiled onto
several targets) side by side: their totals, and per layer (matched by name) energy, latency
and arrays, each with its ratio to the first report.

Everything is read from the reports (the typed `imccompile.outputs.report_model.Report` shape),
so a comparison of saved folders and one of fresh compiles are the same thing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from imccompile.errors import UsageError

# totals compared: (report totals key, title); all lower-is-better except throughput and TOPS/W
TOTALS: tuple[tuple[str, str], ...] = (
    ("energy_j", "energy per inference"),
    ("latency_s", "latency (critical path)"),
    ("pipeline_period_s", "pipeline period"),
    ("inferences_per_s", "throughput (pipelined)"),
    ("area_mm2", "area used"),
    ("chip_area_mm2", "chip area"),
    ("arrays", "arrays"),
    ("chips", "chips"),
    ("utilization", "cell utilization"),
    ("tops_per_w", "TOPS/W"),
)
LAYER_FIGURES = ("energy_j", "latency_s", "arrays")


@dataclass(frozen=True)
class Row:
    """One compared figure: its key, title, and the value in each report (None: absent)."""

    key: str
    title: str
    values: tuple[float | None, ...]

    def ratios(self) -> tuple[float | None, ...]:
        """Each value over the first report's (None where either is absent or the first is 0)."""
        base = self.values[0]
        return tuple(None if v is None or not base else v / base for v in self.values)


@dataclass(frozen=True)
class LayerRow:
    """One layer (by name) across the reports: kind and its figures per report."""

    name: str
    kind: str
    figures: tuple[Row, ...]  # LAYER_FIGURES, in order


@dataclass(frozen=True)
class Comparison:
    labels: tuple[str, ...]
    models: tuple[str, ...]
    totals: tuple[Row, ...]
    accuracy: tuple[Row, ...]  # float, mean, std of the headline metric (empty without data)
    metric: str | None
    layers: tuple[LayerRow, ...]


def load_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A compile's report from ``report.json`` or from an output folder holding one.

    Raises:
        UsageError: no such file, not JSON, or not a compile report (no totals or target).
    """
    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such report (give report.json files or -o folders)") \
            from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise UsageError(f"{p}: not JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("totals"), dict) or \
            not isinstance(data.get("target"), dict) or not isinstance(data.get("layers"), list):
        raise UsageError(f"{p}: not a compile report (expected the report.json of a compile "
                         "onto a target, with totals, target and layers)")
    return data


def labels_for(reports: Sequence[dict[str, Any]], sources: Sequence[str]) -> list[str]:
    """A short label per report: its target's name; where two would be the same, the source
    (path or target argument) instead."""
    names = [str(r["target"].get("name", "?")) for r in reports]
    return [n if names.count(n) == 1 else str(src) for n, src in zip(names, sources)]


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def compare_reports(reports: Sequence[dict[str, Any]], labels: Sequence[str]) -> Comparison:
    """The comparison of ``reports`` (the first one is the reference of the ratios)."""
    if len(reports) < 2:
        raise UsageError("compare: give at least two reports (or two --target)")
    totals = tuple(Row(k, title, tuple(_num(r["totals"].get(k)) for r in reports))
                   for k, title in TOTALS)
    accs = [r.get("accuracy") if isinstance(r.get("accuracy"), dict) else None for r in reports]
    metrics = {a.get("metric") for a in accs if a}
    metric = metrics.pop() if len(metrics) == 1 else None
    accuracy: tuple[Row, ...] = ()
    if any(accs):
        accuracy = tuple(Row(k, title, tuple(_num(a.get(k)) if a else None for a in accs))
                         for k, title in (("float", "float accuracy"),
                                          ("mean", "hardware accuracy"), ("std", "std over seeds")))
    by_name = [{row["name"]: row for row in r["layers"] if isinstance(row, dict)}
               for r in reports]
    order: list[str] = []
    for r in reports:
        for row in r["layers"]:
            if isinstance(row, dict) and row.get("name") not in order:
                order.append(row["name"])
    layers = []
    for name in order:
        rows = [b.get(name) for b in by_name]
        kind = next(str(x.get("kind", "")) for x in rows if x is not None)
        layers.append(LayerRow(name, kind, tuple(
            Row(f, f, tuple(_num(x.get(f)) if x is not None else None for x in rows))
            for f in LAYER_FIGURES)))
    return Comparison(tuple(labels), tuple(str(r.get("model", "")) for r in reports), totals,
                      accuracy, metric, tuple(layers))


def comparison_csv(c: Comparison) -> str:
    """The totals side by side: one row per figure (machine key, base SI units), one column per
    report."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["figure", *c.labels])
    for row in (*c.totals, *(Row(f"accuracy_{a.key}", a.title, a.values) for a in c.accuracy)):
        w.writerow([row.key, *("" if v is None else repr(v) for v in row.values)])
    for lr in c.layers:
        for fig in lr.figures:
            w.writerow([f"layer:{lr.name}:{fig.key}",
                        *("" if v is None else repr(v) for v in fig.values)])
    return buf.getvalue()
