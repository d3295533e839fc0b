"""The float run (reference outputs and DAC ranges) is remembered per (float function, data):
a second ask with the same weights and the same samples runs nothing and gives the numbers of
a fresh run; a changed weight, another percentile or a sample edited in place runs again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from imccompile import simulate
from imccompile.frontend import import_model
from imccompile.simulate import Dataset, activation_stats, load_data

EX = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture()
def counted(monkeypatch):
    runs = []
    real = simulate.Runner.run

    def run(self, data, on_outputs):
        runs.append(len(data.feeds))
        return real(self, data, on_outputs)
    monkeypatch.setattr(simulate.Runner, "run", run)
    simulate._float_runs.clear()
    return runs


def _setup():
    graph = import_model(str(EX / "digits_cnn.onnx"))
    return graph, load_data(str(EX / "digits_cnn.npz"), graph, limit=24)


def test_same_function_and_data_run_once_with_the_fresh_numbers(counted):
    graph, data = _setup()
    ref1, st1 = activation_stats(graph, data)
    ref2, st2 = activation_stats(graph, data)
    assert counted == [24]
    assert st1 == st2 and all(np.array_equal(a, b) for a, b in zip(ref1, ref2))
    # the remembered outputs are those of onnxruntime on the source model
    sess = ort.InferenceSession(str(EX / "digits_cnn.onnx"), providers=["CPUExecutionProvider"])
    want = np.concatenate([sess.run(None, f)[0] for f in data.feeds])
    np.testing.assert_allclose(ref2[0].reshape(want.shape), want, rtol=1e-5, atol=1e-5)
    # what a caller does with the answer does not reach the memory
    ref2[0][:] = 0.0
    st2.clear()
    ref3, st3 = activation_stats(graph, data)
    assert st3 == st1 and np.array_equal(ref3[0], ref1[0]) and counted == [24]


def test_a_changed_weight_another_percentile_or_dataset_runs_again(counted):
    graph, data = _setup()
    _, st1 = activation_stats(graph, data)
    copy = Dataset([{k: v.copy() for k, v in f.items()} for f in data.feeds], None, "copy")
    _, st0 = activation_stats(graph, copy)  # the same samples in other arrays: remembered
    assert len(counted) == 1 and st0 == st1
    first = graph.matrix_ops[0]
    halved = graph.with_ops(op.replace(weight=op.weight * 0.5) if op is first else op
                            for op in graph.ops)
    _, st2 = activation_stats(halved, data)
    assert len(counted) == 2
    second_input = graph.matrix_ops[1].inputs[0]
    assert st2[second_input][0] != st1[second_input][0]  # downstream of the halved layer
    activation_stats(graph, data, percentile=99.0)
    assert len(counted) == 3
    first_input = graph.matrix_ops[0].inputs[0]
    for f in copy.feeds:  # edited in place: other numbers, so a new run
        for v in f.values():
            v *= 3.0
    _, st5 = activation_stats(graph, copy)
    assert len(counted) == 4
    assert st5[first_input][0] == pytest.approx(3.0 * st1[first_input][0], rel=1e-6)
    del copy.feeds[len(copy.feeds) // 2:]  # fewer samples: a new run
    ref6, _ = activation_stats(graph, copy)
    assert len(counted) == 5 and len(ref6[0]) == len(copy.feeds)


def test_outputs_over_the_byte_bound_are_not_kept(counted, monkeypatch):
    graph, data = _setup()
    monkeypatch.setattr(simulate, "FLOAT_RUN_BYTES", 0)
    activation_stats(graph, data)
    activation_stats(graph, data)
    assert counted == [24, 24] and not simulate._float_runs
