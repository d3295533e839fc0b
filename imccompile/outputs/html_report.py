"""report.html: one self-contained page for a compile report.

Rendered from the report dict alone (so it can be regenerated from report.json):
``render_html(json.load(open("report.json")))``. Plots are inline SVG written here (no script, no
font or stylesheet to fetch), so the page works offline, prints, and stays small. Hovering a bar,
cell or point shows its exact values (SVG ``<title>``). Every string from the model or the spec is
escaped.

Sections: summary (target, pipeline, headline numbers, warnings, totals and breakdowns), energy
per layer (stacked by component), latency per layer, array utilization on the chip (one cell per
array in placement order: chip > tile > core > array), accuracy per noise seed (when the report
has ``accuracy``), the search's Pareto front (when it has ``search``) and the layer table.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

from imccompile.outputs.display import PREFIXES as _PREFIXES
from imccompile.outputs.display import si as display_si
from imccompile.outputs.display import unit_of

__all__ = ["render_html"]

PLOT_W = 1040  # default SVG width (px)
MAX_CELLS = 2048  # heat map cells before arrays are aggregated per core, then per tile
CROP_CELLS = 1024  # a single chip with more arrays than this is shown up to its last used tile
MAX_PANELS = 16  # chips drawn at most
MERGE_DIGITAL = 3  # more digital ops than this are merged into one bar

_COMPONENT_COLORS = {
    "adc": "#4e79a7", "dac": "#f28e2b", "array": "#59a14f", "shift_add": "#e15759",
    "accumulate": "#76b7b2", "digital": "#edc948", "buffer": "#b07aa1", "noc": "#ff9da7",
    "write": "#9c755f", "leakage": "#bab0ac",
}
_SPARE_COLORS = ["#1f77b4", "#8c564b", "#17becf", "#bcbd22", "#7f7f7f"]
_VIRIDIS = [(0x44, 0x01, 0x54), (0x3b, 0x52, 0x8b), (0x21, 0x91, 0x8c), (0x5e, 0xc9, 0x62),
            (0xfd, 0xe7, 0x25)]
_EMPTY = "#dfe3e8"

# ---------------------------------------------------------------- formatting helpers

def _e(s: Any) -> str:
    return html.escape(str(s), quote=True)


def _f(v: Any) -> float:
    """A finite float, or 0.0 for anything else (the page must render whatever it gets)."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return 0.0
    return x if math.isfinite(x) else 0.0


def _n(x: float) -> str:
    """Compact SVG coordinate."""
    s = f"{x:.1f}"
    return s.removesuffix(".0")


def _prefix(v: float) -> tuple[float, str]:
    a = abs(v)
    if a == 0:
        return 1.0, ""
    for factor, p in _PREFIXES:
        if a >= factor * 0.9995:
            return factor, p
    return _PREFIXES[-1]


def si(v: Any, unit: str) -> str:
    """Engineering notation: 51.6 nJ, 8.58 µs (the terminal's formatter, `display.si`)."""
    return display_si(_f(v), unit)


def _num(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    x = _f(v)
    return f"{x:,.0f}" if abs(x) >= 1e5 else f"{x:.4g}"


def _pct(v: Any) -> str:
    return f"{100 * _f(v):.1f}%"


def _short(name: str, n: int = 26) -> str:
    """A name cut from the right (its start is what tells layers apart in a model's names)."""
    return name if len(name) <= n else name[:n - 1] + "…"


def _bar_label(row: dict, number: int | None) -> str:
    """A bar's label: the layer's L-number (that of the heat map and the layer table) and the
    start of its name."""
    name = str(row.get("name", ""))
    return f"L{number} {_short(name, 22)}" if number else _short(name)


def _text_w(s: str, size: float = 11) -> float:
    return len(s) * size * 0.58


def _viridis(u: float) -> str:
    u = min(1.0, max(0.0, u)) * (len(_VIRIDIS) - 1)
    i = min(int(u), len(_VIRIDIS) - 2)
    t = u - i
    c = [round(a + (b - a) * t) for a, b in zip(_VIRIDIS[i], _VIRIDIS[i + 1])]
    return "#" + "".join(f"{v:02x}" for v in c)


def _unit_of(name: str) -> str:
    return unit_of(name)


# ---------------------------------------------------------------- axes

def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not hi > lo:
        hi = lo + (abs(lo) or 1.0)
    span = hi - lo
    step = 10 ** math.floor(math.log10(span / n))
    for m in (1, 2, 2.5, 5, 10):
        if span / (step * m) <= n:
            step *= m
            break
    start, end = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    return [round(start + i * step, 12) for i in range(round((end - start) / step) + 1)]


class _Axis:
    """Maps data values to pixels; linear or log10."""

    def __init__(self, lo: float, hi: float, p0: float, p1: float, log: bool = False,
                 nice: bool = True, tight: bool = False) -> None:
        """``tight``: the axis spans exactly lo..hi (nice ticks inside it), not the nice ticks'
        range (which can run far past the data: a 0.9..0.99 range to 1.25)."""
        self.log = log
        if log:
            lo, hi = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
            if hi == lo:
                hi += 1
            self.ticks = [10.0 ** k for k in range(lo, hi + 1)]
            if hi - lo <= 2:
                self.ticks = sorted(t * m for t in self.ticks for m in (1, 2, 5)
                                    if t * m <= 10.0 ** hi)
            self.lo, self.hi = float(lo), float(hi)
        elif tight and hi > lo:
            inside = [t for t in _nice_ticks(lo, hi, 6) if lo - 1e-12 <= t <= hi + 1e-12]
            self.ticks = inside if len(inside) >= 2 else [lo, hi]
            self.lo, self.hi = lo, hi
        else:
            self.ticks = _nice_ticks(lo, hi) if nice else [lo, hi]
            self.lo, self.hi = self.ticks[0], self.ticks[-1]
        self.p0, self.p1 = p0, p1

    def __call__(self, v: float) -> float:
        x = math.log10(max(v, 1e-300)) if self.log else v
        return self.p0 + (x - self.lo) / ((self.hi - self.lo) or 1.0) * (self.p1 - self.p0)


def _tick_label(t: float, unit: str, log: bool) -> str:
    if log or unit:
        return si(t, unit)
    return f"{t:.6g}"


def _svg_open(w: float, h: float, label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(w)}" height="{_n(h)}" '
            f'viewBox="0 0 {_n(w)} {_n(h)}" role="img" aria-label="{_e(label)}">')


def _y_axis(out: list[str], ax: _Axis, x0: float, x1: float, labels: Iterable[str], title: str,
            top: float, bottom: float) -> None:
    for t, lab in zip(ax.ticks, labels):
        y = ax(t)
        out.append(f'<line class="grid" x1="{_n(x0)}" x2="{_n(x1)}" y1="{_n(y)}" y2="{_n(y)}"/>'
                   f'<text class="tick" x="{_n(x0 - 6)}" y="{_n(y + 4)}" '
                   f'text-anchor="end">{_e(lab)}</text>')
    mid = (top + bottom) / 2
    out.append(f'<text class="axt" transform="translate(14,{_n(mid)}) rotate(-90)" '
               f'text-anchor="middle">{_e(title)}</text>'
               f'<line class="axis" x1="{_n(x0)}" x2="{_n(x0)}" y1="{_n(top)}" '
               f'y2="{_n(bottom)}"/>')


