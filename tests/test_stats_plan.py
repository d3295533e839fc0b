"""A pipeline of per-layer quantize passes (what a search trial runs) is calibrated by one float
run where that gives the pass-by-pass numbers: checked against the passes applied one by one,
each measuring the graph it is given."""

from __future__ import annotations

from pathlib import Path

import pytest

from imccompile.compiler import activation_stats_for
from imccompile.frontend import import_model
from imccompile.passes import parse_pipeline, run_pipeline
from imccompile.passes.base import PassContext
from imccompile.simulate import load_data

EX = Path(__file__).resolve().parents[1] / "examples"


def _setup(name: str):
    graph = import_model(str(EX / f"{name}.onnx"))
    data = load_data(str(EX / f"{name}.npz"), graph, limit=32)
    return graph, data


def _counting(data):
    stats = activation_stats_for(data)
    runs = []

    def counted(g, pct=None):
        runs.append(pct)
        return stats(g, pct)
    return counted, runs


def _one_by_one(graph, text, data):
    """The reference: each pass measures the graph it is given (no plan)."""
    ctx = PassContext(activation_stats=activation_stats_for(data))
    for p in parse_pipeline(text):
        graph = p(graph, ctx)
    return graph


def _ranges(graph):
    return {op.name: (op.compression.act_range, op.compression.act_signed,
                      op.compression.weight_bits) for op in graph.matrix_ops}


@pytest.mark.parametrize("name", ["digits_cnn", "digits_transformer"])
@pytest.mark.parametrize("order", ["graph", "reversed"])
def test_per_layer_quantize_pipeline_gives_the_pass_by_pass_ranges(name, order):
    graph, data = _setup(name)
    layers = [op.name for op in graph.matrix_ops]
    assert len(layers) >= 3
    if order == "reversed":
        layers = layers[::-1]
    text = ",".join(f"quantize{{weight_bits={4 + i % 3},act_bits=6,match={n}}}"
                    for i, n in enumerate(layers))
    counted, runs = _counting(data)
    got, _ = run_pipeline(graph, text, activation_stats=counted)
    want = _one_by_one(graph, text, data)
    assert _ranges(got) == _ranges(want)
    assert all(r[0] is not None for r in _ranges(got).values())
    if order == "graph":  # every layer's input is upstream of the later passes' layers only
        assert len(runs) == 1, runs
    else:  # each pass changes a layer upstream of the earlier requests: measured as asked
        assert len(runs) == len(layers), runs


def test_one_quantize_of_every_layer_measures_the_float_graph():
    """One pass over every layer: layer 2's input depends on layer 1, which the same pass
    changes, so the shared measurement would differ: the graph given is measured."""
    graph, data = _setup("digits_cnn")
    text = "prune{ratio=0.3},quantize{weight_bits=4,act_bits=4}"
    counted, runs = _counting(data)
    got, _ = run_pipeline(graph, text, activation_stats=counted)
    assert _ranges(got) == _ranges(_one_by_one(graph, text, data))
    assert len(runs) == 1


def test_percentile_and_max_requests_are_kept_apart():
    graph, data = _setup("digits_cnn")
    layers = [op.name for op in graph.matrix_ops]
    text = ",".join(f"quantize{{weight_bits=6,act_bits=6,match={n}"
                    + (",calibration=percentile" if i % 2 else "") + "}"
                    for i, n in enumerate(layers))
    counted, runs = _counting(data)
    got, _ = run_pipeline(graph, text, activation_stats=counted)
    assert _ranges(got) == _ranges(_one_by_one(graph, text, data))
    assert len(runs) == 2 and None in runs and len(set(runs)) == 2, runs  # one run per percentile
