"""Emitter: IR back to ONNX, either ideal (float, same function as the source model) or as a
*simulation model* of the hardware that onnxruntime runs.

The simulation model of a MatrixOp, given its `OpSim` (from imccompile.simulate):
  * DAC: the input is quantized, ``clip(round(x / s), lo, hi) * s``;
  * the weight matrix is the effective one (quantized, masked, with device noise and drift);
  * ADC: the product is split by the layout's ADC row groups (``OpSim.tiles``, from
    imccompile.layout: the rows every array sums over; rows outside a tile zeroed); each tile's
    partial sum is quantized, ``clip(round(y / step), -L, L) * step``, then the tiles are summed
    and the bias added digitally.
Besides the frontend, this module, the simulation and the program image (graph writer, executor)
touch onnx; the IR, layout, mapper, schedule and cost never do (import-linter, .ci/run).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from imccompile import readout
from imccompile.errors import ModelImportError
from imccompile.ir import DigitalOp, Graph, MatrixOp

SIM_MIN_OPSET = 11  # the simulation's Round and Clip(x, min, max)
_RINT_MAGIC = 12582912.0  # 1.5 * 2^23 (`_Builder.rint_clip`)


@dataclass(frozen=True)
class OpSim:
    """Hardware effects for one MatrixOp in the simulation model.

    Attributes:
        weight: effective (K, N) weight to emit (quantized / noisy), or None for op.weight.
        act_step / act_lo / act_hi: DAC quantization (step and integer clip range), or None.
        tiles: the ADC row groups, by row tile: for every tile, (group, first W row, last W row
            + 1) of each group that has it (`LayerLayout.tiles`); None emits one product (no
            ADC split).
        adc_steps: ADC step per row tile (None: no ADC quantization); adc_levels: max |code|.
        probe: also expose every row tile's partial sum as a graph output (for ADC calibration);
            probe names are ``probe_name(op, tile, k)``.
        Bit-accurate mode (``slices`` set): the product is split by input cycle and weight slice
        as the hardware computes it. ``slices``: effective signed digit matrices (K, N) per
        weight slice, ``slice_base`` their radix, ``offset`` the offset-scheme code offset
        (subtracted digitally, exactly); ``col_scale``: per-column weight step; the input is
        quantized to integer codes with ``act_step`` and fed as ``plane_bits``-bit planes (None:
        one PWM read of the whole code); each (tile, plane, slice) partial sum, in digit units,
        is quantized by the ADC with ``adc_steps[tile]``, then shifted and added digitally.
        The read-out chain around the product (`imccompile.readout`): ``input_scaling`` divides
        each input vector by its max |x| before the DAC and multiplies the output back after
        the ADC; ``adc_noise`` is the read-out noise std of every ADC read relative to its full
        scale (drawn per run by ONNX RandomNormalLike, seeded from ``noise_seed``); ``gain``
        is the drift-compensation gain applied digitally after the ADC, before the bias.
    """

    weight: np.ndarray | None = None
    act_step: float | None = None
    act_lo: int = 0
    act_hi: int = 0
    tiles: tuple[tuple[tuple[int, int, int], ...], ...] | None = None
    adc_steps: tuple[float, ...] | None = None
    adc_levels: int = 0
    probe: bool = False
    slices: tuple[np.ndarray, ...] | None = None
    slice_base: int = 2
    offset: int = 0
    col_scale: np.ndarray | None = None
    plane_bits: int | None = None
    in_bits: int = 8
    activity: bool = False  # expose the DAC codes' input activity (`activity_name`)
    activity_pwm: bool = False  # ... as mean pulse length (a PWM DAC), else fraction of 1 bits
    input_scaling: bool = False
    adc_noise: float = 0.0
    noise_seed: int = 0
    gain: float = 1.0


def probe_name(op_name: str, tile: int, k: int) -> str:
    return f"{op_name}__probe_t{tile}__{k}"


def activity_name(op_name: str) -> str:
    return f"{op_name}__activity"


def _emit_activity(b: _Builder, op: MatrixOp, sim: OpSim) -> None:
    """Output ``activity_name(op)``: per sample, the layer's DAC input activity: for a
    bit-serial DAC the fraction of 1 bits of its input codes, each code written in ``in_bits``
    bits (a negative code in two's complement, as a bit-serial DAC drives it); for a PWM DAC
    (``sim.activity_pwm``) the mean pulse length relative to the longest, |code| / max |code|
    (a row is driven for a time proportional to its code)."""
    assert sim.act_step is not None
    code = b.codes(op.inputs[0], sim.act_step, sim.act_lo, sim.act_hi, op.name + "_act")
    bits = sim.in_bits
    lo, hi = int(sim.act_lo), int(sim.act_hi)
    if sim.activity_pwm:  # mean |code| / longest: two passes over the codes, no table
        longest = max(abs(lo), abs(hi), 1)
        mean = _reduce_mean(b, b.node("Flatten", [b.node("Abs", [code])], axis=1), 1)
        b.node("Mul", [mean, b.const(b.fresh(op.name + "_pwm"), np.float32(1.0 / longest))],
               [activity_name(op.name)])
        b.probes.append(activity_name(op.name))
        return
    # a table of every code's fraction of 1 bits (code lo + j at index j), gathered per element
    table = np.array([bin(c % (1 << bits)).count("1") / bits for c in range(lo, hi + 1)],
                     np.float32)
    # the code itself is the index, with no offset to subtract (Gather counts a negative index
    # from the end): reordered to hold codes 0..hi, then lo..-1
    assert lo <= 0 <= hi
    table = np.concatenate([table[-lo:], table[:-lo]])
    if b.opset >= 12:
        # a NaN code casts to INT32_MIN: clamped into the table (the run reports the
        # non-finite outputs it leads to)
        idx = b.node("Cast", [code], to=onnx.TensorProto.INT32)
        idx = b.node("Clip", [idx, b.const(b.fresh("act_i0"), np.int32(lo)),
                              b.const(b.fresh("act_in"), np.int32(hi))])
    else:  # no integer Clip before opset 12: a NaN code reads code 0's entry
        nan = b.node("IsNaN", [code])
        code = b.node("Where", [nan, b.const(b.fresh("act_z"), np.float32(0.0)), code])
        idx = b.node("Cast", [code], to=onnx.TensorProto.INT32)
    frac = b.node("Gather", [b.const(b.fresh(op.name + "_popcount"), table), idx], axis=0)
    # (mean over each sample: the input's shape need not be known, e.g. an unfolded conv)
    b.node("Identity", [_reduce_mean(b, b.node("Flatten", [frac], axis=1), 1)],
           [activity_name(op.name)])
    b.probes.append(activity_name(op.name))


def range_names(tensor: str) -> tuple[str, str]:
    """The outputs of a tensor's per-sample (max |x|, min x) (`emit_parts` ``ranges``)."""
    return f"{tensor}__absmax", f"{tensor}__min"


def probe_tile(name: str) -> tuple[str, int]:
    """(op name, row tile) of a probe output name."""
    op_name, rest = name.rsplit("__probe_t", 1)
    return op_name, int(rest.split("__", 1)[0])


TILES_PROBE = "__probe_by_tile"


def tiles_probe_name(op_name: str) -> str:
    """Output of max |partial sum| per row tile (last axis: the tiles; one row per sample, or
    per leading row of a sample) of an op whose tiles' partial sums are one product."""
    return op_name + TILES_PROBE


def to_onnx_weight(op: MatrixOp, wkn: np.ndarray) -> np.ndarray:
    """Inverse of the frontend's weight layout: (K, N) back to the ONNX weight tensor."""
    wkn = np.asarray(wkn, np.float32)
    if op.kind == "conv":
        cout = int(op.attrs["out_channels"])
        return np.ascontiguousarray(wkn.T.reshape(cout, -1, *op.attrs["kernel_shape"]))
    if op.kind == "conv_transpose":
        g = op.groups
        cout_g = int(op.attrs["out_channels"]) // g
        blocks = [wkn[:, i * op.cols_per_group:(i + 1) * op.cols_per_group]
                  .reshape(op.rows, cout_g, *op.attrs["kernel_shape"]) for i in range(g)]
        return np.ascontiguousarray(np.concatenate(blocks, axis=0))
    if op.kind == "gemm":
        return np.ascontiguousarray(wkn)
    shape = list(op.attrs["weight_shape"])
    if op.kind == "matmul" and op.groups == 1:
        return np.ascontiguousarray(wkn.reshape(shape))  # no copy of a contiguous weight
    blocks = [wkn[:, i * op.cols_per_group:(i + 1) * op.cols_per_group] for i in range(op.groups)]
    if op.kind == "matmul":
        return np.ascontiguousarray(np.stack(blocks).reshape(shape))
    return np.ascontiguousarray(np.stack([b.T for b in blocks]).reshape(shape))  # matmul_left


@dataclass
class _Builder:
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # constants, by name (no copy)
    probes: list[str] = field(default_factory=list)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    opset: int = 17
    _n: int = 0
    # weights already emitted, by (weight_id, layout): uses of one stored weight (an unrolled
    # RNN's steps) whose emitted weights are equal read one initializer, not a copy per use
    _weights: dict[tuple, list[tuple[np.ndarray, str]]] = field(default_factory=dict)
    # read-out noise of the op being emitted: (std relative to the ADC full scale, seed)
    adc_noise: tuple[float, int] | None = None
    # integer codes already emitted, by (tensor, step, lo, hi): a layer's DAC codes are computed
    # once for its product and its activity, and once for layers reading the same input alike
    _codes: dict[tuple[str, float, float, float], str] = field(default_factory=dict)

    def adc_codes(self, y: str, levels: int, step: float = 1.0) -> str:
        """y (in units of ``step``) plus the current op's read-out noise, before the ADC."""
        if self.adc_noise is None:
            return y
        rel, seed = self.adc_noise
        return readout.adc_noise_node(self, y, rel * levels * step,
                                      (seed * 10007 + self._n) % (1 << 24))

    def weight(self, op: MatrixOp, wkn: np.ndarray) -> str:
        value = to_onnx_weight(op, wkn)
        key = (op.weight_id, op.kind, op.groups, value.shape) if op.weight_id else None
        if key is not None:
            for seen, name in self._weights.get(key, []):
                if np.array_equal(seen, value):
                    return name
        name = self.const(self.fresh(op.name + "_W"), value)
        if key is not None:
            self._weights.setdefault(key, []).append((value, name))
        return name

    def const(self, name: str, value: np.ndarray | np.generic | float) -> str:
        self.arrays[name] = np.asarray(value)
        return name

    def fresh(self, base: str) -> str:
        self._n += 1
        return f"{base}__sim{self._n}"

    def node(self, op_type: str, inputs: list[str], outputs: list[str] | None = None,
             name: str | None = None, **attrs) -> str:
        outputs = outputs or [self.fresh(op_type.lower())]
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=name or outputs[0], **attrs))
        return outputs[0]

    def codes(self, x: str, step: float, lo: float, hi: float, base: str) -> str:
        """Integer codes clip(round(x / step), lo, hi) (as floats)."""
        key = (x, float(step), float(lo), float(hi))
        if key not in self._codes:
            s = self.const(self.fresh(base + "_step"), np.float32(step))
            lo_c = self.const(self.fresh(base + "_lo"), np.float32(lo))
            hi_c = self.const(self.fresh(base + "_hi"), np.float32(hi))
            self._codes[key] = self.rint_clip(self.node("Div", [x, s]), lo_c, hi_c,
                                              max(abs(lo), abs(hi)))
        return self._codes[key]

    def rint_clip(self, x: str, lo: str, hi: str, bound: float) -> str:
        """round-half-to-even(x) clipped to [lo, hi] (integer bounds, |bound| their largest).

        Clipped first, then rounded by adding and subtracting 1.5 * 2^23: in float32 the sum
        keeps no fraction and rounds to nearest, ties to even, exactly as ONNX Round (ties to
        even) does for |x| <= 2^22; two Adds run several times faster than onnxruntime's Round
        on the ADC's large partial-sum tensors. Clip and round commute at integer bounds."""
        c = self.node("Clip", [x, lo, hi])
        if bound >= 2 ** 22:
            return self.node("Round", [c])
        m = self.const(self.fresh("rint_m"), np.float32(_RINT_MAGIC))
        n = self.const(self.fresh("rint_n"), np.float32(-_RINT_MAGIC))
        return self.node("Add", [self.node("Add", [c, m]), n])

    def adc(self, y: str, step: float, levels: int, base: str) -> str:
        """An ADC read of y: read-out noise, then quantized to ``step``, clipped at +-levels."""
        return self.quantize(self.adc_codes(y, levels, step), step, -levels, levels, base)

    def quantize(self, x: str, step: float, lo: float, hi: float, base: str) -> str:
        """``step`` x `codes`: x quantized to the grid (the codes shared with other users)."""
        c = self.codes(x, step, lo, hi, base)
        return self.node("Mul", [c, self.const(self.fresh(base + "_step"), np.float32(step))])


