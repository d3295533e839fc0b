"""Results as flat tables: one row per layer of a compile, one per trial of a search.

Plain dicts of base SI values with the unit in the column name (``energy_j``, ``latency_s``,
``area_mm2``), so the same rows feed ``layers_frame()`` / ``trials_frame()`` (pandas, an extra:
``pip install 'imccompile[pandas]'``), ``to_csv`` and the search's ``trials.csv`` /
``pareto.csv``.
"""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from imccompile.errors import UsageError

if TYPE_CHECKING:
    from imccompile.result import CompileResult



def layer_rows(res: CompileResult) -> list[dict[str, Any]]:
    """One row per op of a compile: its crossbar figures (0 for digital ops), energy, latency,
    area and, when measured, its sensitivity (drop alone on the hardware). A layer's area is
    that of the arrays it places with their converters and periphery (`cost.array_area_mm2`);
    the buffers of the cores and the routers of the tiles are shared and only in the total."""
    from imccompile.cost import array_area_mm2
    from imccompile.ir import MatrixOp
    from imccompile.sensitivity import layer_labels

    labels = layer_labels(res.graph)
    lm_by = {lm.name: lm for lm in res.mapping.layers}
    sens = {r.name: r for r in res.sensitivity.layers} if res.sensitivity is not None else {}
    per_array = sum(array_area_mm2(res.target).values())
    rows = []
    for op, lc in zip(res.graph.ops, res.cost.layers):
        row: dict[str, Any] = {"label": labels.get(op.name, ""), "name": op.name,
                               "kind": lc.kind, "rows": 0, "cols": 0, "arrays": 0,
                               "utilization": 0.0, "weight_bits": None, "input_bits": None,
                               "energy_j": lc.energy_j, "latency_s": lc.latency_s,
                               "area_mm2": 0.0}
        if isinstance(op, MatrixOp):
            lm = lm_by[op.name]
            row.update(rows=op.rows, cols=op.cols, arrays=lm.placed_arrays,
                       utilization=lm.utilization(res.mapping.rows, res.mapping.cols),
                       weight_bits=lm.weight_bits, input_bits=lm.input_bits,
                       area_mm2=lm.placed_arrays * per_array)
        if res.sensitivity is not None:
            s = sens.get(op.name)
            row["sensitivity_drop"] = s.drop if s is not None else None
        rows.append(row)
    return rows


def trial_columns(objectives: Sequence[str], knobs: Iterable[str]) -> list[str]:
    """The columns of trials.csv and pareto.csv: trial, state, every objective (accuracy,
    energy_j, latency_s, area_mm2: all of them, searched or not), arrays, the accuracy drop,
    feasible, on the front, chosen, pipeline, overrides, then one column per knob."""
    return ["trial", "state", "accuracy", "accuracy_drop", "energy_j", "latency_s", "area_mm2",
            "arrays", "feasible", "pareto", "chosen", "pipeline", "overrides",
            *[f"knob:{k}" for k in knobs]]


def frame(rows: list[dict[str, Any]]):
    """A pandas DataFrame of ``rows`` (pandas is an extra: a clear error without it)."""
    import importlib

    try:
        pd = importlib.import_module("pandas")  # an extra: untyped, and maybe absent
    except ImportError:
        raise UsageError("DataFrames need pandas: pip install 'imccompile[pandas]' (or use "
                         "to_csv)") from None
    return pd.DataFrame.from_records(rows)


def csv_text(rows: list[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """CSV text of ``rows`` (floats at full precision, None empty, lists as JSON)."""
    cols = list(columns) if columns is not None else list(rows[0]) if rows else []
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in cols])
    return buf.getvalue()


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v)
    return str(v)


def write_csv(path: Any, rows: list[dict[str, Any]], columns: Sequence[str] | None = None) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(csv_text(rows, columns))


def trial_table(result: Any) -> list[dict[str, Any]]:
    """One row per trial of a `SearchResult` (any state: COMPLETE, FAIL, PRUNED, RUNNING), the
    columns of `trial_columns`: its values in base SI units (empty when it has none), whether
    it keeps to the constraints, is on the front, is the chosen point, its pipeline, knob
    overrides and sampled knobs. The accuracy is the headline metric (relerr: its negative,
    the maximized objective); ``accuracy_drop`` is in --max-accuracy-drop units."""
    front = {p["trial"] for p in result.pareto}
    chosen = result.chosen["trial"] if result.chosen else None
    knobs = sorted({k for r in result.every for k in r.get("params", {})})
    rows = []
    for r in result.every:
        v = r.get("values", {})
        complete = r.get("state", "COMPLETE") == "COMPLETE"
        row: dict[str, Any] = {
            "trial": r["trial"], "state": r.get("state", "COMPLETE"),
            "accuracy": v.get("accuracy"), "accuracy_drop": v.get("accuracy_drop"),
            "energy_j": v.get("energy"), "latency_s": v.get("latency"),
            "area_mm2": v.get("area"),
            "arrays": int(v["arrays"]) if "arrays" in v else None,
            "feasible": r.get("feasible") if complete else None,
            "pareto": r["trial"] in front, "chosen": r["trial"] == chosen,
            "pipeline": r.get("pipeline", ""), "overrides": " ".join(r.get("overrides", []))}
        for k in knobs:
            row[f"knob:{k}"] = r.get("params", {}).get(k)
        rows.append(row)
    return rows


def trials_csv(result: Any, pareto: bool = False) -> str:
    """trials.csv: every trial; with ``pareto``, pareto.csv: the front's trials, same columns."""
    rows = trial_table(result)
    knobs = [c[len("knob:"):] for c in (rows[0] if rows else {}) if c.startswith("knob:")]
    if pareto:
        order = {p["trial"]: i for i, p in enumerate(result.pareto)}
        rows = sorted((r for r in rows if r["trial"] in order), key=lambda r: order[r["trial"]])
    return csv_text(rows, trial_columns(result.cfg.objectives, knobs))