def _legend(out: list[str], items: Sequence[tuple[str, str, str]], x0: float, width: float,
            y: float) -> float:
    """Legend items (label, color, shape: 'box' | 'line' | 'dash' | 'dot' | 'ring'), wrapped;
    returns the y below it."""
    x = x0
    for label, color, shape in items:
        w = 22 + _text_w(label) + 14
        if x + w > x0 + width and x > x0:
            x, y = x0, y + 18
        if shape == "box":
            out.append(f'<rect x="{_n(x)}" y="{_n(y - 9)}" width="12" height="12" '
                       f'fill="{color}"/>')
        elif shape in ("line", "dash"):
            dash = ' stroke-dasharray="5 3"' if shape == "dash" else ""
            out.append(f'<line x1="{_n(x)}" x2="{_n(x + 16)}" y1="{_n(y - 3)}" y2="{_n(y - 3)}" '
                       f'stroke="{color}" stroke-width="2"{dash}/>')
        else:
            fill = "none" if shape == "ring" else color
            out.append(f'<circle cx="{_n(x + 6)}" cy="{_n(y - 3)}" r="5" fill="{fill}" '
                       f'stroke="{color}" stroke-width="2"/>')
        out.append(f'<text class="leg" x="{_n(x + 20)}" y="{_n(y + 1)}">{_e(label)}</text>')
        x += w
    return y + 14


# ---------------------------------------------------------------- charts

def _bar_chart(names: Sequence[str], series: Sequence[tuple[str, str, Sequence[float]]],
               unit: str, title: str, hlines: Sequence[tuple[float, str, str]] = (),
               extra: Sequence[str] | None = None, labels: Sequence[str] | None = None,
               xtitle: str = "layer (L1… as in the heat map and the layer table)",
               prefixed: bool = True) -> str:
    """Stacked bars, one per name; ``series`` = (label, color, value per bar); ``labels``: the
    bars' axis labels (default: the names, cut)."""
    n = len(names)
    series = [s for s in series if any(_f(v) > 0 for v in s[2])]
    totals = [sum(_f(s[2][i]) for s in series) for i in range(n)]
    vmax = max(totals + [_f(h[0]) for h in hlines] + [0.0])
    factor, p = _prefix(vmax) if prefixed else (1.0, "")

    def fmt(v: float) -> str:
        return si(v, unit) if prefixed else f"{_f(v):.3g} {unit}"

    labels = list(labels) if labels is not None else [_short(nm) for nm in names]
    ml, mr = 72, 16
    pw = max(PLOT_W - ml - mr, n * 26)
    w = ml + pw + mr
    legend: list[str] = []
    leg = [(s[0], s[1], "box") for s in series] + [(h[1], h[2], "dash") for h in hlines]
    mt = _legend(legend, leg, ml, pw, 16) + 8
    ph = 260
    mb = 26 + max([_text_w(s) for s in labels] + [0]) * 0.66 + 22
    h = mt + ph + mb
    ax = _Axis(0.0, vmax / factor if vmax else 1.0, mt + ph, mt)
    out = [_svg_open(w, h, title)] + legend
    _y_axis(out, ax, ml, ml + pw, [f"{t:g}" for t in ax.ticks], f"{title} ({p}{unit})",
            mt, mt + ph)
    slot = pw / max(n, 1)
    bw = min(44.0, slot * 0.72)
    for i, name in enumerate(names):
        cx = ml + slot * (i + 0.5)
        y = mt + ph
        tip = extra[i] if extra else ""
        for label, color, vals in series:
            v = _f(vals[i])
            if v <= 0:
                continue
            y1 = y - v / factor / (ax.hi - ax.lo) * ph
            share = f" ({100 * v / totals[i]:.1f}%)" if len(series) > 1 and totals[i] else ""
            out.append(f'<rect x="{_n(cx - bw / 2)}" y="{_n(y1)}" width="{_n(bw)}" '
                       f'height="{_n(max(y - y1, 0.5))}" fill="{color}"><title>{_e(name)}\n'
                       f'{_e(label)}: {fmt(v)}{share}\ntotal: {fmt(totals[i])}'
                       f'{_e(tip)}</title></rect>')
            y = y1
        out.append(f'<text class="tick" transform="translate({_n(cx + 4)},{_n(mt + ph + 12)}) '
                   f'rotate(-40)" text-anchor="end"><title>{_e(name)}</title>'
                   f'{_e(labels[i])}</text>')
    for v, label, color in hlines:
        y = ax(_f(v) / factor)
        out.append(f'<line x1="{_n(ml)}" x2="{_n(ml + pw)}" y1="{_n(y)}" y2="{_n(y)}" '
                   f'stroke="{color}" stroke-width="1.5" stroke-dasharray="6 4">'
                   f'<title>{_e(label)}: {fmt(v)}</title></line>')
    out.append(f'<text class="axt" x="{_n(ml + pw / 2)}" y="{_n(h - 8)}" '
               f'text-anchor="middle">{_e(xtitle)}</text>')
    out.append(f'<line class="axis" x1="{_n(ml)}" x2="{_n(ml + pw)}" y1="{_n(mt + ph)}" '
               f'y2="{_n(mt + ph)}"/></svg>')
    return "".join(out)


def _numbers_by_name(layers: list[dict]) -> dict[str, int]:
    """L-numbers of the crossbar layers by name (graph order), as the heat map numbers them."""
    out: dict[str, int] = {}
    for r in layers:
        if r.get("kind") != "digital":
            out[str(r.get("name", ""))] = len(out) + 1
    return out


def _labels(bars: list[dict], layers: list[dict]) -> list[str]:
    num = _numbers_by_name(layers)
    return [_bar_label(r, num.get(str(r.get("name", ""))) if r.get("kind") != "digital"
                       else None) for r in bars]


def _layer_groups(layers: list[dict]) -> tuple[list[dict], dict | None]:
    """(bars, merged digital row or None): matrix layers, and the digital ops as their own bars
    when few, else merged into one 'digital ops' bar."""
    digital = [r for r in layers if r.get("kind") == "digital"]
    if len(digital) <= MERGE_DIGITAL or len(digital) == len(layers):
        return layers, None
    merged: dict[str, Any] = {"name": f"digital ops ({len(digital)})", "kind": "digital",
                              "energy_j": sum(_f(r.get("energy_j")) for r in digital),
                              "latency_s": sum(_f(r.get("latency_s")) for r in digital),
                              "energy_breakdown_j": {}}
    for r in digital:
        for k, v in (r.get("energy_breakdown_j") or {}).items():
            merged["energy_breakdown_j"][k] = merged["energy_breakdown_j"].get(k, 0.0) + _f(v)
    return [r for r in layers if r.get("kind") != "digital"] + [merged], merged


