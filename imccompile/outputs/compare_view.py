"""A comparison as people read it: terminal tables and the HTML page (totals side by side,
per-layer charts and differences). Numbers go through the one formatter (`display.si`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from imccompile.outputs.display import metric_text, quantity
from imccompile.outputs.plots import grouped_bars, page, section, table

if TYPE_CHECKING:
    from rich.table import Table

    from imccompile.compare import Comparison, LayerRow, Row

LAYER_TITLES = {"energy_j": "energy", "latency_s": "latency", "arrays": "arrays"}


def value_text(key: str, v: float | None, metric: str | None = None) -> str:
    if v is None:
        return "—"
    if key == "utilization":
        return f"{100 * v:.1f}%"
    if key in ("float", "mean", "std"):
        return metric_text(metric or "")(v)
    return quantity(key, v)


def ratio_text(r: float | None) -> str:
    return "" if r is None else f"×{r:.3g}"


def _cells(row: Row, metric: str | None = None) -> list[str]:
    out = []
    for i, (v, r) in enumerate(zip(row.values, row.ratios())):
        text = value_text(row.key, v, metric)
        if i and r is not None and row.key not in ("float", "mean", "std"):
            text += f" ({ratio_text(r)})"
        out.append(text)
    return out


def _crossbar_layers(c: Comparison) -> tuple[list[LayerRow], list[LayerRow]]:
    xbar = [lr for lr in c.layers if lr.kind != "digital"]
    return xbar, [lr for lr in c.layers if lr.kind == "digital"]


def _digital_sums(c: Comparison, digital: list[LayerRow]) -> list[tuple[float | None, ...]]:
    """Energy and latency of the digital ops, summed per report."""
    n = len(c.labels)
    sums = []
    for k in range(2):  # energy_j, latency_s
        per = []
        for i in range(n):
            vals = [lr.figures[k].values[i] for lr in digital]
            per.append(None if all(v is None for v in vals) else sum(v or 0.0 for v in vals))
        sums.append(tuple(per))
    return sums


def totals_table(c: Comparison) -> Table:
    from rich.table import Table

    t = Table(title="totals (ratio to " + c.labels[0] + ")", title_justify="left")
    t.add_column("figure")
    for lab in c.labels:
        t.add_column(lab, justify="right")
    for row in c.totals:
        t.add_row(row.title, *_cells(row))
    for row in c.accuracy:
        t.add_row(f"{row.title} ({c.metric})" if c.metric else row.title, *_cells(row, c.metric))
    return t


def layers_table(c: Comparison) -> Table:
    from rich.table import Table

    xbar, digital = _crossbar_layers(c)
    t = Table(title="per layer (ratio to " + c.labels[0] + ")", title_justify="left")
    t.add_column("layer")
    for key in ("energy_j", "latency_s", "arrays"):
        for lab in c.labels:
            t.add_column(f"{LAYER_TITLES[key]} {lab}", justify="right")
    for lr in xbar:
        t.add_row(lr.name, *[cell for fig in lr.figures for cell in _cells(fig)])
    if digital:
        from imccompile.compare import Row

        e, s = _digital_sums(c, digital)
        t.add_row(f"({len(digital)} digital ops)", *_cells(Row("energy_j", "", e)),
                  *_cells(Row("latency_s", "", s)), *([""] * len(c.labels)))
    return t


def render_compare_html(c: Comparison, version: str) -> str:
    from imccompile.compare import Row

    header = ["figure", *c.labels]
    rows = [[r.title, *_cells(r)] for r in c.totals]
    rows += [[f"{r.title} ({c.metric})" if c.metric else r.title, *_cells(r, c.metric)]
             for r in c.accuracy]
    parts = [section("totals", "Totals", table(header, rows),
                     f"Every figure per report; in brackets its ratio to {c.labels[0]}.")]
    xbar, digital = _crossbar_layers(c)
    names = [f"L{i + 1}" for i in range(len(xbar))]
    figs: list[tuple[str, list[tuple[float | None, ...]]]] = []
    for k, key in enumerate(("energy_j", "latency_s", "arrays")):
        figs.append((key, [lr.figures[k].values for lr in xbar]))
    sums = _digital_sums(c, digital) if digital else None
    for key, per_layer in figs:
        unit = {"energy_j": "J", "latency_s": "s"}.get(key, "")
        labels = names + (["digital"] if sums and key != "arrays" else [])
        vals = per_layer + ([sums[0 if key == "energy_j" else 1]]
                            if sums and key != "arrays" else [])
        series = [(lab, [v[i] or 0.0 for v in vals]) for i, lab in enumerate(c.labels)]
        title = {"energy_j": "energy per inference", "latency_s": "latency",
                 "arrays": "arrays"}[key]
        parts.append(section(f"layers-{key}", f"Per layer: {title}",
                             grouped_bars(labels, series, title, unit),
                             "Layers L1… as in the table below"
                             + ("; 'digital' sums the digital ops" if sums and key != "arrays"
                                else "") + "."))
    lrows = []
    for label, lr in zip(names, xbar):
        lrows.append([label, lr.name, *[cell for fig in lr.figures for cell in _cells(fig)]])
    if sums:
        lrows.append(["", f"{len(digital)} digital ops", *_cells(Row("energy_j", "", sums[0])),
                      *_cells(Row("latency_s", "", sums[1])), *([""] * len(c.labels))])
    lheader = ["", "layer"] + [f"{LAYER_TITLES[k]} {lab}" for k in ("energy_j", "latency_s",
                                                                     "arrays")
                               for lab in c.labels]
    parts.append(section("layers", "Per-layer differences", table(lheader, lrows, 2),
                         f"In brackets: the ratio to {c.labels[0]}."))
    models = sorted(set(c.models))
    return page(f"Comparison: {', '.join(c.labels)}",
                f"model{'s' if len(models) > 1 else ''}: {', '.join(models)}", parts, version)
