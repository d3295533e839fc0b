"""Big graphs in the accuracy simulation: no model over 2 GB is serialized into one protobuf (the
big tensors are fed to onnxruntime from their arrays, `emit.Emitted`), the fed and the
self-contained model compute the same, a saved big model uses external data, and the peak memory
of a simulation of a 100 M-weight model stays within 2 x (weights + activations) + 1 GiB.

The memory test generates four 5000 x 5000 Gemms (100 M weights, 400 MB) in a child process and
runs the CLI in another child whose peak resident memory (VmHWM) is read from /proc/self/status
(about 20 s; it skips without /proc or 4 GiB of free memory).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

sys.path.insert(0, str(Path(__file__).resolve().parent))

import onnx_builders as ob

import imccompile
from imccompile import emit as emit_mod
from imccompile.emit import emit_parts
from imccompile.simulate import Runner, load_data, simulation_parts_of

ROOT = Path(__file__).resolve().parents[1]


def _wide_mlp(rng: np.random.Generator) -> onnx.ModelProto:
    """Two 512 x 512 Gemms (1 MiB each: big enough to be fed) and a small head."""
    nodes = [helper.make_node("Gemm", ["x", "w0", "b0"], ["h0"]),
             helper.make_node("Relu", ["h0"], ["r0"]),
             helper.make_node("Gemm", ["r0", "w1", "b1"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["r1"]),
             helper.make_node("Gemm", ["r1", "w2", "b2"], ["y"])]
    inits = [ob.init("w0", ob.rand(rng, 512, 512) * 0.05), ob.init("b0", ob.rand(rng, 512) * 0.1),
             ob.init("w1", ob.rand(rng, 512, 512) * 0.05), ob.init("b1", ob.rand(rng, 512) * 0.1),
             ob.init("w2", ob.rand(rng, 512, 10) * 0.05), ob.init("b2", ob.rand(rng, 10) * 0.1)]
    return ob.model(nodes, [ob.vi("x", (1, 512))], [ob.vi("y", (1, 10))], inits)


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    rng = np.random.default_rng(11)
    folder = tmp_path_factory.mktemp("wide")
    onnx.save(_wide_mlp(rng), folder / "m.onnx")
    np.savez(folder / "x.npz", x=ob.rand(rng, 6, 1, 512))
    return folder / "m.onnx", folder / "x.npz"


def test_fed_tensors_compute_what_the_self_contained_model_computes(wide, monkeypatch):
    path, data = wide
    res = imccompile.compile(str(path), "pcm", data=str(data))
    dataset = load_data(str(data), res.graph)
    monkeypatch.setattr(emit_mod, "INLINE_BYTES", 0)  # every tensor >= 64 KiB is fed
    monkeypatch.setattr(emit_mod, "FEED_MIN_BYTES", 1 << 16)
    parts = simulation_parts_of(res, 0)
    # every tensor of a crossbar layer is fed, whatever its size (one session per structure)
    assert sum(v.nbytes >= emit_mod.FEED_MIN_BYTES for v in parts.feeds.values()) >= 2
    inline = {t.name for t in parts.model.graph.initializer}
    assert not any(t.data_type == onnx.TensorProto.FLOAT for t in parts.model.graph.initializer)
    assert not inline & set(parts.feeds)
    assert parts.data_inputs == ["x"]
    assert parts.model.ByteSize() < 1 << 20  # the weights are not in the protobuf
    full = parts.full()
    assert {t.name for t in full.graph.initializer} == inline | set(parts.feeds)
    onnx.checker.check_model(full)
    got: list[np.ndarray] = []
    Runner(parts, ["y"]).run(dataset, lambda i, o: got.append(o[0]))
    want = [ob.run(full, f)[0] for f in dataset.feeds]  # independent: onnxruntime, no fusions
    np.testing.assert_allclose(np.stack(got), np.stack(want), rtol=1e-5, atol=1e-5)
    # the accuracy does not depend on what is fed
    monkeypatch.undo()
    again = imccompile.compile(str(path), "pcm", data=str(data))
    monkeypatch.setattr(emit_mod, "INLINE_BYTES", 0)
    monkeypatch.setattr(emit_mod, "FEED_MIN_BYTES", 1 << 16)
    fed = imccompile.compile(str(path), "pcm", data=str(data))
    assert fed.accuracy is not None and again.accuracy is not None
    assert fed.accuracy["per_seed"] == pytest.approx(again.accuracy["per_seed"], abs=1e-6)


def test_big_model_is_saved_with_external_data(wide, tmp_path, monkeypatch):
    path, data = wide
    res = imccompile.compile(str(path), "pcm", data=str(data))
    monkeypatch.setattr(emit_mod, "INLINE_BYTES", 0)
    monkeypatch.setattr(emit_mod, "FEED_MIN_BYTES", 1 << 16)
    monkeypatch.setattr(emit_mod, "SAVE_ONE_FILE_BYTES", 0)  # as if it were over 2 GB
    parts = simulation_parts_of(res, 0)
    written = parts.save(str(tmp_path / "sim.onnx"))
    assert written == [str(tmp_path / "sim.onnx"), str(tmp_path / "sim.onnx.data")]
    assert (tmp_path / "sim.onnx").stat().st_size < 1 << 20
    loaded = onnx.load(str(tmp_path / "sim.onnx"))  # reads the external data back
    x = load_data(str(data), res.graph).feeds[0]
    np.testing.assert_array_equal(ob.run(loaded, x)[0], ob.run(parts.full(), x)[0])
    # the CLI's --emit and -o write the same way
    from imccompile.cli import main

    assert main([str(path), "--target", "pcm", "--data", str(data), "--emit",
                 str(tmp_path / "e.onnx"), "-o", str(tmp_path / "out"), "-q"]) == 0
    for model in (tmp_path / "e.onnx", tmp_path / "out" / "simulation.onnx"):
        assert Path(str(model) + ".data").exists()
        np.testing.assert_array_equal(ob.run(onnx.load(str(model)), x)[0],
                                      ob.run(parts.full(), x)[0])


# ------------------------------------------------------------------ 100 M weights, peak memory
GEN = r"""
import sys, numpy as np, onnx
from onnx import helper, TensorProto, numpy_helper
n, layers, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(0)
nodes, inits, x = [], [], "x"
for i in range(layers):
    w = rng.standard_normal((n, n), dtype=np.float32) * np.float32(1 / np.sqrt(n))
    inits += [numpy_helper.from_array(w, f"w{i}"),
              numpy_helper.from_array(np.zeros(n, np.float32), f"b{i}")]
    nodes.append(helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], [f"g{i}"]))
    x = f"g{i}"
    if i < layers - 1:
        nodes.append(helper.make_node("Relu", [x], [f"r{i}"]))
        x = f"r{i}"
