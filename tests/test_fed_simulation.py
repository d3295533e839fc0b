"""The simulation model with its crossbar tensors fed (one onnxruntime session per structure)
computes what the self-contained model with every tensor baked in computes: on the examples
and a ResNet-style model, for several noise seeds, at 1e-6. The baked model is run by an
independent onnxruntime session (graph optimizations off, one sample at a time, no cache).

Also: a new seed reuses the session of the first (no new session), different seeds give
different outputs (the comparison is not vacuous), the bit activity is the fraction of 1 bits
of the DAC codes computed by hand, and the noise draw does not depend on the thread count.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

sys.path.insert(0, str(Path(__file__).resolve().parent))

import onnx_builders as ob

import imccompile
from imccompile import noise, sessions
from imccompile.simulate import Runner, load_data, simulation_parts_of
from imccompile.spec import load_target

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (0, 1, 2)


def _resnet_block(rng: np.random.Generator) -> onnx.ModelProto:
    """conv-relu, a residual block of two 3x3 convs (the second strided, 1x1 strided
    shortcut), global average pool, Gemm head: 8x8 images, 16 channels."""
    def w(*shape: int) -> np.ndarray:
        return (ob.rand(rng, *shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)
    conv = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], **conv),
             helper.make_node("Relu", ["c0"], ["r0"]),
             helper.make_node("Conv", ["r0", "w1", "b1"], ["c1"], **conv),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], strides=[2, 2], **conv),
             helper.make_node("Conv", ["r0", "ws", "bs"], ["sc"], kernel_shape=[1, 1],
                              strides=[2, 2]),
             helper.make_node("Add", ["c2", "sc"], ["a"]),
             helper.make_node("Relu", ["a"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1)]
    inits = [ob.init("w0", w(16, 3, 3, 3)), ob.init("b0", ob.rand(rng, 16) * 0.1),
             ob.init("w1", w(16, 16, 3, 3)), ob.init("b1", ob.rand(rng, 16) * 0.1),
             ob.init("w2", w(32, 16, 3, 3)), ob.init("b2", ob.rand(rng, 32) * 0.1),
             ob.init("ws", w(32, 16, 1, 1)), ob.init("bs", ob.rand(rng, 32) * 0.1),
             ob.init("wf", w(10, 32)), ob.init("bf", ob.rand(rng, 10) * 0.1)]
    return ob.model(nodes, [ob.vi("x", (1, 3, 8, 8))], [ob.vi("y", (1, 10))], inits)


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    rng = np.random.default_rng(5)
    folder = tmp_path_factory.mktemp("resnet")
    onnx.save(_resnet_block(rng), folder / "r.onnx")
    np.savez(folder / "r.npz", x=np.abs(ob.rand(rng, 12, 1, 3, 8, 8)))
    return folder / "r.onnx", folder / "r.npz"


def _cases(resnet) -> list[tuple[Path, Path]]:
    ex = [(ROOT / "examples" / f"{n}.onnx", ROOT / "examples" / f"{n}.npz")
          for n in ("digits_cnn", "digits_transformer", "karate_gcn")]
    return ex + [resnet]


@pytest.mark.parametrize("case", range(4), ids=["digits_cnn", "digits_transformer",
                                                 "karate_gcn", "resnet_block"])
def test_fed_simulation_equals_the_baked_model(case, resnet):
    path, npz = _cases(resnet)[case]
    res = imccompile.compile(str(path), "pcm", data=str(npz), samples=16)
    data = load_data(str(npz), res.graph, limit=16)
    outs = list(res.graph.outputs)
    fed_by_seed = []
    created = None
    for seed in SEEDS:
        parts = simulation_parts_of(res, seed)
        assert parts.feeds, "the crossbar tensors are fed"
        got: list[list[np.ndarray]] = []
        Runner(parts, outs).run(data, lambda i, o: got.append(o))
        if seed == SEEDS[0]:
            created = sessions.stats["created"]
        else:  # the same structure: the session of the first seed runs it
            assert sessions.stats["created"] == created
        baked = parts.full()
        assert not [i.name for i in baked.graph.input if i.name in parts.feeds]
        for i, feed in enumerate(data.feeds):
            want = ob.run(baked, feed, outs)
            for k, w in enumerate(want):
                np.testing.assert_allclose(got[i][k], w, rtol=1e-6,
                                           atol=1e-6 * (1 + float(np.abs(w).max())))
        fed_by_seed.append(np.concatenate([g[0] for g in got]))
    assert not np.allclose(fed_by_seed[0], fed_by_seed[1], rtol=1e-4, atol=1e-5), \
        "another seed draws other device noise"


def test_bit_activity_is_the_fraction_of_one_bits_of_the_dac_codes(tmp_path):
    rng = np.random.default_rng(3)
    w = ob.rand(rng, 8, 4)
    onnx.save(ob.gemm_model((1, 8), w), tmp_path / "g.onnx")
    x = ob.rand(rng, 5, 1, 8)  # signed inputs: two's complement codes
    np.savez(tmp_path / "g.npz", a=x)
    name = ob.gemm_model((1, 8), w).graph.input[0].name
    assert name == "a"
    from imccompile.simulate import SimOptions, calibrate

    res = imccompile.compile(str(tmp_path / "g.onnx"), "rram")  # a bit-serial DAC (pcm's is PWM)
    data = load_data(str(tmp_path / "g.npz"), res.graph)
    cal = calibrate(res.graph, res.target, data, SimOptions(), res.mapping, activity=True)
    assert calibrate(res.graph, res.target, data, SimOptions(), res.mapping).activity == {}
    (layer, act), = cal.activity.items()
    step, lo, hi = cal.act[layer]
    bits = 16  # rram input bits, fed one bit per read (hwspecs/rram.json)
    assert res.target.precision.input_bits == bits and res.target.dac.mode == "bit_serial"
    codes = np.clip(np.rint(x.astype(np.float64) / step), lo, hi).astype(np.int64)
    words = np.where(codes < 0, codes + 2 ** bits, codes)
    ones = sum(((words >> i) & 1).sum() for i in range(bits))
    assert act == pytest.approx(ones / (words.size * bits), rel=1e-6)


def test_noise_draw_does_not_depend_on_the_thread_count():
    t = load_target("pcm")
    q = np.random.default_rng(0).integers(-127, 128, (512, 3 * noise.CHUNK // 512 + 5)).astype(float)
    one = noise.noisy_codes(q, 8, t, np.random.default_rng(4), threads=1)
    two = noise.noisy_codes(q, 8, t, np.random.default_rng(4), threads=2)
    np.testing.assert_array_equal(one, two)
    assert one.dtype == np.float32


@pytest.mark.parametrize("batch,threads,samples", [(1, 2, 12), (3, 2, 12), (64, 2, 12),
                                                   (64, 3, 4), (64, 4, 9), (2, 5, 7)])
def test_parallel_runs_deliver_every_sample_in_order(resnet, batch, threads, samples):
    """threads=2: the calls run two at a time; every sample's outputs still reach the
    callback once, in sample order, equal to the baked model run sample by sample by an
    independent session (and to the one-thread runs)."""
    path, npz = resnet
    res = imccompile.compile(str(path), "pcm", data=str(npz), samples=samples)
    data = load_data(str(npz), res.graph, limit=samples)
    outs = list(res.graph.outputs)
    parts = simulation_parts_of(res, 1)
    got: dict[int, list[np.ndarray]] = {}
    order: list[int] = []

    def take(i, o):
        order.append(i)
        got[i] = o
    Runner(parts, outs, threads=threads, batch=batch).run(data, take)
    assert order == list(range(len(data.feeds)))
    one: list[list[np.ndarray]] = []
    Runner(parts, outs, threads=1, batch=batch).run(data, lambda i, o: one.append(o))
    baked = parts.full()
    for i, feed in enumerate(data.feeds):
        for k, w in enumerate(ob.run(baked, feed, outs)):
            np.testing.assert_allclose(got[i][k], w, rtol=1e-6,
                                       atol=1e-6 * (1 + float(np.abs(w).max())))
            np.testing.assert_allclose(got[i][k], one[i][k], rtol=1e-6,
                                       atol=1e-6 * (1 + float(np.abs(w).max())))
