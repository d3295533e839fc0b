"""Scheduler: critical path over parallel branches, serial sum, pipelined period."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper
from onnx_builders import init, model, vi

from imccompile.compiler import compile_graph
from imccompile.outputs import build_report
from imccompile.cost import Cost, LayerCost
from imccompile.frontend import import_model
from imccompile.ir import DigitalOp, Graph, MatrixOp, TensorInfo
from imccompile.schedule import schedule
from imccompile.spec import load_target


def inception_model(channels: int = 8, size: int = 16):
    """Inception-style block: x feeds three parallel branches of 1, 2 and 3 convs ('same'
    padding, so their outputs concatenate), then Concat -> 1x1 head conv.

    branch a: a1 (1x1); branch b: b1 (1x1) -> b2 (3x3); branch c: c1 (1x1) -> c2 (3x3) -> c3 (5x5)
    """
    rng = np.random.default_rng(0)
    nodes, inits = [], []

    def conv(name, src, cin, k):
        inits.append(init(f"w_{name}", rng.standard_normal((channels, cin, k, k)).astype(np.float32)))
        p = k // 2
        nodes.append(helper.make_node("Conv", [src, f"w_{name}"], [name], kernel_shape=[k, k],
                                      pads=[p, p, p, p], name=name))
        return name

    a = conv("a1", "x", 3, 1)
    b = conv("b2", conv("b1", "x", 3, 1), channels, 3)
    c = conv("c3", conv("c2", conv("c1", "x", 3, 1), channels, 3), channels, 5)
    nodes.append(helper.make_node("Concat", [a, b, c], ["cat"], axis=1, name="concat"))
    inits.append(init("wo", rng.standard_normal((4, 3 * channels, 1, 1)).astype(np.float32)))
    nodes.append(helper.make_node("Conv", ["cat", "wo"], ["y"], kernel_shape=[1, 1], name="head"))
    return model(nodes, [vi("x", [1, 3, size, size])], [vi("y", [1, 4, size, size])], inits)


@pytest.fixture(scope="module")
def inception_graph():
    return import_model(inception_model())


BRANCHES = {"a": ("a1",), "b": ("b1", "b2"), "c": ("c1", "c2", "c3")}


@pytest.mark.parametrize("target", ["pcm", "rram", "sram"])
def test_parallel_branches_overlap(inception_graph, target):
    g = inception_graph
    assert sorted(op.name for op in g.matrix_ops) == ["a1", "b1", "b2", "c1", "c2", "c3", "head"]
    assert "concat" in [op.name for op in g.digital_ops]
    res = compile_graph(g, load_target(target))
    s = res.schedule
    lat = {lc.name: lc.latency_s for lc in res.cost.layers}
    assert all(lat[op.name] > 0 for op in g.matrix_ops)
    serial = sum(lat.values())
    assert s.serial_latency_s == pytest.approx(serial)
    # the three branches run side by side: latency (critical path) < serial sum
    assert s.latency_s < serial
    # by hand: the longest branch, then concat, then head
    branch = {k: sum(lat[n] for n in v) for k, v in BRANCHES.items()}
    assert branch["c"] > branch["b"] > branch["a"]  # 3 > 2 > 1 convs of similar latency
    expect = branch["c"] + lat["concat"] + lat["head"]
    assert s.latency_s == pytest.approx(expect)
    # what overlap saves = the two shorter branches
    assert serial - s.latency_s == pytest.approx(branch["a"] + branch["b"])
    # pipelined: one stage per op, period = slowest op <= critical path latency
    assert s.period_s <= s.latency_s
    assert s.period_s == pytest.approx(max(lat.values()))
    assert s.inferences_per_s == pytest.approx(1.0 / s.period_s)
    # every branch head starts at 0 (they only read the graph input); each step starts when
    # its producers have ended
    steps = {x.name: x for x in s.steps}
    for first in ("a1", "b1", "c1"):
        assert steps[first].start_s == 0.0
    assert steps["b2"].start_s == pytest.approx(lat["b1"])
    for x in s.steps:
        for d in x.depends_on:
            assert x.start_s >= steps[d].end_s
    assert set(steps["concat"].depends_on) == {"a1", "b2", "c3"}
    assert steps["concat"].start_s == pytest.approx(branch["c"])
    assert s.critical_path == ("c1", "c2", "c3", "concat", "head")
    rep = build_report(res)
    assert rep["totals"]["latency_s"] < rep["totals"]["serial_latency_s"]
    assert rep["schedule"]["critical_path"] == ["c1", "c2", "c3", "concat", "head"]


def _chain_and_fork():
    """Hand-built graph with known latencies: a -> {b, c}; b -> d; (c, d) -> e."""
    x = lambda n: TensorInfo(n, (1, 4))
    ops = (
        DigitalOp("a", "Relu", ("in",), ("ta",)),
        DigitalOp("b", "Relu", ("ta",), ("tb",)),
        DigitalOp("c", "Relu", ("ta",), ("tc",)),
        DigitalOp("d", "Relu", ("tb",), ("td",)),
        DigitalOp("e", "Add", ("tc", "td"), ("out",)),
    )
    tensors = {n: x(n) for n in ("in", "ta", "tb", "tc", "td", "out")}
    return Graph("fork", ops, tensors, ("in",), ("out",))


def _cost(latencies: dict[str, float]) -> Cost:
    return Cost(tuple(LayerCost(n, "digital", {}, v) for n, v in latencies.items()), 0.0, 0.0)


def test_critical_path_by_hand():
    g = _chain_and_fork()
    # a=1, b=2, c=10, d=3, e=1: paths a-b-d-e = 7, a-c-e = 12 -> latency 12, serial 17
    s = schedule(g, _cost({"a": 1.0, "b": 2.0, "c": 10.0, "d": 3.0, "e": 1.0}))
    assert s.latency_s == pytest.approx(12.0)
    assert s.serial_latency_s == pytest.approx(17.0)
    assert s.period_s == pytest.approx(10.0)
    assert s.critical_path == ("a", "c", "e")
    steps = {x.name: x for x in s.steps}
    assert (steps["e"].start_s, steps["e"].end_s) == (11.0, 12.0)
    assert (steps["d"].start_s, steps["d"].end_s) == (3.0, 6.0)
    # make the other branch the long one: a-b-d-e = 1 + 20 + 3 + 1 = 25
    s = schedule(g, _cost({"a": 1.0, "b": 20.0, "c": 10.0, "d": 3.0, "e": 1.0}))
    assert s.latency_s == pytest.approx(25.0)
    assert s.critical_path == ("a", "b", "d", "e")


def test_sequential_chain_latency_is_the_serial_sum():
    t = load_target("rram")
    ops, tensors, prev = [], {"x": TensorInfo("x", (1, 64))}, "x"
    for i in range(4):
        w = np.ones((64, 64), np.float32)
        ops.append(MatrixOp(f"fc{i}", "gemm", (prev,), (f"h{i}",), w, None, 1, 2))
        tensors[f"h{i}"] = TensorInfo(f"h{i}", (1, 64))
        prev = f"h{i}"
    res = compile_graph(Graph("chain", tuple(ops), tensors, ("x",), (prev,)), t)
    s = res.schedule
    assert s.latency_s == pytest.approx(s.serial_latency_s)
    assert s.critical_path == tuple(f"fc{i}" for i in range(4))
    assert s.period_s == pytest.approx(max(lc.latency_s for lc in res.cost.layers))
    assert s.period_s < s.latency_s


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(1e-9, 1e-3), min_size=5, max_size=5))
def test_schedule_bounds(lats):
    # any latencies: period <= latency <= serial, latency >= every single op
    g = _chain_and_fork()
    s = schedule(g, _cost(dict(zip("abcde", lats))))
    assert max(lats) == pytest.approx(s.period_s)
    assert s.period_s <= s.latency_s * (1 + 1e-12)
    assert s.latency_s <= s.serial_latency_s * (1 + 1e-12)
    assert s.latency_s == pytest.approx(max(lats[0] + lats[1] + lats[3], lats[0] + lats[2]) + lats[4])


def test_replication_shortens_the_bottleneck():
    t = load_target("rram")
    w = np.ones((64, 64), np.float32)
    ops = (MatrixOp("fc0", "gemm", ("x",), ("h",), w, None, 1, 16),
           MatrixOp("fc1", "gemm", ("h",), ("y",), w, None, 1, 1))
    g = Graph("g", ops, {"x": TensorInfo("x", (16, 64)), "h": TensorInfo("h", (16, 64)),
                         "y": TensorInfo("y", (16, 64))}, ("x",), ("y",))
    one = compile_graph(g, t)
    four = compile_graph(g, t, replicate={"fc0": 4})
    assert four.mapping.layer("fc0").replicas == 4
    # 16 vectors over 4 copies: 4 per copy -> the read time of fc0 drops 4x
    assert four.schedule.period_s < one.schedule.period_s
    assert four.schedule.latency_s < one.schedule.latency_s
    assert four.cost.layer("fc0").energy["adc"] == pytest.approx(one.cost.layer("fc0").energy["adc"])