_CONV_KEEP = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")
_CT_KEEP = _CONV_KEEP + ("output_padding", "output_shape")


def _emit_product(b: _Builder, op: MatrixOp, x: str, wkn: np.ndarray, out: str,
                  with_bias: bool) -> str:
    """One crossbar product of op (weight wkn) on input x, written to `out`."""
    w = b.weight(op, wkn)
    bias = op.bias if with_bias else None
    if op.kind in ("conv", "conv_transpose"):
        keep = _CONV_KEEP if op.kind == "conv" else _CT_KEEP
        attrs = {k: v for k, v in op.attrs.items() if k in keep}
        ins = [x, w]
        if bias is not None:
            ins.append(b.const(b.fresh(op.name + "_B"), bias.astype(np.float32)))
        return b.node("Conv" if op.kind == "conv" else "ConvTranspose", ins, [out], **attrs)
    if op.kind == "gemm":
        ins = [x, w]
        if bias is not None:
            ins.append(b.const(b.fresh(op.name + "_B"), bias.astype(np.float32)))
        return b.node("Gemm", ins, [out], transA=int(bool(op.attrs.get("trans_input"))))
    ins = [x, w] if op.kind == "matmul" else [w, x]
    if bias is None:
        return b.node("MatMul", ins, [out])
    y = b.node("MatMul", ins)
    bb = bias[:op.cols_per_group] if op.groups > 1 else bias
    return b.node("Add", [y, b.const(b.fresh(op.name + "_B"), bb.astype(np.float32))], [out])


