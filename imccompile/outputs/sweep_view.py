"""A sweep as people read it: the terminal table and the HTML page (each figure against the
varied knob(s)). Numbers go through the one formatter (`display.si`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from imccompile.outputs.display import count, metric_text, si
from imccompile.outputs.html_report import _e
from imccompile.outputs.plots import line_chart, page, section, table

if TYPE_CHECKING:
    from rich.table import Table

    from imccompile.sweep import Sweep

TITLES = {"arrays": "arrays", "chips": "chips", "energy_j": "energy per inference",
          "latency_s": "latency", "inferences_per_s": "throughput (pipelined)",
          "area_mm2": "area used", "tops_per_w": "TOPS/W", "accuracy_float": "float accuracy",
          "accuracy": "accuracy", "accuracy_std": "accuracy std"}


def _setting(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def figure(name: str, value: float, metric: str | None) -> str:
    """One figure of a point as text."""
    from imccompile.sweep import METRICS

    unit = METRICS[name][1]
    if name.startswith("accuracy"):
        return metric_text(metric or "")(value)
    if name in ("arrays", "chips"):
        return count(value)
    if unit == "TOPS/W":
        return f"{value:.4g}"
    return si(value, unit)


def sweep_table(sweep: Sweep) -> Table:
    from rich.table import Table

    cols = [c for c in sweep.columns if c not in ("accuracy_std", "accuracy_float", "chips")]
    t = Table(title=f"sweep of {sweep.model} on {sweep.target} ({len(sweep.points)} compiles)",
              title_justify="left")
    for k in sweep.knobs:
        t.add_column(k.field, justify="right")
    for c in cols:
        t.add_column(f"{TITLES[c]} ({sweep.metric})" if c == "accuracy" else TITLES[c],
                     justify="right")
    spread = any(p.value("accuracy_std") for p in sweep.points)  # more than one noise seed
    for p in sweep.points:
        cells = []
        for c in cols:
            v = p.value(c)
            text = figure(c, v, sweep.metric) if v is not None else ""
            std = p.value("accuracy_std")
            if c == "accuracy" and spread and std is not None:
                text += f" ± {figure('accuracy_std', std, sweep.metric)}"
            cells.append(text)
        t.add_row(*[_setting(v) for _, v in p.settings], *cells)
    return t


def _constant(values: list[float | None]) -> bool:
    vs = [v for v in values if v is not None]
    return bool(vs) and max(vs) - min(vs) <= 1e-9 * max(abs(v) for v in vs)


def render_sweep_html(sweep: Sweep, version: str) -> str:
    """The page: one chart per figure against the first knob (one line per combination of the
    other knobs), then the table of every point."""
    from imccompile.sweep import METRICS

    first, rest = sweep.knobs[0], sweep.knobs[1:]
    xlabels = [_setting(v) for v in first.values]
    groups: dict[tuple, dict[str, Any]] = {}
    for p in sweep.points:
        key = tuple(v for f, v in p.settings[1:])
        groups.setdefault(key, {})[json.dumps(p.settings[0][1])] = p
    parts = []
    cols = [c for c in sweep.columns if c not in ("accuracy_std", "accuracy_float")]
    same = [c for c in cols if _constant([p.value(c) for p in sweep.points])]
    if same:
        parts.append("<section><h2>Unchanged across the sweep</h2><p>" + "; ".join(
            _e(f"{TITLES[c]} {figure(c, sweep.points[0].value(c) or 0.0, sweep.metric)}")
            for c in same) + "</p></section>")
    for c in (c for c in cols if c not in same):
        series = []
        for key, by_x in groups.items():
            label = ", ".join(f"{k.field}={_setting(v)}" for k, v in zip(rest, key))
            pts = [by_x.get(json.dumps(v)) for v in first.values]
            ys = [p.value(c) if p is not None else None for p in pts]
            errs = ([(p.value("accuracy_std") or 0.0) if p is not None else 0.0 for p in pts]
                    if c == "accuracy" else None)
            series.append((label, ys, errs))
        baseline = None
        if c == "accuracy" and sweep.points and sweep.points[0].value("accuracy_float") is not None:
            baseline = (float(sweep.points[0].value("accuracy_float") or 0.0), "float model")
        title = f"{TITLES[c]} ({sweep.metric})" if c == "accuracy" else TITLES[c]
        unit = "" if c.startswith("accuracy") or METRICS[c][1] == "TOPS/W" else METRICS[c][1]
        svg = line_chart(xlabels, first.field, series, title, unit, baseline)
        cap = (f"{TITLES[c]} against {first.field}"
               + (f", one line per {', '.join(k.field for k in rest)}" if rest else "")
               + ("; bars: ± std over the noise seeds" if c == "accuracy" else "") + ".")
        parts.append(section(c, title[:1].upper() + title[1:], svg, cap))
    header = [k.field for k in sweep.knobs] + [TITLES[c] for c in sweep.columns]
    rows = [[_setting(v) for _, v in p.settings]
            + [figure(c, p.value(c) or 0.0, sweep.metric) for c in sweep.columns]
            for p in sweep.points]
    parts.append(section("table", "Every point", table(header, rows, len(sweep.knobs)),
                         "The same figures in base SI units are in sweep.csv."))
    knobs = "; ".join(f"{k.field} = {', '.join(_setting(v) for v in k.values)}"
                      for k in sweep.knobs)
    return page(f"Sweep: {sweep.model} on {sweep.target}",
                f"{len(sweep.points)} compiles; {knobs}", parts, version)
