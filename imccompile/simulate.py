"""Accuracy under the hardware: calibrate, build the simulation model, run it, score it.

Steps (all on the user's data):
1. the float model (ideal emission) gives the reference outputs and every crossbar input;
2. DAC scales: per layer, max |x| (or a percentile) of its input; unsigned when x >= 0;
3. weights: per-column symmetric quantization to the layer's bits, pruning mask applied;
4. ADC ranges: per layer and ADC row group of its layout (imccompile.layout: the rows the
   arrays sum over, the same tiles the cost model prices and the program image places), max
   |partial sum| of the noise-free quantized model (``adc_range="calibrated"``) or the worst
   case rows x max|x| x max|w| (``"full_scale"``);
5. per seed: device noise drawn on the conductances, the simulation model emitted and run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from collections.abc import Mapping as MappingABC
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping

import numpy as np

from imccompile import metrics, sessions
from imccompile.emit import (TILES_PROBE, Emitted, OpSim, emit_parts, probe_tile, range_names,
                             tile_colsum_max, whole_tile)
from imccompile.errors import DataError, ModelImportError
from imccompile.ir import Graph, MatrixOp
from imccompile.layout import LayerLayout, adc_levels, dac_quantizer, layer_bits, layer_layout
from imccompile.noise import device_codes, noisy_slices, quantize_columns, slice_digits
from imccompile.readout import bound_steps, drift_gain, scales_vectors

if TYPE_CHECKING:
    from imccompile.mapper import Mapping as ChipMapping
    from imccompile.result import CompileResult


@dataclass(frozen=True)
class SimOptions:
    """What the simulation includes. The defaults are the target's hardware as specified."""

    noise: bool = True
    adc: bool = True
    dac: bool = True
    weights: bool = True
    adc_range: Literal["calibrated", "full_scale"] = "calibrated"  # unless adc.out_bound fixes it
    act_percentile: float | None = None  # None: max
    t_inference_s: float | None = None
    bit_accurate: bool = False  # split by input cycle and weight slice, ADC on each partial

    def __post_init__(self) -> None:
        from imccompile.errors import UsageError

        for name in ("noise", "adc", "dac", "weights", "bit_accurate"):
            if not isinstance(getattr(self, name), bool):
                raise UsageError(f"SimOptions.{name} {getattr(self, name)!r}: expected True or "
                                 "False")
        if self.adc_range not in ("calibrated", "full_scale"):
            raise UsageError(f"SimOptions.adc_range {self.adc_range!r} (--adc-range): expected "
                             "calibrated or full_scale")
        for name, low in (("act_percentile", 0.0), ("t_inference_s", 0.0)):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or not math.isfinite(v) or v < low
                                  or (name == "act_percentile" and not 0 < v <= 100)):
                raise UsageError(f"SimOptions.{name} {v!r}: expected None or a finite number "
                                 + ("in (0, 100]" if name == "act_percentile" else ">= 0"))
        if self.bit_accurate and not (self.dac and self.weights):
            raise DataError("bit-accurate simulation needs quantized inputs and weights "
                            "(it works on their integer codes): keep dac and weights on")


@dataclass(frozen=True)
class Dataset:
    """Samples as feed dicts (one per run) and optional labels per sample."""

    feeds: list[dict[str, np.ndarray]]
    labels: np.ndarray | None
    source: str


