"""Build a program image from a CompileResult: what is programmed into which array, the decode
tables that turn array outputs back into layer outputs, the schedule and the digital graph.

The physical layout is the mapper's (``result.mapping``, imccompile.layout): every block of
every layer is placed where the layout says; this module only encodes weight codes as
conductances and writes the decode tables. Format: docs/program-format.md. The reader / executor (image.py, execute.py) never import this
module or the IR.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from imccompile._version import __version__
from imccompile.errors import MappingError
from imccompile.ir import DigitalOp, MatrixOp
from imccompile.layout import Block, LayerLayout, dac_quantizer, layer_bits, qmax
from imccompile.mapper import Mapping, slot
from imccompile.program.image import CROSSBAR_DOMAIN, CROSSBAR_OP, FORMAT

SIGN_NAMES = {"differential": ("positive", "negative"), "differential_cell": ("pair",),
              "offset": ("offset",), "twos_complement": ("twos_complement",)}


def _digits(q: np.ndarray, shift: np.ndarray, c: int) -> np.ndarray:
    return (q >> shift) & ((1 << c) - 1)


@dataclass
class LayerImage:
    """Conductances (one copy) and decode tables of one layer."""

    matrices: list[dict[str, np.ndarray]]  # per local array: {"": G} or {"_pos": Gp, "_neg": Gn}
    tables: dict[str, np.ndarray]  # readout tables (see docs/program-format.md)


def _by_array(lm: LayerLayout) -> list[list[Block]]:
    out: list[list[Block]] = [[] for _ in range(lm.arrays)]
    for b in lm.blocks:
        out[b.array].append(b)
    return out


def layer_image(op: MatrixOp, lm: LayerLayout, target, codes: np.ndarray, w_step: np.ndarray,
                dac_step: float | None) -> LayerImage:
    """Encode a layer's integer weight codes on its layout's arrays.

    A digit d of slice s is programmed as ``g_min + d * g_step[s]`` with ``g_step[s] = (g_max -
    g_min) / full_scale[s]``: the largest digit a slice holds sits at g_max."""
    a = target.array
    scheme, c = a.signed_scheme, a.bits_per_cell
    n_rows, n_cols = a.rows, a.cols
    s_n, cdev, n_dev = lm.slices, lm.column_devices, a.devices_per_slice
    g_min, g_max = float(a.g_min_us), float(a.g_max_us)
    g_steps = (g_max - g_min) / np.asarray(lm.full_scale, np.float64)
    wb = lm.weight_bits
    q_max = qmax(wb)
    if scheme == "twos_complement" and (c != 1 or wb < 2):
        raise MappingError(f"layer {op.name}: a two's complement program image needs 1-bit cells "
                           f"and weights of 2 bits or more (got {c}-bit cells, {wb}-bit weights)")
    q = codes.astype(np.int64)
    blocks = _by_array(lm)
    zero_digit = _digits(np.array([q_max if scheme == "offset" else 0] * s_n, np.int64),
                         c * np.arange(s_n), c)  # digit of a zero weight, per slice
    matrices: list[dict[str, np.ndarray]] = []
    cols: dict[str, list[np.ndarray]] = {k: [] for k in
                                         ("array", "column", "logical", "slice", "polarity")}
    row_map = np.full((len(blocks), n_rows), -1, np.int32)
    for ai, blks in enumerate(blocks):
        gp = np.full((n_rows, n_cols), g_min)
        gn = np.full((n_rows, n_cols), g_min) if scheme == "differential_cell" else None
        act_rows = np.concatenate([b.row0 + np.arange(b.n_rows) for b in blks])
        placed = []
        for b in blks:
            w_rows = lm.rows_of(b)
            row_map[ai, b.row0:b.row0 + b.n_rows] = b.group * op.rows + w_rows
            p = np.arange(b.p0, b.p1)
            if not len(p):
                continue
            sl, dev = (p // cdev) % s_n, p % cdev
            acol = b.col0 + (p - b.p0)
            placed.append((b, w_rows, p, lm.cols_of(b), sl, dev, acol))
        if scheme == "offset":  # every cell of a used row and column holds a code (0 = Q)
            for _, _, _, _, sl, _, acol in placed:
                gp[np.ix_(act_rows, acol)] = g_min + (zero_digit[sl] * g_steps[sl])[None, :]
            gp[act_rows, n_cols - 1] = g_max  # the reference column
        for b, w_rows, p, wcol, sl, dev, acol in placed:
            rr = b.row0 + np.arange(b.n_rows)
            qb = q[np.ix_(w_rows, wcol)]
            shift = (c * sl)[None, :]
            step = g_steps[sl][None, :]
            if scheme == "differential":
                mag = np.where(dev[None, :] == 0, np.maximum(qb, 0), np.maximum(-qb, 0))
                gp[np.ix_(rr, acol)] = g_min + _digits(mag, shift, c) * step
            elif scheme == "differential_cell":
                assert gn is not None
                gp[np.ix_(rr, acol)] = g_min + _digits(np.maximum(qb, 0), shift, c) * step
                gn[np.ix_(rr, acol)] = g_min + _digits(np.maximum(-qb, 0), shift, c) * step
            elif scheme == "offset":
                gp[np.ix_(rr, acol)] = g_min + _digits(qb + q_max, shift, c) * step
            else:  # twos_complement, 1-bit slices of the s_n-bit code
                gp[np.ix_(rr, acol)] = g_min + _digits(qb & ((1 << s_n) - 1), shift, c) * step
            cols["array"].append(np.full(len(p), ai))
            cols["column"].append(acol)
            cols["logical"].append(wcol)
            cols["slice"].append(sl)
            cols["polarity"].append(np.where(dev == 1, -1, 1))
        matrices.append({"": gp} if gn is None else {"_pos": gp, "_neg": gn})
    cat = {k: (np.concatenate(v) if v else np.zeros(0, np.int64)) for k, v in cols.items()}
    sl = cat["slice"]
    sig = (2.0 ** (c * sl)).astype(np.float64)
    if scheme == "twos_complement":
        sig = np.where(sl == s_n - 1, -sig, sig)
    g_step_e = g_steps[sl] if len(sl) else np.zeros(0)
    if scheme == "differential_cell":
        g_zero = np.zeros(len(sl))
    elif scheme == "offset":
        g_zero = g_min + zero_digit[sl] * g_step_e
    else:
        g_zero = np.full(len(sl), g_min)
    ref_gain = n_dev * g_max if scheme == "offset" else 1.0
    dac = 1.0 if dac_step is None else float(dac_step)
    scale = sig * cat["polarity"] * w_step[cat["logical"]] * dac / (n_dev * g_step_e)
    offset = -scale * n_dev * g_zero / ref_gain
    tables = {
        "row_map": row_map,
        "col_array": cat["array"].astype(np.int32),
        "col_index": cat["column"].astype(np.int32),
        "col_logical": cat["logical"].astype(np.int32),
        "col_slice": sl.astype(np.int32),
        "col_polarity": cat["polarity"].astype(np.int8),
        "significance": sig,
        "g_zero_us": g_zero,
        "g_step_us": np.asarray(g_step_e, np.float64),
        "weight_step": np.asarray(w_step, np.float64),
        "scale": scale,
        "offset": offset,
    }
    return LayerImage(matrices, tables)


# -- JSON helpers ---------------------------------------------------------------------------
def _runs(idx: np.ndarray) -> list[list[int]]:
    """Sorted-or-not index list as [start, stop) runs of consecutive values, in order."""
    out: list[list[int]] = []
    for v in (int(x) for x in idx):
        if out and out[-1][1] == v:
            out[-1][1] = v + 1
        else:
            out.append([v, v + 1])
    return out


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if isinstance(v, (np.integer, bool, int)):
        return v if isinstance(v, bool) else int(v)
    if isinstance(v, (np.floating, float)):
        return float(v)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return v


def _dac(result, op: MatrixOp, target) -> tuple[float, int, int] | None:
    """The DAC step (float32 value, as the simulation model uses it) and code range, if known."""
    cal = result.calibration
    if cal is not None and op.name in cal.act:
        step, lo, hi = cal.act[op.name]
    elif op.compression.act_range is not None:
        _, ib = layer_bits(op, target)
        step, lo, hi = dac_quantizer(ib, op.compression.act_range,
                                     unsigned=not op.compression.act_signed)
    else:
        return None
    return float(np.float32(step)), int(lo), int(hi)


def _tensor_json(graph, name: str) -> dict:
    t = graph.tensors[name]
    return {"name": name, "shape": list(t.shape), "dtype": t.dtype}


def _location(mapping: Mapping, lm: LayerLayout, local: int, replica: int, target) -> dict:
    physical, reload_round = mapping.location(lm, local, replica)
    where = slot(physical, target)
    return {"chip": where.chip, "tile": where.tile, "core": where.core, "array": where.index,
            "reload_round": reload_round}


def _graph_onnx(graph, keys: dict[str, str]) -> bytes:
    """The model with every crossbar op replaced by an ai.imccompile.Crossbar placeholder node
    (attribute ``layer`` = layer key), value_info for every tensor."""
    from onnx import helper

    from imccompile.emit import emit

    ops = []
    for op in graph.ops:
        if isinstance(op, MatrixOp):
            ops.append(DigitalOp(name=op.name, op_type=CROSSBAR_OP, inputs=op.inputs[:1],
                                 outputs=op.outputs[:1], attrs={"layer": keys[op.name]}))
        else:
            ops.append(op)
    model, _ = emit(graph.with_ops(ops))
    for node in model.graph.node:
        if node.op_type == CROSSBAR_OP and node.name in keys:
            node.domain = CROSSBAR_DOMAIN
    model.opset_import.append(helper.make_opsetid(CROSSBAR_DOMAIN, 1))
    io_names = set(graph.inputs) | set(graph.outputs)
    for name, info in graph.tensors.items():
        if name not in io_names:
            model.graph.value_info.append(helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(np.dtype(info.dtype)), list(info.shape)))
    model.doc_string = ("imccompile program image: digital ops of the compiled model; every "
                        f"{CROSSBAR_DOMAIN}.{CROSSBAR_OP} node is a crossbar layer of "
                        "placement.json, computed from conductances.npz")
    return model.SerializeToString()


def _layer_npz(result, op: MatrixOp, lm: LayerLayout, key: str):
    """Yield (npz key, array) of one layer: its decode tables, then its arrays' conductances
    (every replica; none for a layer that reads another layer's arrays)."""
    from imccompile.simulate import SimOptions, quantized_weight

    target = result.target
    codes, w_step = quantized_weight(op, target, SimOptions())
    dac = _dac(result, op, target)
    img = layer_image(op, lm, target, codes, w_step, None if dac is None else dac[0])
    for name, arr in img.tables.items():
        yield f"{key}/{name}", arr
    if dac is not None:
        yield f"{key}/dac_step", np.array(dac[0], np.float32)
        yield f"{key}/dac_range", np.array(dac[1:], np.int64)
    if op.bias is not None:
        bias = np.asarray(op.bias, np.float32)
        if op.kind in ("matmul", "matmul_left") and op.groups > 1:
            bias = bias[:op.cols_per_group]  # added on the last axis, as the emitter does
        yield f"{key}/bias", bias
    for r in range(0 if lm.shares else lm.replicas):
        for ai, mats in enumerate(img.matrices):
            akey = f"array_{lm.first_array + r * lm.arrays + ai:05d}"
            for suffix, g in mats.items():
                yield akey + suffix, g


def _npz_writer(result, keys: dict[str, str]) -> Callable[[Path], None]:
    """Writes conductances.npz as np.savez_compressed would, one layer in memory at a time."""

    def write(path: Path) -> None:
        lm_by = {lm.name: lm for lm in result.mapping.layers}
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            for op in result.graph.matrix_ops:
                for name, arr in _layer_npz(result, op, lm_by[op.name], keys[op.name]):
                    with zf.open(name + ".npy", "w", force_zip64=True) as f:
                        np.lib.format.write_array(f, np.asanyarray(arr), allow_pickle=False)

    return write


def build(result) -> dict[str, str | bytes | Callable[[Path], None]]:
    """The files of the program image of a compile result: name -> text, bytes or a writer
    taking the target path (conductances.npz), as `imccompile.outputs.output.write_folder` takes them."""
    graph, target, mapping = result.graph, result.target, result.mapping
    for op in graph.matrix_ops:  # no conductance encodes them (they were cast to garbage)
        for what, arr in (("weight", op.weight), ("bias", op.bias)):
            if arr is not None and not np.isfinite(arr).all():
                raise MappingError(f"layer {op.name!r}: its {what} holds NaN or Inf values; a "
                                   "program image needs finite weights")
    a, h = target.array, target.hierarchy
    levels = (1 << a.bits_per_cell) - 1
    lm_by = {lm.name: lm for lm in mapping.layers}
    keys = {op.name: f"layer_{i:03d}" for i, op in enumerate(graph.matrix_ops)}
    cells = ["_pos", "_neg"] if a.signed_scheme == "differential_cell" else [""]
    layers_json, arrays_json = [], []
    arrays_of: dict[str, list[int]] = {}
    for li, op in enumerate(graph.matrix_ops):
        lm = lm_by[op.name]
        key = keys[op.name]
        dac = _dac(result, op, target)
        blocks_of = _by_array(lm)
        indices = [lm.first_array + r * lm.arrays + ai
                   for r in range(lm.replicas) for ai in range(lm.arrays)]
        for r in range(0 if lm.shares else lm.replicas):
            for ai, blks in enumerate(blocks_of):
                index = lm.first_array + r * lm.arrays + ai
                blocks = []
                for b in blks:
                    w_rows = lm.rows_of(b)
                    p = np.arange(b.p0, b.p1)
                    lcols = lm.group_cols(b.group)[b.p0 // lm.per_col:(b.p1 - 1) // lm.per_col + 1] \
                        if b.p1 > b.p0 else lm.group_cols(b.group)[:0]
                    blocks.append({
                        "group": b.group, "row_tile": b.row_tile, "col_tile": b.col_tile,
                        "array_rows": [b.row0, b.row0 + b.n_rows],
                        "weight_rows": _runs(w_rows),
                        "array_cols": [b.col0, b.col0 + b.n_cols],
                        "layout_cols": [b.p0, b.p1],
                        "weight_cols": _runs(lcols),
                        "slices": sorted({int(s) for s in (p // lm.column_devices) % lm.slices}),
                        "signs": [SIGN_NAMES[a.signed_scheme][d]
                                  for d in sorted({int(x) for x in p % lm.column_devices})],
                    })
                arrays_json.append({
                    "index": index, "key": f"array_{index:05d}",
                    **_location(mapping, lm, ai, r, target),
                    "layer": op.name, "layer_key": key, "replica": r, "local_index": ai,
                    "packed": lm.packed, "cells": cells,
                    "reference_column": a.cols - 1 if a.signed_scheme == "offset" else None,
                    "rows_used": int(sum(b.n_rows for b in blks)),
                    "cols_used": int(sum(b.n_cols for b in blks)), "blocks": blocks,
                })
        arrays_of[op.name] = indices
        ins, outs = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        layers_json.append({
            "index": li, "key": key, "name": op.name, "kind": op.kind,
            "input": op.inputs[0], "output": op.outputs[0],
            "input_shape": list(ins.shape), "output_shape": list(outs.shape),
            "attrs": _jsonable(op.attrs), "rows": op.rows, "cols": op.cols, "groups": op.groups,
            "weight_bits": lm.weight_bits, "input_bits": lm.input_bits, "slices": lm.slices,
            "column_devices": lm.column_devices, "rows_kept": lm.rows_used,
            "cols_kept": lm.cols_logical, "groups_placed": lm.groups, "row_tiles": lm.row_tiles,
            "col_tiles": lm.col_tiles, "packed": lm.packed,
            "blocks_per_array": lm.blocks_per_array, "arrays_per_replica": lm.arrays,
            "replicas": lm.replicas, "first_array": lm.first_array, "arrays": indices,
            "bias": op.bias is not None,
            "dac": None if dac is None else {"step": dac[0], "lo": dac[1], "hi": dac[2],
                                             "input_scaling": target.dac.input_scaling},
            "reference": ("column" if a.signed_scheme == "offset" else
                          "none" if a.signed_scheme == "differential_cell" else "row_sum"),
            "readout_columns": int(sum(b.n_cols for b in lm.blocks)),
            "full_scale": list(lm.full_scale),
            "shares": keys[lm.shares] if lm.shares else None,
        })
    arrays_json.sort(key=lambda x: x["index"])
    placement = {
        "format": FORMAT, "kind": "imccompile.placement", "imccompile": __version__,
        "model": result.model_name, "pipeline": result.pipeline,
        "files": {"conductances": "conductances.npz", "schedule": "schedule.json",
                  "graph": "graph.onnx"},
        "target": {
            "name": target.name, "device": a.device, "rows": a.rows, "cols": a.cols,
            "bits_per_cell": a.bits_per_cell, "levels": levels, "signed_scheme": a.signed_scheme,
            "devices_per_slice": a.devices_per_slice, "g_min_us": float(a.g_min_us),
            "g_max_us": float(a.g_max_us),
            "g_step_us": (float(a.g_max_us) - float(a.g_min_us)) / levels,  # full-level slice
            "arrays_per_core": h.arrays_per_core, "cores_per_tile": h.cores_per_tile,
            "tiles_per_chip": h.tiles_per_chip, "chip_arrays": mapping.chip_arrays,
        },
        "overflow_policy": mapping.overflow_policy, "chips": mapping.chips,
        "arrays_total": mapping.arrays,
        "inputs": [_tensor_json(graph, n) for n in graph.inputs],
        "outputs": [_tensor_json(graph, n) for n in graph.outputs],
        "layers": layers_json, "arrays": arrays_json,
    }
    s = result.schedule
    op_by = {o.name: o for o in graph.ops}
    steps = []
    for i, st in enumerate(s.steps):
        o = op_by[st.name]
        row: dict[str, Any] = {"index": i, "name": st.name}
        if isinstance(o, MatrixOp):
            row.update(type="crossbar", op_type=o.kind, layer_key=keys[o.name],
                       arrays=arrays_of[o.name])
        else:
            row.update(type="digital", op_type=o.op_type, arrays=[])
        row.update(inputs=[t for t in o.inputs if t], outputs=list(o.outputs),
                   start_s=float(st.start_s), end_s=float(st.end_s),
                   depends_on=list(st.depends_on))
        steps.append(row)
    schedule = {
        "format": FORMAT, "kind": "imccompile.schedule", "imccompile": __version__,
        "model": result.model_name, "latency_s": float(s.latency_s),
        "serial_latency_s": float(s.serial_latency_s), "period_s": float(s.period_s),
        "critical_path": list(s.critical_path), "steps": steps,
    }
    for lay in layers_json:  # twos_complement limits: refuse before anything is written
        if a.signed_scheme == "twos_complement" and (a.bits_per_cell != 1
                                                     or lay["weight_bits"] < 2):
            raise MappingError(f"layer {lay['name']}: a two's complement program image needs "
                               f"1-bit cells and weights of 2 bits or more (got "
                               f"{a.bits_per_cell}-bit cells, {lay['weight_bits']}-bit weights)")
    return {
        "placement.json": json.dumps(placement, indent=1, allow_nan=False) + "\n",
        "schedule.json": json.dumps(schedule, indent=1, allow_nan=False) + "\n",
        "conductances.npz": _npz_writer(result, keys),
        "graph.onnx": _graph_onnx(graph, keys),
    }