def _energy_chart(layers: list[dict]) -> str | None:
    if not any(r.get("energy_breakdown_j") or _f(r.get("energy_j")) for r in layers):
        return None
    bars, _ = _layer_groups(layers)
    comps: dict[str, float] = {}
    for r in bars:
        for k, v in (r.get("energy_breakdown_j") or {}).items():
            comps[str(k)] = comps.get(str(k), 0.0) + _f(v)
    order = sorted(comps, key=lambda k: -comps[k])
    spare = iter(_SPARE_COLORS * 4)
    series = []
    for k in order:
        color = _COMPONENT_COLORS.get(k) or next(spare, "#999999")
        series.append((k, color, [_f((r.get("energy_breakdown_j") or {}).get(k)) for r in bars]))
    rest = [max(0.0, _f(r.get("energy_j")) - sum(_f(v) for v in
                                                 (r.get("energy_breakdown_j") or {}).values()))
            for r in bars]
    if any(v > 1e-30 for v in rest):
        series.append(("other", "#cccccc", rest))
    return _bar_chart([str(r.get("name", "")) for r in bars], series, "J", "energy",
                      labels=_labels(bars, layers))


def _latency_chart(report: dict, layers: list[dict]) -> str | None:
    if not any(_f(r.get("latency_s")) for r in layers):
        return None
    bars, merged = _layer_groups(layers)
    crit = set(map(str, (report.get("schedule") or {}).get("critical_path") or ()))
    on, off, dig = [], [], []
    for r in bars:
        v = _f(r.get("latency_s"))
        is_dig = r.get("kind") == "digital"
        on.append(v if not is_dig and r.get("name") in crit else 0.0)
        off.append(v if not is_dig and r.get("name") not in crit else 0.0)
        dig.append(v if is_dig else 0.0)
    series = [("matrix layer on the critical path", "#2c5d8f", on),
              ("matrix layer off the critical path", "#9ec1e0", off),
              ("digital ops (summed)" if merged else "digital op", "#c9a227", dig)]
    hl = []
    period = _f((report.get("totals") or {}).get("pipeline_period_s"))
    if period > 0:
        hl.append((period, "pipeline period (busiest stage)", "#d62728"))
    return _bar_chart([str(r.get("name", "")) for r in bars], series, "s", "latency", hl,
                      labels=_labels(bars, layers))


def _area_chart(layers: list[dict]) -> str | None:
    """Area per crossbar layer (its arrays with their converters and periphery)."""
    rows = [r for r in layers if r.get("kind") != "digital" and "area_mm2" in r]
    if not rows or not any(_f(r.get("area_mm2")) for r in rows):
        return None
    return _bar_chart([str(r.get("name", "")) for r in rows],
                      [("arrays with converters and periphery", "#59a14f",
                        [_f(r.get("area_mm2")) for r in rows])], "mm²", "area",
                      labels=_labels(rows, layers), prefixed=False)


def _sensitivity_chart(sens: dict, layers: list[dict]) -> str | None:
    """Accuracy drop of each crossbar layer alone on the hardware, ranked."""
    rows = [r for r in sens.get("layers") or [] if isinstance(r, dict)]
    if not rows:
        return None
    unit = str(sens.get("unit", "points"))
    drops = [_f(r.get("drop")) for r in rows]
    labels = [f"{r.get('label', '')} {_short(str(r.get('name', '')), 22)}" for r in rows]
    return _signed_bars(labels, [str(r.get("name", "")) for r in rows], drops,
                        f"accuracy drop ({unit})")


def _signed_bars(labels: Sequence[str], names: Sequence[str], values: Sequence[float],
                 ytitle: str) -> str:
    """One bar per value, negative ones below the zero line."""
    n = len(values)
    lo, hi = min(list(values) + [0.0]), max(list(values) + [0.0])
    ml, mr, ph = 72, 16, 220
    pw = max(PLOT_W - ml - mr, n * 26)
    mt = 14
    mb = 26 + max([_text_w(s) for s in labels] + [0]) * 0.66 + 22
    w, h = ml + pw + mr, mt + ph + mb
    ax = _Axis(lo, hi if hi > lo else lo + 1.0, mt + ph, mt)
    out = [_svg_open(w, h, ytitle)]
    _y_axis(out, ax, ml, ml + pw, [f"{t:g}" for t in ax.ticks], ytitle, mt, mt + ph)
    slot = pw / max(n, 1)
    bw = min(44.0, slot * 0.72)
    zero = ax(0.0)
    for i, v in enumerate(values):
        cx = ml + slot * (i + 0.5)
        y1 = ax(v)
        top, height = min(y1, zero), max(abs(zero - y1), 0.5)
        out.append(f'<rect x="{_n(cx - bw / 2)}" y="{_n(top)}" width="{_n(bw)}" '
                   f'height="{_n(height)}" fill="{"#d62728" if v > 0 else "#59a14f"}">'
                   f'<title>{_e(names[i])}\n{_e(ytitle)}: {v:.4g}</title></rect>')
        out.append(f'<text class="tick" transform="translate({_n(cx + 4)},{_n(mt + ph + 12)}) '
                   f'rotate(-40)" text-anchor="end"><title>{_e(names[i])}</title>'
                   f'{_e(labels[i])}</text>')
    out.append(f'<line class="axis" x1="{_n(ml)}" x2="{_n(ml + pw)}" y1="{_n(zero)}" '
               f'y2="{_n(zero)}"/><text class="axt" x="{_n(ml + pw / 2)}" y="{_n(h - 8)}" '
               'text-anchor="middle">layer, most sensitive first (L1… as in the layer table)'
               '</text></svg>')
    return "".join(out)


def _best_cols(n: int, w: float, h: float, aspect: float) -> int:
    best, score = 1, float("inf")
    for c in range(1, n + 1):
        rows = math.ceil(n / c)
        if c > 1 and math.ceil(n / (c - 1)) == rows:
            continue
        s = abs(math.log((c * w) / (rows * h) / aspect)) + (1.0 if n % c else 0.0)
        if s < score:
            best, score = c, s
    return best