def _emit_matrix(b: _Builder, op: MatrixOp, sim: OpSim | None) -> None:
    """One crossbar layer: the analog product (`_emit_analog`) inside the read-out chain of
    `imccompile.readout` (per-vector input scaling, read-out noise, drift-compensation gain)."""
    if sim is None or not (sim.input_scaling or sim.adc_noise or sim.gain != 1.0):
        _emit_analog(b, op, sim)
        return
    x, scale, analog = op.inputs[0], None, op
    if sim.input_scaling:
        if op.kind == "conv":  # the vectors are patches: a 1x1 conv over the unfolded input
            x, analog = readout.unfold_conv(b, op, x)
        x, scale = readout.input_scale_nodes(b, analog, x)
    inner = b.fresh(op.name + "_analog")
    if op.outputs[0] in b.shapes:
        b.shapes[inner] = b.shapes[op.outputs[0]]
    b.adc_noise = (sim.adc_noise, sim.noise_seed) if sim.adc_noise else None
    _emit_analog(b, analog.replace(inputs=(x,) + tuple(op.inputs[1:]), outputs=(inner,),
                                   bias=None), sim)
    b.adc_noise = None
    y = inner
    if scale is not None:
        y = b.node("Mul", [y, scale])
    if sim.gain != 1.0:
        y = b.node("Mul", [y, b.const(b.fresh(op.name + "_gain"), np.float32(sim.gain))])
    _emit_bias(b, op, y, op.outputs[0])


