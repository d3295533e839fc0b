"""Terminal output (rich): per-layer tables, totals, energy breakdown, warnings."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console as RichConsole
from rich.table import Table

from imccompile.units import PREFIXES, si, unit_of

def printable(text: str) -> str:
    """``text`` with its control characters shown escaped (``\\x1b``, ``\\r``): a name from
    the user or the model cannot drive the terminal; line breaks are kept."""
    if text.isprintable():
        return text
    return "\n".join("".join(c if c.isprintable() else repr(c)[1:-1] for c in line)
                     for line in text.split("\n"))


class _Terminal(RichConsole):
    """A rich console that prints every string as written: markup off (``[/x]`` is text) and
    control characters escaped (`printable`), for table cells and titles as for lines."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(markup=False, **kwargs)

    def render_str(self, text: str, **kwargs: Any):
        return super().render_str(printable(text), **kwargs)


__all__ = ["PREFIXES", "Console", "count", "metric_text", "quantity", "si", "unit_of"]


def quantity(key: str, value: float) -> str:
    """A machine figure (report key, CSV column) as people read it."""
    unit = unit_of(key)
    if unit:
        return si(value, unit)
    if float(value).is_integer() and abs(value) < 1e15:
        return count(value)
    return f"{value:.4g}"


def count(n: float) -> str:
    return f"{int(n):,}"


