"""The one compile driver: import, data, passes, map, cost, schedule, accuracy -> CompileResult.

A compile has two halves:

* `prepare`: import the model and load the data (what a search does once per study);
* `compile_prepared`: resolve the target with the options' overrides, run the passes (with
  activation statistics from the data), map, cost, schedule and simulate.

`compile` is both halves; every search trial (`imccompile.search.Evaluator`) is the second half
with the same `CompileOptions`, so a single compile and a trial with equal options are equal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping as TMapping, Sequence, Union

from imccompile.errors import UsageError
from imccompile.guardrails import DEFAULT_MAX_ACCURACY_DROP, AccuracyWarning, result_warning
from imccompile.ir import Graph
from imccompile.options import CompileOptions, OverflowPolicy
from imccompile.result import Accuracy, CompileResult

if TYPE_CHECKING:
    import numpy as np
    import onnx

    from imccompile.cost import Cost
    from imccompile.mapper import Mapping
    from imccompile.passes.base import ActivationStats
    from imccompile.schedule import Schedule
    from imccompile.simulate import Dataset, SimOptions
    from imccompile.spec.schema import Target

__all__ = ["Accuracy", "CompileOptions", "CompileResult", "Prepared", "activation_stats_for",
           "compile", "compile_graph", "compile_prepared", "prepare"]

ModelSource = Union[str, "os.PathLike[str]", "onnx.ModelProto"]
TargetSource = Union[str, "os.PathLike[str]", "Target"]
DataSource = Union[str, "os.PathLike[str]", TMapping[str, Any], "Dataset"]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Prepared:
    """The imported model and its data: the part of a compile a search does once per study.

    Attributes:
        graph: the imported graph (before any pass).
        dataset: the calibration/evaluation data, or None.
        reference: the imported graph's float outputs on the data, every graph output stacked
            over the samples (the accuracy of a compressed graph is taken against them), or None
            when not asked for.
        source: the model as given (to tell a broken model from a broken emission).
        input_shapes, samples, dims: the options the graph and data were prepared with.
        stats: the imported graph's activation ranges (max |x|, min x per crossbar input),
            measured in the same float run as ``reference``: a pass that asks for them (a
            quantize that no prune precedes) reads them instead of running the model again.
    """

    graph: Graph
    dataset: Dataset | None
    reference: tuple[np.ndarray, ...] | None
    source: ModelSource
    input_shapes: tuple[tuple[str, tuple[int, ...]], ...]
    samples: int | None
    dims: tuple[tuple[str, int], ...] = ()
    stats: dict[str, tuple[float, float]] | None = None


def prepare(model: ModelSource, options: CompileOptions, data: DataSource | None = None, *,
            reference: bool = False, import_progress: Progress | None = None) -> Prepared:
    """Import ``model`` (with the options' input shapes) and load ``data`` (its first
    ``options.samples`` samples); with ``reference``, run the float model on the data once."""
    from imccompile.frontend import import_model

    graph = import_model(model, dict(options.input_shapes), progress=import_progress,
                         dims=dict(options.dims))
    dataset = None
    ref = None
    stats = None
    if data is not None:
        from imccompile.simulate import Dataset, activation_stats, load_data

        dataset = data if isinstance(data, Dataset) else load_data(data, graph,
                                                                   limit=options.samples)
        if reference:
            try:
                ref, stats = activation_stats(graph, dataset, threads=options.threads)
            except Exception as e:
                if type(e).__module__.startswith("onnxruntime"):
                    _source_must_run(model, dataset, graph.name)
                raise
    return Prepared(graph, dataset, ref, model, options.input_shapes, options.samples,
                    options.dims, stats)


def activation_stats_for(dataset: Dataset, threads: int = 1,
                         known: tuple[Graph, dict[str, tuple[float, float]]] | None = None
                         ) -> ActivationStats:
    """The activation statistics a pass may ask its context for, measured on ``dataset``: for a
    graph and a percentile (None: max), per crossbar-input tensor (max |x| or that percentile
    of |x|, min x). Computed when first asked, once per (graph, percentile); ``known``: a
    graph's max stats measured already."""
    cache: dict[tuple[int, float | None], tuple[Graph, dict[str, tuple[float, float]]]] = {}
    if known is not None:  # (graph, its max-calibrated stats), measured already
        cache[(id(known[0]), None)] = known

    def stats(graph: Graph, percentile: float | None = None) -> dict[str, tuple[float, float]]:
        key = (id(graph), percentile)
        hit = cache.get(key)
        if hit is None or hit[0] is not graph:
            from imccompile.simulate import activation_stats

            hit = (graph, activation_stats(graph, dataset, percentile, threads)[1])
            cache[key] = hit
        return hit[1]

    return stats


