"""The public compile entry point: import, passes, map, cost, schedule — one result object."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping as TMapping, Sequence

from imccompile.cost import Cost, cost_graph
from imccompile.ir import Graph
from imccompile.mapper import Mapping, OverflowPolicy, map_graph
from imccompile.schedule import Schedule, schedule


@dataclass(frozen=True)
class CompileResult:
    """Everything one compile produced. ``report()`` is the JSON report (report.schema.json)."""

    model_name: str
    graph: Graph
    target: Any
    mapping: Mapping
    cost: Cost
    schedule: Schedule
    pipeline: str = ""
    accuracy: dict | None = None
    extra: dict = field(default_factory=dict)
    calibration: Any = None  # simulate.Calibration when data was given
    sim_options: Any = None

    def simulation_model(self, seed: int = 0):
        """The hardware simulation ONNX model (needs data: calibration) for one noise seed."""
        from imccompile.errors import DataError
        from imccompile.simulate import simulation_model

        if self.calibration is None:
            raise DataError("the simulation model needs calibration data: compile with data=...")
        return simulation_model(self.graph, self.target, self.calibration, self.sim_options, seed,
                                self.mapping)

    def ideal_model(self):
        """The compiled graph emitted back to float ONNX (same function as the source)."""
        from imccompile.emit import emit

        return emit(self.graph)[0]

    def report(self) -> dict:
        from imccompile.report import build_report

        return build_report(self)

    def to_json(self, indent: int | None = 2) -> str:
        from imccompile.report import dumps

        return dumps(self.report(), indent=indent)


def _resolve_target(target: Any, overrides: Sequence[str] | TMapping[str, Any]):
    from imccompile.spec import load_target

    if isinstance(target, (str, os.PathLike)):
        return load_target(target, overrides)
    if overrides:
        items = overrides.items() if isinstance(overrides, TMapping) else \
            (o.split("=", 1) for o in overrides)
        for path, value in items:
            target = target.replace_path(path, value)
    return target


def compile_graph(graph: Graph, target: Any, *, model_name: str | None = None,
                  overflow: OverflowPolicy = "chips", replicate: TMapping[str, int] | None = None,
                  auto_replicate: bool = False, pipeline: str = "") -> CompileResult:
    """Map, cost and schedule an already-imported (and possibly transformed) graph."""
    mapping = map_graph(graph, target, overflow=overflow, replicate=replicate,
                        auto_replicate=auto_replicate)
    cost = cost_graph(graph, mapping, target)
    sched = schedule(graph, cost, mapping)
    return CompileResult(model_name or graph.name, graph, target, mapping, cost, sched, pipeline)


def compile(model: Any, target: Any = "pcm", *, overrides: Sequence[str] | TMapping[str, Any] = (),
            passes: str | None = None, input_shapes: TMapping[str, tuple[int, ...]] | None = None,
            overflow: OverflowPolicy = "chips", replicate: TMapping[str, int] | None = None,
            auto_replicate: bool = False, data: Any = None, seeds: int = 1,
            sim_options: Any = None, progress: Any = None,
            samples: int | None = None, import_progress: Any = None) -> CompileResult:
    """Compile an ONNX model (path or ModelProto) for a target (bundled name, path, or Target).

    Args:
        model: path to an .onnx file or an onnx.ModelProto.
        target: bundled target name ("pcm", "rram", "sram"), a spec path, or a loaded Target.
        overrides: spec overrides, e.g. ["adc.bits=6"] or {"adc.bits": 6}.
        passes: pipeline text, e.g. "prune{ratio=0.5,granularity=column},quantize{weight_bits=4}".
        input_shapes: static dims for dynamic inputs, by input name.
        overflow: what to do when the model needs more arrays than one chip has.
        replicate: copies per layer name or glob, to balance a pipeline.
        auto_replicate: give spare arrays to the bottleneck layers.
        data: calibration/evaluation data (.npz path or dict of arrays by input name, optional
            ``labels``): passes calibrate on it and the accuracy under the hardware is evaluated.
        seeds: noise draws for the accuracy (mean ± std over them).
        sim_options: simulate.SimOptions (what the simulation includes).
    """
    from imccompile.frontend import import_model

    import dataclasses

    tgt = _resolve_target(target, overrides)
    graph = import_model(model, input_shapes, progress=import_progress)
    dataset = None
    if data is not None:
        from imccompile.simulate import load_data

        dataset = load_data(data, graph, limit=samples)
    try:
        pipeline = ""
        reference = None
        if passes:
            from imccompile.passes import run_pipeline

            if dataset is not None:  # accuracy is reported against the uncompressed model
                from imccompile.simulate import reference_outputs

                reference = reference_outputs(graph, dataset)
            graph, pipeline = run_pipeline(graph, passes, target=tgt, data=dataset)
        res = compile_graph(graph, tgt, model_name=graph.name, overflow=overflow,
                            replicate=replicate, auto_replicate=auto_replicate, pipeline=pipeline)
        if dataset is None:
            return res
        from imccompile.simulate import SimOptions, evaluate

        opts = sim_options or SimOptions()
        acc, cal = evaluate(graph, tgt, dataset, seeds=seeds, opts=opts, progress=progress,
                            reference=reference, mapping=res.mapping)
    except Exception as e:
        if dataset is not None and type(e).__module__.startswith("onnxruntime"):
            _source_must_run(model, dataset, graph.name)  # the model's fault: a clean error
        raise
    return dataclasses.replace(res, accuracy=acc, calibration=cal, sim_options=opts)


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
