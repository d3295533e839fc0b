"""The JSON report: built from a CompileResult (and, after a search or --from-trial, its section).

Its shape is the typed model `imccompile.outputs.report_model.Report`; the shipped
``imccompile/schemas/report.schema.json`` is generated from it
(``python -m imccompile.outputs.gen_schema``).
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from imccompile._version import __version__
from imccompile.ir import Graph, MatrixOp
from imccompile.outputs.report_model import REPORT_FORMAT

if TYPE_CHECKING:
    from imccompile.result import CompileResult



def graph_layers(graph: Graph) -> list[dict[str, Any]]:
    """Per-op rows of the import-only report (no target)."""
    rows = []
    for op in graph.ops:
        if isinstance(op, MatrixOp):
            rows.append({"name": op.name, "kind": op.kind, "rows": op.rows, "cols": op.cols,
                         "groups": op.groups, "weights": op.weights, "vectors": op.vectors,
                         "macs": op.macs})
        else:
            rows.append({"name": op.name, "kind": "digital", "op_type": op.op_type,
                         "attention": op.attention, "rows": 0, "cols": 0, "groups": 1,
                         "weights": 0, "vectors": 0, "macs": 0, "ops": op.ops, "bytes": op.bytes})
    return rows


def graph_report(graph: Graph) -> dict[str, Any]:
    """Import-only report: the IR's layers and totals."""
    return {
        "format": REPORT_FORMAT,
        "imccompile": __version__,
        "model": graph.name,
        "layers": graph_layers(graph),
        "totals": {"matrix_ops": len(graph.matrix_ops), "digital_ops": len(graph.digital_ops),
                   "weights": graph.total_weights, "macs": graph.total_macs},
    }


def build_report(res: CompileResult, *, search: dict[str, Any] | None = None,
                 from_trial: dict[str, Any] | None = None,
                 command: str | None = None) -> dict[str, Any]:
    """The report of a compile; ``search``: the search section (after ``--search``),
    ``from_trial``: what ``--from-trial`` re-created; ``command``: the command line that
    reproduces the report (one line, shell-quoted)."""
    from imccompile.guardrails import result_warning
    from imccompile.tables import layer_rows

    g, m, c, s, t = res.graph, res.mapping, res.cost, res.schedule, res.target
    lm_by = {lm.name: lm for lm in m.layers}
    layers = []
    flat = layer_rows(res)  # the label and area of each op: one place (imccompile.tables)
    for op, lc, fr in zip(g.ops, c.layers, flat):
        row = {"name": op.name, "kind": lc.kind, "rows": 0, "cols": 0, "groups": 1, "weights": 0,
               "vectors": 0, "macs": 0, "arrays": 0, "utilization": 0.0,
               "energy_j": lc.energy_j, "latency_s": lc.latency_s,
               "energy_breakdown_j": dict(lc.energy),
               "compute_latency_s": lc.compute_s, "movement_latency_s": lc.movement_s,
               "buffer_bytes": lc.traffic.buffer_bytes, "noc_bytes": lc.traffic.noc_bytes,
               "dram_bytes": lc.traffic.dram_bytes}
        if isinstance(op, MatrixOp):
            lm = lm_by[op.name]
            row.update(rows=op.rows, cols=op.cols, groups=op.groups, weights=op.weights,
                       vectors=op.vectors, macs=op.macs, arrays=lm.placed_arrays,
                       arrays_read=lm.total_arrays, shares=lm.shares,
                       utilization=lm.utilization(m.rows, m.cols), replicas=lm.replicas,
                       slices=lm.slices, row_tiles=lm.row_tiles, col_tiles=lm.col_tiles,
                       packed=lm.packed, weight_bits=lm.weight_bits, input_bits=lm.input_bits,
                       first_array=lm.first_array, input_activity=c.activity.of(op.name),
                       activity_source=c.activity.source(op.name), label=fr["label"],
                       area_mm2=fr["area_mm2"])
        else:
            row.update(op_type=op.op_type, attention=op.attention, ops=op.ops, bytes=op.bytes)
        layers.append(row)
    energy = c.energy_j
    macs = g.total_macs
    ops = 2.0 * macs
    lat = s.latency_s
    totals = {
        "matrix_ops": len(g.matrix_ops), "digital_ops": len(g.digital_ops),
        "arrays": m.arrays, "chips": m.chips, "overflow_arrays": m.overflow_arrays,
        "utilization": m.utilization, "weights": g.total_weights, "macs": macs,
        "digital_op_count": sum(o.ops for o in g.digital_ops),
        "energy_j": energy, "latency_s": lat, "serial_latency_s": s.serial_latency_s,
        "pipeline_period_s": s.period_s, "area_mm2": c.area_mm2, "chip_area_mm2": c.chip_area_mm2,
        "tops": ops / lat / 1e12 if lat > 0 else 0.0,
        "tops_per_w": ops / energy / 1e12 if energy > 0 else 0.0,
        "tops_per_mm2": (ops / lat / 1e12) / c.area_mm2 if lat > 0 and c.area_mm2 > 0 else 0.0,
        # NeuroSim's throughput: consecutive inferences overlap, one every pipeline period
        "pipelined_tops": ops / s.period_s / 1e12 if s.period_s > 0 else 0.0,
        "pipelined_tops_per_mm2": (ops / s.period_s / 1e12) / c.area_mm2
        if s.period_s > 0 and c.area_mm2 > 0 else 0.0,
        "inferences_per_s": s.inferences_per_s,
        "energy_per_inference_j": energy,
        "energy_breakdown_j": c.energy_breakdown_j,
        "dram_bytes": sum(lc.traffic.dram_bytes for lc in c.layers),
        "area_breakdown_mm2": c.area_breakdown_mm2,
    }
    out: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "imccompile": __version__,
        "model": res.model_name,
        "pipeline": res.pipeline,
        "overflow_policy": m.overflow_policy,
        "target": t.to_dict(),
        "totals": totals,
        "layers": layers,
        "schedule": {"latency_s": s.latency_s, "period_s": s.period_s,
                     "critical_path": list(s.critical_path)},
        "warnings": list(m.warnings) + list(c.warnings),
    }
    if command is not None:
        out["command"] = command
    if res.accuracy is not None:
        out["accuracy"] = dict(res.accuracy)
        out["max_accuracy_drop"] = res.options.max_accuracy_drop
    if res.sensitivity is not None:
        from imccompile.sensitivity import sensitivity_dict

        out["sensitivity"] = sensitivity_dict(res.sensitivity)
    warning = result_warning(res)
    if warning is not None:
        out["warnings"].append(warning)
    if search is not None:
        out["search"] = search
    if from_trial is not None:
        out["from_trial"] = from_trial
    return out


def search_only_report(model: str, search: dict[str, Any]) -> dict[str, Any]:
    """The report of a search without a feasible point: only its search section."""
    return {"format": REPORT_FORMAT, "imccompile": __version__, "model": model, "search": search}


def to_json(res: CompileResult, indent: int | None = 2) -> str:
    """The report of a compile as JSON text (what report.json holds)."""
    return dumps(build_report(res), indent=indent)


def check_finite(obj: Any, path: str = "") -> None:
    """Every number in a report must be finite; a NaN/Inf is an internal error, never output."""
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"report value {path or '.'} is not finite: {obj}")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            check_finite(v, f"{path}.{k}" if path else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_finite(v, f"{path}[{i}]")


def dumps(report: dict, indent: int | None = 2) -> str:
    check_finite(report)
    return json.dumps(report, indent=indent, allow_nan=False)
