"""Reference executor of a program image: one inference from the files alone, ideal devices.

* Digital ops: graph.onnx is cut at its ai.imccompile.Crossbar placeholder nodes into runs of
  consecutive digital nodes; each run is a small ONNX model that onnxruntime executes.
* Crossbar layers, in numpy from the conductances: the layer input is quantized by the DAC
  (``clip(round(x / step), lo, hi)``), lowered to input vectors (im2col for conv, one vector per
  input pixel for conv_transpose, rows / columns for gemm / matmul), routed to array rows by
  ``row_map``; every array computes its column currents ``I = devices_per_slice * (u @ G)``
  (differential_cell: ``u @ G_pos - u @ G_neg``) and its reference signal R; the readout
  ``y[:, j] += scale[e] * I[:, col] + offset[e] * R`` over the layer's readout entries undoes
  slicing, sign scheme, weight step and DAC step; the bias is added and the vectors are lifted
  back to the output tensor (col2im for conv_transpose). Replicas share the vectors round robin.

No ADC: the column currents are read exactly (docs/program-format.md).
No compiler IR here: only numpy, onnx, onnxruntime and the image.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from imccompile.program.image import CROSSBAR_DOMAIN, CROSSBAR_OP, Image, ProgramError, load


# -- weights --------------------------------------------------------------------------------
def layer_codes(image: Image, layer: dict, replica: int = 0) -> np.ndarray:
    """Integer weight codes (K, N) of a layer read back from one replica's conductances:
    code = sum over its columns of significance * polarity * round((G - g_zero) / g_step), with
    the g_step of each column's slice."""
    k, n, groups = layer["rows"], layer["cols"], layer["groups"]
    npg = n // groups
    g_step = image.table(layer, "g_step_us")
    codes = np.zeros((k, n), np.int64)
    rm = image.table(layer, "row_map")
    ca, ci, cl = (image.table(layer, x) for x in ("col_array", "col_index", "col_logical"))
    sig = image.table(layer, "significance") * image.table(layer, "col_polarity")
    gz = image.table(layer, "g_zero_us")
    a_n = layer["arrays_per_replica"]
    for a in range(a_n):
        gp, gn = image.conductance(layer["arrays"][replica * a_n + a])
        geff = gp if gn is None else gp - gn
        rows = np.flatnonzero(rm[a] >= 0)
        for e in np.flatnonzero(ca == a):
            j = int(cl[e])
            digit = np.rint((geff[rows, ci[e]] - gz[e]) / g_step[e]).astype(np.int64)
            grp, wrow = np.divmod(rm[a, rows], k)
            own = grp == j // npg
            if np.any(digit[~own]):  # packed: other groups' rows must hold a zero weight here
                raise ProgramError(f"{image.path / 'conductances.npz'}: layer {layer['name']}: "
                                   f"array column {ci[e]} holds weight outside its group block")
            codes[wrow[own], j] += int(sig[e]) * digit[own]
    return codes


