"""Self-contained SVG charts for the sweep and compare pages (line chart, grouped bars) and the
page around them; axes, legend and styles are the report's (`html_report`)."""

from __future__ import annotations

from collections.abc import Sequence

from imccompile.outputs.display import si
from imccompile.outputs.html_report import (
    _CSS,
    PLOT_W,
    _Axis,
    _e,
    _f,
    _legend,
    _n,
    _prefix,
    _short,
    _svg_open,
    _text_w,
    _y_axis,
)

COLORS = ["#2c5d8f", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf"]


def _scale(values: Sequence[float], unit: str) -> tuple[float, str]:
    """(divisor, axis unit text) so the axis reads 0..999 of one SI prefix (areas stay mm²)."""
    vmax = max((abs(v) for v in values), default=0.0)
    if unit in ("", "mm²") or not vmax:
        return 1.0, unit
    factor, p = _prefix(vmax)
    word = len(unit.split("/")[0]) > 3
    return factor, f"{p}{' ' if word and p else ''}{unit}"


def _axis_title(title: str, unit: str) -> str:
    return f"{title} ({unit})" if unit else title


def line_chart(xlabels: Sequence[str], x_title: str,
               series: Sequence[tuple[str, Sequence[float | None], Sequence[float] | None]],
               y_title: str, unit: str, baseline: tuple[float, str] | None = None) -> str:
    """One line per series over the x positions (evenly spaced, in the order given).

    ``series``: (label, value per x or None, optional ± error per x); ``baseline``: a dashed
    horizontal reference line (value, label)."""
    vals = [_f(v) for _, ys, _ in series for v in ys if v is not None]
    errs = [(_f(v), _f(e)) for _, ys, es in series if es for v, e in zip(ys, es) if v is not None]
    span = vals + [v + e for v, e in errs] + [v - e for v, e in errs]
    if baseline is not None:
        span.append(_f(baseline[0]))
    factor, axis_unit = _scale(span, unit)
    lo, hi = min(span, default=0.0) / factor, max(span, default=1.0) / factor
    pad = max((hi - lo) * 0.08, abs(hi) * 1e-3, 1e-12)
    lo, hi = lo - pad, hi + pad
    if min(span, default=0.0) >= 0 and lo < 0:
        lo = 0.0
    ml, mr, ph = 84, 24, 240
    pw = PLOT_W - ml - mr
    legend: list[str] = []
    leg = [(label, COLORS[i % len(COLORS)], "line") for i, (label, _, _) in enumerate(series)
           if len(series) > 1 or label]
    if baseline is not None:
        leg.append((baseline[1], "#7b8794", "dash"))
    mt = (_legend(legend, leg, ml, pw, 16) + 8) if leg else 16
    ax = _Axis(lo, hi, mt + ph, mt)
    n = max(len(xlabels), 1)
    slot = pw / n

    def px(i: int) -> float:
        return ml + slot * (i + 0.5)

    out = [_svg_open(ml + pw + mr, mt + ph + 52, y_title)] + legend
    _y_axis(out, ax, ml, ml + pw, [f"{t:g}" for t in ax.ticks], _axis_title(y_title, axis_unit),
            mt, mt + ph)
    for i, lab in enumerate(xlabels):
        out.append(f'<text class="tick" x="{_n(px(i))}" y="{_n(mt + ph + 16)}" '
                   f'text-anchor="middle">{_e(_short(lab, 18))}</text>')
    out.append(f'<text class="axt" x="{_n(ml + pw / 2)}" y="{_n(mt + ph + 40)}" '
               f'text-anchor="middle">{_e(x_title)}</text>'
               f'<line class="axis" x1="{_n(ml)}" x2="{_n(ml + pw)}" y1="{_n(mt + ph)}" '
               f'y2="{_n(mt + ph)}"/>')
    if baseline is not None:
        y = ax(_f(baseline[0]) / factor)
        out.append(f'<line x1="{_n(ml)}" x2="{_n(ml + pw)}" y1="{_n(y)}" y2="{_n(y)}" '
                   f'stroke="#7b8794" stroke-width="1.5" stroke-dasharray="6 4"><title>'
                   f'{_e(baseline[1])}: {_e(si(baseline[0], unit))}</title></line>')
    for k, (label, ys, es) in enumerate(series):
        color = COLORS[k % len(COLORS)]
        pts = [(px(i), ax(_f(v) / factor), i) for i, v in enumerate(ys) if v is not None]
        if len(pts) > 1:
            d = " ".join(f"{'M' if j == 0 else 'L'}{_n(x)} {_n(y)}" for j, (x, y, _) in
                         enumerate(pts))
            out.append(f'<path d="{d}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y, i in pts:
            v = _f(ys[i])
            e = _f(es[i]) if es else 0.0
            if e > 0:
                y0, y1 = ax((v - e) / factor), ax((v + e) / factor)
                out.append(f'<line x1="{_n(x)}" x2="{_n(x)}" y1="{_n(y0)}" y2="{_n(y1)}" '
                           f'stroke="{color}" stroke-width="1.2"/>')
            tip = f"{label + ': ' if label else ''}{x_title} {xlabels[i]}\n{si(v, unit)}" + (
                f" ± {si(e, unit)}" if e > 0 else "")
            out.append(f'<circle cx="{_n(x)}" cy="{_n(y)}" r="4" fill="{color}"><title>'
                       f'{_e(tip)}</title></circle>')
    out.append("</svg>")
    return "".join(out)


def grouped_bars(names: Sequence[str], series: Sequence[tuple[str, Sequence[float]]],
                 title: str, unit: str) -> str:
    """Bars side by side per name, one bar per series (label, value per name)."""
    vals = [_f(v) for _, vs in series for v in vs]
    factor, axis_unit = _scale(vals, unit)
    labels = [_short(nm) for nm in names]
    ml, mr, ph = 84, 16, 240
    n = max(len(names), 1)
    pw = max(PLOT_W - ml - mr, n * 12 * max(len(series), 1))
    legend: list[str] = []
    mt = _legend(legend, [(s[0], COLORS[i % len(COLORS)], "box") for i, s in enumerate(series)],
                 ml, pw, 16) + 8
    mb = 26 + max([_text_w(s) for s in labels] + [0]) * 0.66
    ax = _Axis(0.0, (max(vals, default=0.0) / factor) or 1.0, mt + ph, mt)
    out = [_svg_open(ml + pw + mr, mt + ph + mb, title)] + legend
    _y_axis(out, ax, ml, ml + pw, [f"{t:g}" for t in ax.ticks], _axis_title(title, axis_unit),
            mt, mt + ph)
    slot = pw / n
    bw = min(28.0, slot * 0.8 / max(len(series), 1))
    for i, name in enumerate(names):
        cx = ml + slot * (i + 0.5)
        x = cx - bw * len(series) / 2
        for k, (label, vs) in enumerate(series):
            v = _f(vs[i])
            y = ax(v / factor)
            out.append(f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(bw)}" '
                       f'height="{_n(max(mt + ph - y, 0.5 if v else 0))}" '
                       f'fill="{COLORS[k % len(COLORS)]}"><title>{_e(name)}\n{_e(label)}: '
                       f'{_e(si(v, unit))}</title></rect>')
            x += bw
        out.append(f'<text class="tick" transform="translate({_n(cx + 4)},{_n(mt + ph + 12)}) '
                   f'rotate(-40)" text-anchor="end"><title>{_e(name)}</title>'
                   f'{_e(labels[i])}</text>')
    out.append(f'<line class="axis" x1="{_n(ml)}" x2="{_n(ml + pw)}" y1="{_n(mt + ph)}" '
               f'y2="{_n(mt + ph)}"/></svg>')
    return "".join(out)


def section(pid: str, title: str, body: str, caption: str = "") -> str:
    cap = f'<p class="cap">{_e(caption)}</p>' if caption else ""
    return (f'<section><h2>{_e(title)}</h2><div class="plot" id="plot-{pid}">{body}</div>{cap}'
            "</section>")


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right_from: int = 1) -> str:
    """An HTML table of text cells (columns from ``right_from`` right-aligned)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f'<td{" class=r" if j >= right_from else ""}>{_e(c)}</td>' for j, c in enumerate(r))
        + "</tr>" for r in rows)
    return f'<div class="plot"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def page(title: str, subtitle: str, parts: Sequence[str], version: str) -> str:
    """A self-contained page (inline CSS and SVG, no script) in the report's style."""
    head = (f"<section><h1>{_e(title)}</h1><p class=\"sub\">{_e(subtitle)}</p></section>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>{_e(title)} — imccompile</title><style>{_CSS}</style></head>"
            f"<body><main>{head}{''.join(parts)}</main><footer>generated by imccompile "
            f"{_e(version)}</footer></body></html>\n")