def load_data(data: str | os.PathLike[str] | Mapping[str, np.ndarray], graph: Graph,
              limit: int | None = None) -> Dataset:
    """Read an .npz (or dict) holding arrays by input name and optional ``labels``.

    An array whose shape is the input's shape is one sample; one with an extra leading axis, or
    whose leading axis replaces a batch of 1, is a set of samples run one by one.
    """
    src = str(data) if not isinstance(data, Mapping) else "<data>"
    if isinstance(data, Mapping):
        arrays = dict(data)
    else:
        try:
            with np.load(data, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except FileNotFoundError:
            raise DataError(f"{src}: no such file") from None
        except Exception as e:
            raise DataError(f"{src}: not a readable .npz file ({type(e).__name__}: {e})") from None
    labels = arrays.pop("labels", None)
    missing = [n for n in graph.inputs if n not in arrays]
    if missing:
        raise DataError(f"{src}: no array for input(s) {', '.join(missing)} "
                        f"(arrays: {', '.join(sorted(arrays)) or 'none'})")
    extra = sorted(k for k in arrays if k not in graph.inputs)
    if extra:
        raise DataError(f"{src}: unknown array(s) {', '.join(map(repr, extra))}; accepted: the "
                        f"model's inputs {', '.join(map(repr, graph.inputs))} and 'labels'")
    per_input: dict[str, list[np.ndarray]] = {}
    for name in graph.inputs:
        info = graph.tensors[name]
        arr = _numeric(src, f"array {name!r}", arrays[name])
        want = tuple(info.shape)
        if arr.shape == want:
            samples = [arr]
        elif arr.shape[1:] == want:
            samples = list(arr)
        elif want and want[0] == 1 and arr.shape[1:] == want[1:]:
            samples = [a[None] for a in arr]
        else:
            raise DataError(f"{src}: array {name!r} has shape {list(arr.shape)}; the model's input "
                            f"is {list(want)} (give one sample of that shape, or a stack of them)")
        if not samples:
            raise DataError(f"{src}: array {name!r} holds 0 samples (shape {list(arr.shape)}); "
                            "give at least one")
        if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            raise DataError(f"{src}: array {name!r} holds NaN or Inf values")
        kind = np.dtype(info.dtype).kind
        if kind in "iu":
            _check_integers(src, name, arr, np.dtype(info.dtype), _gather_tables(graph, name))
        per_input[name] = [s.astype(info.dtype, copy=False) for s in samples]
    counts = {len(v) for v in per_input.values()}
    if len(counts) != 1:
        raise DataError(f"{src}: inputs hold different numbers of samples: "
                        + ", ".join(f"{k}={len(v)}" for k, v in per_input.items()))
    total = counts.pop()
    n = total if limit is None else min(total, limit)
    if n < 1:
        raise DataError(f"{src}: no samples selected (--samples {limit}); give at least 1")
    feeds = [{k: v[i] for k, v in per_input.items()} for i in range(n)]
    if labels is not None:
        labels = _check_labels(src, labels, graph, total, n)
    return Dataset(feeds, labels, src)


def _numeric(src: str, what: str, value: Any) -> np.ndarray:
    """``value`` as an array of real numbers (bool, integer or float); others are refused."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        accepted = ("integer class ids" if what == "'labels'" else
                    "real numbers (float, integer or bool)")
        kind = _KINDS.get(arr.dtype.kind, "not numbers")
        raise DataError(f"{src}: {what} has dtype {arr.dtype} ({kind}); accepted: {accepted}")
    return arr


_KINDS = {"U": "text", "S": "bytes", "O": "Python objects", "M": "dates", "m": "time spans",
          "c": "complex numbers", "V": "raw records"}


def _integral(arr: np.ndarray) -> np.ndarray:
    """The elements of a float array that are not whole numbers (NaN and Inf included)."""
    with np.errstate(invalid="ignore"):
        return arr[~(np.isfinite(arr) & (np.floor(arr) == arr))]


def _gather_tables(graph: Graph, name: str) -> list[tuple[str, int]]:
    """(node, rows) of each Gather that indexes a constant table with ``name`` (directly or
    through Cast / Reshape / Squeeze / Unsqueeze / Flatten / Identity)."""
    names = {name}
    tables = []
    for op in graph.digital_ops:
        if not op.inputs:
            continue
        if op.op_type in ("Cast", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity") \
                and op.inputs[0] in names:
            names.update(op.outputs)
        elif op.op_type == "Gather" and len(op.inputs) > 1 and op.inputs[1] in names:
            table = op.constants.get(op.inputs[0])
            if table is not None and table.ndim:
                axis = int(op.attrs.get("axis", 0)) % table.ndim
                tables.append((op.name, int(table.shape[axis])))
    return tables


def _check_integers(src: str, name: str, arr: np.ndarray, dtype: np.dtype,
                    tables: list[tuple[str, int]]) -> None:
    """Values for an integer input: whole numbers, within the dtype, within every embedding
    table the input indexes (ids -rows..rows-1, as ONNX Gather takes them)."""
    if arr.size == 0:
        return
    if arr.dtype.kind == "f":
        bad = _integral(arr)
        if bad.size:
            raise DataError(f"{src}: array {name!r} holds fractional values (e.g. {bad.flat[0]}) "
                            f"for the integer ({dtype}) input; accepted: whole numbers")
    info = np.iinfo(dtype)
    lo, hi = arr.min(), arr.max()
    if lo < info.min or hi > info.max:
        raise DataError(f"{src}: array {name!r} holds {lo if lo < info.min else hi}, outside the "
                        f"input's {dtype} range {info.min}..{info.max}")
    for node, rows in tables:
        if lo < -rows or hi >= rows:
            raise DataError(f"{src}: array {name!r} holds id {hi if hi >= rows else lo}, outside "
                            f"the table of Gather {node!r} ({rows} rows; accepted: "
                            f"0..{rows - 1}, or -{rows}..-1 counted from the end)")


def _check_labels(src: str, value: Any, graph: Graph, total: int, n: int) -> np.ndarray:
    """Labels: integer class ids of the first output, one per prediction (per sample, times the
    output's batch), each in 0..classes-1; the first ``n`` samples' of them."""
    arr = _numeric(src, "'labels'", value)
    out = graph.outputs[0]
    shape = list(graph.tensors[out].shape) if out in graph.tensors else []
    if not metrics.is_class_scores(graph, out):
        raise DataError(f"{src}: 'labels' given, but the first output {out!r} (shape {shape}) "
                        "holds no class scores (a (batch, classes) output of a crossbar layer "
                        "or a Softmax): labels are accepted only for classifiers; drop them to "
                        "score against the float model")
    batch, classes = shape[0], shape[1]
    if arr.size != total * batch:
        raise DataError(f"{src}: 'labels' holds {arr.size} values for {total} sample(s) of "
                        f"{batch} prediction(s) each; accepted: {total * batch} class ids")
    flat = arr.reshape(-1)
    if flat.dtype.kind == "f":
        bad = _integral(flat)
        if bad.size:
            raise DataError(f"{src}: 'labels' holds {bad.flat[0]}; accepted: integer class ids "
                            f"0..{classes - 1}")
    if flat.dtype.kind == "b":
        raise DataError(f"{src}: 'labels' holds booleans; accepted: integer class ids "
                        f"0..{classes - 1}")
    lo, hi = flat.min(), flat.max()
    if lo < 0 or hi >= classes:
        raise DataError(f"{src}: 'labels' holds {lo if lo < 0 else hi}, outside the "
                        f"{classes} classes of output {out!r}; accepted: 0..{classes - 1}")
    return flat.astype(np.int64)[:n * batch]


BATCH = 64  # most samples per onnxruntime call when the model runs batched
# bytes of a model's largest tensor per call that `batch_size` aims at: tensors that large come
# from the allocator's reused heap, not fresh pages (sessions have no arena): measured on 2
# cores, 64 samples: MobileNetV2 at 224^2 15.1 s at 64 per call -> 6.1 s at 1, peak 4.5 GB ->
# 0.34 GB; ResNet-18 for CIFAR 3.9 -> 3.5 s at 16; a MiniLM-size encoder 10.0 -> 6.9 s at 5
BATCH_BYTES = 4 << 20
# samples the input bit activity is measured on (`calibrate` ``activity``): an assumption; the
# activity of a layer is a mean over many input elements per sample, 64 samples settle it
ACTIVITY_SAMPLES = 64


def batch_size(graph: Graph) -> int:
    """Samples per onnxruntime call for a model: as many as keep its largest tensor (per
    sample, float32) within `BATCH_BYTES`, at least 1 and at most `BATCH`."""
    largest = max((int(np.prod(t.shape, dtype=np.int64)) * 4 for t in graph.tensors.values()
                   if t.shape), default=0)
    return int(min(BATCH, max(1, BATCH_BYTES // max(largest, 1))))


def _batched_copy(model, data_inputs: list[str] | None = None) -> Any:
    """The model with a free batch dim, when every data input and declared output has batch 1
    (``data_inputs``: the inputs fed per sample, default all; fed weights keep their shapes).
    The copy is cheap when the big tensors are fed (`emit.Emitted`), not in the protobuf."""
    import onnx

    names = set(data_inputs) if data_inputs is not None else None
    ins = [i for i in model.graph.input if names is None or i.name in names]
    outs = [o for o in model.graph.output if o.type.tensor_type.HasField("shape")]
    def lead(vi) -> int | None:
        d = vi.type.tensor_type.shape.dim
        return d[0].dim_value if len(d) and d[0].HasField("dim_value") else None
    if not ins or any(lead(i) != 1 for i in ins) or any(lead(o) != 1 for o in outs):
        return None
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in [i for i in m.graph.input if names is None or i.name in names] + \
            [o for o in m.graph.output if o.type.tensor_type.HasField("shape")]:
        vi.type.tensor_type.shape.dim[0].dim_param = "batch"
    return m


class Runner:
    """Runs an emitted model over a dataset with onnxruntime.

    Samples of batch 1 run ``batch`` at a time (`batch_size`) when the model allows it: the batch dim is freed and
    the first two samples, run one by one through that model, are checked to give the same
    outputs as run together; otherwise (e.g. a Reshape to a constant shape with batch 1) samples
    run one by one through the model as emitted. The tensors of an `Emitted` model that are
    fed (`Emitted.feeds`) go with every run from their arrays, never into a protobuf; the
    session and the batching decision are those of the model's structure (`imccompile.sessions`:
    a model that differs from an earlier one only in fed values reuses its session).
    ``threads``: onnxruntime intra-op threads."""

    def __init__(self, model, outputs: list[str] | None = None, threads: int = 1,
                 batch: int = BATCH) -> None:
        from imccompile.emit import Emitted

        self.threads = threads
        self.batch = max(1, int(batch))
        if isinstance(model, (bytes, bytearray)):
            self._bytes = bytes(model)
            self._emitted: Emitted | None = None
            names = None
        else:
            self._emitted = model if isinstance(model, Emitted) else Emitted(model, {}, [])
            self._bytes = self._emitted.structure
            names = [o.name for o in self._emitted.model.graph.output]
        self.key = sessions.key_of(self._bytes)
        # read-out noise (RandomNormalLike, seeded from the noise seed) draws from a generator a
        # session keeps across runs: such a model gets sessions of its own, never cached, so
        # that a seed gives the same draws in every run of the simulation
        self._own: dict[str, Any] | None = (
            {} if self._emitted is not None and any(
                n.op_type == "RandomNormalLike" for n in self._emitted.model.graph.node)
            else None)
        self.weights: dict[str, np.ndarray] = self._emitted.feeds if self._emitted else {}
        self._parallel = False  # set by `run`: the calls of this dataset run `_workers` at once
        if outputs is None and names is None:
            outputs = [o.name for o in self._single().get_outputs()]
        self.outputs = outputs or names or []

    @property
    def _workers(self) -> int:
        """Runs at once: ``threads`` single-threaded runs of one session when the model's
        outputs do not depend on the order of its runs (no read-out noise generator), else
        one run at a time with ``threads`` intra-op threads."""
        return self.threads if self._own is None else 1

    def _session(self, key: str, build: Callable[[], bytes]) -> Any:
        # several runs at once: each on one thread (`run`)
        threads = 1 if self._parallel else self.threads
        if self._own is None:
            return sessions.session(key, build, threads)
        if key not in self._own:
            self._own[key] = sessions.make(build(), threads)
        return self._own[key]

    def _single(self) -> Any:
        return self._session(self.key, lambda: self._bytes)

    def _batched(self) -> Any:
        def build() -> bytes:
            assert self._emitted is not None
            copy = _batched_copy(self._emitted.model, self._emitted.data_inputs)
            assert copy is not None
            return copy.SerializeToString()
        return self._session(self.key + ":batched", build)

    def _feed(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {**feed, **self.weights} if self.weights else feed

    def _batch_ok(self, data: Dataset) -> bool:
        if self._emitted is None or len(data.feeds) < 2:
            return False
        if _batched_copy(self._emitted.model, self._emitted.data_inputs) is None:
            return False
        try:
            batched = self._batched()
            one = [batched.run(self.outputs, self._feed(f)) for f in data.feeds[:2]]
            both = batched.run(self.outputs, self._feed(_stack(data.feeds[:2])))
        except Exception:
            return False
        for k, out in enumerate(both):
            if out.ndim == 0 or out.shape[0] != 2:
                return False
            for j in range(2):
                ref, got = one[j][k], out[j:j + 1]
                if got.shape != ref.shape or not (np.isfinite(ref).all() and np.isfinite(got).all()):
                    return False  # non-finite values: keep the one-by-one path (and its errors)
                if not np.allclose(got, ref, rtol=1e-5, atol=1e-6 * (1 + float(np.abs(ref).max()))):
                    return False
        return True

    def _mode(self, data: Dataset) -> str:
        """"batched" or "single": decided once per structure and output set (the check runs
        the first two samples)."""
        if len(data.feeds) < 2:
            return "single"
        name = "batched:" + ",".join(self.outputs)
        mode = sessions.fact(self.key, name) if self._own is None else self._own.get(name)
        if mode is None:
            mode = "batched" if self._batch_ok(data) else "single"
            if self._own is None:
                sessions.record(self.key, name, mode)
            else:
                self._own[name] = mode
        return mode

    def run(self, data: Dataset, on_outputs: Callable[[int, list[np.ndarray]], None]) -> None:
        """``on_outputs(i, outputs of sample i)`` for every sample, in order.

        With ``threads`` > 1 the calls (one per sample, or per batch of at most ``batch``
        samples, as many batches as workers at least) run ``threads`` at a time on one
        session of one intra-op thread each: onnxruntime splits a big convolution over its
        threads well, but not the many small products and element-wise steps of a simulation
        model (measured on ResNet-18: 1.1-1.6 x faster than 2 intra-op threads, the float
        model alike); the outputs are those of the one-by-one runs."""
        n = len(data.feeds)
        workers = min(self._workers, n)
        self._parallel = workers > 1
        if self._mode(data) == "single":
            sess = self._single()
            self._calls(workers, [(i, 1) for i in range(n)],
                        lambda i, k: sess.run(self.outputs, self._feed(data.feeds[i])),
                        lambda i, k, outs: on_outputs(i, outs))
            return
        batched = self._batched()
        step = max(1, min(self.batch, -(-n // max(workers, 1))))
        spans = [(start, min(step, n - start)) for start in range(0, n, step)]

        def call(start: int, k: int) -> list[np.ndarray]:
            return batched.run(self.outputs, self._feed(_stack(data.feeds[start:start + k])))

        def deliver(start: int, k: int, outs: list[np.ndarray]) -> None:
            for j in range(k):
                on_outputs(start + j, [o[j:j + 1] for o in outs])
        self._calls(workers, spans, call, deliver)

    @staticmethod
    def _calls(workers: int, spans: list[tuple[int, int]],
               call: Callable[[int, int], list[np.ndarray]],
               deliver: Callable[[int, int, list[np.ndarray]], None]) -> None:
        """deliver(span, call(span)) for every span, in order; ``workers`` calls at once (at
        most ``workers`` results wait to be delivered)."""
        if workers <= 1 or len(spans) <= 1:
            for start, k in spans:
                deliver(start, k, call(start, k))
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending = {i: pool.submit(call, *spans[i]) for i in range(min(workers, len(spans)))}
            for i, span in enumerate(spans):
                outs = pending.pop(i).result()
                if i + workers < len(spans):
                    pending[i + workers] = pool.submit(call, *spans[i + workers])
                deliver(*span, outs)


def _stack(feeds: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([f[k] for f in feeds], axis=0) for k in feeds[0]}


Outputs = tuple[np.ndarray, ...]  # per graph output, its values stacked over the samples


def _outputs(graph: Graph, model, data: Dataset, threads: int = 1) -> Outputs:
    """Every graph output of ``model`` on every sample, stacked over the samples."""
    r = Runner(model, list(graph.outputs), threads, batch_size(graph))
    outs: list[list[np.ndarray]] = []
    r.run(data, lambda i, o: outs.append(o))
    return tuple(np.stack([o[k] for o in outs]) for k in range(len(graph.outputs)))


@dataclass(frozen=True)
class Calibration:
    act: dict[str, tuple[float, int, int]]  # op -> (step, lo, hi)
    adc: dict[str, tuple[float, ...]]  # op -> step per row tile
    reference: Outputs  # the float model's outputs (every graph output) per sample
    # per layer with a DAC: the fraction of 1 bits of its input codes (in_bits-bit words,
    # negative codes in two's complement) over the data, on the noise-free quantized model
    activity: dict[str, float] = dataclasses.field(default_factory=dict)


_bits = layer_bits


def layouts(graph: Graph, target, mapping: "ChipMapping | None" = None) -> dict[str, LayerLayout]:
    """The layout of every matrix layer: the mapping's, or the mapper's layout of each layer."""
    if mapping is not None:
        return {lm.name: lm for lm in mapping.layers}
    return {op.name: layer_layout(op, target) for op in graph.matrix_ops}


def adc_tiles(op: MatrixOp, lm: LayerLayout) -> tuple[tuple[tuple[int, int, int], ...], ...]:
    """The layout's ADC row groups; one tile of all rows when nothing is placed (all pruned)."""
    return lm.tiles() or (whole_tile(op),)


def quantized_weight(op: MatrixOp, target, opts: SimOptions) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (float array) and per-column step of a layer's weights (mask applied)."""
    w = op.weight if op.compression.mask is None else op.weight * op.compression.mask
    if not opts.weights:
        return w.astype(np.float64), np.ones(w.shape[1])
    wb, _ = _bits(op, target)
    return quantize_columns(w.astype(np.float64), wb)


def activation_stats(graph: Graph, data: Dataset, percentile: float | None = None,
                     threads: int = 1) -> tuple[Outputs, dict[str, tuple[float, float]]]:
    """Run the float model: its outputs per sample, and for every crossbar input tensor
    (range, min) where range is max |x| or the given percentile of |x|."""
    mats = graph.matrix_ops
    ins = sorted({op.inputs[0] for op in mats})
    outs_ = list(graph.outputs)
    n_out = len(outs_)
    if percentile is None:  # the ranges reduced inside onnxruntime: two numbers per sample
        ideal = emit_parts(graph, feed_params=True, ranges=tuple(ins))
        names = outs_ + [n for x in ins for n in range_names(x)]
    else:  # the percentile needs every value
        inner = [n for n in ins if n not in graph.inputs and n not in outs_]
        ideal = emit_parts(graph, extra_outputs=tuple(inner), feed_params=True)
        names = outs_ + inner
    r = Runner(ideal, names, threads, batch_size(graph))
    key = _float_run_key(r.key, ideal, percentile, data)
    known = _float_runs.get(key)
    if known is not None:  # the same float function on the same samples
        _float_runs.move_to_end(key)
        return tuple(o.copy() for o in known[0]), dict(known[1])
    amax = dict.fromkeys(ins, 0.0)
    amin = dict.fromkeys(ins, 0.0)
    samples: dict[str, list[np.ndarray]] = {k: [] for k in ins}
    ref: list[list[np.ndarray]] = []

    def take(i: int, outs: list[np.ndarray]) -> None:
        ref.append(outs[:n_out])
        values = dict(zip(names, outs))
        if percentile is None:
            for x in ins:
                hi, lo = range_names(x)
                amax[x] = max(amax[x], float(values[hi].max()))
                amin[x] = min(amin[x], float(values[lo].min()))
            return
        values = {k: v for k, v in values.items() if k in amax}
        values.update((k, v) for k, v in data.feeds[i].items() if k in amax)
        for name, v in values.items():
            amax[name] = max(amax[name], float(np.abs(v).max()))
            amin[name] = min(amin[name], float(v.min()))
            samples[name].append(np.abs(v).ravel())

    r.run(data, take)
    stats = {}
    for x in ins:
        rng = amax[x]
        if percentile is not None:
            rng = float(np.percentile(np.concatenate(samples[x]), percentile))
        stats[x] = (rng, amin[x])
    outputs = tuple(np.stack([o[k] for o in ref]) for k in range(n_out))
    if sum(o.nbytes for o in outputs) <= FLOAT_RUN_BYTES:
        _float_runs[key] = (tuple(o.copy() for o in outputs), dict(stats))
        while len(_float_runs) > FLOAT_RUNS_KEPT:
            _float_runs.popitem(last=False)
    return outputs, stats


FLOAT_RUNS_KEPT = 2  # float runs remembered (their outputs and ranges, not their tensors)
FLOAT_RUN_BYTES = 64 << 20  # ... when their outputs take at most this (not a dense-prediction
# model's images over every sample)
# digest of (structure, fed tensors, percentile, samples) -> (outputs, ranges): the trials of a
# search whose passes leave the float function unchanged (quantization only) share one float
# run per study instead of one each
_float_runs: "OrderedDict[str, tuple[Outputs, dict[str, tuple[float, float]]]]" = OrderedDict()


def _float_run_key(structure_key: str, ideal: Emitted, percentile: float | None,
                   data: Dataset) -> str:
    """SHA-256 of what a float run's numbers depend on: the model structure, every fed tensor,
    the percentile and every sample (their bytes: about 25 ms per 45 MB, so an edited dataset
    or weight is a new key)."""
    h = hashlib.sha256(structure_key.encode())
    h.update(repr(percentile).encode())

    def add(name: str, value: np.ndarray) -> None:
        a = np.ascontiguousarray(value)
        h.update(f"{name}:{a.dtype}:{a.shape};".encode())
        h.update(a.reshape(-1).view(np.uint8).data)

    for name in sorted(ideal.feeds):
        add(name, ideal.feeds[name])
    h.update(f"samples:{len(data.feeds)};".encode())
    for feed in data.feeds:
        for name in sorted(feed):
            add(name, feed[name])
    return h.hexdigest()


def _needs_float_pass(graph: Graph, opts: SimOptions, reference: Outputs | None) -> bool:
    """Whether calibration must run the float model: for the reference outputs, or for a DAC
    range the passes did not set (or the input range of a full-scale ADC without a DAC)."""
    if reference is None:
        return True
    if any(op.compression.act_range is None for op in graph.matrix_ops):
        return True
    return opts.adc and opts.adc_range == "full_scale" and not opts.dac


def calibrate(graph: Graph, target, data: Dataset, opts: SimOptions,
              mapping: "ChipMapping | None" = None, *, reference: Outputs | None = None,
              threads: int = 1, activity: bool = False) -> Calibration:
    """DAC steps (from the pass-set act_range or the data; the unit range of the scaled vectors
    with abs_max input scaling) and ADC steps per ADC row group (calibrated, worst case, or the
    spec's ``adc.out_bound``), and with ``activity`` the DAC codes' bit activity per layer
    (`Calibration.activity`), measured on the first `ACTIVITY_SAMPLES` samples only (it costs
    about 6 x in_bits element operations per crossbar input element of each sample measured).

    At most two passes over the data: the float model (its outputs, the crossbar inputs'
    ranges; skipped when ``reference`` is given and the passes set every DAC range), then the
    noise-free quantized model, which gives in one run every row tile's partial-sum range for
    the ADC (``adc_range="calibrated"``) and, on its first samples, every layer's bit
    activity; it runs when either is wanted. Both reuse the session of an earlier model of the
    same structure."""
    mats = graph.matrix_ops
    _check_readout(graph, target, opts)
    lay = layouts(graph, target, mapping)
    stats: dict[str, tuple[float, float]] = {}
    if _needs_float_pass(graph, opts, reference):
        float_ref, stats = activation_stats(graph, data, opts.act_percentile, threads)
        reference = float_ref if reference is None else reference
    assert reference is not None
    act: dict[str, tuple[float, int, int]] = {}
    for op in mats:
        _, ib = _bits(op, target)
        if op.compression.act_range is not None:
            rng, unsigned = op.compression.act_range, not op.compression.act_signed
        else:
            rng, xmin = stats[op.inputs[0]]
            unsigned = xmin >= 0.0
        if _scales_inputs(target, opts):  # x / max|x| per vector: the DAC's range is 1
            rng = 1.0
        act[op.name] = dac_quantizer(ib, rng, unsigned)
    adc: dict[str, tuple[float, ...]] = {}
    levels = adc_levels(target.adc.bits)
    by_name = {op.name: op for op in mats}
    with_adc = opts.adc and target.adc.type != "digital"
    bounded = with_adc and target.adc.out_bound is not None
    probing = with_adc and not bounded and opts.adc_range == "calibrated"
    if bounded:
        for op in mats:  # the hardware's fixed range: out_bound x (one device at g_max, full input)
            q, wstep = quantized_weight(op, target, opts)
            step, lo, hi = act[op.name]
            x_full = max(abs(lo), abs(hi)) * step  # the DAC's full-scale input
            w_max = float(np.abs(q * wstep[None, :]).max()) if q.size else 0.0
            if target.adc.out_bound_unit == "weight":  # aihwkit's raw units: w = 1 at x = 1
                w_max, x_full = 1.0, 1.0
            adc[op.name] = bound_steps(target.adc.out_bound, w_max, x_full, levels,
                                       len(adc_tiles(op, lay[op.name])))

    def sims(measure: bool) -> _LazySims:
        def make(name: str) -> OpSim:  # noise-free, quantized
            sim = _opsim(by_name[name], target, opts, act, None, None, lay[name], probe=probing)
            return (dataclasses.replace(sim, activity=True,
                                        activity_pwm=target.dac.mode == "pwm")
                    if measure else sim)
        return _LazySims(make, list(by_name))

    bit_activity: dict[str, float] = {}
    measure = activity and opts.dac
    # the first ACTIVITY_SAMPLES samples run with the activity outputs, the rest (for the ADC
    # ranges) without them: a second structure, so a second session
    n_act = min(len(data.feeds), ACTIVITY_SAMPLES) if measure else 0
    parts = [(True, data.feeds[:n_act])] if n_act else []
    if probing and n_act < len(data.feeds):
        if n_act and target.dac.mode == "pwm":
            # a PWM activity is two passes over the inputs (no table): every sample runs
            # the one structure, and only the first n_act count for the activity
            parts = [(True, data.feeds)]
        else:
            parts.append((False, data.feeds[n_act:]))
    pmax: dict[str, float] = {}
    rows: dict[str, int] = {}  # activity rows seen per probe
    for with_activity, feeds in parts:
        emitted = emit_parts(graph, sims(with_activity), feed_params=True)
        probes = emitted.probes
        pr = Runner(emitted, probes, threads, batch_size(graph))
        for name in probes:
            pmax.setdefault(name, 0.0)

        def take_p(i: int, outs: list[np.ndarray], probes: list[str] = probes) -> None:
            for name, v in zip(probes, outs):
                if name.endswith("__activity"):  # one mean per leading row (sample, or
                    # graph node): averaged over all rows of the first n_act samples; a row of
                    # non-finite codes (from non-finite inputs, which the run reports) is left out
                    if i >= n_act:
                        continue
                    ok = np.isfinite(v)
                    pmax[name] += float(v[ok].sum())
                    rows[name] = rows.get(name, 0) + int(ok.sum())
                elif name.endswith(TILES_PROBE):  # the last axis: the row tiles
                    pmax[name] = np.maximum(pmax[name],
                                            np.abs(v).reshape(-1, v.shape[-1]).max(axis=0))
                else:
                    pmax[name] = max(pmax[name], float(np.abs(v).max()))

        pr.run(Dataset(feeds, None, data.source), take_p)
    tile_max: dict[tuple[str, int], float] = {}
    for name, v in pmax.items():  # one ADC range per row tile (all its partials)
        if name.endswith("__activity"):
            if rows.get(name, 0):  # else no finite row: the layer keeps the default activity
                bit_activity[name[:-len("__activity")]] = v / rows[name]
            continue
        if name.endswith(TILES_PROBE):
            for t, m in enumerate(np.atleast_1d(v)):
                key = (name[:-len(TILES_PROBE)], t)
                tile_max[key] = max(tile_max.get(key, 0.0), float(m))
            continue
        key = probe_tile(name)
        tile_max[key] = max(tile_max.get(key, 0.0), v)
    if probing:
        for op in mats:
            n_tiles = len(adc_tiles(op, lay[op.name]))
            adc[op.name] = tuple(max(tile_max.get((op.name, t), 0.0), 1e-12) / levels
                                 for t in range(n_tiles))
    if with_adc and not probing and not bounded:
        for op in mats:
            sim = _opsim(by_name[op.name], target, opts, act, None, None, lay[op.name])
            step, lo, hi = act[op.name]
            tiles = sim.tiles or ()
            if opts.bit_accurate:  # worst partial: every row at full input and digit
                assert sim.slices is not None
                xmax = 1.0 if sim.plane_bits is not None else float(max(abs(lo), abs(hi)))
                if sim.plane_bits is not None:
                    xmax = float(2 ** sim.plane_bits - 1)
                dmax = [max(tile_colsum_max(op, d, tl) for d in sim.slices) for tl in tiles]
                adc[op.name] = tuple(max(m * xmax, 1e-12) / levels for m in dmax)
                continue
            w = sim.weight
            assert w is not None
            xmax = max(abs(lo), abs(hi)) * step if opts.dac else stats[op.inputs[0]][0]
            adc[op.name] = tuple(max(tile_colsum_max(op, w, tl) * xmax, 1e-12) / levels
                                 for tl in tiles)
    return Calibration(act, adc, tuple(reference), bit_activity)


def _scales_inputs(target, opts: SimOptions) -> bool:
    """Per-vector (abs_max) input scaling is simulated: the target has it and a converter is."""
    return target.dac.input_scaling == "abs_max" and (opts.dac or opts.adc)


def _check_readout(graph: Graph, target, opts: SimOptions) -> None:
    """Read-out features the simulation cannot build for this graph are refused up front."""
    if _scales_inputs(target, opts):
        for op in graph.matrix_ops:
            if not scales_vectors(op):
                raise DataError(
                    f"layer {op.name!r} ({op.kind}, {op.groups} group(s)): dac.input_scaling "
                    "'abs_max' scales each input vector, which the simulation builds for "
                    "Gemm/MatMul layers and convs of one group only; use --set "
                    "dac.input_scaling=calibrated")
    if opts.adc and opts.adc_range == "full_scale" and target.adc.out_bound is not None:
        raise DataError(f"--adc-range full_scale: the target fixes the ADC's range "
                        f"(adc.out_bound = {target.adc.out_bound:g}); drop the option or unset "
                        "adc.out_bound (--set adc.out_bound=null)")
    if opts.bit_accurate and opts.adc and target.adc.out_bound is not None:
        raise DataError("adc.out_bound (a range in device units) is not simulated bit-accurately "
                        "(partial sums are in digit units there): drop --bit-accurate or unset "
                        "adc.out_bound")


def _converters(op: MatrixOp, target, opts: SimOptions, act, adc, lm: LayerLayout,
                probe: bool = False, seed: int | None = None) -> dict[str, Any]:
    """The layer's own DAC and ADC fields of its OpSim (not its weights); ``seed``: the noise
    seed of a noisy simulation (None: noise-free, e.g. calibration)."""
    a_step, lo, hi = act[op.name] if opts.dac else (None, 0, 0)
    noisy = seed is not None and opts.noise and bool(adc) and bool(target.adc.read_noise)
    return {"act_step": a_step, "act_lo": lo, "act_hi": hi, "tiles": adc_tiles(op, lm),
            "adc_steps": adc.get(op.name) if adc else None,
            "adc_levels": adc_levels(target.adc.bits), "probe": probe,
            "in_bits": _bits(op, target)[1], "input_scaling": _scales_inputs(target, opts),
            "adc_noise": float(target.adc.read_noise) if noisy else 0.0,
            "noise_seed": seed if noisy else 0}


def _opsim(op: MatrixOp, target, opts: SimOptions, act, adc, rng: np.random.Generator | None,
           lm: LayerLayout, probe: bool = False, threads: int = 1,
           seed: int | None = None) -> OpSim:
    io = _converters(op, target, opts, act, adc, lm, probe, seed if rng is not None else None)
    q, step = quantized_weight(op, target, opts) if opts.weights else (None, None)
    if opts.bit_accurate:
        assert q is not None and step is not None  # SimOptions: bit-accurate needs weights
        wb, _ = _bits(op, target)
        # (the gain of an exact reference read folded into the digits: bit-accurate mode does
        # not read the reference through the converters)
        digits, base, offset = (noisy_slices(q, wb, target, rng, opts.t_inference_s)
                                if opts.noise and rng is not None else slice_digits(q, wb, target))
        serial = target.dac.mode == "bit_serial"
        return OpSim(slices=tuple(np.asarray(d, np.float32) for d in digits), slice_base=base,
                     offset=offset, col_scale=step, plane_bits=target.dac.bits if serial else None,
                     **io)
    if not opts.weights:  # the float weights as they are (no copy without a mask)
        w = np.asarray(op.weight if op.compression.mask is None
                       else op.weight * op.compression.mask, np.float32)
    else:
        assert q is not None and step is not None
        if opts.noise and rng is not None:
            wb, _ = _bits(op, target)
            code0, q = device_codes(q, wb, target, rng, opts.t_inference_s, threads)
            if target.noise.drift_compensation and target.noise.model != "none":
                io["gain"] = _drift_gain(op, act, io, code0 * step[None, :], q * step[None, :],
                                         rng, ideal=target.noise.drift_reference == "ideal")
        w = (q * step[None, :]).astype(np.float32)
    return OpSim(weight=w, **io)


def _drift_gain(op: MatrixOp, act, io: dict[str, Any], w0: np.ndarray, w_t: np.ndarray,
                rng: np.random.Generator, ideal: bool = False) -> float:
    """Global drift compensation of a layer: its one-hot reference read at the DAC's full-scale
    input through the layer's ADCs and read-out noise (`imccompile.readout.drift_gain`)."""
    step, lo, hi = act[op.name]
    if ideal:  # a calibration read without converter error (noise.drift_reference = ideal)
        return drift_gain(op, w0, w_t, io["tiles"], max(abs(lo), abs(hi)) * step, None, 0, 0.0,
                          None)
    return drift_gain(op, w0, w_t, io["tiles"], max(abs(lo), abs(hi)) * step, io["adc_steps"],
                      io["adc_levels"], io["adc_noise"], rng)


def simulation_model(graph: Graph, target, cal: Calibration, opts: SimOptions, seed: int,
                     mapping: "ChipMapping | None" = None):
    """The simulation ONNX model for one noise seed (self-contained: under 2 GB of tensors; see
    `simulation_parts`)."""
    return simulation_parts(graph, target, cal, opts, seed, mapping).full()


def simulation_parts(graph: Graph, target, cal: Calibration, opts: SimOptions, seed: int,
                     mapping: "ChipMapping | None" = None, threads: int = 1) -> Emitted:
    """The simulation model for one noise seed, its big tensors fed (`emit.Emitted`). A layer
    that reads another layer's arrays (a shared weight, `LayerLayout.shares`) reads the same
    noisy devices: its weights are that layer's draw, with its own DAC and ADC steps."""
    rng = np.random.default_rng(seed)
    lay = layouts(graph, target, mapping)
    adc = cal.adc if opts.adc else None
    ops = {op.name: op for op in graph.matrix_ops}
    owners = {lm.shares for lm in lay.values() if lm.shares is not None}
    made: dict[str, OpSim] = {}  # the draws of layers other layers read

    def make(name: str) -> OpSim:
        op = ops[name]
        owner = lay[name].shares
        if owner is not None and owner in made:  # the owner's devices, this layer's converters
            sim = dataclasses.replace(made[owner],
                                      **_converters(op, target, opts, cal.act, adc, lay[name],
                                                    seed=seed))
        else:
            sim = _opsim(op, target, opts, cal.act, adc, rng, lay[name], threads=threads,
                         seed=seed)
        if name in owners:
            made[name] = sim
        return sim

    return emit_parts(graph, _LazySims(make, list(ops)), feed_params=True)


def one_layer_parts(graph: Graph, target, cal: Calibration, opts: SimOptions, seed: int,
                    layer: str, others: Mapping[str, np.ndarray],
                    mapping: "ChipMapping | None" = None) -> Emitted:
    """The simulation model with only ``layer`` on the hardware (its noise draw for ``seed``,
    DAC, ADC and weight quantization as in `simulation_parts`), every other crossbar layer an
    exact float product with the weight ``others`` gives it (`imccompile.sensitivity`)."""
    rng = np.random.default_rng(seed)
    lay = layouts(graph, target, mapping)
    adc = cal.adc if opts.adc else None
    sims = {op.name: (_opsim(op, target, opts, cal.act, adc, rng, lay[op.name])
                      if op.name == layer else OpSim(weight=np.asarray(others[op.name], np.float32)))
            for op in graph.matrix_ops}
    return emit_parts(graph, sims)


def run_outputs(graph: Graph, model: Emitted, data: Dataset) -> Outputs:
    """Every graph output of an emitted model on the data, stacked over the samples."""
    return _outputs(graph, model, data)


class _LazySims(MappingABC):
    """The OpSims of a simulation model, each made when the emitter asks for it (once per layer,
    in graph order: the noise draws are those of a loop over the layers), so that only one
    layer's working arrays exist besides the emitted weights."""

    def __init__(self, make: Callable[[str], OpSim], names: list[str]) -> None:
        self._make, self._names = make, names

    def __getitem__(self, name: str) -> OpSim:
        if name not in self._names:
            raise KeyError(name)
        return self._make(name)

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def score_outputs(graph: Graph, outs: Outputs, refs: Outputs, labels: np.ndarray | None,
                  metric: str = "auto") -> tuple[str, float, list[dict[str, float]]]:
    """(headline metric, its value, per output its metrics) of outputs against the float
    model's (`imccompile.metrics`)."""
    kinds = metrics.output_kinds(graph)
    name = metrics.resolve(metric, kinds, labels)
    per = metrics.output_metrics(graph.outputs, kinds, outs, refs, labels, name)
    return name, metrics.headline(name, per), per


def reference_outputs(graph: Graph, data: Dataset, threads: int = 1) -> Outputs:
    """The float model's outputs per sample, every graph output (ideal emission, onnxruntime)."""
    return _outputs(graph, emit_parts(graph, feed_params=True), data, threads)


def _non_finite(outs: Outputs) -> tuple[int, int, int] | None:
    """(output index, first bad sample, bad samples) of the first output with NaN/Inf."""
    for k, o in enumerate(outs):
        if o.dtype.kind != "f":
            continue
        bad = [i for i in range(len(o)) if not np.isfinite(o[i]).all()]
        if bad:
            return k, bad[0], len(bad)
    return None


def evaluate(graph: Graph, target, data: Dataset, *, seeds: int = 1, opts: SimOptions = SimOptions(),
             base_seed: int = 0, progress: Callable[[int, int], None] | None = None,
             reference: Outputs | None = None, mapping: "ChipMapping | None" = None,
             metric: str = "auto", threads: int = 1,
             activity: bool = False) -> tuple[dict[str, Any], Calibration]:
    """Accuracy of the compiled graph under the target's hardware, over ``seeds`` noise draws.

    ``reference``: outputs of the uncompressed float model (see `reference_outputs`); the
    ``float`` figure and the agreement metrics are taken against it. Default: the graph's own
    float outputs (no compression passes ran). ``metric``: the headline (`imccompile.metrics`);
    every output is also scored with the metrics that fit it. ``activity``: also measure the
    DAC input bit activity per layer (`Calibration.activity`).
    """
    if seeds < 1:
        raise DataError(f"--seeds must be >= 1, got {seeds}")
    kinds = metrics.output_kinds(graph)
    name = metrics.resolve(metric, kinds, data.labels)
    for op in graph.matrix_ops:  # conductances cannot encode them; the noise model would spread NaN
        for what, arr in (("weight", op.weight), ("bias", op.bias)):
            if arr is not None and not np.isfinite(arr).all():
                nodes = f" (ONNX nodes {', '.join(op.source)})" if op.source != (op.name,) else ""
                raise ModelImportError(
                    f"layer {op.name!r}{nodes}: its {what} holds NaN or Inf values; the accuracy "
                    "simulation needs finite weights")
    cal = calibrate(graph, target, data, opts, mapping, reference=reference, threads=threads,
                    activity=activity)
    bad = _non_finite(cal.reference)
    if bad:
        k, first, n = bad
        raise DataError(
            f"{data.source}: the float model's output {graph.outputs[k]!r} is NaN or Inf on "
            f"sample {first} ({n} of {len(cal.reference[k])} samples): NaN/Inf constants "
            "in the model or an overflow; the accuracy cannot be scored")
    float_per = metrics.output_metrics(graph.outputs, kinds, cal.reference, cal.reference,
                                       data.labels, name)
    per_seed: list[list[dict[str, float]]] = []
    for s in range(seeds):
        model = simulation_parts(graph, target, cal, opts, base_seed + s, mapping, threads)
        out = _outputs(graph, model, data, threads)
        del model
        bad = _non_finite(out)
        if bad:  # the float outputs are finite: huge values overflow float32 on the hardware
            wmax = max((float(np.abs(op.weight).max()) for op in graph.matrix_ops), default=0.0)
            raise DataError(
                f"{data.source}: the simulated hardware output {graph.outputs[bad[0]]!r} is NaN "
                f"or Inf on sample {bad[1]} (noise seed {base_seed + s}) although the float "
                f"model's is finite: values overflow float32 (largest |weight| {wmax:.3g}); "
                "rescale the model")
        per_seed.append(metrics.output_metrics(graph.outputs, kinds, out, cal.reference,
                                               data.labels, name))
        if progress:
            progress(s + 1, seeds)

    def stat(values: list[float], float_value: float) -> dict[str, Any]:
        arr = np.array(values)
        return {"float": float(float_value), "mean": float(arr.mean()),
                "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
                "per_seed": [float(v) for v in arr]}

    head = stat([metrics.headline(name, p) for p in per_seed], metrics.headline(name, float_per))
    outputs = []
    for k, out_name in enumerate(graph.outputs):
        outputs.append({
            "name": out_name, "shape": [int(d) for d in graph.tensors[out_name].shape],
            "kind": kinds[k],
            "metrics": {m: stat([p[k][m] for p in per_seed], float_per[k][m])
                        for m in float_per[k]}})
    return {
        "metric": name,
        "direction": metrics.direction(name),
        **head,
        "relative_error": float(np.mean([[m["relerr"] for m in p] for p in per_seed])),
        "samples": len(data.feeds),
        "seeds": list(range(base_seed, base_seed + seeds)),
        "outputs": outputs,
    }, cal


def simulation_model_of(result: CompileResult, seed: int = 0):
    """The hardware simulation ONNX model of a compile (it needs its calibration: compile with
    data) for one noise seed: the model that was scored for that seed (self-contained; for a
    model over 2 GB use `simulation_parts_of` and `Emitted.save`)."""
    return simulation_parts_of(result, seed).full()


def simulation_parts_of(result: CompileResult, seed: int = 0) -> Emitted:
    """`simulation_model_of` with its big tensors apart (`emit.Emitted`: run it, or save it
    with external data when over 2 GB)."""
    if result.calibration is None:
        raise DataError("the simulation model needs calibration data: compile with data=...")
    return simulation_parts(result.graph, result.target, result.calibration, result.options.sim,
                            seed, result.mapping)