def compile_graph(graph: Graph, target: Target, *, model_name: str | None = None,
                  overflow: OverflowPolicy = "chips", replicate: TMapping[str, int] | None = None,
                  auto_replicate: bool = False, pipeline: str = "",
                  options: CompileOptions | None = None,
                  measured_activity: TMapping[str, float] | None = None) -> CompileResult:
    """Map, cost and schedule an already-imported (and possibly transformed) graph.

    With ``options``, its overflow / replicate / auto_replicate / activity are used (and the
    keyword arguments must be left at their defaults). ``measured_activity``: input bit
    activity per layer measured on data (used where the options give none)."""
    from imccompile.mapper import map_graph
    from imccompile.spec.schema import Target

    if not isinstance(graph, Graph):
        raise UsageError(f"compile_graph: graph {type(graph).__name__}: expected an imported "
                         "Graph (imccompile.import_model)")
    if not isinstance(target, Target):
        raise UsageError(f"compile_graph: target {type(target).__name__}: expected a Target "
                         "(imccompile.load_target)")
    if options is None:
        options = CompileOptions.make(overflow=overflow, replicate=replicate,
                                      auto_replicate=auto_replicate, passes=pipeline)
    elif (overflow, replicate, auto_replicate) != ("chips", None, False):
        raise UsageError("compile_graph: give either options= or overflow/replicate/"
                         "auto_replicate, not both")
    mapping = map_graph(graph, target, overflow=options.overflow,
                        replicate=dict(options.replicate), auto_replicate=options.auto_replicate)
    cost, sched = _price(graph, target, mapping, options, measured_activity)
    return CompileResult(model_name or graph.name, graph, target, mapping, cost, sched, pipeline,
                         options)


def _price(graph: Graph, target: Target, mapping: Mapping, options: CompileOptions,
           measured_activity: TMapping[str, float] | None) -> tuple[Cost, Schedule]:
    """Cost and schedule of a mapped graph at the options' given input activity, else
    ``measured_activity``, else the spec's (the mapping does not depend on it: a compile
    re-priced with the data's measured activity is not mapped again)."""
    from imccompile.activity import check_activity, resolve
    from imccompile.cost import cost_graph
    from imccompile.schedule import schedule

    names = [op.name for op in graph.matrix_ops]
    given = dict(options.activity)
    check_activity(given, names)
    cost = cost_graph(graph, mapping, target, resolve(names, target, given, measured_activity))
    return cost, schedule(graph, cost, mapping)


def compile_prepared(prepared: Prepared, target: TargetSource, options: CompileOptions, *,
                     progress: Progress | None = None) -> CompileResult:
    """The compile of a prepared model: target with the options' overrides, passes, mapping,
    cost, schedule and (with data) the accuracy under the hardware."""
    import dataclasses

    from imccompile.spec import load_target

    if (options.input_shapes, options.samples, options.dims) != (
            prepared.input_shapes, prepared.samples, prepared.dims):
        raise UsageError("compile_prepared: the options' input_shapes/samples/dims differ from those "
                         "the model and data were prepared with")
    tgt = load_target(target, list(options.overrides))  # the spec loader: one place for overrides
    graph = prepared.graph
    dataset = prepared.dataset
    try:
        pipeline = ""
        reference = None
        if options.passes:
            from imccompile.passes import run_pipeline

            known = (prepared.graph, prepared.stats) if prepared.stats is not None else None
            stats = (activation_stats_for(dataset, options.threads, known)
                     if dataset is not None else None)
            graph, pipeline = run_pipeline(graph, options.passes, target=tgt,
                                           activation_stats=stats)
            if dataset is not None:  # accuracy is reported against the uncompressed model
                reference = prepared.reference
                if reference is None:
                    from imccompile.simulate import reference_outputs

                    reference = reference_outputs(prepared.graph, dataset, options.threads)
        res = compile_graph(graph, tgt, model_name=graph.name, pipeline=pipeline, options=options)
        if dataset is None:
            if options.sensitivity:
                raise UsageError("--sensitivity needs --data (it measures accuracy)")
            return res
        from imccompile.simulate import evaluate

        acc, cal = evaluate(graph, tgt, dataset, seeds=options.seeds, opts=options.sim,
                            progress=progress, reference=reference, mapping=res.mapping,
                            metric=options.metric, threads=options.threads,
                            activity=True)
        if cal.activity:  # measured per layer on the data: re-price, same mapping
            cost, sched = _price(graph, tgt, res.mapping, options, cal.activity)
            res = dataclasses.replace(res, cost=cost, schedule=sched)
        sens = None
        if options.sensitivity:
            from imccompile.sensitivity import layer_sensitivity

            sens = layer_sensitivity(graph, tgt, dataset, cal, options.sim, seeds=options.seeds,
                                     metric=options.metric, original=prepared.graph,
                                     mapping=res.mapping)
    except Exception as e:
        if dataset is not None and type(e).__module__.startswith("onnxruntime"):
            _source_must_run(prepared.source, dataset, graph.name)  # the model's fault
        raise
    accuracy: Accuracy = {"metric": acc["metric"], "direction": acc["direction"],
                          "float": acc["float"], "mean": acc["mean"],
                          "std": acc["std"], "per_seed": list(acc["per_seed"]),
                          "relative_error": acc["relative_error"], "samples": acc["samples"],
                          "seeds": list(acc["seeds"]), "outputs": list(acc["outputs"])}
    return dataclasses.replace(res, accuracy=accuracy, calibration=cal, sensitivity=sens)