def _emit_analog(b: _Builder, op: MatrixOp, sim: OpSim | None) -> None:
    x, out = op.inputs[0], op.outputs[0]
    wkn = op.weight if sim is None or sim.weight is None else sim.weight
    if sim is None:
        _emit_product(b, op, x, wkn, out, with_bias=True)
        return
    if sim.activity and sim.act_step is not None:
        _emit_activity(b, op, sim)
    if sim.slices is not None:
        _emit_bitwise(b, op, sim)
        return
    tiles = _op_tiles(op, sim)
    n_tiles = len(tiles)
    if sim.adc_steps is None and not sim.probe and n_tiles > 1:
        # no ADC: the tiles' partial sums add up to one product over their rows
        union = tuple(t for tl in tiles for t in tl)
        covered = np.zeros((op.groups, op.rows), bool)
        for g, lo, hi in union:
            covered[g, lo:hi] = True
        if not covered.all():  # rows no array holds (pruned away) read nothing
            wkn = tile_rows(op, wkn, union, 0, op.rows)
        tiles, n_tiles = (union,), 1
    probe_stacked = sim.probe and sim.adc_steps is None and _probe_stackable(b, op)
    if (not sim.probe or probe_stacked) and _stackable(b, op) and (
            n_tiles > 1 or sim.adc_steps is not None or probe_stacked):
        # integer DAC codes; the DAC step is folded into the weights
        in_scale = 1.0
        if sim.act_step is not None:
            x = b.codes(x, sim.act_step, sim.act_lo, sim.act_hi, op.name + "_dac")
            in_scale = float(sim.act_step)
        acc = _stacked(b, op, x, [(wkn, tl) for tl in tiles], sim.adc_steps, [1.0] * n_tiles,
                       sim.adc_levels, in_scale=in_scale,
                       probe=tiles_probe_name(op.name) if probe_stacked else None)
        _emit_bias(b, op, acc, out)
        return
    if sim.act_step is not None:
        x = b.quantize(x, sim.act_step, sim.act_lo, sim.act_hi, op.name + "_dac")
    if n_tiles == 1 and sim.adc_steps is None and not sim.probe:
        _emit_product(b, op, x, wkn, out, with_bias=True)
        return
    partials = []
    stackable = _stackable(b, op)
    for t in range(n_tiles):
        name = b.fresh(op.name + f"_tile{t}")
        if stackable:  # the tile's rows only, on its slice of the input
            lo, hi = _tile_range(tiles[t])
            y = _wide_product(b, op, x, [(wkn, tiles[t], 1.0)], lo, hi, out=name)
        else:
            y = _emit_product(b, op, x, _tile_weight(op, wkn, tiles[t]), name, with_bias=False)
        if sim.probe:
            _emit_probe(b, y, probe_name(op.name, t, 0))
        if sim.adc_steps is not None:
            y = b.adc(y, sim.adc_steps[t], sim.adc_levels, op.name + f"_adc{t}")
        partials.append(y)
    acc = partials[0] if len(partials) == 1 else b.node("Sum", partials)
    _emit_bias(b, op, acc, out)


Tile = tuple[tuple[int, int, int], ...]


def whole_tile(op: MatrixOp) -> Tile:
    """One ADC row group of every row of every group (no split by the layout)."""
    return tuple((g, 0, op.rows) for g in range(op.groups))


def _tile_weight(op: MatrixOp, w: np.ndarray, tile: Tile) -> np.ndarray:
    """The weights of one ADC row group (all others zero), float32 (K, N)."""
    return tile_rows(op, w, tile, 0, op.rows)


def tile_rows(op: MatrixOp, w: np.ndarray, tile: Tile, r0: int, r1: int,
              scale: float = 1.0) -> np.ndarray:
    """Rows [r0, r1) of `_tile_weight` (times ``scale``), float32 (r1 - r0, N): a tile's
    block without the K x N array of zeros around it."""
    out = np.zeros((r1 - r0, w.shape[1]), np.float32)
    npg = op.cols_per_group
    for g, lo, hi in tile:
        lo, hi = max(lo, r0), min(hi, r1)
        if lo < hi:
            blk = w[lo:hi, g * npg:(g + 1) * npg]
            out[lo - r0:hi - r0, g * npg:(g + 1) * npg] = (
                blk if scale == 1.0 else blk.astype(np.float64) * scale)
    return out


def tile_colsum_max(op: MatrixOp, w: np.ndarray, tile: Tile) -> float:
    """max over columns of sum |w| over one ADC row group's rows (its worst partial sum per
    unit input)."""
    lo, hi = _tile_range(tile)
    return float(np.abs(tile_rows(op, w, tile, lo, hi)).sum(axis=0, dtype=np.float64).max())


def _tile_range(tile: Tile) -> tuple[int, int]:
    """The W rows [lo, hi) that hold a tile's rows (of every group)."""
    return min(lo for _, lo, _ in tile), max(hi for _, _, hi in tile)


def _op_tiles(op: MatrixOp, sim: OpSim) -> tuple[Tile, ...]:
    return sim.tiles or (whole_tile(op),)


def _stackable(b: _Builder, op: MatrixOp) -> bool:
    """Ops whose row-tile partial sums can be computed as one product with the tiles' weights
    side by side (more output columns), instead of one product per tile."""
    if op.groups != 1 or op.outputs[0] not in b.shapes:
        return False
    if op.kind == "conv":
        return True
    if op.kind == "gemm":
        return True
    return op.kind == "matmul" and len(op.attrs.get("weight_shape", [])) == 2


def _probe_stackable(b: _Builder, op: MatrixOp) -> bool:
    """Stackable ops whose partial sums' tile axis `_stacked` can probe (the product's
    columns are its last axis, or its channel axis for a conv)."""
    return _stackable(b, op) and not (op.kind == "gemm" and op.attrs.get("trans_input"))


def _emit_probe(b: _Builder, y: str, name: str) -> None:
    """Output ``name``: per sample, max |y| (a partial sum's range, for ADC calibration)."""
    b.probes.append(sample_reduce(b, "ReduceMax", b.node("Abs", [y]), name))


def sample_reduce(b: _Builder, op_type: str, x: str, out: str) -> str:
    """``op_type`` (ReduceMax, ReduceMin) of x over everything but its first (batch) axis,
    written to ``out``: one value per sample."""
    flat = b.node("Flatten", [x], axis=1)
    if b.opset >= 18:
        return b.node(op_type, [flat, b.const(b.fresh("axes"), np.array([1], np.int64))],
                      [out], keepdims=0)
    return b.node(op_type, [flat], [out], axes=[1], keepdims=0)