g = helper.make_graph(nodes, "gemms", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
                      [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, n])], inits)
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
m.ir_version = 8
onnx.save_model(m, out, save_as_external_data=True, all_tensors_to_one_file=True,
                location=out.split("/")[-1] + ".data")
np.savez(out + ".npz", x=rng.standard_normal((8, 1, n)).astype(np.float32))
"""
CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from imccompile.cli import main
code = main(sys.argv[1:])
status = open("/proc/self/status").read().splitlines()
hwm = next(int(l.split()[1]) for l in status if l.startswith("VmHWM:"))
print(json.dumps({"code": code, "vmhwm_kb": hwm, "seconds": time.perf_counter() - t0}))
"""
N, LAYERS, SAMPLES = 5000, 4, 8


def _mem_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@pytest.fixture(scope="module")
def gemms(tmp_path_factory) -> Path:
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc for peak memory")
    if _mem_available() < 4 * 2**30:
        pytest.skip("needs 4 GiB of free memory")
    folder = tmp_path_factory.mktemp("gemms")
    if shutil.disk_usage(folder).free < 2**30:
        pytest.skip("needs 1 GiB of free disk")
    path = folder / "gemms.onnx"
    subprocess.run([sys.executable, "-c", GEN, str(N), str(LAYERS), str(path)], check=True,
                   timeout=120)
    return path


def _child(argv: list[str]) -> tuple[dict, str]:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env.pop("IMCCOMPILE_MEMORY_LIMIT", None)
    res = subprocess.run([sys.executable, "-c", CHILD, *argv], capture_output=True, text=True,
                         timeout=300, check=False, env=env)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1]), res.stderr


@pytest.mark.parametrize("mode", ["ideal", "hardware", "noise"])
def test_simulation_of_100m_weights_stays_within_its_memory_bound(gemms, tmp_path, mode):
    """Simulation with the ADC per row tile, DAC and weight quantization, without device noise
    (noise.model=none) and with the target's PCM noise (drawn in blocks of noise.CHUNK
    weights), or --ideal: peak <= 2 x (weights + activations of one batch) + 1 GiB."""
    weights = LAYERS * N * N
    weight_bytes = 4 * weights
    act_bytes = 4 * SAMPLES * N * (2 * LAYERS)  # every Gemm and Relu output of the batch
    out = tmp_path / "r.json"
    flags = {"ideal": ["--ideal"], "hardware": ["--set", "noise.model=none"], "noise": []}[mode]
    info, err = _child([str(gemms), "--target", "pcm", "--data", f"{gemms}.npz", *flags,
                        "--json", str(out), "-q"])
    assert info["code"] == 0, err
    rep = json.loads(out.read_text())
    assert rep["totals"]["weights"] == weights
    acc = rep["accuracy"]
    assert acc["samples"] == SAMPLES and len(acc["outputs"]) == 1
    if mode == "ideal":
        assert acc["outputs"][0]["metrics"]["relerr"]["mean"] < 1e-5
    else:
        assert 0 < acc["outputs"][0]["metrics"]["relerr"]["mean"] < 1
    peak = info["vmhwm_kb"] * 1024
    bound = 2 * (weight_bytes + act_bytes) + 2**30
    print(f"\n{mode}: {weights:,} weights ({weight_bytes / 2**20:.0f} MiB); peak "
          f"{peak / 2**20:.0f} MiB (bound {bound / 2**20:.0f} MiB); {info['seconds']:.1f} s")
    assert peak <= bound, (peak, bound)
