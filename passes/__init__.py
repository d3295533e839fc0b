"""Transformation passes over the IR (installed as imccompile.passes).

    >>> from imccompile.passes import run_pipeline
    >>> text = "prune{ratio=0.5,granularity=column},quantize{weight_bits=4}"
    >>> stats = imccompile.compiler.activation_stats_for(dataset)   # calibration, if any
    >>> graph2, canonical = run_pipeline(graph, text, target=target, activation_stats=stats)

A pass is a frozen dataclass (`Pass`) whose fields are its options; pipelines have a text form
that round-trips (`parse_pipeline` / `pipeline_text`). Third parties add passes with
`register_pass` or the entry-point group ``imccompile.passes``. See docs/passes.md.
"""

from __future__ import annotations

from imccompile.passes.base import (
    ENTRY_POINT_GROUP,
    ActivationStats,
    LayerPass,
    Pass,
    PassContext,
    get_pass,
    load_entry_points,
    register_pass,
    registered_passes,
    unregister_pass,
)
from imccompile.passes.fold_bn import FoldBatchNorm
from imccompile.passes.options import OptionType
from imccompile.passes.pipeline import (
    PassManager,
    as_passes,
    check_order,
    parse_pipeline,
    pipeline_text,
    run_pipeline,
)
from imccompile.passes.prune import Prune
from imccompile.passes.quantize import Quantize, quantize_weight
from imccompile.passes.verify import graph_problems

__all__ = [
    "ENTRY_POINT_GROUP",
    "ActivationStats",
    "FoldBatchNorm",
    "LayerPass",
    "OptionType",
    "Pass",
    "PassContext",
    "PassManager",
    "Prune",
    "Quantize",
    "as_passes",
    "check_order",
    "get_pass",
    "graph_problems",
    "load_entry_points",
    "parse_pipeline",
    "pipeline_text",
    "quantize_weight",
    "register_pass",
    "registered_passes",
    "run_pipeline",
    "unregister_pass",
]