def _reduce_mean(b: _Builder, x: str, axis: int) -> str:
    if b.opset >= 18:
        return b.node("ReduceMean", [x, b.const(b.fresh("axes"), np.array([axis], np.int64))],
                      keepdims=0)
    return b.node("ReduceMean", [x], axes=[axis], keepdims=0)


def _reduce_sum(b: _Builder, x: str, axis: int, out: str | None = None) -> str:
    if b.opset >= 13:
        return b.node("ReduceSum", [x, b.const(b.fresh("axes"), np.array([axis], np.int64))],
                      [out] if out else None, keepdims=0)
    return b.node("ReduceSum", [x], [out] if out else None, axes=[axis], keepdims=0)


def _wide_product(b: _Builder, op: MatrixOp, x: str, parts: list[tuple[np.ndarray, Tile, float]],
                  lo: int, hi: int, out: str | None = None) -> str:
    """x restricted to crossbar rows [lo, hi) times the tiles' blocks side by side: part j is
    (weight, tile, scale), its block the tile's rows of weight x scale, zero elsewhere (only rows
    lo..hi are built). Conv rows are (channel, kernel) pairs: the input is cut on whole channels
    and the partial channels at the edges keep zero kernel rows."""
    nb = len(parts)
    attrs = dict(op.attrs)
    if lo == 0 and hi >= op.rows:
        xs, r0, r1 = x, 0, op.rows
    elif op.kind == "conv":
        kk = int(np.prod(op.attrs["kernel_shape"]))
        c0, c1 = lo // kk, -(-hi // kk)
        r0, r1 = c0 * kk, c1 * kk
        xs = b.node("Slice", [x, b.const(b.fresh("s"), np.array([c0], np.int64)),
                              b.const(b.fresh("e"), np.array([c1], np.int64)),
                              b.const(b.fresh("a"), np.array([1], np.int64))])
    else:
        r0, r1 = lo, hi
        axis = 0 if op.kind == "gemm" and op.attrs.get("trans_input") else -1
        xs = b.node("Slice", [x, b.const(b.fresh("s"), np.array([lo], np.int64)),
                              b.const(b.fresh("e"), np.array([hi], np.int64)),
                              b.const(b.fresh("a"), np.array([axis], np.int64))])
    n = op.cols
    w0, tile0, scale0 = parts[0]
    if nb == 1 and scale0 == 1.0 and (r0, r1) == (0, op.rows) and w0.dtype == np.float32 \
            and tile0 == ((0, 0, op.rows),):
        wide = w0  # the whole weight: no copy
    else:
        wide = np.empty((r1 - r0, nb * n), np.float32)
        for j, (w, tile, scale) in enumerate(parts):
            wide[:, j * n:(j + 1) * n] = tile_rows(op, w, tile, r0, r1, scale)
    if op.kind == "conv":
        attrs["out_channels"] = nb * op.cols
    elif op.kind == "matmul":
        attrs["weight_shape"] = [r1 - r0, nb * op.cols]
    wop = op.replace(weight=wide, bias=None, attrs=attrs)
    return _emit_product(b, wop, xs, wide, out or b.fresh(op.name + "_stack"), with_bias=False)


def _stacked(b: _Builder, op: MatrixOp, x: str, blocks: list[tuple[np.ndarray, Tile]],
             steps: "tuple[float, ...] | list[float] | None", mults: list[float],
             levels: int, in_scale: float = 1.0, probe: str | None = None) -> str:
    """sum_j mults[j] * ADC_j(in_scale * x @ block_j) with all blocks in one product per row
    range; block j is (weight, tile): the tile's rows of the weight (`tile_rows`).

    ``steps[j]`` is block j's ADC step (None: no ADC). The input scale and the ADC steps are
    folded into the weights (the product gives ADC units directly). Returns the op's output
    (no bias)."""
    nb, n = len(blocks), op.cols
    fold = np.full(nb, in_scale, np.float64)
    if steps is not None:
        fold = fold / np.maximum(np.asarray(steps, np.float64), 1e-30)
    row_ranges = [_tile_range(tl) for _, tl in blocks]
    # one product per row range on its slice of the input (no multiplications by zero)
    products = []
    j = 0
    while j < nb:
        lo, hi = row_ranges[j]
        k = j
        while k < nb and row_ranges[k] == (lo, hi):
            k += 1
        products.append(_wide_product(b, op, x, [(w, tl, float(f)) for (w, tl), f
                                                 in zip(blocks[j:k], fold[j:k])], lo, hi))
        j = k
    y = products[0] if len(products) == 1 else b.node(
        "Concat", products, axis=1 if op.kind == "conv" else -1)
    out_shape = list(b.shapes[op.outputs[0]])
    mult = np.repeat(np.asarray(mults, np.float64), n)
    # 0 in a Reshape shape copies that input dim: the batch stays free (batched evaluation)
    if op.kind == "conv":
        vshape = [1, nb * n] + [1] * (len(out_shape) - 2)
        split = [0, nb, n] + out_shape[2:]
        axis = 1
    else:
        vshape = [nb * n]
        split = [0] * (len(out_shape) - 1) + [nb, n]
        axis = len(split) - 2
    if probe is not None:  # max |partial sum| per tile (no ADC yet: y is in the op's units)
        assert steps is None and all(m == 1.0 for m in mults)
        if op.kind == "conv":
            by_tile = b.node("Reshape", [b.node("Abs", [y]), b.const(
                b.fresh("pshape"), np.array([0, nb, -1], np.int64))])
            axes = [2]
        else:
            by_tile = b.node("Reshape", [b.node("Abs", [y]), b.const(
                b.fresh("pshape"), np.array([0, -1, nb, n], np.int64))])
            axes = [1, 3]
        if b.opset >= 18:
            b.node("ReduceMax", [by_tile, b.const(b.fresh("axes"), np.array(axes, np.int64))],
                   [probe], keepdims=0)
        else:
            b.node("ReduceMax", [by_tile], [probe], axes=axes, keepdims=0)
        b.probes.append(probe)
    if steps is not None:  # ADC codes, then back to units: one (step x weight) per column
        step = np.repeat(np.asarray(steps, np.float64), n)
        lo_c = b.const(b.fresh(op.name + "_adclo"), np.float32(-levels))
        hi_c = b.const(b.fresh(op.name + "_adchi"), np.float32(levels))
        y = b.rint_clip(b.adc_codes(y, levels), lo_c, hi_c, levels)
        y = b.node("Mul", [y, b.const(b.fresh(op.name + "_adcstep"),
                                      (mult * step).reshape(vshape).astype(np.float32))])
        mult = np.ones(1)
    else:
        mult = mult / np.repeat(fold, n) * in_scale
    if not np.all(mult == 1.0):
        if np.all(mult == mult[0]):
            mvec = np.asarray(mult[0], np.float32)
        else:
            mvec = mult.reshape(vshape).astype(np.float32)
        y = b.node("Mul", [y, b.const(b.fresh(op.name + "_mult"), mvec)])
    if nb == 1:
        return y
    y = b.node("Reshape", [y, b.const(b.fresh(op.name + "_split"), np.array(split, np.int64))])
    return _reduce_sum(b, y, axis)