def _heatmap(report: dict, numbers: dict[int, int]) -> tuple[str, str] | None:
    """(svg, caption) of array utilization on the chip, or None without arrays/hierarchy."""
    hier = (report.get("target") or {}).get("hierarchy") or {}
    layers = report.get("layers") or []
    apc, cpt, tpc = (max(1, int(_f(hier.get(k)) or 1))
                     for k in ("arrays_per_core", "cores_per_tile", "tiles_per_chip"))
    cells: dict[int, tuple[int, str, float, int, int]] = {}
    nxt = 0
    for i, r in enumerate(layers):
        a = int(_f(r.get("arrays")))
        if r.get("kind") == "digital" or a <= 0:
            continue
        first = r.get("first_array")
        first = nxt if first is None else int(_f(first))
        reps = max(1, int(_f(r.get("replicas")) or 1))
        per = max(1, a // reps)
        for k in range(min(a, 1_000_000)):
            cells[first + k] = (numbers.get(i, 0), str(r.get("name", "")),
                                _f(r.get("utilization")), k // per + 1, reps)
        nxt = first + a
    if not cells or not hier:
        return None
    used_n = max(cells) + 1
    per_tile, chip = apc * cpt, apc * cpt * tpc
    panels = max(1, math.ceil(used_n / chip))
    shown_panels = min(panels, MAX_PANELS)
    for unit, sizes, kinds in (("array", [apc, cpt, tpc], ["core", "tile", "chip"]),
                               ("core", [cpt, tpc], ["tile", "chip"]),
                               ("tile", [tpc], ["chip"])):
        us = {"array": 1, "core": apc, "tile": per_tile}[unit]
        top = tpc
        if panels == 1 and chip // us > CROP_CELLS:
            top = (used_n - 1) // per_tile + 1
        if shown_panels * top * (per_tile // us) <= MAX_CELLS or unit == "tile":
            break
    sizes = sizes[:-1] + [top]
    # layout: cols per level, then cell size so that a chip fits the page
    gaps = [2.0 if math.prod(sizes[:k]) == 1 else 3.0 + 3 * k for k in range(len(sizes))]

    def layout(cell: float) -> tuple[list[int], list[float], list[float]]:
        cols, ws, hs = [], [cell], [cell]
        for k, (n, kind) in enumerate(zip(sizes, kinds)):
            if kind == "core":
                c = n if n <= 32 else _best_cols(n, ws[-1], hs[-1], 1.0)
            else:
                c = _best_cols(n, ws[-1] + gaps[k], hs[-1] + gaps[k],
                               1.0 if kind == "tile" else 1.8)
            rows = math.ceil(n / c)
            cols.append(c)
            ws.append(c * ws[-1] + (c - 1) * gaps[k])
            hs.append(rows * hs[-1] + (rows - 1) * gaps[k])
        return cols, ws, hs

    cols, ws, hs = layout(10.0)
    cell = 10.0 * min((PLOT_W - 40) / ws[-1], 560 / hs[-1])
    cell = max(3.0, min(38.0, math.floor(cell)))
    cols, ws, hs = layout(cell)
    panel_label = 18 if panels > 1 else 0
    x0, y0 = 20.0, 10.0
    legend_h = 44
    w = max(x0 + ws[-1] + 20, 420)
    h = y0 + shown_panels * (hs[-1] + panel_label + 12) + legend_h
    out = [_svg_open(w, h, "array utilization")]
    empty: list[str] = []
    per_panel = math.prod(sizes)
    reload = report.get("overflow_policy") == "reload"
    for pnl in range(shown_panels):
        py = y0 + pnl * (hs[-1] + panel_label + 12) + panel_label
        if panel_label:
            what = (f"chip 0, reload round {pnl + 1}" if reload and pnl else
                    f"chip {0 if reload else pnl}")
            out.append(f'<text class="leg" x="{_n(x0)}" y="{_n(py - 5)}">{_e(what)}</text>')
        for u in range(per_panel):
            x, y, rest = x0, py, u
            for k, n in enumerate(sizes):
                d = rest % n
                rest //= n
                x += (d % cols[k]) * (ws[k] + gaps[k])
                y += (d // cols[k]) * (hs[k] + gaps[k])
            g0 = (pnl * chip) + u * us  # first global array of this unit
            used = [cells[a] for a in range(g0, g0 + us) if a in cells]
            if not used:
                empty.append(f"M{_n(x)} {_n(y)}h{_n(cell)}v{_n(cell)}h-{_n(cell)}z")
                continue
            util = sum(c[2] for c in used) / len(used)
            tile, r = divmod(g0 % chip, per_tile)
            core, idx = divmod(r, apc)
            chip_no = 0 if reload else g0 // chip
            where = {"array": f"array {g0}: chip {chip_no}, tile {tile}, core {core}, array {idx}",
                     "core": f"arrays {g0}-{g0 + us - 1}: chip {chip_no}, tile {tile}, core {core}"
                             f" ({len(used)} of {us} arrays used)",
                     "tile": f"arrays {g0}-{g0 + us - 1}: chip {chip_no}, tile {tile}"
                             f" ({len(used)} of {us} arrays used)"}[unit]
            names = list(dict.fromkeys(f"L{c[0]} {c[1]}" for c in used))
            lay = "\n".join(names[:6]) + (f"\n… {len(names) - 6} more" if len(names) > 6 else "")
            copy = f", copy {used[0][3]} of {used[0][4]}" if unit == "array" and used[0][4] > 1 \
                else ""
            word = "utilization" if unit == "array" else "mean utilization"
            out.append(f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(cell)}" height="{_n(cell)}" '
                       f'fill="{_viridis(util)}"><title>{_e(where)}\n{_e(lay)}\n{word} '
                       f'{_pct(util)}{copy}</title></rect>')
            if unit == "array" and cell >= 22:
                txt = "#fff" if util < 0.6 else "#222"
                out.append(f'<text class="cell" x="{_n(x + cell / 2)}" y="{_n(y + cell / 2 + 3.5)}"'
                           f' fill="{txt}" text-anchor="middle">L{used[0][0]}</text>')
    if empty:
        out.insert(1, f'<path fill="{_EMPTY}" d="{"".join(empty)}"><title>unused array'
                      f'</title></path>')
    ly = h - legend_h + 16
    out.append('<defs><linearGradient id="imc-viridis">' + "".join(
        f'<stop offset="{i * 25}%" stop-color="{_viridis(i / 4)}"/>' for i in range(5))
        + '</linearGradient></defs>'
        f'<rect x="{_n(x0)}" y="{_n(ly)}" width="200" height="12" fill="url(#imc-viridis)"/>'
        f'<text class="tick" x="{_n(x0)}" y="{_n(ly + 26)}">0%</text>'
        f'<text class="tick" x="{_n(x0 + 200)}" y="{_n(ly + 26)}" text-anchor="end">100%</text>'
        f'<text class="tick" x="{_n(x0 + 100)}" y="{_n(ly + 26)}" text-anchor="middle">'
        f'cells holding weights</text>'
        f'<rect x="{_n(x0 + 230)}" y="{_n(ly)}" width="12" height="12" fill="{_EMPTY}"/>'
        f'<text class="leg" x="{_n(x0 + 248)}" y="{_n(ly + 10)}">unused array</text></svg>')
    total_used = len(cells)
    cap = [f"{total_used:,} arrays used of {chip:,} per chip"
           + (f" on {panels} chips" if panels > 1 and not reload else "")
           + (f" ({used_n - chip:,} reprogrammed every inference, shown as reload rounds)"
              if reload and used_n > chip else "") + ".",
           (f"Placement order: chip › tile › core › array ({apc} arrays/core, {cpt} "
            f"cores/tile, {tpc} tiles/chip); layers are numbered L1… as in the layer table.")]
    if unit != "array":
        cap.append(f"Too many arrays to draw one by one: one cell per {unit} ({us} arrays), "
                   "coloured by the mean utilization of its used arrays.")
    if top < tpc:
        cap.append((f"Only tiles 0–{top - 1} are shown" if top > 1 else "Only tile 0 is shown")
                   + f"; the other {tpc - top:,} tiles ({(tpc - top) * per_tile:,} arrays) are "
                   "unused.")
    if shown_panels < panels:
        cap.append(f"The first {shown_panels} of {panels} chips are shown.")
    return "".join(out), " ".join(cap)


def _accuracy_chart(acc: dict) -> str | None:
    """Accuracy per noise seed; None with fewer than two seeds (one dot on a line shows nothing:
    the page gives the numbers instead)."""
    per = [_f(v) for v in acc.get("per_seed") or []]
    if len(per) < 2:
        return None
    seeds = acc.get("seeds") or list(range(len(per)))
    seeds = [str(s) for s in seeds][:len(per)] + [str(i) for i in range(len(seeds), len(per))]
    metric = str(acc.get("metric", "accuracy"))
    ref = acc.get("float")
    mean, std = _f(acc.get("mean", sum(per) / len(per))), _f(acc.get("std"))
    vals = per + [mean - std, mean + std] + ([_f(ref)] if ref is not None else [])
    lo, hi = min(vals), max(vals)
    pad = max((hi - lo) * 0.15, abs(hi) * 1e-3, 1e-6)
    ml, mr, pw, ph = 72, 16, PLOT_W - 88, 240
    legend: list[str] = []
    leg = [("hardware, per seed", "#2c5d8f", "dot"), (f"mean ± std {mean:.4g} ± {std:.2g}",
                                                      "#2c5d8f", "line")]
    if ref is not None:
        leg.append((f"float reference {_f(ref):.4g}", "#d62728", "dash"))
    mt = _legend(legend, leg, ml, pw, 16) + 8
    ax = _Axis(lo - pad, hi + pad, mt + ph, mt, tight=True)
    w, h = ml + pw + mr, mt + ph + 44
    out = [_svg_open(w, h, "accuracy per seed")] + legend
    ytitle = f"{metric} (dB)" if metric == "snr" else f"{metric} (fraction)" \
        if metric in ("top1", "agreement", "cosine") else metric
    _y_axis(out, ax, ml, ml + pw, [f"{t:.6g}" for t in ax.ticks], ytitle, mt, mt + ph)
    slot = pw / len(per)
    out.append(f'<rect x="{_n(ml)}" y="{_n(ax(mean + std))}" width="{_n(pw)}" '
               f'height="{_n(max(ax(mean - std) - ax(mean + std), 0.5))}" fill="#2c5d8f" '
               f'fill-opacity="0.12"/><line x1="{_n(ml)}" x2="{_n(ml + pw)}" '
               f'y1="{_n(ax(mean))}" y2="{_n(ax(mean))}" stroke="#2c5d8f" stroke-width="1.5">'
               f'<title>mean {mean:.4g} ± {std:.2g}</title></line>')
    if ref is not None:
        out.append(f'<line x1="{_n(ml)}" x2="{_n(ml + pw)}" y1="{_n(ax(_f(ref)))}" '
                   f'y2="{_n(ax(_f(ref)))}" stroke="#d62728" stroke-width="1.5" '
                   f'stroke-dasharray="6 4"><title>float {_f(ref):.4g}</title></line>')
    every = max(1, math.ceil(len(per) / 40))
    for i, v in enumerate(per):
        x = ml + slot * (i + 0.5)
        out.append(f'<circle cx="{_n(x)}" cy="{_n(ax(v))}" r="5" fill="#2c5d8f">'
                   f'<title>seed {_e(seeds[i])}: {metric} {v:.4g}</title></circle>')
        if i % every == 0:
            out.append(f'<text class="tick" x="{_n(x)}" y="{_n(mt + ph + 16)}" '
                       f'text-anchor="middle">{_e(seeds[i])}</text>')
    out.append(f'<text class="axt" x="{_n(ml + pw / 2)}" y="{_n(mt + ph + 36)}" '
               f'text-anchor="middle">noise seed</text><line class="axis" x1="{_n(ml)}" '
               f'x2="{_n(ml + pw)}" y1="{_n(mt + ph)}" y2="{_n(mt + ph)}"/></svg>')
    return "".join(out)


_METRIC_ORDER = ("top1", "agreement", "cosine", "relerr", "snr")
_METRIC_TITLE = {"top1": "top-1 (labels)", "agreement": "top-1 agreement", "cosine": "cosine",
                 "relerr": "rel. error", "snr": "SNR dB"}


def _metric_num(metric: str, v: Any) -> str:
    return f"{_f(v):.4g}" if metric in ("relerr", "snr") else f"{_f(v):.4f}"


def _output_table(acc: dict) -> str:
    """Every output's metrics: float value, hardware mean ± std over the seeds."""
    outs = [o for o in acc.get("outputs") or [] if isinstance(o, dict)]
    if not outs:
        return ""
    names = [m for m in _METRIC_ORDER
             if any(isinstance(o.get("metrics"), dict) and m in o["metrics"] for o in outs)]
    head = ["output", "shape", "kind"] + [_METRIC_TITLE[m] for m in names]
    rows = []
    for o in outs:
        ms = o["metrics"] if isinstance(o.get("metrics"), dict) else {}
        cells = [_e(o.get("name", "")),
                 _e("×".join(str(d) for d in o.get("shape") or []) or "scalar"),
                 _e("class scores" if o.get("kind") == "class_scores" else "values")]
        for m in names:
            st = ms.get(m)
            if not isinstance(st, dict):
                cells.append("<td></td>")
                continue
            tip = f"float {_metric_num(m, st.get('float'))}"
            cells.append(f'<td class=r title="{_e(tip)}">{_e(_metric_num(m, st.get("mean")))}'
                         f' ± {_e(_metric_num(m, st.get("std")))}</td>')
        rows.append("<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>"
                                     for c in cells) + "</tr>")
    return ("<table class=layers><caption>per output (hardware, mean ± std over the seeds; "
            "hover for the float model's value)</caption><thead><tr>"
            + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>"
            '<p class="cap">top-1 agreement: rows whose argmax is the float model\'s; cosine: '
            "per sample, mean; rel. error: ||out − float|| / ||float||; SNR: "
            "10·log10(||float||² / ||out − float||²), at most 100 dB.</p>")


def _objval(v: Any, name: str) -> str:
    unit = _unit_of(name)
    return si(v, unit) if unit and unit != "mm²" else _num(v)


def _pareto_chart(search: dict) -> tuple[str, str] | None:
    """(svg, table html) of the search's trials and Pareto front, or None if unusable."""
    objs = [str(o) for o in search.get("objectives") or []]
    pareto = [p for p in search.get("pareto") or [] if isinstance(p, dict)]
    trials = [t for t in search.get("trials") or [] if isinstance(t, dict)]
    if not objs or not (pareto or trials):
        return None
    chosen = search.get("chosen")
    if isinstance(chosen, dict):
        chosen = chosen.get("trial")
    dirs = [str(d) for d in search.get("directions") or []]
    one = len(objs) == 1
    xname, yname = ("trial", objs[0]) if one else (objs[0], objs[1])

    def xy(p: dict) -> tuple[float, float]:
        v = p.get("values") or {}
        return (_f(p.get("trial")) if one else _f(v.get(xname)), _f(v.get(yname)))

    pts = [xy(p) for p in pareto + trials]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    xu, yu = ("" if one else _unit_of(xname)), _unit_of(yname)

    def is_log(vs: list[float], unit: str) -> bool:
        return bool(unit) and min(vs) > 0 and max(vs) / min(vs) > 30

    xlog, ylog = (not one) and is_log(xs, xu), is_log(ys, yu)

    def rng(vs: list[float], log: bool, unit: str = "x") -> tuple[float, float]:
        lo, hi = min(vs), max(vs)
        if log:
            return lo, hi
        pad = max((hi - lo) * 0.06, abs(hi) * 1e-3, 1e-12)
        top = hi + pad
        if not unit and 0 <= lo and hi <= 1:  # a fraction (top-1, agreement, cosine): to 1 at most
            top = max(min(top, 1.0), hi)
        return (max(lo - pad, 0.0) if lo >= 0 else lo - pad), top

    ml, mr, pw, ph = 80, 20, PLOT_W - 100, 320
    legend: list[str] = []
    base = next((p for p in pareto + trials if p.get("trial") == 0), None)
    leg = [("trial", "#9aa5b1", "dot"), ("Pareto front", "#2c5d8f", "line")]
    if base is not None:
        leg.append(("baseline: trial 0 (the target's own settings)", "#e08214", "box"))
    if chosen is not None:
        leg.append((f"chosen: trial {chosen}", "#d62728", "ring"))
    mt = _legend(legend, leg, ml, pw, 16) + 8
    ax = _Axis(*rng(ys, ylog, yu), mt + ph, mt, log=ylog, tight=True)
    bx = _Axis(*rng(xs, xlog, "x" if one else xu), ml, ml + pw, log=xlog, tight=True)
    w, h = ml + pw + mr, mt + ph + 48

    def lab(name: str, i: int) -> str:
        d = dirs[i] if i < len(dirs) else ""
        better = {"minimize": "lower is better", "maximize": "higher is better"}
        unit = _unit_of(name) or ("" if name == "trial" else "headline metric")
        notes = [x for x in (unit, better.get(d, "")) if x]
        return name + (f" ({', '.join(notes)})" if notes else "")

    out = [_svg_open(w, h, "Pareto front")] + legend
    _y_axis(out, ax, ml, ml + pw, [_tick_label(t, yu, ylog) for t in ax.ticks],
            lab(yname, 0 if one else 1), mt, mt + ph)
    for t in bx.ticks:
        x = bx(t)
        out.append(f'<line class="grid" x1="{_n(x)}" x2="{_n(x)}" y1="{_n(mt)}" '
                   f'y2="{_n(mt + ph)}"/><text class="tick" x="{_n(x)}" y="{_n(mt + ph + 16)}" '
                   f'text-anchor="middle">{_e(_tick_label(t, xu, xlog))}</text>')
    out.append(f'<text class="axt" x="{_n(ml + pw / 2)}" y="{_n(mt + ph + 38)}" '
               f'text-anchor="middle">{_e("trial" if one else lab(xname, 0))}</text>'
               f'<line class="axis" x1="{_n(ml)}" x2="{_n(ml + pw)}" y1="{_n(mt + ph)}" '
               f'y2="{_n(mt + ph)}"/>')

    def tip(p: dict) -> str:
        v = p.get("values") or {}
        return "\n".join([f"trial {p.get('trial')}"]
                         + [f"{k}: {_objval(x, str(k))}" for k, x in v.items()])

    for trial in trials:
        x, y = xy(trial)
        out.append(f'<circle cx="{_n(bx(x))}" cy="{_n(ax(y))}" r="3.5" fill="#9aa5b1" '
                   f'fill-opacity="0.7"><title>{_e(tip(trial))}</title></circle>')
    front = sorted((xy(p), p) for p in pareto) if not one else []
    if len(front) > 1:
        d = " ".join(f"{'M' if i == 0 else 'L'}{_n(bx(x))} {_n(ax(y))}"
                     for i, ((x, y), _) in enumerate(front))
        out.append(f'<path d="{d}" fill="none" stroke="#2c5d8f" stroke-width="1.5"/>')
    for p in pareto:
        x, y = xy(p)
        out.append(f'<circle cx="{_n(bx(x))}" cy="{_n(ax(y))}" r="5" fill="#2c5d8f">'
                   f'<title>{_e(tip(p))}</title></circle>')
    if base is not None:  # a square: told apart from the dots without a label over the front
        x, y = xy(base)
        out.append(f'<rect x="{_n(bx(x) - 5)}" y="{_n(ax(y) - 5)}" width="10" height="10" '
                   f'fill="#e08214"><title>baseline: {_e(tip(base))}</title></rect>')
    ch = next((p for p in pareto + trials if chosen is not None and p.get("trial") == chosen),
              None)
    if ch is not None:  # named in the legend, not by a label that would cover the front
        x, y = xy(ch)
        out.append(f'<circle cx="{_n(bx(x))}" cy="{_n(ax(y))}" r="9" fill="none" '
                   f'stroke="#d62728" stroke-width="2.5"><title>chosen: {_e(tip(ch))}</title>'
                   f'</circle>')
    out.append("</svg>")
    def knobs(p: dict) -> str:
        text = " ".join(str(o) for o in p.get("overrides") or [])
        pipe = str(p.get("pipeline") or "")
        return (f"<code>{_e(text)}</code>" if text else "") + (
            f"<br><code>{_e(pipe)}</code>" if pipe else "")

    rows = "".join(
        f'<tr{" class=chosen" if p.get("trial") == chosen else ""}><td>{_e(p.get("trial"))}'
        f'{" ★" if p.get("trial") == chosen else ""}'
        f'{" (baseline)" if p.get("trial") == 0 else ""}</td>'
        + "".join(f'<td class="r">{_e(_objval((p.get("values") or {}).get(o), o))}</td>'
                  for o in objs)
        + f"<td class=knobs>{knobs(p)}</td></tr>"
        for p in sorted(pareto, key=lambda p: _f((p.get("values") or {}).get(objs[0]))))
    table = ("<table class=front><thead><tr><th>trial</th>"
             + "".join(f"<th>{_e(o)}</th>" for o in objs)
             + "<th>knobs and per-layer pipeline</th>"
             + f"</tr></thead><tbody>{rows}</tbody></table>") if pareto else ""
    return "".join(out), table


# ---------------------------------------------------------------- page

_TOTALS = [
    ("energy_j", "energy per inference", "J"), ("latency_s", "latency (critical path)", "s"),
    ("serial_latency_s", "serial latency", "s"), ("pipeline_period_s", "pipeline period", "s"),
    ("inferences_per_s", "throughput (pipelined)", "/s"), ("tops", "TOPS (one inference)", ""),
    ("pipelined_tops", "TOPS (pipelined)", ""),
    ("tops_per_w", "TOPS/W", ""), ("tops_per_mm2", "TOPS/mm² (one inference)", ""),
    ("pipelined_tops_per_mm2", "TOPS/mm² (pipelined)", ""), ("arrays", "arrays", ""),
    ("chips", "chips", ""), ("overflow_arrays", "arrays over one chip", ""),
    ("utilization", "cell utilization of the used arrays", "%"),
    ("area_mm2", "area used", "mm2"), ("chip_area_mm2", "chip area", "mm2"),
    ("weights", "weights", ""), ("macs", "MACs", ""), ("matrix_ops", "matrix ops", ""),
    ("digital_ops", "digital ops", ""), ("digital_op_count", "digital operations", ""),
    ("dram_bytes", "off-chip DRAM traffic", "B"),
]
_SKIP_TOTALS = {"energy_per_inference_j"}


def _fmt_total(v: Any, unit: str) -> str:
    if unit == "%":
        return _pct(v)
    if unit == "mm2":
        return si(v, "mm²")
    if unit == "/s":
        return si(v, "inferences/s")
    if unit:
        return si(v, unit)
    return _num(v)


def _totals_table(totals: dict) -> str:
    rows, seen = [], set(_SKIP_TOTALS)
    for key, label, unit in _TOTALS:
        if key in totals:
            seen.add(key)
            rows.append((label, _fmt_total(totals[key], unit)))
    for key, v in totals.items():
        if key not in seen and not isinstance(v, (dict, list)):
            rows.append((str(key), _fmt_total(v, _unit_of(str(key)).replace("²", "2"))))
    return ("<table class=kv><caption>totals</caption>"
            + "".join(f"<tr><th>{_e(a)}</th><td>{_e(b)}</td></tr>" for a, b in rows)
            + "</table>")


def _breakdown(title: str, d: dict, unit: str) -> str:
    if not isinstance(d, dict) or not d:
        return ""
    total = sum(_f(v) for v in d.values()) or 1.0
    rows = "".join(
        f'<tr><td>{_e(k)}</td><td class="r">'
        f'{_e(si(v, "J") if unit == "J" else f"{_f(v):.3g} mm²")}</td>'
        f'<td class="r">{100 * _f(v) / total:.1f}%</td><td class="barcell"><span '
        f'style="width:{100 * _f(v) / total:.1f}%;background:'
        f'{_COMPONENT_COLORS.get(str(k), "#8fa3b8")}"></span></td></tr>'
        for k, v in sorted(d.items(), key=lambda kv: -_f(kv[1])))
    return (f"<table><caption>{_e(title)}</caption><thead><tr><th>component</th><th>value</th>"
            f"<th>share</th><th></th></tr></thead><tbody>{rows}</tbody></table>")


def _target_summary(t: dict) -> list[tuple[str, str]]:
    a, h, p = t.get("array") or {}, t.get("hierarchy") or {}, t.get("precision") or {}
    adc, dac, tech = t.get("adc") or {}, t.get("dac") or {}, t.get("technology") or {}
    out = [("target", t.get("name")), ("device", a.get("device"))]
    if a.get("rows"):
        out.append(("array", f"{a.get('rows')} × {a.get('cols')}, {a.get('bits_per_cell')} "
                             f"bit/cell, {a.get('signed_scheme')}"))
    if h:
        out.append(("hierarchy", f"{h.get('arrays_per_core')} arrays/core × "
                                 f"{h.get('cores_per_tile')} cores/tile × "
                                 f"{h.get('tiles_per_chip')} tiles/chip"))
    if p:
        out.append(("precision", f"{p.get('weight_bits')}-bit weights, "
                                 f"{p.get('input_bits')}-bit inputs"))
    if adc or dac:
        out.append(("ADC / DAC", f"{adc.get('bits')}-bit {adc.get('type', '')} / "
                                 f"{dac.get('bits')}-bit {dac.get('mode', '')}"))
    if tech:
        out.append(("technology", f"{tech.get('node_nm')} nm, {si(tech.get('clock_hz'), 'Hz')}"))
    return [(k, str(v)) for k, v in out if v is not None]


def _layer_table(layers: list[dict], numbers: dict[int, int]) -> str:
    head = ("#", "layer", "kind", "K", "N", "groups", "MACs", "arrays", "util", "area",
            "energy", "latency")
    rows = []
    for i, r in enumerate(layers):
        dig = r.get("kind") == "digital"
        kind = f"{r.get('op_type', 'digital')}" if dig else str(r.get("kind", ""))
        cells = [f"L{numbers[i]}" if i in numbers else "", str(r.get("name", "")), kind]
        cells += ["" if dig else _num(r.get(k, 0)) for k in ("rows", "cols", "groups", "macs",
                                                            "arrays")]
        area = "" if dig or "area_mm2" not in r else f"{_f(r.get('area_mm2')):.3g} mm²"
        cells += ["" if dig else _pct(r.get("utilization")), area, si(r.get("energy_j"), "J"),
                  si(r.get("latency_s"), "s")]
        rows.append("<tr" + (" class=dig" if dig else "") + ">" + "".join(
            f'<td{" class=r" if j >= 3 else ""}>{_e(c)}</td>' for j, c in enumerate(cells))
            + "</tr>")
    return ("<table class=layers><thead><tr>" + "".join(f"<th>{h}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


_CSS = """
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:#1d2733;background:#f4f6f9;margin:0}main{max-width:1120px;margin:0 auto;padding:20px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:0 0 10px}.sub{color:#5b6b7c;margin:0}
section{background:#fff;border:1px solid #dde3ea;border-radius:8px;padding:16px 18px;margin:16px 0}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin-top:14px}.card{flex:1 1 150px;background:#f4f7fb;
border:1px solid #dde3ea;border-radius:6px;padding:8px 12px}.card b{display:block;font-size:18px}
.card span{color:#5b6b7c;font-size:12px}.warn{background:#fff8e1;border:1px solid #f0d58a;
border-radius:6px;padding:8px 12px 8px 28px;margin:12px 0 0}
.cols{display:flex;flex-wrap:wrap;gap:24px}.cols>*{flex:1 1 300px}
table{border-collapse:collapse;font-size:13px;margin:4px 0}
th,td{padding:3px 8px;border-bottom:1px solid #edf0f4;text-align:left;vertical-align:top}
thead th{background:#f4f7fb}caption{text-align:left;font-weight:600;padding:4px 0}
.r{text-align:right;font-variant-numeric:tabular-nums}.kv th{font-weight:normal;color:#5b6b7c}
.barcell{width:90px}
.barcell span{display:block;height:10px;border-radius:2px}tr.dig td{color:#6b7785}
tr.chosen td{background:#fdecec;font-weight:600}.plot{overflow-x:auto}.cap{color:#5b6b7c;
font-size:12.5px;margin:6px 0 0}pre{background:#f4f7fb;padding:10px;overflow:auto;font-size:12px}
svg text{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
.tick{font-size:11px;fill:#4a5866}.axt{font-size:12px;fill:#1d2733}.leg{font-size:11px;fill:#1d2733}
.cell{font-size:10px;pointer-events:none}.grid{stroke:#e7ebf0}.axis{stroke:#7b8794}
footer{color:#8a96a3;font-size:12px;text-align:center;padding:8px}
.sub,td,th,li,code,.cmd{overflow-wrap:anywhere}.cols>*{min-width:0}
.cmd{background:#f4f7fb;border:1px solid #dde3ea;border-radius:6px;padding:6px 10px;
font:12px ui-monospace,SFMono-Regular,Menlo,monospace;margin:8px 0 0;white-space:pre-wrap}
td.knobs{font-size:12px;max-width:640px}section{overflow-x:auto}
"""


def _plot(pid: str, title: str, svg: str, caption: str = "", extra: str = "") -> str:
    cap = f'<p class="cap">{_e(caption)}</p>' if caption else ""
    return (f'<section><h2>{_e(title)}</h2><div class="plot" id="plot-{pid}">{svg}</div>'
            f"{cap}{extra}</section>")


def render_html(report: dict) -> str:
    """The report as one self-contained HTML page (inline CSS and SVG, no script)."""
    layers = [r for r in report.get("layers") or [] if isinstance(r, dict)]
    totals = report.get("totals") or {}
    target = report.get("target") or {}
    acc = report.get("accuracy") if isinstance(report.get("accuracy"), dict) else None
    numbers: dict[int, int] = {}
    for i, r in enumerate(layers):
        if r.get("kind") != "digital":
            numbers[i] = len(numbers) + 1
    model = str(report.get("model", "model"))
    tname = str(target.get("name", "")) if target else ""
    parts = [f"<section><h1>{_e(model)}{' on ' + _e(tname) if tname else ''}</h1>"]
    sub = [f"imccompile {report.get('imccompile', '')}".strip()]
    if report.get("pipeline"):
        sub.append(f"pipeline: {report['pipeline']}")  # long: wraps anywhere (CSS .sub)
    if report.get("overflow_policy"):
        sub.append(f"overflow: {report['overflow_policy']}")
    parts.append(f'<p class="sub">{" · ".join(_e(s) for s in sub)}</p>')
    if target.get("description"):
        parts.append(f'<p class="sub">{_e(target["description"])}</p>')
    cards = []
    for key, label, unit in (("energy_j", "energy / inference", "J"),
                             ("latency_s", "latency", "s"),
                             ("inferences_per_s", "throughput", "/s"),
                             ("tops_per_w", "TOPS/W", ""), ("arrays", "arrays", ""),
                             ("utilization", "cell utilization", "%")):
        if key in totals:
            v = _fmt_total(totals[key], unit).replace(" inferences/s", " inf/s")
            if key == "arrays" and _f(totals.get("chips")) > 1:
                v += f" on {_num(totals['chips'])} chips"
            cards.append((label, v))
    if acc:
        db = " dB" if acc.get("metric") == "snr" else ""
        cards.append((f"{acc.get('metric', 'accuracy')} (hardware)",
                      f"{_f(acc.get('mean')):.4g} ± {_f(acc.get('std')):.2g}" + db))
        cards.append((f"{acc.get('metric', 'accuracy')} (float model)",
                      f"{_f(acc.get('float')):.4g}" + db))
    if cards:
        parts.append('<div class="cards">' + "".join(
            f"<div class=card><b>{_e(v)}</b><span>{_e(k)}</span></div>" for k, v in cards)
            + "</div>")
    if report.get("command"):
        parts.append('<p class="sub">reproduce this report with:</p>'
                     f'<div class="cmd" id="command">{_e(report["command"])}</div>')
    warnings = [str(w) for w in report.get("warnings") or []]
    if warnings:
        parts.append('<ul class="warn">' + "".join(f"<li>{_e(w)}</li>" for w in warnings)
                     + "</ul>")
    parts.append("</section>")
    if totals:
        ts = _target_summary(target) if target else []
        tt = ("<table class=kv><caption>target</caption>" + "".join(
            f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in ts) + "</table>") if ts \
            else ""
        parts.append('<section><h2>Summary</h2><div class="cols"><div>'
                     f'{_totals_table(totals)}'
                     f'</div><div>{tt}'
                     f'{_breakdown("energy per inference", totals.get("energy_breakdown_j") or {}, "J")}'
                     f'{_breakdown("area", totals.get("area_breakdown_mm2") or {}, "mm2")}</div></div>'
                     "</section>")
    svg = _energy_chart(layers)
    if svg:
        parts.append(_plot("energy", "Energy per layer", svg, "Energy per inference of each "
                           "layer, stacked by component. Hover a bar segment for its value."))
    svg = _latency_chart(report, layers)
    if svg:
        cp = (report.get("schedule") or {}).get("critical_path") or []
        parts.append(_plot("latency", "Latency per layer", svg,
                           f"Time of each layer for one inference; {len(cp)} ops lie on the "
                           "critical path. In the pipeline the busiest stage sets the period: a layer "
                           "alone, or the layers that take turns on the same arrays (a shared "
                           "weight, the reload pool)."))
    svg = _area_chart(layers)
    if svg:
        parts.append(_plot("area", "Area per layer", svg, "Area of the arrays each crossbar "
                           "layer places, with their converters and periphery; the buffers of "
                           "the cores and the routers of the tiles they share are in the total "
                           "only."))
    hm = _heatmap(report, numbers)
    if hm:
        parts.append(_plot("utilization", "Array utilization on the chip", hm[0], hm[1]))
    if acc:
        svg = _accuracy_chart(acc)
        if not svg:
            metric = acc.get("metric", "metric")
            parts.append("<section><h2>Accuracy</h2>"
                         f"<p>{_e(metric)} under the hardware "
                         f"{_metric_num(str(metric), acc.get('mean'))}"
                         f", float model {_metric_num(str(metric), acc.get('float'))}, over one "
                         "noise seed (run with --seeds N for the spread over noise draws)."
                         f"</p>{_output_table(acc)}</section>")
        if svg:
            n = len(acc.get("per_seed") or [])
            s = acc.get("samples")
            low = " (lower is better)" if acc.get("direction") == "minimize" else ""
            parts.append(_plot("accuracy", "Accuracy per noise seed", svg,
                               f"{acc.get('metric', 'metric')}{low} of the model under the "
                               f"hardware for each of {n} noise draws"
                               + (f" on {_num(s)} samples" if s else "")
                               + "; the dashed line is the float model.", _output_table(acc)))
    sens = report.get("sensitivity")
    if isinstance(sens, dict):
        svg = _sensitivity_chart(sens, layers)
        if svg:
            parts.append(_plot("sensitivity", "Sensitivity per layer", svg,
                               f"{sens.get('metric', 'metric')} drop below the float model "
                               f"({_metric_num(str(sens.get('metric')), sens.get('float'))}) "
                               "with only that layer on the hardware (its noise, DAC, ADC, "
                               "quantization and pruning) and the others exact, ranked; over "
                               f"{_num(sens.get('seeds', 1))} noise seed(s)."))
    search = report.get("search")
    if isinstance(search, dict):
        pc = _pareto_chart(search)
        if pc:
            objs = [str(o) for o in search.get("objectives") or []]
            cap = (f"{len(search.get('trials') or [])} trials; Pareto-optimal points in blue, "
                   "the chosen one circled in red, the baseline (trial 0, the target's own settings) an "
                   "orange square."
                   + (f" Plotted: {objs[0]} vs {objs[1]}; the table lists every objective."
                      if len(objs) > 2 else ""))
            extra = pc[1]
            if search.get("rule"):
                extra = f'<p class="cap">chosen: {_e(search["rule"])}</p>' + extra
            if search.get("recreate_command"):
                extra += ('<p class="cap">re-create the chosen point with:</p><div class="cmd">'
                          f'{_e(search["recreate_command"])}</div>')
            parts.append(_plot("pareto", "Search: Pareto front", pc[0], cap, extra))
    if layers:
        parts.append(f"<section><details{' open' if len(layers) <= 40 else ''}><summary><h2 "
                     f"style='display:inline'>Layers ({len(layers)})</h2></summary>"
                     f"{_layer_table(layers, numbers)}</details></section>")
    if target:
        parts.append("<section><details><summary><h2 style='display:inline'>Resolved target "
                     f"spec</h2></summary><pre>{_e(json.dumps(target, indent=2))}</pre>"
                     "</details></section>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>{_e(model)} — imccompile report</title><style>{_CSS}</style></head>"
            f"<body><main>{''.join(parts)}</main><footer>generated by imccompile "
            f"{_e(report.get('imccompile', ''))} from report.json</footer></body></html>\n")