def layer_weights(image: Image | str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per layer name: (integer codes (K, N), per-column weight step (N,)) read back from the
    image; the layer's effective weight is ``codes * step``."""
    img = image if isinstance(image, Image) else load(image)
    return {lay["name"]: (layer_codes(img, lay), img.table(lay, "weight_step"))
            for lay in img.layers}


# -- lowering of a layer's input to vectors and back ------------------------------------------
def _conv_pads(at: dict, in_sp, out_sp, kshape, strides, dil) -> tuple[list[int], list[int]]:
    nd = len(kshape)
    auto = at.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        total = [max(0, (o - 1) * s + (k - 1) * d + 1 - i)
                 for i, o, k, s, d in zip(in_sp, out_sp, kshape, strides, dil)]
        small = [tp // 2 for tp in total]
        big = [tp - tp // 2 for tp in total]
        return (small, big) if auto == "SAME_UPPER" else (big, small)
    if auto == "VALID":
        return [0] * nd, [0] * nd
    pads = list(at.get("pads", [0] * (2 * nd)))
    return pads[:nd], pads[nd:]


def _conv_geometry(layer: dict):
    at = layer["attrs"]
    kshape = list(at["kernel_shape"])
    nd = len(kshape)
    strides = list(at.get("strides", [1] * nd))
    dil = list(at.get("dilations", [1] * nd))
    return at, kshape, nd, strides, dil


def _lower(layer: dict, x: np.ndarray) -> tuple[np.ndarray, dict]:
    """(vectors (V, groups*K), context for _lift)."""
    kind, k, g = layer["kind"], layer["rows"], layer["groups"]
    at = layer["attrs"]
    if kind == "conv":
        at, kshape, nd, strides, dil = _conv_geometry(layer)
        out_sp = list(layer["output_shape"][2:])
        pb, pe = _conv_pads(at, x.shape[2:], out_sp, kshape, strides, dil)
        b, c = x.shape[:2]
        xp = np.pad(x, [(0, 0), (0, 0)] + list(zip(pb, pe)))
        cols = np.empty((b, c, *kshape, *out_sp), x.dtype)
        for kidx in np.ndindex(*kshape):
            sl = tuple(slice(ki * d, ki * d + s * (o - 1) + 1, s)
                       for ki, d, s, o in zip(kidx, dil, strides, out_sp))
            cols[(slice(None), slice(None)) + kidx] = xp[(slice(None), slice(None)) + sl]
        perm = [0] + list(range(2 + nd, 2 + 2 * nd)) + [1] + list(range(2, 2 + nd))
        return cols.transpose(perm).reshape(b * math.prod(out_sp), c * math.prod(kshape)), \
            {"b": b, "out_sp": out_sp}
    if kind == "conv_transpose":
        b, c = x.shape[:2]
        in_sp = list(x.shape[2:])
        perm = [0] + list(range(2, x.ndim)) + [1]
        return x.transpose(perm).reshape(b * math.prod(in_sp), c), {"b": b, "in_sp": in_sp}
    if kind == "gemm":
        x2 = x.T if at.get("trans_input") else x
        return x2.reshape(-1, k), {}
    wshape = list(at["weight_shape"])
    if kind == "matmul":
        if len(wshape) <= 2:
            return x.reshape(-1, k), {}
        x3 = x[None, :] if x.ndim == 1 else x
        bshape = np.broadcast_shapes(tuple(x3.shape[:-2]), tuple(wshape[:-2]))
        if tuple(bshape[len(bshape) - len(wshape) + 2:]) != tuple(wshape[:-2]):
            raise ProgramError(f"layer {layer['name']}: broadcast weight batch dims "
                               f"{wshape[:-2]} are not supported by the reference executor")
        m = x3.shape[-2]
        lb = math.prod(bshape) // g
        xb = np.broadcast_to(x3, tuple(bshape) + (m, k)).reshape(lb, g, m, k)
        return xb.transpose(0, 2, 1, 3).reshape(lb * m, g * k), \
            {"lb": lb, "m": m, "bshape": bshape}
    # matmul_left: y = A @ x, A constant (.., M, K); the vectors are the columns of x
    if len(wshape) == 1:
        xt = np.swapaxes(x, -1, -2) if x.ndim > 1 else x[None, :]
        return xt.reshape(-1, k), {}
    x3 = x[:, None] if x.ndim == 1 else x
    bshape = np.broadcast_shapes(tuple(x3.shape[:-2]), tuple(wshape[:-2]))
    if wshape[:-2] and tuple(bshape[len(bshape) - len(wshape) + 2:]) != tuple(wshape[:-2]):
        raise ProgramError(f"layer {layer['name']}: broadcast weight batch dims {wshape[:-2]} "
                           "are not supported by the reference executor")
    p = x3.shape[-1]
    lb = math.prod(bshape) // g
    xb = np.broadcast_to(x3, tuple(bshape) + (k, p)).reshape(lb, g, k, p)
    return xb.transpose(0, 3, 1, 2).reshape(lb * p, g * k), {"lb": lb, "p": p}


def _lift(layer: dict, y: np.ndarray, ctx: dict, bias: np.ndarray | None) -> np.ndarray:
    kind, g = layer["kind"], layer["groups"]
    out_shape = tuple(layer["output_shape"])
    n = layer["cols"]
    if kind == "conv":
        b, out_sp = ctx["b"], ctx["out_sp"]
        nd = len(out_sp)
        out = y.reshape(b, *out_sp, n).transpose([0, nd + 1] + list(range(1, nd + 1)))
        if bias is not None:
            out = out + bias.reshape(1, -1, *([1] * nd))
        return out.reshape(out_shape)
    if kind == "conv_transpose":
        at, kshape, nd, strides, dil = _conv_geometry(layer)
        b, in_sp = ctx["b"], ctx["in_sp"]
        cout = int(at["out_channels"])
        opad = list(at.get("output_padding", [0] * nd))
        yk = y.reshape(b, *in_sp, g, cout // g, *kshape)
        yk = yk.transpose([0, nd + 1, nd + 2] + list(range(nd + 3, 2 * nd + 3))
                          + list(range(1, nd + 1)))  # (b, g, cout_g, *k, *in)
        full = [s * (i - 1) + (kk - 1) * d + 1 + op
                for s, i, kk, d, op in zip(strides, in_sp, kshape, dil, opad)]
        acc = np.zeros((b, g, cout // g, *full), y.dtype)
        for kidx in np.ndindex(*kshape):
            sl = tuple(slice(ki * d, ki * d + s * (i - 1) + 1, s)
                       for ki, d, s, i in zip(kidx, dil, strides, in_sp))
            acc[(slice(None),) * 3 + sl] += yk[(slice(None),) * 3 + kidx]
        out_sp = list(out_shape[2:])
        auto = at.get("auto_pad", "NOTSET")
        if auto == "NOTSET" and "output_shape" not in at:
            begin = list(at.get("pads", [0] * (2 * nd)))[:nd]
        else:
            total = [f - o for f, o in zip(full, out_sp)]
            begin = [tp // 2 if auto == "SAME_UPPER" else tp - tp // 2 for tp in total]
        acc = acc.reshape(b, cout, *full)
        out = acc[(slice(None), slice(None)) + tuple(slice(bg, bg + o)
                                                     for bg, o in zip(begin, out_sp))]
        if bias is not None:
            out = out + bias.reshape(1, -1, *([1] * nd))
        return out.reshape(out_shape)
    if kind in ("matmul", "matmul_left") and "lb" in ctx:
        npg = n // g
        if kind == "matmul":
            lb, m = ctx["lb"], ctx["m"]
            out = y.reshape(lb, m, g, npg).transpose(0, 2, 1, 3)
        else:
            lb, p = ctx["lb"], ctx["p"]
            out = y.reshape(lb, p, g, npg).transpose(0, 2, 3, 1)
        out = out.reshape(out_shape)
    else:
        out = y.reshape(out_shape)
    if bias is not None:  # on the last axis, as the emitted model adds it
        out = out + bias
    return out


# -- crossbar layers ------------------------------------------------------------------------
def _decode_matrix(image: Image, layer: dict, a: int) -> tuple[np.ndarray, np.ndarray]:
    """(D (cols, N), o (N,)) of local array a: y += I @ D + R * o."""
    cache = image._cache.setdefault("decode", {})
    key = (layer["key"], a)
    if key not in cache:
        cols = image.target["cols"]
        ca = image.table(layer, "col_array")
        sel = ca == a
        ci, cl = image.table(layer, "col_index")[sel], image.table(layer, "col_logical")[sel]
        d = np.zeros((cols, layer["cols"]))
        np.add.at(d, (ci, cl), image.table(layer, "scale")[sel])
        o = np.bincount(cl, image.table(layer, "offset")[sel], minlength=layer["cols"])
        cache[key] = (d, o)
    return cache[key]


def crossbar(image: Image, layer: dict, x: np.ndarray, dac: bool = True) -> np.ndarray:
    """One crossbar layer computed from the image's conductances (see module docstring)."""
    t = image.target
    x = np.asarray(x)
    per_vector = (layer["dac"] is not None and dac
                  and layer["dac"].get("input_scaling", "calibrated") == "abs_max")
    if per_vector:  # each input vector divided by its max |x|, the output multiplied back
        vec, ctx = _lower(layer, x.astype(np.float32))
        s = np.abs(vec).max(axis=1)
        s = np.where(s > 0, s, 1).astype(np.float32)
        step = image.table(layer, "dac_step").astype(np.float32)
        lo, hi = (float(v) for v in image.table(layer, "dac_range"))
        vec = np.clip(np.rint(vec / s[:, None] / step), lo, hi).astype(np.float64)
    elif layer["dac"] is not None and dac:
        step = image.table(layer, "dac_step").astype(np.float32)
        lo, hi = (float(v) for v in image.table(layer, "dac_range"))
        u = np.clip(np.rint(x.astype(np.float32) / step), lo, hi).astype(np.float64)
    else:
        u = x.astype(np.float64)
        if layer["dac"] is not None:  # no DAC: undo the DAC step folded into the scales
            u = u / float(image.table(layer, "dac_step"))
    if not per_vector:
        vec, ctx = _lower(layer, u)
    n_dev = t["devices_per_slice"]
    y = np.zeros((vec.shape[0], layer["cols"]))
    a_n, reps = layer["arrays_per_replica"], layer["replicas"]
    rm = image.table(layer, "row_map")
    for r in range(reps):
        part = vec[r::reps]  # vectors are shared round robin among the replicas
        if not part.shape[0]:
            continue
        padded = np.concatenate([part, np.zeros((part.shape[0], 1))], axis=1)  # -1: no input
        acc = np.zeros((part.shape[0], layer["cols"]))
        for a in range(a_n):
            u_a = padded[:, rm[a]]
            gp, gn = image.conductance(layer["arrays"][r * a_n + a])
            cur = n_dev * (u_a @ gp if gn is None else u_a @ gp - u_a @ gn)
            if layer["reference"] == "column":
                ref = cur[:, t["cols"] - 1]
            elif layer["reference"] == "row_sum":
                ref = u_a.sum(axis=1)
            else:
                ref = np.zeros(part.shape[0])
            d, o = _decode_matrix(image, layer, a)
            acc += cur @ d + ref[:, None] * o[None, :]
        y[r::reps] = acc
    if per_vector:
        y = y * s[:, None].astype(np.float64)
    bias = image.npz.get(f"{layer['key']}/bias") if layer["bias"] else None
    return _lift(layer, y, ctx, None if bias is None else bias.astype(np.float64))


# -- digital segments -----------------------------------------------------------------------
def _plan(image: Image) -> list[tuple]:
    """[("digital", session, inputs, outputs) | ("crossbar", layer)] in graph order."""
    if "plan" in image._cache:
        return image._cache["plan"]
    import onnxruntime as ort
    from onnx import helper

    model = image.graph
    g = model.graph
    by_key = {lay["key"]: lay for lay in image.layers}
    inits = {i.name: i for i in g.initializer}
    vinfo = {v.name: v for v in list(g.input) + list(g.value_info) + list(g.output)}
    nodes = list(g.node)
    runs: list[tuple[str, list]] = []
    for node in nodes:
        if node.domain == CROSSBAR_DOMAIN and node.op_type == CROSSBAR_OP:
            key = next(a.s.decode() for a in node.attribute if a.name == "layer")
            runs.append(("crossbar", [by_key[key]]))
        elif runs and runs[-1][0] == "digital":
            runs[-1][1].append(node)
        else:
            runs.append(("digital", [node]))
    graph_outputs = [o.name for o in g.output]
    plan: list[tuple] = []
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    opsets = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
    for i, (kind, items) in enumerate(runs):
        if kind == "crossbar":
            plan.append(("crossbar", items[0]))
            continue
        produced = {o for n in items for o in n.output if o}
        later = set(graph_outputs)
        for kind2, items2 in runs[i + 1:]:
            if kind2 == "crossbar":
                later.add(items2[0]["input"])
            else:
                later.update(t for n in items2 for t in n.input)
        outs = [o for n in items for o in n.output if o in later]
        if not outs:
            continue
        ins: list[Any] = []
        used_inits: list[Any] = []
        for n in items:
            for t in n.input:
                if not t or t in produced or t in ins or t in used_inits:
                    continue
                (used_inits if t in inits else ins).append(t)
        missing = [t for t in ins + outs if t not in vinfo]
        if missing:
            raise ProgramError(f"{image.path / 'graph.onnx'}: no type for tensor(s) "
                               f"{', '.join(missing)}")
        sub = helper.make_graph(items, f"segment{i}", [vinfo[t] for t in ins],
                                [vinfo[t] for t in outs], [inits[t] for t in used_inits])
        m = helper.make_model(sub, opset_imports=opsets, producer_name="imccompile.program")
        m.ir_version = model.ir_version
        try:
            sess = ort.InferenceSession(m.SerializeToString(), so,
                                        providers=["CPUExecutionProvider"])
        except Exception as e:
            raise ProgramError(f"{image.path / 'graph.onnx'}: digital ops "
                               f"{', '.join(n.name for n in items)[:200]} cannot be run: "
                               f"{e}") from None
        plan.append(("digital", sess, ins, outs))
    image._cache["plan"] = plan
    return plan


def run(image: Image | str | Path, inputs: Mapping[str, np.ndarray], *,
        dac: bool = True) -> dict[str, np.ndarray]:
    """Run one inference from a program image (ideal devices, exact column read-out).

    ``inputs``: arrays by graph input name (placement.json ``inputs``); ``dac=False`` drives the
    rows with the unquantized inputs. Returns the graph outputs by name.
    """
    if not isinstance(image, (Image, str, os.PathLike)):
        raise ProgramError(f"image {type(image).__name__}: expected a program Image or the path "
                           "of a program folder")
    img = image if isinstance(image, Image) else load(image)
    if not isinstance(inputs, Mapping):
        raise ProgramError(f"inputs {type(inputs).__name__}: expected a dict of arrays by input "
                           "name")
    values: dict[str, np.ndarray] = {}
    known = [s["name"] for s in img.placement["inputs"]]
    extra = [k for k in inputs if k not in known]
    if extra:
        raise ProgramError(f"inputs {', '.join(map(repr, extra))}: not an input of the image "
                           f"(its inputs: {', '.join(known)})")
    for spec in img.placement["inputs"]:
        name = spec["name"]
        if name not in inputs:
            raise ProgramError(f"no array for input {name!r} (the image's inputs: "
                               f"{', '.join(known)})")
        given = np.asarray(inputs[name])
        if given.dtype.kind not in "biuf":
            raise ProgramError(f"input {name!r}: expected numbers ({spec['dtype']}), got an "
                               f"array of {given.dtype}")
        if given.dtype.kind == "f" and not np.isfinite(given).all():
            raise ProgramError(f"input {name!r}: holds NaN or infinite values")
        if np.dtype(spec["dtype"]).kind in "iu" and given.dtype.kind == "f" and \
                not np.array_equal(given, np.round(given)):
            raise ProgramError(f"input {name!r}: the image expects integers ({spec['dtype']}), "
                               "got fractional values")
        arr = given.astype(spec["dtype"])
        if list(arr.shape) != spec["shape"]:
            raise ProgramError(f"input {name!r} has shape {list(arr.shape)}; the image expects "
                               f"{spec['shape']}")
        values[name] = arr
    for step in _plan(img):
        if step[0] == "crossbar":
            lay = step[1]
            out = crossbar(img, lay, values[lay["input"]], dac=dac)
            values[lay["output"]] = out.astype(np.float32)
        else:
            _, sess, ins, outs = step
            for name, v in zip(outs, sess.run(outs, {t: values[t] for t in ins})):
                values[name] = v
    return {o["name"]: values[o["name"]] for o in img.placement["outputs"]}