def _column_shape(op: MatrixOp) -> list[int] | None:
    """Broadcast shape putting a per-column vector on the op's output, or None when columns
    are not one output axis (conv_transpose, batched constant matmuls)."""
    if op.kind == "conv":
        return [1, op.cols] + [1] * len(op.attrs["kernel_shape"])
    if op.groups > 1 or op.kind == "conv_transpose":
        return None
    if op.kind == "matmul_left":
        return [op.cols, 1]
    return [op.cols]


def _emit_bitwise(b: _Builder, op: MatrixOp, sim: OpSim) -> None:
    """Bit-accurate product: input planes x weight slices per row tile, ADC on each."""
    x, out = op.inputs[0], op.outputs[0]
    assert sim.slices is not None and sim.act_step is not None and sim.col_scale is not None
    scale = np.asarray(sim.col_scale, np.float64)
    cshape = _column_shape(op)
    slices = list(sim.slices)
    if cshape is None:  # columns are not an output axis: fold the step into the digits
        slices = [d * scale[None, :] for d in slices]
    # integer input codes, then planes
    s = b.const(b.fresh(op.name + "_xstep"), np.float32(sim.act_step))
    code = b.rint_clip(b.node("Div", [x, s]),
                       b.const(b.fresh(op.name + "_lo"), np.float32(sim.act_lo)),
                       b.const(b.fresh(op.name + "_hi"), np.float32(sim.act_hi)),
                       max(abs(sim.act_lo), abs(sim.act_hi)))
    planes: list[tuple[str, float]] = []
    if sim.plane_bits is None:  # PWM: one read of the whole (signed) code
        planes.append((code, 1.0))
    else:
        d = sim.plane_bits
        signed = sim.act_lo < 0
        cu = code
        if signed:  # two's complement: code = cu - 2^b [code < 0]
            neg = b.node("Cast", [b.node("Less", [code, b.const(b.fresh("zero"), np.float32(0))])],
                         to=onnx.TensorProto.FLOAT)
            cu = b.node("Add", [code, b.node("Mul", [neg, b.const(b.fresh("two_b"),
                                                                  np.float32(2.0 ** sim.in_bits))])])
        n_planes = -(-sim.in_bits // d)
        prev = None
        for i in range(n_planes + 1):
            f = b.node("Floor", [b.node("Div", [cu, b.const(b.fresh("p"), np.float32(2.0 ** (d * i)))])])
            if prev is not None:
                digit = b.node("Sub", [prev, b.node("Mul", [f, b.const(b.fresh("r"), np.float32(2.0 ** d))])])
                planes.append((digit, 2.0 ** (d * (i - 1))))
            prev = f
        if signed:
            planes.append((neg, -(2.0 ** sim.in_bits)))
    tiles = _op_tiles(op, sim)
    n_tiles = len(tiles)
    terms = []
    if not sim.probe and _stackable(b, op):
        for plane, pw in planes:
            blocks: list[tuple[np.ndarray, Tile]] = []
            steps: list[float] = []
            mults: list[float] = []
            for t in range(n_tiles):
                for si, dig in enumerate(slices):
                    blocks.append((dig, tiles[t]))
                    if sim.adc_steps is not None:
                        steps.append(sim.adc_steps[t])
                    mults.append(pw * float(sim.slice_base) ** si)
            terms.append(_stacked(b, op, plane, blocks,
                                  None if sim.adc_steps is None else steps, mults, sim.adc_levels))
            if sim.offset:  # the offset scheme's reference, subtracted digitally (exact)
                ref = np.full(slices[0].shape, -float(sim.offset) * pw, np.float32)
                terms.append(_emit_product(b, op, plane, ref, b.fresh(op.name + "_ref"),
                                           with_bias=False))
        n_tiles = 0  # done
    k = 0
    for t in range(n_tiles):
        for plane, pw in planes:
            for si, dig in enumerate(slices):
                wt = _tile_weight(op, dig, tiles[t])
                y = _emit_product(b, op, plane, wt, b.fresh(op.name + "_part"), with_bias=False)
                if sim.probe:
                    _emit_probe(b, y, probe_name(op.name, t, k))
                k += 1
                if sim.adc_steps is not None:
                    y = b.adc(y, sim.adc_steps[t], sim.adc_levels, op.name + f"_adc{t}")
                w = pw * float(sim.slice_base) ** si
                terms.append(b.node("Mul", [y, b.const(b.fresh("w"), np.float32(w))]))
            if sim.offset:  # the offset scheme's reference, subtracted digitally (exact)
                ref = _tile_weight(op, np.full(dig.shape, -float(sim.offset), np.float32),
                                   tiles[t])
                if cshape is None:
                    ref = ref * scale[None, :].astype(np.float32)
                y = _emit_product(b, op, plane, ref, b.fresh(op.name + "_ref"), with_bias=False)
                terms.append(b.node("Mul", [y, b.const(b.fresh("w"), np.float32(pw))]))
    acc = terms[0] if len(terms) == 1 else b.node("Sum", terms)
    if cshape is not None:
        colc = b.const(b.fresh(op.name + "_colstep"),
                       (scale * sim.act_step).reshape(cshape).astype(np.float32))
    else:
        colc = b.const(b.fresh(op.name + "_xstep2"), np.float32(sim.act_step))
    _emit_bias(b, op, b.node("Mul", [acc, colc]), out)


def _emit_bias(b: _Builder, op: MatrixOp, acc: str, out: str) -> None:
    if op.bias is None:
        b.node("Identity", [acc], [out])
        return
    bias = op.bias
    if op.kind in ("conv", "conv_transpose"):
        cshape = [1, bias.size] + [1] * len(op.attrs["kernel_shape"])
        bias_c = b.const(b.fresh(op.name + "_B"), bias.reshape(cshape).astype(np.float32))
    else:
        bias_c = b.const(b.fresh(op.name + "_B"),
                         (bias[:op.cols_per_group] if op.groups > 1 else bias).astype(np.float32))
    b.node("Add", [acc, bias_c], [out])


def _batch_free_reshape(b: _Builder, op: DigitalOp) -> DigitalOp:
    """A Reshape to a constant shape that starts with the batch of 1 of its input gets 0 there
    ("copy the input's dim"): the same function at batch 1, and it lets the emitted model run
    batched. (The evaluation checks batched against one-by-one outputs before using it.)"""
    if op.op_type != "Reshape" or len(op.inputs) < 2 or op.attrs.get("allowzero", 0):
        return op
    shape = op.constants.get(op.inputs[1])
    x = b.shapes.get(op.inputs[0])
    if shape is None or x is None or shape.ndim != 1 or not len(shape) or not len(x):
        return op
    if int(shape[0]) != 1 or x[0] != 1:
        return op
    new = np.array(shape, np.int64)
    new[0] = 0
    name = b.fresh(op.inputs[1] + "_batchfree")
    return op.replace(inputs=(op.inputs[0], name) + tuple(op.inputs[2:]),
                      constants={**{k: v for k, v in op.constants.items() if k != op.inputs[1]},
                                 name: new})


def _emit_digital(b: _Builder, op: DigitalOp) -> None:
    for name, value in op.constants.items():
        b.const(name, value)
    attrs = {}
    for k, v in op.attrs.items():
        attrs[k] = numpy_helper.from_array(v) if isinstance(v, np.ndarray) else v
    b.nodes.append(helper.make_node(op.op_type, list(op.inputs), list(op.outputs), name=op.name,
                                    **attrs))


def _dtype(name: str) -> int:
    return helper.np_dtype_to_tensor_dtype(np.dtype(name))


# Tensors of the emitted model at most this big in total go into its protobuf; beyond it the
# largest float tensors are left out and fed to onnxruntime with every run (`Emitted.feeds`),
# from the arrays themselves: a protobuf holds at most 2 GB, and every copy of a weight (proto,
# serialized bytes, onnxruntime's own) costs its size again.
INLINE_BYTES = 64 << 20
FEED_MIN_BYTES = 1 << 20  # smaller tensors always stay in the protobuf
SAVE_ONE_FILE_BYTES = (2 << 30) - (64 << 20)  # a saved model this big gets external data


@dataclass(frozen=True)
class Emitted:
    """An emitted model in two parts: ``model`` holds the graph and the small tensors; the
    tensors in ``feeds`` (the big float ones, and with ``feed_params`` every crossbar tensor)
    are graph inputs of ``model``, fed with every run (onnxruntime reads the arrays in place).
    `full` is the one self-contained model (for saving, ``--emit``)."""

    model: onnx.ModelProto
    feeds: dict[str, np.ndarray]
    probes: list[str]

    @property
    def structure(self) -> bytes:
        """The serialized protobuf (graph and inline tensors): models with equal structures
        differ only in the values fed, and can run in one onnxruntime session."""
        return self.model.SerializeToString()

    @property
    def data_inputs(self) -> list[str]:
        return [i.name for i in self.model.graph.input if i.name not in self.feeds]

    def full(self) -> onnx.ModelProto:
        """The model with every tensor an initializer (a copy; under 2 GB of tensors)."""
        if not self.feeds:
            return self.model
        m = onnx.ModelProto()
        m.CopyFrom(self.model)
        keep = [i for i in m.graph.input if i.name not in self.feeds]
        del m.graph.input[:]
        m.graph.input.extend(keep)
        m.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in self.feeds.items())
        return m

    @property
    def nbytes(self) -> int:
        return sum(int(v.nbytes) for v in self.feeds.values()) + self.model.ByteSize()

    def save(self, path: str, location: str | None = None) -> list[str]:
        """Write the model to ``path``: one file under 2 GB, else with its big tensors as ONNX
        external data in the file ``location`` beside it (default: its name + ".data"), written
        from the arrays (no protobuf copy). Returns the files written."""
        import os

        if self.nbytes < SAVE_ONE_FILE_BYTES:
            onnx.save(self.full(), path)
            return [path]
        data = location or os.path.basename(path) + ".data"
        data_path = os.path.join(os.path.dirname(path), data)
        m = onnx.ModelProto()
        m.CopyFrom(self.model)
        keep = [i for i in m.graph.input if i.name not in self.feeds]
        del m.graph.input[:]
        m.graph.input.extend(keep)
        offset = 0
        with open(data_path, "wb") as f:
            for name, arr in self.feeds.items():
                pad = -offset % 4096  # page-aligned, so onnxruntime can map it
                f.write(b"\0" * pad)
                offset += pad
                t = TensorProto(name=name, data_type=_dtype(str(arr.dtype)), dims=arr.shape)
                t.data_location = TensorProto.EXTERNAL
                for k, v in (("location", data), ("offset", str(offset)),
                             ("length", str(arr.nbytes))):
                    e = t.external_data.add()
                    e.key, e.value = k, v
                m.graph.initializer.append(t)
                f.write(np.ascontiguousarray(arr).tobytes())  # one tensor at a time
                offset += arr.nbytes
        with open(path, "wb") as f:
            f.write(m.SerializeToString())
        return [path, data_path]


