"""The read-out chain as aihwkit's analog tile models it: per-vector input scaling, read-out noise,
output bound, and drift compensation as a digital gain from a reference read.

Laws (aihwkit 1.2.0, ``simulator/tiles/analog_mvm.py``, ``simulator/parameters/io.py``,
``inference/compensation/drift.py``, ``simulator/tiles/inference.py``):

* **Input scaling** (``dac.input_scaling = "abs_max"``, aihwkit noise_management ABS_MAX): every
  input vector x is divided by s = max |x| (s = 1 for an all-zero vector) before the DAC, which
  then quantizes x / s in [-1, 1]; the output is multiplied by s digitally after the ADC.
* **Output bound** (``adc.out_bound``, aihwkit out_bound): the ADC's full-scale range is
  ``out_bound x U``, U the output of one device at g_max driven at the full DAC input, i.e. the
  layer's largest weight times the DAC's full-scale input (`bound_steps`). Partial sums beyond it
  clip. aihwkit's bound management (re-reading a clipped vector with its input halved) is not
  modelled: a clipped output stays clipped.
* **Read-out noise** (``adc.read_noise``, aihwkit out_noise / out_bound): every ADC read adds a
  Gaussian of std ``read_noise x full scale`` before it is quantized and clipped (aihwkit:
  noise, then rounding, then the clip).
* **Drift compensation** (aihwkit GlobalDriftCompensation): one-hot inputs (an identity matrix)
  read every row of the arrays through the DAC, the read-out noise and the ADC, once as
  programmed (t0) and once at t; the gain mean |read(t0)| / mean |read(t)| multiplies the
  layer's output digitally after the ADC (`drift_gain`), the weights themselves stay drifted.

Only numpy here; `emit` builds the ONNX nodes with `input_scale_nodes` and `adc_noise_node`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from imccompile.emit import _Builder
    from imccompile.ir import MatrixOp

Tile = tuple[tuple[int, int, int], ...]

#: the axis of a layer's (lowered) input that holds its input vectors, by kind (abs_max
#: scaling); a conv's vectors are its patches, unfolded onto the channel axis (`unfold_conv`)
VECTOR_AXIS = {"gemm": -1, "matmul": -1, "matmul_left": -2, "conv": 1}


def scales_vectors(op: "MatrixOp") -> bool:
    """Per-vector input scaling can be built for this layer (a conv of one group)."""
    return op.kind in VECTOR_AXIS and (op.kind != "conv" or op.groups == 1)


def bound_steps(out_bound: float, w_max: float, x_full: float, levels: int,
                n_tiles: int) -> tuple[float, ...]:
    """ADC step of every row tile when the full-scale range is ``out_bound`` device units:
    ``out_bound x w_max x x_full / levels`` (w_max: the weight programmed at g_max; x_full: the
    DAC's full-scale input)."""
    step = out_bound * w_max * x_full / levels
    return (max(step, 1e-30),) * n_tiles


def adc_read(values: np.ndarray, step: float, levels: int, noise: float,
             rng: np.random.Generator | None) -> np.ndarray:
    """What one ADC returns for partial sums ``values``: read-out noise of std ``noise`` x full
    scale (``levels x step``) added, rounded to the step, clipped at +-levels steps."""
    codes = values / step
    if noise > 0 and rng is not None:
        codes = codes + noise * levels * rng.standard_normal(values.shape)
    return np.clip(np.rint(codes), -levels, levels) * step


def reference_read(op: "MatrixOp", w: np.ndarray, tiles: tuple[Tile, ...], x_full: float,
                   steps: tuple[float, ...] | None, levels: int, noise: float,
                   rng: np.random.Generator | None) -> float:
    """mean |output| of the one-hot reference read of weights ``w`` (K, N): each row of each row
    tile driven alone at the DAC's full-scale input ``x_full``, its columns read through the ADC
    of that tile (``steps`` None: no ADC, exact)."""
    total, count = 0.0, 0
    npg = op.cols_per_group
    for t, tile in enumerate(tiles):
        for g, lo, hi in tile:
            values = x_full * w[lo:hi, g * npg:(g + 1) * npg].astype(np.float64)
            if steps is not None:
                values = adc_read(values, steps[t], levels, noise, rng)
            total += float(np.abs(values).sum())
            count += values.size
    return total / count if count else 0.0


def drift_gain(op: "MatrixOp", w0: np.ndarray, w_t: np.ndarray, tiles: tuple[Tile, ...],
               x_full: float, steps: tuple[float, ...] | None, levels: int, noise: float,
               rng: np.random.Generator | None) -> float:
    """Global drift compensation: the reference read as programmed over the read at t (each
    with its own read-out noise); 1 when the read at t gives nothing (aihwkit clamps the read
    at 1e-4 instead; an all-zero layer has nothing to compensate)."""
    ref0 = reference_read(op, w0, tiles, x_full, steps, levels, noise, rng)
    ref_t = reference_read(op, w_t, tiles, x_full, steps, levels, noise, rng)
    return ref0 / ref_t if ref_t > 0 else 1.0


# -- ONNX nodes (built by imccompile.emit) ------------------------------------------------------

def unfold_conv(b: "_Builder", op: "MatrixOp", x: str) -> tuple[str, "MatrixOp"]:
    """The patches of a (one-group) conv's input and the layer as a 1x1 conv over them.

    A depthwise ONNX Conv with one-hot kernels (its weights: C kk values) puts input channel c
    at kernel offset j on channel c kk + j, row c kk + j of W (the frontend's (C, k...) row
    order); its geometry (pads, strides, dilations, auto_pad) is the layer's, so channel r of
    the patch map at an output position is crossbar row r of that output's input vector."""
    ks = [int(k) for k in op.attrs["kernel_shape"]]
    kk = int(np.prod(ks))
    c = op.rows // kk
    eye = np.zeros((c * kk, 1, *ks), np.float32)
    for j, idx in enumerate(np.ndindex(*ks)):
        eye[(slice(j, None, kk), 0) + idx] = 1.0
    geometry = {k: v for k, v in op.attrs.items()
                if k in ("auto_pad", "dilations", "pads", "strides")}
    patches = b.node("Conv", [x, b.const(b.fresh(op.name + "_unfold"), eye)], group=c,
                     kernel_shape=ks, **geometry)
    nd = len(ks)
    attrs = {k: v for k, v in op.attrs.items() if k not in ("auto_pad", "group")}
    attrs.update(kernel_shape=[1] * nd, strides=[1] * nd, dilations=[1] * nd, pads=[0] * (2 * nd),
                 in_channels=c * kk)
    return patches, op.replace(inputs=(patches,) + tuple(op.inputs[1:]), attrs=attrs)


def input_scale_nodes(b: "_Builder", op: "MatrixOp", x: str) -> tuple[str, str]:
    """(x / s, s) with s = max |x| over each input vector (1 where the vector is all zero),
    s shaped to multiply the op's output."""
    trans = op.kind == "gemm" and bool(op.attrs.get("trans_input"))
    axis = 0 if trans else VECTOR_AXIS[op.kind]
    a = b.node("Abs", [x])
    if b.opset >= 18:
        m = b.node("ReduceMax", [a, b.const(b.fresh("axes"), np.array([axis], np.int64))],
                   keepdims=1)
    else:
        m = b.node("ReduceMax", [a], axes=[axis], keepdims=1)
    zero = b.const(b.fresh(op.name + "_nm0"), np.float32(0.0))
    one = b.const(b.fresh(op.name + "_nm1"), np.float32(1.0))
    s = b.node("Where", [b.node("Greater", [m, zero]), m, one])
    xs = b.node("Div", [x, s])
    if trans:  # s is (1, M) over the columns of A; the output is (M, N)
        s = b.node("Transpose", [s], perm=[1, 0])
    return xs, s


def adc_noise_node(b: "_Builder", y: str, sigma: float, seed: int) -> str:
    """y plus a fresh Gaussian of std ``sigma`` per element and per run (read-out noise)."""
    n = b.node("RandomNormalLike", [y], mean=0.0, scale=float(sigma), seed=float(seed))
    return b.node("Add", [y, n])