def compile(model: ModelSource, target: TargetSource = "pcm",
            options: CompileOptions | None = None, *,
            overrides: Sequence[str] | TMapping[str, Any] = (), passes: str | None = None,
            input_shapes: TMapping[str, tuple[int, ...]] | None = None,
            dims: TMapping[str, int] | None = None,
            overflow: OverflowPolicy = "chips", replicate: TMapping[str, int] | None = None,
            auto_replicate: bool = False, data: DataSource | None = None, seeds: int = 1,
            sim_options: SimOptions | None = None, progress: Progress | None = None,
            samples: int | None = None, import_progress: Progress | None = None,
            metric: str = "auto",
            activity: TMapping[str, float] | None = None, sensitivity: bool = False,
            max_accuracy_drop: float | None = DEFAULT_MAX_ACCURACY_DROP,
            threads: int = 1) -> CompileResult:
    """Compile an ONNX model (path or ModelProto) for a target (bundled name, path, or Target).

    Args:
        model: path to an .onnx file or an onnx.ModelProto.
        target: bundled target name ("pcm", "rram", "sram"), a spec path, or a loaded Target
            (the overrides apply to it the same way in every case).
        options: a `CompileOptions`; or leave it out and give its fields as keywords:
        overrides: spec overrides, e.g. ["adc.bits=6"] or {"adc.bits": 6}.
        passes: pipeline text, e.g. "prune{ratio=0.5,granularity=column},quantize{weight_bits=4}".
        input_shapes: static dims for dynamic inputs, by input name.
        dims: sizes of symbolic input dims by name, e.g. {"batch": 1} (every input).
        overflow: what to do when the model needs more arrays than one chip has.
        replicate: copies per layer name or glob, to balance a pipeline.
        auto_replicate: give spare arrays to the bottleneck layers.
        seeds: noise draws for the accuracy (mean ± std over them).
        sim_options: simulate.SimOptions (what the simulation includes).
        samples: use only the first N samples of the data.
        metric: the headline accuracy metric: "auto", "top1", "agreement", "cosine",
            "relerr" or "snr" (`imccompile.metrics`).
        threads: onnxruntime intra-op threads of the accuracy simulation.
        activity: input bit activity (fraction of 1 bits, 0..1) per matrix layer name, for
            the array and DAC energy; layers left out use the activity measured on ``data``,
            else the spec's ``dac.input_activity``, else 1.0 (`imccompile.activity`).
        data: calibration/evaluation data (.npz path or dict of arrays by input name, optional
            ``labels``): passes calibrate on it and the accuracy under the hardware is evaluated.
        progress, import_progress: callbacks (done, total) for the accuracy and the import.
        sensitivity: also measure each crossbar layer's accuracy drop alone on the hardware
            (``result.sensitivity``, `imccompile.sensitivity`).
        max_accuracy_drop: accuracy budget (points; `imccompile.guardrails`; None: none): a
            compile whose accuracy drops more below float warns (`AccuracyWarning`), naming the
            layer that costs the most when ``sensitivity`` is on.
    """
    keywords = CompileOptions.make(overrides=overrides, passes=passes, input_shapes=input_shapes,
                                   dims=dims,
                                   overflow=overflow, replicate=replicate,
                                   auto_replicate=auto_replicate, samples=samples, seeds=seeds,
                                   sim=sim_options, metric=metric, activity=activity,
                                   sensitivity=sensitivity, max_accuracy_drop=max_accuracy_drop,
                                   threads=threads)
    if options is None:
        options = keywords
    elif keywords != CompileOptions():
        raise UsageError("compile(): give either options=CompileOptions(...) or its fields as "
                         "keywords (overrides, passes, ...), not both")
    prepared = prepare(model, options, data, reference=False, import_progress=import_progress)
    res = compile_prepared(prepared, target, options, progress=progress)
    text = result_warning(res)
    if text is not None:
        import warnings

        warnings.warn(text, AccuracyWarning, stacklevel=2)
    return res


def _source_must_run(model: Any, dataset: Any, name: str) -> None:
    """onnxruntime failed on a model emitted from the graph. The frontend checks what it maps but
    passes digital ops through: if onnxruntime cannot run the source model either, the model is
    invalid (ModelImportError); otherwise the emitted model is wrong and the caller re-raises."""
    import onnx
    import onnxruntime as ort

    from imccompile.errors import ModelImportError

    so = ort.SessionOptions()
    so.log_severity_level = 4
    try:
        src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
        sess = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
        sess.run(None, dataset.feeds[0])
    except Exception as e:  # noqa: BLE001 - any failure of the source model is its own
        msg = " ".join(str(e).split())[:300]
        raise ModelImportError(f"{name}: onnxruntime cannot run the model itself: {msg}") from None