def emit(graph: Graph, sims: Mapping[str, OpSim] | None = None, *,
         extra_outputs: tuple[str, ...] = ()) -> tuple[onnx.ModelProto, list[str]]:
    """Emit the graph as ONNX. With ``sims`` (op name -> OpSim) emit the simulation model.

    Returns the model (self-contained) and the names of probe outputs (row-tile partial sums)
    it exposes. `emit_parts` gives the same model with its big tensors left out.
    """
    e = emit_parts(graph, sims, extra_outputs=extra_outputs)
    return e.full(), e.probes


def emit_parts(graph: Graph, sims: Mapping[str, OpSim] | None = None, *,
               extra_outputs: tuple[str, ...] = (), inline_bytes: int | None = None,
               feed_params: bool = False, ranges: tuple[str, ...] = ()) -> Emitted:
    """`emit`, with the largest float tensors beyond ``inline_bytes`` (default `INLINE_BYTES`)
    of tensor data left out of the protobuf as fed graph inputs (`Emitted`). ``sims`` is read
    once per matrix op, in graph order (it may make each OpSim when asked).

    ``feed_params``: also feed every float tensor of the crossbar layers, whatever its size
    (weights, DAC and ADC steps and clip bounds, column scales, biases): the protobuf then
    holds the structure only, the same for every noise seed and for every trial that changes
    values only (weight bits, pruning, ADC bits), so one onnxruntime session serves them all
    (`Emitted.structure`).

    ``ranges``: tensors whose per-sample max |x| and min x become outputs ``range_names(x)``
    (the float model's activation ranges, computed inside onnxruntime)."""
    if sims and graph.opset < SIM_MIN_OPSET:
        raise ModelImportError(
            f"{graph.name}: the hardware simulation (--data) emits Round and Clip with bounds as "
            f"inputs, which need ONNX opset >= {SIM_MIN_OPSET}; the model declares opset "
            f"{graph.opset}. Convert it first, e.g. onnx.version_converter.convert_version(model, 17)")
    b = _Builder(shapes={k: v.shape for k, v in graph.tensors.items()}, opset=graph.opset)
    seen_consts: set[str] = set()
    params: set[str] = set()  # the crossbar layers' float tensors
    for op in graph.ops:
        if isinstance(op, MatrixOp):
            before = set(b.arrays) if feed_params else set()
            _emit_matrix(b, op, sims.get(op.name) if sims else None)
            if feed_params:
                params.update(k for k in b.arrays if k not in before)
        else:
            op = _batch_free_reshape(b, op)
            fresh = {k: v for k, v in op.constants.items() if k not in seen_consts}
            seen_consts.update(op.constants)
            _emit_digital(b, op.replace(constants=fresh))
    range_outs = []
    for x in ranges:
        hi, lo = range_names(x)
        range_outs += [sample_reduce(b, "ReduceMax", b.node("Abs", [x]), hi),
                       sample_reduce(b, "ReduceMin", x, lo)]
    limit = INLINE_BYTES if inline_bytes is None else inline_bytes
    big = sorted((k for k, v in b.arrays.items()
                  if v.dtype.kind == "f" and v.nbytes >= FEED_MIN_BYTES),
                 key=lambda k: (-b.arrays[k].nbytes, k))
    total = sum(v.nbytes for v in b.arrays.values())
    feeds: dict[str, np.ndarray] = {k: np.ascontiguousarray(v)
                                    for k, v in b.arrays.items()
                                    if k in params and v.dtype.kind == "f"}
    total -= sum(v.nbytes for v in feeds.values())
    for k in big:
        if k in feeds:
            continue
        if total <= limit:
            break
        feeds[k] = np.ascontiguousarray(b.arrays[k])
        total -= b.arrays[k].nbytes
    inputs = [helper.make_tensor_value_info(n, _dtype(graph.tensors[n].dtype), list(graph.tensors[n].shape))
              for n in graph.inputs]
    inputs += [helper.make_tensor_value_info(k, _dtype(str(v.dtype)), list(v.shape))
               for k, v in feeds.items()]
    outs = [helper.make_tensor_value_info(n, _dtype(graph.tensors[n].dtype), list(graph.tensors[n].shape))
            for n in graph.outputs]
    for n in list(extra_outputs) + b.probes + range_outs:
        if n not in graph.outputs:
            outs.append(helper.make_tensor_value_info(n, TensorProto.FLOAT, None))
    inits = [numpy_helper.from_array(v, k) for k, v in b.arrays.items() if k not in feeds]
    g = helper.make_graph(b.nodes, graph.name, inputs, outs, inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", graph.opset)],
                              producer_name="imccompile")
    model.ir_version = min(model.ir_version, 10)
    return Emitted(model, feeds, list(b.probes))