class Console:
    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        # markup off: every table cell and line holds names from the user or the model (layer,
        # study, pass, spec names), printed as written, never parsed as rich markup ("[/x]")
        self.out = _Terminal(file=sys.stdout, soft_wrap=False,
                             width=160 if not sys.stdout.isatty() else None)
        self.err = _Terminal(file=sys.stderr)

    def progress(self, what: str, total: int):
        """A callback(done, total) that shows progress on stderr for long work (total > 1)."""
        if self.quiet or total <= 1:
            return None
        from rich.progress import Progress

        bar = Progress(console=self.err, transient=True)
        task = bar.add_task(what, total=total)
        bar.start()

        def update(done: int, _total: int) -> None:
            bar.update(task, completed=done)
            if done >= _total:
                bar.stop()

        return update

    def lazy_progress(self, what: str, min_total: int = 256):
        """A callback(done, total) that opens a progress bar on its first call when the work is
        big enough (total >= min_total), e.g. importing a large model."""
        if self.quiet:
            return None
        state: dict = {}

        def update(done: int, total: int) -> None:
            if "cb" not in state:
                state["cb"] = self.progress(what, total) if total >= min_total else None
            if state["cb"] is not None:
                state["cb"](done, total)

        return update

    def to_stderr(self) -> None:
        """Print the tables on stderr (stdout carries a JSON report: ``--json -``)."""
        self.out = _Terminal(file=sys.stderr, soft_wrap=False)

    def warn(self, msg: str) -> None:
        from rich.text import Text

        self.err.print(Text("warning:", style="yellow"), msg, highlight=False)

    def graph_table(self, report: dict[str, Any], verbose: bool = False) -> None:
        if self.quiet:
            return
        t = Table(title=f"{report['model']}: imported IR", title_justify="left")
        for col in ("layer", "kind", "K", "N", "groups", "vectors", "MACs"):
            t.add_column(col, justify="left" if col in ("layer", "kind") else "right")
        for row in report["layers"]:
            if row["kind"] == "digital":
                if verbose or row.get("attention"):
                    t.add_row(row["name"], f"digital {row['op_type']}" + (" (attention)" if row["attention"] else ""),
                              "", "", "", "", f"{count(row['ops'])} ops")
                continue
            t.add_row(row["name"], row["kind"], str(row["rows"]), str(row["cols"]), str(row["groups"]),
                      count(row["vectors"]), count(row["macs"]))
        self.out.print(t)
        tot = report["totals"]
        self.out.print(f"matrix ops {tot['matrix_ops']}, digital ops {tot['digital_ops']}, "
                       f"weights {count(tot['weights'])}, MACs {count(tot['macs'])}", highlight=False)

    def cost_tables(self, report: dict[str, Any], verbose: bool = False) -> None:
        if self.quiet:
            return
        for w in report.get("warnings", []):
            self.warn(w)
        tgt = report["target"]
        t = Table(title=f"{report['model']} on {tgt['name']}", title_justify="left")
        for col in ("layer", "kind", "K", "N", "groups", "vectors", "MACs", "arrays", "util",
                    "energy", "latency"):
            t.add_column(col, justify="left" if col in ("layer", "kind") else "right")
        digital_e = digital_t = 0.0
        n_digital = 0
        for row in report["layers"]:
            if row["kind"] == "digital":
                if not verbose and not row.get("attention"):
                    digital_e += row["energy_j"]
                    digital_t += row["latency_s"]
                    n_digital += 1
                    continue
                t.add_row(row["name"], f"{row['op_type']}" + (" (attn)" if row["attention"] else ""),
                          "", "", "", "", "", "", "", si(row["energy_j"], "J"), si(row["latency_s"], "s"))
                continue
            arrays = str(row["arrays"])
            if row.get("shares"):  # reads the arrays of a layer holding the same weight
                arrays = f"shared ({row.get('arrays_read', 0)})"
            t.add_row(row["name"], row["kind"], str(row["rows"]), str(row["cols"]), str(row["groups"]),
                      count(row["vectors"]), count(row["macs"]), arrays,
                      f"{100 * row['utilization']:.0f}%", si(row["energy_j"], "J"), si(row["latency_s"], "s"))
        if n_digital:
            t.add_row(f"({n_digital} other digital ops)", "digital", "", "", "", "", "", "", "",
                      si(digital_e, "J"), si(digital_t, "s"))
        self.out.print(t)
        tot = report["totals"]
        s = Table(title="totals", title_justify="left", show_header=False)
        s.add_column("", justify="left")
        s.add_column("", justify="right")
        chips = f" on {tot['chips']} chips" if tot["chips"] > 1 else ""
        rows = [
            ("arrays", f"{tot['arrays']}{chips} ({100 * tot['utilization']:.1f}% of their cells used)"),
            ("weights / MACs", f"{count(tot['weights'])} / {count(tot['macs'])}"),
            ("energy per inference", si(tot["energy_j"], "J")),
            ("latency (critical path)", si(tot["latency_s"], "s")),
            ("throughput (pipelined)", si(tot["inferences_per_s"], "inferences/s")),
            ("area used / chip area", f"{si(tot['area_mm2'], 'mm²')} / {si(tot['chip_area_mm2'], 'mm²')}"),
            ("TOPS: one inference / pipelined",
             f"{tot['tops']:.4g} / {tot.get('pipelined_tops', 0.0):.4g}"),
            ("TOPS/mm²: one inference / pipelined",
             f"{tot['tops_per_mm2']:.4g} / {tot.get('pipelined_tops_per_mm2', 0.0):.4g}"),
            ("TOPS/W", f"{tot['tops_per_w']:.4g}"),
        ]
        activity = activity_text(report["layers"])
        if activity:
            rows.insert(3, ("input bit activity", activity))
        if report.get("pipeline"):
            rows.insert(0, ("pipeline", report["pipeline"]))
        for k, v in rows:
            s.add_row(k, v)
        self.out.print(s)
        b = Table(title="energy breakdown", title_justify="left")
        b.add_column("component")
        b.add_column("energy", justify="right")
        b.add_column("share", justify="right")
        total = tot["energy_j"] or 1.0
        for k, v in sorted(tot["energy_breakdown_j"].items(), key=lambda kv: -kv[1]):
            if v > 0:
                b.add_row(k, si(v, "J"), f"{100 * v / total:.1f}%")
        self.out.print(b)
        if "accuracy" in report:
            self.accuracy(report["accuracy"])
        if "sensitivity" in report:
            self.sensitivity(report["sensitivity"])

    def sensitivity(self, sens: dict[str, Any]) -> None:
        """Per-layer sensitivity, ranked: the drop when each layer alone is on the hardware."""
        if self.quiet:
            return
        fmt = metric_text(sens["metric"])
        t = Table(title=f"sensitivity: {sens['metric']} with only this layer on the hardware "
                        f"(float {fmt(sens['float'])}, {sens['seeds']} seed"
                        f"{'s' if sens['seeds'] != 1 else ''})", title_justify="left")
        for col in ("rank", "layer", "", sens["metric"], f"drop ({sens['unit']})"):
            t.add_column(col, justify="left" if col in ("layer", "") else "right")
        for r in sens["layers"]:
            t.add_row(str(r["rank"]), r["label"], r["name"], fmt(r["accuracy"]), f"{r['drop']:.3g}")
        self.out.print(t)

    def accuracy(self, a: dict[str, Any]) -> None:
        """The headline accuracy line, then every output's metrics (hardware mean)."""
        if self.quiet:
            return
        fmt = metric_text(a["metric"])
        self.out.print(f"accuracy ({a['metric']}): float {fmt(a['float'])}, hardware "
                       f"{fmt(a['mean'])} ± {fmt(a['std'])} over {len(a['per_seed'])} seeds",
                       highlight=False)
        outs = a.get("outputs") or []
        if not outs:
            return
        names = [m for m in ("top1", "agreement", "cosine", "relerr", "snr")
                 if any(m in o["metrics"] for o in outs)]
        t = Table(title="accuracy per output (hardware, mean over seeds)", title_justify="left")
        for col in ["output", "shape", "kind"] + [("SNR dB" if m == "snr" else m) for m in names]:
            t.add_column(col, justify="left" if col in ("output", "shape", "kind") else "right")
        for o in outs:
            cells = []
            for m in names:
                st = o["metrics"].get(m)
                cells.append("" if st is None else metric_text(m)(st["mean"]))
            t.add_row(o["name"], "x".join(map(str, o["shape"])) or "scalar",
                      "class scores" if o["kind"] == "class_scores" else "values", *cells)
        self.out.print(t)


_ACTIVITY_SOURCES = {"given": "given", "data": "measured on the data",
                     "spec": "spec default dac.input_activity",
                     "worst_case": "worst case: the spec states no dac.input_activity"}


def activity_text(layers: list[dict[str, Any]]) -> str:
    """The input bit activities the array and DAC energies were priced at, and their sources."""
    by_source: dict[str, list[float]] = {}
    for row in layers:
        if "activity_source" in row:
            by_source.setdefault(row["activity_source"], []).append(row["input_activity"])
    parts = []
    for src, values in by_source.items():
        lo, hi = min(values), max(values)
        span = f"{lo:.3g}" if lo == hi else f"{lo:.3g}-{hi:.3g}"
        parts.append(f"{span} ({_ACTIVITY_SOURCES.get(src, src)})")
    return "; ".join(parts)


def metric_text(metric: str):
    """How a metric's values print: fractions to 4 places, relerr and SNR (dB) to 4 digits."""
    if metric in ("relerr", "snr"):
        return lambda v: f"{v:.4g}"
    return lambda v: f"{v:.4f}"
